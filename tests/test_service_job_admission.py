"""Admission by cost for heavy operations that run as engine jobs (issue 14): the account's
heavy-job bound and the server's memory budget hold for as long as the job is QUEUED or
RUNNING — not only until its request's 202 — and across API processes (PostgreSQL's job rows
are counted under an advisory lock). Real PostgreSQL and Redis; two apps = two API processes
on one database."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

MATRIX = [[1.0, 2.0], [3.0, 4.0]]


async def wait_final(api, h, job_id: str, timeout: float = 60.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await (await api.get(f"/api/v1/jobs/{job_id}", headers=h)).json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def test_async_heavy_jobs_hold_the_account_bound_and_the_budget_until_they_end_across_processes(
        make_client, service_settings, ckks_pair_factory):
    from wavis import serialize
    from wavis.service import admission, ratelimit
    from wavis.service.worker import Worker

    pair = ckks_pair_factory(max_depth=1)
    cost = admission.cost_of("compute/matmul", pair.params.to_dict(), 2, 2)
    plans = dict(ratelimit.PLANS)
    plans["pro"] = replace(plans["pro"], heavy_jobs=2)
    # room for exactly three such jobs on the server; no worker yet: jobs stay QUEUED
    settings = replace(service_settings, engine="remote", plans=plans, memory_budget_bytes=3 * cost.bytes + 1024)
    one, two = await make_client(settings), await make_client(settings)  # two API processes
    add_account_helper(one)
    add_account_helper(two)
    h = bearer(await one.account(plan="pro"))
    other = bearer(await one.account(plan="pro"))

    async def setup(hh):
        resp = await one.post("/api/v1/keys/upload", json=pair.upload_body(), headers=hh)
        assert resp.status == 200, await resp.text()
        key_id = (await resp.json())["key_id"]
        resp = await one.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": serialize.b64encode(
            serialize.dumps(pair.encrypt([1.0, 2.0])))}, headers=hh)
        return {"key_id": key_id, "ciphertext_ids": [(await resp.json())["ciphertext_id"]], "matrix": MATRIX,
                "async": True}

    body, other_body = await setup(h), await setup(other)
    r1 = await one.post("/api/v1/compute/matmul", json=body, headers=h)
    r2 = await two.post("/api/v1/compute/matmul", json=body, headers=h)
    assert r1.status == r2.status == 202, await r2.text()
    # both answered 202 (in two processes), both still hold the account's two heavy slots
    resp = await one.post("/api/v1/compute/matmul", json=body, headers=h)
    err = await error_of(resp, 429, "TOO_MANY_HEAVY_JOBS")
    assert err["details"]["limit"] == 2 and resp.headers["Retry-After"]
    await error_of(await two.post("/api/v1/compute/matmul", json={**body, "async": False}, headers=h), 429,
                   "TOO_MANY_HEAVY_JOBS")  # a synchronous one too
    # another account has its own slots, but the server's budget is shared: a third job fits, a fourth not
    r3 = await two.post("/api/v1/compute/matmul", json=other_body, headers=other)
    assert r3.status == 202, await r3.text()
    resp = await one.post("/api/v1/compute/matmul", json=other_body, headers=other)
    err = await error_of(resp, 503, "OVERLOADED")
    assert resp.headers["Retry-After"] and err["details"]["budget_bytes"] == settings.memory_budget_bytes

    # cancelling one gives its slot and bytes back at once (in the other process too)
    j1 = (await r1.json())["job_id"]
    assert (await one.delete(f"/api/v1/jobs/{j1}", headers=h)).status == 200
    r4 = await two.post("/api/v1/compute/matmul", json=body, headers=h)
    assert r4.status == 202, await r4.text()
    await error_of(await one.post("/api/v1/compute/matmul", json=body, headers=h), 429, "TOO_MANY_HEAVY_JOBS")

    # a worker runs them; once they end, the account is admitted again
    worker = Worker(one.app)
    await worker.start()
    try:
        for r, hh in ((r2, h), (r3, other), (r4, h)):
            job = await wait_final(one, hh, (await r.json())["job_id"])
            assert job["status"] in ("COMPLETED", "FAILED"), job  # FAILED: a missing Galois key is fine here
        resp = await one.post("/api/v1/compute/matmul", json=body, headers=h)
        assert resp.status == 202, await resp.text()
        await wait_final(one, h, (await resp.json())["job_id"])
    finally:
        await worker.stop()
