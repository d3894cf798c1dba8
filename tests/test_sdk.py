"""The SDK's own rules (issue 18): retries and idempotency keys, typed errors, upload progress,
workload key generation, TFHE integers and circuits, parameter errors that name the right field.

The retry tests run the client against a small aiohttp app that answers 429/503/409/402 on
purpose (the HTTP behaviour under test is the client's); everything against the real service
is in tests/test_client.py and tests/test_examples.py."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from aiohttp import web

from wavis.client import (
    AsyncClient, Circuit, ConnectionFailedError, DepthExhaustedError, KeyPair, PaymentRequiredError,
    RateLimitedError, RetryPolicy, ServiceUnavailableError, TfheKeys,
)
from wavis.errors import ParameterError

FAST = RetryPolicy(max_retries=4, max_wait_s=5, base_s=0.01, max_backoff_s=0.05)


def scripted_app(script: list[tuple[int, dict, dict | None]], seen: list[dict]) -> web.Application:
    """Answers the scripted (status, headers, error body) in order, then 200 {"ok": true}; records
    each request's method, headers and body."""

    async def handler(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "headers": dict(request.headers), "body": await request.read()})
        if script:
            status, headers, err = script.pop(0)
            body = {"error": {"request_id": "req_" + "a" * 24, **err}} if err else {}
            return web.json_response(body, status=status, headers=headers)
        return web.json_response({"ok": True}, headers={"X-Request-ID": "req_" + "b" * 24})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/api/v1/{tail:.*}", handler)
    return app


async def client_for(aiohttp_server, script, seen, policy=FAST) -> AsyncClient:
    server = await aiohttp_server(scripted_app(script, seen))
    return AsyncClient(str(server.make_url("")), api_key="wvs_test_" + "0" * 32, retry=policy)


async def test_429_and_503_are_retried_after_retry_after_with_one_idempotency_key(aiohttp_server):
    seen: list[dict] = []
    script = [(429, {"Retry-After": "0"}, {"code": "RATE_LIMITED", "message": "slow down"}),
              (503, {"Retry-After": "0"}, {"code": "OVERLOADED", "message": "busy"}),
              (409, {}, {"code": "IDEMPOTENCY_IN_PROGRESS", "message": "running"}),
              (502, {}, {"code": "UPSTREAM_UNAVAILABLE", "message": "redis"})]
    async with await client_for(aiohttp_server, script, seen) as c:
        status, body, _ = await c.request("POST", "/compute/add", {"x": 1})
    assert status == 200 and body == {"ok": True} and len(seen) == 5
    keys = {s["headers"]["Idempotency-Key"] for s in seen}
    assert len(keys) == 1 and next(iter(keys)).startswith("sdk_")  # the same key on every retry
    assert all(json.loads(s["body"]) == {"x": 1} for s in seen)
    assert c.last_request_id == "req_" + "b" * 24


@pytest.mark.parametrize("status, code, cls", [
    (402, "QUOTA_EXHAUSTED", PaymentRequiredError),
    (409, "DEPTH_EXHAUSTED", DepthExhaustedError),
    (429, "TOO_MANY_AUTH_FAILURES", RateLimitedError),
])
async def test_402_other_4xx_and_auth_lockouts_are_never_retried(aiohttp_server, status, code, cls):
    seen: list[dict] = []
    async with await client_for(aiohttp_server, [(status, {"Retry-After": "0"}, {"code": code, "message": "no"})],
                                seen) as c:
        with pytest.raises(cls) as info:
            await c.request("POST", "/compute/add", {"x": 1})
    assert len(seen) == 1
    assert info.value.status == status and info.value.code == code and info.value.request_id == "req_" + "a" * 24


