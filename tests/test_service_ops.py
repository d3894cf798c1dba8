"""Operations: /health fields, maintenance mode, request timeouts, OpenAPI + schemathesis,
Prometheus metrics, JSON logs without secrets, a real Redis stopped and restarted, and the
SIGTERM lifecycle of ``wavis serve`` — against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from wavis.service import maintenance
from wavis.service.logs import JsonFormatter, RedactingFilter
from wavis.service.middleware import RequestIdLogFilter
from wavis.service.state import REDIS, SETTINGS

from conftest import TEST_PEPPER, TEST_REDIS_URL, add_account_helper, bearer

pytestmark = pytest.mark.service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_health_has_every_api_md_field(api):
    body = await (await api.get("/api/v1/health")).json()
    for f in ("status", "version", "uptime_seconds", "fhe_engine", "backend", "gpu_available", "gpu_name",
              "active_sessions", "active_jobs", "queue_depth", "ciphertext_cache_usage_pct",
              "ciphertext_cache_warning", "dependencies"):
        assert f in body, f
    assert {d["name"] for d in body["dependencies"]} == {"postgres", "redis", "stripe"}
    for d in body["dependencies"]:
        assert set(d) >= {"name", "status", "latency_ms", "error"}


async def test_maintenance_from_redis_flag_and_env(api, make_client, service_settings):
    key = await api.account()
    r, prefix = api.app[REDIS], api.app[SETTINGS].redis_prefix
    await maintenance.set_mode(r, prefix, True, 120)
    try:
        for method, path in (("GET", "/api/v1/keys"), ("POST", "/api/v1/onboarding/temp-key"),
                             ("GET", "/api/v1/openapi.json")):
            resp = await api.request(method, path, headers=bearer(key))
            assert resp.status == 503 and resp.headers["Retry-After"] == "120"
            assert (await resp.json())["error"]["code"] == "MAINTENANCE"
        health = await api.get("/api/v1/health")
        assert health.status == 200 and (await health.json())["maintenance"] is True
        assert (await api.get("/livez")).status == 200 and (await api.get("/metrics")).status == 200
    finally:
        await maintenance.set_mode(r, prefix, False)
    assert (await api.get("/api/v1/keys", headers=bearer(key))).status == 200
    env_on = await make_client(replace(service_settings, maintenance=True))
    resp = await env_on.get("/api/v1/keys")
    assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0


def test_admin_maintenance_cli(service_redis_url, tmp_path):
    env = {**os.environ, "WAVIS_REDIS_URL": service_redis_url, "WAVIS_REDIS_PREFIX": "wavis_cli_test:"}
    cmd = [sys.executable, "-m", "wavis.cli", "admin", "maintenance"]
    on = subprocess.run([*cmd, "on", "--retry-after", "60", "--data-dir", str(tmp_path)], env=env,
                        capture_output=True, text=True, timeout=30)
    assert on.returncode == 0 and "maintenance: on" in on.stdout, on.stderr
    import redis

    client = redis.Redis.from_url(service_redis_url)
    assert client.get("wavis_cli_test:maintenance") == b"60"
    off = subprocess.run([*cmd, "off", "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert off.returncode == 0 and "maintenance: off" in off.stdout
    assert client.get("wavis_cli_test:maintenance") is None
    client.close()


async def test_slow_body_gets_408(make_client, service_settings):
    client = await make_client(replace(service_settings, request_timeout_s=0.5))
    add_account_helper(client)
    key = await client.account()

    async def trickle():
        yield b'{"key_id": "key_x", '
        await asyncio.sleep(2)
        yield b'"ciphertext_b64": "AA=="}'

    t0 = time.monotonic()
    resp = await client.post("/api/v1/ciphertexts", data=trickle(),
                             headers={**bearer(key), "Content-Type": "application/json"})
    assert resp.status == 408 and (await resp.json())["error"]["code"] == "REQUEST_TIMEOUT"
    assert time.monotonic() - t0 < 2.5


async def test_openapi_document_covers_every_route(api):
    doc = await (await api.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    for resource in api.app.router.resources():
        for route in resource:
            if route.method == "*":
                continue
            if resource.canonical == "/api/v1/compute/{operation}":
                continue  # one path per operation (below)
            assert route.method.lower() in doc["paths"].get(resource.canonical, {}), (resource.canonical, route.method)
    op = doc["paths"]["/api/v1/keys/generate"]["post"]
    assert op["deprecated"] is True and op["security"] == [{"bearer": []}]
    assert "KeyGenerateRequest" in json.dumps(op["requestBody"])
    assert "security" not in doc["paths"]["/api/v1/health"]["get"]
    params = doc["paths"]["/api/v1/keys"]["get"]["parameters"]
    assert {p["name"] for p in params if "name" in p} == {"limit", "cursor"}
    assert {"$ref": "#/components/parameters/RequestId"} in params


async def test_openapi_ckks_params_declare_every_field_a_key_carries(api):
    """Every field of a key's ``params`` (what the server resolved: special_mod_bits, dnum, …, to
    be sent back unchanged) is declared in the served CkksParams schema, so a client generated
    from the document can send them; a wrong type of one is 422 with the field's path."""
    doc = await (await api.get("/api/v1/openapi.json")).json()
    props = doc["components"]["schemas"]["CkksParams"]["properties"]
    key = await api.account(plan="pro")
    r = await api.post("/api/v1/keys/generate", headers=bearer(key),
                       json={"params": {"poly_degree": 1024, "scale_bits": 30, "max_depth": 1,
                                        "security_level": "testing"}})
    assert r.status == 200, await r.text()
    returned = (await r.json())["params"]
    assert {"special_mod_bits", "dnum", "first_mod_bits", "magnitude_bits"} <= set(returned)
    assert set(returned) <= set(props), sorted(set(returned) - set(props))
    assert "bootstrap_preset" in props
    r = await api.post("/api/v1/keys/generate", headers=bearer(key),
                       json={"params": {**returned, "special_mod_bits": "50"}})
    body = await r.json()
    assert r.status == 422 and body["error"]["details"]["errors"][0]["loc"] == "params.special_mod_bits", body
    r = await api.post("/api/v1/keys/generate", headers=bearer(key), json={"params": returned})
    assert r.status == 200 and (await r.json())["params"] == returned  # the literal round-trips


