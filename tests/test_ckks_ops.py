"""CKKS rotations, conjugation, plaintext/scalar operands, matmul and polynomial evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.ckks.linalg import matmul, matmul_galois_steps
from wavis.ckks.polynomial import evaluate_polynomial, poly_depth
from wavis.errors import (
    DepthExhaustedError, EncodingError, LevelError, MissingRotationKeyError, ParameterError, ShapeError,
)

N = 256
SLOTS = N // 2


@pytest.fixture(scope="module")
def env():
    params = CkksParameters(poly_degree=N, scale_bits=40, max_depth=8, security_level="testing", dnum=3)
    kg = KeyGenerator(params, seed=b"k" * 32)
    steps = sorted(set([1, 2, 4, 8, 16, 32, 64, 5, -3]) | set(matmul_galois_steps(16, 16, SLOTS)))
    evk = kg.evaluation_keys(galois_steps=steps, conjugation=True)
    enc = Encoder(params)
    return params, enc, Encryptor(params, kg.public_key(), seed=b"e" * 32), Decryptor(params, kg.secret_key), Evaluator(params, evk)


def dec(env, ct):
    _, enc, _, d, _ = env
    return enc.decode(d.decrypt(ct))


def enc_vec(env, x):
    _, enc, e, _, _ = env
    return e.encrypt(enc.encode(x))


X = np.random.default_rng(7).uniform(-1, 1, SLOTS)


@pytest.mark.parametrize("steps", [1, 5, -3, 0, SLOTS - 1, SLOTS + 1, 3, 2**31, -(2**31), N + 1, 7])
def test_rotate_any_step(env, steps):
    out = dec(env, env[4].rotate(enc_vec(env, X), steps)).real
    assert np.max(np.abs(out - np.roll(X, -(steps % SLOTS)))) < 1e-6


def test_rotate_missing_key_names_steps(env):
    params, enc, e, d, _ = env
    kg_ev = Evaluator(params, KeyGenerator(params, seed=b"k" * 32).evaluation_keys(galois_steps=[1]))
    with pytest.raises(MissingRotationKeyError) as ei:
        kg_ev.rotate(enc_vec(env, X), 6)
    assert ei.value.details["steps"] == [6]


def test_rotate_rejects_bad_inputs(env):
    ev = env[4]
    ct = enc_vec(env, X)
    with pytest.raises(ParameterError):
        ev.rotate(ct, 1.5)
    three = ev.multiply(ct, ct, relinearize=False, rescale=False)
    with pytest.raises(ParameterError):
        ev.rotate(three, 1)


def test_hoisted_rotations_match(env):
    ev = env[4]
    ct = enc_vec(env, X)
    outs = ev.rotate_many(ct, [1, 2, 4, 8, 0, 3])
    for st, c in outs.items():
        assert np.max(np.abs(dec(env, c).real - np.roll(X, -st))) < 1e-6


def test_conjugate(env):
    z = X + 1j * X[::-1]
    out = dec(env, env[4].conjugate(enc_vec(env, z)))
    assert np.max(np.abs(out - np.conj(z))) < 1e-6


def test_plain_and_scalar_ops(env):
    ev = env[4]
    y = np.random.default_rng(8).uniform(-1, 1, SLOTS)
    ct = enc_vec(env, X)
    assert np.max(np.abs(dec(env, ev.add_plain(ct, y)).real - (X + y))) < 1e-6
    mp = ev.multiply_plain(ct, y)
    assert mp.level == ct.level - 1 and mp.scale == pytest.approx(env[0].level_scale(mp.level), rel=1e-12)
    assert np.max(np.abs(dec(env, mp).real - X * y)) < 1e-6
    assert np.max(np.abs(dec(env, ev.multiply_scalar(ct, -2.5)).real + 2.5 * X)) < 1e-6
    assert np.max(np.abs(dec(env, ev.add_scalar(ct, 0.75)).real - (X + 0.75))) < 1e-6
    assert np.max(np.abs(dec(env, ev.negate(ct)).real + X)) < 1e-6
    with pytest.raises(EncodingError):
        ev.add_plain(ct, [np.nan])
    with pytest.raises(EncodingError):
        ev.multiply_plain(ct, np.ones(SLOTS + 1))
    pt_other_level = env[1].encode(y, level=2)
    with pytest.raises(LevelError):
        ev.multiply_plain(ct, pt_other_level)


def test_sum_and_inner_product(env):
    ev = env[4]
    y = np.random.default_rng(9).uniform(-1, 1, SLOTS)
    s = dec(env, ev.sum_slots(enc_vec(env, X))).real
    assert np.max(np.abs(s - X.sum())) < 1e-5
    ip = dec(env, ev.inner_product(enc_vec(env, X), enc_vec(env, y))).real
    assert np.max(np.abs(ip - X @ y)) < 1e-5


@pytest.mark.parametrize("shape", [(16, 16), (5, 16), (16, 3), (1, 1)])
def test_matmul(env, shape):
    m = np.random.default_rng(10).uniform(-1, 1, shape)
    x = np.zeros(SLOTS)
    x[: shape[1]] = X[: shape[1]]
    ct = enc_vec(env, x)
    steps = matmul_galois_steps(*shape, SLOTS)
    params = env[0]
    kg = KeyGenerator(params, seed=b"k" * 32)
    ev = Evaluator(params, kg.evaluation_keys(galois_steps=steps))
    out = dec(env, matmul(ev, m, ct)).real
    assert np.max(np.abs(out[: shape[0]] - m @ x[: shape[1]])) < 1e-5
    assert np.max(np.abs(out[shape[0]:])) < 1e-5


def _dense_diagonal(m, k, slots):
    """The former construction (a dense slots × slots matrix): the oracle for _diagonal."""
    full = np.zeros((slots, slots))
    full[: m.shape[0], : m.shape[1]] = m
    i = np.arange(slots)
    return full[i, (i + k) % slots]


@pytest.mark.parametrize("shape", [(16, 16), (5, 16), (16, 3), (1, 1), (SLOTS, 7), (3, SLOTS), (SLOTS, SLOTS)])
def test_matmul_builds_only_its_diagonals_bit_identically(env, shape, monkeypatch):
    """matmul builds each diagonal from the matrix itself (O(slots) memory, never the padded
    slots × slots matrix) and its output ciphertext is bit-identical to the dense construction."""
    from wavis.ckks import linalg

    m = np.random.default_rng(11).uniform(-1, 1, shape)
    for k in range(-(shape[0] - 1) - 2, shape[1] + 2):
        assert np.array_equal(linalg._diagonal(m, k, SLOTS), _dense_diagonal(m, k, SLOTS))
    params = env[0]
    ev = Evaluator(params, KeyGenerator(params, seed=b"k" * 32).evaluation_keys(
        galois_steps=matmul_galois_steps(*shape, SLOTS)))
    x = np.zeros(SLOTS)
    x[: shape[1]] = X[: shape[1]]
    ct = enc_vec(env, x)
    built = []
    real = linalg._diagonal
    monkeypatch.setattr(linalg, "_diagonal", lambda mm, k, slots: built.append(k) or real(mm, k, slots))
    new = matmul(ev, m, ct)
    assert len(built) == min(SLOTS, shape[0] + shape[1] - 1)  # one vector per diagonal used
    monkeypatch.setattr(linalg, "_diagonal", _dense_diagonal)
    old = matmul(ev, m, ct)
    assert new.level == old.level and new.scale == old.scale
    assert np.array_equal(np.asarray(new.data), np.asarray(old.data))


def test_matmul_errors(env):
    ev = env[4]
    ct = enc_vec(env, X)
    with pytest.raises(ShapeError):
        matmul(ev, np.ones((SLOTS + 1, 2)), ct)
    with pytest.raises(ShapeError):
        matmul(ev, np.ones(3), ct)
    with pytest.raises(EncodingError):
        matmul(ev, [[np.inf]], ct)


@pytest.mark.parametrize("degree", [1, 2, 3, 7, 15, 31])
def test_polynomial_power_basis(env, degree):
    c = np.random.default_rng(degree).uniform(-1, 1, degree + 1) / (degree + 1)
    ct = enc_vec(env, X)
    out = evaluate_polynomial(env[4], ct, c)
    assert out.level == ct.level - poly_depth(degree)
    want = np.polynomial.polynomial.polyval(X, c)
    assert np.max(np.abs(dec(env, out).real - want)) < 1e-4


@pytest.mark.parametrize("degree", [3, 15, 20])
def test_polynomial_chebyshev(env, degree):
    c = np.random.default_rng(degree).uniform(-1, 1, degree + 1) / 4
    ct = enc_vec(env, X)
    out = evaluate_polynomial(env[4], ct, c, basis="chebyshev")
    assert out.level == ct.level - poly_depth(degree)
    want = np.polynomial.chebyshev.chebval(X, c)
    assert np.max(np.abs(dec(env, out).real - want)) < 1e-4
    x2 = X * 3 + 1  # in [-2, 4]
    out2 = evaluate_polynomial(env[4], enc_vec(env, x2 / 1.0), c, basis="chebyshev", interval=(-2, 4))
    want2 = np.polynomial.chebyshev.chebval((2 * x2 - 2) / 6, c)
    assert np.max(np.abs(dec(env, out2).real - want2)) < 1e-3


def test_polynomial_errors(env):
    ev = env[4]
    ct = enc_vec(env, X)
    with pytest.raises(ParameterError):
        evaluate_polynomial(ev, ct, np.ones(66))
    with pytest.raises(EncodingError):
        evaluate_polynomial(ev, ct, [1, np.nan])
    with pytest.raises(ParameterError):
        evaluate_polynomial(ev, ct, [1, 2], basis="legendre")
    low = ct
    for _ in range(7):
        low = ev.multiply_scalar(low, 1.0)
    with pytest.raises(DepthExhaustedError):
        evaluate_polynomial(ev, low, np.ones(8))


def test_polynomial_interval_whose_width_overflows_is_refused(env):
    """A Chebyshev interval with finite ends whose width b − a (or a + b) overflows: the map
    y = (2x − a − b)/(b − a) became 0·x + 0, every slot evaluated to p(0) and no error was raised
    (a wrong number, 1 instead of 0.6 below). Now ParameterError, as for a ≥ b."""
    ct = enc_vec(env, X)
    for bad in ((-1e308, 1.5e308), (1e308, 1.7e308), (0.0, float("inf")), (2.0, 1.0), ("a", 1)):
        with pytest.raises(ParameterError) as exc:
            evaluate_polynomial(env[4], ct, [1.0, 2.0], basis="chebyshev", interval=bad)
        assert exc.value.details.get("field") == "interval", bad
    # a wide interval that is still computable keeps working: y ≈ 0 → p(y) ≈ 1
    out = evaluate_polynomial(env[4], ct, [1.0, 2.0], basis="chebyshev", interval=(-1e300, 1e300))
    assert np.max(np.abs(dec(env, out).real - 1.0)) < 1e-4


def test_rotate_many_rejects_non_integer_steps(env):
    ct = enc_vec(env, X)
    for bad in (1.7, True, "2"):
        with pytest.raises(ParameterError):
            env[4].rotate_many(ct, [bad])
    with pytest.raises(ShapeError):
        matmul_galois_steps(4, 4, 100)


def test_complex_matrix_is_refused(env):
    with pytest.raises(EncodingError):
        matmul(env[4], [[1 + 2j, 0], [0, 1]], enc_vec(env, X))
    with pytest.raises(EncodingError):
        matmul(env[4], np.eye(2) * 1j, enc_vec(env, X))


def test_non_canonical_scale_is_refused_not_wrong(env):
    """QA finding: a ciphertext encrypted far above its level's canonical scale used to give
    silently wrong results (constants and plaintexts encoded at a tiny derived scale). Every
    operation that derives such a scale now raises ScaleMismatchError; near-canonical scales
    still compute correctly."""
    from wavis.errors import ScaleMismatchError

    params, enc, e, _, ev = env
    lv = params.max_level
    x = 1e-5 * X
    big = e.encrypt(enc.encode(x, level=lv, scale=params.level_scale(lv) * 2.0**38))
    low = ev.drop_to_level(enc_vec(env, X), lv - 1)
    assert np.allclose(dec(env, big).real, x, atol=1e-9)  # the ciphertext itself is fine
    calls = [
        lambda: ev.add(big, low),                      # level alignment (bring_to)
        lambda: ev.multiply_plain(big, X),
        lambda: ev.multiply_scalar(big, 0.5),
        lambda: evaluate_polynomial(ev, big, [0.0, 3.0]),
        lambda: matmul(ev, np.eye(16), big),
        lambda: ev.multiply(big, big),                 # product scale far above Δ_ℓ²
    ]
    for call in calls:
        with pytest.raises(ScaleMismatchError):
            call()
    # a zero vector at 2^600 used to multiply into an infinite scale
    huge = e.encrypt(enc.encode(np.zeros(SLOTS), level=lv, scale=2.0**600))
    with pytest.raises(ScaleMismatchError):
        ev.multiply(huge, huge)
    # rescaling far below the canonical scale of the next level is refused (precision gone)
    mid = e.encrypt(enc.encode(X, level=lv, scale=2.0**50))
    with pytest.raises(ParameterError):
        ev.rescale(mid)
    # a scale a few bits off canonical still works and is exact enough
    near = e.encrypt(enc.encode(X, level=lv, scale=params.level_scale(lv) * 4.0))
    assert np.max(np.abs(dec(env, ev.multiply_scalar(near, 0.5)).real - 0.5 * X)) < 1e-5
    assert np.max(np.abs(dec(env, ev.add(near, low)).real - 2 * X)) < 1e-5


@pytest.mark.parametrize("basis", ["power", "chebyshev"])
@pytest.mark.parametrize("degree,baby", [(7, 8), (15, 4), (20, 8), (39, 8), (63, 8), (39, 16)])
def test_polynomial_baby_steps(env, monkeypatch, basis, degree, baby):
    """Baby-step giant-step evaluation: the same level, scale and values as the plain recursion,
    with fewer non-scalar products (degree 39, B = 8: 13 instead of 24)."""
    params, ev = env[0], env[4]
    rng = np.random.default_rng(degree + baby)
    c = rng.uniform(-1, 1, degree + 1) / (4 if basis == "chebyshev" else degree + 1)
    ct = enc_vec(env, X)
    products = []
    real_multiply = type(ev).multiply

    def counting(self, a, b, *args, **kw):
        products.append(1)
        return real_multiply(self, a, b, *args, **kw)

    monkeypatch.setattr(type(ev), "multiply", counting)
    plain = evaluate_polynomial(ev, ct, c, basis=basis)
    n_plain = len(products)
    products.clear()
    fast = evaluate_polynomial(ev, ct, c, basis=basis, baby_steps=baby)
    n_fast = len(products)
    assert fast.level == plain.level == ct.level - poly_depth(degree)
    assert fast.scale == plain.scale == params.level_scale(fast.level)
    ref = (np.polynomial.chebyshev.chebval if basis == "chebyshev" else np.polynomial.polynomial.polyval)(X, c)
    assert np.max(np.abs(dec(env, fast).real - ref)) < 1e-4
    assert np.max(np.abs(dec(env, fast).real - dec(env, plain).real)) < 1e-4
    assert n_fast <= n_plain
    if degree == 39 and baby == 8:
        assert (n_plain, n_fast) == (24, 13)
    with pytest.raises(ParameterError):
        evaluate_polynomial(ev, ct, c, basis=basis, baby_steps=6)


def test_relinearize_rescale_is_a_lazy_multiply(env):
    """``relinearize_rescale`` of a sum of tensor products (``multiply(…, relinearize=False,
    rescale=False)``) equals the sum of the relinearized, rescaled products: one key switch
    instead of two; size 2 is only rescaled."""
    ev = env[4]
    a, b = enc_vec(env, X), enc_vec(env, X[::-1].copy())
    lazy = ev.relinearize_rescale(ev.add(ev.multiply(a, a, relinearize=False, rescale=False),
                                         ev.multiply(b, b, relinearize=False, rescale=False)))
    eager = ev.add(ev.multiply(a, a), ev.multiply(b, b))
    assert lazy.size == 2 and lazy.level == eager.level == a.level - 1
    assert abs(lazy.scale - eager.scale) < 1e-9 * eager.scale
    want = X**2 + X[::-1] ** 2
    assert np.max(np.abs(dec(env, lazy).real - want)) < 1e-6
    assert np.max(np.abs(dec(env, eager).real - want)) < 1e-6
    only = ev.relinearize_rescale(ev.multiply_scalar(a, 1.0, rescale=False))
    assert only.level == a.level - 1 and np.max(np.abs(dec(env, only).real - X)) < 1e-6
