"""Batched CKKS evaluation (issue 13: a batch of the engine is one backend call per stage):
``Evaluator.multiply_many`` and ``rotate_batch`` equal the one-by-one operations bit for bit,
check every operand before computing anything, and fall back to one by one across levels."""

from __future__ import annotations

import numpy as np
import pytest

from wavis.ckks import CkksParameters, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from wavis.errors import DepthExhaustedError, MissingRotationKeyError

N = 256
SLOTS = N // 2


@pytest.fixture(scope="module")
def env():
    params = CkksParameters(poly_degree=N, scale_bits=40, max_depth=3, security_level="testing", dnum=2)
    kg = KeyGenerator(params, seed=b"b" * 32)
    ev = Evaluator(params, kg.evaluation_keys(galois_steps=[1, 2, 4, 8, 16, 32, 64]))
    enc = Encoder(params)
    encryptor = Encryptor(params, kg.public_key(), seed=b"s" * 32)
    rng = np.random.default_rng(11)
    cts = [encryptor.encrypt(enc.encode(rng.uniform(-1, 1, SLOTS))) for _ in range(5)]
    return params, ev, cts, Decryptor(params, kg.secret_key), enc


def same(x, y) -> bool:
    return (x.level, x.scale) == (y.level, y.scale) and np.array_equal(np.asarray(x.data), np.asarray(y.data))


def test_multiply_many_equals_multiply_bit_for_bit(env):
    params, ev, cts, dec, enc = env
    pairs = [(cts[0], cts[1]), (cts[2], cts[3]), (cts[4], cts[4]), (cts[1], cts[0])]
    batched = ev.multiply_many(pairs)
    assert len(batched) == 4
    for (a, b), got in zip(pairs, batched):
        assert same(got, ev.multiply(a, b))
    # operands at another level in the batch: one by one, same results
    low = ev.multiply(cts[0], cts[1])
    mixed = ev.multiply_many([(low, low), (cts[2], cts[3])])
    assert same(mixed[0], ev.multiply(low, low)) and same(mixed[1], ev.multiply(cts[2], cts[3]))
    # a pair at fault raises before anything is computed
    zero = low
    while zero.level > 0:
        zero = ev.multiply(zero, zero)
    with pytest.raises(DepthExhaustedError):
        ev.multiply_many([(cts[0], cts[1]), (zero, zero)])


@pytest.mark.parametrize("steps", [1, 3, -5, 0])
def test_rotate_batch_equals_rotate_bit_for_bit(env, steps):
    params, ev, cts, dec, enc = env
    batched = ev.rotate_batch(cts, steps)
    for ct, got in zip(cts, batched):
        assert same(got, ev.rotate(ct, steps))
    x = enc.decode(dec.decrypt(cts[0])).real
    assert np.max(np.abs(enc.decode(dec.decrypt(batched[0])).real - np.roll(x, -steps))) < 1e-5


def test_rotate_batch_checks_keys_first(env):
    params, ev, cts, dec, enc = env
    bare = Evaluator(params, None)
    with pytest.raises(MissingRotationKeyError):
        bare.rotate_batch(cts[:2], 1)


# --- on the device backends: the batched kernels, bit for bit the CPU's one-by-one results ---------

from conftest_cuda import DEVICE_PARAMS, cpu_backend, device_backend  # noqa: E402


@pytest.fixture(params=DEVICE_PARAMS)
def dev(request):
    return device_backend(request.param)


def test_batched_ops_on_the_device_equal_the_cpu_one_by_one(dev):
    params = CkksParameters(poly_degree=1024, scale_bits=40, max_depth=2, security_level="testing", dnum=2)
    kg = KeyGenerator(params, seed=b"d" * 32, backend=cpu_backend())
    evk = kg.evaluation_keys(galois_steps=[1, 2, 4])
    enc = Encoder(params, cpu_backend())
    encr = Encryptor(params, kg.public_key(), seed=b"e" * 32, backend=cpu_backend())
    rng = np.random.default_rng(5)
    cts = [encr.encrypt(enc.encode(rng.uniform(-1, 1, params.slot_count))) for _ in range(3)]
    cev, gev = Evaluator(params, evk, backend=cpu_backend()), Evaluator(params, evk, backend=dev)
    got = gev.multiply_many([(cts[0], cts[1]), (cts[1], cts[2]), (cts[2], cts[2])])
    want = [cev.multiply(cts[0], cts[1]), cev.multiply(cts[1], cts[2]), cev.multiply(cts[2], cts[2])]
    got += gev.rotate_batch(cts, 3)
    want += [cev.rotate(ct, 3) for ct in cts]
    for g, w in zip(got, want):
        h = gev.context.to_host(g)
        assert (h.level, h.scale) == (w.level, w.scale)
        assert np.array_equal(np.asarray(h.data), w.data)
