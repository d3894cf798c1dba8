"""The middleware chain, outermost first (DESIGN.md §5, extended by issue 5):

    request id → metrics → errors → security headers → maintenance → request timeout
    → body-size limit → auth (with the per-IP brute-force lockout) → rate limit → idempotency

* ``request_id``: assigns/reuses ``X-Request-ID``, binds it to log records, and applies the
  response-header bag (``RESPONSE_HEADERS``) to *every* response, errors included. Inner
  middlewares that need headers on all responses (security and rate-limit headers) put them
  in the bag instead of on a response they may never see.
* ``metrics``: request count / latency by route template and status (Prometheus).
* ``errors``: the only place exceptions become error bodies: ``ApiError``, aiohttp's HTTP
  exceptions (404/405 …), library ``WavisError``s (one mapping table, ``errors.py``),
  upstream failures (→ 502), anything else (→ 500, logged with its traceback, no details out).
* ``maintenance``: 503 MAINTENANCE with Retry-After, except ``@operational`` routes.
* ``request_timeout``: the whole request (body included) within ``request_timeout_s``:
  408 while still reading the body, else 504.
* ``body_limit`` (Content-Length against the route's ceiling before anything reads),
  ``auth`` (brute-force lockout per client IP; Bearer key → ``Principal``; role check from
  ``@access``), ``rate_limit`` (daily / monthly FCU / burst windows, ``ratelimit.py``),
  ``idempotency`` (``idempotency.py``).
Every rule reads per-route metadata set by decorators (``access.py``), never paths.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from dataclasses import replace

from contextlib import asynccontextmanager

import asyncpg
import redis.exceptions
from redis.exceptions import ResponseError as RedisResponseError
from aiohttp import web
from multidict import CIMultiDict

from wavis.errors import WavisError

from . import admission, apikeys, clock, idempotency, maintenance as maint, metering, ratelimit, repo
from .access import Access, AccessLevel, route_attr
from .bodies import read_body, route_limit
from .errors import ApiError, forbidden, from_library_error, payload_too_large, unauthorized, upstream_unavailable
from .ids import REQUEST_ID_RE, new_id
from .metrics import route_label
from .pools import PoolExhausted
from .schemas import ErrorDetail, ErrorResponse
from .ctstore import is_redis_oom
from .state import (BODY_READING, DB, IDEM_JOB_KEY, LOCKOUT, LOOP_LAG, METRICS, PRINCIPAL, REDIS, REPLAYED,
                    REQUEST_ID, RESPONSE_HEADERS, SETTINGS)

log = logging.getLogger("wavis.service")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("wavis_request_id", default="-")


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` to every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def response_headers(request: web.Request) -> CIMultiDict:
    bag = request.get(RESPONSE_HEADERS)
    if bag is None:
        bag = request[RESPONSE_HEADERS] = CIMultiDict()
    return bag


def error_response(request: web.Request, err: ApiError) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=err.code, message=err.message,
                                           request_id=request.get(REQUEST_ID) or "-", details=err.details or None))
    resp = web.Response(body=body.model_dump_json(exclude_none=True).encode(), status=err.status,
                        content_type="application/json")
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


@web.middleware
async def request_id(request: web.Request, handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if REQUEST_ID_RE.match(incoming) else new_id("req")
    request[REQUEST_ID] = rid
    token = request_id_var.set(rid)
    try:
        resp = await handler(request)
        resp.headers["X-Request-ID"] = rid
        for k, v in response_headers(request).items():
            resp.headers.setdefault(k, v)
        return resp
    finally:
        request_id_var.reset(token)


_HTTP_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT", 411: "LENGTH_REQUIRED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED", 501: "NOT_IMPLEMENTED", 503: "SERVICE_UNAVAILABLE",
}

_UPSTREAM_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.ConnectionError, "redis"),
    (redis.exceptions.TimeoutError, "redis"),
    (asyncpg.exceptions.PostgresConnectionError, "postgres"),    # SQLSTATE class 08
    (asyncpg.exceptions.OperatorInterventionError, "postgres"),  # class 57: admin/crash shutdown
    (asyncpg.exceptions.InsufficientResourcesError, "postgres"), # class 53: too many connections …
    (asyncpg.exceptions.ConnectionDoesNotExistError, "postgres"),
    (asyncpg.exceptions.InterfaceError, "postgres"),
    (asyncpg.exceptions.InternalClientError, "postgres"),  # protocol state after a killed backend
    (ConnectionError, "upstream"),
    (OSError, "upstream"),
)


def to_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, WavisError):
        return from_library_error(exc)
    if isinstance(exc, web.HTTPException):
        status = exc.status
        code = _HTTP_CODES.get(status, "HTTP_ERROR")
        message = exc.reason.lower() if exc.reason else code.lower()
        headers = {}
        if status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        if status == 413:
            return ApiError(413, code, "request body too large")
        return ApiError(status, code, message, headers=headers)
    if isinstance(exc, PoolExhausted) or isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
        # a busy pool (or a PostgreSQL at max_connections) is overload, not an outage
        upstream = getattr(exc, "upstream", "postgres")
        return ApiError(503, "OVERLOADED", f"all {upstream} connections are busy; retry shortly",
                        {"upstream": upstream}, headers={"Retry-After": "1"})
    if isinstance(exc, asyncio.TimeoutError):
        return upstream_unavailable("upstream")
    if is_redis_oom(exc):
        # Redis reached maxmemory under noeviction: nothing was stored, nothing of anyone was lost
        return ApiError(507, "INSUFFICIENT_STORAGE", "the ciphertext store is full; delete ciphertexts or retry later",
                        headers={"Retry-After": "60"})
    if isinstance(exc, asyncpg.exceptions.DataError):
        # e.g. a NUL byte in an id (CharacterNotInRepertoireError) or an out-of-range value
        return ApiError(400, "INVALID_PARAMS", "a value in the request is not valid text or is out of range")
    for cls, name in _UPSTREAM_ERRORS:
        if isinstance(exc, cls):
            return upstream_unavailable(name)
    return ApiError(500, "INTERNAL_ERROR", "internal error; quote the request id when reporting it")


def _overloaded(app: web.Application) -> bool:
    from .pools import overloaded  # noqa: PLC0415

    return overloaded(app.get(DB), app.get(REDIS), app.get(LOOP_LAG))


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except asyncio.CancelledError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and 2xx raised as exceptions pass through
            raise
        resp = error_response(request, to_api_error(exc))
    except Exception as exc:  # noqa: BLE001 - the one place that turns everything into a body
        err = to_api_error(exc)
        if err.code == "UPSTREAM_UNAVAILABLE" and isinstance(exc, TimeoutError) and _overloaded(request.app):
            # the deadline ran out while this process was overloaded (pool waiters, a lagging
            # event loop): overload, answered 503 + Retry-After, not an upstream outage (502)
            err = ApiError(503, "OVERLOADED", "the server is overloaded; retry shortly", {"upstream": "timeout"},
                           headers={"Retry-After": "1"})
        if err.status >= 500 and err.code == "INTERNAL_ERROR":
            log.exception("unhandled error on %s %s", request.method, request.path)
        elif err.status >= 500 and not isinstance(exc, ApiError):
            log.warning("%s on %s %s: %r", err.code, request.method, request.path, exc)
        resp = error_response(request, err)
    if request.method == "HEAD" and isinstance(resp, web.Response) and resp.status >= 400:
        resp.body = None
    return resp


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    finally:
        bag = response_headers(request)
        bag["X-Content-Type-Options"] = "nosniff"
        bag["Cache-Control"] = "no-store"
        if request.app[SETTINGS].hsts or request.secure:
            bag["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"


@web.middleware
async def body_limit(request: web.Request, handler) -> web.StreamResponse:
    length = request.content_length
    if length is not None:
        ceiling = route_limit(request).ceiling
        if length > ceiling:
            raise payload_too_large(ceiling)
    return await handler(request)


def client_ip(request: web.Request) -> str:
    """The caller's address: the peer, or behind a trusted proxy the last X-Forwarded-For hop."""
    if request.app[SETTINGS].trust_forwarded_for:
        fwd = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in fwd.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.remote or "unknown"


