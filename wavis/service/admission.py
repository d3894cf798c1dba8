"""Admission by cost (API.md §1, issue 14): before key generation, key upload, matmul,
bootstrap or TFHE session creation, the request's memory and CPU are computed from its
parameters (``ops.REGISTRY``) and the request is refused — before anything is allocated and
before any engine job starts — when it exceeds

* the caller's plan (``Plan.max_job_bytes``, ``Plan.max_job_cpu_s``) → 413 ``REQUEST_TOO_LARGE``
  (``details.limit_source = "plan"``);
* the server's memory budget on its own (``Settings.memory_budget_bytes``) → 413
  ``REQUEST_TOO_LARGE`` (``details.limit_source = "server"``);
* the budget left by the heavy jobs running now → 503 ``OVERLOADED`` with ``Retry-After``;
* the account's concurrent heavy jobs (``Plan.heavy_jobs``, this process) → 429
  ``TOO_MANY_HEAVY_JOBS`` with ``Retry-After``.

An admitted request holds its bytes and its account slot until it has its answer
(``admit(request, …)`` in the handler; ``release_middleware`` gives them back); that hold is per
API process (key generation and upload, TFHE session creation).

A heavy operation that runs as an engine job (matmul, bootstrap — synchronous or ``"async":
true``) is admitted with ``admit_job`` instead: the plan and server-size checks (413) run at
once, and the account's heavy-job bound and the memory budget are checked by the dispatcher
against the job rows in PostgreSQL — every heavy job QUEUED or RUNNING, of every API process —
under an advisory lock, in the transaction that inserts the row (``jobs.heavy_bytes``,
migration 062). So the hold lasts until the job ends (not until the 202 or a 504) and holds
across processes. The request-scoped holds of this process are added to those counts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from . import ops, ratelimit
from .access import principal
from .errors import ApiError
from .state import ADMISSION, ADMITTED, SETTINGS

log = logging.getLogger("wavis.service.admission")


def default_memory_budget() -> int:
    """Half of the memory this process may use: the cgroup limit when there is one, else RAM."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
            if raw.isdigit():
                total = min(total, int(raw))
        except OSError:
            pass
    return total // 2


class Admission:
    """Reserved bytes of the heavy jobs running in this process, and per-account job counts."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self.reserved_bytes = 0
        self.jobs: dict[str, int] = {}
        self.refused = {"plan": 0, "server": 0, "busy": 0, "concurrency": 0}

    def check(self, account_id: str, plan: ratelimit.Plan, plan_name: str, cost: ops.Cost, *,
              running: tuple[int, int] = (0, 0)) -> None:
        """Raise if ``cost`` does not fit. ``running``: (this account's heavy jobs, their bytes
        over all accounts) counted elsewhere — the engine's job rows — on top of this
        process's request-scoped holds."""
        self.check_size(plan, plan_name, cost)
        self.check_load(account_id, plan, cost, running=running)

    def check_size(self, plan: ratelimit.Plan, plan_name: str, cost: ops.Cost) -> None:
        """413 when ``cost`` exceeds the plan's per-request limits or the whole server budget."""
        details = cost.to_details()
        if cost.bytes > plan.max_job_bytes or cost.cpu_s > plan.max_job_cpu_s:
            self.refused["plan"] += 1
            resource = "memory" if cost.bytes > plan.max_job_bytes else "cpu"
            raise ApiError(413, "REQUEST_TOO_LARGE",
                           f"this request needs about {cost.bytes / 2**20:.0f} MiB and {cost.cpu_s:.1f} s of CPU; "
                           f"the {plan_name} plan allows {plan.max_job_bytes / 2**20:.0f} MiB and "
                           f"{plan.max_job_cpu_s:.0f} s per request (smaller parameters or fewer keys, or another plan)",
                           {**details, "resource": resource, "limit_source": "plan", "plan": plan_name,
                            "limit_bytes": plan.max_job_bytes, "limit_cpu_s": plan.max_job_cpu_s})
        if cost.bytes > self.budget_bytes:
            self.refused["server"] += 1
            raise ApiError(413, "REQUEST_TOO_LARGE",
                           f"this request needs about {cost.bytes / 2**20:.0f} MiB, more than this server's "
                           f"memory budget of {self.budget_bytes / 2**20:.0f} MiB",
                           {**details, "resource": "memory", "limit_source": "server",
                            "limit_bytes": self.budget_bytes})

    def check_load(self, account_id: str, plan: ratelimit.Plan, cost: ops.Cost, *,
                   running: tuple[int, int] = (0, 0)) -> None:
        """429 at the account's concurrent heavy jobs, 503 when the budget left is too small."""
        details = cost.to_details()
        if self.jobs.get(account_id, 0) + running[0] >= plan.heavy_jobs:
            self.refused["concurrency"] += 1
            raise ApiError(429, "TOO_MANY_HEAVY_JOBS",
                           f"at most {plan.heavy_jobs} heavy requests (key generation/upload, matmul, bootstrap, "
                           "TFHE sessions) of one account run at once; retry when one finishes",
                           {"limit": plan.heavy_jobs, "operation": cost.what}, headers={"Retry-After": "2"})
        if self.reserved_bytes + running[1] + cost.bytes > self.budget_bytes:
            self.refused["busy"] += 1
            raise ApiError(503, "OVERLOADED", "the server's memory budget is taken by running jobs; retry shortly",
                           {**details, "reserved_bytes": self.reserved_bytes + running[1],
                            "budget_bytes": self.budget_bytes}, headers={"Retry-After": "2"})

    def hold(self, account_id: str, cost: ops.Cost) -> None:
        self.reserved_bytes += cost.bytes
        self.jobs[account_id] = self.jobs.get(account_id, 0) + 1

    def release(self, account_id: str, cost: ops.Cost) -> None:
        self.reserved_bytes -= cost.bytes
        left = self.jobs.get(account_id, 1) - 1
        if left > 0:
            self.jobs[account_id] = left
        else:
            self.jobs.pop(account_id, None)


