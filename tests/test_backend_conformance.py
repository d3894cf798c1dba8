"""The backend seam holds (issue 11): every protocol operation is implemented by every backend
(CPU, CUDA emulation, CUDA when a device exists) with the protocol's parameters, the reference
compositions agree with the native kernels, only wavis.backend.cpu imports wavis._core, and the
schemes never probe a backend's capabilities."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from conftest_cuda import DEVICE_PARAMS, device_backend
from wavis.backend import get, protocol, reference
from wavis.tfhe import get_preset

ROOT = Path(__file__).resolve().parents[1]
WAVIS = ROOT / "wavis"


@pytest.fixture(params=[pytest.param("cpu", id="cpu"), *DEVICE_PARAMS])
def backend(request):
    if request.param == "cpu":
        return get("cpu")
    return device_backend(request.param)


def _params_of(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def _check_ops(obj, proto, names) -> None:
    for name in names:
        assert name in dir(type(obj)) or name in dir(obj), f"{type(obj).__name__} lacks protocol op {name!r}"
        impl = getattr(obj, name)
        assert callable(impl), f"{type(obj).__name__}.{name} is not callable"
        want = _params_of(getattr(proto, name))
        try:
            got = _params_of(impl)
        except (TypeError, ValueError):  # a pybind11 method: no Python signature to compare
            continue
        assert got[: len(want)] == want, f"{type(obj).__name__}.{name}{tuple(got)} != protocol {tuple(want)}"


def test_protocol_lists_every_operation():
    """The op lists the conformance test walks are exactly the protocol classes' methods."""
    for proto, names in ((protocol.RingOps, protocol.RING_OPS), (protocol.LweOps, protocol.LWE_OPS),
                         (protocol.Backend, protocol.BACKEND_OPS)):
        declared = {n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")}
        assert declared == set(names), (proto.__name__, declared ^ set(names))


def test_backend_implements_every_operation(backend):
    _check_ops(backend, protocol.Backend, protocol.BACKEND_OPS)
    ring = backend.ring_context(1024, backend.generate_ntt_primes(50, 3, 1024))
    _check_ops(ring, protocol.RingOps, protocol.RING_OPS)
    assert isinstance(ring, protocol.RingOps)
    lwe = backend.lwe(get_preset("testing"))
    _check_ops(lwe, protocol.LweOps, protocol.LWE_OPS)
    assert isinstance(lwe, protocol.LweOps)


def test_batched_ring_ops_are_the_loop(backend):
    """Every *_batch op equals the loop of its single-item op (the reference's definition)."""
    mods = backend.generate_ntt_primes(40, 4, 256)
    ring = backend.ring_context(256, mods)
    rng = np.random.default_rng(3)
    q = np.array(mods, dtype=np.uint64)[None, :, None]
    a = (rng.integers(0, 2**62, size=(3, 4, 256), dtype=np.uint64) % q).astype(np.uint64)
    got = ring.to_numpy(ring.automorphism_batch(ring.asarray(a), [5, 25, 511], range(4), True))
    for b, g in enumerate((5, 25, 511)):
        assert np.array_equal(got[b], ring.to_numpy(ring.automorphism(ring.asarray(a[b]), g, range(4), True)))
    got = ring.to_numpy(ring.rescale_batch(ring.asarray(a), range(4)))
    for b in range(3):
        assert np.array_equal(got[b], ring.to_numpy(ring.rescale(ring.asarray(a[b].copy()), range(4))))
    with pytest.raises(ValueError):
        ring.automorphism_batch(ring.asarray(a), [5], range(4), True)


def test_sample_extract_reference():
    """Sample extraction: the extracted LWE's phase is coefficient 0 of the GLWE phase
    b − Σ_c a_c·S_c mod (X^N + 1, 2^32)."""
    rng = np.random.default_rng(0)
    J, k, N = 3, 2, 16
    glwe = rng.integers(0, 2**32, size=(J, k + 1, N), dtype=np.uint64).astype(np.uint32)
    key = rng.integers(0, 2, size=(k, N)).astype(np.int64)
    big = reference.sample_extract(np, glwe)
    assert big.shape == (J, k * N + 1) and big.dtype == np.uint32
    for j in range(J):
        coeff0 = int(glwe[j, k, 0])
        for c in range(k):
            prod0 = int(glwe[j, c, 0]) * int(key[c, 0]) - sum(int(glwe[j, c, N - i]) * int(key[c, i]) for i in range(1, N))
            coeff0 -= prod0
        lwe_phase = int(big[j, k * N]) - sum(int(big[j, c * N + i]) * int(key[c, i]) for c in range(k) for i in range(N))
        assert (coeff0 - lwe_phase) % 2**32 == 0


# ---------------------------------------------------------------------- structural (grep) ---
def _sources(*parts: str) -> list[Path]:
    return sorted(p for p in (WAVIS.joinpath(*parts)).rglob("*.py"))


_CORE_IMPORT = re.compile(r"(^|\s)(from\s+(wavis|\.+)\s+import\s+[^\n]*\b_core\b|import\s+wavis\._core|from\s+wavis\._core\s+import"
                          r"|from\s+\.+_core\s+import)", re.M)


def test_only_the_cpu_backend_imports_the_native_core():
    offenders = [str(p.relative_to(ROOT)) for p in _sources() if _CORE_IMPORT.search(p.read_text())
                 and WAVIS / "backend" / "cpu" not in p.parents]
    assert offenders == []


_PROBES = [
    re.compile(r"\bhasattr\("),
    re.compile(r"\bgetattr\(\s*(self\.)?(ctx|_ctx|ring|backend|lwe|context|device|_dev)\b"),
    re.compile(r"isinstance\([^)]*\b(np|numpy|cupy|cp)\.ndarray"),
    re.compile(r"\bgetattr\([^,]+,\s*[\"'](ks_|key_switch|mod_down|mod_up|automorphism|rescale|blind|bootstrap)"),
]


@pytest.mark.parametrize("scheme", ["ckks", "tfhe"])
def test_no_capability_probing_in_the_schemes(scheme):
    offenders = []
    for p in _sources(scheme):
        for lineno, line in enumerate(p.read_text().splitlines(), 1):
            if any(rx.search(line) for rx in _PROBES):
                offenders.append(f"{p.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


def test_the_probe_patterns_catch_probes():
    """The grep rules above are not vacuous."""
    for line in ('fused = getattr(ctx, "ks_mod_up", None)', 'if hasattr(self.ctx, "mod_down_ntt"):',
                 "if isinstance(a.data, np.ndarray):", 'getattr(obj, "key_switch_ext")'):
        assert any(rx.search(line) for rx in _PROBES), line
    assert _CORE_IMPORT.search("from wavis import _core") and _CORE_IMPORT.search("    from .. import _core")


def test_the_gate_table_lives_in_one_module():
    """Gate names, linear combinations and MU appear in wavis/tfhe/gates.py only: not in the C++
    core, not in the CUDA host code or kernels."""
    for path in [ROOT / "csrc" / "tfhe.hpp", ROOT / "csrc" / "tfhe.cpp", ROOT / "kernels" / "tfhe.cu",
                 WAVIS / "backend" / "cuda_tfhe.py", WAVIS / "backend" / "cpu" / "lwe.py"]:
        if not path.exists():  # the native core may move (csrc/include, csrc/src)
            continue
        text = path.read_text()
        for word in ("NAND", "XNOR", "1 << 29", "1u << 29", "kMu"):
            assert word not in text, f"{path.relative_to(ROOT)} mentions {word!r}"
    for found in list((ROOT / "csrc").rglob("*.?pp")):
        assert "XNOR" not in found.read_text(), found


def test_ring_constants_are_derived_once_in_the_core():
    """The CUDA ring context (GPU and emulation) uploads the constants the C++ RnsContext derived
    (issue 11): no modular inverse, Shoup companion, Barrett ratio or permutation is computed in
    Python; the core's exports match their definitions."""
    src = (WAVIS / "backend" / "cuda.py").read_text()
    for pattern in (r"\bpow\(", r"<< 64", r"1 << 128", r"_bitrev"):
        assert not re.search(pattern, src), f"cuda.py derives a ring constant itself ({pattern})"
    N = 64
    qs = get("cpu").generate_ntt_primes(50, 3, N) + get("cpu").generate_ntt_primes(40, 2, N)
    ring = get("cpu").ring_context(N, qs)
    iq, ip = [0, 1, 2], [3, 4]
    P = qs[3] * qs[4]
    t = ring.mod_down_constants(iq, ip)
    assert [int(v) for v in t["p_mod"]] == [P % qs[i] for i in iq]
    assert [int(v) for v in t["half_p"]] == [(P - 1) // 2 % qs[i] for i in iq]
    assert [int(v) for v in t["p_inv"]] == [pow(P, -1, qs[i]) for i in iq]
    assert [int(v) for v in t["p_inv_shoup"]] == [(pow(P, -1, qs[i]) << 64) // qs[i] for i in iq]
    assert list(t["p_recip"]) == [1.0 / qs[j] for j in ip]
    b = ring.bconv_constants(iq, ip)
    Q = qs[0] * qs[1] * qs[2]
    assert [int(v) for v in b["qhat_inv"]] == [pow(Q // qs[i], -1, qs[i]) for i in iq]
    assert b["qhat_mod_p"].tolist() == [[Q // qs[i] % qs[j] for i in iq] for j in ip]
    tw = ring.twiddles(1)
    ratio = (1 << 128) // qs[1]
    assert (int(tw["barrett_hi"]), int(tw["barrett_lo"])) == (ratio >> 64, ratio & ((1 << 64) - 1))
    assert int(tw["wn_inv"]) == int(tw["ipsi_rev"][1]) * int(tw["n_inv"]) % qs[1]
    perm = ring.ntt_perm(5)
    assert perm.dtype == np.uint32 and sorted(perm.tolist()) == list(range(N))
    assert [int(v) for v in ring.shoup([3, 5], [0, 1])] == [(3 << 64) // qs[0], (5 << 64) // qs[1]]
