"""What aiohttp's HTTP layer answers by itself, before any handler or middleware runs —
malformed request lines, headers or chunked framing — made to follow the API's rules (issue 14):
a typed JSON error body (``{"error": {"code", "message", "request_id"}}``) instead of plain
text, and ``Server: wavis`` instead of ``Python/3.x aiohttp/3.y``.

aiohttp has no setting for either (``RequestHandler.handle_error`` builds the plain-text answer;
``web_response.SERVER_SOFTWARE`` is the default banner), so ``install()`` replaces the two,
once per process; the app's own responses get their ``Server`` header from
``app._server_header``. The replacement keeps aiohttp's contract: it logs, refuses when part
of a response was already sent, and closes the connection.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web, web_protocol, web_response

from .ids import new_id

log = logging.getLogger("wavis.service")

SERVER_NAME = "wavis"  # the Server header (no versions)
_CODES = {400: "BAD_REQUEST", 408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE", 414: "URI_TOO_LONG",
          431: "HEADERS_TOO_LARGE", 500: "INTERNAL_ERROR", 501: "NOT_IMPLEMENTED"}
_installed = False


def _handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                  message: str | None = None) -> web.StreamResponse:
    if status >= 500:
        self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
    else:
        log.info("malformed HTTP request from %s: %s", request.remote, (message or repr(exc)).splitlines()[0][:200])
    if request.writer.output_size > 0:
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    code = _CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    if status >= 500:
        text = "internal error; quote the request id when reporting it"
    else:
        text = "malformed HTTP request: " + ((message or str(exc or "") or code).splitlines()[0][:200])
    rid = new_id("req")
    body = {"error": {"code": code, "message": text, "request_id": rid}}
    resp = web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json",
                        headers={"X-Request-ID": rid, "Server": SERVER_NAME, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})
    resp.force_close()
    return resp


def install() -> None:
    """Replace aiohttp's plain-text protocol errors and its version banner (idempotent)."""
    global _installed
    if _installed:
        return
    web_protocol.RequestHandler.handle_error = _handle_error
    web_response.SERVER_SOFTWARE = SERVER_NAME
    _installed = True
