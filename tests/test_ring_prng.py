"""ChaCha20 Prng: RFC 8439 vectors, agreement with `cryptography`, sampler statistics."""

from __future__ import annotations

import numpy as np
import pytest

from wavis import _core
from wavis.backend import get
from wavis.backend.cpu import Prng

KEY = bytes(range(32))


def test_rfc8439_block_2_3_2():
    p = Prng(KEY, bytes.fromhex("000000090000004a00000000"))
    p.random_bytes(64)  # the vector uses block counter 1
    assert p.random_bytes(64).hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )


def test_rfc8439_encryption_2_4_2():
    p = Prng(KEY, bytes.fromhex("000000000000004a00000000"))
    p.random_bytes(64)  # initial counter 1
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    ks = p.random_bytes(len(plaintext))
    ct = bytes(x ^ y for x, y in zip(plaintext, ks))
    assert ct.hex() == (
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
        "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
        "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
        "5af90bbf74a35be6b40b8eedf2785e42874d"
    )


def test_keystream_matches_cryptography():
    Cipher = pytest.importorskip("cryptography.hazmat.primitives.ciphers").Cipher
    from cryptography.hazmat.primitives.ciphers import algorithms

    for seed in (bytes(32), KEY, bytes(range(100, 132))):
        nonce = bytes(range(12))
        n = 64 * 40 + 17
        enc = Cipher(algorithms.ChaCha20(seed, b"\0\0\0\0" + nonce), mode=None).encryptor()
        want = enc.update(bytes(n))
        p = Prng(seed, nonce)
        # read in odd-sized pieces to cross block and buffer boundaries
        got = p.random_bytes(5) + p.random_bytes(1000) + p.random_bytes(n - 1005)
        assert got == want
        # uniform_u64 continues the same stream as little-endian words
        q = Prng(seed, nonce)
        w = q.uniform_u64(20)
        assert w.tobytes() == want[:160]


def test_seed_validation_and_os_seed():
    with pytest.raises(ValueError):
        Prng(b"short")
    with pytest.raises(ValueError):
        _core.Prng(bytes(33))
    with pytest.raises(TypeError):
        _core.Prng(None)
    a, b = Prng(), Prng()  # OS-seeded: different streams
    assert a.random_bytes(32) != b.random_bytes(32)
    assert isinstance(get("cpu").prng(), Prng)


def test_same_seed_same_output():
    seed = bytes(range(1, 33))
    outs = []
    for _ in range(2):
        p = Prng(seed)
        ctx = get("cpu").ring_context(64, _core.generate_ntt_primes(40, 2, 64))
        outs.append((p.uniform_mod(ctx, [0, 1]), p.ternary(64), p.ternary_hw(64, 10), p.gaussian(64), p.uniform_below(9, 7)))
    for x, y in zip(*outs):
        assert np.array_equal(x, y)


def test_uniform_mod_statistics():
    N = 1 << 14
    ctx = get("cpu").ring_context(N, _core.generate_ntt_primes(61, 1, N) + _core.generate_ntt_primes(30, 1, N))
    p = Prng(bytes(32))
    u = p.uniform_mod(ctx, [0, 1])
    assert u.shape == (2, N) and u.dtype == np.uint64
    for r, q in enumerate(ctx.moduli):
        row = u[r].astype(np.float64) / q
        assert row.max() < 1.0
        assert abs(row.mean() - 0.5) < 0.02
        assert abs(row.var() - 1 / 12) < 0.005
        # chi-square over 16 buckets (15 dof; 99.99% quantile ≈ 44)
        counts = np.bincount((row * 16).astype(int), minlength=16)
        exp = N / 16
        assert ((counts - exp) ** 2 / exp).sum() < 44


def test_uniform_below_chi_square():
    p = Prng(bytes(range(32)))
    for bound in (1, 2, 7, 10, 1000):
        v = p.uniform_below(50_000, bound)
        assert v.max() < bound
        if bound > 1 and bound <= 10:
            counts = np.bincount(v.astype(np.int64), minlength=bound)
            exp = 50_000 / bound
            assert ((counts - exp) ** 2 / exp).sum() < 40
    with pytest.raises(ValueError):
        p.uniform_below(3, 0)
    big = p.uniform_u64(20_000)
    assert abs(big.astype(np.float64).mean() / 2**64 - 0.5) < 0.02


def test_ternary():
    p = Prng(bytes(32))
    t = p.ternary(60_000)
    assert t.dtype == np.int64 and set(np.unique(t).tolist()) == {-1, 0, 1}
    counts = np.bincount(t + 1)
    assert np.all(np.abs(counts / 60_000 - 1 / 3) < 0.01)


def test_ternary_hw():
    p = Prng(bytes(32))
    for N, h in ((16, 0), (16, 16), (1024, 64), (1 << 15, 192)):
        t = p.ternary_hw(N, h)
        assert t.shape == (N,) and np.count_nonzero(t) == h
        assert set(np.unique(t).tolist()) <= {-1, 0, 1}
    # positions roughly uniform, signs balanced
    acc = np.zeros(64)
    signs = 0
    for _ in range(2000):
        t = p.ternary_hw(64, 8)
        acc += t != 0
        signs += t.sum()
    assert np.all(np.abs(acc / 2000 - 8 / 64) < 0.04)
    assert abs(signs) < 4 * np.sqrt(2000 * 8)
    with pytest.raises(ValueError):
        p.ternary_hw(8, 9)


@pytest.mark.parametrize("sigma", [3.2, 1.0, 10.0])
def test_gaussian(sigma):
    p = Prng(bytes(range(32)))
    g = p.gaussian(200_000, sigma)
    assert g.dtype == np.int64
    assert abs(g.mean()) < 0.05 * sigma
    # rounding adds variance 1/12
    assert abs(g.std() / np.sqrt(sigma**2 + 1 / 12) - 1) < 0.02
    assert np.abs(g).max() <= 6 * sigma
    assert p.gaussian(5).shape == (5,)
    with pytest.raises(ValueError):
        p.gaussian(5, 0.0)