async def test_openapi_one_path_and_schema_per_compute_operation_headers_head_and_servers(make_client,
                                                                                           service_settings):
    """Issue 18: /compute/{add,…} each with the request model that operation validates against,
    every API.md header documented, HEAD routes listed, `servers` from WAVIS_PUBLIC_URL."""
    from wavis.service import fhe
    from wavis.service.routes.compute import REQUEST_MODELS

    api = await make_client(service_settings)
    doc = await (await api.get("/api/v1/openapi.json")).json()
    assert "/api/v1/compute/{operation}" not in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert set(REQUEST_MODELS) == set(fhe.ALL_OPERATIONS)
    names = set()
    for op, model in REQUEST_MODELS.items():
        post = doc["paths"][f"/api/v1/compute/{op}"]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        names.add(name)
        schema = schemas[name]
        # the documented schema is the one the operation validates against: same fields, same required
        want = model.model_json_schema(by_alias=True)
        assert set(schema["properties"]) == set(want["properties"]), op
        assert set(schema.get("required", [])) == set(want.get("required", [])), op
        assert "501" not in post["responses"]
        ok_headers = post["responses"]["200"]["headers"]
        assert {"X-Noise-Budget-Remaining", "X-Noise-Budget-Warning", "X-Noise-Budget-Recovery",
                "X-Request-ID", "X-RateLimit-Daily-Remaining", "Idempotent-Replayed"} <= set(ok_headers)
        assert "Retry-After" in post["responses"]["429"]["headers"] and "Retry-After" in post["responses"]["503"]["headers"]
        assert {"$ref": "#/components/parameters/IdempotencyKey"} in post["parameters"]
    assert len(names) == len(REQUEST_MODELS)  # a schema of its own per operation
    assert "matrix" in schemas["ComputeMatmulRequest"]["properties"]
    assert "steps" in schemas["ComputeRotateRequest"]["properties"]
    assert "matrix" not in schemas["ComputeAddRequest"]["properties"]
    headers = doc["components"]["headers"]
    for h in ("X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy", "Idempotent-Replayed",
              "X-Noise-Budget-Recovery", "X-RateLimit-Burst-Reset", "X-RateLimit-Monthly-Limit"):
        assert h in headers, h
    assert doc["components"]["parameters"]["IdempotencyKey"]["name"] == "Idempotency-Key"
    head = doc["paths"]["/api/v1/health"]["head"]
    assert all("content" not in r for r in head["responses"].values())
    resp = await api.head("/api/v1/health")
    assert resp.status == 200
    assert doc["servers"] == [{"url": f"http://{api.host}:{api.port}", "description": "this WAVIS server"}]
    public = await make_client(replace(service_settings, public_url="https://fhe.example.com"))
    doc = await (await public.get("/api/v1/openapi.json")).json()
    assert doc["servers"][0]["url"] == "https://fhe.example.com"


