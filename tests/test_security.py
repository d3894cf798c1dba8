"""Issue 15, library side: the security table is the cited source's (finding 6), CKKS parameters
and operations never wrap silently (finding 7), and a decoded result that is shared is
noise-flooded so it does not give the key away (finding 3, Li–Micciancio EUROCRYPT 2021).
docs/security.md names these tests next to the claims they check."""

from __future__ import annotations

import numpy as np
import pytest

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.ckks import flooding
from wavis.errors import EncodingError, ParameterError, ScaleOverflowError
from wavis.ring import security


# -- finding 6 ---------------------------------------------------------------------------------------
def test_security_table_uses_the_cited_sources_bounds():
    """N = 65536: OpenFHE's HEStd_ternary entries (stdlatticeparms.cpp), not a looser guess."""
    assert {lvl: security.MAX_LOG_QP[lvl][65536] for lvl in ("128-bit", "192-bit", "256-bit")} == \
        {"128-bit": 1747, "192-bit": 1199, "256-bit": 929}
    # N ≤ 32768: the HE Standard's Table 1 (ternary secret)
    assert security.MAX_LOG_QP["128-bit"][32768] == 881 and security.MAX_LOG_QP["256-bit"][8192] == 118
    doc = " ".join(security.__doc__.split())
    assert "stdlatticeparms.cpp" in doc and "Homomorphic Encryption Security Standard" in doc
    from wavis.errors import InsufficientSecurityError

    # a chain between the old (1772) and the cited (1747) bound is refused
    with pytest.raises(InsufficientSecurityError):
        CkksParameters(poly_degree=65536, scale_bits=40, max_depth=41, first_mod_bits=60, dnum=42)  # 1761 bits


# -- finding 7 ---------------------------------------------------------------------------------------
def test_first_modulus_headroom_is_enforced():
    """The review's reproduction (59-bit scale, 60-bit q_0: 1 bit of headroom) is refused; the
    defaults keep ≥ 20 bits (values below 2^19); a 60-bit q_0 with a 40-bit scale (the
    bootstrapping presets' shape) is fine; a smaller headroom needs a declared smaller bound."""
    with pytest.raises(ParameterError, match="headroom") as exc:
        CkksParameters(poly_degree=8192, scale_bits=59, first_mod_bits=60, max_depth=1)
    assert exc.value.details["headroom_bits"] == 1 and exc.value.details["magnitude_bits"] == 19
    for n in (4096, 8192, 16384, 32768, 65536):
        for sb in (20, 30, 40):
            try:
                p = CkksParameters(poly_degree=n, scale_bits=sb, max_depth=1)
            except ParameterError as e:  # too large for the security table: not a headroom question
                assert "headroom" not in e.message
                continue
            assert p.first_mod_bits - p.scale_bits >= 20 and p.magnitude_bits == 19
    boot = CkksParameters(poly_degree=65536, scale_bits=40, first_mod_bits=60, max_depth=20)
    assert boot.magnitude_bound == 2.0**19
    declared = CkksParameters(poly_degree=8192, scale_bits=59, first_mod_bits=60, max_depth=1, magnitude_bits=0,
                              security_level="testing")
    assert declared.to_dict()["magnitude_bits"] == 0
    assert CkksParameters.from_dict(declared.to_dict()) == declared
    enc = Encoder(declared)
    with pytest.raises(EncodingError, match="magnitude bound"):
        enc.encode([0.25, 2.0])  # above the declared bound: refused instead of wrapping


def test_review_reproduction_no_longer_decrypts_wrong_numbers():
    """(8192, 59-bit scale, 60-bit q_0): x·reverse(x) came back as [-0.75, 0, 0.25, …] instead of
    [1.25, 2, 2.25, …]. Now the parameters are refused, and with 20 bits of headroom the same
    product is right."""
    x = np.tile([0.25, 0.5, 0.75, 1, 2, 3, 4, 5], 512)
    with pytest.raises(ParameterError):
        CkksParameters(poly_degree=8192, scale_bits=59, first_mod_bits=60, max_depth=1)
    p = CkksParameters(poly_degree=8192, scale_bits=40, first_mod_bits=60, max_depth=1, security_level="testing")
    kg = KeyGenerator(p)
    enc, ev = Encoder(p), Evaluator(p, kg.evaluation_keys())
    encr = Encryptor(p, kg.public_key())
    out = enc.decode(Decryptor(p, kg.secret_key).decrypt(ev.multiply(encr.encrypt(enc.encode(x)),
                                                                     encr.encrypt(enc.encode(x[::-1]))))).real
    assert np.allclose(out[:8], [1.25, 2, 2.25, 2, 2, 2.25, 2, 1.25], atol=1e-6)


