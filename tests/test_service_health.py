"""/health, /livez, /readyz, request ids, security headers, 404/405 — against real PG and Redis."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

pytestmark = pytest.mark.service

REQ_ID = re.compile(r"^req_[0-9a-f]{24}$")


async def test_health_reports_real_dependencies(api):
    resp = await api.get("/api/v1/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "healthy"
    deps = {d["name"]: d for d in body["dependencies"]}
    assert deps["postgres"]["status"] == "healthy" and deps["postgres"]["latency_ms"] >= 0
    assert deps["redis"]["status"] == "healthy" and deps["redis"]["latency_ms"] >= 0
    assert deps["stripe"]["status"] == "not_configured"
    for field in ("version", "uptime_seconds", "fhe_engine", "backend", "gpu_available", "active_jobs",
                  "queue_depth", "ciphertext_cache_warning"):
        assert field in body
    assert REQ_ID.match(resp.headers["X-Request-ID"])
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_health_reports_the_backend_in_use(api):
    """backend, device and SIMD path come from the engine's device (WAVIS_BACKEND, default cpu),
    through the backend's info(), not from a constant."""
    from wavis.backend import get
    from wavis.service.state import ENGINE

    info = get("cpu").info()
    body = await (await api.get("/api/v1/health")).json()
    assert body["backend"] == "cpu" and body["gpu_available"] is False and body["gpu_name"] is None
    assert body["device_name"] == info.device_name and body["device_name"]
    assert body["simd_path"] == info.simd_path
    assert body["simd_path"] in ("portable", "avx2", "avx512", "ifma") and body["backend_error"] is None
    assert api.app[ENGINE].contexts.backend is get("cpu")


async def test_health_reports_a_cuda_kind_device(api):
    """A CUDA-kind device (the emulation stands in for a GPU) is reported as such: backend
    "cuda", its device name, and no GPU claimed for the emulation."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("g++ not available for the kernel emulation")
    from conftest_cuda import emu_backend
    from wavis.service import fhe
    from wavis.service.state import ENGINE

    api.app[ENGINE].contexts = fhe.DeviceContexts(emu_backend())
    body = await (await api.get("/api/v1/health")).json()
    assert body["backend"] == "cuda" and body["device_name"] == "cpu-emulation"
    assert body["gpu_available"] is False and body["gpu_name"] is None
    assert body["simd_path"] == emu_backend().info().simd_path


async def test_health_reports_a_backend_that_cannot_start(make_client, service_settings):
    """WAVIS_BACKEND=cuda on a host without a device: /health says so (backend_error), it does
    not claim a CPU it was not configured for, and it does not fail."""
    from conftest_cuda import cuda_available

    if cuda_available():
        pytest.skip("a CUDA device is present")
    client = await make_client(replace(service_settings, compute_backend="cuda"))
    resp = await client.get("/api/v1/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["backend"] == "cuda" and body["gpu_available"] is False
    assert body["device_name"] is None and body["simd_path"] is None
    assert "CUDA backend unavailable" in body["backend_error"]


async def test_head_health_has_no_body(api):
    resp = await api.head("/api/v1/health")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_livez_readyz(api):
    assert (await api.get("/livez")).status == 200
    resp = await api.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"postgres": "healthy", "redis": "healthy"}


async def test_redis_down_is_reported_and_502_never_500(make_client, service_settings):
    dead = replace(service_settings, redis_url="redis://127.0.0.1:1/0", upstream_timeout_s=1.0, probe_timeout_s=1.0)
    client = await make_client(dead)
    resp = await client.get("/api/v1/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert {d["name"]: d["status"] for d in body["dependencies"]}["redis"] == "unavailable"
    assert (await client.get("/readyz")).status == 503
    resp = await client.post("/api/v1/onboarding/temp-key")
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "UPSTREAM_UNAVAILABLE"


async def test_request_id_reused_when_valid_and_replaced_when_not(api):
    resp = await api.get("/api/v1/health", headers={"X-Request-ID": "client-trace_0001"})
    assert resp.headers["X-Request-ID"] == "client-trace_0001"
    resp = await api.get("/api/v1/health", headers={"X-Request-ID": "bad id with spaces"})
    assert REQ_ID.match(resp.headers["X-Request-ID"])
    resp = await api.get("/api/v1/health", headers={"X-Request-ID": "short"})
    assert REQ_ID.match(resp.headers["X-Request-ID"])


async def test_unknown_path_and_method_are_json_errors(api):
    resp = await api.get("/api/v1/no-such-thing")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]
    resp = await api.put("/api/v1/health", json={})
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_postgres_connections_dropped_mid_flight_is_502_not_500(api):
    """Postgres killing the pool's connections (restart, failover) answers 502 UPSTREAM_UNAVAILABLE
    for the requests that hit a dead connection, and the service recovers by itself."""
    import asyncpg

    from conftest import TEST_PG_URL
    from wavis.service.state import DB

    key = await api.account()
    async with api.app[DB].acquire() as conn:
        dbname = await conn.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(TEST_PG_URL)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", dbname)
    finally:
        await admin.close()
    statuses = []
    for _ in range(4):
        resp = await api.get("/api/v1/keys/key_x", headers={"Authorization": f"Bearer {key}"})
        statuses.append(resp.status)
        if resp.status == 502:
            assert (await resp.json())["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert all(s in (404, 502) for s in statuses), statuses
    assert statuses[-1] == 404  # recovered


async def test_first_health_call_builds_the_backend_off_the_event_loop(api):
    """The first /health builds the configured backend (on cuda: the CuPy import and the device
    probe) in a thread, never on the event loop; later calls read the built backend."""
    import threading

    from wavis.service import fhe
    from wavis.service.state import ENGINE

    built_on: list[threading.Thread] = []

    class Recording(fhe.DeviceContexts):
        @property
        def backend(self):
            if self._backend is None:
                built_on.append(threading.current_thread())
            return super().backend

    api.app[ENGINE].contexts = Recording("cpu")
    for _ in range(2):
        body = await (await api.get("/api/v1/health")).json()
        assert body["backend"] == "cpu" and body["device_name"] and body["backend_error"] is None
    assert len(built_on) == 1 and built_on[0] is not threading.current_thread()


async def test_health_counts_sessions_within_the_probe_deadline(api, monkeypatch):
    """active_sessions is counted in PostgreSQL beside the postgres probe; it had its own 0.5 s
    deadline and, missing it on a loaded host, /health answered active_sessions 0 with a session
    live (the full suite failed test_server_managed_session_truth_tables that way). It now has the
    probe's deadline (probe_timeout_s, 2 s): a count that takes 0.8 s is still reported."""
    import asyncio

    from wavis.service import repo_tfhe

    key = await api.account()
    resp = await api.post("/api/v1/tfhe/session", json={"preset": "fast_128"},
                          headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 201, await resp.text()
    real = repo_tfhe.count_all_live_sessions

    async def slow(conn, idle_s):
        await asyncio.sleep(0.8)
        return await real(conn, idle_s)

    monkeypatch.setattr(repo_tfhe, "count_all_live_sessions", slow)
    body = await (await api.get("/api/v1/health")).json()
    assert body["active_sessions"] >= 1
