"""Rate-limit windows, idempotency and cursor pagination — against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import pytest
from aiohttp import web

from wavis.service import ratelimit
from wavis.service.access import Access, access, fcu
from wavis.service.state import DB

from conftest import add_account_helper, bearer

pytestmark = pytest.mark.service


SMALL = dict(ratelimit.PLANS)
SMALL["free"] = replace(SMALL["free"], daily_requests=8, monthly_fcu=12, burst_per_ip=1000)
SMALL["starter"] = replace(SMALL["starter"], daily_requests=1000, monthly_fcu=12, burst_per_ip=1000)
SMALL["anonymous"] = replace(SMALL["anonymous"], burst_per_ip=5)
SMALL["payg"] = replace(SMALL["payg"], daily_requests=1000, burst_per_ip=6)

calls: list[str] = []


def add_test_routes(app: web.Application) -> None:
    @access(Access.TRIAL_PLUS)
    @fcu(5)
    async def charged(request):
        calls.append("charged")
        if request.query.get("fail"):
            raise web.HTTPBadRequest()
        return web.json_response({"ok": True})

    @access(Access.TRIAL_PLUS)
    async def slow(request):
        calls.append("slow")
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        if request.query.get("boom"):
            raise RuntimeError("boom")
        return web.json_response({"n": len(calls)}, status=201)

    app.router.add_post("/api/v1/_test/charged", charged)
    app.router.add_post("/api/v1/_test/slow", slow)


@pytest.fixture
async def small(make_client, service_settings):
    calls.clear()
    client = await make_client(replace(service_settings, plans=SMALL, trust_forwarded_for=True), add_test_routes)
    add_account_helper(client)
    return client


async def test_headers_on_every_response(small):
    key = await small.account(plan="free")
    for resp in (await small.get("/api/v1/keys", headers=bearer(key)),
                 await small.get("/api/v1/keys/key_missing", headers=bearer(key)),  # 404 too
                 await small.post("/api/v1/ciphertexts", data=b"{", headers=bearer(key))):  # 422 too
        for w in ("Daily", "Monthly", "Burst"):
            for part in ("Limit", "Remaining", "Reset"):
                assert int(resp.headers[f"X-RateLimit-{w}-{part}"]) >= 0
        assert resp.headers["RateLimit-Policy"].startswith('"')
        assert ";r=" in resp.headers["RateLimit"] and ";t=" in resp.headers["RateLimit"]
    assert resp.headers["X-RateLimit-Daily-Limit"] == "8"
    assert resp.headers["X-RateLimit-Daily-Remaining"] == "5"
    assert 0 < int(resp.headers["X-RateLimit-Daily-Reset"]) <= 86400
    anon = await small.get("/api/v1/openapi.json", headers={"X-Forwarded-For": "192.0.2.50"})
    assert anon.headers["X-RateLimit-Burst-Limit"] == "5"


async def test_daily_window_429_with_retry_after(small):
    key = await small.account(plan="free")
    for _ in range(8):
        assert (await small.get("/api/v1/keys", headers=bearer(key))).status == 200
    resp = await small.get("/api/v1/keys", headers=bearer(key))
    assert resp.status == 429
    err = (await resp.json())["error"]
    assert err["code"] == "RATE_LIMITED" and err["details"]["window"] == "daily"
    assert 0 < int(resp.headers["Retry-After"]) <= 86400
    assert resp.headers["X-RateLimit-Daily-Remaining"] == "0"
    assert resp.headers["RateLimit"].startswith('"daily";r=0')
    other = await small.account(plan="free")  # per account
    assert (await small.get("/api/v1/keys", headers=bearer(other))).status == 200


async def test_burst_window_is_per_ip(small):
    key = await small.account(plan="payg")
    for _ in range(6):
        assert (await small.get("/api/v1/keys", headers=bearer(key, "192.0.2.1"))).status == 200
    resp = await small.get("/api/v1/keys", headers=bearer(key, "192.0.2.1"))
    assert resp.status == 429 and (await resp.json())["error"]["details"]["window"] == "burst"
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    assert (await small.get("/api/v1/keys", headers=bearer(key, "192.0.2.2"))).status == 200
    for _ in range(5):  # anonymous requests have their own burst limit
        await small.post("/api/v1/onboarding/temp-key", headers={"X-Forwarded-For": "192.0.2.3"})
    resp = await small.get("/api/v1/openapi.json", headers={"X-Forwarded-For": "192.0.2.3"})
    assert resp.status == 429


async def test_monthly_fcu_quota_402_without_overage_refund_on_error(small):
    free = await small.account(plan="free")
    ok = await small.post("/api/v1/_test/charged", headers=bearer(free))
    assert ok.status == 200 and ok.headers["X-RateLimit-Monthly-Remaining"] == "7"
    failed = await small.post("/api/v1/_test/charged?fail=1", headers=bearer(free))
    assert failed.status == 400  # refunded: errors cost nothing
    assert (await small.post("/api/v1/_test/charged", headers=bearer(free))).status == 200
    resp = await small.post("/api/v1/_test/charged", headers=bearer(free))
    assert resp.status == 402 and (await resp.json())["error"]["code"] == "QUOTA_EXHAUSTED"
    assert int(resp.headers["Retry-After"]) > 0
    assert (await small.get("/api/v1/keys", headers=bearer(free))).status == 200  # reads cost no FCU
    starter = await small.account(plan="starter")  # overage: keeps going, remaining 0
    for _ in range(4):
        resp = await small.post("/api/v1/_test/charged", headers=bearer(starter))
        assert resp.status == 200
    assert resp.headers["X-RateLimit-Monthly-Remaining"] == "0"


async def test_windows_are_atomic_under_concurrency(small):
    key = await small.account(plan="free")
    resps = await asyncio.gather(*(small.get("/api/v1/keys", headers=bearer(key)) for _ in range(30)))
    statuses = sorted(r.status for r in resps)
    assert statuses.count(200) == 8 and statuses.count(429) == 22


# --- idempotency -------------------------------------------------------------------------

async def test_idempotent_replay_and_reuse(small):
    admin = await small.account(role="account_admin", plan="pro")
    h = {**bearer(admin), "Idempotency-Key": "create-key-1"}
    first = await small.post("/api/v1/api-keys", json={"environment": "test"}, headers=h)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    body = await first.json()
    again = await small.post("/api/v1/api-keys", json={"environment": "test"}, headers=h)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == body
    other = await small.post("/api/v1/api-keys", json={"environment": "live"}, headers=h)
    assert other.status == 422 and (await other.json())["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    async with small.app[DB].acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM api_keys WHERE origin = 'api' AND account_id = "
                                "(SELECT account_id FROM api_keys WHERE prefix = $1)", admin[:16])
    assert n == 1
    # scope is the account: another account may use the same Idempotency-Key
    admin2 = await small.account(role="account_admin", plan="pro")
    resp = await small.post("/api/v1/api-keys", json={"environment": "test"},
                            headers={**bearer(admin2), "Idempotency-Key": "create-key-1"})
    assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers
    bad = await small.post("/api/v1/api-keys", json={"environment": "test"},
                           headers={**bearer(admin), "Idempotency-Key": "x" * 256})
    assert bad.status == 400


async def test_stored_answers_are_sealed_in_postgres(small):
    admin = await small.account(role="account_admin", plan="pro")
    resp = await small.post("/api/v1/api-keys", json={"environment": "test"},
                            headers={**bearer(admin), "Idempotency-Key": "sealed-1"})
    new_key = (await resp.json())["key"]
    async with small.app[DB].acquire() as conn:
        blobs = [bytes(r["sealed"]) for r in await conn.fetch(
            "SELECT sealed FROM idempotency_records WHERE status = 201")]
    assert blobs and all(new_key.encode() not in b and new_key[9:].encode() not in b for b in blobs)


async def test_in_progress_409_then_replay_and_5xx_not_stored(small):
    key = await small.account(plan="pro")
    h = {**bearer(key), "Idempotency-Key": "slow-1"}
    first = asyncio.ensure_future(small.post("/api/v1/_test/slow?s=0.5", headers=h))
    await asyncio.sleep(0.15)
    during = await small.post("/api/v1/_test/slow?s=0.5", headers=h)
    assert during.status == 409 and (await during.json())["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    done = await first
    assert done.status == 201
    after = await small.post("/api/v1/_test/slow?s=0.5", headers=h)
    assert after.headers["Idempotent-Replayed"] == "true" and await after.json() == await done.json()
    assert calls.count("slow") == 1
    h2 = {**bearer(key), "Idempotency-Key": "boom-1"}
    assert (await small.post("/api/v1/_test/slow?s=0&boom=1", headers=h2)).status == 500
    assert (await small.post("/api/v1/_test/slow?s=0&boom=1", headers=h2)).status == 500
    assert calls.count("slow") == 3  # the 500 was not stored: the retry ran again


async def test_concurrent_duplicates_run_exactly_once(small):
    key = await small.account(plan="pro")
    h = {**bearer(key, "192.0.2.77"), "Idempotency-Key": "dup-1"}
    resps = await asyncio.gather(*(small.post("/api/v1/_test/slow?s=0.2", headers=h) for _ in range(25)))
    assert calls.count("slow") == 1
    ok = [r for r in resps if r.status == 201]
    assert {r.status for r in resps} <= {201, 409} and ok
    # sequential retries after it finished all replay the same answer
    bodies = {await (await small.post("/api/v1/_test/slow?s=0.2", headers=h)).text() for _ in range(5)}
    assert len(bodies) == 1 and calls.count("slow") == 1


async def test_concurrent_duplicate_key_creations_create_one_key(small):
    admin = await small.account(role="account_admin", plan="pro")
    h = {**bearer(admin), "Idempotency-Key": "dup-create"}
    resps = await asyncio.gather(*(small.post("/api/v1/api-keys", json={"environment": "test"}, headers=h)
                                   for _ in range(20)))
    assert {r.status for r in resps} <= {201, 409}
    async with small.app[DB].acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM api_keys WHERE origin = 'api' AND account_id = "
                                "(SELECT account_id FROM api_keys WHERE prefix = $1)", admin[:16])
    assert n == 1


# --- pagination ---------------------------------------------------------------------------

async def test_cursor_pagination_is_keyset_stable_and_signed(small):
    admin = await small.account(role="account_admin", plan="pro")
    async with small.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", admin[:16])
        # same created_at for several rows: the id breaks the tie
        await conn.executemany(
            """INSERT INTO api_keys (id, account_id, key_hash, prefix, environment, role, created_at)
               VALUES ($1, $2, $3, 'wvs_test_000000', 'test', 'viewer', '2020-01-01T00:00:00Z')""",
            [(f"apikey_{i:03d}", acct, bytes([i]) * 32) for i in range(7)])
    seen, cursor, pages = [], None, 0
    while True:
        q = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        resp = await small.get("/api/v1/api-keys" + q, headers=bearer(admin))
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        seen += [k["id"] for k in page["data"]]
        pages += 1
        if pages == 1:  # a row inserted behind the cursor does not shift later pages
            async with small.app[DB].acquire() as conn:
                await conn.execute(
                    """INSERT INTO api_keys (id, account_id, key_hash, prefix, environment, role, created_at)
                       VALUES ('apikey_000a', $1, $2, 'wvs_test_000000', 'test', 'viewer', '2019-01-01Z')""",
                    acct, b"\xfe" * 32)
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen[:7] == [f"apikey_{i:03d}" for i in range(7)] and len(seen) == 8 and pages == 3
    first = await (await small.get("/api/v1/api-keys?limit=2", headers=bearer(admin))).json()
    cur = first["next_cursor"]
    tampered = cur[:-2] + ("A" if cur[-2] != "A" else "B") + cur[-1]
    for bad in (tampered, "!!!", "abc", cur + "A"):
        resp = await small.get(f"/api/v1/api-keys?cursor={bad}", headers=bearer(admin))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "INVALID_CURSOR", bad
    other = await small.account(role="account_admin", plan="pro")  # foreign cursor
    resp = await small.get(f"/api/v1/api-keys?cursor={cur}", headers=bearer(other))
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "INVALID_CURSOR"
    resp = await small.get(f"/api/v1/keys?cursor={cur}", headers=bearer(admin))  # another list
    assert resp.status == 400
    for limit in ("0", "101", "-1", "abc", "1.5"):
        resp = await small.get(f"/api/v1/api-keys?limit={limit}", headers=bearer(admin))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "INVALID_PARAMS", limit
    assert (await small.get("/api/v1/api-keys?limit=100", headers=bearer(admin))).status == 200


async def test_replayed_error_carries_the_new_request_id(small):
    """A stored 4xx replayed under the same Idempotency-Key repeats *this* request's id in its
    body, matching X-Request-ID (API.md §1)."""
    admin = await small.account(role="account_admin", plan="pro")
    h = {**bearer(admin), "Idempotency-Key": "bad-env-1"}
    first = await small.post("/api/v1/api-keys", json={"environment": "moon"}, headers=h)
    assert first.status == 422
    again = await small.post("/api/v1/api-keys", json={"environment": "moon"}, headers=h)
    assert again.headers.get("Idempotent-Replayed") == "true"  # 4xx answers are stored
    body = await again.json()
    assert body["error"]["request_id"] == again.headers["X-Request-ID"]
    assert body["error"]["request_id"] != (await first.json())["error"]["request_id"]


async def test_router_404_and_405_are_not_metered(small):
    """Unknown paths and wrong methods are answered by the router and not counted: a burst of
    them cannot make a client's real calls 429."""
    key = await small.account(plan="pro")
    for _ in range(70):
        assert (await small.get("/api/v1/nonexistent", headers=bearer(key))).status == 404
        assert (await small.put("/api/v1/keys", headers=bearer(key))).status == 405
    assert (await small.get("/api/v1/keys", headers=bearer(key))).status == 200
