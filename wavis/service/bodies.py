"""Reading request bodies under a size limit while streaming, and validating them with pydantic.

The limit is checked against ``Content-Length`` before reading and against the running byte
count while reading chunks from ``request.content``; the body is never buffered past the
limit (aiohttp's ``client_max_size`` only applies to ``request.read()``, which we never call).
The bytes are cached on the request so later layers (idempotency, issue 5) can hash them.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, TypeVar

import pydantic
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.http_exceptions import HttpProcessingError

from .access import RouteBodyLimit, route_attr
from .errors import ApiError, payload_too_large, schema_mismatch
from .state import BODY_BYTES, BODY_LIMIT, BODY_READING, PARSED, SETTINGS

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


SUPPORTED_ENCODINGS = ["gzip", "deflate", "identity"]
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Inflater:
    """``Content-Encoding: gzip | deflate`` (RFC 9110 §8.4.1) decoded while streaming, never
    past the route's limit (a decompression bomb is a 413 after ``limit`` bytes of output)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._d = None

    def _bad(self, why: str) -> ApiError:
        return ApiError(400, "INVALID_BODY_ENCODING", f"the body is not valid {self.coding} data ({why})",
                        {"content_encoding": self.coding})

    def feed(self, chunk: bytes, room: int) -> bytes:
        if self._d is None:
            wbits = _WBITS[self.coding]
            if self.coding == "deflate" and chunk and chunk[0] & 0x0F != 8:
                wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as some clients send
            self._d = zlib.decompressobj(wbits)
        if self._d.eof:
            raise self._bad("data after the end of the compressed stream")
        try:
            out = self._d.decompress(chunk, room + 1)  # +1: notice passing the limit, inflate no further
        except zlib.error as exc:
            raise self._bad(str(exc)) from None
        if self._d.unused_data:
            raise self._bad("data after the end of the compressed stream")
        return out

    def finish(self) -> None:
        if self._d is not None and not self._d.eof:
            raise self._bad("the compressed stream is truncated")


def _inflater(request: web.Request) -> _Inflater | None:
    raw = request.headers.get("Content-Encoding")
    if raw is None:
        return None
    codings = [c.strip().lower() for c in raw.split(",") if c.strip() and c.strip().lower() != "identity"]
    if not codings:
        return None
    if getattr(request.content, "total_compressed_bytes", None) is not None:
        return None  # the HTTP layer already decoded it (a runner with auto_decompress)
    if len(codings) > 1 or codings[0] not in _WBITS:
        raise ApiError(415, "UNSUPPORTED_CONTENT_ENCODING",
                       f"Content-Encoding {raw[:40]!r} is not supported; send gzip, deflate or an uncompressed body",
                       {"supported": SUPPORTED_ENCODINGS})
    return _Inflater("gzip" if codings[0] == "x-gzip" else codings[0])


async def read_body(request: web.Request) -> bytes:
    """The request body (decoded from gzip/deflate), at most the route's limit.

    Raises: ApiError 413 PAYLOAD_TOO_LARGE (also for a decompression bomb), 400
    INVALID_BODY_ENCODING (bad gzip/deflate data, malformed chunked framing), 415
    UNSUPPORTED_CONTENT_ENCODING (br, zstd, …), 400 BAD_REQUEST (the client went away)."""
    cached = request.get(BODY_BYTES)
    if cached is not None:
        return cached
    limit = await effective_limit(request)
    length = request.content_length
    inflater = _inflater(request)
    if length is not None and length > limit:
        raise payload_too_large(limit)
    buf = bytearray()
    request[BODY_READING] = True  # stays set if reading is cut short (request timeout → 408)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            if inflater is not None:
                chunk = inflater.feed(chunk, limit - len(buf))
            buf += chunk
            if len(buf) > limit:
                raise payload_too_large(limit)
        if inflater is not None:
            inflater.finish()
    except (ConnectionResetError, ClientConnectionResetError):
        # the client went away mid-body: its fault, not an upstream outage (no 502, no alert)
        raise ApiError(400, "BAD_REQUEST", "the connection closed before the whole body arrived") from None
    except HttpProcessingError as exc:
        # malformed chunked framing, a body shorter than its Content-Length, bad compressed data
        raise ApiError(400, "INVALID_BODY_ENCODING", f"the request body is malformed ({exc.message or type(exc).__name__})",
                       {"reason": type(exc).__name__}) from None
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


JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def _check_charset(request: web.Request) -> None:
    """JSON is UTF-8 (RFC 8259 §8.1): a declared charset other than UTF-8 (or ASCII) is 400
    INVALID_CHARSET; bytes that are not UTF-8 are not JSON (422 SCHEMA_MISMATCH, from pydantic)."""
    ctype = request.headers.get("Content-Type", "")
    charset = None
    for part in ctype.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower()
    if charset is not None and charset not in JSON_CHARSETS:
        raise ApiError(400, "INVALID_CHARSET", f"JSON bodies must be UTF-8, not charset={charset[:40]!r}",
                       {"charset": charset[:40]})


def _check_media_type(request: web.Request) -> None:
    """Request bodies are JSON: a declared media type other than ``application/json`` (or a
    ``+json`` suffix type, RFC 6839) is 415 UNSUPPORTED_MEDIA_TYPE (RFC 9110 §15.5.16), before
    the body is read. No Content-Type at all is read as JSON."""
    ctype = request.headers.get("Content-Type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                   f"request bodies are JSON: send Content-Type: application/json, not {media[:60]!r}",
                   {"content_type": media[:60], "expected": "application/json"})


async def parse(request: web.Request, model: type[M]) -> M:
    """Read and validate the JSON body; 415 UNSUPPORTED_MEDIA_TYPE for a declared media type
    that is not JSON; 422 SCHEMA_MISMATCH with ``details.errors`` if it is not JSON (invalid
    UTF-8 included) or does not fit ``model``; 400 INVALID_CHARSET for a declared charset other
    than UTF-8. The instance is kept on the request: a second call with the same ``model``
    (an ``@fcu`` price that reads the body, then the handler) validates once."""
    cached = request.get(PARSED)
    if cached is not None and cached[0] is model:
        return cached[1]
    _check_media_type(request)
    _check_charset(request)
    body = await read_body(request)
    if not body.strip():
        raise schema_mismatch([{"loc": "body", "msg": "a JSON body is required", "type": "missing"}])
    try:
        if len(body) > OFFLOAD_JSON_ABOVE:
            loop = asyncio.get_running_loop()
            obj = await loop.run_in_executor(None, model.model_validate_json, body)
        else:
            obj = model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise schema_mismatch(_errors(exc)) from None
    request[PARSED] = (model, obj)
    return obj