def test_a_result_scale_above_the_modulus_is_a_typed_error():
    """multiply / multiply_plain without rescaling at level 0 gave scale 2^80 above a ~2^60
    modulus and decrypted to ~5e-6 instead of 0.25, silently."""
    p = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=0, security_level="testing")
    kg = KeyGenerator(p)
    enc, ev = Encoder(p), Evaluator(p, kg.evaluation_keys())
    ct = Encryptor(p, kg.public_key()).encrypt(enc.encode([0.5] * 512))
    with pytest.raises(ScaleOverflowError) as exc:
        ev.multiply(ct, ct, rescale=False)
    assert exc.value.code == "SCALE_OVERFLOW" and exc.value.details["level"] == 0
    with pytest.raises(ScaleOverflowError):
        ev.multiply_plain(ct, [0.5] * 512, rescale=False)
    with pytest.raises(ScaleOverflowError):
        ev.multiply_scalar(ct, 0.5, rescale=False)
    # where the modulus has room, the unrescaled product is fine and decrypts right
    p2 = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=1, security_level="testing")
    kg2 = KeyGenerator(p2)
    enc2, ev2 = Encoder(p2), Evaluator(p2, kg2.evaluation_keys())
    ct2 = Encryptor(p2, kg2.public_key()).encrypt(enc2.encode([0.5] * 512))
    prod = ev2.multiply(ct2, ct2, rescale=False)
    assert abs(enc2.decode(Decryptor(p2, kg2.secret_key).decrypt(prod)).real[0] - 0.25) < 1e-6


# -- finding 3 ---------------------------------------------------------------------------------------
def recover_key(params: CkksParameters, enc: Encoder, ct, slots: np.ndarray) -> np.ndarray:
    """Li–Micciancio's passive attack: decoded slots z of ct give the decryption polynomial
    p = round(Δ·embed⁻¹(z)) = c_0 + c_1·s (mod q_0), so s = (p − c_0)·c_1⁻¹ in the NTT domain."""
    q0 = int(params.moduli[0])
    ctx = enc.ctx
    p = ctx.from_signed(np.rint(enc.embed_inverse(slots) * ct.scale).astype(np.int64), [0])
    ctx.ntt(p, [0])
    c0, c1 = np.asarray(ct.data[0][0]), np.asarray(ct.data[1][0])
    s_ntt = np.array([((int(a) - int(b)) * pow(int(c), -1, q0)) % q0 for a, b, c in zip(np.asarray(p)[0], c0, c1)],
                     dtype=np.uint64).reshape(1, -1)
    ctx.intt(s_ntt, [0])
    s = np.asarray(s_ntt[0]).astype(object)
    return np.array([int(v) - q0 if int(v) > q0 // 2 else int(v) for v in s], dtype=np.int64)


def test_shared_decryptions_are_flooded_so_the_key_cannot_be_recovered():
    """From one ciphertext and its plain decoding the attack returns the secret key exactly;
    from the flooded decoding (σ = 2^30·B) it returns noise; the flooded values are rounded to
    the precision left and still right to that precision."""
    p = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=1, security_level="testing")
    kg = KeyGenerator(p)
    enc = Encoder(p)
    x = np.linspace(-0.5, 0.5, p.slot_count)
    ct = Encryptor(p, kg.public_key()).encrypt(enc.encode(x))
    pt = Decryptor(p, kg.secret_key).decrypt(ct)
    s = np.asarray(kg.secret_key.coeffs)
    assert np.array_equal(recover_key(p, enc, ct, enc.decode(pt)), s)  # the attack works on plain decodings
    # the same attack on the flooded decryption (even given the complex slots) finds nothing
    idx = [0, 1]
    data = pt.data.copy()
    enc.ctx.intt(data, idx)
    coeffs = np.asarray(enc.ctx.crt_compose(data, idx), dtype=np.float64)
    bound = flooding.estimate_noise_bound(p, enc.embed(coeffs / pt.scale), pt.scale)
    flooded_slots = enc.embed(flooding.flood_coefficients(coeffs, 2.0**30 * bound) / pt.scale)
    guess = recover_key(p, enc, ct, flooded_slots)
    assert np.count_nonzero(guess == s) < 0.05 * p.poly_degree and np.max(np.abs(guess)) > 1
    # the library option: flooded, rounded, honest about its precision
    out = enc.decode_flooded(pt)
    assert out.statistical_bits == 30 and out.sigma_log2 >= 30 + out.noise_bound_log2 - 1e-9
    assert out.noise_bound_log2 >= np.log2(flooding.fresh_noise_bound(p))
    assert out.precision_bits == flooding.precision_bits(p, pt.scale, 2.0**out.noise_bound_log2)
    step = 2.0 ** -out.precision_bits
    assert np.all(np.round(out.values / step) * step == out.values)
    with pytest.raises(ParameterError):
        enc.decode_flooded(pt, statistical_bits=20)
    # at a scale large enough to keep bits after the flood, the values are right to that precision
    big = CkksParameters(poly_degree=1024, scale_bits=58, first_mod_bits=61, magnitude_bits=2, max_depth=1,
                         security_level="testing")
    kgb = KeyGenerator(big)
    encb = Encoder(big)
    ctb = Encryptor(big, kgb.public_key()).encrypt(encb.encode(x))
    outb = encb.decode_flooded(Decryptor(big, kgb.secret_key).decrypt(ctb))
    assert outb.precision_bits >= 6
    assert np.max(np.abs(outb.values - x)) <= 2.0 ** -outb.precision_bits
    again = encb.decode_flooded(Decryptor(big, kgb.secret_key).decrypt(ctb), noise_bound=2.0**outb.noise_bound_log2)
    assert again.precision_bits == outb.precision_bits
