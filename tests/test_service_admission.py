"""Issue 14: admission by cost (refused before anything is allocated or any engine job starts)
and bounded connection pools (exhaustion is 503 with Retry-After, never 502; /health says
degraded) — against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp import web

from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

BIG_KEYGEN = {"params": {"poly_degree": 16384, "scale_bits": 30, "max_depth": 8},
              "rotation_steps": list(range(1, 65))}


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


async def test_trial_oversized_keygen_is_refused_before_allocating(api, monkeypatch):
    import gc

    from wavis.service import serverkeys
    from wavis.service.state import ENGINE

    calls = []
    real = serverkeys.generate
    monkeypatch.setattr(serverkeys, "generate", lambda *a, **k: calls.append(a) or real(*a, **k))
    engine = api.app[ENGINE]
    submitted = []
    real_submit = type(engine).submit

    async def spy_submit(self, *a, **k):
        submitted.append(a[0] if a else None)
        return await real_submit(self, *a, **k)

    monkeypatch.setattr(type(engine), "submit", spy_submit)
    trial = (await (await api.post("/api/v1/onboarding/temp-key")).json())["api_key"]
    resp = await api.post("/api/v1/keys/generate", json=BIG_KEYGEN, headers=bearer(trial))  # warm-up of the path
    await error_of(resp, 413, "REQUEST_TOO_LARGE")
    gc.collect()
    before = _rss()
    for _ in range(3):
        resp = await api.post("/api/v1/keys/generate", json=BIG_KEYGEN, headers=bearer(trial))
        err = await error_of(resp, 413, "REQUEST_TOO_LARGE")
    gc.collect()
    growth = _rss() - before
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert calls == [] and submitted == []  # no key generation, no engine job
    d = err["details"]
    assert d["limit_source"] == "plan" and d["plan"] == "trial" and d["resource"] == "memory"
    assert d["estimated_bytes"] > 1024 * 2**20 > d["limit_bytes"]
    # the same request from a plan that allows it is admitted (and runs) — here only priced
    from wavis.service import ops

    assert ops.keygen_cost(BIG_KEYGEN["params"], 64).bytes == d["estimated_bytes"]


async def test_small_trial_keygen_and_tfhe_session_are_admitted_and_released(api):
    from wavis.service.state import ADMISSION

    trial = (await (await api.post("/api/v1/onboarding/temp-key")).json())["api_key"]
    resp = await api.post("/api/v1/keys/generate", headers=bearer(trial), json={
        "params": {"poly_degree": 2048, "scale_bits": 40, "max_depth": 1, "security_level": "testing"},
        "rotation_steps": [1, 2]})
    assert resp.status == 200, await resp.text()
    resp = await api.post("/api/v1/tfhe/session", json={"preset": "fast_128"}, headers=bearer(trial))
    assert resp.status == 201, await resp.text()
    adm = api.app[ADMISSION]
    assert adm.reserved_bytes == 0 and adm.jobs == {}


async def test_server_budget_per_account_concurrency_and_busy_budget(make_client, service_settings):
    from wavis.service import ratelimit
    from wavis.service.state import ADMISSION

    plans = dict(ratelimit.PLANS)
    plans["pro"] = replace(plans["pro"], heavy_jobs=1)
    api = await make_client(replace(service_settings, plans=plans, memory_budget_bytes=400 * 2**20))
    add_account_helper(api)
    h = bearer(await api.account(plan="pro"))
    # more than the whole server budget: 413 from the server's limit, not the plan's
    err = await error_of(await api.post("/api/v1/keys/generate", json=BIG_KEYGEN, headers=h), 413,
                         "REQUEST_TOO_LARGE")
    assert err["details"]["limit_source"] == "server" and err["details"]["limit_bytes"] == 400 * 2**20
    # one heavy request at a time per account on this plan: the second concurrent one is 429
    first = asyncio.ensure_future(api.post("/api/v1/tfhe/session", json={"preset": "standard_128"}, headers=h))
    adm = api.app[ADMISSION]
    for _ in range(200):
        if adm.jobs:
            break
        await asyncio.sleep(0.01)
    second = await api.post("/api/v1/tfhe/session", json={"preset": "fast_128"}, headers=h)
    err = await error_of(second, 429, "TOO_MANY_HEAVY_JOBS")
    assert second.headers["Retry-After"] and err["details"]["limit"] == 1
    assert (await first).status == 201
    assert adm.jobs == {} and adm.reserved_bytes == 0
    # another account is not blocked by this one; the budget taken by running jobs → 503
    adm.reserved_bytes = adm.budget_bytes - 2**20
    try:
        other = bearer(await api.account(plan="pro"))
        resp = await api.post("/api/v1/tfhe/session", json={"preset": "fast_128"}, headers=other)
        await error_of(resp, 503, "OVERLOADED")
        assert resp.headers["Retry-After"]
    finally:
        adm.reserved_bytes = 0


async def test_matmul_and_key_upload_are_priced_from_the_parameters(make_client, service_settings,
                                                                    ckks_pair_factory):
    from wavis import serialize
    from wavis.service import ratelimit

    plans = dict(ratelimit.PLANS)
    plans["free"] = replace(plans["free"], max_job_bytes=30 * 2**20)
    api = await make_client(replace(service_settings, plans=plans))
    add_account_helper(api)
    h = bearer(await api.account(plan="free"))
    pair = ckks_pair_factory(max_depth=1)
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    assert resp.status == 200, await resp.text()
    key_id = (await resp.json())["key_id"]
    ct = serialize.b64encode(serialize.dumps(pair.encrypt([1.0])))
    ct_id = (await (await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": ct},
                                   headers=h)).json())["ciphertext_id"]
    small = await api.post("/api/v1/compute/matmul", headers=h,
                           json={"key_id": key_id, "ciphertext_ids": [ct_id], "matrix": [[1.0, 2.0], [3.0, 4.0]]})
    assert small.status in (200, 400), await small.text()  # admitted (400 only for a missing Galois key)
    # a 1024 × 1024 matrix (the slot count): 32 baby-step rotations and the matrix itself, over 30 MiB
    big = [[0.5] * 1024 for _ in range(1024)]
    resp = await api.post("/api/v1/compute/matmul", headers=h,
                          json={"key_id": key_id, "ciphertext_ids": [ct_id], "matrix": big})
    err = await error_of(resp, 413, "REQUEST_TOO_LARGE")
    assert err["details"]["operation"] == "compute/matmul"


# --- pools -------------------------------------------------------------------------------------

def _holding_routes(app: web.Application) -> None:
    """Test-only routes that hold a pooled PostgreSQL / Redis connection for ``?s=`` seconds."""
    from wavis.service.access import Access, access, operational
    from wavis.service.state import DB, REDIS

    @access(Access.PUBLIC)
    @operational
    async def hold_pg(request: web.Request) -> web.Response:
        async with request.app[DB].acquire() as conn:
            await conn.execute("SELECT pg_sleep($1)", float(request.query["s"]))
        return web.json_response({"ok": True})

    @access(Access.PUBLIC)
    @operational
    async def hold_redis(request: web.Request) -> web.Response:
        await request.app[REDIS].blpop(["wavis_test_never"], timeout=float(request.query["s"]))
        return web.json_response({"ok": True})

    app.router.add_get("/_test/hold-pg", hold_pg)
    app.router.add_get("/_test/hold-redis", hold_redis)


@pytest.mark.parametrize("upstream", ["pg", "redis"])
async def test_exhausted_pool_is_503_with_retry_after_and_health_degraded(make_client, service_settings, upstream):
    from wavis.service.state import REDIS

    if upstream == "pg":
        settings = replace(service_settings, db_pool_min=1, db_pool_max=1, pool_wait_s=0.3)
    else:
        settings = replace(service_settings, pool_wait_s=0.3)
    api = await make_client(settings, setup=_holding_routes)
    add_account_helper(api)
    key = await api.account()
    if upstream == "redis":
        # the job engine's blocking stream reads hold connections of the same pool: leave exactly
        # one free connection for the holder
        pool = api.app[REDIS].connection_pool
        for c in list(pool._available_connections):
            await c.disconnect()
        pool._available_connections.clear()
        pool.max_connections = len(pool._in_use_connections) + 1
    holder = asyncio.ensure_future(api.get(f"/_test/hold-{upstream}?s=1.5"))
    await asyncio.sleep(0.3)
    waiting = asyncio.ensure_future(api.get("/api/v1/keys", headers=bearer(key)))  # waits for the pool
    await asyncio.sleep(0.05)
    health = await api.get("/api/v1/health")
    resp = await waiting
    err = await error_of(resp, 503, "OVERLOADED")
    assert resp.headers["Retry-After"] == "1"
    assert err["details"]["upstream"] == {"pg": "postgres", "redis": "redis"}[upstream]
    assert health.status == 200
    body = await health.json()
    assert body["status"] == "degraded", body
    dep = {d["name"]: d for d in body["dependencies"]}[{"pg": "postgres", "redis": "redis"}[upstream]]
    assert dep["status"] == "degraded" and "saturated" in dep["error"]
    assert (await holder).status == 200
    assert (await api.get("/api/v1/keys", headers=bearer(key))).status == 200
    assert (await (await api.get("/api/v1/health")).json())["status"] == "healthy"


@pytest.mark.timeout(180)
async def test_256_concurrent_clients_get_no_502(api, ckks_pair_factory):
    import aiohttp

    from wavis import serialize

    key = await api.account(plan="enterprise")
    h = bearer(key)
    pair = ckks_pair_factory(max_depth=1)
    key_id = (await (await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)).json())["key_id"]
    body = {"key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([1.0])))}
    ct_id = (await (await api.post("/api/v1/ciphertexts", json=body, headers=h)).json())["ciphertext_id"]
    base = str(api.make_url(""))
    statuses: dict[int, int] = {}

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        for j in range(4):
            kind = (i + j) % 4
            if kind == 0:
                r = await session.get(f"{base}/api/v1/keys/{key_id}", headers=h)
            elif kind == 1:
                r = await session.get(f"{base}/api/v1/ciphertexts/{ct_id}", headers=h)
            elif kind == 2:
                r = await session.post(f"{base}/api/v1/ciphertexts", json=body, headers=h)
            else:
                r = await session.get(f"{base}/api/v1/health")
            statuses[r.status] = statuses.get(r.status, 0) + 1
            await r.read()

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(client(i, session) for i in range(256)))
    assert sum(statuses.values()) == 1024
    assert 502 not in statuses and 500 not in statuses, statuses
    assert set(statuses) <= {200, 201, 503}, statuses
