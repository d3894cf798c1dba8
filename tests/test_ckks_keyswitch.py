"""Fused key-switching kernels of the CPU core (key_switch_ext, ks_mod_up, ks_inner, mod_down_ntt)
against the generic compositions in wavis.backend.reference (bit for bit), against big-int
references, and the evaluator with and without the fused kernels (identical ciphertexts)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from wavis.backend import reference
from wavis.backend.cpu import CpuRingContext, RnsContext, generate_ntt_primes
from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.ckks import keyswitch as ks
from wavis.errors import ShapeError

class ReferenceCtx(CpuRingContext):
    """The CPU context with its fused key-switching kernels replaced by the reference compositions
    (a backend that delegates those operations explicitly)."""

    def ks_mod_up(self, a, idx_q, idx_p, digits):
        return reference.ks_mod_up(self, a, idx_q, idx_p, digits)

    def ks_inner(self, exts, key, idx_q, idx_p, galois_elt=1, add=None):
        return reference.ks_inner(self, exts, key, idx_q, idx_p, galois_elt, add)

    def key_switch_ext(self, a, key, idx_q, idx_p, digits, add=None, galois_elt=1):
        return reference.key_switch_ext(self, a, key, idx_q, idx_p, digits, add, galois_elt)

    def mod_down_ntt(self, a, idx_q, idx_p):
        return reference.mod_down_ntt(self, a, idx_q, idx_p)


def rows(rng, ctx, idx, batch=None):
    shape = (len(idx), ctx.N) if batch is None else (batch, len(idx), ctx.N)
    q = np.array([ctx.moduli[i] for i in idx], dtype=np.uint64)[:, None]
    return (rng.integers(0, 2**63, size=shape, dtype=np.uint64) % q).astype(np.uint64)


@pytest.fixture(scope="module")
def ctx():
    n = 256
    qs = generate_ntt_primes(50, 4, n) + generate_ntt_primes(30, 4, n) + generate_ntt_primes(61, 3, n)
    return RnsContext(n, qs)


CASES = [  # (idx_q, idx_p, digits)
    ([0, 1, 2, 3, 4, 5, 6, 7], [8], [(i, i + 1) for i in range(8)]),
    ([0, 4, 5, 6, 7], [8, 9], [(0, 2), (2, 4), (4, 5)]),
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10], [(0, 3), (3, 6), (6, 8)]),
    ([4, 5, 6], [8, 9], [(0, 3)]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("add_m", [0, 1, 2])
def test_key_switch_matches_composition(ctx, case, add_m):
    iq, ip, digits = CASES[case]
    rng = np.random.default_rng(case * 10 + add_m)
    plain = ReferenceCtx(ctx.N, ctx.moduli)
    a = rows(rng, ctx, iq)
    allidx = list(range(len(ctx.moduli)))
    key = np.stack([np.stack([rows(rng, ctx, allidx) for _ in range(2)]) for _ in range(len(digits) + 1)])
    add = np.ascontiguousarray(rows(rng, ctx, iq, batch=add_m)) if add_m else None
    exts = ks.ks_mod_up(ctx, a, iq, ip, digits)
    assert np.array_equal(exts, ks.ks_mod_up(plain, a, iq, ip, digits))
    ref = ks.ks_inner(plain, exts, key, iq, ip, 1, add)
    assert np.array_equal(ks.ks_inner(ctx, exts, key, iq, ip, 1, add), ref)
    assert np.array_equal(ks.key_switch_ext(ctx, a, key, iq, ip, digits, add), ref)
    for g in (5, 25, 2 * ctx.N - 1):
        rot = ks.ks_inner(plain, exts, key, iq, ip, g, add)
        assert np.array_equal(ks.ks_inner(ctx, exts, key, iq, ip, g, add), rot)
        assert np.array_equal(ks.key_switch_ext(ctx, a, key, iq, ip, digits, add, g), rot)
        assert np.array_equal(ks.key_switch_ext(plain, a, key, iq, ip, digits, add, g), rot)
    assert np.array_equal(ks.mod_down_ntt(ctx, ref, iq, ip), ks.mod_down_ntt(plain, ref, iq, ip))
    assert np.array_equal(ks.mod_down_ntt(ctx, ref[0], iq, ip), ks.mod_down_ntt(plain, ref[0], iq, ip))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_vector_and_scalar_kernels_agree(case):
    """Every SIMD path the CPU has (AVX-512 vector basis conversion, IFMA inner product for primes
    < 2^50) vs the portable scalar loops (WAVIS_SIMD=portable), bit for bit, with extreme inputs
    (q - 1, 0)."""
    from wavis import _core

    n = 64
    qs = generate_ntt_primes(50, 4, n) + generate_ntt_primes(30, 4, n) + generate_ntt_primes(61, 3, n)
    c = RnsContext(n, qs)
    iq, ip, digits = CASES[case]
    rng = np.random.default_rng(100 + case)
    allidx = list(range(len(qs)))
    qcol = np.array(qs, dtype=np.uint64)
    a = rows(rng, c, iq)
    a[:, :5] = qcol[iq][:, None] - np.uint64(1)
    a[:, 5:7] = 0
    key = np.stack([np.stack([rows(rng, c, allidx) for _ in range(2)]) for _ in range(len(digits))])
    key[..., :3] = qcol[None, None, :, None] - np.uint64(1)
    add = np.ascontiguousarray(rows(rng, c, iq, batch=2))
    add[..., :4] = qcol[iq][None, :, None] - np.uint64(1)

    def run():
        exts = c.ks_mod_up(a, iq, ip, digits)
        out = [exts, c.key_switch_ext(a, key, iq, ip, digits), c.key_switch_ext(a, key, iq, ip, digits, add),
               c.key_switch_ext(a, key, iq, ip, digits, add[:1].copy())]
        for g in (1, 5, 2 * n - 1):
            out.append(c.ks_inner(exts, key, iq, ip, g, add))
            out.append(c.key_switch_ext(a, key, iq, ip, digits, add[:1].copy(), g))
        top = np.stack([rows(rng_md, c, iq + ip) for _ in range(2)])
        top[..., :3] = qcol[iq + ip][None, :, None] - np.uint64(1)
        out += [c.mod_down_ntt(top, iq, ip), c.mod_down_ntt(top[0].copy(), iq[:-1], [iq[-1]] + ip)]
        return out

    prev = _core._set_simd_path("portable")
    try:
        rng_md = np.random.default_rng(7)
        ref = run()
        for path in _core.simd_paths()[1:]:
            _core._set_simd_path(path)
            rng_md = np.random.default_rng(7)
            got = run()
            assert all(np.array_equal(x, y) for x, y in zip(ref, got)), path
    finally:
        _core._set_simd_path(prev)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_prepermuted_galois_key_equals_permuted_digits(ctx, case):
    """The evaluation form of a Galois key (aut_g^{-1} of its rows): aut_g(Σ_d x_d ⊙ K'_d + P·c_0)
    equals Σ_d aut_g(x_d) ⊙ K_d + P·aut_g(c_0) — the hoisted rotation as computed with permuted
    digits — bit for bit, on the fused kernels and the reference composition; the forms convert
    back exactly."""
    iq, ip, digits = CASES[case]
    full, lq = iq + ip, len(iq)
    rng = np.random.default_rng(50 + case)
    plain = ReferenceCtx(ctx.N, ctx.moduli)
    allidx = list(range(len(ctx.moduli)))
    a = rows(rng, ctx, iq)
    c0 = np.ascontiguousarray(rows(rng, ctx, iq, batch=1))
    key = np.stack([np.stack([rows(rng, ctx, allidx) for _ in range(2)]) for _ in range(len(digits))])
    exts = ks.ks_mod_up(ctx, a, iq, ip, digits)
    pm = reference._p_mod(ctx, iq, ip)
    for g in (5, 25, 2 * ctx.N - 1, 5 ** 7 % (2 * ctx.N)):
        want = ctx.zeros(len(full), 2)
        ctx.mul_scalar(ctx.automorphism(c0[0], g, iq, True), pm, want[0, :lq], iq)
        for d in range(len(digits)):
            rotated = ctx.automorphism(exts[d], g, full, True)
            for comp in range(2):
                ctx.mul_add(rotated, key[d, comp][full], want[comp], full)
        kp = ks.galois_key_form(ctx, key, g, True)
        assert not np.array_equal(kp, key)
        assert np.array_equal(ks.galois_key_form(ctx, kp, g, False), key)
        for c in (ctx, plain):
            assert np.array_equal(ks.ks_inner(c, exts, kp, iq, ip, g, c0), want)
        assert np.array_equal(ks.key_switch_ext(ctx, a, kp, iq, ip, digits, c0, g),
                              ks.key_switch_ext(plain, a, kp, iq, ip, digits, c0, g))


def test_mod_down_ntt_rounds(ctx):
    """Coefficient domain: exactly round(x / P) for the CRT value x (the conversion overshoot is removed)."""
    rng = np.random.default_rng(3)
    iq, ip = [0, 1, 5], [8, 9]
    full = iq + ip
    mods = [ctx.moduli[i] for i in full]
    coeff = rows(rng, ctx, full)
    a = coeff.copy()
    ctx.ntt(a, full)
    out = ks.mod_down_ntt(ctx, a, iq, ip)
    ctx.intt(out, iq)
    big_q = math.prod(mods)
    big_p = math.prod(mods[len(iq):])
    qq = math.prod(mods[: len(iq)])
    for n in range(0, ctx.N, 17):
        x = 0
        for r, m in enumerate(mods):
            mh = big_q // m
            x += int(coeff[r, n]) * mh * pow(mh, -1, m)
        x %= big_q
        want = (x + big_p // 2) // big_p
        got = [int(out[r, n]) for r in range(len(iq))]
        ok = all((want - got[r]) % mods[r] == 0 for r in range(len(iq)))
        assert ok, (n, want % qq)


def test_mod_down_ntt_one_prime_is_rescale(ctx):
    rng = np.random.default_rng(4)
    idx = [0, 1, 2, 5]
    a = rows(rng, ctx, idx)
    assert np.array_equal(ctx.mod_down_ntt(a, idx[:-1], idx[-1:]), ctx.rescale(a, idx))
    b = rows(rng, ctx, idx, batch=2)
    got = ctx.mod_down_ntt(b, idx[:-1], idx[-1:])
    for i in range(2):
        assert np.array_equal(got[i], ctx.rescale(b[i].copy(), idx))


@pytest.mark.parametrize("repeat", [1, 2, 4, 64])
@pytest.mark.parametrize("terms", [1, 7, 40])
@pytest.mark.parametrize("comps", [2, 1])
def test_diag_mac_matches_composition(ctx, repeat, terms, comps):
    """diag_mac (128-bit lazy sums, one reduction; more than 15 terms fold; on the ifma path the
    rows of primes < 2^50 sum in IFMA registers) equals one mul_add per term, with the plaintexts
    repeated ``repeat`` times, bit for bit, and a big-int reference (rows of a 50- and a 61-bit
    prime); ``comps`` components per rotation."""
    rng = np.random.default_rng(terms * 100 + repeat + comps)
    idx = [0, 4, 8, 9]  # 50-, 30- and 61-bit primes
    rots = np.stack([np.stack([rows(rng, ctx, idx) for _ in range(comps)]) for _ in range(5)])
    small = ctx.N // repeat
    q = np.array([ctx.moduli[i] for i in idx], dtype=np.uint64)[:, None]
    pts = (rng.integers(0, 2**63, size=(terms, len(idx), small), dtype=np.uint64) % q).astype(np.uint64)
    sel = [int(v) for v in rng.integers(0, 5, terms)]
    counts = [terms // 3, 0, terms - terms // 3]  # three giant steps, one without terms
    got = ctx.diag_mac(rots, pts, sel, counts, idx, repeat)
    assert got.shape == (3, comps, len(idx), ctx.N)
    assert np.array_equal(got, reference.diag_mac(ctx, rots, pts, sel, counts, idx, repeat))
    assert not got[1].any()
    for r, n in ((3, 5), (0, 13)):  # one coefficient by big integers, 61- and 50-bit rows
        for g, (lo, hi) in enumerate([(0, counts[0]), (counts[0], counts[0]), (counts[0], terms)]):
            want = [sum(int(pts[j, r, n // repeat]) * int(rots[sel[j], c, r, n]) for j in range(lo, hi))
                    % int(q[r, 0]) for c in range(comps)]
            assert [int(got[g, c, r, n]) for c in range(comps)] == want


def test_diag_mac_bad_arguments(ctx):
    idx = [0, 1]
    rots = ctx.zeros(2, batch=4).reshape(2, 2, 2, ctx.N)
    pts = ctx.zeros(2, batch=3)
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1], [2], idx)  # one index per plaintext
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1, 2], [3], idx)  # sel out of range
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1, 1], [1, 1], idx)  # counts do not cover the plaintexts
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1, 1], [4, -1], idx)  # a negative count
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1, 1], [3], idx, 3)  # repeat not a power of two
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots, pts, [0, 1, 1], [3], idx, 2)  # pts not N / repeat wide
    with pytest.raises(ShapeError):
        ctx.diag_mac(rots[0], pts, [0, 0, 0], [3], idx)  # rots not 4-D
    with pytest.raises(ShapeError):
        reference.diag_mac(ctx, rots, pts, [0, 1, 2], [3], idx)


def test_bad_arguments(ctx):
    a = ctx.zeros(3)
    key = np.zeros((3, 2, len(ctx.moduli), ctx.N), dtype=np.uint64)
    with pytest.raises(ShapeError):
        ctx.key_switch_ext(a, key, [0, 1, 2], [8], [(0, 2)])  # digits do not cover idx_q
    with pytest.raises(ShapeError):
        ctx.key_switch_ext(a, key, [0, 1, 2], [2], [(0, 3)])  # idx_p overlaps idx_q
    with pytest.raises(ShapeError):
        ctx.key_switch_ext(a, key[:, :, :3], [0, 1, 2], [8], [(0, 3)])  # key rows
    with pytest.raises(ShapeError):
        ctx.key_switch_ext(a, key[:1], [0, 1, 2], [8], [(0, 1), (1, 2), (2, 3)])  # too few key digits
    with pytest.raises(ShapeError):
        ctx.ks_inner(ctx.zeros(4, batch=2), key, [0, 1, 2], [8], 4)  # even galois element
    with pytest.raises(ShapeError):
        ctx.mod_down_ntt(ctx.zeros(3), [0, 1, 2], [8])


@pytest.mark.parametrize("dnum", [2, 3])
def test_evaluator_fused_equals_composed(dnum):
    params = CkksParameters(poly_degree=256, scale_bits=30, max_depth=4, security_level="testing", dnum=dnum)
    kg = KeyGenerator(params, seed=bytes(32))
    evk = kg.evaluation_keys(galois_steps=[1, 2, 3, 4, 5])
    enc = Encoder(params)
    ct = Encryptor(params, kg.public_key(), seed=bytes(range(32))).encrypt(enc.encode(np.linspace(-1, 1, 128)))
    fast = Evaluator(params, evk)
    slow = Evaluator(params, evk)
    slow.ctx = ReferenceCtx(fast.ctx.N, fast.ctx.moduli)
    dec = Decryptor(params, kg.secret_key)
    for f in (lambda e: e.multiply(ct, ct), lambda e: e.multiply(ct, ct, rescale=False),
              lambda e: e.relinearize(e.multiply(ct, ct, relinearize=False, rescale=False)),
              lambda e: e.rescale(e.multiply(ct, ct, rescale=False)),
              lambda e: e.rotate(ct, 3), lambda e: e.rotate(ct, 7), lambda e: e.rotate_many(ct, [1, 3, 5])[5]):
        x, y = f(fast), f(slow)
        assert np.array_equal(x.data, y.data) and x.level == y.level and x.scale == y.scale
    got = enc.decode(dec.decrypt(fast.multiply(ct, ct))).real
    assert np.max(np.abs(got - np.linspace(-1, 1, 128) ** 2)) < 1e-3


def test_galois_keys_resident_in_evaluation_form():
    """Loading keys into an evaluator converts each Galois key once, in place on the CPU, to its
    evaluation form (GaloisKey.permuted: never held twice; evaluators built from the same keys
    share it); serialization still writes the canonical form (the same bytes), to_host gives it
    back bit for bit; a single rotation equals the hoisted one of one step, rotate_batch rotate."""
    from wavis import serialize
    from wavis.ckks import CkksContext
    from wavis.ckks.keys import galois_element

    params = CkksParameters(poly_degree=256, scale_bits=30, max_depth=3, security_level="testing", dnum=2)
    kg = KeyGenerator(params, seed=bytes(32))
    evk = kg.evaluation_keys(galois_steps=[1, 2, 3, -1], conjugation=True)
    canonical = {g: k.data.copy() for g, k in evk.galois_keys.items()}
    blob = serialize.dumps(evk)
    unseeded = dataclasses.replace(evk, galois_keys={g: dataclasses.replace(k, a_seed=None)
                                                     for g, k in evk.galois_keys.items()})
    blob_unseeded = serialize.dumps(unseeded)
    from wavis.service.fhe import key_digests

    digests = key_digests(evk)
    ctx = CkksContext.default(params)
    ev = Evaluator(params, evk)
    assert ev.eval_keys is evk  # the CPU holds the caller's object: no copy
    ev2 = Evaluator(params, evk)
    Evaluator(params, unseeded)
    for g, k in evk.galois_keys.items():
        assert k.permuted and k is ev2.eval_keys.galois_keys[g]
        assert np.array_equal(ks.galois_key_form(ctx.ring, k.data, g, False), canonical[g])
        assert np.array_equal(ctx.to_host(k).data, canonical[g]) and not ctx.to_host(k).permuted
    assert serialize.dumps(evk) == blob and serialize.dumps(unseeded) == blob_unseeded
    assert key_digests(evk) == digests  # the service's per-key digests hash the canonical form
    assert serialize.dumps(ctx.to_host(evk)) == blob
    back = serialize.loads(blob, expected_type=type(evk), params=params)
    assert all(np.array_equal(back.galois_keys[g].data, canonical[g]) for g in canonical)
    enc = Encoder(params)
    encr = Encryptor(params, kg.public_key(), seed=bytes(range(32)))
    x = np.linspace(-1, 1, 128)
    ct = encr.encrypt(enc.encode(x))
    ct2 = encr.encrypt(enc.encode(x[::-1].copy()))
    many = ev.rotate_many(ct, [1, 2, 3, -1])
    for st in (1, 2, 3, -1):
        assert np.array_equal(ev.rotate(ct, st).data, many[st].data)
    batch = ev.rotate_batch([ct, ct2], 3)
    assert np.array_equal(batch[0].data, ev.rotate(ct, 3).data) and np.array_equal(batch[1].data, ev.rotate(ct2, 3).data)
    dec = Decryptor(params, kg.secret_key)
    assert np.max(np.abs(enc.decode(dec.decrypt(many[3])).real - np.roll(x, -3))) < 1e-3
    assert np.max(np.abs(enc.decode(dec.decrypt(ev.conjugate(ct))).real - x)) < 1e-3
    # the deserialized (canonical) key gives the same rotations once loaded
    assert np.array_equal(Evaluator(params, back).rotate(ct, 2).data, ev.rotate(ct, 2).data)
    # key_switch_inner takes the canonical key or its evaluation form: the same result
    g = galois_element(2, params.poly_degree)
    exts = ev.mod_up(ct.data[1], ct.level)
    d_can = ev.key_switch_inner(exts, ct.level, ctx.to_host(evk.galois_keys[g]), g)
    d_res = ev.key_switch_inner(exts, ct.level, evk.galois_keys[g], g)
    assert all(np.array_equal(u, v) for u, v in zip(d_can, d_res))
