"""FHE key and ciphertext lifecycle (server-mode keys, delete, LRU store) and the
tenant-isolation sweep — against real PostgreSQL, Redis and CKKS."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from wavis import serialize
from wavis.service import ratelimit
from wavis.service.sealing import Sealer
from wavis.service.state import DB, REDIS, SETTINGS

from conftest import add_account_helper, bearer

pytestmark = pytest.mark.service

PARAMS = {"poly_degree": 2048, "scale_bits": 40, "max_depth": 1, "security_level": "testing"}
# server-mode decryption floods with σ = 2^30·B (issue 15): it needs a large scale to keep bits
DECRYPT_PARAMS = {"poly_degree": 2048, "scale_bits": 58, "first_mod_bits": 61, "magnitude_bits": 2, "max_depth": 1,
                  "security_level": "testing"}


async def generate(api, key: str, params: dict = PARAMS) -> dict:
    resp = await api.post("/api/v1/keys/generate", json={"params": params}, headers=bearer(key))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Deprecation"] == "true"
    assert "testing" in resp.headers["X-Security-Warning"]
    return await resp.json()


async def test_server_mode_key_encrypt_decrypt_and_sealed_secret(api):
    dev = await api.account()
    meta = await generate(api, dev, DECRYPT_PARAMS)
    assert meta["blind_guarantee"] is False and meta["secret_key"] is None
    values = [0.5, -1.25, 3.0]
    resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": meta["key_id"], "values": values},
                          headers=bearer(dev))
    assert resp.status == 201, await resp.text()
    ct = await resp.json()
    assert ct["evicted_ciphertext_ids"] == []
    resp = await api.post(f"/api/v1/ciphertexts/{ct['ciphertext_id']}/decrypt", headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    out, step = body["values"], 2.0 ** -body["precision_bits"]
    assert body["precision_bits"] >= 4 and body["statistical_bits"] >= 30
    assert np.allclose(out[:3], values, atol=step) and np.allclose(out[3:], 0, atol=step)
    assert all(v / step == round(v / step) for v in out)  # rounded to the precision left
    # the secret key is stored only sealed (AES-GCM under the master key, bound to its row)
    async with api.app[DB].acquire() as conn:
        sealed = bytes(await conn.fetchval("SELECT secret_key_sealed FROM fhe_keys WHERE id = $1", meta["key_id"]))
        acct = await conn.fetchval("SELECT account_id FROM fhe_keys WHERE id = $1", meta["key_id"])
    sealer = Sealer(api.app[SETTINGS].master_key)
    from wavis.ckks import CkksParameters, SecretKey

    raw = sealer.open(sealed, f"fhe_key:{meta['key_id']}:{acct}".encode())
    sk = serialize.loads(raw, expected_type=SecretKey, params=CkksParameters.from_dict(meta["params"]))
    assert sk.key_tag and raw[-64:] not in sealed
    with pytest.raises(Exception):
        sealer.open(sealed, f"fhe_key:key_other:{acct}".encode())
    # viewer may not decrypt (WRITE+), trial may not either
    viewer = await api.key_for(dev, role="viewer")
    assert (await api.post(f"/api/v1/ciphertexts/{ct['ciphertext_id']}/decrypt", headers=bearer(viewer))).status == 403


async def test_blind_keys_answer_409_and_post_decrypt_is_501(api, ckks_pair_factory):
    pair = ckks_pair_factory(max_depth=1, index=0)
    dev = await api.account()
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=bearer(dev))
    key_id = (await resp.json())["key_id"]
    resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": key_id, "values": [1.0]}, headers=bearer(dev))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "BLIND_KEY"
    up = await api.post("/api/v1/ciphertexts", headers=bearer(dev), json={
        "key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([1.0])))})
    ct_id = (await up.json())["ciphertext_id"]
    resp = await api.post(f"/api/v1/ciphertexts/{ct_id}/decrypt", headers=bearer(dev))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "BLIND_KEY"
    resp = await api.post("/api/v1/decrypt", json={}, headers=bearer(dev))
    assert resp.status == 501 and (await resp.json())["error"]["code"] == "NOT_IMPLEMENTED"


async def test_list_and_delete_key_with_its_ciphertexts(api):
    dev = await api.account()
    a, b = await generate(api, dev), await generate(api, dev)
    cts = []
    for v in (1.0, 2.0):
        resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": a["key_id"], "values": [v]},
                              headers=bearer(dev))
        cts.append((await resp.json())["ciphertext_id"])
    listing = await (await api.get("/api/v1/keys?limit=1", headers=bearer(dev))).json()
    assert listing["has_more"] and len(listing["data"]) == 1
    rest = await (await api.get(f"/api/v1/keys?cursor={listing['next_cursor']}", headers=bearer(dev))).json()
    assert [k["key_id"] for k in listing["data"] + rest["data"]] == [a["key_id"], b["key_id"]]
    resp = await api.delete(f"/api/v1/keys/{a['key_id']}", headers=bearer(dev))
    assert resp.status == 200 and await resp.json() == {"deleted": True, "ciphertexts_deleted": 2}
    for ct in cts:
        assert (await api.get(f"/api/v1/ciphertexts/{ct}", headers=bearer(dev))).status == 404
        assert await api.app[REDIS].exists(f"{api.app[SETTINGS].redis_prefix}ct:{ct}") == 0
    assert (await api.get(f"/api/v1/keys/{a['key_id']}", headers=bearer(dev))).status == 404
    assert (await api.delete(f"/api/v1/keys/{a['key_id']}", headers=bearer(dev))).status == 404
    resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": b["key_id"], "values": [1.0]},
                          headers=bearer(dev))
    ct = (await resp.json())["ciphertext_id"]
    assert (await api.delete(f"/api/v1/ciphertexts/{ct}", headers=bearer(dev))).status == 204
    assert (await api.get(f"/api/v1/ciphertexts/{ct}", headers=bearer(dev))).status == 404


async def test_lru_store_evicts_least_recently_used_and_reports_it(make_client, service_settings):
    plans = dict(ratelimit.PLANS)
    probe = await make_client(service_settings)
    add_account_helper(probe)
    dev = await probe.account()
    meta = await generate(probe, dev)
    size = (await (await probe.post("/api/v1/ciphertexts/encrypt", json={"key_id": meta["key_id"], "values": [0.0]},
                                    headers=bearer(dev))).json())["size_bytes"]
    plans["free"] = replace(plans["free"], ciphertext_store_bytes=3 * size + size // 2)
    api = await make_client(replace(service_settings, plans=plans))
    add_account_helper(api)
    dev = await api.account()
    meta = await generate(api, dev)

    async def enc(v):
        resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": meta["key_id"], "values": [v]},
                              headers=bearer(dev))
        assert resp.status == 201
        return await resp.json()

    ids = [(await enc(float(i)))["ciphertext_id"] for i in range(3)]
    assert (await api.get(f"/api/v1/ciphertexts/{ids[0]}", headers=bearer(dev))).status == 200  # touch 0
    fourth = await enc(9.0)
    assert fourth["evicted_ciphertext_ids"] == [ids[1]]  # 1 is now the least recently used
    resp = await api.get(f"/api/v1/ciphertexts/{ids[1]}", headers=bearer(dev))
    assert resp.status == 404 and (await resp.json())["error"]["details"]["reason"].startswith("expired or evicted")
    health = await (await api.get("/api/v1/health")).json()
    assert health["ciphertext_evictions_total"] >= 1
    # another account's store is separate: its uploads never evict ours
    other = await api.account()
    meta2 = await generate(api, other)
    for _ in range(4):
        r = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": meta2["key_id"], "values": [1.0]},
                           headers=bearer(other))
        assert not set((await r.json())["evicted_ciphertext_ids"]) & set(ids)
    assert (await api.get(f"/api/v1/ciphertexts/{ids[0]}", headers=bearer(dev))).status == 200


async def test_key_upload_body_limit_is_40_mib(api):
    dev = await api.account()
    pad = "A" * (40 * 1024 * 1024 + 10)
    resp = await api.post("/api/v1/keys/upload", data=b'{"public_key": "' + pad.encode() + b'"}',
                          headers={**bearer(dev), "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["details"]["limit_bytes"] == 40 * 1024 * 1024


# --- tenant isolation sweep ------------------------------------------------------------

async def test_tenant_isolation_sweep(api, ckks_pair_factory):
    """Account B's ids through every route with A's keys (developer and viewer): never B's data,
    never 2xx on B's resources, never 403 instead of 404 for an id (no existence oracle)."""
    b = await api.account(role="account_admin")
    b_meta = await generate(api, b)
    resp = await api.post("/api/v1/ciphertexts/encrypt", json={"key_id": b_meta["key_id"], "values": [7.0]},
                          headers=bearer(b))
    b_ct = (await resp.json())["ciphertext_id"]
    b_apikey = (await (await api.get("/api/v1/api-keys", headers=bearer(b))).json())["data"][0]["id"]
    b_ids = {"key_id": b_meta["key_id"], "ciphertext_id": b_ct, "api_key_id": b_apikey}
    b_secrets = {b, b_meta["key_id"], b_ct, b_apikey}

    a_admin = await api.account(role="account_admin")
    a_viewer = await api.key_for(a_admin, role="viewer")
    body = {"key_id": b_meta["key_id"], "ciphertext_ids": [b_ct, b_ct], "ciphertext_b64": "AA==", "values": [1.0],
            "session_id": "sess_x", "environment": "test"}
    checked = 0
    for resource in api.app.router.resources():
        names = re.findall(r"\{([^}:]+)", resource.canonical)
        if not names:
            continue
        path = resource.canonical
        for n in names:
            path = re.sub(r"\{" + n + r"(:[^}]*)?\}", b_ids.get(n, b_ids["key_id"] if "key" in n else b_ct), path)
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            for key in (a_admin, a_viewer):
                resp = await api.request(route.method, path, json=body, headers=bearer(key))
                text = await resp.text()
                assert resp.status != 500, (route.method, path, text)
                assert not (200 <= resp.status < 300), (route.method, path, resp.status, text)
                for s in b_secrets - {b_meta["key_id"], b_ct}:
                    assert s not in text
                checked += 1
    # B's resources are intact and still B's
    assert (await api.get(f"/api/v1/ciphertexts/{b_ct}", headers=bearer(b))).status == 200
    assert (await api.get(f"/api/v1/keys/{b_meta['key_id']}", headers=bearer(b))).status == 200
    # lists never show B's rows
    for path in ("/api/v1/keys", "/api/v1/api-keys"):
        text = await (await api.get(path, headers=bearer(a_admin))).text()
        assert b_meta["key_id"] not in text and b_apikey not in text
    assert checked >= 20


