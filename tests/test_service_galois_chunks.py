"""Galois keys uploaded in chunks (API.md "Sizes": key sets over 40 MB go up in chunks):
POST /keys/{key_id}/galois-keys, merged into the key's evaluator, listed by GET /keys/{id}."""

from __future__ import annotations

import numpy as np
import pytest

from wavis import serialize
from wavis.ckks import EvaluationKeys, KeyGenerator
from wavis.client import KeyPair
from conftest import bearer

pytestmark = pytest.mark.service

N = 1024
SLOTS = N // 2


@pytest.fixture(scope="module")
def pair():
    return KeyPair.generate({"poly_degree": N, "scale_bits": 40, "max_depth": 2, "security_level": "testing"},
                            galois_steps=[1, 2, 3, 5, 8])


async def test_chunked_galois_keys_extend_the_key(api, pair):
    h = bearer(await api.account())
    parts = pair.upload_parts(max_bytes=1)  # one key per request; none beside the public key
    assert len(parts) == 2 + len(pair.eval_keys.galois_keys)  # the public key, relinearization, Galois keys
    resp = await api.post("/api/v1/keys/upload", json=parts[0], headers=h)
    assert resp.status == 200, await resp.text()
    meta = await resp.json()
    key_id = meta["key_id"]
    assert meta["galois_steps"] == []
    for body in parts[1:]:
        resp = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json=body, headers=h)
        assert resp.status == 200, await resp.text()
    meta = await (await api.get(f"/api/v1/keys/{key_id}", headers=h)).json()
    assert meta["galois_steps"] == [1, 2, 3, 5, 8]

    x = np.random.default_rng(3).uniform(-1, 1, SLOTS)
    ct = serialize.b64encode(serialize.dumps(pair.encrypt(x)))
    resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": ct}, headers=h)
    ct_id = (await resp.json())["ciphertext_id"]
    resp = await api.post("/api/v1/compute/rotate", json={"key_id": key_id, "ciphertext_ids": [ct_id], "steps": 5},
                          headers=h)
    assert resp.status == 200, await resp.text()
    out = pair.decrypt(serialize.loads(serialize.b64decode((await resp.json())["result_ciphertext"]),
                                       serialize.Ciphertext, pair.params)).real
    assert np.max(np.abs(out - np.roll(x, -5))) < 1e-5

    # after a restart (evaluator cache empty) the chunks are loaded from PostgreSQL again
    from wavis.service.state import ENGINE

    engine = api.app[ENGINE]
    ctx = engine.contexts.get(pair.params)  # the keys live in the device context's key residency
    assert ctx.get_key(key_id) is not None and len(ctx.get_key(key_id).galois_keys) == 5
    engine.evaluators.discard(key_id)
    assert ctx.get_key(key_id) is None  # the engine's LRU evicts through the context
    resp = await api.post("/api/v1/compute/rotate", json={"key_id": key_id, "ciphertext_ids": [ct_id], "steps": 8},
                          headers=h)
    assert resp.status == 200, await resp.text()
    out = pair.decrypt(serialize.loads(serialize.b64decode((await resp.json())["result_ciphertext"]),
                                       serialize.Ciphertext, pair.params)).real
    assert np.max(np.abs(out - np.roll(x, -8))) < 1e-5
    async def cached():
        raise AssertionError("the evaluator must be cached")

    assert ctx.get_key(key_id) is (await engine.evaluators.get(key_id, cached)).eval_keys  # reloaded onto it
    resp = await api.delete(f"/api/v1/keys/{key_id}", headers=h)
    assert resp.status == 200, await resp.text()
    assert ctx.get_key(key_id) is None  # a deleted key leaves the device


async def test_chunk_errors(api, pair):
    h = bearer(await api.account())
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_parts(max_bytes=1)[0], headers=h)
    key_id = (await resp.json())["key_id"]
    # another key pair's Galois keys → KEY_MISMATCH
    other = KeyGenerator(pair.params).evaluation_keys(galois_steps=[7])
    foreign = serialize.dumps(EvaluationKeys(other.params_fingerprint, other.key_tag, None, other.galois_keys))
    resp = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json={"eval_key": serialize.b64encode(foreign)},
                          headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "KEY_MISMATCH"
    full = serialize.b64encode(serialize.dumps(pair.eval_keys))
    # truncated blob → INVALID_KEY (a key error); unknown key → 404; another account → 404
    resp = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json={"eval_key": full[:200]}, headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "INVALID_KEY"
    assert (await resp.json())["error"]["details"]["field"] == "eval_key"
    resp = await api.post("/api/v1/keys/key_000000000000000000000000/galois-keys", json={"eval_key": full},
                          headers=h)
    assert resp.status == 404
    stranger = bearer(await api.account())
    part = pair.upload_parts(max_bytes=1)[1]
    resp = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json=part, headers=stranger)
    assert resp.status == 404


