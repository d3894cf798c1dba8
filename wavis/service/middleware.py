"""The middleware chain, outermost first (DESIGN.md §5):

    request id → errors → security headers → body-size limit → auth → [rate limit → idempotency]

* ``request_id``: assigns/reuses ``X-Request-ID``, binds it to log records, and applies the
  response-header bag (``RESPONSE_HEADERS``) to *every* response, errors included. Inner
  middlewares that need headers on all responses (security headers now, rate-limit headers
  in issue 5) put them in the bag instead of on a response they may never see.
* ``errors``: the only place exceptions become error bodies: ``ApiError``, aiohttp's HTTP
  exceptions (404/405 …), library ``WavisError``s (one mapping table, ``errors.py``),
  upstream failures (→ 502), anything else (→ 500, logged with its traceback, no details out).
* ``security_headers``, ``body_limit`` (Content-Length against the route's ceiling before
  anything reads), ``auth`` (Bearer key → ``Principal``; role check from ``@access``).
Issue 5 appends ``rate_limit`` and ``idempotency`` after ``auth`` in ``CHAIN``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

import asyncpg
import redis.exceptions
from aiohttp import web
from multidict import CIMultiDict

from wavis.errors import WavisError

from . import apikeys, repo
from .access import Access, AccessLevel, route_attr
from .bodies import route_limit
from .errors import ApiError, forbidden, from_library_error, payload_too_large, unauthorized, upstream_unavailable
from .ids import REQUEST_ID_RE, new_id
from .schemas import ErrorDetail, ErrorResponse
from .state import DB, PRINCIPAL, REQUEST_ID, RESPONSE_HEADERS, SETTINGS

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
    if isinstance(exc, asyncio.TimeoutError):
        return upstream_unavailable("upstream")
    for cls, name in _UPSTREAM_ERRORS:
        if isinstance(exc, cls):
            return upstream_unavailable(name)
    return ApiError(500, "INTERNAL_ERROR", "internal error; quote the request id when reporting it")


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
    presented = apikeys.from_authorization(request.headers.get("Authorization"))
    if presented is None:
        raise unauthorized()
    settings = request.app[SETTINGS]
    digest = apikeys.key_hash(settings.api_key_pepper, presented)
    async with asyncio.timeout(settings.upstream_timeout_s):
        async with request.app[DB].acquire() as conn:
            principal = await repo.authenticate(conn, digest)
    if principal is None:
        raise unauthorized()
    if not level.allows(principal.role):
        raise forbidden()
    request[PRINCIPAL] = principal
    return await handler(request)


CHAIN = [request_id, errors, security_headers, body_limit, auth]