def cost_of(operation: str, *args, **kwargs) -> ops.Cost:
    """The registry's estimate for ``operation`` (its parameters in ``args``/``kwargs``)."""
    return ops.REGISTRY[operation].cost(*args, **kwargs)


def admit(request: web.Request, operation: str, *args, **kwargs) -> ops.Cost:
    """Refuse ``operation`` if it does not fit (see the module docstring); else hold its share
    of the budget and one of the account's heavy-job slots until the request has its answer
    (``release_middleware``). Call it before anything is allocated or submitted.

    Raises: ApiError 413 REQUEST_TOO_LARGE, 429 TOO_MANY_HEAVY_JOBS, 503 OVERLOADED; the
    library's ParameterError (→ 400) for parameters that do not validate."""
    cost = cost_of(operation, *args, **kwargs)
    p = principal(request)
    settings = request.app[SETTINGS]
    plan = ratelimit.plan_of(settings.plans, p.plan)
    adm: Admission = request.app[ADMISSION]
    adm.check(p.account_id, plan, p.plan if p.plan in settings.plans else "free", cost)
    adm.hold(p.account_id, cost)
    held = request.get(ADMITTED)
    if held is None:
        held = request[ADMITTED] = []
    held.append((p.account_id, cost))
    return cost


@dataclass(frozen=True)
class JobAdmission:
    """A heavy operation that runs as an engine job, checked against its plan and the server's
    size already; ``check(account_heavy_jobs, heavy_bytes)`` — called by the dispatcher with
    the counts of heavy job rows QUEUED or RUNNING, under its lock — raises 429/503 when the
    account's bound or the budget left does not admit it. ``cost.bytes`` goes into the row."""

    cost: ops.Cost
    check: Callable[[int, int], None]


def admit_job(request: web.Request, operation: str, *args, **kwargs) -> JobAdmission:
    """Admission of a heavy operation that becomes a job (see the module docstring): the size
    checks now, the load checks in ``Dispatcher.submit`` against PostgreSQL, for as long as the
    job is QUEUED or RUNNING.

    Raises: ApiError 413 REQUEST_TOO_LARGE (here); the returned ``check`` raises 429
    TOO_MANY_HEAVY_JOBS / 503 OVERLOADED."""
    cost = cost_of(operation, *args, **kwargs)
    p = principal(request)
    settings = request.app[SETTINGS]
    plan = ratelimit.plan_of(settings.plans, p.plan)
    adm: Admission = request.app[ADMISSION]
    adm.check_size(plan, p.plan if p.plan in settings.plans else "free", cost)

    def check(account_jobs: int, heavy_bytes: int) -> None:
        adm.check_load(p.account_id, plan, cost, running=(account_jobs, heavy_bytes))

    return JobAdmission(cost, check)


@web.middleware
async def release_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Give back what ``admit`` held, however the request ends (answer, error, cancellation)."""
    try:
        return await handler(request)
    finally:
        for account_id, cost in request.get(ADMITTED) or ():
            request.app[ADMISSION].release(account_id, cost)
