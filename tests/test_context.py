"""Contexts (parameters × backend): explicit backend, constants derived once, key residency
(put/get/evict), every scheme object built on a context, and the old constructors still working."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest_cuda import emu_backend, requires_cxx
from wavis import tfhe
from wavis.backend import get
from wavis.backend.cpu import CpuBackend
from wavis.ckks import (CkksContext, CkksParameters, Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator,
                        KeyGenerator)
from wavis.errors import KeyMismatchError, ParameterError
from wavis.ring.context import Context, KeyStore


@pytest.fixture(scope="module")
def params():
    return CkksParameters(poly_degree=256, scale_bits=30, max_depth=3, security_level="testing", dnum=2)


@pytest.fixture(scope="module")
def kg(params):
    return KeyGenerator(params, seed=bytes(32))


def test_default_context_is_the_cpu_and_shared(params):
    ctx = CkksContext.default(params)
    assert ctx is CkksContext.default(params) and ctx.backend is get("cpu")
    assert ctx.ring is get("cpu").ring_context(params.poly_degree, params.all_moduli)
    assert ctx.device == "cpu"
    # the old constructors use it
    assert Evaluator(params).context is ctx and Encoder(params).context is ctx
    assert KeyGenerator(params, seed=bytes(32)).context is ctx


def test_constants_are_derived_once(params):
    ctx = CkksContext(params, get("cpu"))
    plan = ctx.ks_plan(2)
    assert plan is ctx.ks_plan(2)
    assert plan[0] == [0, 1, 2] and plan[1][0][0] == 0 and plan[1][-1][1] == 3
    calls = []
    assert ctx.constant("x", lambda: calls.append(1) or 42) == 42 == ctx.constant("x", lambda: calls.append(1) or 0)
    assert calls == [1]
    big_p = 1
    for p in params.special_moduli:
        big_p *= p
    assert all(inv * big_p % q == 1 for inv, q in zip(ctx.p_inv, params.moduli))


def test_every_scheme_object_takes_a_context(params, kg):
    ctx = CkksContext(params, get("cpu"))
    kg2 = KeyGenerator(ctx, seed=bytes(32))
    assert kg2.context is ctx and kg2.key_tag == kg.key_tag
    enc, ev = Encoder(ctx), Evaluator(ctx, kg2.evaluation_keys(galois_steps=[1]))
    ct = Encryptor(ctx, kg2.public_key(), seed=bytes(range(32))).encrypt(enc.encode(np.full(128, 0.5)))
    out = enc.decode(Decryptor(ctx, kg2.secret_key).decrypt(ev.rotate(ev.multiply(ct, ct), 1))).real
    assert np.max(np.abs(out - 0.25)) < 1e-3
    assert all(o.context is ctx for o in (enc, ev))
    with pytest.raises(ParameterError):
        Evaluator(ctx, backend=CpuBackend())  # a context and another backend object


def test_key_residency_put_get_evict(params, kg):
    ctx = CkksContext(params, get("cpu"))
    evk = kg.evaluation_keys(galois_steps=[1, 2])
    resident = ctx.load_keys("key-1", evk)
    assert ctx.get_key("key-1") is resident and "key-1" in ctx.keys and len(ctx.keys) == 1
    want = evk.relin_key.data.nbytes + sum(g.data.nbytes for g in evk.galois_keys.values())
    assert ctx.keys.nbytes == want > 0
    ev = Evaluator(ctx, ctx.get_key("key-1"))
    assert ev.eval_keys is resident  # on the CPU the resident form is the object itself
    assert ctx.evict_key("key-1") is True and ctx.get_key("key-1") is None and ctx.keys.nbytes == 0
    assert ctx.evict_key("key-1") is False
    other = CkksParameters(poly_degree=256, scale_bits=30, max_depth=2, security_level="testing", dnum=2)
    with pytest.raises(KeyMismatchError):
        ctx.load_keys("bad", KeyGenerator(other, seed=bytes(32)).evaluation_keys())


def test_keystore_loads_once_under_concurrency():
    store = KeyStore()
    calls = []
    barrier = threading.Barrier(8)

    def make():
        calls.append(1)
        return object(), 10

    got = []

    def worker():
        barrier.wait()
        got.append(store.get_or_put("k", make))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(x) for x in got}) == 1 and store.nbytes == 10


@requires_cxx
def test_device_context_moves_keys_once_and_matches_cpu(params, kg):
    """On a device backend (the emulation here) the evaluator's keys are device arrays made once,
    and results equal the CPU context's bit for bit."""
    dev = emu_backend()
    ctx = CkksContext(params, dev)
    assert ctx.backend is dev and ctx.ring is dev.ring_context(params.poly_degree, params.all_moduli)
    evk = kg.evaluation_keys(galois_steps=[1])
    resident = ctx.load_keys("k", evk)
    assert isinstance(resident, EvaluationKeys) and resident is not evk
    ev_dev, ev_cpu = Evaluator(ctx, resident), Evaluator(params, evk)
    enc = Encoder(params)
    ct = Encryptor(params, kg.public_key(), seed=bytes(range(32))).encrypt(enc.encode(np.linspace(-1, 1, 128)))
    a = ctx.to_host(ev_dev.rotate(ev_dev.multiply(ct, ct), 1))
    b = ev_cpu.rotate(ev_cpu.multiply(ct, ct), 1)
    assert np.array_equal(a.data, b.data) and a.level == b.level


