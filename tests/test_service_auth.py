"""API keys, roles, trial keys — against real PG and Redis."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone

import pytest

from wavis.service.state import DB

from conftest import TEST_PEPPER, bearer

pytestmark = pytest.mark.service

KEY_RE = re.compile(r"^wvs_(live|test|dev|trial)_[0-9a-f]{32}$")


async def assert_401(resp):
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]
    return body


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wvs_live_" + "0" * 32},  # well-formed, unknown
    {"Authorization": "Bearer wvs_prod_" + "0" * 32},  # malformed environment
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer " + "x" * 5000},
])
async def test_missing_or_unknown_key_is_401(api, headers):
    messages = set()
    for path in ("/api/v1/keys/key_abc", "/api/v1/ciphertexts/ct_abc"):
        body = await assert_401(await api.get(path, headers=headers))
        messages.add(body["error"]["message"])
    assert len(messages) == 1


async def test_bearer_and_bare_key_are_accepted(api):
    key = await api.account()
    assert KEY_RE.match(key)
    for headers in (bearer(key), {"Authorization": key}, {"Authorization": f"bearer {key}"}):
        resp = await api.get("/api/v1/keys/key_missing", headers=headers)
        assert resp.status == 404, await resp.text()


async def test_expired_and_revoked_keys_are_401(api):
    expired = await api.account()
    revoked = await api.account()
    async with api.app[DB].acquire() as conn:
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1", expired[:16])
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1", revoked[:16])
    for key in (expired, revoked):
        await assert_401(await api.get("/api/v1/keys/key_x", headers=bearer(key)))


async def test_keys_are_stored_only_as_hmac(api):
    key = await api.account(role="account_admin")
    async with api.app[DB].acquire() as conn:
        rows = await conn.fetch("SELECT * FROM api_keys")
    digest = hmac.new(TEST_PEPPER, key.encode(), hashlib.sha256).digest()
    row = next(r for r in rows if r["key_hash"] == digest)
    assert row["prefix"] == key[:16]
    for r in rows:
        for value in r.values():
            assert key not in str(value)


async def test_viewer_may_read_but_not_create(api):
    viewer = await api.account(role="viewer")
    resp = await api.get("/api/v1/keys/key_missing", headers=bearer(viewer))
    assert resp.status == 404
    resp = await api.post("/api/v1/ciphertexts", json={"key_id": "key_x", "ciphertext_b64": "AA=="},
                          headers=bearer(viewer))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "FORBIDDEN"
    resp = await api.post("/api/v1/compute/add", json={}, headers=bearer(viewer))
    assert resp.status == 403


async def test_temp_key_and_per_ip_limit(api):
    resp = await api.post("/api/v1/onboarding/temp-key")
    assert resp.status == 200
    body = await resp.json()
    assert body["api_key"].startswith("wvs_trial_") and KEY_RE.match(body["api_key"])
    assert body["ops_limit"] == 10
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert body["expires_at"].endswith("Z")
    assert timedelta(minutes=29) < expires - datetime.now(timezone.utc) <= timedelta(minutes=30)
    resp = await api.get("/api/v1/keys/key_missing", headers=bearer(body["api_key"]))
    assert resp.status == 404  # the trial key authenticates
    for _ in range(4):
        assert (await api.post("/api/v1/onboarding/temp-key")).status == 200
    resp = await api.post("/api/v1/onboarding/temp-key")
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