@asynccontextmanager
async def _upstream(request: web.Request):
    async with asyncio.timeout(request.app[SETTINGS].upstream_timeout_s):
        yield


def _operational(request: web.Request) -> bool:
    return bool(route_attr(request, "__wavis_operational__", False))


@web.middleware
async def metrics(request: web.Request, handler) -> web.StreamResponse:
    m = request.app.get(METRICS)
    if m is None:
        return await handler(request)
    start = time.perf_counter()
    status = 500
    m.in_flight.inc()
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects: recorded as 499 ("client
        # closed request", nginx's convention), not as a server error
        status = 499
        raise
    finally:
        m.in_flight.dec()
        route = route_label(request)
        m.requests.labels(request.method, route, str(status)).inc()
        m.latency.labels(request.method, route).observe(time.perf_counter() - start)


def _authenticated(request: web.Request) -> bool:
    """The route needs an API key (``auth`` checks the lockout, then the key)."""
    level = route_attr(request, "__wavis_access__")
    return level is not None and level is not Access.PUBLIC


@web.middleware
async def maintenance(request: web.Request, handler) -> web.StreamResponse:
    if getattr(request.match_info, "http_exception", None) is None and not _operational(request):
        settings = request.app[SETTINGS]
        retry = settings.maintenance_retry_after_s if settings.maintenance else None
        if retry is None:
            redis = request.app[REDIS]
            async with _upstream(request):
                if _authenticated(request):
                    # one round trip: the flag, and the client IP's brute-force lockout that
                    # ``auth`` checks next (read here, decided there, as before)
                    async with redis.pipeline(transaction=False) as pipe:
                        pipe.get(maint.flag_key(settings.redis_prefix))
                        pipe.ttl(ratelimit.lockout_key(settings.redis_prefix, client_ip(request)))
                        raw, ttl = await pipe.execute()
                    request[LOCKOUT] = ratelimit.lockout_of(ttl)
                    retry = maint.parse(raw)
                else:
                    retry = await maint.get(redis, settings.redis_prefix)
        if retry is not None:
            raise ApiError(503, "MAINTENANCE", "the service is down for maintenance; retry later",
                           headers={"Retry-After": str(retry)})
    return await handler(request)


@web.middleware
async def request_timeout(request: web.Request, handler) -> web.StreamResponse:
    try:
        async with asyncio.timeout(request.app[SETTINGS].request_timeout_s) as cm:
            return await handler(request)
    except TimeoutError:
        if not cm.expired():
            raise
        if request.get(BODY_READING):
            raise ApiError(408, "REQUEST_TIMEOUT", "the request body did not arrive in time") from None
        raise ApiError(504, "REQUEST_TIMEOUT", "the request took too long to process") from None


def too_many_auth_failures(retry: int) -> ApiError:
    return ApiError(429, "TOO_MANY_AUTH_FAILURES",
                    "too many failed authentications from this address; retry later",
                    headers={"Retry-After": str(max(1, retry))})


@web.middleware
async def auth(request: web.Request, handler) -> web.StreamResponse:
    if getattr(request.match_info, "http_exception", None) is not None:
        return await handler(request)  # 404/405 from the router
    level: AccessLevel | None = route_attr(request, "__wavis_access__")
    if level is None:
        # Fail closed: a route that forgot @access is not public.
        log.error("route %s has no @access declaration", request.path)
        raise forbidden("route is not available")
    if level is Access.PUBLIC:
        return await handler(request)
    settings = request.app[SETTINGS]
    redis = request.app[REDIS]
    ip = client_ip(request)
    locked = request.get(LOCKOUT)  # read with the maintenance flag (``maintenance``)
    if locked is None:
        async with _upstream(request):
            locked = await ratelimit.lockout_remaining(redis, settings.redis_prefix, ip)
    if locked:
        raise too_many_auth_failures(locked)
    presented = apikeys.from_authorization(request.headers.get("Authorization"))
    if presented is None:
        raise unauthorized()
    # Constant work for every presented string: one HMAC and one indexed lookup by the hash
    # (no format pre-check that would answer malformed keys faster), then a constant-time
    # comparison of the stored hash.
    digest = apikeys.key_hash(settings.api_key_pepper, presented)
    async with _upstream(request):
        async with request.app[DB].acquire() as conn:
            principal = await repo.authenticate(conn, digest)
    if principal is None:
        try:
            async with _upstream(request):
                await ratelimit.record_auth_failure(redis, settings.redis_prefix, ip)
        except RedisResponseError as exc:
            if not is_redis_oom(exc):
                raise
        raise unauthorized()
    if not level.allows(principal.role):
        raise forbidden()
    request[PRINCIPAL] = principal
    return await handler(request)


async def _fcu_of(request: web.Request) -> int:
    spec = route_attr(request, "__wavis_fcu__", 0)
    cost = spec(request) if callable(spec) else spec
    if inspect.isawaitable(cost):  # a price that reads the body (``@fcu(async fn)``)
        cost = await cost
    return max(0, int(cost or 0))


@web.middleware
async def rate_limit(request: web.Request, handler) -> web.StreamResponse:
    if _operational(request) or getattr(request.match_info, "http_exception", None) is not None:
        # health probes, and the router's own 404/405 (no route ran: nothing to meter, and
        # counting them as anonymous would throttle authenticated clients' real calls)
        return await handler(request)
    settings = request.app[SETTINGS]
    redis = request.app[REDIS]
    p = request.get(PRINCIPAL)
    ip = client_ip(request)
    if p is not None:
        plan = ratelimit.plan_of(settings.plans, p.plan)
        windows = ratelimit.account_windows(settings.redis_prefix, plan, p.account_id, ip, await _fcu_of(request),
                                           clock.now())
        if route_attr(request, "__wavis_fcu_job__", False):  # PostgreSQL decides at the job's admission
            windows = [replace(w, blocking=False) if w.name == "monthly" else w for w in windows]
    else:
        windows = [ratelimit.burst_window(settings.redis_prefix, settings.plans["anonymous"], ip)]
    seed = metering.seeder(request, p.account_id) if p is not None else None
    try:
        async with _upstream(request):
            denied, states = await ratelimit.take(redis, windows, seed)
    except RedisResponseError as exc:
        if not is_redis_oom(exc):
            raise
        # Redis is full (noeviction): counters cannot grow. Let the request through uncounted so
        # users can still read and delete (DEL frees memory); writes that need Redis answer 507.
        log.warning("Redis is at maxmemory: rate limits not counted for %s %s", request.method, request.path)
        return await handler(request)
    response_headers(request).update(ratelimit.headers_for(states))
    if denied is not None:
        state = next(s for s in states if s.window is denied)
        details = {"window": denied.name, "limit": denied.limit}
        retry = {"Retry-After": str(max(1, state.reset))}
        if denied.name == "monthly":
            raise ApiError(402, "QUOTA_EXHAUSTED", "the monthly FCU quota of this plan is used up", details,
                           headers=retry)
        raise ApiError(429, "RATE_LIMITED", f"{denied.name} rate limit reached", details, headers=retry)
    monthly = next((w for w in windows if w.name == "monthly" and w.cost > 0), None)
    if monthly is not None:
        metering.note(request, monthly.cost)
    refund = True
    try:
        resp = await handler(request)
        refund = resp.status >= 400 or bool(request.get(REPLAYED))
        if not refund and metering.pending(request):
            # metered before the answer leaves (idempotent requests did it with their record)
            async with _upstream(request):
                async with request.app[DB].acquire() as conn:
                    await metering.record(conn, request)
        return resp
    finally:
        if monthly is not None and refund:
            try:
                async with _upstream(request):
                    await ratelimit.refund(redis, monthly)
            except Exception:  # noqa: BLE001 - never turn an answer into an error over a refund
                log.warning("could not refund %d FCU", monthly.cost)


@web.middleware
async def idempotency_mw(request: web.Request, handler) -> web.StreamResponse:
    raw = request.headers.get(idempotency.HEADER)
    if request.method not in idempotency.METHODS or raw is None or _operational(request) \
            or getattr(request.match_info, "http_exception", None) is not None:
        return await handler(request)
    idem_key = idempotency.validate_key(raw)
    settings = request.app[SETTINGS]
    p = request.get(PRINCIPAL)
    scope = f"acct:{p.account_id}" if p is not None else f"ip:{client_ip(request)}"
    body = await read_body(request)
    fp = idempotency.fingerprint(request.method, request.path_qs, body)
    slot = idempotency.Slot(request.app[DB], settings.api_key_pepper, scope, idem_key, fp, settings.upstream_timeout_s)
    async with _upstream(request):
        existing = await slot.begin(settings.idempotency_lease_s)
    if existing is not None:
        resp = slot.existing(existing, request.get(REQUEST_ID))
        request[REPLAYED] = True
        return resp
    # a job this request starts carries its slot and fingerprint: a retry whose stored answer was
    # never written (the answer was lost) replays the job's end instead of running it again
    request[IDEM_JOB_KEY] = idempotency.job_key(slot)
    try:
        try:
            resp = await handler(request)
        except Exception as exc:  # noqa: BLE001 - a 4xx is an answer to store; 5xx propagates
            err = to_api_error(exc)
            if err.status >= 500:
                raise
            resp = error_response(request, err)
    except BaseException:
        slot.release_soon(settings.upstream_timeout_s)
        raise
    async with _upstream(request):
        if resp.status < 500 and isinstance(resp, web.Response):
            # the answer and its usage in one transaction: a replay is never metered again
            await slot.store(resp, settings.idempotency_ttl_s,
                             (lambda conn: metering.record(conn, request)) if resp.status < 400 else None)
        else:
            await slot.release()
    return resp


CHAIN = [request_id, metrics, errors, security_headers, maintenance, request_timeout, body_limit, auth, rate_limit,
         idempotency_mw, admission.release_middleware]