def test_tfhe_context_server_key_residency():
    ck, sk = tfhe.keygen("testing", seed=b"r" * 32)
    assert sk.context is tfhe.TfheContext.default("testing") and sk.context.backend is get("cpu")
    ctx = tfhe.TfheContext("testing", get("cpu"))
    handle = ctx.load_server_key(sk)
    assert ctx.load_server_key(sk) is handle and ctx.get_key(sk.key_id) is handle
    assert ctx.keys.nbytes == handle.memory_bytes > 0
    on = sk.on(ctx)
    assert on._resident() is handle  # evaluates with the context's resident copy
    a, b = ck.encrypt(True), ck.encrypt(True)
    assert ck.decrypt(on.gate("NAND", a, b)) is False
    assert ctx.evict_key(sk.key_id) and ctx.get_key(sk.key_id) is None
    assert ck.decrypt(on.gate("AND", a, b)) is True  # falls back to its own expanded copy
    with pytest.raises(ParameterError):
        sk.on(tfhe.TfheContext("fast_128", get("cpu")))


def test_context_base_is_generic():
    ctx = Context(("some", "params"), get("cpu"))
    assert ctx.put_key("a", "A", 3) == "A" and ctx.get_key("a") == "A" and ctx.keys.ids() == ["a"]
    ctx.keys.clear()
    assert len(ctx.keys) == 0


@requires_cxx
def test_service_loads_evaluation_keys_onto_its_device_context(params, kg):
    """wavis.service.fhe: one context per parameter set on the service's device; stored keys are
    loaded straight onto it (the emulated device stands in for a GPU)."""
    from wavis import serialize
    from wavis.service import fhe

    contexts = fhe.DeviceContexts(emu_backend())
    assert contexts.get(params) is contexts.get(params) and contexts.get(params).backend is emu_backend()
    evk = kg.evaluation_keys(galois_steps=[1])
    ev = fhe.load_evaluator(params, serialize.dumps(evk), [], contexts)
    assert ev.context is contexts.get(params) and ev.ctx is emu_backend().ring_context(params.poly_degree,
                                                                                      params.all_moduli)
    assert fhe.load_evaluator(params, serialize.dumps(evk)).context is CkksContext.default(params)
    assert fhe.DeviceContexts("cpu").get(params).backend is get("cpu")


@requires_cxx
async def test_engine_key_lru_keeps_keys_resident_on_the_device_context(params, kg):
    """The service engine's evaluator LRU is the eviction policy over the context's key
    residency: an evaluator entering it puts its keys into its (GPU-kind: the CUDA emulation)
    context; the LRU's eviction, replacement and discard evict them from the context; the LRU
    weighs an entry by the bytes the context accounts."""
    from wavis import serialize
    from wavis.service import fhe
    from wavis.service.engine import ComputeEngine

    contexts = fhe.DeviceContexts(emu_backend())
    ctx = contexts.get(params)
    blob = serialize.dumps(kg.evaluation_keys(galois_steps=[1]))
    eng = ComputeEngine(threads=1, queue_max=4, eval_key_cache_entries=2)
    try:
        evs = {k: fhe.load_evaluator(params, blob, [], contexts) for k in ("k1", "k2", "k3")}
        assert all(ev.context is ctx for ev in evs.values())
        eng.evaluators.put("k1", evs["k1"])
        assert ctx.get_key("k1") is evs["k1"].eval_keys  # resident on the emulated device's context
        assert ctx.backend.name == "cuda-emu" and ctx.keys.nbytes_of("k1") == fhe.evaluator_bytes(evs["k1"]) > 0
        assert eng.evaluators.bytes == ctx.keys.nbytes
        eng.evaluators.put("k2", evs["k2"])
        eng.evaluators.put("k3", evs["k3"])  # capacity 2: k1 is evicted, from the context too
        assert ctx.get_key("k1") is None and sorted(ctx.keys.ids()) == ["k2", "k3"]
        assert eng.evaluators.bytes == ctx.keys.nbytes

        async def never():
            raise AssertionError("must not reload")

        assert await eng.evaluators.get("k2", never) is evs["k2"]  # k2 is now the most recent
        newer = fhe.load_evaluator(params, blob, [], contexts)
        eng.evaluators.put("k3", newer)  # replacement: the context holds the newer copy only
        assert ctx.get_key("k3") is newer.eval_keys and len(ctx.keys) == 2
        eng.evaluators.discard("k2")
        assert ctx.get_key("k2") is None and ctx.keys.ids() == ["k3"]
        # evicting a stale copy never drops the newer one put under the same id
        assert not ctx.keys.evict("k3", expected=evs["k3"].eval_keys) and ctx.get_key("k3") is newer.eval_keys
    finally:
        eng.close()


