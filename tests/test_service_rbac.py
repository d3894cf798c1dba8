"""Roles and access tags, API-key management, rotation, trial keys, constant-time auth and the
per-IP brute-force lockout — against real PostgreSQL and Redis."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from wavis.service import repo
from wavis.service.access import Access, Role
from wavis.service.state import DB, REDIS, SETTINGS

from conftest import add_account_helper, bearer

pytestmark = pytest.mark.service

ROLES = ("viewer", "developer", "account_admin", "trial")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def fwd(make_client, service_settings):
    """A client whose server trusts X-Forwarded-For (to act as many client IPs)."""
    client = await make_client(replace(service_settings, trust_forwarded_for=True))
    add_account_helper(client)
    return client


def test_access_tags_match_api_md():
    assert Access.TRIAL_PLUS.roles == {Role.TRIAL, Role.DEVELOPER, Role.ACCOUNT_ADMIN}
    assert Access.WRITE_PLUS.roles == {Role.DEVELOPER, Role.ACCOUNT_ADMIN}
    assert Access.BILLING_PLUS.roles == {Role.ACCOUNT_ADMIN}
    assert Access.ANY.roles == set(Role)
    # [deviation, docs/service.md] READ+ also admits trial keys (their own resources only)
    assert Access.READ_PLUS.roles == {Role.VIEWER, Role.DEVELOPER, Role.ACCOUNT_ADMIN, Role.TRIAL}


async def test_every_route_enforces_its_tag_for_every_role(api):
    """Generic sweep over the live route table (new routes included): a role outside the
    route's tag gets 403 FORBIDDEN before anything else; inside it never 401/403/500."""
    keys = {}
    for role in ROLES:
        keys[role] = await api.account(role=role, environment="trial" if role == "trial" else "test")
    checked = 0
    for resource in api.app.router.resources():
        path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: f"x_{m.group(1)}", resource.canonical)
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            level = getattr(route.handler, "__wavis_access__", None)
            assert level is not None, f"{route.method} {resource.canonical} has no @access"
            if level is Access.PUBLIC:
                continue
            for role, key in keys.items():
                resp = await api.request(route.method, path, json={}, headers=bearer(key))
                allowed = level.allows(Role(role))
                assert resp.status != 500, (route.method, path, role, await resp.text())
                if allowed:
                    assert resp.status not in (401, 403), (route.method, path, role, await resp.text())
                else:
                    assert resp.status == 403, (route.method, path, role, resp.status)
                    assert (await resp.json())["error"]["code"] == "FORBIDDEN"
                checked += 1
    assert checked > 40


async def test_api_keys_create_list_revoke(api):
    admin = await api.account(role="account_admin")
    resp = await api.post("/api/v1/api-keys", json={"environment": "live", "role": "viewer"}, headers=bearer(admin))
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert re.match(r"^wvs_live_[0-9a-f]{32}$", created["key"]) and created["role"] == "viewer"
    viewer = created["key"]
    assert (await api.get("/api/v1/keys", headers=bearer(viewer))).status == 200
    assert (await api.get("/api/v1/api-keys", headers=bearer(viewer))).status == 403
    listing = await (await api.get("/api/v1/api-keys", headers=bearer(admin))).json()
    assert {k["id"] for k in listing["data"]} >= {created["id"]}
    text = str(listing)
    assert viewer not in text and admin not in text and "key_hash" not in text
    assert (await api.delete(f"/api/v1/api-keys/{created['id']}", headers=bearer(admin))).status == 204
    assert (await api.get("/api/v1/keys", headers=bearer(viewer))).status == 401
    # another account's key id → 404
    other = await api.account(role="account_admin")
    assert (await api.delete(f"/api/v1/api-keys/{created['id']}", headers=bearer(other))).status == 404
    resp = await api.post("/api/v1/api-keys", json={"environment": "trial"}, headers=bearer(admin))
    assert resp.status == 422


async def test_api_key_creation_is_limited_per_hour(api):
    admin = await api.account(role="account_admin")
    for _ in range(10):
        assert (await api.post("/api/v1/api-keys", json={"environment": "test"}, headers=bearer(admin))).status == 201
    resp = await api.post("/api/v1/api-keys", json={"environment": "test"}, headers=bearer(admin))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_rotation_keeps_the_old_key_for_24h(api):
    dev = await api.account(role="developer", environment="dev")
    resp = await api.post("/api/v1/keys/apikey/rotate", headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    new = body["new_api_key"]
    assert new.startswith("wvs_dev_") and body["environment"] == "dev" and body["old_key_prefix"] == dev[:16]
    grace = ts(body["grace_period_ends_at"]) - datetime.now(timezone.utc)
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)
    for key in (dev, new):
        assert (await api.get("/api/v1/keys", headers=bearer(key))).status == 200
    async with api.app[DB].acquire() as conn:  # the grace period passes
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1", dev[:16])
        role = await conn.fetchval("SELECT role FROM api_keys WHERE prefix = $1", new[:16])
    assert role == "developer"
    assert (await api.get("/api/v1/keys", headers=bearer(dev))).status == 401
    assert (await api.get("/api/v1/keys", headers=bearer(new))).status == 200
    viewer = await api.account(role="viewer")
    assert (await api.post("/api/v1/keys/apikey/rotate", headers=bearer(viewer))).status == 403


