"""META-BTS (``Bootstrapper(iterations=2)``, Bae et al., CCS 2022) and the arcsine correction of
EvalMod (``BootstrapPreset.arcsine_degree``) on the `testing` rings: precision against NumPy and
against the single bootstrap, stage by stage bookkeeping (levels, scales), and the typed errors.

Precision is measured against the decrypted input (the message the ciphertext carries), which
is what a bootstrap can reproduce: the public-key encryption noise of the input (~28.7 bits on
these rings) is part of that message and caps any comparison with the encoded vector."""

from __future__ import annotations

import numpy as np
import pytest

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, KeyGenerator
from wavis.ckks.bootstrap import Bootstrapper, dft
from wavis.ckks.bootstrap.bootstrapper import MAX_META_BITS, _sine_headroom_bits
from wavis.ckks.bootstrap.diagnostics import stage_errors
from wavis.ckks.bootstrap.evalmod import (
    approximation_error_log2, arcsine_coefficients, reference_evalmod,
)
from wavis.ckks.polynomial import evaluate_polynomial
from wavis.ckks.presets import BOOTSTRAP_PRESETS, BootstrapPreset
from wavis.errors import MissingKeyError, ParameterError, ScaleMismatchError


def _make(preset: str, seed: bytes = b"m") -> dict:
    params = CkksParameters.bootstrappable(preset)
    kg = KeyGenerator(params, seed=seed * 32)
    plan = Bootstrapper.key_plan(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    enc = Encoder(params)
    return dict(params=params, kg=kg, evk=evk, enc=enc, plan=plan, bs=Bootstrapper(params, evk),
                encryptor=Encryptor(params, kg.public_key(), seed=b"e" * 32), dec=Decryptor(params, kg.secret_key))


@pytest.fixture(scope="module")
def env():
    return _make("testing-n1024")


@pytest.fixture(scope="module")
def arcsine_env():
    return _make("testing-n1024-arcsine", b"a")


def _decode(env, ct):
    return env["enc"].decode(env["dec"].decrypt(ct))


def _bits(err):
    err = np.maximum(np.abs(err), 2.0**-60)
    return float(np.mean(-np.log2(err))), float(-np.log2(np.max(err)))


def _encrypt(env, x, level):
    ct = env["encryptor"].encrypt(env["enc"].encode(x, level=level))
    return ct, _decode(env, ct)


# -- META-BTS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["real", "complex"])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_meta_bts_improves_precision(env, kind, level):
    """testing-n1024 (measured): one bootstrap 28.0–28.5 mean / 26.2–26.7 min bits against the
    decrypted input, META-BTS 32.4–32.9 / 29.4–30.3 (the rescale-noise floor of Δ = 2^40 on
    this ring): at least 3 bits more on the mean and 2 on the minimum."""
    params, bs = env["params"], env["bs"]
    n = params.slot_count
    rng = np.random.default_rng(30 + level)
    x = rng.uniform(-1, 1, n) + (1j * rng.uniform(-1, 1, n) if kind == "complex" else 0)
    ct, m = _encrypt(env, x, level)
    one = bs.bootstrap(ct)
    two = bs.bootstrap(ct, iterations=2)
    for out in (one, two):
        assert out.level == params.max_depth and out.scale == params.level_scale(params.max_depth)
    mean1, low1 = _bits(_decode(env, one) - m)
    mean2, low2 = _bits(_decode(env, two) - m)
    assert mean2 >= 31.5 and low2 >= 28.5, (mean2, low2)
    assert mean2 >= mean1 + 3 and low2 >= low1 + 2, (mean1, low1, mean2, low2)
    # against the encoded vector the input's own encryption noise (~28.7 bits) is the cap
    assert _bits(_decode(env, two) - x)[0] >= _bits(m - x)[0] - 0.5


def test_meta_bts_constructor_option(env):
    """``Bootstrapper(iterations=2)`` makes META-BTS the default of ``bootstrap``; a per-call
    ``iterations=1`` overrides it (the same result, bit for bit, as a one-iteration bootstrapper)."""
    params = env["params"]
    bs2 = Bootstrapper(params, env["evk"], iterations=2)
    assert bs2.iterations == 2 and env["bs"].iterations == 1
    x = np.random.default_rng(3).uniform(-1, 1, params.slot_count)
    ct, m = _encrypt(env, x, 1)
    assert _bits(_decode(env, bs2.bootstrap(ct)) - m)[0] >= 31.5
    a, b = bs2.bootstrap(ct, iterations=1), env["bs"].bootstrap(ct)
    assert np.array_equal(np.asarray(a.data), np.asarray(b.data))


def test_meta_bts_stages(env):
    """Bookkeeping stage by stage: meta_error stays at the input's level and canonical scale and
    carries 2^k_2·(m − BTS(m)); meta_correction lands on level max_depth at Δ_L and carries
    m − BTS(m) to within the second bootstrap's error·2^-k_2 plus the rescale floor; their
    sum is bootstrap(ct, iterations=2) exactly."""
    params, bs = env["params"], env["bs"]
    k2 = bs.meta_bits
    assert k2 == BOOTSTRAP_PRESETS["testing-n1024"].meta_bits
    x = np.random.default_rng(8).uniform(-1, 1, params.slot_count)
    for level in (0, 2):
        ct, m = _encrypt(env, x, level)
        first = bs.bootstrap(ct)
        e1 = _decode(env, first) - m
        err = bs.meta_error(ct, first)
        assert err.level == ct.level and err.scale == ct.scale == params.level_scale(level)
        # the first bootstrap's error, amplified: 2^k_2·|e_1| ≈ 2^(22 − 27) here, plus (below level
        # max_depth) the rounding of bringing BTS(ct) down to the input's level, ~2^-30 before ×2^k_2
        got = _decode(env, err)
        assert np.max(np.abs(got + 2.0**k2 * e1)) < 2.0**(k2 - (32 if level == params.max_depth else 27))
        assert 2.0**-8 < np.max(np.abs(got)) <= 2.0**-2
        corr = bs.meta_correction(err)
        assert corr.level == params.max_depth and corr.scale == params.level_scale(params.max_depth)
        assert np.max(np.abs(_decode(env, corr) + e1)) < 2.0**-28
        final = bs.ev.add(first, corr)
        ref = bs.bootstrap(ct, iterations=2)
        assert np.array_equal(np.asarray(final.data), np.asarray(ref.data))
        assert final.level == params.max_depth and final.scale == params.level_scale(params.max_depth)


def test_meta_bts_dense_preset():
    """Without encapsulation (K = 84, r = 5) one bootstrap gives ~15.6 bits; META-BTS with
    k_2 = 10 ~25.7 (measured): the second iteration adds about k_2 bits."""
    e = _make("testing-n1024-dense", b"d")
    params, bs = e["params"], e["bs"]
    x = np.random.default_rng(9).uniform(-1, 1, params.slot_count)
    ct, m = _encrypt(e, x, 1)
    mean1, _ = _bits(_decode(e, bs.bootstrap(ct)) - m)
    mean2, low2 = _bits(_decode(e, bs.bootstrap(ct, iterations=2)) - m)
    assert mean1 < 18 and mean2 >= mean1 + 8 and low2 >= 22, (mean1, mean2, low2)


def test_meta_bts_constant_input(env):
    """The sine's worst case (x ≡ 0.999, k_n = 9: 19.3 bits) is mostly fixed by META-BTS (~30.7
    measured): the first bootstrap's error is deterministic in the message and the second
    iteration removes it."""
    params, bs = env["params"], env["bs"]
    ct, m = _encrypt(env, np.full(params.slot_count, 0.999), 0)
    mean1, _ = _bits(_decode(env, bs.bootstrap(ct)) - m)
    mean2, low2 = _bits(_decode(env, bs.bootstrap(ct, iterations=2)) - m)
    assert mean1 < 20.5 and mean2 >= 28 and low2 >= 26, (mean1, mean2, low2)


def test_meta_bts_sparse_and_range(env):
    """Sparse packing (8 slots, keys of its own plan) and a declared input range R = 8.

    Sparse packing: the second bootstrap sees only the 8-periodic part of ct − BTS(ct) (SubSum),
    so META-BTS corrects the periodic part of the error (measured 29.9 → 34.8 bits) but not the
    non-periodic rounding noise the first bootstrap's SlotsToCoeffs leaves in each slot (~28.4
    bits here, amplified by 2^(k − k_n) = 2^6): per slot the precision does not drop."""
    params, kg = env["params"], env["kg"]
    plan = Bootstrapper.key_plan(params, 8)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    bs = Bootstrapper(params, evk, slots=8)
    v = np.random.default_rng(5).uniform(-1, 1, 8) + 1j * np.random.default_rng(6).uniform(-1, 1, 8)
    reps = params.slot_count // 8
    ct, m = _encrypt(env, np.tile(v, reps), 1)
    # the reference: the periodic projection of the decrypted input (a sparse bootstrap removes the rest)
    mp = np.tile(m.reshape(-1, 8).mean(axis=0), reps)
    out = {it: _decode(env, bs.bootstrap(ct, iterations=it)) for it in (1, 2)}
    periodic = {it: _bits(np.tile(y.reshape(-1, 8).mean(axis=0), reps) - mp)[0] for it, y in out.items()}
    per_slot = {it: _bits(y - mp)[0] for it, y in out.items()}
    assert periodic[2] >= periodic[1] + 3 and periodic[2] >= 33, periodic
    assert per_slot[2] >= per_slot[1] - 0.3 and per_slot[2] >= 27, per_slot
    bs8 = Bootstrapper(params, env["evk"], input_range=8.0)
    x = np.random.default_rng(2).uniform(-8, 8, params.slot_count)
    ct, m = _encrypt(env, x, 1)
    mean1, _ = _bits((_decode(env, bs8.bootstrap(ct)) - m) / 8)
    mean2, _ = _bits((_decode(env, bs8.bootstrap(ct, iterations=2)) - m) / 8)
    assert mean2 >= mean1 + 2, (mean1, mean2)


def test_meta_bts_errors(env):
    params, bs, evk = env["params"], env["bs"], env["evk"]
    for bad in (0, 3, True, 2.0, "2", None):
        with pytest.raises(ParameterError) as ei:
            Bootstrapper(params, evk, iterations=bad)
        assert ei.value.details["field"] == "iterations"
    for bad in (0, -1, MAX_META_BITS + 1, True, 1.5):
        with pytest.raises(ParameterError) as ei:
            Bootstrapper(params, evk, meta_bits=bad)
        assert ei.value.details["field"] == "meta_bits"
    ct, _ = _encrypt(env, [0.25], 1)
    with pytest.raises(ParameterError):
        bs.bootstrap(ct, iterations=3)
    # meta_error needs the input's own bootstrap (a ciphertext at level max_depth)
    with pytest.raises(ParameterError):
        bs.meta_error(ct, ct)
    with pytest.raises(ParameterError):
        bs.meta_error(ct, "not a ciphertext")
    # the input contract holds for both iterations
    off = env["encryptor"].encrypt(env["enc"].encode([0.5], level=1, scale=2.0**30))
    with pytest.raises(ScaleMismatchError):
        bs.bootstrap(off, iterations=2)
    with pytest.raises(ParameterError):  # R ≠ 1 needs a level for the scale-down, in both bootstraps
        Bootstrapper(params, evk, input_range=4.0).bootstrap(_encrypt(env, [0.1], 0)[0], iterations=2)
    some = env["kg"].evaluation_keys(galois_steps=env["plan"].galois_steps[:2], encapsulation_hamming_weight=32)
    with pytest.raises(MissingKeyError) as ei:
        Bootstrapper(params, some, iterations=2).bootstrap(ct)
    assert "conjugation" in ei.value.details["missing"]
    with pytest.raises(MissingKeyError):
        Bootstrapper(params, some).meta_correction(ct)


# -- the arcsine correction ----------------------------------------------------------------------------
def test_arcsine_coefficients_against_numpy():
    """The Taylor coefficients of arcsin (1, 1/6, 3/40, 5/112) against np.arcsin: the residual
    of degree a is the first omitted term, O(y^(a+2))."""
    assert arcsine_coefficients(3) == (0.0, 1.0, 0.0, 1 / 6)
    assert np.allclose(arcsine_coefficients(7), (0, 1, 0, 1 / 6, 0, 3 / 40, 0, 5 / 112))
    y = np.linspace(-0.05, 0.05, 101)
    for a, first_omitted in ((3, 3 / 40), (5, 5 / 112)):
        p = np.polynomial.polynomial.polyval(y, arcsine_coefficients(a))
        resid = np.abs(np.arcsin(y) - p)
        assert np.max(resid) <= 1.01 * first_omitted * 0.05 ** (a + 2) + 1e-18
    for bad in (0, 1, 2, 4):
        with pytest.raises(ValueError):
            arcsine_coefficients(bad)


def test_arcsine_reference_model():
    """NumPy model of EvalMod with the correction: ≈ 2π(t − I), not sin(2πt); the sine alone is
    off by (2πδ)³/6 there."""
    pre = BOOTSTRAP_PRESETS["testing-n1024-arcsine"]
    i = np.arange(-pre.eval_mod_k + 1, pre.eval_mod_k)
    delta = np.linspace(-2.0**-8, 2.0**-8, 17)
    t = (i[:, None] + delta[None, :]).ravel()
    target = np.tile(2 * np.pi * delta, len(i))
    with_a = reference_evalmod(t, pre.eval_mod_k, pre.double_angle, pre.cheb_degree, pre.arcsine_degree)
    without = reference_evalmod(t, pre.eval_mod_k, pre.double_angle, pre.cheb_degree)
    assert np.max(np.abs(with_a - target)) < 3 / 40 * (2 * np.pi * 2.0**-8) ** 5 * 1.1 + 2.0**-40
    assert np.max(np.abs(without - target)) > (2 * np.pi * 2.0**-8) ** 3 / 6 * 0.9
    assert approximation_error_log2(pre.eval_mod_k, pre.double_angle, pre.cheb_degree, 3) < -36


def test_arcsine_preset_chain():
    """The correction's ⌈log2(a+1)⌉ levels are part of the EvalMod region; bad degrees are refused."""
    pre = BOOTSTRAP_PRESETS["testing-n1024-arcsine"]
    assert len(pre.evalmod_bits) == 6 + 2 + 2 and pre.arcsine_degree == 3
    assert _sine_headroom_bits(pre, 1) == _sine_headroom_bits(pre, 512) == pre.sine_headroom_bits
    base = BOOTSTRAP_PRESETS["testing-n1024"]
    from dataclasses import replace

    with pytest.raises(ValueError):
        replace(base, arcsine_degree=3).check()  # levels missing from evalmod_bits
    for bad in (1, 2, 4):
        with pytest.raises(ValueError):
            replace(pre, arcsine_degree=bad).check()
    assert isinstance(pre, BootstrapPreset)


def test_arcsine_eval_mod_against_numpy(arcsine_env):
    """The homomorphic EvalMod with the correction lands on the sine's level and scale and
    matches the NumPy model on the decrypted CoeffsToSlots output."""
    e = arcsine_env
    params, bs = e["params"], e["bs"]
    n = params.slot_count
    x = np.random.default_rng(4).uniform(-1, 1, n)
    ct, _ = _encrypt(e, x, 0)
    parts = bs.coeffs_to_slots(bs.mod_raise(ct))
    pre = bs.preset
    for p in parts:
        u = _decode(e, p).real
        out = bs.eval_mod(p)
        assert out.level == params.max_depth + len(pre.stc_bits)
        assert out.scale == params.level_scale(out.level)
        model = reference_evalmod(u * bs.k, pre.eval_mod_k, pre.double_angle, pre.cheb_degree, pre.arcsine_degree)
        c = 2 * np.pi * params.level_scale(0) * 2.0**bs.sine_headroom_bits / params.moduli[0]
        assert np.max(np.abs(_decode(e, out).real - model / c)) < 2.0**-20


def test_arcsine_precision_and_constant_input(env, arcsine_env):
    """Measured on testing-n1024 against the decrypted input: uniform 28.4 → 31.3 bits (the
    correction lets every slot count use k = 12 instead of k_n = 9), x ≡ 0.999 19.3 → 25.1
    (the residual 3y⁴/40 at y = 2π·2^-8); with META-BTS 32.4–32.9 either way."""
    res = {}
    for name, e in (("plain", env), ("arcsine", arcsine_env)):
        n = e["params"].slot_count
        for kind, x in (("uniform", np.random.default_rng(5).uniform(-1, 1, n)), ("constant", np.full(n, 0.999))):
            ct, m = _encrypt(e, x, 0)
            res[name, kind] = _bits(_decode(e, e["bs"].bootstrap(ct)) - m)[0]
            if name == "arcsine" and kind == "constant":
                res[name, "meta"] = _bits(_decode(e, e["bs"].bootstrap(ct, iterations=2)) - m)[0]
    assert res["arcsine", "uniform"] >= res["plain", "uniform"] + 2 and res["arcsine", "uniform"] >= 30.5, res
    assert res["plain", "constant"] < 20.5 and res["arcsine", "constant"] >= 24.5, res
    assert res["arcsine", "meta"] >= 30, res
    assert arcsine_env["bs"].effective_degree == 63 * 4 * 3


def test_arcsine_stage_errors(arcsine_env):
    """diagnostics.stage_errors on the corrected chain: the 'sine' row (now arcsine∘sine against
    the identity) is far above the rest, and the total is the end-to-end error."""
    e = arcsine_env
    x = np.random.default_rng(21).uniform(-1, 1, e["params"].slot_count)
    rows = stage_errors(e["bs"], e["kg"].secret_key, _encrypt(e, x, 0)[0])
    assert rows["evalmod_sine"]["mean_bits"] >= 40, rows["evalmod_sine"]
    assert rows["total"]["mean_bits"] >= 29, rows["total"]


def test_evaluate_polynomial_explicit_scale(env):
    """``evaluate_polynomial(scale=)`` lands on the given scale (the arcsine correction lands on
    the sine's scale); a bad scale is a typed error."""
    params, bs = env["params"], env["bs"]
    x = np.random.default_rng(1).uniform(-0.5, 0.5, params.slot_count)
    ct, m = _encrypt(env, x, 2)
    target = params.level_scale(0) * 1.5
    out = evaluate_polynomial(bs.ev, ct, [0.0, 1.0, 0.0, 0.25], scale=target)
    assert out.level == 0 and out.scale == target
    assert np.max(np.abs(_decode(env, out) - (m + 0.25 * m**3))) < 1e-6
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(ParameterError):
            evaluate_polynomial(bs.ev, ct, [0.0, 1.0], scale=bad)


def test_dft_untouched_by_meta(env):
    """META-BTS's scaled copy of the last SlotsToCoeffs factor is 2^-k_2 times the original,
    diagonal by diagonal (the DFT factors themselves are shared)."""
    bs = env["bs"]
    ct, _ = _encrypt(env, [0.1], 1)
    bs.meta_correction(bs.meta_error(ct, bs.bootstrap(ct)))
    last, scaled = bs._transforms["stc"][-1], bs._meta_stc[-1]  # noqa: SLF001
    assert set(last.diagonals) == set(scaled.diagonals)
    for k, d in last.diagonals.items():
        assert np.allclose(scaled.diagonals[k], d * 2.0**-bs.meta_bits)
    assert bs._meta_stc[:-1] == bs._transforms["stc"][:-1]  # noqa: SLF001
    assert dft.bit_reverse_indices(4).tolist() == [0, 2, 1, 3]
