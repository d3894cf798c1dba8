"""Issue 14: every malformed body gets a typed JSON 4xx — bad gzip/deflate, br, truncated and
malformed chunked encoding, a charset other than UTF-8, invalid UTF-8, decompression bombs —
and no response carries a ``Server`` banner with versions."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import pytest

from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

BODY = json.dumps({"environment": "test"}).encode()


async def _post(api, key, data: bytes, **headers):
    return await api.post("/api/v1/api-keys", data=data,
                          headers={**bearer(key), "Content-Type": "application/json", **headers})


async def test_valid_gzip_and_deflate_bodies_are_decoded(api):
    key = await api.account(role="account_admin", plan="pro")
    for enc, data in (("gzip", gzip.compress(BODY)), ("deflate", zlib.compress(BODY)),
                      ("deflate", zlib.compress(BODY)[2:-4]),  # raw deflate, as some clients send it
                      ("identity", BODY)):
        resp = await _post(api, key, data, **{"Content-Encoding": enc})
        assert resp.status == 201, (enc, await resp.text())


async def test_bad_compressed_bodies_are_typed_400s(api, caplog):
    key = await api.account(role="account_admin", plan="pro")
    gz = gzip.compress(BODY)
    cases = [("gzip", b"this is not gzip"), ("deflate", b"\x78\x9cnot deflate at all"),
             ("gzip", gz[: len(gz) // 2]),  # truncated stream
             ("gzip", gz + b"trailing garbage")]
    for enc, data in cases:
        resp = await _post(api, key, data, **{"Content-Encoding": enc})
        err = await error_of(resp, 400, "INVALID_BODY_ENCODING")
        assert enc in err["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no tracebacks for client errors


async def test_unsupported_encodings_are_typed_415s(api):
    key = await api.account(role="account_admin", plan="pro")
    for enc in ("br", "zstd", "gzip, br", "compress"):
        resp = await _post(api, key, b"\x1b\x00\x00garbage", **{"Content-Encoding": enc})
        err = await error_of(resp, 415, "UNSUPPORTED_CONTENT_ENCODING")
        assert err["details"]["supported"] == ["gzip", "deflate", "identity"]


async def test_a_decompression_bomb_is_413_before_it_is_inflated(api):
    key = await api.account(role="account_admin", plan="pro")
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in ~64 KB
    assert len(bomb) < 1024 * 1024
    resp = await _post(api, key, bomb, **{"Content-Encoding": "gzip"})
    await error_of(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_charsets_other_than_utf8_are_typed_400s_and_invalid_utf8_is_422(api):
    key = await api.account(role="account_admin", plan="pro")
    for ctype in ("application/json; charset=latin-1", "application/json; charset=utf-16",
                  "application/json; charset=no-such-charset"):
        resp = await api.post("/api/v1/api-keys", data=BODY, headers={**bearer(key), "Content-Type": ctype})
        err = await error_of(resp, 400, "INVALID_CHARSET")
        assert "UTF-8" in err["message"]
    resp = await api.post("/api/v1/api-keys", data=b'{"environment": "t\xff\xfe"}',
                          headers={**bearer(key), "Content-Type": "application/json; charset=utf-8"})
    await error_of(resp, 422, "SCHEMA_MISMATCH")  # not UTF-8 → not JSON (API.md: 422)
    ok = await api.post("/api/v1/api-keys", data=BODY, headers={**bearer(key), "Content-Type": "application/json; charset=UTF-8"})
    assert ok.status == 201


async def test_json_under_a_non_json_media_type_is_a_typed_415(api):
    """A JSON body declared as text/plain, a form or a file is refused before it is read (issue
    18); application/json, a +json type, and no Content-Type at all are read as JSON."""
    key = await api.account(role="account_admin", plan="pro")
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
                  "multipart/form-data; boundary=x", "text/json"):
        resp = await api.post("/api/v1/api-keys", data=BODY, headers={**bearer(key), "Content-Type": ctype})
        err = await error_of(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert err["details"]["expected"] == "application/json"
        assert err["details"]["content_type"] == ctype.split(";")[0]
    for ctype in ("application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"):
        ok = await api.post("/api/v1/api-keys", data=BODY, headers={**bearer(key), "Content-Type": ctype})
        assert ok.status == 201, await ok.text()
    # no Content-Type at all (a raw request: HTTP clients add one of their own)
    raw = (f"POST /api/v1/api-keys HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
           f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode() + BODY
    status, _, body = await _raw(api, raw, half_close=False)
    assert status == 201, body


async def _raw(api, request: bytes, half_close: bool = True) -> tuple[int, dict, bytes]:
    """Send raw bytes to the test server; (status, headers, body) of the answer."""
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    writer.write(request)
    await writer.drain()
    if half_close:
        writer.write_eof()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next((ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                       if ln.lower().startswith(b"content-length:")), b"0"))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    head = head[:-4]
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


async def test_truncated_and_malformed_chunked_bodies_are_typed_json_errors(make_client, service_settings):
    from dataclasses import replace

    api = await make_client(replace(service_settings, request_timeout_s=1.5))
    add_account_helper(api)
    key = await api.account(role="account_admin", plan="pro")
    head = (f"POST /api/v1/api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    # malformed chunk size: the HTTP layer itself refuses it, still as a typed JSON error
    status, headers, body = await _raw(api, head + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n", half_close=False)
    assert status == 400 and headers["Content-Type"].startswith("application/json"), (headers, body)
    err = json.loads(body)["error"]
    assert err["code"] == "BAD_REQUEST" and err["request_id"] == headers["X-Request-ID"]
    assert "chunk" in err["message"]
    # truncated: a chunk announced longer than what arrives; the client waits → 408 REQUEST_TIMEOUT
    status, headers, body = await _raw(api, head + b"20\r\n" + BODY[:10], half_close=False)
    assert status == 408 and json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT", body
    # a chunked body that ends early with the terminating chunk is just short JSON: 422, typed
    status, headers, body = await _raw(api, head + b"5\r\n" + BODY[:5] + b"\r\n0\r\n\r\n", half_close=False)
    assert status == 422 and json.loads(body)["error"]["code"] == "SCHEMA_MISMATCH", body


async def test_no_server_banner_with_versions(api):
    import aiohttp

    for resp in (await api.get("/api/v1/health"), await api.get("/api/v1/nope"),
                 await api.post("/api/v1/api-keys", data=b"{")):
        server = resp.headers.get("Server", "")
        assert "aiohttp" not in server and "Python" not in server, server
        assert aiohttp.__version__ not in server
    # a request the HTTP parser itself refuses (no handler runs) carries no banner either
    status, headers, body = await _raw(api, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                                       half_close=False)
    assert status == 400 and json.loads(body)["error"]["code"] == "BAD_REQUEST"
    assert "aiohttp" not in headers.get("Server", "") and "Python" not in headers.get("Server", "")