async def test_trial_key_expires_after_30_minutes_and_can_be_revoked_by_prefix(api):
    body = await (await api.post("/api/v1/onboarding/temp-key")).json()
    trial = body["api_key"]
    assert (await api.get("/api/v1/keys", headers=bearer(trial))).status == 200
    for path in ("/api/v1/api-keys", "/api/v1/keys/apikey/rotate"):
        resp = await api.request("POST" if "rotate" in path else "GET", path, headers=bearer(trial))
        assert resp.status == 403
    async with api.app[DB].acquire() as conn:
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1",
                           trial[:16])
    assert (await api.get("/api/v1/keys", headers=bearer(trial))).status == 401
    other = (await (await api.post("/api/v1/onboarding/temp-key")).json())["api_key"]
    assert (await api.delete("/api/v1/onboarding/temp-key/wvs_trial_000000")).status == 404
    resp = await api.delete(f"/api/v1/onboarding/temp-key/{other[:20]}")
    assert resp.status == 200 and (await resp.json()) == {"revoked": True}
    assert (await api.get("/api/v1/keys", headers=bearer(other))).status == 401


async def test_guessing_trial_key_prefixes_is_locked_out(api):
    """A 16-character prefix has only 24 random bits: misses count as failed authentications
    of the caller's IP, so guessing is locked out (429) long before it could succeed."""
    victim = (await (await api.post("/api/v1/onboarding/temp-key")).json())["api_key"]
    statuses = []
    for i in range(12):
        resp = await api.delete(f"/api/v1/onboarding/temp-key/wvs_trial_{i:06x}")
        statuses.append(resp.status)
    assert statuses[0] == 404 and statuses[-1] == 429, statuses
    assert "Retry-After" in resp.headers
    # nothing was revoked: the victim's key is intact
    async with api.app[DB].acquire() as conn:
        revoked = await conn.fetchval("SELECT revoked_at FROM api_keys WHERE prefix = $1", victim[:16])
    assert revoked is None


async def test_every_presented_key_costs_one_lookup(api, monkeypatch):
    """Constant work: malformed, unknown, revoked, expired and valid keys all go through the
    same HMAC + one indexed lookup (no fast path that would tell them apart by time)."""
    calls = []
    real = repo.authenticate

    async def counting(conn, digest):
        calls.append(digest)
        return await real(conn, digest)

    monkeypatch.setattr(repo, "authenticate", counting)
    valid = await api.account()
    revoked = await api.account()
    expired = await api.account()
    async with api.app[DB].acquire() as conn:
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1", revoked[:16])
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE prefix = $1", expired[:16])
    presented = ["garbage", "wvs_prod_" + "0" * 32, "wvs_live_" + "0" * 32, revoked, expired, "x" * 4000, valid]
    bodies = set()
    for key in presented:
        calls.clear()
        resp = await api.get("/api/v1/keys", headers=bearer(key))
        assert len(calls) == 1 and len(calls[0]) == 32, key[:12]
        if key != valid:
            assert resp.status == 401
            err = (await resp.json())["error"]
            bodies.add((err["code"], err["message"], resp.headers.get("WWW-Authenticate")))
    assert len(bodies) == 1


async def test_brute_force_locks_out_the_ip_not_the_key(fwd):
    victim = await fwd.account()
    attacker_ip, victim_ip = "203.0.113.7", "198.51.100.9"
    for _ in range(10):
        assert (await fwd.get("/api/v1/keys", headers=bearer("wvs_live_" + "1" * 32, attacker_ip))).status == 401
    # the 11th failure starts the lockout; from then on even a valid key from that IP gets 429
    assert (await fwd.get("/api/v1/keys", headers=bearer("wvs_live_" + "2" * 32, attacker_ip))).status == 401
    resp = await fwd.get("/api/v1/keys", headers=bearer(victim, attacker_ip))
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "TOO_MANY_AUTH_FAILURES"
    assert 50 <= int(resp.headers["Retry-After"]) <= 60
    # the victim's key is not locked: it works from its own address
    assert (await fwd.get("/api/v1/keys", headers=bearer(victim, victim_ip))).status == 200
    # public endpoints stay reachable from the locked IP
    assert (await fwd.get("/api/v1/health", headers={"X-Forwarded-For": attacker_ip})).status == 200
    # a repeat offence doubles the lockout
    prefix = fwd.app[SETTINGS].redis_prefix
    await fwd.app[REDIS].delete(f"{prefix}bf:lock:{attacker_ip}")  # the first lockout ends
    for _ in range(11):
        await fwd.get("/api/v1/keys", headers=bearer("wvs_live_" + "3" * 32, attacker_ip))
    resp = await fwd.get("/api/v1/keys", headers=bearer(victim, attacker_ip))
    assert resp.status == 429 and 100 <= int(resp.headers["Retry-After"]) <= 120
