"""Who may call what: roles, access tags, and the decorators that attach them to handlers.

Every cross-cutting rule reads per-route metadata set by a decorator on the matched handler,
so middlewares stay generic (no path special-casing) and new routes inherit them:

* ``@access(Access.X)`` → ``__wavis_access__`` (auth middleware; a route without it is refused)
* ``@body_limit(n)`` → ``__wavis_body_limit__`` (body-size middleware and ``bodies.read_body``)
* ``@fcu(n | fn(request) -> n)`` → ``__wavis_fcu__``: FCU charged to the monthly window
  (refunded when the answer is an error); default 0. ``fn`` may be async (a price that
  depends on the body: ``bodies.read_body`` caches it for the handler)
* ``@operational`` → ``__wavis_operational__``: health probes and metrics: not counted in any
  rate-limit window and still answered in maintenance mode
* ``@doc(...)`` → ``__wavis_doc__``: request/response models for the OpenAPI document
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Union

from aiohttp import web


class Role(str, enum.Enum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    ACCOUNT_ADMIN = "account_admin"
    TRIAL = "trial"


@dataclass(frozen=True)
class AccessLevel:
    """A named access tag of API.md ("PUBLIC", "TRIAL+", …) and the roles it admits."""

    name: str
    roles: frozenset[Role]

    def allows(self, role: Role) -> bool:
        return role in self.roles


class Access:
    """The access tags of API.md §1 (not an Enum: tags with equal role sets must stay distinct)."""

    PUBLIC = AccessLevel("PUBLIC", frozenset())
    ANY = AccessLevel("ANY", frozenset(Role))
    TRIAL_PLUS = AccessLevel("TRIAL+", frozenset({Role.TRIAL, Role.DEVELOPER, Role.ACCOUNT_ADMIN}))
    # [deviation, see docs/service.md] trial keys may read their own resources too
    READ_PLUS = AccessLevel("READ+", frozenset({Role.VIEWER, Role.DEVELOPER, Role.ACCOUNT_ADMIN, Role.TRIAL}))
    WRITE_PLUS = AccessLevel("WRITE+", frozenset({Role.DEVELOPER, Role.ACCOUNT_ADMIN}))
    BILLING_PLUS = AccessLevel("BILLING+", frozenset({Role.ACCOUNT_ADMIN}))


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    api_key_id: str
    account_id: str
    role: Role
    environment: str
    ops_limit: int | None
    expires_at: datetime | None
    plan: str = "free"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LimitResolver = Callable[[web.Request], Awaitable[int]]
BodyLimit = Union[int, "RouteBodyLimit"]


@dataclass(frozen=True)
class RouteBodyLimit:
    """``ceiling`` is checked against Content-Length before anything else runs; ``resolve``
    (awaited lazily, after auth) may narrow it, e.g. to the caller's largest key."""

    ceiling: int
    resolve: LimitResolver | None = None


def access(level: AccessLevel) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        fn.__wavis_access__ = level  # type: ignore[attr-defined]
        return fn

    return deco


def body_limit(limit: BodyLimit) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        fn.__wavis_body_limit__ = limit if isinstance(limit, RouteBodyLimit) else RouteBodyLimit(limit)  # type: ignore[attr-defined]
        return fn

    return deco


def fcu(cost: "int | Callable[[web.Request], int | Awaitable[int]]", *, job: bool = False) -> Callable[[Handler], Handler]:
    """FCU this route charges to the monthly window (an int, or a function of the request, which
    may be async: e.g. a price read from the body, through ``bodies.read_body``).
    ``job=True``: the route runs an engine job, whose admission decides the quota in PostgreSQL
    (``billing.admit_job``); the Redis window then only counts (headers), it never refuses."""

    def deco(fn: Handler) -> Handler:
        fn.__wavis_fcu__ = cost  # type: ignore[attr-defined]
        fn.__wavis_fcu_job__ = job  # type: ignore[attr-defined]
        return fn

    return deco


def operational(fn: Handler) -> Handler:
    fn.__wavis_operational__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True)
class RouteDoc:
    summary: str = ""
    request: type | None = None  # pydantic model of the JSON body
    responses: dict[int, type | None] | None = None  # status → pydantic model (None: no body)
    query: dict[str, dict] | None = None  # name → JSON schema of a query parameter
    deprecated: bool = False


def doc(summary: str = "", *, request: type | None = None, responses: dict[int, type | None] | None = None,
        query: dict[str, dict] | None = None, deprecated: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        fn.__wavis_doc__ = RouteDoc(summary, request, responses, query, deprecated)  # type: ignore[attr-defined]
        return fn

    return deco


def route_attr(request: web.Request, name: str, default=None):
    handler = getattr(request.match_info, "handler", None)
    return getattr(handler, name, default)


def principal(request: web.Request) -> Principal:
    from .state import PRINCIPAL

    p = request.get(PRINCIPAL)
    if p is None:  # a route without @access(...) reached a handler that needs a caller
        raise RuntimeError("handler needs an authenticated principal")
    return p
