"""CKKS bootstrapping (wavis.ckks.bootstrap) on the small `testing` preset, stage by stage
against NumPy references, end to end (precision over all slots), sparse packing, the input
contract and 20 sequential multiply+bootstrap rounds."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest

from wavis import serialize
from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.ckks.bootstrap import Bootstrapper, dft
from wavis.ckks.bootstrap import bootstrapper
from wavis.ckks.bootstrap.bootstrapper import _sine_headroom_bits
from wavis.ckks.bootstrap.diagnostics import stage_errors
from wavis.ckks.bootstrap.evalmod import (
    approximation_error_log2, cosine_coefficients, failure_log2, reference_evalmod,
)
from wavis.ckks.linalg import LinearTransform
from wavis.ckks.presets import BOOTSTRAP_PRESETS
from wavis.errors import (
    InsufficientSecurityError, MissingKeyError, ParameterError, ScaleMismatchError,
)

PRESET = "testing-n1024"
# measured on this preset (mean / min bits over all 512 slots, uniform [-1, 1]): ~28 / ~26
MEAN_BITS, MIN_BITS = 22.0, 20.0


@pytest.fixture(scope="module")
def env():
    params = CkksParameters.bootstrappable(PRESET)
    kg = KeyGenerator(params, seed=b"b" * 32)
    plan = Bootstrapper.key_plan(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    enc = Encoder(params)
    return dict(params=params, kg=kg, evk=evk, enc=enc, plan=plan,
                encryptor=Encryptor(params, kg.public_key(), seed=b"e" * 32),
                dec=Decryptor(params, kg.secret_key), bs=Bootstrapper(params, evk))


def _decode(env, ct):
    return env["enc"].decode(env["dec"].decrypt(ct))


def _bits(err):
    err = np.maximum(np.abs(err), 2.0**-60)
    return float(np.mean(-np.log2(err))), float(-np.log2(np.max(err)))


def _coeffs(env, ct):
    """Decrypted polynomial coefficients (exact integers, centred)."""
    bs = env["bs"]
    pt = env["dec"].decrypt(ct)
    d = pt.data.copy()
    idx = list(range(ct.level + 1))
    bs.ctx.intt(d, idx)
    return np.array([int(v) for v in bs.ctx.crt_compose(d, idx)], dtype=object)


# -- NumPy references: the DFT factors -----------------------------------------------------------
@pytest.mark.parametrize("n", [2, 8, 64, 512])
@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_dft_factors_match_the_slot_matrix(n, levels):
    u = dft.slot_matrix(n)
    br = np.zeros((n, n))
    br[np.arange(n), dft.bit_reverse_indices(n)] = 1
    stc = np.eye(n)
    for f in dft.slots_to_coeffs_factors(n, levels):
        stc = dft.to_dense(f, n) @ stc
    cts = np.eye(n)
    for f in dft.coeffs_to_slots_factors(n, levels):
        cts = dft.to_dense(f, n) @ cts
    assert np.max(np.abs(stc @ br - u)) < 1e-12 * n
    assert np.max(np.abs(br @ cts - np.linalg.inv(u))) < 1e-12 * n
    assert len(dft.slots_to_coeffs_factors(n, levels)) == levels


def test_slot_matrix_is_the_encoder(env):
    """U·(m_lo + i·m_hi) are the slots of the polynomial m (the encoder's canonical embedding)."""
    n = env["params"].slot_count
    m = np.random.default_rng(3).normal(size=2 * n)
    z = env["enc"].embed(m)
    assert np.max(np.abs(dft.slot_matrix(n) @ (m[:n] + 1j * m[n:]) - z)) < 1e-9


def test_factor_diagonal_counts():
    """A factor merging k butterfly layers has at most 2^(k+1) − 1 diagonals."""
    for f, k in zip(dft.coeffs_to_slots_factors(512, 3), dft.split_layers(9, 3)):
        assert len(f) <= 2 ** (k + 1) - 1


# -- NumPy references: EvalMod -----------------------------------------------------------------
def test_evalmod_approximation():
    pre = BOOTSTRAP_PRESETS[PRESET]
    t = np.arange(-pre.eval_mod_k + 1, pre.eval_mod_k)[:, None] + np.linspace(-1e-3, 1e-3, 11)[None, :]
    got = reference_evalmod(t.ravel(), pre.eval_mod_k, pre.double_angle, pre.cheb_degree)
    assert np.max(np.abs(got - np.sin(2 * np.pi * t.ravel()))) < 2.0**-36
    assert approximation_error_log2(pre.eval_mod_k, pre.double_angle, pre.cheb_degree) < -36
    # a too-low degree is visibly wrong (the check above can fail)
    assert approximation_error_log2(pre.eval_mod_k, pre.double_angle, 15) > -5
    c = np.asarray(cosine_coefficients(pre.eval_mod_k, pre.double_angle, pre.cheb_degree))
    assert c.shape == (pre.cheb_degree + 1,)


def test_failure_bound():
    # monotone in K and h; vanishing for large K; a Monte Carlo tail is below the bound
    assert failure_log2(16, 32, 1024) < failure_log2(12, 32, 1024)
    assert failure_log2(16, 64, 1024) > failure_log2(16, 32, 1024)
    assert failure_log2(84, 1024, 1024) < -40
    rng = np.random.default_rng(0)
    s = rng.uniform(-0.5, 0.5, size=(20000, 33)).sum(axis=1)
    emp = np.mean(np.abs(s) >= 6.0)
    assert emp <= 2.0 ** (failure_log2(7, 32, 1))


# -- presets and parameters ----------------------------------------------------------------------
def test_preset_chain(env):
    params = env["params"]
    pre = BOOTSTRAP_PRESETS[PRESET]
    assert params.top_level == pre.max_depth + pre.boot_depth
    assert params.max_level == pre.max_depth
    assert [q.bit_length() for q in params.moduli] == [pre.first_mod_bits] + [pre.scale_bits] * pre.max_depth + \
        list(pre.boot_mod_bits)
    assert params.level_scale(params.max_depth) == 2.0**pre.scale_bits
    assert CkksParameters.from_dict(params.to_dict()) == params
    assert CkksParameters.from_dict({"bootstrap_preset": PRESET}).fingerprint == params.fingerprint
    top_stc = params.max_depth + len(pre.stc_bits)
    for lv in range(1, params.top_level + 1):  # the recurrence holds except at the EvalMod boundary
        if lv <= params.max_depth or lv > top_stc + 1:
            assert math.isclose(params.level_scale(lv - 1), params.level_scale(lv) ** 2 / params.moduli[lv],
                                rel_tol=1e-12)
    # SlotsToCoeffs: a straight log ladder from 2^(scale_bits + h) down to Δ_L
    assert pre.stc_headroom_bits > 0
    for i in range(len(pre.stc_bits) + 1):
        assert math.isclose(math.log2(params.level_scale(params.max_depth + i)),
                            pre.scale_bits + pre.stc_headroom_bits * i / len(pre.stc_bits), abs_tol=1e-9)
    # the sine lands on the SlotsToCoeffs input: sin(2πt) carries m at exactly Δ_{L+s}
    s_sine = params.level_scale(top_stc) * params.moduli[0] / (
        2 * math.pi * params.level_scale(0) * 2.0**pre.sine_headroom_bits)
    assert math.isclose(params.level_scale(top_stc + 1) ** 2 / params.moduli[top_stc + 1], s_sine, rel_tol=1e-12)
    assert s_sine < params.moduli[top_stc + 1]  # below the EvalMod primes (h = k + 2)


def test_preset_errors():
    with pytest.raises(ParameterError) as ei:
        CkksParameters.bootstrappable("nope")
    assert PRESET in ei.value.details["presets"]
    with pytest.raises(ParameterError):
        CkksParameters.from_dict({"bootstrap_preset": PRESET, "scale_bits": 30})
    with pytest.raises(ParameterError):
        Bootstrapper.key_plan(CkksParameters(poly_degree=1024, security_level="testing"))


def test_parameters_of_the_old_61_bit_presets_fail_clearly():
    """n65536 and testing-n1024 moved to special primes below 2^50 (2026-12-08, another
    fingerprint): a literal saved with the old special_mod_bits = 61 is refused with a message
    that says why and what to do, not built into parameters its keys do not fit."""
    for name in ("n65536", PRESET):
        old = {"bootstrap_preset": name, "special_mod_bits": 61}
        with pytest.raises(ParameterError) as ei:
            CkksParameters.from_dict(old)
        assert ei.value.details["field"] == "special_mod_bits"
        assert "generate new keys" in ei.value.message and "2026-12-08" in ei.value.message
    with pytest.raises(ParameterError) as ei:  # not an old size: the plain message
        CkksParameters.from_dict({"bootstrap_preset": PRESET, "special_mod_bits": 45})
    assert "generate new keys" not in ei.value.message


def test_special_primes_of_the_presets():
    """p_0, the P of the (q_0, p_0) encapsulation key, exceeds q_0 (except n32768's, documented in
    wavis.ckks.presets) and keeps that key's modulus at ~121 bits; the other n65536 special
    primes are below 2^50 (the IFMA kernels), 2^21 above the widest digit, within the bound."""
    for pre in BOOTSTRAP_PRESETS.values():
        p = CkksParameters.bootstrappable(pre.name)
        p0 = p.special_moduli[0]
        assert p0.bit_length() == (pre.first_special_mod_bits or pre.special_mod_bits)
        assert all(q.bit_length() == pre.special_mod_bits for q in p.special_moduli[1:])
        if pre.name != "n32768":
            assert p0 > p.moduli[0]
        widest = max(math.prod(p.moduli[s:e]) for s, e in p.digits)
        assert math.prod(p.special_moduli) > widest
        assert math.prod(p.special_moduli[:-1]) < widest  # the fewest
    p = CkksParameters.bootstrappable("n65536")
    assert [q.bit_length() for q in p.special_moduli] == [61] + [50] * 8
    assert 20 < math.log2(math.prod(p.special_moduli)) - math.log2(max(
        math.prod(p.moduli[s:e]) for s, e in p.digits)) < 22
    assert round(p.log_qp_bits) == 1695 and p.dnum == 3 and p.max_depth == 10
    assert math.log2(p.moduli[0] * p.special_moduli[0]) < 121.1  # the sparse secret's modulus
    from wavis.service.ops import ckks_shape
    assert ckks_shape(p.to_dict()).special == len(p.special_moduli)


def test_key_plan_is_exact(env):
    params, plan, kg = env["params"], env["plan"], env["kg"]
    assert plan.conjugation and plan.relinearization
    assert set(plan.galois_steps) == set(env["bs"].galois_steps())
    assert plan.key_count == 1 + len(env["evk"].galois_keys) + 2  # + the two encapsulation keys
    assert plan.key_bytes == len(serialize.dumps(env["evk"], params))
    sparse = Bootstrapper.key_plan(params, 16)
    assert 16 in sparse.galois_steps and 32 in sparse.galois_steps  # SubSum steps n·2^i
    sparse_keys = kg.evaluation_keys(galois_steps=sparse.galois_steps, conjugation=True,
                                     encapsulation_hamming_weight=32)
    assert sparse.key_bytes == len(serialize.dumps(sparse_keys, params))
    with pytest.raises(ParameterError):
        Bootstrapper.key_plan(params, 3)


# -- homomorphic stages against NumPy -----------------------------------------------------------
def test_linear_transform_matches_numpy(env):
    params, bs = env["params"], env["bs"]
    n = params.slot_count
    rng = np.random.default_rng(5)
    z = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    ct = env["encryptor"].encrypt(env["enc"].encode(z, level=params.top_level))
    for lt, f in zip(bs._transforms["cts"], dft.coeffs_to_slots_factors(n, 3)):
        out = lt.apply(bs.ev, ct)
        ref = dft.apply(f, z) * (1 / (2 * bs.k)) ** (1 / 3)
        assert np.max(np.abs(_decode(env, out) - ref)) < 1e-9
        assert out.level == ct.level - 1 and out.scale == params.level_scale(ct.level - 1)
    with pytest.raises(Exception):
        LinearTransform({0: np.ones(3)}, n)


def test_linear_transform_double_hoisting(env, monkeypatch):
    """Every bootstrap transform has its baby- and giant-step keys, so it runs double-hoisted
    (baby rotations over Q·P, one ModDown per giant step's c_1, one fused ModDown + rescale);
    that and the single-hoisted fallback (rotations composed from other keys, or shared
    ``rotations``) both match NumPy's product."""
    params, bs = env["params"], env["bs"]
    n = params.slot_count
    rng = np.random.default_rng(6)
    z = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    ct = env["encryptor"].encrypt(env["enc"].encode(z, level=params.top_level))
    lts = bs._transforms["cts"]
    assert all(lt._double_hoistable(bs.ev) for lt in lts + bs._transforms["stc"])
    double = lts[0].apply(bs.ev, ct)
    shared = lts[0].apply(bs.ev, ct, rotations={})
    monkeypatch.setattr(LinearTransform, "_double_hoistable", lambda self, ev: False)
    single = lts[0].apply(bs.ev, ct)
    assert np.array_equal(np.asarray(single.data), np.asarray(shared.data))
    assert not np.array_equal(np.asarray(single.data), np.asarray(double.data))  # another rounding path
    ref = dft.apply(dft.coeffs_to_slots_factors(n, 3)[0], z) * (1 / (2 * bs.k)) ** (1 / 3)
    for out in (double, single):
        assert np.max(np.abs(_decode(env, out) - ref)) < 1e-9
        assert out.level == ct.level - 1 and out.scale == params.level_scale(ct.level - 1)


def test_linear_transform_workspace_is_bit_identical(env, monkeypatch):
    """A Workspace shared by a sequence of transforms (as CoeffsToSlots and SlotsToCoeffs run
    their factors) gives exactly the ciphertexts of fresh memory per call, double-hoisted and
    single-hoisted, and the memory is reused: one buffer, sized by the largest request."""
    from wavis.ckks.linalg import Workspace

    params, bs = env["params"], env["bs"]
    n = params.slot_count
    z = np.random.default_rng(11).uniform(-1, 1, n)
    ct = env["encryptor"].encrypt(env["enc"].encode(z, level=params.top_level))
    lts = bs._transforms["cts"]

    def chain(ws):
        outs, x = [], ct
        for lt in lts:
            x = lt.apply(bs.ev, x, workspace=ws)
            outs.append(np.asarray(x.data).copy())
        return outs

    ws = Workspace(bs.ctx)
    fresh, shared = chain(None), chain(ws)
    assert all(np.array_equal(a, b) for a, b in zip(fresh, shared))
    buf = ws._buf
    special = len(params.special_index())
    need = max(lt.scratch_words(params.poly_degree, ct.level - i + 1 + special) for i, lt in enumerate(lts))
    assert buf is not None and buf.size >= need
    assert all(np.array_equal(a, b) for a, b in zip(fresh, chain(ws))) and ws._buf is buf  # reused, not regrown
    monkeypatch.setattr(LinearTransform, "_double_hoistable", lambda self, ev: False)
    single_fresh, single_ws = chain(None), chain(Workspace(bs.ctx))
    assert all(np.array_equal(a, b) for a, b in zip(single_fresh, single_ws))
    # the stages take the context's idle workspace (fresh memory gives the same result) and give
    # it back: one idle workspace per context, reused by the next bootstrap (no new mapping)
    from wavis.ckks.bootstrap.bootstrapper import _WORKSPACES

    ct0 = env["encryptor"].encrypt(env["enc"].encode(z, level=0))
    raised = bs.sub_sum(bs.mod_raise(ct0))
    monkeypatch.undo()
    parts = bs.coeffs_to_slots(raised)
    x = raised
    for lt in lts:
        x = lt.apply(bs.ev, x)
    conj = bs.ev.conjugate(x)
    assert np.array_equal(np.asarray(parts[0].data), np.asarray(bs.ev.add(x, conj).data))
    first = bs.bootstrap(ct0)
    idle = _WORKSPACES[bs.ev.context]
    assert len(idle) == 1 and idle[0]._buf.size >= bs._workspace_words()
    kept = idle[0]._buf
    again = bs.bootstrap(ct0)
    assert len(idle) == 1 and idle[0]._buf is kept
    assert np.array_equal(np.asarray(first.data), np.asarray(again.data))


@pytest.mark.parametrize("gap", [2, 16])
def test_periodic_diagonals_lift_in_a_small_ring(env, gap):
    """A diagonal of period p encodes to g(X^gap); its NTT over the ring of degree N is the NTT of g
    in the ring of degree N/gap, reordered and repeated (``linalg._lift``): checked against the
    full-size NTT on every prime of Q·P, and the short-butterfly DFT factors are found periodic."""
    from wavis.ckks import linalg

    params, ev = env["params"], env["bs"].ev
    rows = list(range(params.top_level + 1)) + list(ev.context.special_index)
    n = params.poly_degree
    g = np.random.default_rng(gap).integers(-2**40, 2**40, size=(2, n // gap))
    f = np.zeros((2, n), dtype=np.int64)
    f[:, ::gap] = g
    full = ev.ctx.from_signed(f, rows)
    ev.ctx.ntt(full, rows)
    small = np.asarray(linalg._lift(ev, g, gap, rows))
    assert small.shape == (2, len(rows), n // gap)
    assert np.array_equal(np.repeat(small, gap, axis=2), np.asarray(full))
    _, _, gp = env["bs"]._transforms["cts"][-1]._coefficients(ev, 2.0**40)
    assert gp > 1  # the last CtS factor (lengths 2 … 8) has period 8


def test_keys_of_the_earlier_baby_step_split_still_bootstrap(env):
    """Key sets made before the cost-weighted baby/giant split (⌈√span⌉ baby steps; stored keys of
    the service) still bootstrap, with that split; the key plan is the new split's."""
    from wavis.ckks.bootstrap.bootstrapper import _build_transforms, _galois_steps

    params, kg = env["params"], env["kg"]
    pre = BOOTSTRAP_PRESETS[PRESET]
    old = _galois_steps(_build_transforms(params, pre, params.slot_count, 1.0, None), params, params.slot_count)
    assert set(old) != set(env["plan"].galois_steps)
    evk = kg.evaluation_keys(galois_steps=old, conjugation=True, encapsulation_hamming_weight=32)
    bs = Bootstrapper(params, evk)
    assert bs.missing_keys() == [] and set(bs.galois_steps()) == set(old)
    assert all(lt._double_hoistable(bs.ev) for lt in bs._transforms["cts"] + bs._transforms["stc"])
    x = np.random.default_rng(8).uniform(-1, 1, params.slot_count)
    ct = env["encryptor"].encrypt(env["enc"].encode(x, level=0))
    mean, low = _bits(_decode(env, bs.bootstrap(ct)) - x)
    assert mean >= MEAN_BITS and low >= MIN_BITS, (mean, low)
    # keys lacking steps of both splits: the error names the new split's missing keys
    partial = kg.evaluation_keys(galois_steps=old[1:], conjugation=True, encapsulation_hamming_weight=32)
    missing = Bootstrapper(params, partial).missing_keys()
    assert missing == [f"rotation:{st}" for st in env["plan"].galois_steps if st not in old[1:]]


def test_bootstrappers_of_one_context_share_the_dft_factors(env):
    """The DFT factors and their encoded diagonals belong to the parameters, not the key: every
    Bootstrapper of a context reuses them (the service keeps one Bootstrapper per key); another
    slot count or range gets its own, at most SHARED_TRANSFORMS per context."""
    params, evk = env["params"], env["evk"]
    a, b = Bootstrapper(params, evk), Bootstrapper(params, evk)
    assert a._transforms is b._transforms is env["bs"]._transforms
    assert Bootstrapper(params, evk, input_range=2.0)._transforms is not a._transforms
    for r in range(bootstrapper.SHARED_TRANSFORMS + 1):
        Bootstrapper(params, evk, input_range=3.0 + r)
    assert len(bootstrapper._TRANSFORMS[a.ev.context]) == bootstrapper.SHARED_TRANSFORMS


def test_stages_against_numpy(env):
    params, bs, enc = env["params"], env["bs"], env["enc"]
    n = params.slot_count
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    ct = env["encryptor"].encrypt(enc.encode(x, level=0))
    # ModRaise: t = I + m·Δ_0/q_0 with small integers I
    raised = bs.mod_raise(ct)
    assert raised.level == params.top_level
    q0 = params.moduli[0]
    cf = _coeffs(env, raised)
    ii = np.array([(2 * int(v) + q0) // (2 * q0) for v in cf])  # round(v / q_0), exactly
    rem = np.array([float(int(v) - int(i) * q0) for v, i in zip(cf, ii)])
    t = ii.astype(np.float64) + rem / q0
    mu = enc.embed_inverse(x)
    assert np.max(np.abs(ii)) < bs.k - 1
    boost = 2.0**bs.sine_headroom_bits  # the message enters ModRaise times 2^k_n
    assert np.max(np.abs(rem / (params.level_scale(0) * boost) - mu)) < 1e-8  # the encryption noise (~2^11 / Δ_0)
    # CoeffsToSlots: t/K in bit-reversed order, real and imaginary halves
    parts = bs.coeffs_to_slots(raised)
    br = dft.bit_reverse_indices(n)
    assert len(parts) == 2
    for k, part in enumerate(parts):
        assert np.max(np.abs(_decode(env, part) - t[br + k * n] / bs.k)) < 1e-12
    # EvalMod: the message coefficients μ (relabelled sin(2πt)/(2π·Δ_0/q_0))
    mods = [bs.eval_mod(p) for p in parts]
    for k, part in enumerate(mods):
        assert part.level == params.max_depth + len(bs.preset.stc_bits)
        assert np.max(np.abs(_decode(env, part).real * 2.0 ** (bs.preset.sine_headroom_bits - bs.sine_headroom_bits)
                              - mu[br + k * n])) < 2.0**-12
    # SlotsToCoeffs: the slots again
    out = bs.slots_to_coeffs(mods)
    assert out.level == params.max_depth and out.scale == params.level_scale(params.max_depth)
    assert np.max(np.abs(_decode(env, out) - x)) < 2.0**-MIN_BITS


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["real", "complex"])
@pytest.mark.parametrize("level", [0, 2])
def test_bootstrap_precision(env, kind, level):
    params, bs, enc = env["params"], env["bs"], env["enc"]
    n = params.slot_count
    rng = np.random.default_rng(11 + level)
    x = rng.uniform(-1, 1, n) + (1j * rng.uniform(-1, 1, n) if kind == "complex" else 0)
    ct = env["encryptor"].encrypt(enc.encode(x, level=level))
    out = bs.bootstrap(ct)
    assert out.level == params.max_depth
    mean, low = _bits(_decode(env, out) - x)
    assert mean >= MEAN_BITS and low >= MIN_BITS, (mean, low)


@pytest.mark.parametrize("slots", [1, 8, 128])
def test_sparse_packing(env, slots):
    params, enc, kg = env["params"], env["enc"], env["kg"]
    plan = Bootstrapper.key_plan(params, slots)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    bs = Bootstrapper(params, evk, slots=slots)
    rng = np.random.default_rng(slots)
    v = rng.uniform(-1, 1, slots) + 1j * rng.uniform(-1, 1, slots)
    x = np.tile(v, params.slot_count // slots)
    out = bs.bootstrap(env["encryptor"].encrypt(enc.encode(x, level=1)))
    mean, low = _bits(_decode(env, out) - x)
    assert mean >= MEAN_BITS and low >= MIN_BITS, (mean, low)


def test_stage_errors(env):
    """Stage by stage (``diagnostics.stage_errors``): each stage's own error, as the slot error it
    alone leaves, is within ~3 bits of what this ring measured (real inputs; mean bits: CtS 31.4,
    EvalMod approximation 30.7 and rounding 28.4, StC 32.6, total 28.3), and the stages account
    for the whole end-to-end error (their RMS errors add up to the total's within a bit)."""
    params, bs, enc = env["params"], env["bs"], env["enc"]
    x = np.random.default_rng(21).uniform(-1, 1, params.slot_count)
    rows = stage_errors(bs, env["kg"].secret_key, env["encryptor"].encrypt(enc.encode(x, level=0)))
    floor = {"encapsulation": 34, "coeffs_to_slots": 28, "evalmod_approximation": 27, "evalmod_rounding": 25,
             "slots_to_coeffs": 29, "total": 25}
    for name, bits in floor.items():
        assert rows[name]["mean_bits"] >= bits, (name, rows[name])
    assert rows["max_abs_I"] < bs.k - 1
    parts = ("coeffs_to_slots", "evalmod_approximation", "evalmod_rounding", "slots_to_coeffs")
    combined = -0.5 * math.log2(sum(2.0 ** (-2 * rows[p]["rms_bits"]) for p in parts))
    assert abs(combined - rows["total"]["rms_bits"]) < 1.0, (combined, rows)
    with pytest.raises(ParameterError):
        stage_errors(Bootstrapper(params, env["evk"], input_range=2.0), env["kg"].secret_key,
                     env["encryptor"].encrypt(enc.encode(x, level=1)))


def test_sine_headroom_rule(env):
    """k_n = min(k, ⌊4.5 + log2(n)/2⌋): the full preset headroom at N = 2^16 full slots, less for
    sparse packing (whose coefficients are larger); an explicit value must lie in 0..k."""
    pre = BOOTSTRAP_PRESETS["n65536"]
    assert _sine_headroom_bits(pre, 2**15) == pre.sine_headroom_bits == 12
    assert _sine_headroom_bits(pre, 2**10) == 9 and _sine_headroom_bits(pre, 1) == 4
    params = env["params"]
    assert env["bs"].sine_headroom_bits == _sine_headroom_bits(BOOTSTRAP_PRESETS[PRESET], params.slot_count)
    assert Bootstrapper(params, env["evk"], sine_headroom_bits=6).sine_headroom_bits == 6
    for bad in (-1, 13, 2.5, True):
        with pytest.raises(ParameterError):
            Bootstrapper(params, env["evk"], sine_headroom_bits=bad)


def test_constant_input_with_lower_headroom(env):
    """A constant vector puts all its energy in one coefficient, where the sine's error
    (2π·m·2^(k−20))²/6 is largest; a lower headroom restores the precision (measured on this
    ring: 19.3 bits at the default k_n = 9, 26+ at k_n = 6)."""
    params, enc = env["params"], env["enc"]
    x = np.full(params.slot_count, 0.999)
    ct = env["encryptor"].encrypt(enc.encode(x, level=0))
    default = _bits(_decode(env, env["bs"].bootstrap(ct)) - x)[0]
    low = _bits(_decode(env, Bootstrapper(params, env["evk"], sine_headroom_bits=6).bootstrap(ct)) - x)[0]
    assert 17 <= default < low and low >= MEAN_BITS, (default, low)


def test_input_range(env):
    params, enc, kg = env["params"], env["enc"], env["kg"]
    bs = Bootstrapper(params, env["evk"], input_range=8.0)
    x = np.random.default_rng(2).uniform(-8, 8, params.slot_count)
    out = bs.bootstrap(env["encryptor"].encrypt(enc.encode(x, level=1)))
    err = np.abs(_decode(env, out) - x) / 8
    assert _bits(err)[0] >= MEAN_BITS - 1
    with pytest.raises(ParameterError):  # the scale-down needs a level
        bs.bootstrap(env["encryptor"].encrypt(enc.encode(x / 8, level=0)))
    with pytest.raises(ParameterError):
        Bootstrapper(params, env["evk"], input_range=0)


def test_input_range_the_chain_cannot_scale_by_is_a_parameter_error(env):
    """A tiny declared range R (1/R too large a constant for the chain) used to surface as
    ScaleMismatchError blaming the ciphertext's scale ("2^40.00 is too far from … 2^40.00",
    REST 400 SCALE_MISMATCH) for a ciphertext at its canonical scale; it is the range's fault:
    ParameterError naming input_range (REST 400 INVALID_PARAMS)."""
    params, enc = env["params"], env["enc"]
    ct = env["encryptor"].encrypt(enc.encode(np.full(4, 1e-6), level=params.max_level))
    for r in (2.0**-20, 1e-300):
        with pytest.raises(ParameterError) as exc:
            Bootstrapper(params, env["evk"], input_range=r).bootstrap(ct)
        assert exc.value.details["field"] == "input_range" and exc.value.details["input_range"] == r
        assert not isinstance(exc.value, ScaleMismatchError)


def test_out_of_range_input_degrades_measurably(env):
    """Undeclared |x| > 1 is the caller's error: measured here (|x| ≤ 4 still refreshes, with
    the relative error of the sine approximation growing as (2π·x·Δ/q_0)²/6)."""
    params, enc = env["params"], env["enc"]
    x = np.random.default_rng(4).uniform(-4, 4, params.slot_count)
    out = env["bs"].bootstrap(env["encryptor"].encrypt(enc.encode(x, level=1)))
    assert _bits((_decode(env, out) - x) / 4)[0] >= MEAN_BITS - 2


# -- input contract --------------------------------------------------------------------------------
def test_non_canonical_scale_is_refused(env):
    params, enc = env["params"], env["enc"]
    ct = env["encryptor"].encrypt(enc.encode([0.5], level=1, scale=2.0**30))
    with pytest.raises(ScaleMismatchError) as ei:
        env["bs"].bootstrap(ct)
    assert "canonical" in str(ei.value) and ei.value.details["level"] == 1


def test_non_relinearized_is_refused(env):
    params, enc = env["params"], env["enc"]
    ev = env["bs"].ev
    ct = env["encryptor"].encrypt(enc.encode([0.5], level=2))
    big = ev.multiply(ct, ct, relinearize=False)
    with pytest.raises(ParameterError) as ei:
        env["bs"].bootstrap(big)
    assert "relinearize" in str(ei.value)


def test_missing_keys_are_named(env):
    params, kg, enc = env["params"], env["kg"], env["enc"]
    some = kg.evaluation_keys(galois_steps=env["plan"].galois_steps[:3], encapsulation_hamming_weight=32)
    bs = Bootstrapper(params, some)
    ct = env["encryptor"].encrypt(enc.encode([0.5], level=1))
    with pytest.raises(MissingKeyError) as ei:
        bs.bootstrap(ct)
    assert ei.value.code == "MISSING_KEY"
    assert "conjugation" in ei.value.details["missing"]
    assert set(ei.value.details["steps"]) == set(env["plan"].galois_steps[3:])
    assert bs.missing_keys() == ei.value.details["missing"]
    assert Bootstrapper(params, env["evk"]).missing_keys() == []
    with pytest.raises(MissingKeyError):
        Bootstrapper(params, None).bootstrap(ct)
    no_encaps = kg.evaluation_keys(galois_steps=env["plan"].galois_steps, conjugation=True)
    with pytest.raises(MissingKeyError) as ei:
        Bootstrapper(params, no_encaps).bootstrap(ct)
    assert ei.value.details["missing"] == ["encapsulation"]


def test_encapsulation_keys_serialize_and_bootstrap(env):
    """The encapsulation keys survive the wire format, and a bootstrap with the loaded keys works."""
    params, enc = env["params"], env["enc"]
    blob = serialize.dumps(env["evk"], params)
    loaded = serialize.loads(blob, params=params)
    assert loaded.encapsulation is not None and loaded.encapsulation.hamming_weight == 32
    assert np.array_equal(np.asarray(loaded.encapsulation.dense_to_sparse.data),
                          np.asarray(env["evk"].encapsulation.dense_to_sparse.data))
    assert np.array_equal(np.asarray(loaded.encapsulation.sparse_to_dense.data),
                          np.asarray(env["evk"].encapsulation.sparse_to_dense.data))
    x = np.random.default_rng(8).uniform(-1, 1, params.slot_count)
    out = Bootstrapper(params, loaded).bootstrap(env["encryptor"].encrypt(enc.encode(x, level=0)))
    assert _bits(_decode(env, out) - x)[0] >= MEAN_BITS
    bad = bytearray(blob)
    bad[-40] ^= 1
    with pytest.raises(Exception):
        serialize.loads(bytes(bad), params=params)


def test_sparse_secret_sampler():
    from wavis.ring.sampling import Sampler

    s = Sampler(b"s" * 32).sparse_ternary(4096, 32)
    assert np.count_nonzero(s) == 32 and set(np.unique(s)) <= {-1, 0, 1}
    with pytest.raises(ParameterError):
        Sampler().sparse_ternary(16, 17)


def test_dense_secret_preset():
    """Without encapsulation (the user's uniform ternary secret inside the bootstrap, K = 84)."""
    params = CkksParameters.bootstrappable("testing-n1024-dense")
    kg = KeyGenerator(params, seed=b"d" * 32)
    plan = Bootstrapper.key_plan(params)
    assert plan.encapsulation_hamming_weight is None
    bs = Bootstrapper(params, kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True))
    assert bs.failure_probability_log2() < -40
    enc = Encoder(params)
    x = np.random.default_rng(9).uniform(-1, 1, params.slot_count)
    out = bs.bootstrap(Encryptor(params, kg.public_key()).encrypt(enc.encode(x, level=1)))
    mean, low = _bits(enc.decode(Decryptor(params, kg.secret_key).decrypt(out)) - x)
    assert mean >= 14 and low >= 12, (mean, low)  # measured ~16 / ~14: the r = 5 double angles cost ~6 bits


def test_security_checked_presets():
    from wavis.ring.security import max_log_qp

    for pre in BOOTSTRAP_PRESETS.values():
        if pre.security_level != "testing":
            p = CkksParameters.bootstrappable(pre.name)
            # the HE Standard table as cited (wavis.ring.security: 1747 at 2^16, 881 at 2^15), pinned here
            assert p.log_qp_bits <= {65536: 1747, 32768: 881}[pre.poly_degree] == max_log_qp(pre.poly_degree, "128-bit")
            with pytest.raises(InsufficientSecurityError):
                CkksParameters.bootstrappable(pre.name, max_depth=pre.max_depth + 30)


# -- 20 sequential multiply + bootstrap rounds ------------------------------------------------------
def test_twenty_multiply_bootstrap_rounds(env):
    params, enc, bs = env["params"], env["enc"], env["bs"]
    n = params.slot_count
    rng = np.random.default_rng(20)
    x = rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)
    x /= np.maximum(1, np.abs(x))
    ct = env["encryptor"].encrypt(enc.encode(x, level=params.max_depth))
    want = x.copy()
    for _ in range(20):
        w = np.exp(2j * np.pi * rng.uniform(size=n))  # unit modulus: the product stays in range
        ct = bs.ev.multiply(ct, env["encryptor"].encrypt(enc.encode(w, level=params.max_depth)))
        want = want * w
        ct = bs.bootstrap(ct)
        assert ct.level == params.max_depth
    mean, low = _bits(_decode(env, ct) - want)
    assert mean >= MEAN_BITS - 4 and low >= MIN_BITS - 5, (mean, low)


def test_compact_diagonal_cache(env, monkeypatch):
    """Transforms whose NTT-domain plaintexts exceed the cache budget keep the DFT diagonals as
    rounded coefficients (lifted and NTT'd at each use): the same result, bit for bit."""
    params, enc = env["params"], env["enc"]
    x = np.random.default_rng(12).uniform(-1, 1, params.slot_count)
    ct = env["encryptor"].encrypt(enc.encode(x, level=1))
    ref = Bootstrapper(params, env["evk"]).bootstrap(ct)
    assert all(lt.NTT_CACHE_BYTES == bootstrapper.BOOTSTRAP_NTT_CACHE_BYTES for lt in env["bs"]._transforms["cts"])
    monkeypatch.setattr(bootstrapper, "BOOTSTRAP_NTT_CACHE_BYTES", 0)
    monkeypatch.setattr(bootstrapper, "_TRANSFORMS", weakref.WeakKeyDictionary())  # fresh, unshared factors
    bs = Bootstrapper(params, env["evk"])
    got = bs.bootstrap(ct)
    assert np.array_equal(np.asarray(got.data), np.asarray(ref.data))
    keep, pts = next(iter(bs._transforms["cts"][0]._pt_cache.values()))
    assert keep == 0 and pts is None  # nothing kept in the NTT domain
    _, coeffs, _ = next(iter(bs._transforms["cts"][0]._coef_cache.values()))
    assert coeffs.dtype == np.int64

def _resident_bytes(transforms) -> int:
    """What the DFT factors hold after use: diagonals, rounded coefficients, NTT-domain plaintexts."""
    total = 0
    for lt in transforms:
        total += sum(d.nbytes for d in lt.diagonals.values())
        total += sum(coeffs.nbytes for _, coeffs, _ in lt._coef_cache.values())
        total += sum(np.asarray(pts).nbytes for _, pts in lt._pt_cache.values() if pts is not None)
    return total


@pytest.mark.parametrize("slots", [None, 8])
def test_cache_bytes_is_what_a_bootstrap_keeps(env, monkeypatch, slots):
    """``Bootstrapper.cache_bytes`` (the service's admission counts it for every bootstrap) is,
    byte for byte, what the shared DFT factors and the context's idle baby-rotation workspace
    keep after one bootstrap, and after META-BTS (its scaled last SlotsToCoeffs factor too);
    planned without encoding anything."""
    params, enc, kg = env["params"], env["enc"], env["kg"]
    monkeypatch.setattr(bootstrapper, "_TRANSFORMS", weakref.WeakKeyDictionary())  # fresh factors
    monkeypatch.setattr(bootstrapper, "_WORKSPACES", weakref.WeakKeyDictionary())  # no idle workspace
    plan = Bootstrapper.key_plan(params, slots)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True,
                             encapsulation_hamming_weight=plan.encapsulation_hamming_weight)
    bs = Bootstrapper(params, evk, slots=slots)
    n = slots or params.slot_count
    x = np.tile(np.random.default_rng(13).uniform(-1, 1, n), params.slot_count // n)
    ct = env["encryptor"].encrypt(enc.encode(x, level=1))
    planned = Bootstrapper.cache_bytes(params, slots)
    assert _resident_bytes(bs._transforms["cts"] + bs._transforms["stc"]) < planned  # nothing encoded yet
    bs.bootstrap(ct)

    def workspace_bytes():
        return sum(w._buf.nbytes for w in bootstrapper._WORKSPACES.get(bs.ev.context, []))

    assert workspace_bytes() > 0
    assert _resident_bytes(bs._transforms["cts"] + bs._transforms["stc"]) + workspace_bytes() == planned
    bs.bootstrap(ct, iterations=2)
    meta = _resident_bytes(bs._transforms["cts"] + bs._transforms["stc"] + bs._meta_stc[-1:]) + workspace_bytes()
    assert meta == Bootstrapper.cache_bytes(params, slots, iterations=2) > planned
    with pytest.raises(ParameterError):
        Bootstrapper.cache_bytes(params, 3)
    with pytest.raises(ParameterError):
        Bootstrapper.cache_bytes(params, None, iterations=3)


def test_evalmod_lazy_relinearization(env, monkeypatch):
    """EvalMod's Chebyshev evaluation relinearizes lazily (``polynomial._PolyEval.pending``): the
    products along each remainder chain are summed and relinearized + rescaled once. Degree 63
    with 8 baby steps and r = 2 double angles: 17 key switches per part (was 20: one per
    non-scalar product), the same EvalMod output to within its rounding noise (NumPy model)."""
    from wavis.ckks import keyswitch as ks

    params, bs, enc = env["params"], env["bs"], env["enc"]
    n = params.slot_count
    x = np.random.default_rng(14).uniform(-1, 1, n)
    ct = env["encryptor"].encrypt(enc.encode(x, level=0))
    parts = bs.coeffs_to_slots(bs.sub_sum(bs.mod_raise(ct)))
    calls = []
    real = ks.key_switch_ext
    monkeypatch.setattr(ks, "key_switch_ext", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = bs.eval_mod(parts[0])
    assert len(calls) == 17
    t = _decode(env, parts[0]).real * bs.k  # u = t/K in, sin(2πt)·(scale ratio) out
    got = _decode(env, out).real
    want = reference_evalmod(t, bs.k, bs.preset.double_angle, bs.preset.cheb_degree)
    ratio = np.dot(got, want) / np.dot(want, want)  # EvalMod's output is relabelled (message scale)
    assert -np.log2(np.max(np.abs(got / ratio - want))) > 34  # measured 38.9
