"""RNS operations against Python big-int references: base_convert, mod_down, rescale,
crt_compose, automorphisms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavis import _core
from wavis.backend import get

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_ctx(N: int, bits: list[int]):
    moduli: list[int] = []
    for b in bits:
        moduli += _core.generate_ntt_primes(b, 1, N, exclude=moduli)
    return get("cpu").ring_context(N, moduli)


def rand_rows(rng, ctx, idx):
    return np.stack([rng.integers(0, ctx.moduli[i], ctx.N, dtype=np.uint64) for i in idx])


def crt(rows, moduli) -> list[int]:
    """CRT values in [0, Q) with Python ints."""
    Q = math.prod(moduli)
    out = []
    for n in range(rows.shape[1]):
        x = 0
        for r, q in enumerate(moduli):
            Qi = Q // q
            x += int(rows[r, n]) * pow(Qi, -1, q) * Qi
        out.append(x % Q)
    return out


bits_lists = st.lists(st.integers(30, 61), min_size=1, max_size=5)


@SETTINGS
@given(bits_in=bits_lists, bits_out=bits_lists, seed=st.integers(0, 2**32 - 1))
def test_base_convert(bits_in, bits_out, seed):
    N = 16
    ctx = make_ctx(N, bits_in + bits_out)
    ii = list(range(len(bits_in)))
    io = list(range(len(bits_in), len(bits_in) + len(bits_out)))
    rng = np.random.default_rng(seed)
    a = rand_rows(rng, ctx, ii)
    out = ctx.base_convert(a, ii, io)
    assert out.shape == (len(io), N) and out.dtype == np.uint64
    qs = [ctx.moduli[i] for i in ii]
    ps = [ctx.moduli[j] for j in io]
    Q = math.prod(qs)
    xs = crt(a, qs)
    for n, x in enumerate(xs):
        # the same small multiple u of Q for every output prime
        us = [u for u in range(len(ii)) if all(int(out[j, n]) == (x + u * Q) % p for j, p in enumerate(ps))]
        assert us, (n, x)
    # the exact value (u = 0) for a small x is reproduced
    small = ctx.from_signed(np.arange(N, dtype=np.int64), ii)
    assert np.array_equal(ctx.base_convert(small, ii, io), ctx.from_signed(np.arange(N, dtype=np.int64), io)) or len(ii) > 1


def test_base_convert_many_limbs():
    N = 8
    ctx = make_ctx(N, [60] * 20 + [61] * 3)  # > 15 terms exercises the lazy 128-bit accumulator
    ii, io = list(range(20)), [20, 21, 22]
    rng = np.random.default_rng(5)
    a = rand_rows(rng, ctx, ii)
    out = ctx.base_convert(a, ii, io)
    qs = [ctx.moduli[i] for i in ii]
    Q = math.prod(qs)
    for n, x in enumerate(crt(a, qs)):
        assert any(all(int(out[j, n]) == (x + u * Q) % ctx.moduli[io[j]] for j in range(3)) for u in range(20))


@SETTINGS
@given(nq=st.integers(1, 4), np_=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_mod_down(nq, np_, seed):
    N = 16
    ctx = make_ctx(N, [50, 55, 45, 60, 40, 61, 58][: nq + np_])
    iq = list(range(nq))
    ip = list(range(nq, nq + np_))
    rng = np.random.default_rng(seed)
    a = rand_rows(rng, ctx, iq + ip)
    out = ctx.mod_down(a, iq, ip)
    assert out.shape == (nq, N)
    qs = [ctx.moduli[i] for i in iq]
    ps = [ctx.moduli[j] for j in ip]
    P = math.prod(ps)
    xs = crt(a, qs + ps)
    for n, x in enumerate(xs):
        r = (x + (P - 1) // 2) // P  # round(x / P)
        assert any(all(int(out[i, n]) == (r - u) % q for i, q in enumerate(qs)) for u in range(np_)), n


def test_mod_down_exact_for_multiples_of_p():
    # x = P * m + e with small e: ModDown returns m (+ a small error at most len(idx_p)).
    N = 32
    ctx = make_ctx(N, [50, 50, 60, 61])
    iq, ip = [0, 1], [2, 3]
    P = ctx.moduli[2] * ctx.moduli[3]
    rng = np.random.default_rng(2)
    m = rng.integers(-(2**40), 2**40, N)
    e = rng.integers(-1000, 1000, N)
    vals = [int(mi) * P + int(ei) for mi, ei in zip(m, e)]
    a = np.stack([np.array([v % ctx.moduli[i] for v in vals], dtype=np.uint64) for i in iq + ip])
    out = ctx.mod_down(a, iq, ip)
    got = ctx.crt_compose(out, iq)
    assert np.all(np.abs(got - m.astype(np.float64)) <= 2)


@SETTINGS
@given(bits=st.lists(st.integers(30, 61), min_size=2, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_rescale(bits, seed):
    N = 16
    ctx = make_ctx(N, bits)
    idx = list(range(len(bits)))
    rng = np.random.default_rng(seed)
    a = rand_rows(rng, ctx, idx)  # coefficient domain
    A = a.copy()
    ctx.ntt(A, idx)
    out = ctx.rescale(A, idx)
    assert out.shape == (len(idx) - 1, N)
    ctx.intt(out, idx[:-1])
    qs = [ctx.moduli[i] for i in idx]
    ql = qs[-1]
    for n, x in enumerate(crt(a, qs)):
        r = (x + ql // 2) // ql
        assert [int(out[i, n]) for i in range(len(idx) - 1)] == [r % q for q in qs[:-1]]


def test_rescale_non_contiguous_idx():
    ctx = make_ctx(32, [40, 45, 50, 55])
    idx = [3, 1, 2]
    rng = np.random.default_rng(9)
    a = rand_rows(rng, ctx, idx)
    A = a.copy()
    ctx.ntt(A, idx)
    out = ctx.rescale(A, idx)
    ctx.intt(out, idx[:2])
    qs = [ctx.moduli[i] for i in idx]
    for n, x in enumerate(crt(a, qs)):
        r = (x + qs[2] // 2) // qs[2]
        assert [int(out[0, n]), int(out[1, n])] == [r % qs[0], r % qs[1]]


@SETTINGS
@given(bits=st.lists(st.integers(30, 61), min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_crt_compose_random(bits, seed):
    N = 16
    ctx = make_ctx(N, bits)
    idx = list(range(len(bits)))
    rng = np.random.default_rng(seed)
    a = rand_rows(rng, ctx, idx)
    got = ctx.crt_compose(a, idx)
    Q = math.prod(ctx.moduli)
    want = [float(x - Q if x > Q // 2 else x) for x in crt(a, list(ctx.moduli))]
    assert got.dtype == np.float64 and got.shape == (N,)
    assert got.tolist() == want  # correctly rounded (Python's int -> float rounds to nearest)


def test_crt_compose_exact_values():
    N = 8
    ctx = make_ctx(N, [61, 61, 60, 59])
    idx = [0, 1, 2, 3]
    Q = math.prod(ctx.moduli)
    vals = [0, 1, -1, 2**80 + 12345, -(2**80) - 1, 2**53 + 1, (Q - 1) // 2, -((Q - 1) // 2)]
    a = np.stack([np.array([v % q for v in vals], dtype=np.uint64) for q in ctx.moduli])
    got = ctx.crt_compose(a, idx)
    assert got.tolist() == [float(v) for v in vals]
    # ties round to even: 2^54 + 2 is exactly between two doubles
    ctx2 = make_ctx(8, [61, 61])
    for v in (2**54 + 2, 2**54 + 6, -(2**54 + 2), 2**64 + 2**11 + 1):
        row = np.array([[v % q] * 8 for q in ctx2.moduli], dtype=np.uint64)
        assert ctx2.crt_compose(row, [0, 1])[0] == float(v)


def test_crt_compose_many_limbs():
    N = 4
    ctx = make_ctx(N, [60] * 40)
    idx = list(range(40))
    rng = np.random.default_rng(4)
    a = rand_rows(rng, ctx, idx)
    Q = math.prod(ctx.moduli)
    assert Q.bit_length() > 2000
    got = ctx.crt_compose(a, idx)
    want = [x - Q if x > Q // 2 else x for x in crt(a, list(ctx.moduli))]
    for g, w in zip(got, want):
        assert math.isinf(g) and (g > 0) == (w > 0)
    vals = [3 * 2**900 + 7, -(2**1000), 5, -6]
    a = np.stack([np.array([v % q for v in vals], dtype=np.uint64) for q in ctx.moduli])
    assert ctx.crt_compose(a, idx).tolist() == [float(v) for v in vals]


# ------------------------------------------------------------------------ automorphism ---
def aut_ref(row, g, q):
    N = len(row)
    out = [0] * N
    for i, c in enumerate(row):
        j = (i * g) % (2 * N)
        if j < N:
            out[j] = int(c)
        else:
            out[j - N] = (-int(c)) % q
    return out


@pytest.mark.parametrize("N", [4, 16, 256, 4096])
def test_automorphism_coeff_and_ntt_agree(N):
    ctx = make_ctx(N, [50, 40])
    idx = [0, 1]
    rng = np.random.default_rng(N)
    a = rand_rows(rng, ctx, idx)
    A = a.copy()
    ctx.ntt(A, idx)
    gens = [1, 3, 5, 25, 2 * N - 1, pow(5, N // 4 + 1, 2 * N)] if N >= 4 else [1, 3]
    for g in gens:
        c = ctx.automorphism(a, g, idx, False)
        if N <= 256:
            for r, q in enumerate(ctx.moduli):
                assert c[r].tolist() == aut_ref(a[r].tolist(), g, q)
        C = c.copy()
        ctx.ntt(C, idx)
        assert np.array_equal(C, ctx.automorphism(A, g, idx, True)), g
    # composition: aut_g ∘ aut_h = aut_{gh}
    g, h = 5, 2 * N - 1
    x = ctx.automorphism(ctx.automorphism(A, h, idx, True), g, idx, True)
    assert np.array_equal(x, ctx.automorphism(A, (g * h) % (2 * N), idx, True))
    # batched
    B = np.stack([A, A])
    assert np.array_equal(ctx.automorphism(B, 5, idx, True)[1], ctx.automorphism(A, 5, idx, True))