async def test_key_deleted_during_compute_is_404_and_leaves_no_blob(api, ckks_pair_factory, monkeypatch):
    """A compute whose key is deleted before its result row is written answers 404 (not a
    500 from the foreign key) and removes the result blob it had already stored."""
    from wavis import serialize
    from wavis.service import repo
    from wavis.service.state import DB, REDIS, SETTINGS

    pair = ckks_pair_factory(max_depth=1)
    h = {"Authorization": f"Bearer {await api.account()}"}
    key_id = (await (await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)).json())["key_id"]
    body = {"key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([0.5])))}
    ct_id = (await (await api.post("/api/v1/ciphertexts", json=body, headers=h)).json())["ciphertext_id"]
    original = repo.insert_ciphertext

    async def delete_key_first(conn, **kw):
        await conn.execute("DELETE FROM ciphertexts WHERE key_id = $1", key_id)
        await conn.execute("DELETE FROM fhe_keys WHERE id = $1", key_id)
        return await original(conn, **kw)

    monkeypatch.setattr(repo, "insert_ciphertext", delete_key_first)
    resp = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": [ct_id, ct_id]},
                          headers=h)
    assert resp.status == 404, await resp.text()
    prefix = api.app[SETTINGS].redis_prefix
    r = api.app[REDIS]
    stored = [k async for k in r.scan_iter(match=prefix + "ct:ct_*")]
    async with api.app[DB].acquire() as conn:
        rows = {x["id"] for x in await conn.fetch("SELECT id FROM ciphertexts")}
    assert all(k.decode()[len(prefix) + 3:] in rows or k.decode().endswith(ct_id) for k in stored)
