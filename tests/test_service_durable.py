"""Issue 14: nothing confirmed lives only in Redis — durable blobs, idempotency records and usage
in PostgreSQL, every deletion logged (real PostgreSQL and Redis; the fault-injection tests with
the embedded servers are in test_service_faults.py)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from conftest import add_account_helper, bearer, clear_redis_prefix

pytestmark = pytest.mark.service


@pytest.fixture
def pair(ckks_pair_factory):
    return ckks_pair_factory(max_depth=1)


async def _setup(api, pair, plan: str = "pro"):
    from wavis import serialize

    h = bearer(await api.account(plan=plan))
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    assert resp.status == 200, await resp.text()
    key_id = (await resp.json())["key_id"]
    body = {"key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt([0.5])))}
    return h, key_id, body


# --- the blob store ---------------------------------------------------------------------------

async def test_filesystem_blob_store_is_atomic_and_refuses_bad_names(tmp_path):
    from wavis.service.blobstore import BlobStore, FilesystemBlobStore, open_store

    store = open_store(None, tmp_path)
    assert isinstance(store, FilesystemBlobStore) and isinstance(store, BlobStore)
    assert store.root == (tmp_path / "blobs").resolve()
    await store.put("ct/acct_1/ct_a", b"one")
    await store.put("ct/acct_1/ct_a", b"two")  # replaced whole (rename over the old file)
    assert await store.get("ct/acct_1/ct_a") == b"two"
    assert await store.get("ct/acct_1/ct_missing") is None
    assert [n async for n, _ in store.names("ct")] == ["ct/acct_1/ct_a"]
    assert not [p for p in (store.root / "ct" / "acct_1").iterdir() if p.name.endswith(".tmp")]
    for bad in ("../x", "ct/../../etc/passwd", "/abs", "ct//a", "ct/a b", "ct/.", ""):
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
    assert await store.delete(["ct/acct_1/ct_a", "ct/acct_1/ct_missing"]) == 1
    with pytest.raises(ValueError, match="unsupported"):
        open_store("s3://bucket", tmp_path)


async def test_upload_is_on_disk_before_201_and_survives_a_redis_flush(api, pair):
    from wavis.service.ctstore import blob_name
    from wavis.service.state import CTSTORE, SETTINGS

    h, key_id, body = await _setup(api, pair)
    resp = await api.post("/api/v1/ciphertexts", json=body, headers=h)
    assert resp.status == 201
    ct_id = (await resp.json())["ciphertext_id"]
    store = api.app[CTSTORE]
    files = [n async for n, _ in store.blobs.names("ct")]
    assert any(n.endswith("/" + ct_id) for n in files)
    account = next(n for n in files if n.endswith(ct_id)).split("/")[1]
    assert await store.blobs.get(blob_name(account, ct_id)) is not None
    await clear_redis_prefix(api.app[SETTINGS].redis_url, api.app[SETTINGS].redis_prefix)
    got = await api.get(f"/api/v1/ciphertexts/{ct_id}", headers=h)
    assert got.status == 200
    # the same blob, now carrying the server's keyed tag (issue 15) in the frame's tag slot
    import base64

    from wavis import frame

    assert frame.strip_tag(base64.b64decode((await got.json())["ciphertext_b64"])) == \
        base64.b64decode(body["ciphertext_b64"])


# --- idempotency and usage survive a Redis loss ----------------------------------------------

async def test_idempotent_retry_after_redis_loss_replays_and_usage_is_metered_once(api, pair):
    from wavis.service.state import DB, SETTINGS

    h, key_id, body = await _setup(api, pair)
    first = await api.post("/api/v1/ciphertexts", json=body, headers={**h, "Idempotency-Key": "up-1"})
    assert first.status == 201
    ct = (await first.json())["ciphertext_id"]
    ops = []
    for i in range(3):
        r = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": [ct, ct]},
                           headers={**h, "Idempotency-Key": f"add-{i}"})
        assert r.status == 200, await r.text()
        ops.append(await r.json())
    settings = api.app[SETTINGS]
    await clear_redis_prefix(settings.redis_url, settings.redis_prefix)  # Redis lost everything

    again = await api.post("/api/v1/ciphertexts", json=body, headers={**h, "Idempotency-Key": "up-1"})
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["ciphertext_id"] == ct
    r = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": [ct, ct]},
                       headers={**h, "Idempotency-Key": "add-1"})
    assert r.status == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert (await r.json())["result_ciphertext_id"] == ops[1]["result_ciphertext_id"]
    async with api.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM ciphertexts WHERE id = $1", ct)
        n_ct = await conn.fetchval("SELECT count(*) FROM ciphertexts WHERE account_id = $1", acct)
        fcu = await conn.fetchval("SELECT sum(fcu) FROM usage_events WHERE account_id = $1", acct)
    assert n_ct == 4  # the upload and three results: no duplicates from the replays
    assert fcu == 3  # three confirmed adds at 1 FCU; replays are not metered

    # the monthly counter was rebuilt from PostgreSQL: the next add shows 3 + 1 used
    r = await api.post("/api/v1/compute/add", json={"key_id": key_id, "ciphertext_ids": [ct, ct]}, headers=h)
    assert r.status == 200
    limit = int(r.headers["X-RateLimit-Monthly-Limit"])
    assert limit - int(r.headers["X-RateLimit-Monthly-Remaining"]) == 4
    async with api.app[DB].acquire() as conn:
        assert await conn.fetchval("SELECT sum(fcu) FROM usage_events WHERE account_id = $1", acct) == 4


async def test_failed_operations_are_not_metered(api, pair):
    from wavis.service.state import DB

    h, key_id, body = await _setup(api, pair)
    ct = (await (await api.post("/api/v1/ciphertexts", json=body, headers=h)).json())["ciphertext_id"]
    bad = await api.post("/api/v1/compute/multiply", json={"key_id": key_id, "ciphertext_ids": [ct, "ct_y"]},
                         headers=h)
    assert bad.status == 404
    good = await api.post("/api/v1/compute/multiply", json={"key_id": key_id, "ciphertext_ids": [ct, ct]},
                          headers=h)
    assert good.status == 200, await good.text()
    async with api.app[DB].acquire() as conn:
        rows = await conn.fetch(
            """SELECT request_id, fcu, operation, route FROM usage_events
               WHERE account_id = (SELECT account_id FROM ciphertexts WHERE id = $1)""", ct)
    assert [(r["request_id"], r["fcu"], r["operation"], r["route"]) for r in rows] == [
        (good.headers["X-Request-ID"], 5, "multiply", "POST /api/v1/compute/{operation}")]


# --- every deletion is logged and reported ---------------------------------------------------

async def test_ttl_expiry_key_deletion_and_orphans_are_swept_and_reported(api, pair):
    from wavis.service import sweeper
    from wavis.service.state import CTSTORE, DB

    h, key_id, body = await _setup(api, pair)
    ids = []
    for _ in range(3):
        r = await api.post("/api/v1/ciphertexts", json=body, headers=h)
        ids.append((await r.json())["ciphertext_id"])
    before = (await (await api.get("/api/v1/health")).json())["ciphertext_deletions_total"]
    async with api.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM ciphertexts WHERE id = $1", ids[0])
        await conn.execute("UPDATE ciphertexts SET expires_at = now() - interval '1 s' WHERE id = $1", ids[0])
    r = await api.get(f"/api/v1/ciphertexts/{ids[0]}", headers=h)
    assert r.status == 404 and (await r.json())["error"]["details"]["deletion"] == "ttl"

    store = api.app[CTSTORE]
    orphan, young = f"ct/{acct}/ct_orphan000000000000000000", f"ct/{acct}/ct_young0000000000000000000"
    await store.blobs.put(orphan, b"left by a crash")
    await store.blobs.put(young, b"an upload whose row is not committed yet")
    old = time.time() - 2 * sweeper.ORPHAN_MIN_AGE_S
    os.utime(store.blobs.root / orphan, (old, old))
    out = await sweeper.sweep_once(api.app)
    assert out["expired"] == 1 and out["orphans"] == 1
    names = {n async for n, _ in store.blobs.names("ct")}
    assert orphan not in names and young in names
    assert not any(n.endswith(ids[0]) for n in names) and any(n.endswith(ids[1]) for n in names)

    r = await api.delete(f"/api/v1/ciphertexts/{ids[1]}", headers=h)
    assert r.status == 204
    r = await api.get(f"/api/v1/ciphertexts/{ids[1]}", headers=h)
    assert (await r.json())["error"]["details"]["deletion"] == "deleted"
    r = await api.delete(f"/api/v1/keys/{key_id}", headers=h)
    assert r.status == 200 and (await r.json())["ciphertexts_deleted"] == 1
    r = await api.get(f"/api/v1/ciphertexts/{ids[2]}", headers=h)
    assert (await r.json())["error"]["details"]["deletion"] == "key_deleted"
    names = {n async for n, _ in store.blobs.names("ct")}
    assert not any(n.endswith(i) for i in ids for n in names)

    after = (await (await api.get("/api/v1/health")).json())["ciphertext_deletions_total"]
    assert {k: after[k] - before[k] for k in after} == {"ttl": 1, "deleted": 1, "key_deleted": 1, "lru": 0}
    async with api.app[DB].acquire() as conn:
        logged = {r["ciphertext_id"]: r["reason"] for r in await conn.fetch(
            "SELECT ciphertext_id, reason FROM ciphertext_deletions WHERE account_id = $1", acct)}
    assert logged == {ids[0]: "ttl", ids[1]: "deleted", ids[2]: "key_deleted"}
    metrics = await (await api.get("/metrics")).text()
    assert 'wavis_ciphertext_deletions_total{reason="ttl"}' in metrics


async def test_lru_eviction_removes_the_blob_and_is_logged(make_client, service_settings, pair):
    from wavis.service import ratelimit
    from wavis.service.state import CTSTORE, DB

    probe = await make_client(service_settings)
    add_account_helper(probe)
    h, key_id, body = await _setup(probe, pair)
    size = (await (await probe.post("/api/v1/ciphertexts", json=body, headers=h)).json())["size_bytes"]
    plans = dict(ratelimit.PLANS)
    plans["pro"] = replace(plans["pro"], ciphertext_store_bytes=2 * size + size // 2)
    api = await make_client(replace(service_settings, plans=plans))
    add_account_helper(api)
    h, key_id, body = await _setup(api, pair)
    ids = [(await (await api.post("/api/v1/ciphertexts", json=body, headers=h)).json())["ciphertext_id"]
           for _ in range(2)]
    third = await (await api.post("/api/v1/ciphertexts", json=body, headers=h)).json()
    assert third["evicted_ciphertext_ids"] == [ids[0]]
    names = {n async for n, _ in api.app[CTSTORE].blobs.names("ct")}
    assert not any(n.endswith(ids[0]) for n in names) and any(n.endswith(ids[1]) for n in names)
    async with api.app[DB].acquire() as conn:
        assert await conn.fetchval("SELECT reason FROM ciphertext_deletions WHERE ciphertext_id = $1",
                                   ids[0]) == "lru"
