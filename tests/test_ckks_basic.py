"""CKKS: parameters, encoding, encryption, add/multiply accuracy, typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavis.ckks import (
    CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator,
)
from wavis.errors import (
    DepthExhaustedError, EncodingError, InsufficientSecurityError, KeyMismatchError, MissingKeyError,
    ParameterError, ScaleMismatchError,
)

SEED = bytes(range(32))


@pytest.fixture(scope="module")
def params():
    return CkksParameters(poly_degree=1024, scale_bits=40, max_depth=3, security_level="testing")


@pytest.fixture(scope="module")
def keys(params):
    kg = KeyGenerator(params, seed=SEED)
    return kg, kg.evaluation_keys()


@pytest.fixture(scope="module")
def tools(params, keys):
    kg, evk = keys
    return (Encoder(params), Encryptor(params, kg.public_key(), seed=bytes(32)),
            Decryptor(params, kg.secret_key), Evaluator(params, evk))


def _rand(n, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, n)


def bits(err):
    return -math.log2(max(err, 1e-300))


# -- parameters -------------------------------------------------------------------------------
def test_chain_is_derived_and_ntt_friendly(params):
    n = params.poly_degree
    assert len(params.moduli) == params.max_depth + 1
    for q in params.all_moduli:
        assert q % (2 * n) == 1
    assert params.moduli[0].bit_length() == params.first_mod_bits
    assert all(q.bit_length() == 40 for q in params.moduli[1:])
    assert len(set(params.all_moduli)) == len(params.all_moduli)
    assert math.prod(params.special_moduli) > max(math.prod(params.moduli[s:e]) for s, e in params.digits)


def test_security_bound_names_largest_depth():
    with pytest.raises(InsufficientSecurityError) as ei:
        CkksParameters(poly_degree=8192, scale_bits=40, max_depth=5, security_level="128-bit")
    assert ei.value.details["max_depth"] == 2
    ok = CkksParameters(poly_degree=8192, scale_bits=40, max_depth=2, security_level="128-bit")
    assert ok.log_qp_bits <= 218
    p16 = CkksParameters(poly_degree=16384, scale_bits=40, max_depth=7, security_level="128-bit")
    assert p16.log_qp_bits <= 438


@pytest.mark.parametrize("bad", [
    {"poly_degree": 1000}, {"poly_degree": 1024, "scale_bits": 5}, {"poly_degree": 1024, "max_depth": -1},
    {"poly_degree": 1024, "security_level": "512-bit"}, {"poly_degree": 1024, "bogus": 1},
    {"poly_degree": 256, "security_level": "128-bit"},
])
def test_bad_params_are_typed(bad):
    with pytest.raises(ParameterError):
        CkksParameters.from_dict(bad)


def test_default_special_primes_below_2_50_where_they_fit():
    """Issue 21: the default special primes are below 2^50 (IFMA kernels) when they fit the bound at
    the same dnum, cost fewer than twice the 61-bit count and clear the widest digit by the margin."""
    from wavis.ckks.params import MIN_SPECIAL_MARGIN_BITS

    n16 = CkksParameters(poly_degree=65536, scale_bits=40, max_depth=20, first_mod_bits=60, dnum=3)
    assert n16.special_mod_bits == 49  # 50 bits: six primes only 2^0 above the 300-bit digit
    assert len(n16.special_moduli) == 7 and all(p < 2**50 for p in n16.special_moduli)
    widest = max(math.prod(n16.moduli[s:e]) for s, e in n16.digits)
    assert math.log2(math.prod(n16.special_moduli)) - math.log2(widest) >= MIN_SPECIAL_MARGIN_BITS
    assert n16.log_qp_bits <= 1747
    # N = 2^14, one prime per digit: two 50-bit primes break the 438-bit bound (and cost more than
    # one 61-bit prime), so 61 stays
    n14 = CkksParameters(poly_degree=16384, scale_bits=30, max_depth=10, first_mod_bits=50, dnum=11)
    assert n14.special_mod_bits == 61 and [p.bit_length() for p in n14.special_moduli] == [61]
    # the default dnum is still the fewest digits that fit with 61-bit special primes
    assert CkksParameters(poly_degree=32768).dnum == CkksParameters(poly_degree=32768, special_mod_bits=61).dnum
    # the resolved size is serialized, so the literal round-trips to the same primes
    d = n16.to_dict()
    assert d["special_mod_bits"] == 49 and CkksParameters.from_dict(d).fingerprint == n16.fingerprint


def test_explicit_61_bit_special_primes_keep_their_fingerprints():
    """Parameters (and the keys stored with them) serialized before issue 21 carry
    special_mod_bits = 61: they derive the same primes and fingerprints (pinned from before)."""
    old = {
        "2e17c69ade1d25466c94f9f711a9c882": dict(poly_degree=65536, scale_bits=40, max_depth=20, first_mod_bits=60,
                                                 dnum=3, special_mod_bits=61),
        "f5ac19e667a073465a4d5ac83576ac20": dict(poly_degree=16384, scale_bits=30, max_depth=10, first_mod_bits=50,
                                                 dnum=11, special_mod_bits=61),
        "a285324efd69c7af4177524648156e4b": dict(poly_degree=4096, max_depth=2, security_level="testing",
                                                 special_mod_bits=61),
    }
    for fp, d in old.items():
        assert CkksParameters.from_dict(d).fingerprint == fp
    with pytest.raises(ParameterError):
        CkksParameters(poly_degree=1024, security_level="testing", special_mod_bits=62)


def test_fingerprint_stable_and_distinct(params):
    again = CkksParameters.from_dict(params.to_dict())
    assert again.fingerprint == params.fingerprint
    other = CkksParameters(poly_degree=1024, scale_bits=35, max_depth=3, security_level="testing")
    assert other.fingerprint != params.fingerprint


# -- encoding ----------------------------------------------------------------------------------
def test_encode_decode_roundtrip(params):
    enc = Encoder(params)
    z = _rand(params.slot_count) + 1j * _rand(params.slot_count, 2)
    out = enc.decode(enc.encode(z))
    assert np.max(np.abs(out - z)) < 2**-30


def test_embedding_is_the_canonical_one(params):
    """Slot j is m(ζ^{5^j}), ζ = e^{iπ/N}, evaluated directly (CKKS §3.2), for the half-size
    special FFT of embed and embed_inverse; a sign or permutation slip breaks rotations."""
    enc = Encoder(params)
    n = params.poly_degree
    rng = np.random.default_rng(5)
    m = rng.normal(size=n)
    got = enc.embed(m)
    for j in (0, 1, 2, 7, n // 4, n // 2 - 1):
        root = np.exp(1j * np.pi * pow(5, j, 2 * n) / n)
        assert abs(got[j] - np.polyval(m[::-1], root)) < 1e-9 * n
    z = rng.uniform(-1, 1, n // 2) + 1j * rng.uniform(-1, 1, n // 2)
    coeffs = enc.embed_inverse(z)
    assert coeffs.dtype == np.float64 and coeffs.shape == (n,)
    assert np.max(np.abs(enc.embed(coeffs) - z)) < 1e-12


def test_encode_rejects_bad_values(params):
    enc = Encoder(params)
    with pytest.raises(EncodingError):
        enc.encode([1.0, float("nan")])
    with pytest.raises(EncodingError):
        enc.encode([1.0, float("inf")])
    with pytest.raises(EncodingError):
        enc.encode(np.zeros(params.slot_count + 1))
    with pytest.raises(EncodingError):
        enc.encode([1e30])
    with pytest.raises(EncodingError):
        enc.encode(["x"])


# -- encryption and arithmetic -------------------------------------------------------------------
def test_encrypt_decrypt(params, tools):
    enc, encr, dec, _ = tools
    x = _rand(params.slot_count)
    y = enc.decode(dec.decrypt(encr.encrypt(enc.encode(x)))).real
    assert bits(np.max(np.abs(y - x))) > 20


def test_add_and_multiply_accuracy(params, tools):
    enc, encr, dec, ev = tools
    x, y = _rand(params.slot_count, 3), _rand(params.slot_count, 4)
    cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(y))
    s = enc.decode(dec.decrypt(ev.add(cx, cy))).real
    assert np.max(np.abs(s - (x + y))) < 1e-5
    prod = ev.multiply(cx, cy)
    assert prod.level == params.max_level - 1
    assert prod.scale == pytest.approx(2.0**80 / params.moduli[-1])
    m = enc.decode(dec.decrypt(prod)).real
    assert np.max(np.abs(m - x * y)) < 1e-5
    d = enc.decode(dec.decrypt(ev.subtract(cx, cy))).real
    assert np.max(np.abs(d - (x - y))) < 1e-5


def test_multiply_chain_to_last_level_then_depth_exhausted(params, tools):
    enc, encr, dec, ev = tools
    x = _rand(params.slot_count, 5) * 0.9
    ct = encr.encrypt(enc.encode(x))
    want = x.copy()
    for _ in range(params.max_depth):
        ct = ev.multiply(ct, ct)
        want = want * want
    assert ct.level == 0
    assert np.max(np.abs(enc.decode(dec.decrypt(ct)).real - want)) < 1e-4
    with pytest.raises(DepthExhaustedError):
        ev.multiply(ct, ct)
    with pytest.raises(DepthExhaustedError):
        ev.rescale(ct)


def test_add_brings_levels_together(params, tools):
    enc, encr, dec, ev = tools
    x = _rand(params.slot_count, 6)
    ct = encr.encrypt(enc.encode(x))
    sq = ev.multiply(ct, ct)  # level L-1, scale ≈ Δ
    fresh = encr.encrypt(enc.encode(x, scale=sq.scale))
    out = ev.add(sq, fresh)
    assert out.level == sq.level
    assert np.max(np.abs(enc.decode(dec.decrypt(out)).real - (x * x + x))) < 1e-5


def test_scale_mismatch_is_typed(params, tools):
    enc, encr, _, ev = tools
    a = encr.encrypt(enc.encode([1.0]))
    b = encr.encrypt(enc.encode([1.0], scale=2.0**30))
    with pytest.raises(ScaleMismatchError):
        ev.add(a, b)


def test_key_mismatch_between_keys(params, tools):
    enc, encr, dec, ev = tools
    other = KeyGenerator(params)
    foreign = Encryptor(params, other.public_key()).encrypt(enc.encode([1.0]))
    mine = encr.encrypt(enc.encode([1.0]))
    with pytest.raises(KeyMismatchError):
        ev.add(mine, foreign)
    with pytest.raises(KeyMismatchError):
        dec.decrypt(foreign)
    other_params = CkksParameters(poly_degree=1024, scale_bits=35, max_depth=3, security_level="testing")
    with pytest.raises(KeyMismatchError):
        Evaluator(other_params).add(mine, mine)


def test_multiply_without_relin_key(params, tools):
    enc, encr, _, _ = tools
    ct = encr.encrypt(enc.encode([1.0]))
    with pytest.raises(MissingKeyError):
        Evaluator(params).multiply(ct, ct)


def test_zero_ciphertext_multiplies_to_zero(params, tools):
    enc, encr, dec, ev = tools
    ct = encr.encrypt(enc.encode(np.zeros(params.slot_count)))
    out = enc.decode(dec.decrypt(ev.multiply(ct, ct))).real
    assert np.max(np.abs(out)) < 1e-6


def test_trivial_zero_ciphertext_is_handled(params, tools):
    """A ciphertext whose components are all zeros (a trivial encryption of 0) is valid input."""
    from wavis.ckks import Ciphertext

    enc, encr, dec, ev = tools
    ref = encr.encrypt(enc.encode([1.0]))
    zero = Ciphertext(np.zeros_like(ref.data), ref.level, ref.scale, ref.params_fingerprint, ref.key_tag)
    out = ev.add(ev.multiply(zero, ref), ev.multiply(ref, ref))
    assert abs(enc.decode(dec.decrypt(out)).real[0] - 1.0) < 1e-5


def test_encoder_with_a_very_long_chain():
    """A modulus chain far above 1024 bits must not overflow float conversions."""
    p = CkksParameters(poly_degree=64, scale_bits=60, first_mod_bits=61, magnitude_bits=0, max_depth=24,
                       security_level="testing")
    enc = Encoder(p)
    out = enc.decode(enc.encode([0.5, -0.25])).real
    assert abs(out[0] - 0.5) < 1e-9 and abs(out[1] + 0.25) < 1e-9


def test_canonical_level_scales_make_mixed_depth_sums_exact(params, tools):
    """Products land exactly on the level's canonical scale, and operands at different levels
    are brought together without scale error (no silent 2^-20 relative error)."""
    enc, encr, dec, ev = tools
    x = _rand(params.slot_count, 11)
    ct = encr.encrypt(enc.encode(x))
    sq = ev.multiply(ct, ct)
    assert sq.scale == pytest.approx(params.level_scale(sq.level), rel=1e-12)
    quad = ev.multiply(sq, sq)
    assert quad.scale == pytest.approx(params.level_scale(quad.level), rel=1e-12)
    # fresh (level L, 2^40) + level L-2: the fresh operand is brought down exactly
    out = enc.decode(dec.decrypt(ev.add(ct, quad))).real
    assert np.max(np.abs(out - (x + x**4))) < 1e-7
    # a fresh plaintext encoded at a lower level gets that level's canonical scale by default
    fresh_low = encr.encrypt(enc.encode(x, level=sq.level))
    out2 = enc.decode(dec.decrypt(ev.subtract(sq, fresh_low))).real
    assert np.max(np.abs(out2 - (x * x - x))) < 1e-7


def test_rescale_without_multiplication_is_refused(params, tools):
    """Rescaling a fresh ciphertext would divide a 2^40 scale by a 40-bit prime: refused,
    instead of silently returning garbage."""
    enc, encr, _, ev = tools
    ct = encr.encrypt(enc.encode([0.5]))
    with pytest.raises(ParameterError):
        ev.rescale(ct)
    tiny = encr.encrypt(enc.encode([0.5], scale=2.0**12))
    with pytest.raises(ParameterError):
        ev.multiply(tiny, tiny)  # 2^24 / q_L < 2


def test_huge_scalars_are_typed_errors(params, tools):
    enc, encr, _, ev = tools
    ct = encr.encrypt(enc.encode([0.5]))
    for bad in (1e300, float("inf"), float("nan")):
        with pytest.raises(EncodingError):
            ev.add_scalar(ct, bad)
        with pytest.raises(EncodingError):
            ev.multiply_scalar(ct, bad)
    with pytest.raises(EncodingError):
        enc.encode(np.ones((2, 2)))


def test_dnum_that_does_not_fit_names_dnum():
    with pytest.raises(InsufficientSecurityError) as ei:
        CkksParameters(poly_degree=16384, scale_bits=40, max_depth=7, dnum=1)
    assert "dnum" in ei.value.message and ei.value.details["dnum"] == 1
    assert ei.value.details["min_dnum"] == 8 and "set dnum to 8 or more" in ei.value.message
    CkksParameters(poly_degree=16384, scale_bits=40, max_depth=7, dnum=8)  # the advice works


def test_a_bootstrap_preset_deeper_than_its_dnum_allows_names_a_dnum_that_fits():
    """A preset literal with a larger max_depth gets the preset's dnum (from_dict), so the error
    must name a dnum to set, not say "leave dnum unset" (which changed nothing: issue found by QA);
    the dnum it names works and one less does not."""
    literal = {"bootstrap_preset": "n65536", "max_depth": 11}
    with pytest.raises(InsufficientSecurityError) as ei:
        CkksParameters.from_dict(literal)
    fits = ei.value.details["min_dnum"]
    assert ei.value.details["dnum"] == 3 and fits > 3 and "unset" not in ei.value.message
    assert f"set dnum to {fits} or more" in ei.value.message
    assert CkksParameters.from_dict({**literal, "dnum": fits}).dnum == fits
    with pytest.raises(InsufficientSecurityError):
        CkksParameters.from_dict({**literal, "dnum": fits - 1})


def test_mutated_ciphertexts_are_typed_errors(params, tools):
    """Nonsense written into a Ciphertext's fields is refused with ParameterError, never a
    TypeError/OverflowError or a silently infinite scale."""
    enc, encr, _, ev = tools
    good = encr.encrypt(enc.encode([0.5]))
    for field, value in (("level", 1.0), ("level", "3"), ("scale", 1e-300), ("scale", "x"), ("scale", 1e308),
                         ("scale", float("inf")), ("data", "nope")):
        bad = good.copy()
        setattr(bad, field, value)
        with pytest.raises(ParameterError):
            ev.multiply(bad, good)
    kg = KeyGenerator(params, seed=bytes(32))
    for bad_step in (1.5, "1", True):
        with pytest.raises(ParameterError):
            kg.evaluation_keys(galois_steps=[bad_step])