async def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once(aiohttp_server):
    seen: list[dict] = []
    script = [(503, {"Retry-After": "300"}, {"code": "MAINTENANCE", "message": "maintenance"})]
    async with await client_for(aiohttp_server, script, seen) as c:
        with pytest.raises(ServiceUnavailableError) as info:
            await c.request("GET", "/keys")
    assert len(seen) == 1 and info.value.retry_after == 300 and info.value.code == "MAINTENANCE"


async def test_retries_stop_after_max_retries(aiohttp_server):
    seen: list[dict] = []
    script = [(503, {"Retry-After": "0"}, {"code": "OVERLOADED", "message": "busy"})] * 10
    async with await client_for(aiohttp_server, script, seen) as c:
        with pytest.raises(ServiceUnavailableError):
            await c.request("GET", "/keys")
    assert len(seen) == FAST.max_retries + 1
    assert "Idempotency-Key" not in seen[0]["headers"]  # GET needs none


async def test_upload_progress_streams_the_body_in_pieces(aiohttp_server):
    seen: list[dict] = []
    calls: list[tuple[int, int]] = []
    payload = {"blob": "x" * (3 * 1024 * 1024 + 17)}
    async with await client_for(aiohttp_server, [], seen) as c:
        await c.request("POST", "/ciphertexts", payload, progress=lambda s, t: calls.append((s, t)))
    total = len(json.dumps(payload, separators=(",", ":")))
    assert calls[0] == (0, total) and calls[-1] == (total, total) and len(calls) == 5
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)
    assert json.loads(seen[0]["body"]) == payload


async def test_an_unreachable_server_is_a_typed_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    async with AsyncClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=1, base_s=0.01)) as c:
        with pytest.raises(ConnectionFailedError) as info:
            await c.health()
    assert info.value.code == "CONNECTION_FAILED" and f"127.0.0.1:{port}" in info.value.message


def test_workload_keygen_makes_exactly_the_keys_the_workload_needs():
    from wavis.ckks.linalg import matmul_galois_steps

    params = {"poly_degree": 1024, "scale_bits": 30, "max_depth": 1, "security_level": "testing"}
    keys = KeyPair.generate(params, matmul_shapes=[(64, 64)], rotations=[3, -1, 512])
    slots = keys.params.slot_count
    elts = keys.eval_keys.galois_keys
    want = set(matmul_galois_steps(64, 64, slots)) | {3, slots - 1}  # 512 ≡ 0: no key
    assert len(elts) == len(want)
    plain = KeyPair.generate(params)
    assert plain.eval_keys.galois_keys == {} and plain.eval_keys.relin_key is not None
    sums = KeyPair.generate(params, sums=True)
    assert len(sums.eval_keys.galois_keys) == slots.bit_length() - 1


def test_lowering_max_depth_under_a_kept_dnum_names_max_depth():
    from wavis.ckks import CkksParameters

    p = CkksParameters.from_dict({"poly_degree": 8192, "scale_bits": 40, "max_depth": 2,
                                  "security_level": "128-bit"}).to_dict()
    assert p["dnum"] == 3
    with pytest.raises(ParameterError) as info:
        CkksParameters.from_dict({**p, "max_depth": 1})
    assert info.value.details["field"] == "max_depth" and info.value.message.startswith("max_depth=1")
    assert "dnum" in info.value.message and info.value.details["max_dnum"] == 2


@pytest.fixture(scope="module")
def tfhe_keys():
    return TfheKeys.generate("fast_128", seed=18)