async def test_concurrent_chunks_keep_every_step_and_repeats_are_not_stored(api, pair):
    import asyncio

    from wavis.service.state import DB

    h = bearer(await api.account(plan="pro"))  # pro: 8 concurrent heavy requests (admission)
    parts = pair.upload_parts(max_bytes=1)
    key_id = (await (await api.post("/api/v1/keys/upload", json=parts[0], headers=h)).json())["key_id"]
    resps = await asyncio.gather(*(api.post(f"/api/v1/keys/{key_id}/galois-keys", json=b, headers=h)
                                   for b in parts[1:]))
    assert all(r.status == 200 for r in resps)
    meta = await (await api.get(f"/api/v1/keys/{key_id}", headers=h)).json()
    assert meta["galois_steps"] == [1, 2, 3, 5, 8]
    again = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json=parts[-1], headers=h)
    assert again.status == 200
    async with api.app[DB].acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM fhe_key_parts WHERE key_id = $1", key_id)
    assert n == len(parts) - 1  # the repeated chunk added nothing and was not stored


async def test_relinearization_key_in_a_chunk_when_the_upload_body_is_too_small(make_client, service_settings):
    """A relinearization key that does not fit beside the public key under the upload body limit
    (N = 2^15 at depth 16: ~41.6 MB of base64, with the public key over 40 MiB) goes up in a chunk
    of its own, for any parameters: the server's upload limit
    is lowered here so that a small ring's key set is over it (no 40 MB upload in a test)."""
    from dataclasses import replace

    from wavis.client import AsyncClient
    from wavis.service.settings import Limits
    from conftest import add_account_helper

    pair = KeyPair.generate({"poly_degree": N, "scale_bits": 40, "max_depth": 2, "security_level": "testing"})
    pk_len = len(serialize.dumps(pair.public_key))
    relin_len = len(serialize.dumps(EvaluationKeys(pair.eval_keys.params_fingerprint, pair.eval_keys.key_tag,
                                                   pair.eval_keys.relin_key, {})))
    limit = 4 * pk_len // 3 + 4096  # the public key fits, the public and relinearization keys do not
    assert 4 * (pk_len + relin_len) // 3 > limit
    api = await make_client(replace(service_settings, limits=replace(Limits(), key_upload_body=limit)))
    add_account_helper(api)
    dev = await api.account()
    h = bearer(dev)

    # the whole key set in one body → 413 naming the lowered limit
    resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
    assert resp.status == 413 and (await resp.json())["error"]["details"]["limit_bytes"] == limit

    # the public key alone, then a multiply before the relinearization key has come → MISSING_KEY
    parts = pair.upload_parts(max_bytes=pk_len + relin_len - 1)
    assert len(parts) == 2 and "eval_key" not in parts[0]
    resp = await api.post("/api/v1/keys/upload", json=parts[0], headers=h)
    assert resp.status == 200, await resp.text()
    key_id = (await resp.json())["key_id"]
    x = np.random.default_rng(5).uniform(-1, 1, SLOTS)
    ct = serialize.b64encode(serialize.dumps(pair.encrypt(x)))
    resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": ct}, headers=h)
    ct_id = (await resp.json())["ciphertext_id"]
    resp = await api.post("/api/v1/compute/multiply", json={"key_id": key_id, "ciphertext_ids": [ct_id, ct_id]},
                          headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "MISSING_KEY", await resp.text()
    await api.delete(f"/api/v1/keys/{key_id}", headers=h)

    # the SDK splits the upload the same way; the relinearization key from the chunk multiplies
    async with AsyncClient(str(api.make_url("")).rstrip("/"), api_key=dev) as c:
        key_id = await c.upload_keys(pair, max_bytes=pk_len + relin_len - 1)
        a = await c.upload_ciphertext(key_id, pair.encrypt(x))
        r = await c.multiply(key_id, a.ciphertext_id, a.ciphertext_id)
    assert np.max(np.abs(pair.decrypt(r.ciphertext).real - x * x)) < 1e-5


async def test_a_resent_relinearization_chunk_is_idempotent_and_other_bytes_conflict(api):
    """A relinearization-key chunk sent again was stored again (a chunk with a relinearization or
    encapsulation key always counted as new). Now every key a key holds is recorded by digest:
    the same chunk again, or the relinearization key the upload body already carried, → 200 and
    no new storage; a chunk with other bytes for a key already held (a fresh encryption of the same
    key pair's relinearization or Galois key) → 409 KEY_CONFLICT naming it, nothing stored; a
    chunk mixing held keys (same bytes) and new ones is stored for the new ones."""
    from wavis.ckks import CkksParameters
    from wavis.service.state import DB

    params = CkksParameters.from_dict({"poly_degree": N, "scale_bits": 40, "max_depth": 2,
                                       "security_level": "testing"})
    seed = b"c" * 32
    pair = KeyPair.generate(params, galois_steps=[1, 2], seed=seed)
    h = bearer(await api.account())
    fp, tag = pair.eval_keys.params_fingerprint, pair.eval_keys.key_tag

    async def stored(key_id):
        async with api.app[DB].acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM fhe_key_parts WHERE key_id = $1", key_id)

    async def chunk(key_id, evk):
        return await api.post(f"/api/v1/keys/{key_id}/galois-keys",
                              json={"eval_key": serialize.b64encode(serialize.dumps(evk))}, headers=h)

    parts = pair.upload_parts(max_bytes=1)  # public key alone, then relinearization, then one Galois key each
    key_id = (await (await api.post("/api/v1/keys/upload", json=parts[0], headers=h)).json())["key_id"]
    for body in parts[1:]:
        assert (await api.post(f"/api/v1/keys/{key_id}/galois-keys", json=body, headers=h)).status == 200
    assert await stored(key_id) == 3
    for body in parts[1:]:  # every chunk re-sent unchanged: 200, nothing stored
        resp = await api.post(f"/api/v1/keys/{key_id}/galois-keys", json=body, headers=h)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["galois_steps"] == [1, 2]
    assert await stored(key_id) == 3

    # the same key pair, other randomness: a relinearization key and a Galois key of other bytes
    kg = KeyGenerator(params, seed=seed)
    assert kg.key_tag == tag
    relin = next(r for r in (kg.relinearization_key(), kg.relinearization_key())
                 if not np.array_equal(np.asarray(r.data), np.asarray(pair.eval_keys.relin_key.data)))
    err = (await (resp := await chunk(key_id, EvaluationKeys(fp, tag, relin, {}))).json())["error"]
    assert resp.status == 409 and err["code"] == "KEY_CONFLICT" and err["details"]["conflicting"] == ["relin"], err
    elt = next(iter(sorted(pair.eval_keys.galois_keys)))
    other = kg.evaluation_keys(galois_steps=[1, 2]).galois_keys[elt]
    err = (await (resp := await chunk(key_id, EvaluationKeys(fp, tag, None, {elt: other}))).json())["error"]
    assert resp.status == 409 and err["details"]["conflicting"] == [f"galois:{elt}"], err
    assert await stored(key_id) == 3

    # a held key (same bytes) beside a new one: stored for the new one
    new = KeyPair.generate(params, galois_steps=[1, 2, 4], seed=seed).eval_keys.galois_keys
    mixed = {e: k for e, k in new.items() if e not in pair.eval_keys.galois_keys}
    mixed[elt] = pair.eval_keys.galois_keys[elt]
    resp = await chunk(key_id, EvaluationKeys(fp, tag, None, mixed))
    assert resp.status == 200 and (await resp.json())["galois_steps"] == [1, 2, 4]
    assert await stored(key_id) == 4

    # the relinearization key the upload body carried, sent again as a chunk: nothing stored
    whole = (await (await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)).json())["key_id"]
    resp = await chunk(whole, EvaluationKeys(fp, tag, pair.eval_keys.relin_key, {}))
    assert resp.status == 200, await resp.text()
    assert await stored(whole) == 0
