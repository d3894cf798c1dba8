"""CUDA backend parity against the CPU oracle: every RingContext op bit for bit, and CKKS
multiply / rotate / matmul through ``Evaluator(params, evk, backend=...)``.

Each test runs twice: on the kernel emulation (CI, no GPU) and on the real device (marked
``cuda``, skipped without one). Sizes are drawn by hypothesis from 2^10..2^16.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_cuda import DEVICE_PARAMS, cpu_backend, device_backend, primes, random_rows
from wavis.errors import ShapeError

HYP = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
               derandomize=False)


@pytest.fixture(params=DEVICE_PARAMS)
def dev(request):
    return device_backend(request.param)


def contexts(dev, logN: int, bits: int, count: int):
    N = 1 << logN
    mods = primes(bits, count, N)
    return cpu_backend().ring_context(N, mods), dev.ring_context(N, mods), mods


def host(g, a):
    return g.to_numpy(a)


sizes = st.integers(10, 16)
bit_sizes = st.sampled_from([30, 40, 50, 59, 60, 61])


# ------------------------------------------------------------------------------ NTT ---------
@HYP
@given(logN=sizes, bits=bit_sizes, limbs=st.integers(1, 4), batch=st.sampled_from([None, 1, 3]),
       seed=st.integers(0, 2**32 - 1))
def test_ntt_intt_bit_exact(dev, logN, bits, limbs, batch, seed):
    c, g, mods = contexts(dev, logN, bits, 4)
    rng = np.random.default_rng(seed)
    idx = list(rng.permutation(4)[:limbs])
    a = random_rows(rng, mods, idx, 1 << logN, batch)
    x = a.copy()
    c.ntt(x, idx)
    y = g.asarray(a)
    g.ntt(y, idx)
    assert np.array_equal(host(g, y), x)
    c.intt(x, idx)
    g.intt(y, idx)
    assert np.array_equal(host(g, y), x)
    assert np.array_equal(x, a)


@pytest.mark.parametrize("logN", [1, 2, 3, 8, 11, 12, 13, 17])
def test_ntt_small_and_odd_sizes(dev, logN):
    c, g, mods = contexts(dev, logN, 50, 2)
    rng = np.random.default_rng(logN)
    a = random_rows(rng, mods, [0, 1], 1 << logN)
    x = a.copy()
    c.ntt(x, [0, 1])
    y = g.asarray(a)
    g.ntt(y, [0, 1])
    assert np.array_equal(host(g, y), x)
    g.intt(y, [0, 1])
    assert np.array_equal(host(g, y), a)


def test_ntt_extreme_values(dev):
    c, g, mods = contexts(dev, 12, 61, 2)
    a = np.stack([np.full(1 << 12, q - 1, dtype=np.uint64) for q in mods])
    a[:, ::3] = 0
    x = a.copy()
    c.ntt(x, [0, 1])
    y = g.asarray(a)
    g.ntt(y, [0, 1])
    assert np.array_equal(host(g, y), x)


def test_numpy_operands_write_back(dev):
    """NumPy in, NumPy out: results are written back into the NumPy array (in place)."""
    c, g, mods = contexts(dev, 10, 50, 2)
    rng = np.random.default_rng(1)
    a = random_rows(rng, mods, [0, 1], 1024)
    x, y = a.copy(), a.copy()
    c.ntt(x, [0, 1])
    g.ntt(y, [0, 1])
    assert isinstance(y, np.ndarray) and np.array_equal(x, y)
    o = np.zeros_like(a)
    g.mul(a, x, o, [0, 1])
    o2 = np.zeros_like(a)
    c.mul(a, x, o2, [0, 1])
    assert np.array_equal(o, o2)


# ------------------------------------------------------------------------ element-wise -----
@HYP
@given(logN=sizes, bits=bit_sizes, limbs=st.integers(1, 4), batch=st.sampled_from([None, 2]),
       seed=st.integers(0, 2**32 - 1))
def test_elementwise_bit_exact(dev, logN, bits, limbs, batch, seed):
    c, g, mods = contexts(dev, logN, bits, 4)
    rng = np.random.default_rng(seed)
    idx = list(rng.permutation(4)[:limbs])
    N = 1 << logN
    a = random_rows(rng, mods, idx, N, batch)
    b = random_rows(rng, mods, idx, N, batch)
    z = random_rows(rng, mods, idx, N, batch)
    ga, gb = g.asarray(a), g.asarray(b)
    for op in ("add", "sub", "mul"):
        o1 = np.empty_like(a)
        getattr(c, op)(a, b, o1, idx)
        o2 = g.zeros(len(idx), None if batch is None else batch)
        getattr(g, op)(ga, gb, o2, idx)
        assert np.array_equal(host(g, o2), o1), op
    o1 = z.copy()
    c.mul_add(a, b, o1, idx)
    o2 = g.asarray(z.copy())
    g.mul_add(ga, gb, o2, idx)
    assert np.array_equal(host(g, o2), o1)
    o1 = np.empty_like(a)
    c.neg(a, o1, idx)
    o2 = g.zeros(len(idx), None if batch is None else batch)
    g.neg(ga, o2, idx)
    assert np.array_equal(host(g, o2), o1)
    sc = [int(rng.integers(0, mods[i])) for i in idx]
    o1 = np.empty_like(a)
    c.mul_scalar(a, sc, o1, idx)
    o2 = g.zeros(len(idx), None if batch is None else batch)
    g.mul_scalar(ga, sc, o2, idx)
    assert np.array_equal(host(g, o2), o1)
    # aliasing: out is an input
    o1 = a.copy()
    c.add(o1, b, o1, idx)
    o2 = g.asarray(a.copy())
    g.add(o2, gb, o2, idx)
    assert np.array_equal(host(g, o2), o1)


@HYP
@given(logN=sizes, limbs=st.integers(1, 4), batch=st.sampled_from([None, 2]), seed=st.integers(0, 2**32 - 1))
def test_from_signed_bit_exact(dev, logN, limbs, batch, seed):
    c, g, mods = contexts(dev, logN, 60, 4)
    rng = np.random.default_rng(seed)
    N = 1 << logN
    shape = (N,) if batch is None else (batch, N)
    v = rng.integers(-(2**63), 2**63 - 1, size=shape, dtype=np.int64, endpoint=True)
    v.reshape(-1)[:4] = [-(2**63), 2**63 - 1, 0, -1]
    small = rng.integers(-20, 20, size=shape, dtype=np.int64)
    idx = list(range(limbs))
    for x in (v, small):
        assert np.array_equal(host(g, g.from_signed(x, idx)), c.from_signed(x, idx))


# ----------------------------------------------------------------------------- RNS ---------
@HYP
@given(logN=sizes, n_in=st.integers(1, 5), n_out=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_base_convert_bit_exact(dev, logN, n_in, n_out, seed):
    c, g, mods = contexts(dev, logN, 59, 10)
    rng = np.random.default_rng(seed)
    perm = list(rng.permutation(10))
    ii, io = perm[:n_in], perm[n_in:n_in + n_out]
    a = random_rows(rng, mods, ii, 1 << logN)
    assert np.array_equal(host(g, g.base_convert(g.asarray(a), ii, io)), c.base_convert(a, ii, io))


def test_base_convert_many_limbs(dev):
    """More than 14 input limbs exercises the intermediate 128-bit reductions."""
    c, g, mods = contexts(dev, 10, 61, 40)
    rng = np.random.default_rng(3)
    ii, io = list(range(33)), list(range(33, 40))
    a = random_rows(rng, mods, ii, 1024)
    assert np.array_equal(host(g, g.base_convert(a, ii, io)), c.base_convert(a, ii, io))


@HYP
@given(logN=sizes, l=st.integers(1, 5), k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_mod_down_bit_exact(dev, logN, l, k, seed):
    c, g, mods = contexts(dev, logN, 50, 8)
    rng = np.random.default_rng(seed)
    perm = list(rng.permutation(8))
    iq, ip = perm[:l], perm[l:l + k]
    a = random_rows(rng, mods, iq + ip, 1 << logN)
    assert np.array_equal(host(g, g.mod_down(g.asarray(a), iq, ip)), c.mod_down(a, iq, ip))


@HYP
@given(logN=sizes, l=st.integers(1, 5), k=st.integers(1, 4), batch=st.sampled_from([None, 2]),
       bits=bit_sizes, seed=st.integers(0, 2**32 - 1))
def test_mod_down_ntt_bit_exact(dev, logN, l, k, batch, bits, seed):
    """The device ModDown in the NTT domain (one k > 1 overshoot estimate per coefficient)
    equals the CPU oracle's, for single polynomials and (2, rows, N) batches."""
    from wavis.ckks import keyswitch as ks

    c, g, mods = contexts(dev, logN, bits, 9)
    rng = np.random.default_rng(seed)
    perm = [int(i) for i in rng.permutation(9)]
    iq, ip = perm[:l], perm[l:l + k]
    N = 1 << logN
    rows = [random_rows(rng, mods, iq + ip, N) for _ in range(batch or 1)]
    a = np.stack(rows) if batch else rows[0]
    want = ks.mod_down_ntt(c, a, iq, ip)
    assert np.array_equal(host(g, g.mod_down_ntt(g.asarray(a), iq, ip)), want)


