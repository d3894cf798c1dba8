"""Body rules: 422 SCHEMA_MISMATCH for non-JSON / wrong schema, 413 while streaming (before the
body is buffered whole) — against real PG and Redis. None of these may answer 500."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import bearer, error_of

pytestmark = pytest.mark.service

MiB = 1024 * 1024


@pytest.mark.parametrize("path", ["/api/v1/ciphertexts", "/api/v1/keys/upload", "/api/v1/compute/add"])
@pytest.mark.parametrize("data", [b"not json", b"{", b"[1, 2]", b"", b'"just a string"', b"\xff\xfe"])
async def test_not_json_or_not_an_object_is_422(api, path, data):
    key = await api.account()
    err = await error_of(await api.post(path, data=data, headers={**bearer(key), "Content-Type": "application/json"}),
                         422, "SCHEMA_MISMATCH")
    assert err["details"]["errors"] and all("loc" in e and "msg" in e for e in err["details"]["errors"])


@pytest.mark.parametrize("path, body, locs", [
    ("/api/v1/ciphertexts", {"key_id": 5}, {"key_id", "ciphertext_b64"}),
    ("/api/v1/ciphertexts", {"key_id": "key_a", "ciphertext_b64": "AA==", "extra": 1}, {"extra"}),
    ("/api/v1/keys/upload", {"public_key": "AA==", "eval_key": "AA=="}, {"params"}),
    ("/api/v1/keys/upload", {"public_key": "AA==", "eval_key": "AA==", "params": {"poly_degree": "big"}},
     {"params.poly_degree"}),
    ("/api/v1/keys/upload", {"public_key": "AA==", "eval_key": "AA==", "scheme": "bfv",
                             "params": {"poly_degree": 8192}}, {"scheme"}),
    ("/api/v1/compute/add", {"key_id": "key_a", "ciphertext_ids": ["ct_a"]}, {"ciphertext_ids"}),
    ("/api/v1/compute/multiply", {"key_id": "key_a", "ciphertext_ids": "ct_a"}, {"ciphertext_ids"}),
    ("/api/v1/compute/add", {"ciphertext_ids": ["ct_a", "ct_b"]}, {"key_id"}),
])
async def test_wrong_schema_is_422_with_field_paths(api, path, body, locs):
    key = await api.account()
    err = await error_of(await api.post(path, json=body, headers=bearer(key)), 422, "SCHEMA_MISMATCH")
    assert {e["loc"] for e in err["details"]["errors"]} == locs
    assert "AA==" not in json.dumps(err)  # inputs are not echoed back


async def test_big_content_length_is_413_before_the_body_is_sent(api):
    """Only the headers and one byte go out; the server must answer 413 from Content-Length."""
    key = await api.account()
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        for length, auth in ((3 * MiB, True), (100 * MiB, False)):
            head = (f"POST /api/v1/ciphertexts HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {length}\r\n" + (f"Authorization: Bearer {key}\r\n" if auth else "") + "\r\n{")
            writer.write(head.encode())
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), timeout=5)
            assert status.split()[1] == b"413", status
            headers = {}
            while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
            # the rest of the announced body is never sent: open a new connection for the next case
            writer.close()
            reader, writer = await asyncio.open_connection(api.host, api.port)
    finally:
        writer.close()


async def test_streamed_body_without_content_length_is_413_while_streaming(api):
    key = await api.account()
    total = 48 * MiB
    sent = 0
    at_response = None

    async def body():
        nonlocal sent
        yield b'{"key_id": "key_x", "ciphertext_b64": "'
        chunk = b"A" * (64 * 1024)
        while sent < total:
            sent += len(chunk)
            yield chunk
            await asyncio.sleep(0.002)
        yield b'"}'

    resp = await api.post("/api/v1/ciphertexts", data=body(), headers={**bearer(key), "Content-Type": "application/json"})
    at_response = sent
    err = await error_of(resp, 413, "PAYLOAD_TOO_LARGE")
    assert err["details"]["limit_bytes"] == 2 * MiB
    assert at_response < total // 4, f"{at_response} bytes were sent before the 413"


async def test_other_bodies_are_limited_to_1_mib(api):
    key = await api.account()
    big = {"key_id": "key_a", "ciphertext_ids": ["ct_a", "ct_b"], "pad": "x" * (MiB + 10)}
    err = await error_of(await api.post("/api/v1/compute/add", json=big, headers=bearer(key)), 413,
                         "PAYLOAD_TOO_LARGE")
    assert err["details"]["limit_bytes"] == MiB


async def test_ciphertext_body_just_under_2_mib_is_read(api):
    """Under the limit the body is parsed (then rejected for the unknown key: 404, not 413)."""
    key = await api.account()
    body = {"key_id": "key_missing", "ciphertext_b64": "A" * (2 * MiB - 100)}
    await error_of(await api.post("/api/v1/ciphertexts", json=body, headers=bearer(key)), 404, "NOT_FOUND")


async def test_client_leaving_mid_body_is_not_an_upstream_outage(api):
    """QA finding: a client that announced a body and closed the connection part-way was logged
    and counted as 502 UPSTREAM_UNAVAILABLE (a Redis/Postgres outage to alerting). It is a
    client error now: 400 when the body read fails, 499 ("client closed request") when aiohttp
    cancels the handler; no 5xx is recorded."""
    from wavis.service.state import METRICS

    reg = api.app[METRICS].registry

    def count(status: str) -> float:
        return sum(s.value for m in reg.collect() if m.name == "wavis_http_requests"
                   for s in m.samples if s.name.endswith("_total") and s.labels.get("status") == status)

    key = await api.account()
    before_502, before_400 = count("502"), count("400")
    reader, writer = await asyncio.open_connection(api.host, api.port)
    head = (f"POST /api/v1/ciphertexts HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\nAuthorization: Bearer {key}\r\n\r\n" + '{"key_id": "key_x", "cip')
    writer.write(head.encode())
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    for _ in range(50):  # the server notices the lost connection and finishes the request
        await asyncio.sleep(0.1)
        if count("400") + count("499") + count("500") + count("502") > before_400:
            break
    # either the body read fails (400) or aiohttp cancels the handler (499): never 5xx
    assert count("502") == before_502 and count("500") == 0
    assert count("400") + count("499") == before_400 + 1
