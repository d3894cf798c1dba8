"""Ring core: primes, NTT, negacyclic multiplication, element-wise ops, input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavis import _core
from wavis.backend import get
from wavis.backend.protocol import RingContext

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def negacyclic(a: list[int], b: list[int], q: int) -> list[int]:
    """Schoolbook product in Z_q[X]/(X^N + 1) with Python ints."""
    n = len(a)
    r = [0] * n
    for i, ai in enumerate(a):
        if ai == 0:
            continue
        for j, bj in enumerate(b):
            k = i + j
            if k < n:
                r[k] += ai * bj
            else:
                r[k - n] -= ai * bj
    return [x % q for x in r]


def ctx_for(N: int, bits: list[int]) -> _core.RnsContext:
    moduli: list[int] = []
    for b in bits:
        moduli += _core.generate_ntt_primes(b, 1, N, exclude=moduli)
    return get("cpu").ring_context(N, moduli)


def rand_rows(rng: np.random.Generator, ctx, idx) -> np.ndarray:
    return np.stack([rng.integers(0, ctx.moduli[i], ctx.N, dtype=np.uint64) for i in idx])


# ---------------------------------------------------------------------------- primes ----
def test_is_prime():
    small = [p for p in range(2, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
    assert [n for n in range(2000) if _core.is_prime(n)] == small
    assert _core.is_prime(2**61 - 1)
    assert not _core.is_prime(2**61 + 1)
    assert not _core.is_prime(3215031751)  # strong pseudoprime to bases 2, 3, 5, 7
    assert not _core.is_prime(3825123056546413051)  # spsp to bases 2..23


@pytest.mark.parametrize("bits", [20, 30, 45, 55, 61])
@pytest.mark.parametrize("N", [8, 4096, 65536])
def test_generate_ntt_primes(bits, N):
    if 2 * N * 64 > 2 ** (bits - 1):
        pytest.skip("2N too large for this bit size")
    ps = _core.generate_ntt_primes(bits, 4, N)
    assert len(ps) == 4 and len(set(ps)) == 4
    assert ps == sorted(ps, reverse=True)
    for p in ps:
        assert p.bit_length() == bits and p % (2 * N) == 1 and _core.is_prime(p)
    # the first is the largest such prime below 2^bits
    assert all(not _core.is_prime(x) for x in range(ps[0] + 2 * N, 2**bits, 2 * N))
    more = _core.generate_ntt_primes(bits, 2, N, exclude=ps[:2])
    assert more == ps[2:4]
    up = _core.generate_ntt_primes(bits, 2, N, descending=False)
    assert up == sorted(up) and all(p.bit_length() == bits for p in up)


def test_generate_ntt_primes_errors():
    with pytest.raises(ValueError):
        _core.generate_ntt_primes(19, 1, 8)
    with pytest.raises(ValueError):
        _core.generate_ntt_primes(62, 1, 8)
    with pytest.raises(ValueError):
        _core.generate_ntt_primes(30, 1, 12)
    with pytest.raises(ValueError):  # only a few 20-bit primes are 1 mod 2^14
        _core.generate_ntt_primes(20, 1000, 8192)


def test_minimal_primitive_root():
    q = _core.generate_ntt_primes(40, 1, 1024)[0]
    psi = _core.minimal_primitive_root(2048, q)
    assert pow(psi, 1024, q) == q - 1
    # every primitive 2048-th root is psi^k, k odd; psi is the smallest of them
    assert min(pow(psi, k, q) for k in range(1, 2048, 2)) == psi
    ctx = get("cpu").ring_context(1024, [q])
    assert ctx.psi(0) == psi
    tw = ctx.twiddles(0)
    assert int(tw["psi_rev"][1]) == pow(psi, 512, q)
    assert (int(tw["n_inv"]) * 1024) % q == 1


# ------------------------------------------------------------------------------- NTT ----
@SETTINGS
@given(
    logn=st.integers(3, 8),
    bits=st.lists(st.integers(30, 61), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_ntt_multiplication_matches_schoolbook(logn, bits, seed):
    N = 1 << logn
    ctx = ctx_for(N, bits)
    idx = list(range(len(ctx.moduli)))
    rng = np.random.default_rng(seed)
    a = rand_rows(rng, ctx, idx)
    b = rand_rows(rng, ctx, idx)
    A, B = a.copy(), b.copy()
    ctx.ntt(A, idx)
    ctx.ntt(B, idx)
    assert A.max() < max(ctx.moduli)
    C = ctx.zeros(len(idx))
    ctx.mul(A, B, C, idx)
    ctx.intt(C, idx)
    for r, q in enumerate(ctx.moduli):
        assert C[r].tolist() == negacyclic(a[r].tolist(), b[r].tolist(), q)


def test_ntt_multiplication_n1024():
    ctx = ctx_for(1024, [61, 30])
    idx = [0, 1]
    rng = np.random.default_rng(7)
    a, b = rand_rows(rng, ctx, idx), rand_rows(rng, ctx, idx)
    A, B = a.copy(), b.copy()
    ctx.ntt(A, idx)
    ctx.ntt(B, idx)
    ctx.mul(A, B, A, idx)  # out aliases a
    ctx.intt(A, idx)
    for r, q in enumerate(ctx.moduli):
        assert A[r].tolist() == negacyclic(a[r].tolist(), b[r].tolist(), q)


@pytest.mark.parametrize("N", [2, 4, 8, 1024, 16384, 65536])
def test_ntt_roundtrip(N):
    ctx = ctx_for(N, [61, 50, 36])
    idx = [2, 0, 1, 0]  # any order, repeats allowed
    rng = np.random.default_rng(N)
    a = rand_rows(rng, ctx, idx)
    # extreme values too
    a[0, 0] = ctx.moduli[2] - 1
    a[1, 1] = ctx.moduli[0] - 1
    b = a.copy()
    ctx.ntt(b, idx)
    assert not np.array_equal(a, b)
    ctx.intt(b, idx)
    assert np.array_equal(a, b)


def test_ntt_is_evaluation_at_odd_powers_bit_reversed():
    N = 16
    ctx = ctx_for(N, [40])
    q, psi = ctx.moduli[0], ctx.psi(0)
    a = rand_rows(np.random.default_rng(1), ctx, [0])
    A = a.copy()
    ctx.ntt(A, [0])
    logn = 4
    for k in range(N):
        brv = int(format(k, f"0{logn}b")[::-1], 2)
        x = pow(psi, 2 * brv + 1, q)
        assert int(A[0, k]) == sum(int(c) * pow(x, i, q) for i, c in enumerate(a[0])) % q


def test_ntt_batched_matches_rows():
    ctx = ctx_for(256, [50, 40])
    idx = [0, 1]
    rng = np.random.default_rng(3)
    a = np.stack([rand_rows(rng, ctx, idx) for _ in range(5)])
    b = a.copy()
    ctx.ntt(b, idx)
    for i in range(5):
        r = a[i].copy()
        ctx.ntt(r, idx)
        assert np.array_equal(r, b[i])
    ctx.intt(b, idx)
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------ element-wise ----
def test_elementwise_ops():
    ctx = ctx_for(64, [61, 45, 30])
    idx = [0, 1, 2]
    rng = np.random.default_rng(11)
    a, b, c = (rand_rows(rng, ctx, idx) for _ in range(3))
    qs = [ctx.moduli[i] for i in idx]
    out = ctx.zeros(3)

    def ref(f):
        return np.array([[f(int(x), int(y), int(z)) % q for x, y, z in zip(a[r], b[r], c[r])]
                         for r, q in enumerate(qs)], dtype=np.uint64)

    ctx.add(a, b, out, idx)
    assert np.array_equal(out, ref(lambda x, y, z: x + y))
    ctx.sub(a, b, out, idx)
    assert np.array_equal(out, ref(lambda x, y, z: x - y))
    ctx.neg(a, out, idx)
    assert np.array_equal(out, ref(lambda x, y, z: -x))
    ctx.mul(a, b, out, idx)
    assert np.array_equal(out, ref(lambda x, y, z: x * y))
    acc = c.copy()
    ctx.mul_add(a, b, acc, idx)
    assert np.array_equal(acc, ref(lambda x, y, z: z + x * y))
    s = [q - 2 for q in qs]
    ctx.mul_scalar(a, s, out, idx)
    assert np.array_equal(out, np.array([[(int(x) * s[r]) % q for x in a[r]] for r, q in enumerate(qs)], dtype=np.uint64))
    # batched (batch, limbs, N)
    A = np.stack([a, b])
    B = np.stack([b, c])
    O = np.empty_like(A)
    ctx.add(A, B, O, idx)
    ctx.add(a, b, out, idx)
    assert np.array_equal(O[0], out)
    # aliasing: out is a
    a2 = a.copy()
    ctx.add(a2, b, a2, idx)
    ctx.add(a, b, out, idx)
    assert np.array_equal(a2, out)


def test_from_signed():
    ctx = ctx_for(16, [61, 30])
    v = np.array([0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63), 5] * 2, dtype=np.int64)
    r = ctx.from_signed(v, [0, 1])
    assert r.dtype == np.uint64 and r.shape == (2, 16)
    for row, q in zip(r, ctx.moduli):
        assert row.tolist() == [int(x) % q for x in v]
    rb = ctx.from_signed(np.stack([v, -v[::-1]]), [1])
    assert rb.shape == (2, 1, 16)
    assert rb[1, 0].tolist() == [int(x) % ctx.moduli[1] for x in -v[::-1]]  # (wraps at -2**63)


def test_protocol_and_cache():
    be = get("cpu")
    assert be.name == "cpu"
    ctx = ctx_for(32, [40, 41])
    assert isinstance(ctx, RingContext)
    assert be.ring_context(32, list(ctx.moduli)) is ctx
    assert ctx.N == 32 and isinstance(ctx.moduli, tuple)
    z = ctx.zeros(2)
    assert z.shape == (2, 32) and z.dtype == np.uint64 and not z.any()
    assert ctx.zeros(2, batch=3).shape == (3, 2, 32)
    assert ctx.to_numpy(ctx.asarray([[1] * 32])).dtype == np.uint64


# ------------------------------------------------------------------------- bad input ----
@pytest.fixture(scope="module")
def small_ctx():
    return ctx_for(16, [40, 41])


def test_bad_context_args():
    q = _core.generate_ntt_primes(40, 1, 16)[0]
    with pytest.raises(ValueError):
        _core.RnsContext(12, [q])
    with pytest.raises(ValueError):
        _core.RnsContext(16, [])
    with pytest.raises(ValueError):
        _core.RnsContext(16, [q + 2 * 16])  # not prime (or at least not checked as such) / not NTT friendly
    with pytest.raises(ValueError):
        _core.RnsContext(16, [q, q])
    with pytest.raises(ValueError):
        _core.RnsContext(1 << 14, [q])  # q != 1 mod 2N


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros((2, 16), dtype=np.int64),  # dtype
        lambda: np.zeros((2, 16), dtype=np.float64),
        lambda: np.zeros((2, 16), dtype=">u8"),  # byte order
        lambda: np.zeros((2, 8), dtype=np.uint64),  # N
        lambda: np.zeros((3, 16), dtype=np.uint64),  # limbs
        lambda: np.zeros((32,), dtype=np.uint64),  # ndim
        lambda: np.zeros((1, 2, 2, 16), dtype=np.uint64),
        lambda: np.zeros((16, 2), dtype=np.uint64).T,  # non-contiguous
        lambda: np.zeros((2, 32), dtype=np.uint64)[:, ::2],
        lambda: [[0] * 16] * 2,  # not an array
    ],
)
def test_bad_arrays_raise_value_error(small_ctx, make):
    bad = make()
    good = small_ctx.zeros(2)
    idx = [0, 1]
    with pytest.raises(ValueError):
        small_ctx.ntt(bad, idx)
    with pytest.raises(ValueError):
        small_ctx.intt(bad, idx)
    with pytest.raises(ValueError):
        small_ctx.add(bad, good, good, idx)
    with pytest.raises(ValueError):
        small_ctx.mul(good, bad, good, idx)
    with pytest.raises(ValueError):
        small_ctx.mul_add(good, good, bad, idx)
    with pytest.raises(ValueError):
        small_ctx.automorphism(bad, 3, idx, False)
    with pytest.raises(ValueError):
        small_ctx.crt_compose(bad, idx)
    with pytest.raises(ValueError):
        small_ctx.base_convert(bad, idx, [0])
    with pytest.raises(ValueError):
        small_ctx.rescale(bad, idx)


def test_bad_idx_and_misc(small_ctx):
    a = small_ctx.zeros(2)
    for idx in ([0, 2], [0, -1], [0], [0, 1, 1], np.array([0.0, 1.0]), "ab", [[0, 1]]):
        with pytest.raises(ValueError):
            small_ctx.ntt(a, idx)
    ro = small_ctx.zeros(2)
    ro.setflags(write=False)
    with pytest.raises(ValueError):
        small_ctx.ntt(ro, [0, 1])
    with pytest.raises(ValueError):
        small_ctx.add(a, a, ro, [0, 1])
    small_ctx.add(ro, ro, a, np.array([0, 1], dtype=np.int32))  # read-only inputs are fine
    with pytest.raises(ValueError):
        small_ctx.add(a, small_ctx.zeros(2, batch=1), a, [0, 1])  # shape mismatch
    with pytest.raises(ValueError):
        small_ctx.mul_scalar(a, [1], a, [0, 1])
    with pytest.raises(ValueError):
        small_ctx.mul_scalar(a, [small_ctx.moduli[0], 1], a, [0, 1])
    with pytest.raises(ValueError):
        small_ctx.automorphism(a, 4, [0, 1], True)
    with pytest.raises(ValueError):
        small_ctx.from_signed(np.zeros(16, dtype=np.uint64), [0])
    with pytest.raises(ValueError):
        small_ctx.from_signed(np.zeros(15, dtype=np.int64), [0])
    with pytest.raises(ValueError):
        small_ctx.rescale(small_ctx.zeros(1), [0])
    with pytest.raises(ValueError):
        small_ctx.crt_compose(a, [0, 0])
    with pytest.raises(ValueError):
        small_ctx.mod_down(a, [0], [0])
    with pytest.raises(ValueError):
        small_ctx.twiddles(5)


@pytest.mark.parametrize("N", [8, 16, 1024])
def test_simd_and_portable_mul_agree(N):
    """IFMA element-wise mul / mul_add (primes < 2^50) vs the portable Barrett loops, incl. q - 1
    operands, a batch, and out aliasing an input."""
    ctx = ctx_for(N, [61, 50, 49, 40, 31, 20])
    idx = [0, 1, 2, 3, 4, 5]
    rng = np.random.default_rng(N + 7)
    qcol = np.array([ctx.moduli[i] for i in idx], dtype=np.uint64)[:, None]
    a = np.stack([rand_rows(rng, ctx, idx) for _ in range(2)])
    b = np.stack([rand_rows(rng, ctx, idx) for _ in range(2)])
    z = np.stack([rand_rows(rng, ctx, idx) for _ in range(2)])
    for x in (a, b, z):
        x[:, :, :3] = qcol - np.uint64(1)
    a[:, :, 3] = 0

    def run():
        m = np.empty_like(a)
        ctx.mul(a, b, m, idx)
        ma = z.copy()
        ctx.mul_add(a, b, ma, idx)
        al = a.copy()
        ctx.mul(al, b, al, idx)
        ctx.mul_add(b, al, al, idx)
        return m, ma, al

    prev = _core._set_simd_path("portable")
    try:
        ref = run()
        got = {}
        for path in _core.simd_paths()[1:]:  # every other path this CPU has (IFMA rows: primes < 2^50)
            _core._set_simd_path(path)
            got[path] = run()
    finally:
        _core._set_simd_path(prev)
    q = [int(v) for v in qcol[:, 0]]
    want = np.array([[[(int(x) * int(y)) % q[r] for x, y in zip(a[c, r], b[c, r])] for r in range(len(idx))]
                     for c in range(2)], dtype=np.uint64)
    assert np.array_equal(ref[0], want)
    for path, out in got.items():
        for x, y in zip(ref, out):
            assert np.array_equal(x, y), path


@pytest.mark.parametrize("N", [16, 32, 64, 1024, 8192])
@pytest.mark.parametrize("path", ["avx2", "avx512", "ifma"])
def test_simd_and_portable_ntt_agree(N, path):
    """AVX-512 kernels (64-bit Shoup on avx512; IFMA 52-bit for primes < 2^50 on ifma) vs the portable ones."""
    if path not in _core.simd_paths():
        pytest.skip(f"this CPU has no {path} path")
    ctx = ctx_for(N, [61, 50, 49, 40, 31])
    idx = [0, 1, 2, 3, 4]
    rng = np.random.default_rng(N + 1)
    a = rand_rows(rng, ctx, idx)
    a[:, :3] = np.array([ctx.moduli[i] - 1 for i in idx], dtype=np.uint64)[:, None]
    prev = _core._set_simd_path("portable")
    try:
        x = a.copy()
        ctx.ntt(x, idx)
        y = x.copy()
        ctx.intt(y, idx)
        _core._set_simd_path(path)
        x2 = a.copy()
        ctx.ntt(x2, idx)
        y2 = x2.copy()
        ctx.intt(y2, idx)
    finally:
        _core._set_simd_path(prev)
    assert np.array_equal(x, x2)
    assert np.array_equal(y, y2) and np.array_equal(y, a)