def test_tfhe_integers_and_circuits_locally(tfhe_keys):
    k = tfhe_keys
    assert (k.n(), k.big_n()) == (k.params.n, k.params.big_n) and k.preset == "fast_128"
    assert k.decrypt_uint(k.encrypt_uint(173, 8)) == 173
    with pytest.raises(ParameterError):
        k.encrypt_uint(256, 8)
    c = Circuit()
    x, y = c.inputs(k.encrypt_uint(200, 8)), c.inputs(k.encrypt_uint(77, 8))
    total, carry = c.add(x, y)
    lt, eq = c.compare(x, y)
    big = c.maximum(x, y)
    assert len(c) == 2 + 7 * 5 + (2 + 7 * 2) + (2 * 8 - 1) + (2 + 7 * 2) + 8
    outs = k.server_key.evaluate_circuit(c.gates)
    assert k.decrypt_uint(c.pick(outs, total)) == (200 + 77) % 256 and k.decrypt(c.pick(outs, carry)) is True
    assert k.decrypt(c.pick(outs, lt)) is False and k.decrypt(c.pick(outs, eq)) is False
    assert k.decrypt_uint(c.pick(outs, big)) == 200
    with pytest.raises(ParameterError):
        c.add(x, y[:4])
    with pytest.raises(ParameterError):
        c.gate("NOPE", x[0], y[0])


def test_wavis_fhe_helper_names():
    import warnings

    import wavis_fhe as wv
    from wavis.tfhe import get_preset

    keys = wv.keygen(seed=7)  # fast_128 by default
    assert keys.preset == "fast_128" and (keys.n(), keys.big_n()) == (get_preset("fast_128").n, 1024)
    assert keys.decrypt(keys.encrypt(True)) is True
    other = wv.keygen("standard_128", seed=7)
    assert other.preset == "standard_128"
    try:
        import cupy  # noqa: F401
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001
        has_gpu = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gpu = wv.keygen_gpu(device=0, seed=7)
    assert gpu.decrypt(gpu.encrypt(False)) is False
    if not has_gpu:  # the CPU fallback says so
        assert any(issubclass(w.category, wv.GpuUnavailableWarning) for w in caught)


def test_the_sync_client_has_every_async_method_with_its_signature():
    import inspect

    from wavis.client import Client

    names = [n for n, f in vars(AsyncClient).items()
             if not n.startswith("_") and (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f))]
    assert {"matmul", "bootstrap", "tfhe_run", "tfhe_blind_session", "create_webhook", "create_api_key",
            "wait_job", "infer", "list_models", "iter_keys"} <= set(names)
    for n in names:
        if n == "close":
            continue
        assert inspect.signature(getattr(Client, n)) == inspect.signature(getattr(AsyncClient, n)), n


async def test_a_circuit_over_the_batch_limit_is_refused_before_sending(tfhe_keys):
    from wavis.client.api import MAX_CIRCUIT_GATES

    c = Circuit()
    x = c.inputs(tfhe_keys.encrypt_bits([1, 0]))
    for _ in range(MAX_CIRCUIT_GATES + 1):
        c.xor(x[0], x[1])
    async with AsyncClient("http://127.0.0.1:9", retry=RetryPolicy(max_retries=0)) as client:  # never contacted
        with pytest.raises(ParameterError) as info:
            await client.tfhe_run("sess_x", c)
    assert info.value.details["gates"] == MAX_CIRCUIT_GATES + 1


async def test_key_chunk_size_falls_back_when_the_server_states_no_limit(aiohttp_server):
    """A server whose /health has no ``limits`` (older) gives the SDK's default chunk size; one
    that states a limit gives 7/10 of it; asked once per client."""
    from wavis.client.ckks import DEFAULT_KEY_CHUNK_BYTES

    seen: list[dict] = []
    async with await client_for(aiohttp_server, [], seen) as c:  # answers {"ok": true}: no limits
        assert await c.key_chunk_bytes() == DEFAULT_KEY_CHUNK_BYTES == 28 * 1024 * 1024
        assert await c.key_chunk_bytes() == DEFAULT_KEY_CHUNK_BYTES and len(seen) == 1

    async def health(request):
        return web.json_response({"status": "healthy", "limits": {"key_upload_body_bytes": 10_000_000}})

    app = web.Application()
    app.router.add_get("/api/v1/health", health)
    server = await aiohttp_server(app)
    async with AsyncClient(str(server.make_url("")), retry=FAST) as c:
        assert await c.key_chunk_bytes() == 7_000_000
