"""Keys, ciphertexts and compute through the HTTP API with real CKKS, PostgreSQL and Redis.
Every bad input must get its documented 4xx code, never a 500."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from wavis import serialize
from conftest import bearer, error_of

pytestmark = pytest.mark.service


class Session:
    """An account on the test server with helpers for the CKKS endpoints."""

    def __init__(self, api, key: str):
        self.api, self.headers = api, bearer(key)

    async def post(self, path, body):
        return await self.api.post("/api/v1" + path, json=body, headers=self.headers)

    async def upload_keys(self, pair) -> dict:
        resp = await self.post("/keys/upload", pair.upload_body())
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def upload(self, key_id: str, ct) -> dict:
        resp = await self.post("/ciphertexts", {"key_id": key_id,
                                                "ciphertext_b64": serialize.b64encode(serialize.dumps(ct))})
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def compute(self, op: str, key_id: str, ids: list[str]):
        return await self.post(f"/compute/{op}", {"key_id": key_id, "ciphertext_ids": ids})


@pytest.fixture
async def dev(api):
    return Session(api, await api.account(role="developer"))


@pytest.fixture
def pair(ckks_pair_factory):
    return ckks_pair_factory(max_depth=1, index=0)


@pytest.fixture
def other_pair(ckks_pair_factory):
    return ckks_pair_factory(max_depth=1, index=1)


def vectors(pair, seed=0):
    rng = np.random.default_rng(seed)
    n = pair.params.slot_count
    return rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)


def decode(pair, text: str) -> np.ndarray:
    ct = serialize.loads(serialize.b64decode(text), expected_type=serialize.Ciphertext, params=pair.params)
    return pair.decrypt(ct).real


async def test_upload_keys_and_get_metadata(dev, pair):
    meta = await dev.upload_keys(pair)
    assert meta["key_id"].startswith("key_")
    assert meta["slot_count"] == pair.params.slot_count
    assert meta["params"] == pair.params.to_dict()
    assert meta["galois_steps"] == [] and meta["blind_guarantee"] is True
    assert meta["created_at"].endswith("Z")
    resp = await dev.api.get(f"/api/v1/keys/{meta['key_id']}", headers=dev.headers)
    assert resp.status == 200
    got = await resp.json()
    assert got == meta
    assert "public_key" not in got and "eval_key" not in got and "secret_key" not in got


async def test_testing_parameters_carry_a_security_warning(dev, pair):
    resp = await dev.post("/keys/upload", pair.upload_body())
    assert resp.status == 200
    assert "X-Security-Warning" in resp.headers


async def test_add_and_multiply_end_to_end(dev, pair):
    key_id = (await dev.upload_keys(pair))["key_id"]
    x, y = vectors(pair)
    a = await dev.upload(key_id, pair.encrypt(x))
    b = await dev.upload(key_id, pair.encrypt(y))
    assert a["level"] == 1 and abs(a["scale_bits"] - 40) < 1e-6 and a["slots"] == pair.params.slot_count
    assert a["ciphertext_id"].startswith("ct_") and a["expires_at"].endswith("Z")

    resp = await dev.compute("add", key_id, [a["ciphertext_id"], b["ciphertext_id"]])
    assert resp.status == 200, await resp.text()
    added = await resp.json()
    assert added["status"] == "COMPLETED" and added["level"] == 1 and added["cost_units"] == 1
    assert np.max(np.abs(decode(pair, added["result_ciphertext"]) - (x + y))) < 1e-5

    resp = await dev.compute("multiply", key_id, [a["ciphertext_id"], b["ciphertext_id"]])
    assert resp.status == 200, await resp.text()
    prod = await resp.json()
    assert prod["level"] == 0 and prod["noise_budget_remaining"] == 0 and prod["cost_units"] == 5
    assert resp.headers["X-Noise-Budget-Warning"] == "true"
    # this key has no bootstrap preset: the hint names no endpoint that would refuse it
    assert "/compute/bootstrap" not in resp.headers["X-Noise-Budget-Recovery"]
    assert np.max(np.abs(decode(pair, prod["result_ciphertext"]) - x * y)) < 1e-5

    # results are stored ciphertexts: fetch one back, and use it as an operand (levels align)
    resp = await dev.api.get(f"/api/v1/ciphertexts/{prod['result_ciphertext_id']}", headers=dev.headers)
    assert resp.status == 200
    fetched = await resp.json()
    assert fetched["ciphertext_b64"] == prod["result_ciphertext"] and fetched["level"] == 0
    # Operands at different levels meet at the lower one; if the rescaled scale drifted from a
    # fresh one's the answer is a clear SCALE_MISMATCH, never a 500.
    resp = await dev.compute("add", key_id, [prod["result_ciphertext_id"], a["ciphertext_id"]])
    if resp.status == 200:
        mixed = await resp.json()
        assert mixed["level"] == 0
        assert np.max(np.abs(decode(pair, mixed["result_ciphertext"]) - (x * y + x))) < 1e-5
    else:
        await error_of(resp, 400, "SCALE_MISMATCH")


async def test_multiply_past_the_last_level_is_409(dev, pair):
    key_id = (await dev.upload_keys(pair))["key_id"]
    x, y = vectors(pair, 1)
    a = await dev.upload(key_id, pair.encrypt(x))
    b = await dev.upload(key_id, pair.encrypt(y))
    resp = await dev.compute("multiply", key_id, [a["ciphertext_id"], b["ciphertext_id"]])
    level0 = (await resp.json())["result_ciphertext_id"]
    resp = await dev.compute("multiply", key_id, [level0, level0])
    await error_of(resp, 409, "DEPTH_EXHAUSTED")


async def test_ciphertexts_of_different_keys_are_key_mismatch(dev, pair, other_pair):
    key_a = (await dev.upload_keys(pair))["key_id"]
    key_b = (await dev.upload_keys(other_pair))["key_id"]
    x, y = vectors(pair, 2)
    ca = await dev.upload(key_a, pair.encrypt(x))
    cb = await dev.upload(key_b, other_pair.encrypt(y))
    err = await error_of(await dev.compute("add", key_a, [ca["ciphertext_id"], cb["ciphertext_id"]]),
                         400, "KEY_MISMATCH")
    assert err["details"]["ciphertext_id"] == cb["ciphertext_id"]
    await error_of(await dev.compute("multiply", key_b, [ca["ciphertext_id"], cb["ciphertext_id"]]),
                   400, "KEY_MISMATCH")
    # uploading a ciphertext of key B under key A is refused as well (same parameters!)
    resp = await dev.post("/ciphertexts", {"key_id": key_a,
                                           "ciphertext_b64": serialize.b64encode(serialize.dumps(other_pair.encrypt(y)))})
    await error_of(resp, 400, "KEY_MISMATCH")


async def test_ciphertext_of_other_parameters_is_key_mismatch(dev, pair, ckks_pair_factory):
    key_id = (await dev.upload_keys(pair))["key_id"]
    deeper = ckks_pair_factory(max_depth=2)
    resp = await dev.post("/ciphertexts", {"key_id": key_id,
                                           "ciphertext_b64": serialize.b64encode(serialize.dumps(deeper.encrypt([1.0])))})
    await error_of(resp, 400, "KEY_MISMATCH")


@pytest.mark.parametrize("mangle, code", [
    (lambda text: text[:-7], "INVALID_CIPHERTEXT"),                         # truncated base64 (bad padding)
    (lambda text: text[: len(text) // 2 // 4 * 4], "INVALID_CIPHERTEXT"),   # valid base64 of a truncated blob
    (lambda text: "!!" + text[2:], "INVALID_CIPHERTEXT"),                   # not base64
    (lambda text: base64.b64encode(b"WAVS" + b"\0" * 64).decode(), "INVALID_CIPHERTEXT"),
    (lambda text: text[:100] + ("B" if text[100] != "B" else "C") + text[101:], "INVALID_CIPHERTEXT"),  # corrupted
])
async def test_bad_ciphertext_uploads_are_400(dev, pair, mangle, code):
    key_id = (await dev.upload_keys(pair))["key_id"]
    good = serialize.b64encode(serialize.dumps(pair.encrypt([0.5])))
    resp = await dev.post("/ciphertexts", {"key_id": key_id, "ciphertext_b64": mangle(good)})
    err = await error_of(resp, 400, code)
    assert "Traceback" not in err["message"]


async def test_a_public_key_is_not_a_ciphertext(dev, pair):
    key_id = (await dev.upload_keys(pair))["key_id"]
    resp = await dev.post("/ciphertexts", {"key_id": key_id,
                                           "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.public_key))})
    await error_of(resp, 400, "INVALID_CIPHERTEXT")


async def test_bad_key_uploads(dev, pair, other_pair, ckks_pair_factory):
    body = pair.upload_body()
    # parameters that do not match the blobs' fingerprint
    wrong = dict(body, params={**pair.params.to_dict(), "max_depth": 2})
    await error_of(await dev.post("/keys/upload", wrong), 400, "KEY_MISMATCH")
    # evaluation keys of another key pair
    mixed = dict(body, eval_key=other_pair.upload_body()["eval_key"])
    await error_of(await dev.post("/keys/upload", mixed), 400, "KEY_MISMATCH")
    # truncated blobs → INVALID_KEY naming the field
    err = await error_of(await dev.post("/keys/upload", dict(body, public_key=body["public_key"][:-12])), 400,
                         "INVALID_KEY")
    assert err["details"]["field"] == "public_key"
    err = await error_of(await dev.post("/keys/upload", dict(body, eval_key=body["eval_key"][:-12])), 400,
                         "INVALID_KEY")
    assert err["details"]["field"] == "eval_key"
    # insecure parameters: the largest depth that fits is in the details
    insecure = dict(body, params={"poly_degree": 8192, "scale_bits": 40, "max_depth": 20,
                                  "security_level": "128-bit"})
    err = await error_of(await dev.post("/keys/upload", insecure), 400, "INSUFFICIENT_SECURITY")
    assert err["details"]["max_depth"] >= 1
    # out-of-range parameters
    bad = dict(body, params={"poly_degree": 1000, "security_level": "testing"})
    await error_of(await dev.post("/keys/upload", bad), 400, "INVALID_PARAMS")


async def test_unknown_and_unbuilt_operations(dev, pair):
    key_id = (await dev.upload_keys(pair))["key_id"]
    await error_of(await dev.compute("frobnicate", key_id, ["ct_a", "ct_b"]), 404, "NOT_FOUND")
    ct = await dev.upload(key_id, pair.encrypt([0.5]))
    err = await error_of(await dev.compute("bootstrap", key_id, [ct["ciphertext_id"]]), 400, "MISSING_KEY")
    assert err["details"]["missing"] == ["bootstrap_preset"]


async def test_missing_resources_and_other_accounts_are_404(api, dev, pair):
    key_id = (await dev.upload_keys(pair))["key_id"]
    ct = await dev.upload(key_id, pair.encrypt([0.25]))
    await error_of(await dev.compute("add", "key_nope", [ct["ciphertext_id"]] * 2), 404, "NOT_FOUND")
    await error_of(await dev.compute("add", key_id, [ct["ciphertext_id"], "ct_nope"]), 404, "NOT_FOUND")
    await error_of(await dev.post("/ciphertexts", {"key_id": "key_nope", "ciphertext_b64": "AAAA"}), 404, "NOT_FOUND")
    stranger = Session(api, await api.account())
    await error_of(await api.get(f"/api/v1/keys/{key_id}", headers=stranger.headers), 404, "NOT_FOUND")
    await error_of(await api.get(f"/api/v1/ciphertexts/{ct['ciphertext_id']}", headers=stranger.headers), 404,
                   "NOT_FOUND")
    await error_of(await stranger.compute("add", key_id, [ct["ciphertext_id"]] * 2), 404, "NOT_FOUND")


async def test_redis_flush_loses_no_ciphertext_and_a_lost_blob_is_404_not_500(dev, pair):
    """Redis is only a cache: flushing it loses nothing. A blob file missing from the blob
    store (an operator deleted it) is a 404 with its reason, never a 500."""
    from conftest import clear_redis_prefix
    from wavis.service.ctstore import blob_name
    from wavis.service.state import CTSTORE, SETTINGS

    key_id = (await dev.upload_keys(pair))["key_id"]
    ct = await dev.upload(key_id, pair.encrypt([0.25]))
    settings = dev.api.app[SETTINGS]
    await clear_redis_prefix(settings.redis_url, settings.redis_prefix)
    resp = await dev.api.get(f"/api/v1/ciphertexts/{ct['ciphertext_id']}", headers=dev.headers)
    assert resp.status == 200, await resp.text()
    ok = await dev.compute("add", key_id, [ct["ciphertext_id"]] * 2)
    assert ok.status == 200, await ok.text()

    store = dev.api.app[CTSTORE]
    account = next(p.name for p in store.blobs.root.joinpath("ct").iterdir())
    await store.blobs.delete([blob_name(account, ct["ciphertext_id"])])
    await clear_redis_prefix(settings.redis_url, settings.redis_prefix)
    err = await error_of(await dev.api.get(f"/api/v1/ciphertexts/{ct['ciphertext_id']}", headers=dev.headers),
                         404, "NOT_FOUND")
    assert "missing from the blob store" in err["details"]["reason"]
    await error_of(await dev.compute("add", key_id, [ct["ciphertext_id"]] * 2), 404, "NOT_FOUND")


async def test_trial_key_counts_its_operations(api, pair):
    resp = await api.post("/api/v1/onboarding/temp-key")
    trial = Session(api, (await resp.json())["api_key"])
    key_id = (await trial.upload_keys(pair))["key_id"]
    ct = (await trial.upload(key_id, pair.encrypt([0.5])))["ciphertext_id"]
    for _ in range(10):
        assert (await trial.compute("add", key_id, [ct, ct])).status == 200
    await error_of(await trial.compute("add", key_id, [ct, ct]), 402, "QUOTA_EXHAUSTED")


async def test_evaluation_keys_are_cached_after_first_use(dev, pair):
    from wavis.service.state import ENGINE

    key_id = (await dev.upload_keys(pair))["key_id"]
    engine = dev.api.app[ENGINE]
    engine.evaluators.discard(key_id)  # as after a restart
    ct = (await dev.upload(key_id, pair.encrypt([0.5])))["ciphertext_id"]
    assert (await dev.compute("add", key_id, [ct, ct])).status == 200
    cached = engine.evaluators._items[key_id]
    assert (await dev.compute("multiply", key_id, [ct, ct])).status == 200
    assert engine.evaluators._items[key_id] is cached


async def test_keys_with_big_fresh_ciphertexts_raise_their_upload_limit(dev, ckks_pair_factory, pair):
    """2 MiB is the ciphertext limit unless a key's fresh ciphertext is bigger (API.md "Sizes"):
    then that key (only) accepts its fresh size + 10 %."""
    big = ckks_pair_factory(max_depth=12, poly_degree=16384)  # 13 limbs of ~41 bits: ~2.9 MB in base64
    small_key = (await dev.upload_keys(pair))["key_id"]
    meta = await dev.upload_keys(big)
    limit = meta["ciphertext_upload_limit_bytes"]
    text = serialize.b64encode(serialize.dumps(big.encrypt([0.5])))
    assert len(text) > 2 * 1024 * 1024 and limit > len(text)
    ct = await dev.upload(meta["key_id"], big.encrypt([0.5]))
    assert ct["level"] == 12
    # the same body under the small key is over that key's limit: 413, not a parse error
    resp = await dev.post("/ciphertexts", {"key_id": small_key, "ciphertext_b64": text})
    await error_of(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_non_canonical_scales_are_refused_not_wrong(dev, ckks_pair_factory):
    """QA finding: a ciphertext uploaded far above its level's canonical scale used to give 200
    with wrong numbers (and a product could reach an infinite scale). Now: 400 SCALE_MISMATCH
    before computing, and uploads at or above 2^1000 are refused as INVALID_CIPHERTEXT."""
    from wavis.ckks import Encryptor

    pair = ckks_pair_factory(max_depth=2, index=0)
    key_id = (await dev.upload_keys(pair))["key_id"]
    p = pair.params
    x, y = vectors(pair, 3)
    lv = p.max_level

    def enc_at(v, scale):
        return Encryptor(p, pair.public_key).encrypt(pair.encoder.encode(v, level=lv, scale=scale))

    big = await dev.upload(key_id, enc_at(1e-5 * x, p.level_scale(lv) * 2.0**38))
    plain = await dev.post("/compute/multiply-plain", {"key_id": key_id, "ciphertext_ids": [big["ciphertext_id"]],
                                                       "plain_operand": [0.5] * 4})
    await error_of(plain, 400, "SCALE_MISMATCH")
    poly = await dev.post("/compute/poly-eval", {"key_id": key_id, "ciphertext_ids": [big["ciphertext_id"]],
                                                 "polynomial_coeffs": [0.0, 3.0]})
    await error_of(poly, 400, "SCALE_MISMATCH")
    zero = await dev.upload(key_id, enc_at(np.zeros(p.slot_count), 2.0**600))
    err = await error_of(await dev.compute("multiply", key_id, [zero["ciphertext_id"]] * 2), 400, "SCALE_MISMATCH")
    assert "canonical" in err["message"]
    # a forged scale of 2^1000 or more is refused at upload
    forged = enc_at(x, p.level_scale(lv))
    forged.scale = 2.0**1001
    resp = await dev.post("/ciphertexts", {"key_id": key_id,
                                           "ciphertext_b64": serialize.b64encode(serialize.dumps(forged))})
    await error_of(resp, 400, "INVALID_CIPHERTEXT")
    # the canonical path still computes correctly
    a = await dev.upload(key_id, pair.encrypt(x))
    resp = await dev.post("/compute/multiply-plain", {"key_id": key_id, "ciphertext_ids": [a["ciphertext_id"]],
                                                      "plain_operand": list(y)})
    assert resp.status == 200, await resp.text()
    assert np.max(np.abs(decode(pair, (await resp.json())["result_ciphertext"]) - x * y)) < 1e-4