async def test_engine_key_lru_bytes_bound_evicts_from_the_context(params, kg):
    """Bounded in bytes: a key set that does not fit next to the others evicts the least
    recently used from the CPU context as well."""
    from wavis import serialize
    from wavis.service import fhe
    from wavis.service.engine import ComputeEngine

    contexts = fhe.DeviceContexts("cpu")
    ctx = contexts.get(params)
    blob = serialize.dumps(kg.evaluation_keys(galois_steps=[1]))
    one = fhe.evaluator_bytes(fhe.load_evaluator(params, blob, [], contexts))
    eng = ComputeEngine(threads=1, queue_max=4, eval_key_cache_entries=8, eval_key_cache_bytes=2 * one)
    try:
        for k in ("a", "b", "c"):
            eng.evaluators.put(k, fhe.load_evaluator(params, blob, [], contexts))
        assert sorted(ctx.keys.ids()) == ["b", "c"] and ctx.keys.nbytes == eng.evaluators.bytes == 2 * one
    finally:
        eng.close()
        ctx.keys.clear()


@requires_cxx
def test_tfhe_session_lru_keeps_server_keys_resident_on_the_device_context():
    """The service's TFHE session-key LRU is the eviction policy over the TFHE context's key
    residency on the compute device (the CUDA emulation stands in for a GPU): a session's server
    key is expanded onto the device's TfheContext when it is loaded, put into the context when the
    session enters the LRU, shared by two sessions of the same (blind) key, and evicted from the
    context when the last session holding it leaves (discard, or eviction by capacity); a key the
    LRU dropped keeps computing for a request still holding it, without expanding it again."""
    from wavis.service import fhe, tfhe_store
    from wavis.service.sealing import Sealer

    contexts = fhe.DeviceContexts(emu_backend())
    ctx = tfhe_store.device_context(contexts, "testing")
    assert ctx is tfhe_store.device_context(contexts, tfhe.get_preset("testing"))
    assert isinstance(ctx, tfhe.TfheContext) and ctx.backend.name == "cuda-emu"
    pairs = [tfhe.keygen("testing", seed=bytes([i]) * 32) for i in range(3)]
    blobs = [tfhe.serialize.dump_server_key(sk) for _, sk in pairs]
    ids = [sk.key_id for _, sk in pairs]
    sealer = Sealer(bytes(32))
    store = tfhe_store.TfheStore(sealer, tfhe_store.TfheConfig(cache_entries=2))

    def load(sid, i):
        return tfhe_store.load_session(sid, "acct", blobs[i], None, sealer, contexts)

    s1 = load("s1", 0)
    assert s1.server.context is ctx and ctx.get_key(ids[0]) is None  # expanded, not yet resident
    store.keys.put("s1", s1)
    handle = ctx.get_key(ids[0])
    assert handle is s1.server.expanded() and type(handle).__name__ == "CudaServerKey"
    assert ctx.keys.nbytes_of(ids[0]) == handle.memory_bytes == store.keys.bytes > 0
    ck = pairs[0][0]
    a, b = ck.encrypt(True), ck.encrypt(True)
    assert ck.decrypt(s1.server.gate("NAND", a, b)) is False  # on the emulated device

    s2 = load("s2", 0)  # another session of the same key: shares the resident copy
    assert s2.server.expanded() is handle
    store.keys.put("s2", s2)
    store.keys.discard("s1")
    assert ctx.get_key(ids[0]) is handle  # s2 still holds it
    store.keys.put("s3", load("s3", 1))
    store.keys.put("s4", load("s4", 2))  # capacity 2: s2 leaves, and key 0 with it
    assert sorted(ctx.keys.ids()) == sorted(ids[1:]) and ctx.get_key(ids[0]) is None
    assert store.keys.bytes == ctx.keys.nbytes
    assert ck.decrypt(s2.server.gate("AND", a, b)) is True and s2.server.expanded() is handle  # not re-expanded
    store.keys.discard("s3")
    store.keys.discard("s4")
    assert len(ctx.keys) == 0 and store.keys.bytes == 0