async def test_schemathesis_finds_no_500_and_no_schema_violation(make_client, service_settings, tmp_path):
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(exe).exists():
        pytest.skip("schemathesis is not installed")
    # a server memory budget of 512 MiB: the fuzzer's enterprise key may otherwise be admitted for a
    # bootstrappable N=2^16 key set (minutes of CPU, GBs), and the app's teardown waits for it
    api = await make_client(replace(service_settings, memory_budget_bytes=512 * 2**20))
    add_account_helper(api)
    key = await api.account(role="account_admin", plan="enterprise")
    base = f"http://{api.host}:{api.port}"
    proc = await asyncio.create_subprocess_exec(
        exe, "run", f"{base}/api/v1/openapi.json", "--url", base,
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "-n", "8", "--seed", "1", "--phases", "examples,fuzzing", "--request-timeout", "20",
        "--generation-deterministic", "--exclude-path", "/api/v1/decrypt",  # documented: always 501
        "--exclude-path", "/api/v1/billing/stripe_webhook",  # documented: 502 STRIPE_NOT_CONFIGURED here
        "-H", f"Authorization: Bearer {key}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]


async def test_metrics_count_requests_by_route_template(api):
    key = await api.account()
    for ident in ("key_a", "key_b"):
        await api.get(f"/api/v1/keys/{ident}", headers=bearer(key))
    text = await (await api.get("/metrics")).text()
    assert 'wavis_http_requests_total{method="GET",route="/api/v1/keys/{key_id}",status="404"} 2.0' in text
    assert "wavis_http_request_duration_seconds_bucket" in text
    for name in ("wavis_compute_queue_depth", "wavis_ciphertext_cache_usage_ratio", "wavis_http_requests_in_flight",
                 "wavis_ciphertext_evictions_total"):
        assert name in text
    assert "key_a" not in text


async def test_json_logs_carry_request_ids_and_no_secrets(api, ckks_pair_factory):
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Capture(level=logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdLogFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        pair = ckks_pair_factory(max_depth=1, index=0)
        key = await api.account(role="account_admin")
        body = pair.upload_body()
        resp = await api.post("/api/v1/keys/upload", json=body, headers=bearer(key))
        key_id = (await resp.json())["key_id"]
        ct = serialize_ct(pair)
        await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": ct}, headers=bearer(key))
        new = await (await api.post("/api/v1/api-keys", json={"environment": "live"}, headers=bearer(key))).json()
        await api.get("/api/v1/keys", headers=bearer("wvs_live_" + "f" * 32))
        # a careless log line still comes out redacted
        logging.getLogger("wavis.service").warning("oops %s %s", key, ct[:200])
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    assert records
    secrets = [key, new["key"], TEST_PEPPER.decode(), api.app[SETTINGS].master_key.hex(),
               body["public_key"][:120], body["eval_key"][:120], ct[:120], "f" * 32]
    for line in records:
        parsed = json.loads(line)
        assert {"ts", "level", "logger", "request_id", "msg"} <= set(parsed)
        for s in secrets:
            assert s not in line, line[:300]


def serialize_ct(pair) -> str:
    from wavis import serialize

    return serialize.b64encode(serialize.dumps(pair.encrypt([0.25])))


@pytest.fixture
def own_redis(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()

    def start():
        p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return p
            except OSError:
                time.sleep(0.05)
        p.kill()
        raise RuntimeError("redis-server did not start")

    box = {"proc": start()}

    def stop():
        box["proc"].terminate()
        box["proc"].wait(10)

    def restart():
        box["proc"] = start()

    yield f"redis://127.0.0.1:{port}/0", stop, restart
    if box["proc"].poll() is None:
        box["proc"].kill()
        box["proc"].wait()


async def test_redis_stopped_and_restarted_502_fast_then_recovers(make_client, service_settings, own_redis):
    url, stop, restart = own_redis
    client = await make_client(replace(service_settings, redis_url=url, upstream_timeout_s=1.0, probe_timeout_s=1.0))
    add_account_helper(client)
    key = await client.account()
    assert (await client.get("/api/v1/keys", headers=bearer(key))).status == 200
    stop()
    for _ in range(3):
        t0 = time.monotonic()
        resp = await client.get("/api/v1/keys", headers=bearer(key))
        assert resp.status == 502 and (await resp.json())["error"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert time.monotonic() - t0 < 2.5
    assert (await client.get("/readyz")).status == 503
    assert (await (await client.get("/api/v1/health")).json())["status"] == "unavailable"
    restart()
    deadline = time.monotonic() + 10
    while True:
        resp = await client.get("/api/v1/keys", headers=bearer(key))
        if resp.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert resp.status == 200  # recovered by itself
    assert (await client.get("/readyz")).status == 200


@pytest.mark.timeout(90)
def test_sigterm_readyz_503_first_then_drains_in_flight(tmp_path, service_database_url):
    port = free_port()
    env = {**os.environ, "WAVIS_DATABASE_URL": service_database_url, "WAVIS_REDIS_URL": TEST_REDIS_URL,
           "WAVIS_REDIS_PREFIX": "wavis_sigterm_test:", "WAVIS_API_KEY_PEPPER": TEST_PEPPER.decode(),
           "WAVIS_PRE_STOP_S": "1.5", "WAVIS_SHUTDOWN_TIMEOUT_S": "10"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "wavis.cli", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "data")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # an in-flight request: headers and half a body now, the rest after SIGTERM
        s = socket.create_connection(("127.0.0.1", port))
        body = b'{"public_key": "AA==", "eval_key": "AA==", "params": {"poly_degree": 12}}'
        s.sendall(b"POST /api/v1/onboarding/temp-key HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.4)
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert info.value.code == 503  # not ready while still serving (pre-stop)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as r:
            assert r.status == 200
        s.sendall(body[10:])
        reply = s.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.1 429"), reply[:200]
        s.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    lines = (tmp_path / "serve.log").read_text().splitlines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(p["msg"] == "stopped" for p in parsed), lines[-10:]
    assert any(p.get("request_id", "-").startswith("req_") for p in parsed)


async def test_nul_bytes_in_ids_are_client_errors_not_500(api):
    """PostgreSQL text cannot hold NUL: such ids must be answered 4xx, never 500 (public routes too)."""
    key = await api.account()
    h = {"Authorization": f"Bearer {key}"}
    for method, path in (("DELETE", "/api/v1/onboarding/temp-key/wvs_trial_0000000%00"), ("GET", "/api/v1/keys/%00"),
                         ("DELETE", "/api/v1/ciphertexts/%00"), ("DELETE", "/api/v1/tfhe/session/%00")):
        resp = await api.request(method, path, headers=h)
        assert 400 <= resp.status < 500, (method, path, resp.status, await resp.text())
    resp = await api.post("/api/v1/compute/add", json={"key_id": "\u0000", "ciphertext_ids": ["a", "b"]}, headers=h)
    assert 400 <= resp.status < 500, await resp.text()


async def test_full_redis_is_only_a_full_cache(make_client, service_settings, own_redis, ckks_pair_factory):
    """Redis is only a cache of the durable blob store: at maxmemory (noeviction) uploads still
    answer 201 and every ciphertext reads back; deletes work. Nothing answers 500 or 507."""
    import redis.asyncio as aioredis

    from wavis import serialize

    url, _, _ = own_redis
    client = await make_client(replace(service_settings, redis_url=url))
    add_account_helper(client)
    pair = ckks_pair_factory(max_depth=1)
    h = bearer(await client.account())
    resp = await client.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    key_id = (await resp.json())["key_id"]
    body = {"key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([0.5])))}
    first = await client.post("/api/v1/ciphertexts", json=body, headers=h)
    assert first.status == 201, await first.text()
    ids = [(await first.json())["ciphertext_id"]]
    r = aioredis.from_url(url)
    await r.config_set("maxmemory-policy", "noeviction")
    used = int((await r.info("memory"))["used_memory"])
    await r.config_set("maxmemory", str(max(1, used // 2)))  # every write refused, Lua scripts included
    try:
        for _ in range(3):
            resp = await client.post("/api/v1/ciphertexts", json=body, headers=h)
            assert resp.status == 201, await resp.text()
            ids.append((await resp.json())["ciphertext_id"])
        for ct_id in ids:
            resp = await client.get(f"/api/v1/ciphertexts/{ct_id}", headers=h)
            assert resp.status == 200, await resp.text()
        resp = await client.delete(f"/api/v1/ciphertexts/{ids[0]}", headers=h)
        assert resp.status == 204, await resp.text()
    finally:
        await r.config_set("maxmemory", "0")
        await r.aclose()
    resp = await client.get(f"/api/v1/ciphertexts/{ids[0]}", headers=h)
    assert resp.status == 404
    assert (await client.get(f"/api/v1/ciphertexts/{ids[1]}", headers=h)).status == 200


async def test_an_evicting_redis_is_warned_about(own_redis, caplog):
    import redis.asyncio as aioredis

    from wavis.service.app import warn_if_redis_evicts

    url, _, _ = own_redis
    r = aioredis.from_url(url)
    try:
        await r.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING, logger="wavis.service"):
            assert await warn_if_redis_evicts(r) == "allkeys-lru"
        assert any("noeviction" in rec.getMessage() for rec in caplog.records)
        await r.config_set("maxmemory-policy", "noeviction")
        caplog.clear()
        assert await warn_if_redis_evicts(r) == "noeviction"
        assert not any("noeviction" in rec.getMessage() for rec in caplog.records)
    finally:
        await r.aclose()