def test_mod_down_ntt_overshoot_boundaries(dev):
    """Inputs whose conversion overshoot u hits 0 and its maximum k (all residues p_j − 1 or 0)
    are reduced exactly as on the CPU."""
    from wavis.ckks import keyswitch as ks

    c, g, mods = contexts(dev, 10, 61, 8)
    iq, ip = [0, 1, 2], [3, 4, 5, 6, 7]
    for fill in ("max", "zero", "half"):
        a = np.zeros((len(iq + ip), 1 << 10), dtype=np.uint64)
        for r, i in enumerate(iq + ip):
            a[r] = {"max": mods[i] - 1, "zero": 0, "half": mods[i] // 2}[fill]
        assert np.array_equal(host(g, g.mod_down_ntt(g.asarray(a), iq, ip)), ks.mod_down_ntt(c, a, iq, ip)), fill


@HYP
@given(logN=sizes, limbs=st.integers(2, 6), bits=bit_sizes, seed=st.integers(0, 2**32 - 1))
def test_rescale_bit_exact(dev, logN, limbs, bits, seed):
    c, g, mods = contexts(dev, logN, bits, 6)
    rng = np.random.default_rng(seed)
    idx = list(rng.permutation(6)[:limbs])
    a = random_rows(rng, mods, idx, 1 << logN)
    assert np.array_equal(host(g, g.rescale(g.asarray(a), idx)), c.rescale(a, idx))


@HYP
@given(logN=sizes, limbs=st.integers(1, 3), batch=st.sampled_from([None, 2]), ntt=st.booleans(),
       gexp=st.integers(0, 2**20), seed=st.integers(0, 2**32 - 1))
def test_automorphism_bit_exact(dev, logN, limbs, batch, ntt, gexp, seed):
    c, g, mods = contexts(dev, logN, 50, 3)
    rng = np.random.default_rng(seed)
    N = 1 << logN
    idx = list(range(limbs))
    a = random_rows(rng, mods, idx, N, batch)
    ge = [pow(5, gexp, 2 * N), 2 * N - 1, (2 * N - pow(5, gexp, 2 * N)) % (2 * N), 1][gexp % 4]
    assert np.array_equal(host(g, g.automorphism(g.asarray(a), ge, idx, ntt)), c.automorphism(a, ge, idx, ntt))


def test_automorphism_commutes_with_ntt(dev):
    c, g, mods = contexts(dev, 11, 50, 2)
    rng = np.random.default_rng(5)
    a = g.asarray(random_rows(rng, mods, [0, 1], 2048))
    for ge in (5, 25, 4095, 3):
        x = g.automorphism(a, ge, [0, 1], False)
        g.ntt(x, [0, 1])
        y = a.copy()
        g.ntt(y, [0, 1])
        y = g.automorphism(y, ge, [0, 1], True)
        assert np.array_equal(host(g, x), host(g, y))


KS_CASES = [  # (idx_q, idx_p, digits) over 7 primes: 4 ciphertext primes, 3 special primes
    ([0, 1, 2, 3], [4], [(i, i + 1) for i in range(4)]),
    ([0, 1, 2, 3], [4, 5, 6], [(0, 2), (2, 4)]),
    ([0, 2], [5, 6], [(0, 2)]),
]


@HYP
@given(logN=st.integers(10, 13), case=st.integers(0, len(KS_CASES) - 1), add_m=st.sampled_from([0, 1, 2]),
       galois=st.sampled_from([1, 5, 25, -1]), seed=st.integers(0, 2**32 - 1))
def test_fused_key_switching_bit_exact(dev, logN, case, add_m, galois, seed):
    """ks_mod_up, the fused ks_inner kernel (automorphism and full-prime key rows read in place),
    key_switch_ext, mod_down_ntt and their batched variants: bit for bit the CPU core's."""
    c, g, mods = contexts(dev, logN, 50, 7)
    iq, ip, digits = KS_CASES[case]
    rng = np.random.default_rng(seed)
    N = 1 << logN
    gelt = galois % (2 * N)
    a = random_rows(rng, mods, iq, N)
    key = np.stack([np.stack([random_rows(rng, mods, range(7), N) for _ in range(2)]) for _ in range(len(digits))])
    add = random_rows(rng, mods, iq, N, batch=add_m) if add_m else None
    exts = c.ks_mod_up(a, iq, ip, digits)
    assert np.array_equal(host(g, g.ks_mod_up(g.asarray(a), iq, ip, digits)), exts)
    acc = c.ks_inner(exts, key, iq, ip, gelt, add)
    assert np.array_equal(host(g, g.ks_inner(g.asarray(exts), g.asarray(key), iq, ip, gelt, add)), acc)
    ext_acc = c.key_switch_ext(a, key, iq, ip, digits, add)
    assert np.array_equal(host(g, g.key_switch_ext(g.asarray(a), g.asarray(key), iq, ip, digits, add)), ext_acc)
    assert np.array_equal(host(g, g.mod_down_ntt(g.asarray(ext_acc), iq, ip)), c.mod_down_ntt(ext_acc, iq, ip))
    # batched variants (a batch of 2, one Galois element per item)
    a2 = np.stack([a, random_rows(rng, mods, iq, N)])
    add2 = None if add is None else np.stack([add, add])
    assert np.array_equal(host(g, g.key_switch_ext_batch(g.asarray(a2), key, iq, ip, digits, add2)),
                          c.key_switch_ext_batch(a2, key, iq, ip, digits, add2))
    ex2 = c.ks_mod_up_batch(a2, iq, ip, digits)
    assert np.array_equal(host(g, g.ks_mod_up_batch(g.asarray(a2), iq, ip, digits)), ex2)
    assert np.array_equal(host(g, g.ks_inner_batch(g.asarray(ex2), key, iq, ip, [gelt, 1], add2)),
                          c.ks_inner_batch(ex2, key, iq, ip, [gelt, 1], add2))


@HYP
@given(logN=st.integers(10, 12), repeat=st.sampled_from([1, 4, 256]), terms=st.integers(1, 20),
       seed=st.integers(0, 2**32 - 1))
def test_diag_mac_bit_exact(dev, logN, repeat, terms, seed):
    """diag_mac (the double-hoisted linear transform's inner sums): bit for bit the CPU core's."""
    c, g, mods = contexts(dev, logN, 60, 4)
    rng = np.random.default_rng(seed)
    N = 1 << logN
    idx = [0, 2, 3]
    rots = np.stack([np.stack([random_rows(rng, mods, idx, N) for _ in range(2)]) for _ in range(3)])
    pts = np.stack([random_rows(rng, mods, idx, N // repeat) for _ in range(terms)])
    sel = [int(v) for v in rng.integers(0, 3, terms)]
    counts = [terms // 2, terms - terms // 2]
    assert np.array_equal(host(g, g.diag_mac(g.asarray(rots), g.asarray(pts), sel, counts, idx, repeat)),
                          c.diag_mac(rots, pts, sel, counts, idx, repeat))


def test_shape_errors(dev):
    _, g, _ = contexts(dev, 10, 50, 2)
    a = g.zeros(2)
    with pytest.raises(ShapeError):
        g.ntt(a, [0])
    with pytest.raises(ShapeError):
        g.add(a, g.zeros(1), a, [0, 1])
    with pytest.raises(ShapeError):
        g.automorphism(a, 4, [0, 1], True)
    with pytest.raises(ShapeError):
        g.mul_scalar(a, [1], a, [0, 1])
    with pytest.raises(ShapeError):
        g.ntt(a, [0, 7])


# ---------------------------------------------------------------------------- CKKS --------
@pytest.fixture(scope="module")
def ckks_cpu():
    from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, KeyGenerator
    from wavis.ckks.linalg import matmul_galois_steps

    params = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=4, security_level="testing", dnum=2)
    kg = KeyGenerator(params, seed=b"g" * 32, backend=cpu_backend())
    slots = params.slot_count
    steps = sorted({1, 2, 3, 5, -1} | set(matmul_galois_steps(16, 16, slots)))
    evk = kg.evaluation_keys(galois_steps=steps, conjugation=True)
    enc = Encoder(params, cpu_backend())
    encr = Encryptor(params, kg.public_key(), seed=b"e" * 32, backend=cpu_backend())
    dec = Decryptor(params, kg.secret_key, backend=cpu_backend())
    return params, kg, evk, enc, encr, dec


def _ev_pair(dev, ckks_cpu, resident: bool):
    from wavis.ckks import Evaluator

    params, kg, evk, *_ = ckks_cpu
    gev = Evaluator(params, evk, backend=dev)
    if resident:
        gev = Evaluator(params, gev.context.to_device(evk), backend=dev)
    return Evaluator(params, evk, backend=cpu_backend()), gev


@pytest.mark.parametrize("resident", [True, False])
def test_ckks_multiply_rotate_bit_exact(dev, ckks_cpu, resident):

    params, kg, evk, enc, encr, dec = ckks_cpu
    cev, gev = _ev_pair(dev, ckks_cpu, resident)
    rng = np.random.default_rng(11)
    x, y = rng.uniform(-1, 1, params.slot_count), rng.uniform(-1, 1, params.slot_count)
    cx, cy = encr.encrypt(enc.encode(x)), encr.encrypt(enc.encode(y))
    gx, gy = (gev.context.to_device(cx), gev.context.to_device(cy)) if resident else (cx, cy)

    pairs = [
        (cev.multiply(cx, cy), gev.multiply(gx, gy), x * y),
        (cev.rotate(cx, 3), gev.rotate(gx, 3), np.roll(x, -3)),
        (cev.rotate(cx, -1), gev.rotate(gx, -1), np.roll(x, 1)),
        (cev.add(cev.square(cx), cy), gev.add(gev.square(gx), gy), x * x + y),
        (cev.multiply_scalar(cx, 0.75), gev.multiply_scalar(gx, 0.75), 0.75 * x),
        (cev.multiply_plain(cx, y), gev.multiply_plain(gx, y), x * y),
    ]
    conj_c, conj_g = cev.conjugate(cx), gev.conjugate(gx)
    pairs.append((conj_c, conj_g, x))
    for rc, rg, want in pairs:
        rg_h = gev.context.to_host(rg)
        assert rg_h.level == rc.level and rg_h.scale == rc.scale
        assert np.array_equal(np.asarray(rg_h.data), rc.data)  # integer ops are bit-exact
        got = enc.decode(dec.decrypt(rg_h)).real
        assert np.max(np.abs(got - want)) < 1e-5


def test_ckks_multiply_rotate_stay_on_device(dev, ckks_cpu, monkeypatch):
    """multiply (relinearize + rescale) and rotate on resident data never copy to the host
    (the ModDown overshoot estimate runs on the device)."""

    params, kg, evk, enc, encr, dec = ckks_cpu
    _, gev = _ev_pair(dev, ckks_cpu, True)
    x = np.random.default_rng(3).uniform(-1, 1, params.slot_count)
    gx = gev.context.to_device(encr.encrypt(enc.encode(x)))
    gev.multiply(gx, gx), gev.rotate(gx, 1)  # warm the per-context table caches
    calls = []
    ctx = gev.ctx
    monkeypatch.setattr(type(ctx), "to_numpy", lambda self, a: calls.append("ctx.to_numpy") or np.asarray(a))
    monkeypatch.setattr(type(ctx._dev), "to_numpy", lambda self, a: calls.append("dev.to_numpy") or np.asarray(a))
    gev.multiply(gx, gx)
    gev.rotate(gx, 1)
    assert calls == []


def test_ckks_hoisted_and_matmul(dev, ckks_cpu):
    from wavis.ckks.linalg import matmul

    params, kg, evk, enc, encr, dec = ckks_cpu
    cev, gev = _ev_pair(dev, ckks_cpu, True)
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, params.slot_count)
    cx = encr.encrypt(enc.encode(x))
    gx = gev.context.to_device(cx)
    outs_c, outs_g = cev.rotate_many(cx, [1, 2, 5]), gev.rotate_many(gx, [1, 2, 5])
    for s in (1, 2, 5):
        assert np.array_equal(gev.context.to_host(outs_g[s]).data, outs_c[s].data)
    m = rng.uniform(-1, 1, (16, 16))
    rc, rg = matmul(cev, m, cx), matmul(gev, m, gx)
    rg = gev.context.to_host(rg)
    assert np.array_equal(rg.data, rc.data)
    got = enc.decode(dec.decrypt(rg)).real[:16]
    assert np.max(np.abs(got - m @ x[:16])) < 1e-4


def test_ckks_keygen_on_device_matches_cpu(dev):
    """The same seed gives bit-identical keys on both backends (sampling is on the host)."""
    from wavis.ckks import CkksParameters, KeyGenerator

    params = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=2, security_level="testing", dnum=2)
    kc = KeyGenerator(params, seed=b"s" * 32, backend=cpu_backend())
    kd = KeyGenerator(params, seed=b"s" * 32, backend=dev)
    assert kc.key_tag == kd.key_tag
    ec = kc.evaluation_keys(galois_steps=[1, 7])
    ed = kd.context.to_host(kd.evaluation_keys(galois_steps=[1, 7]))
    assert np.array_equal(ec.relin_key.data, ed.relin_key.data)
    for gk in ec.galois_keys:
        assert np.array_equal(ec.galois_keys[gk].data, ed.galois_keys[gk].data)
