"""Every CKKS operation of API.md "Compute (CKKS)" through the real server (PostgreSQL, Redis,
CKKS on the compute threads), checked against NumPy, plus each error rule of the section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavis import serialize
from wavis.ckks import Encryptor, Evaluator
from wavis.ckks.linalg import matmul_galois_steps
from conftest import bearer, error_of

pytestmark = pytest.mark.service

N = 2048
SLOTS = N // 2
DEPTH = 4
TOL = 1e-4


@pytest.fixture(scope="session")
def rich_pair():
    """Depth 4, every power-of-two rotation, the 16×16 matmul steps and conjugation."""
    from wavis.client import KeyPair

    steps = sorted({1 << i for i in range(10)} | set(matmul_galois_steps(16, 16, SLOTS)))
    return KeyPair.generate({"poly_degree": N, "scale_bits": 40, "max_depth": DEPTH, "security_level": "testing"},
                            galois_steps=steps, conjugation=True)


@pytest.fixture(scope="session")
def bare_pair(ckks_pair_factory):
    """Depth 1, no Galois keys at all."""
    return ckks_pair_factory(max_depth=1, index=0)


class Session:
    def __init__(self, api, key: str, pair):
        self.api, self.headers, self.pair = api, bearer(key), pair
        self.key_id: str | None = None

    async def post(self, path, body):
        return await self.api.post("/api/v1" + path, json=body, headers=self.headers)

    async def post_raw(self, path, text: str):
        return await self.api.post("/api/v1" + path, data=text.encode(),
                                   headers={**self.headers, "Content-Type": "application/json"})

    async def upload_keys(self) -> dict:
        resp = await self.post("/keys/upload", self.pair.upload_body())
        assert resp.status == 200, await resp.text()
        meta = await resp.json()
        self.key_id = meta["key_id"]
        return meta

    async def upload_ct(self, ct) -> str:
        resp = await self.post("/ciphertexts", {"key_id": self.key_id,
                                                "ciphertext_b64": serialize.b64encode(serialize.dumps(ct))})
        assert resp.status == 201, await resp.text()
        return (await resp.json())["ciphertext_id"]

    async def upload(self, values) -> str:
        return await self.upload_ct(self.pair.encrypt(values))

    async def op(self, op: str, ids: list[str], **extra):
        return await self.post(f"/compute/{op}", {"key_id": self.key_id, "ciphertext_ids": ids, **extra})

    async def ok(self, op: str, ids: list[str], **extra) -> tuple[dict, np.ndarray]:
        resp = await self.op(op, ids, **extra)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert resp.headers["X-Noise-Budget-Remaining"] == f"{body['noise_budget_remaining']:g}"
        return body, self.decode(body["result_ciphertext"])

    def decode(self, text: str) -> np.ndarray:
        ct = serialize.loads(serialize.b64decode(text), expected_type=serialize.Ciphertext, params=self.pair.params)
        return self.pair.decrypt(ct)


@pytest.fixture
async def rich(api, rich_pair):
    s = Session(api, await api.account(), rich_pair)
    await s.upload_keys()
    return s


@pytest.fixture
async def bare(api, bare_pair):
    s = Session(api, await api.account(), bare_pair)
    await s.upload_keys()
    return s


def rand(seed: int, n: int = SLOTS) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, n)


def close(got: np.ndarray, want: np.ndarray, tol: float = TOL) -> None:
    err = float(np.max(np.abs(np.asarray(got) - want)))
    assert err < tol, f"max error {err}"


# --- each operation against NumPy -----------------------------------------------------------------

async def test_linear_ops(rich):
    x, y = rand(1), rand(2)
    a, b = await rich.upload(x), await rich.upload(y)

    body, got = await rich.ok("add", [a, b])
    close(got.real, x + y)
    assert body["level"] == DEPTH and body["cost_units"] == 1 and body["noise_budget_remaining"] == 100
    assert body["status"] == "COMPLETED" and body["job_id"].startswith("op_")
    assert body["bootstrap_applied"] is False and body["bootstrap_effective_degree"] is None
    assert body["bootstrap_degraded"] is False and body["evicted_ciphertext_ids"] == []
    # list price from the pricing module: 1 FCU at $2 per 1 M FCU, in JPY at the fixed rate
    assert abs(body["cost_usd"] - 2e-6) < 1e-12 and abs(body["cost_jpy"] - 2e-6 * 150) < 1e-9
    assert body["queue_time_ms"] >= 0 and body["compute_time_ms"] > 0
    assert abs(body["scale_bits"] - 40) < 1e-6

    body, got = await rich.ok("subtract", [a, b])
    close(got.real, x - y)
    assert body["cost_units"] == 1

    body, got = await rich.ok("negate", [a])
    close(got.real, -x)
    assert body["cost_units"] == 1 and body["level"] == DEPTH

    plain = rand(3, 100)  # shorter than the slots: zero-padded
    body, got = await rich.ok("add-plain", [a], plain_operand=plain.tolist())
    close(got.real, x + np.pad(plain, (0, SLOTS - 100)))
    assert body["cost_units"] == 1 and body["level"] == DEPTH

    body, got = await rich.ok("multiply-plain", [a], plain_operand=plain.tolist())
    close(got.real, x * np.pad(plain, (0, SLOTS - 100)))
    assert body["cost_units"] == 2 and body["level"] == DEPTH - 1
    assert body["noise_budget_remaining"] == 75
    # multiply-plain keeps the scale exactly, so its result meets a fresh operand at the lower level
    body2, got = await rich.ok("subtract", [body["result_ciphertext_id"], b])
    close(got.real, x * np.pad(plain, (0, SLOTS - 100)) - y)
    assert body2["level"] == DEPTH - 1


async def test_multiply_and_rescale(rich):
    x, y = rand(4), rand(5)
    a, b = await rich.upload(x), await rich.upload(y)
    body, got = await rich.ok("multiply", [a, b])
    close(got.real, x * y)
    assert body["level"] == DEPTH - 1 and body["cost_units"] == 5

    # a product the client left unrescaled (scale ≈ 2^80) is rescaled by the server
    pair = rich.pair
    ev = Evaluator(pair.params, pair.eval_keys)
    raw = ev.multiply(pair.encrypt(x), pair.encrypt(y), rescale=False)
    assert raw.size == 2 and raw.scale > 2.0**70
    body, got = await rich.ok("rescale", [await rich.upload_ct(raw)])
    close(got.real, x * y)
    assert body["level"] == DEPTH - 1 and abs(body["scale_bits"] - 40) < 0.01 and body["cost_units"] == 1

    # rescaling an already rescaled ciphertext would leave no precision: refused
    err = await error_of(await rich.op("rescale", [a]), 400, "INVALID_PARAMS")
    assert err["details"]["result_scale_bits"] < 10


async def test_rotate(rich):
    x = rand(6)
    a = await rich.upload(x)
    cases = [1, 6, -1, 0, SLOTS - 1, 2**31, -(2**31), N + 1, 3 * SLOTS + 5, 10**30]
    for steps in cases:
        body, got = await rich.ok("rotate", [a], steps=steps)
        close(got.real, np.roll(x, -(steps % SLOTS)))
        assert body["cost_units"] == 5 and body["level"] == DEPTH, steps


async def test_conjugate(rich):
    x = rand(7)
    pair = rich.pair
    z = x + 1j * rand(8)
    a = await rich.upload_ct(pair.encrypt(z))
    body, got = await rich.ok("conjugate", [a])
    close(got, np.conj(z))
    assert body["cost_units"] == 1 and body["level"] == DEPTH


async def test_sum_and_inner_product(rich):
    x, y = rand(9), rand(10)
    a, b = await rich.upload(x), await rich.upload(y)
    body, got = await rich.ok("sum", [a])
    close(got.real, np.full(SLOTS, x.sum()), 1e-3)
    assert body["cost_units"] == 10 and body["level"] == DEPTH
    body, got = await rich.ok("inner-product", [a, b])
    close(got.real, np.full(SLOTS, x @ y), 1e-3)
    assert body["cost_units"] == 10 and body["level"] == DEPTH - 1


@pytest.mark.parametrize("rows, cols", [(16, 16), (5, 16), (16, 3)])
async def test_matmul(rich, rows, cols):
    x = rand(11)
    m = np.random.default_rng(rows * 100 + cols).uniform(-1, 1, (rows, cols))
    a = await rich.upload(x)
    body, got = await rich.ok("matmul", [a], matrix=m.tolist())
    want = np.zeros(SLOTS)
    want[:rows] = m @ x[:cols]
    close(got.real, want, 1e-3)
    assert body["cost_units"] == 20 and body["level"] == DEPTH - 1


async def test_matmul_shape_on_key_metadata(rich, bare):
    url = f"/api/v1/keys/{rich.key_id}"
    resp = await rich.api.get(url, params={"matmul_shape": "16x16"}, headers=rich.headers)
    assert resp.status == 200, await resp.text()
    info = (await resp.json())["matmul"]
    assert info["galois_steps_required"] == matmul_galois_steps(16, 16, SLOTS)
    assert info["galois_steps_missing"] == [] and info["ready"] is True
    resp = await rich.api.get(url, params={"matmul_shape": "64x64"}, headers=rich.headers)
    info = (await resp.json())["matmul"]
    assert set(info["galois_steps_missing"]) == set(matmul_galois_steps(64, 64, SLOTS)) - set(
        (await (await rich.api.get(url, headers=rich.headers)).json())["galois_steps"])
    assert info["galois_steps_missing"] and info["composable"] is True and info["ready"] is True
    # a key without Galois keys cannot do any matmul wider than one diagonal
    resp = await bare.api.get(f"/api/v1/keys/{bare.key_id}", params={"matmul_shape": "4x4"}, headers=bare.headers)
    info = (await resp.json())["matmul"]
    assert info["ready"] is False and info["galois_steps_missing"] == info["galois_steps_required"]
    # without the query the response is the plain metadata
    plain = await (await rich.api.get(url, headers=rich.headers)).json()
    assert "matmul" not in plain and plain["conjugation"] is True
    assert plain["galois_steps"] == sorted({1 << i for i in range(10)} | set(matmul_galois_steps(16, 16, SLOTS)))
    await error_of(await rich.api.get(url, params={"matmul_shape": "16by16"}, headers=rich.headers),
                   400, "INVALID_PARAMS")
    await error_of(await rich.api.get(url, params={"matmul_shape": f"{SLOTS + 1}x1"}, headers=rich.headers),
                   400, "INVALID_SHAPE")


async def test_poly_eval(rich):
    x = rand(12)
    a = await rich.upload(x)
    coeffs = [0.5, -1.0, 0.25, 2.0]  # degree 3: two levels
    body, got = await rich.ok("poly-eval", [a], polynomial_coeffs=coeffs)
    close(got.real, np.polynomial.polynomial.polyval(x, coeffs), 1e-3)
    assert body["level"] == DEPTH - 2 and body["cost_units"] == 10
    # Chebyshev basis on [-2, 2] (one more level for the interval map)
    cheb = [0.1, 0.3, -0.2, 0.05, 0.4]
    xs = 2 * x
    b = await rich.upload(xs)
    body, got = await rich.ok("poly-eval", [b], polynomial_coeffs=cheb, basis="chebyshev", interval=[-2, 2])
    close(got.real, np.polynomial.chebyshev.chebval(xs / 2, cheb), 1e-3)
    assert body["level"] == DEPTH - 3 - 1
    # degree 31 needs 5 levels; the key has 4
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=[0.01] * 32), 409, "DEPTH_EXHAUSTED")
    # more than 65 coefficients, a bad interval, an interval for the power basis
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=[0.0] * 66), 400, "INVALID_PARAMS")
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=cheb, basis="chebyshev", interval=[1, -1]),
                   400, "INVALID_PARAMS")
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=coeffs, interval=[-2, 2]), 400, "INVALID_PARAMS")
    # finite ends whose width overflows: it answered 200 with p(0) in every slot (a wrong number)
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=cheb, basis="chebyshev",
                                 interval=[-1e308, 1.5e308]), 400, "INVALID_PARAMS")
    await error_of(await rich.op("poly-eval", [a], polynomial_coeffs=coeffs, basis="legendre"), 422,
                   "SCHEMA_MISMATCH")


# --- error rules ----------------------------------------------------------------------------------

async def test_depth_exhausted_is_409(bare):
    a = await bare.upload(rand(13))
    low, _ = await bare.ok("multiply", [a, a])
    assert low["level"] == 0
    low_id = low["result_ciphertext_id"]
    for op, extra in [("multiply", {}), ("multiply-plain", {"plain_operand": [1.0]}), ("rescale", {}),
                      ("inner-product", {}), ("poly-eval", {"polynomial_coeffs": [0.0, 1.0, 1.0]})]:
        ids = [low_id, low_id] if op in ("multiply", "inner-product") else [low_id]
        resp = await bare.op(op, ids, **extra)
        if op == "inner-product":  # the key lacks the rotations, and that is checked first
            await error_of(resp, 400, "MISSING_ROTATION_KEY")
        else:
            await error_of(resp, 409, "DEPTH_EXHAUSTED")


async def test_missing_rotation_keys_list_the_steps(bare):
    a = await bare.upload(rand(14))
    err = await error_of(await bare.op("rotate", [a], steps=5), 400, "MISSING_ROTATION_KEY")
    assert err["details"]["steps"] == [5]
    err = await error_of(await bare.op("sum", [a]), 400, "MISSING_ROTATION_KEY")
    assert err["details"]["steps"] == [1 << i for i in range(10)]
    err = await error_of(await bare.op("conjugate", [a]), 400, "MISSING_ROTATION_KEY")
    err = await error_of(await bare.op("matmul", [a], matrix=np.eye(4).tolist()), 400, "MISSING_ROTATION_KEY")
    assert set(err["details"]["steps"]) == set(matmul_galois_steps(4, 4, SLOTS))
    # rotation by 0 (mod slots) needs no key at all
    body, got = await bare.ok("rotate", [a], steps=SLOTS)
    close(got.real, rand(14))


async def test_key_and_scale_mismatch(api, rich, bare):
    # operands of another key (same account) → KEY_MISMATCH for unary and binary ops alike
    x = rand(15)
    own = await rich.upload(x)
    foreign = await bare.upload(rand(16))
    session = rich
    for op, ids, extra in [("rotate", [foreign], {"steps": 1}), ("inner-product", [own, foreign], {}),
                           ("subtract", [foreign, own], {}), ("matmul", [foreign], {"matrix": [[1.0]]})]:
        resp = await api.post(f"/api/v1/compute/{op}", json={"key_id": rich.key_id, "ciphertext_ids": ids, **extra},
                              headers=bare.headers)
        await error_of(resp, 404, "NOT_FOUND")  # bare's account cannot see rich's key
        resp = await session.op(op, ids, **extra)
        await error_of(resp, 404, "NOT_FOUND")  # and rich's account cannot see bare's ciphertexts
    # same account, two keys
    s2 = Session(api, None, bare.pair)
    s2.headers = rich.headers
    await s2.upload_keys()
    foreign = await s2.upload(rand(16))
    for op, ids, extra in [("rotate", [foreign], {"steps": 1}), ("inner-product", [own, foreign], {}),
                           ("subtract", [foreign, own], {}), ("add-plain", [foreign], {"plain_operand": [1.0]})]:
        err = await error_of(await rich.op(op, ids, **extra), 400, "KEY_MISMATCH")
        assert err["details"]["ciphertext_id"] == foreign

    # a ciphertext at another scale (2^35 instead of 2^40) → SCALE_MISMATCH, never garbage
    pair = rich.pair
    odd = Encryptor(pair.params, pair.public_key).encrypt(pair.encoder.encode(x, scale=2.0**35))
    odd_id = await rich.upload_ct(odd)
    for op in ("add", "subtract"):
        err = await error_of(await rich.op(op, [own, odd_id]), 400, "SCALE_MISMATCH")
        assert len(err["details"]["scale_bits"]) == 2
    # the odd scale is fine on its own
    _, got = await rich.ok("negate", [odd_id])
    close(got.real, -x, 1e-3)


async def test_plain_operands_nan_inf_and_too_many_are_400(rich):
    a = await rich.upload(rand(17))
    ids = json.dumps([a])
    k = json.dumps(rich.key_id)
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        for op in ("add-plain", "multiply-plain"):
            resp = await rich.post_raw(f"/compute/{op}",
                                       f'{{"key_id": {k}, "ciphertext_ids": {ids}, "plain_operand": [1.0, {literal}]}}')
            err = await error_of(resp, 400, "INVALID_PLAINTEXT")
            assert err["details"]["field"] == "plain_operand"
        resp = await rich.post_raw("/compute/matmul",
                                   f'{{"key_id": {k}, "ciphertext_ids": {ids}, "matrix": [[1.0, {literal}]]}}')
        await error_of(resp, 400, "INVALID_PLAINTEXT")
        resp = await rich.post_raw("/compute/poly-eval",
                                   f'{{"key_id": {k}, "ciphertext_ids": {ids}, "polynomial_coeffs": [0.0, {literal}]}}')
        await error_of(resp, 400, "INVALID_PLAINTEXT")
    err = await error_of(await rich.op("add-plain", [a], plain_operand=[0.5] * (SLOTS + 1)), 400,
                         "INVALID_PLAINTEXT")
    assert err["details"]["slots"] == SLOTS
    # values whose scaled encoding overflows
    await error_of(await rich.op("add-plain", [a], plain_operand=[1e300]), 400, "INVALID_PLAINTEXT")
    # matrices: wider or taller than the slots, ragged
    await error_of(await rich.op("matmul", [a], matrix=[[0.5]] * (SLOTS + 1)), 400, "INVALID_SHAPE")
    await error_of(await rich.op("matmul", [a], matrix=[[0.5] * (SLOTS + 1)]), 400, "INVALID_SHAPE")
    await error_of(await rich.op("matmul", [a], matrix=[[0.5, 0.5], [0.5]]), 400, "INVALID_SHAPE")
    # JSON that is not even JSON
    await error_of(await rich.post_raw("/compute/add-plain", '{"key_id": NaN'), 422, "SCHEMA_MISMATCH")


@pytest.mark.parametrize("op, extra", [
    ("add", {"steps": 1}),                      # a field the operation does not take
    ("rotate", {}),                             # steps missing
    ("rotate", {"steps": 1.5}),
    ("rotate", {"steps": True}),
    ("rotate", {"steps": "1"}),
    ("add-plain", {}),                          # plain_operand missing
    ("add-plain", {"plain_operand": []}),
    ("matmul", {"matrix": []}),
    ("matmul", {"matrix": [[]]}),
    ("poly-eval", {"polynomial_coeffs": []}),
])
async def test_bodies_that_do_not_fit_the_schema_are_422(rich, op, extra):
    a = await rich.upload(rand(18))
    await error_of(await rich.op(op, [a], **extra), 422, "SCHEMA_MISMATCH")


async def test_arity_is_checked(rich):
    a = await rich.upload(rand(19))
    for op in ("add", "subtract", "multiply", "inner-product"):
        await error_of(await rich.op(op, [a]), 422, "SCHEMA_MISMATCH")
    for op in ("negate", "rescale", "conjugate", "sum"):
        await error_of(await rich.op(op, [a, a]), 422, "SCHEMA_MISMATCH")


async def test_bootstrap_needs_a_preset_and_headers_warn_below_half(rich):
    a = await rich.upload(rand(20))
    err = await error_of(await rich.op("bootstrap", [a]), 400, "MISSING_KEY")
    assert err["details"]["missing"] == ["bootstrap_preset"] and "testing-n1024" in err["details"]["presets"]
    resp = await rich.op("negate", [a])
    assert resp.headers["X-Noise-Budget-Warning"] == "false" and resp.headers["X-Noise-Budget-Remaining"] == "100"
    body, _ = await rich.ok("poly-eval", [a], polynomial_coeffs=[0.0, 0.0, 0.0, 1.0])  # 2 of 4 levels left
    resp = await rich.op("multiply", [body["result_ciphertext_id"]] * 2)
    assert resp.status == 200
    assert resp.headers["X-Noise-Budget-Remaining"] == "25" and resp.headers["X-Noise-Budget-Warning"] == "true"
    assert "/api/v1/compute/bootstrap" not in resp.headers["X-Noise-Budget-Recovery"]  # (no preset: it would refuse)
    # scale_stable is accepted (the scale is tracked exactly either way)
    body, _ = await rich.ok("multiply", [a, a], scale_stable=True)
    assert body["level"] == DEPTH - 1


async def test_operations_charge_their_fcu(make_client, service_settings, bare_pair):
    from dataclasses import replace

    from conftest import add_account_helper
    from wavis.service import ratelimit

    plans = dict(ratelimit.PLANS)
    plans["free"] = replace(plans["free"], monthly_fcu=7)  # no overage: a hard cap
    client = await make_client(replace(service_settings, plans=plans))
    add_account_helper(client)
    s = Session(client, await client.account(plan="free"), bare_pair)
    await s.upload_keys()
    a = await s.upload(rand(21))
    await s.ok("multiply", [a, a])  # 5 FCU
    await error_of(await s.op("rotate", [a], steps=SLOTS), 402, "QUOTA_EXHAUSTED")  # 5 more: over 7
    await error_of(await s.op("multiply-plain", [a], plain_operand=[float("nan")]), 400, "INVALID_PLAINTEXT")  # refunded
    await s.ok("multiply-plain", [a], plain_operand=[0.5])  # 2 FCU: 7 of 7
    await error_of(await s.op("negate", [a]), 402, "QUOTA_EXHAUSTED")


async def test_numbers_must_be_json_numbers(rich):
    """Strings and booleans are not coerced into plaintext values (422, never a silent 1.0)."""
    a = await rich.upload(rand(5))
    for bad in (["1"], [True], ["nan"]):
        resp = await rich.op("add-plain", [a], plain_operand=bad)
        assert resp.status == 422, (bad, await resp.text())
    resp = await rich.op("add-plain", [a], plain_operand=[1, 2.5])
    assert resp.status == 200, await resp.text()


async def test_flags_must_be_json_booleans(rich):
    a = await rich.upload(rand(6))
    resp = await rich.op("add", [a, a], scale_stable="yes")
    assert resp.status == 422, await resp.text()
    resp = await rich.op("add", [a, a], scale_stable=True)
    assert resp.status == 200, await resp.text()
