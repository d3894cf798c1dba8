"""POST /compute/bootstrap, bootstrappable keys (server mode and blind chunked upload) and the
MISSING_KEY answers, through the real server (PostgreSQL, Redis) on the `testing-n1024` preset."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from wavis import serialize
from wavis.ckks import CkksParameters, EvaluationKeys
from wavis.ckks.bootstrap import Bootstrapper
from wavis.ckks.presets import BOOTSTRAP_PRESETS
from wavis.client import KeyPair
from wavis.service import clock, ops, pricing
from wavis.service.state import DB, REDIS, SETTINGS
from conftest import bearer, error_of

pytestmark = pytest.mark.service

PRESET = "testing-n1024"
PARAMS = {"poly_degree": 1024, "security_level": "testing", "bootstrap_preset": PRESET}


@pytest.fixture(scope="module")
def boot_pair():
    sparse = KeyPair.bootstrap_key_plan(PARAMS, 8).galois_steps  # also sparse packing with 8 slots
    return KeyPair.generate(PARAMS, galois_steps=sparse, bootstrappable=True, seed=b"s" * 32)


class Dev:
    def __init__(self, api, key: str):
        self.api, self.headers = api, bearer(key)

    async def post(self, path, body):
        return await self.api.post("/api/v1" + path, json=body, headers=self.headers)

    async def ok(self, path, body, status=200):
        resp = await self.post(path, body)
        assert resp.status == status, await resp.text()
        return await resp.json(), resp.headers

    async def upload_ct(self, key_id, ct) -> str:
        body, _ = await self.ok("/ciphertexts", {"key_id": key_id,
                                                 "ciphertext_b64": serialize.b64encode(serialize.dumps(ct))}, 201)
        return body["ciphertext_id"]


@pytest.fixture
async def dev(api):
    return Dev(api, await api.account(role="developer"))


def _bits(err) -> float:
    return float(np.mean(-np.log2(np.maximum(np.abs(err), 2.0**-60))))


async def _upload_in_chunks(dev: Dev, pair: KeyPair, max_bytes: int) -> str:
    bodies = pair.upload_parts(max_bytes=max_bytes)
    head, _ = await dev.ok("/keys/upload", bodies[0])
    for body in bodies[1:]:
        await dev.ok(f"/keys/{head['key_id']}/galois-keys", body)
    return head["key_id"]


async def test_blind_chunked_upload_then_bootstrap(dev, boot_pair):
    """Every key kind a bootstrap needs goes up through the chunk endpoint (relinearization and
    encapsulation keys in chunks of their own), then bootstrap answers with its fields."""
    pair = boot_pair
    bodies = pair.upload_parts(max_bytes=1)  # force: head with the public key only, one key per chunk
    assert "eval_key" not in bodies[0]  # (as at N = 2^16, where no ~43 MB key fits beside the public key)
    assert all(serialize.loads(serialize.b64decode(b["eval_key"]), expected_type=EvaluationKeys,
                               params=pair.params) is not None for b in bodies[1:])
    key_id = await _upload_in_chunks(dev, pair, 1)
    resp = await dev.api.get(f"/api/v1/keys/{key_id}", headers=dev.headers)
    meta = await resp.json()
    plan = KeyPair.bootstrap_key_plan(pair.params)
    assert set(plan.galois_steps) <= set(meta["galois_steps"]) and meta["conjugation"] is True
    assert meta["params"]["bootstrap_preset"] == PRESET and meta["max_level"] == BOOTSTRAP_PRESETS[PRESET].max_depth

    rng = np.random.default_rng(1)
    n = pair.params.slot_count
    x = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    ct = pair.encrypt(x)
    a = await dev.upload_ct(key_id, ct)
    prod, _ = await dev.ok("/compute/multiply", {"key_id": key_id, "ciphertext_ids": [a, a]})
    prod2, headers = await dev.ok("/compute/multiply", {"key_id": key_id, "ciphertext_ids": [prod["result_ciphertext_id"]] * 2})
    assert prod2["level"] == 0 and "/api/v1/compute/bootstrap" in headers["X-Noise-Budget-Recovery"]
    out, headers = await dev.ok("/compute/bootstrap", {"key_id": key_id,
                                                      "ciphertext_ids": [prod2["result_ciphertext_id"]]})
    assert out["bootstrap_applied"] is True and out["bootstrap_degraded"] is False
    pre = BOOTSTRAP_PRESETS[PRESET]
    assert out["bootstrap_effective_degree"] == pre.cheb_degree * 2**pre.double_angle
    assert out["precision_bits_expected"] == pre.precision_bits
    assert out["level"] == pre.max_depth and out["noise_budget_remaining"] == 100 and out["cost_units"] == 50
    res = serialize.loads(serialize.b64decode(out["result_ciphertext"]), expected_type=serialize.Ciphertext,
                          params=pair.params)
    assert _bits(pair.decrypt(res) - x**4) >= 18


async def test_server_mode_bootstrappable_key(dev):
    """POST /keys/generate with bootstrappable + bootstrap_preset; encrypt and bootstrap on the server."""
    body, headers = await dev.ok("/keys/generate", {"params": {"poly_degree": 1024, "security_level": "testing"},
                                                   "bootstrappable": True, "bootstrap_preset": PRESET})
    key_id = body["key_id"]
    assert body["params"]["bootstrap_preset"] == PRESET and body["conjugation"] is True
    params = CkksParameters.bootstrappable(PRESET)
    assert set(KeyPair.bootstrap_key_plan(params).galois_steps) <= set(body["galois_steps"])
    vals = list(np.linspace(-1, 1, 16))
    enc, _ = await dev.ok("/ciphertexts/encrypt", {"key_id": key_id, "values": vals}, 201)
    out, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [enc["ciphertext_id"]]})
    assert out["bootstrap_applied"] is True and out["level"] == params.max_depth
    # (server-side decryption floods noise and refuses results at scale 2^40, docs/security.md;
    # the values of a bootstrap are checked with client-side keys in the test above)


async def test_generate_bootstrappable_needs_a_preset(dev):
    resp = await dev.post("/keys/generate", {"params": {"poly_degree": 1024, "security_level": "testing"},
                                             "bootstrappable": True})
    err = await error_of(resp, 400, "INVALID_PARAMS")
    assert PRESET in err["details"]["presets"]
    resp = await dev.post("/keys/generate", {"params": {"poly_degree": 16384, "bootstrap_preset": "nope"},
                                             "bootstrappable": True})
    err = await error_of(resp, 400, "INVALID_PARAMS")
    assert "n65536" in err["details"]["presets"]


async def test_missing_bootstrap_keys_are_named(dev, boot_pair):
    """A key of the preset without its bootstrapping keys: 400 MISSING_KEY with details.missing."""
    pair = KeyPair(boot_pair.params, boot_pair.secret_key, boot_pair.public_key,
                   EvaluationKeys(boot_pair.eval_keys.params_fingerprint, boot_pair.eval_keys.key_tag,
                                  boot_pair.eval_keys.relin_key, {}))
    head, _ = await dev.ok("/keys/upload", pair.upload_body())
    a = await dev.upload_ct(head["key_id"], pair.encrypt([0.25]))
    err = await error_of(await dev.post("/compute/bootstrap", {"key_id": head["key_id"], "ciphertext_ids": [a]}),
                         400, "MISSING_KEY")
    missing = err["details"]["missing"]
    assert "encapsulation" in missing and "conjugation" in missing
    assert any(m.startswith("rotation:") for m in missing)


async def test_bootstrap_input_errors(dev, boot_pair):
    key_id = await _upload_in_chunks(dev, boot_pair, 28 * 1024 * 1024)
    params = boot_pair.params
    enc = boot_pair.encoder
    from wavis.ckks import Encryptor

    odd = Encryptor(params, boot_pair.public_key).encrypt(enc.encode([0.5], level=1, scale=2.0**30))
    a = await dev.upload_ct(key_id, odd)
    err = await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a]}),
                         400, "SCALE_MISMATCH")
    assert "canonical" in err["message"]
    b = await dev.upload_ct(key_id, boot_pair.encrypt([0.5]))
    await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [b], "slots": 3}),
                   400, "INVALID_PARAMS")
    await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [b], "slots": "4"}),
                   422, "SCHEMA_MISMATCH")
    # a declared range too small for the chain: the range's fault (it was 400 SCALE_MISMATCH
    # blaming the canonical ciphertext's scale)
    err = await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [b],
                                                               "input_range": 1e-300}), 400, "INVALID_PARAMS")
    assert err["details"]["field"] == "input_range"
    # sparse packing (slots-periodic message) and a declared range
    v = np.random.default_rng(3).uniform(-4, 4, 8)
    c = await dev.upload_ct(key_id, boot_pair.encrypt(np.tile(v, params.slot_count // 8)))
    out, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [c], "slots": 8,
                                                 "input_range": 4.0})
    res = serialize.loads(serialize.b64decode(out["result_ciphertext"]), expected_type=serialize.Ciphertext,
                          params=params)
    assert _bits((boot_pair.decrypt(res)[:8] - v) / 4) >= 18


async def test_ciphertext_above_the_user_levels_is_refused_at_upload(dev, boot_pair):
    """A bootstrap preset's chain has levels above the user's max_level (top_level, used by the
    bootstrap only): a ciphertext there is refused at upload (400 INVALID_PARAMS naming the
    allowed levels), never stored and reported with a noise budget over 100 %."""
    from wavis.ckks import Encryptor

    key_id = await _upload_in_chunks(dev, boot_pair, 28 * 1024 * 1024)
    params = boot_pair.params
    assert params.top_level > params.max_level
    high = Encryptor(params, boot_pair.public_key).encrypt(boot_pair.encoder.encode([0.5], level=params.top_level))
    resp = await dev.post("/ciphertexts", {"key_id": key_id,
                                           "ciphertext_b64": serialize.b64encode(serialize.dumps(high))})
    err = await error_of(resp, 400, "INVALID_PARAMS")
    assert err["details"]["allowed_levels"] == [0, params.max_level]
    assert err["details"]["level"] == params.top_level and err["details"]["field"] == "ciphertext_b64"
    # the user's top level is accepted and a multiply reports a budget ≤ 100 %
    a = await dev.upload_ct(key_id, boot_pair.encrypt([0.5]))
    out, _ = await dev.ok("/compute/multiply", {"key_id": key_id, "ciphertext_ids": [a, a]})
    assert 0 <= out["noise_budget_remaining"] < 100


async def test_bootstrap_meta_iterations(dev, boot_pair):
    """``iterations: 2`` (META-BTS) through REST: the same level, the META precision figure in
    ``precision_bits_expected``, a more precise result than one bootstrap of the same ciphertext
    (measured on this preset against the decrypted input: 28.4 → 32.4 bits); bad values → 400
    INVALID_PARAMS / 422."""
    key_id = await _upload_in_chunks(dev, boot_pair, 28 * 1024 * 1024)
    params, pre = boot_pair.params, BOOTSTRAP_PRESETS[PRESET]
    x = np.random.default_rng(7).uniform(-1, 1, params.slot_count)
    ct = boot_pair.encrypt(x)
    m = boot_pair.decrypt(ct)
    a = await dev.upload_ct(key_id, ct)
    bits = {}
    for it in (1, 2):
        out, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a], "iterations": it})
        assert out["level"] == pre.max_depth and out["bootstrap_applied"] is True and out["cost_units"] == 50 * it
        assert out["precision_bits_expected"] == (pre.precision_bits_meta if it == 2 else pre.precision_bits)
        res = serialize.loads(serialize.b64decode(out["result_ciphertext"]), expected_type=serialize.Ciphertext,
                              params=params)
        bits[it] = _bits(boot_pair.decrypt(res) - m)
    assert bits[2] >= bits[1] + 3 and bits[2] >= 31, bits
    for bad in (0, 3):
        err = await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a],
                                                                   "iterations": bad}), 400, "INVALID_PARAMS")
        assert "iterations" in err["message"]
    await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a], "iterations": "2"}),
                   422, "SCHEMA_MISMATCH")
    await error_of(await dev.post("/compute/rotate", {"key_id": key_id, "ciphertext_ids": [a], "steps": 1,
                                                      "iterations": 2}), 422, "SCHEMA_MISMATCH")


async def test_meta_bts_is_charged_per_iteration(dev, boot_pair):
    """META-BTS (``iterations: 2``) runs two bootstraps and is charged two bootstraps' FCU
    (``pricing.PRICED_PER_ITERATION``): 100 FCU in the response, in ``usage_events`` and in the
    Redis monthly window (synchronous and ``async``); a refused request (iterations 3) is
    charged nothing; GET /billing/plans says which prices are per iteration."""
    key_id = await _upload_in_chunks(dev, boot_pair, 28 * 1024 * 1024)
    api = dev.api
    async with api.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1",
                                   dev.headers["Authorization"][7:][:16])
    window = f"{api.app[SETTINGS].redis_prefix}rl:fcu:{acct}:{clock.now().strftime('%Y%m')}"

    async def redis_fcu() -> int:
        return int(await api.app[REDIS].get(window) or 0)

    a = await dev.upload_ct(key_id, boot_pair.encrypt(np.linspace(-1, 1, boot_pair.params.slot_count)))
    before = await redis_fcu()
    one, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a]})
    two, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a], "iterations": 2})
    assert one["cost_units"] == pricing.FCU_PER_OPERATION["bootstrap"] == 50 and two["cost_units"] == 100
    assert two["cost_usd"] == pytest.approx(2 * one["cost_usd"]) and two["cost_jpy"] == pytest.approx(2 * one["cost_jpy"])
    queued, _ = await dev.ok("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a], "iterations": 2,
                                                    "async": True}, 202)
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        job = await (await api.get(f"/api/v1/jobs/{queued['job_id']}", headers=dev.headers)).json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.05)
    assert job["status"] == "COMPLETED" and job["cost_units"] == 100, job
    await error_of(await dev.post("/compute/bootstrap", {"key_id": key_id, "ciphertext_ids": [a], "iterations": 3}),
                   400, "INVALID_PARAMS")
    async with api.app[DB].acquire() as conn:
        rows = await conn.fetch("SELECT fcu FROM usage_events WHERE account_id = $1 AND operation = 'bootstrap' "
                                "ORDER BY id", acct)
    assert [r["fcu"] for r in rows] == [50, 100, 100]
    assert await redis_fcu() - before == 250  # the window counted what PostgreSQL metered, the 400 refunded
    table = await (await api.get("/api/v1/billing/plans")).json()
    assert table["fcu_per_operation"]["bootstrap"] == 50 and table["fcu_per_iteration"] == ["bootstrap"]


def test_admission_counts_the_dft_factor_cache():
    """The bootstrap's admission cost (``ops.bootstrap_cost``, the one memory model of
    admission) includes the encoded DFT factors its configuration keeps resident
    (``Bootstrapper.cache_bytes``: ~1.6 GB at N = 2^16, full slots, with the idle baby-rotation
    workspace; less for sparse packing;
    META-BTS adds its scaled last SlotsToCoeffs factor); bad slots are refused as 400."""
    from wavis.errors import ParameterError

    for preset in (PRESET, "n65536"):
        params = CkksParameters.bootstrappable(preset)
        d = params.to_dict()
        s = ops.ckks_shape(d)
        working = ops.BASE_BYTES + 40 * s.ct_bytes(s.limbs + s.special)
        for slots in (None, 8):
            for it in (1, 2):
                cache = Bootstrapper.cache_bytes(params, slots, it)
                cost = ops.bootstrap_cost(d, it, slots)
                assert cost.bytes == working + 2 * (it - 1) * s.ct_bytes(s.limbs + s.special) + cache
                assert cost == ops.REGISTRY["compute/bootstrap"].cost(d, it, slots)
        assert Bootstrapper.cache_bytes(params, 8) < Bootstrapper.cache_bytes(params) \
            < Bootstrapper.cache_bytes(params, None, 2)
    assert 1.2e9 < Bootstrapper.cache_bytes(CkksParameters.bootstrappable("n65536")) < 1.7e9  # with the workspace
    # a key without a preset has no factors (its bootstrap answers MISSING_KEY)
    assert ops.bootstrap_cache_bytes({"poly_degree": 1024, "security_level": "testing"}) == 0
    with pytest.raises(ParameterError):
        ops.bootstrap_cost(CkksParameters.bootstrappable(PRESET).to_dict(), 1, 3)
