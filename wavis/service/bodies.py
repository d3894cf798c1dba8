"""Reading request bodies under a size limit while streaming, and validating them with pydantic.

The limit is checked against ``Content-Length`` before reading and against the running byte
count while reading chunks from ``request.content``; the body is never buffered past the
limit (aiohttp's ``client_max_size`` only applies to ``request.read()``, which we never call).
The bytes are cached on the request so later layers (idempotency, issue 5) can hash them.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from .access import RouteBodyLimit, route_attr
from .errors import ApiError, payload_too_large, schema_mismatch
from .state import BODY_BYTES, BODY_LIMIT, BODY_READING, SETTINGS

M = TypeVar("M", bound=pydantic.BaseModel)

CHUNK = 64 * 1024
OFFLOAD_JSON_ABOVE = 256 * 1024  # parse bigger bodies in a worker thread


def route_limit(request: web.Request) -> RouteBodyLimit:
    spec = route_attr(request, "__wavis_body_limit__")
    if spec is None:
        spec = RouteBodyLimit(request.app[SETTINGS].limits.default_body)
    return spec


async def effective_limit(request: web.Request) -> int:
    limit = request.get(BODY_LIMIT)
    if limit is None:
        spec = route_limit(request)
        limit = spec.ceiling
        if spec.resolve is not None:
            limit = min(limit, await spec.resolve(request))
        request[BODY_LIMIT] = limit
    return limit


async def read_body(request: web.Request) -> bytes:
    cached = request.get(BODY_BYTES)
    if cached is not None:
        return cached
    limit = await effective_limit(request)
    length = request.content_length
    if length is not None and length > limit:
        raise payload_too_large(limit)
    buf = bytearray()
    request[BODY_READING] = True  # stays set if reading is cut short (request timeout → 408)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            buf += chunk
            if len(buf) > limit:
                raise payload_too_large(limit)
    except ConnectionResetError:
        # the client went away mid-body: its fault, not an upstream outage (no 502, no alert)
        raise ApiError(400, "BAD_REQUEST", "the connection closed before the whole body arrived") from None
    request[BODY_READING] = False
    body = bytes(buf)
    request[BODY_BYTES] = body
    return body


def _errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        out.append({"loc": loc, "msg": e["msg"], "type": e["type"]})
    return out


async def parse(request: web.Request, model: type[M]) -> M:
    """Read and validate the JSON body; 422 SCHEMA_MISMATCH with ``details.errors`` if it
    is not JSON or does not fit ``model``."""
    body = await read_body(request)
    if not body.strip():
        raise schema_mismatch([{"loc": "body", "msg": "a JSON body is required", "type": "missing"}])
    try:
        if len(body) > OFFLOAD_JSON_ABOVE:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, model.model_validate_json, body)
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise schema_mismatch(_errors(exc)) from None
