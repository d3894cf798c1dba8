"""Runtime CPU dispatch of the native core (docs/ring.md "SIMD paths"): every path the CPU has
computes bit-identical results; WAVIS_SIMD forces a path and refuses one the CPU lacks; the
binary is portable (AVX instructions only in the dispatched kernels, checked with objdump, and
smoke tests under qemu-user emulating CPUs without AVX-512 / without AVX).

The SIMD-path matrix (``-m slow``): SIMD_SUBSET, the SIMD-sensitive tests (NTT, RNS, key
switching, TFHE blind rotation), re-run in a fresh process under every other path this CPU has.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from wavis import _core

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["portable", "avx2", "avx512", "ifma"]
SIMD_SUBSET = [
    "tests/test_ring_core.py",
    "tests/test_ring_rns.py",
    "tests/test_ckks_keyswitch.py",
    "tests/test_tfhe.py::test_negacyclic_fft_product_exact",
    "tests/test_tfhe.py::test_truth_tables_random_bits",
    "tests/test_tfhe.py::test_single_gate_helpers_and_same_operand",
    "tests/test_simd_paths.py::test_results_bit_identical_across_paths",
]


def run_py(code: str, env: dict | None = None, prefix: list[str] | None = None, timeout: int = 300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([*(prefix or []), sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=ROOT)


# -- path selection ------------------------------------------------------------------------------
def test_path_reporting_and_selection():
    paths = _core.simd_paths()
    assert paths[0] == "portable" and set(paths) <= set(PATHS)
    assert paths == [p for p in PATHS if p in paths]  # ordered
    assert _core.simd_path() in paths
    if "WAVIS_SIMD" not in os.environ:
        assert _core.simd_path() == paths[-1]  # the best the CPU has by default
    prev = _core._set_simd_path("portable")
    try:
        assert _core.simd_path() == "portable"
        with pytest.raises(ValueError, match="not a SIMD path"):
            _core._set_simd_path("sse9")
        for p in set(PATHS) - set(paths):
            with pytest.raises(ValueError, match="lacks"):
                _core._set_simd_path(p)
        assert _core._set_simd_path(prev) == "portable"
    finally:
        _core._set_simd_path(prev)


def test_wavis_simd_forces_a_path_and_refuses_bad_ones():
    for p in _core.simd_paths():
        r = run_py("from wavis import _core; print(_core.simd_path())", {"WAVIS_SIMD": p})
        assert r.returncode == 0 and r.stdout.strip() == p, r.stderr
    r = run_py("from wavis import _core", {"WAVIS_SIMD": "0"})  # legacy spelling of portable
    assert r.returncode == 0, r.stderr
    r = run_py("from wavis import _core", {"WAVIS_SIMD": "avx1024"})
    assert r.returncode != 0 and "ImportError" in r.stderr and "not a SIMD path" in r.stderr
    for p in set(PATHS) - set(_core.simd_paths()):  # on this CPU; qemu below covers the others
        r = run_py("from wavis import _core", {"WAVIS_SIMD": p})
        assert r.returncode != 0 and "lacks the instructions" in r.stderr


# -- bit identity --------------------------------------------------------------------------------
def _ring_digest() -> str:
    """NTT, element-wise, RNS and fused key-switching results on primes of every width."""
    h = hashlib.sha256()
    N = 1024
    qs: list[int] = []
    for bits in (49, 45, 36, 55, 60, 61):
        qs += _core.generate_ntt_primes(bits, 1, N, exclude=qs)
    ctx = _core.RnsContext(N, qs)
    idx = list(range(len(qs)))
    rng = np.random.default_rng(5)
    qcol = np.array(qs, dtype=np.uint64)[:, None]
    a = (rng.integers(0, 2**63, (len(qs), N), dtype=np.uint64) % qcol).astype(np.uint64)
    b = (rng.integers(0, 2**63, (len(qs), N), dtype=np.uint64) % qcol).astype(np.uint64)
    a[:, :4] = qcol - np.uint64(1)
    out = np.empty_like(a)
    x = a.copy()
    ctx.ntt(x, idx)
    h.update(x.tobytes())
    ctx.intt(x, idx)
    h.update(x.tobytes())
    for op in (ctx.add, ctx.sub, ctx.mul, ctx.mul_add):
        op(a, b, out, idx)
        h.update(out.tobytes())
    ctx.neg(a, out, idx)
    h.update(out.tobytes())
    h.update(ctx.base_convert(a[:3], [0, 1, 2], [3, 4, 5]).tobytes())
    h.update(ctx.mod_down(a, [0, 1, 2, 3], [4, 5]).tobytes())
    h.update(ctx.rescale(a, idx).tobytes())
    h.update(ctx.crt_compose(a[:4], [0, 1, 2, 3]).tobytes())
    h.update(ctx.automorphism(a, 5, idx, True).tobytes())
    iq, ip, digits = [0, 1, 2, 3], [4, 5], [(0, 2), (2, 4)]
    key = (rng.integers(0, 2**63, (2, 2, len(qs), N), dtype=np.uint64) % qcol).astype(np.uint64)
    h.update(ctx.key_switch_ext(a[:4].copy(), key, iq, ip, digits).tobytes())
    exts = ctx.ks_mod_up(a[:4].copy(), iq, ip, digits)
    h.update(ctx.ks_inner(exts, key, iq, ip, 5, a[None, :4].copy()).tobytes())
    # a rotation's key switch with the key in the evaluation form: the automorphism applied to the
    # sums of every row (IFMA/AVX2 rows and the wide primes' 128-bit rows) on their way out
    h.update(ctx.key_switch_ext(a[:4].copy(), key, iq, ip, digits, a[None, :4].copy(), 2 * N - 1).tobytes())
    h.update(ctx.ks_inner(exts, key, iq, ip, 2 * N - 1, None).tobytes())
    h.update(ctx.mod_down_ntt(a, iq, ip).tobytes())
    # signed coefficients into every prime: the extremes, multiples of the primes +-1, random
    sv = rng.integers(-2**63, 2**63 - 1, (2, N), dtype=np.int64, endpoint=True)
    sv[0, :4] = [-2**63, 2**63 - 1, -1, 0]
    sv[0, 4:10] = [int(qs[1]) * 12345, -int(qs[1]) * 12345, int(qs[1]) * 7 - 1, -int(qs[1]) * 7 + 1, int(qs[5]), -int(qs[5])]
    h.update(ctx.from_signed(sv, idx).tobytes())
    # one-prime digits and a one-prime P (plain reductions between primes of every width, both ways)
    iq1, ip1, digits1 = [0, 1, 2, 3, 4], [5], [(k, k + 1) for k in range(5)]
    key1 = (rng.integers(0, 2**63, (5, 2, len(qs), N), dtype=np.uint64) % qcol).astype(np.uint64)
    h.update(ctx.key_switch_ext(a[:5].copy(), key1, iq1, ip1, digits1).tobytes())
    h.update(ctx.mod_down_ntt(a, iq1, ip1).tobytes())
    h.update(ctx.mod_down_ntt(a[[5, 1, 2, 3, 4, 0]].copy(), [5, 1, 2, 3, 4], [0]).tobytes())
    ctx.mul_scalar(a, [int(q) - 1 - k for k, q in enumerate(qs)], out, idx)
    h.update(out.tobytes())
    # ring degrees at the kernels' edges: the AVX2 NTT's 8-value blocks and the AVX-512's 16
    for n in (8, 16, 32, 4096):
        small = _core.RnsContext(n, _core.generate_ntt_primes(61, 1, n, exclude=[]) +
                                 _core.generate_ntt_primes(50, 2, n, exclude=[]))
        qn = np.array(small.moduli, dtype=np.uint64)[:, None]
        x = (rng.integers(0, 2**63, (3, n), dtype=np.uint64) % qn).astype(np.uint64)
        x[:, 0] = qn[:, 0] - np.uint64(1)
        y = x.copy()
        small.ntt(y, [0, 1, 2])
        h.update(y.tobytes())
        small.intt(y, [0, 1, 2])
        assert np.array_equal(x, y)
        h.update(small.base_convert(x[1:], [1, 2], [0]).tobytes())
        h.update(small.mod_down_ntt(x, [0], [1, 2]).tobytes())
        # one-prime digits whose prime is below the target's: ModUp's out-of-place forward NTT
        # (ntt_forward_from: its first pass reads the digit row) at every kernel edge
        ks = (rng.integers(0, 2**63, (2, 2, 3, n), dtype=np.uint64) % qn).astype(np.uint64)
        h.update(small.key_switch_ext(x[1:].copy(), ks, [1, 2], [0], [(0, 1), (1, 2)]).tobytes())
        h.update(small.key_switch_ext(x[1:].copy(), ks, [1, 2], [0], [(0, 1), (1, 2)], x[None, 1:].copy(), 5).tobytes())
    # ModDown by many primes (q_l and up to 16 special primes below 2^50): the overshoot correction's
    # table has Lp + 1 entries, one AVX-512 register up to 8, two up to 16, scalar beyond
    wide: list[int] = []
    for bits in (60, 40, 40) + (50,) * 8 + (49,) * 9:
        wide += _core.generate_ntt_primes(bits, 1, N, exclude=wide)
    many = _core.RnsContext(N, wide)
    qw = np.array(wide, dtype=np.uint64)[:, None]
    x = (rng.integers(0, 2**63, (len(wide), N), dtype=np.uint64) % qw).astype(np.uint64)
    x[:, :4] = qw - np.uint64(1)
    for lp in (7, 8, 9, 15, 16, 17):
        ip = list(range(len(wide) - lp, len(wide)))
        h.update(many.mod_down_ntt(x, list(range(len(wide) - lp)), ip).tobytes())
    # the IFMA inner product's and conversion's final reduction at its term limits (the 52-bit
    # reduction up to 15 products, the 64-bit one beyond): 13..16 one-prime digits (+ P·add), 14..16
    # source primes, every value the largest residue or random, primes from 2^20 to just below 2^50
    sizes = (49, 21, 50, 30, 45, 49, 22, 50, 40, 36, 49, 48, 25, 50, 47, 50, 44)
    ps: list[int] = []
    for bits in sizes:
        ps += _core.generate_ntt_primes(bits, 1, N, exclude=ps)
    deep = _core.RnsContext(N, ps)
    qd = np.array(ps, dtype=np.uint64)[:, None]
    for fill in ("max", "random"):
        v = (rng.integers(0, 2**63, (len(ps), N), dtype=np.uint64) % qd).astype(np.uint64)
        if fill == "max":
            v[:] = qd - np.uint64(1)
        for nq in (13, 14, 15, 16):
            iq, ipd = list(range(nq)), [len(ps) - 1]
            dg = [(k, k + 1) for k in range(nq)]
            kd = np.broadcast_to(v, (nq, 2, len(ps), N)).copy()
            ext = deep.ks_mod_up(v[:nq].copy(), iq, ipd, dg)
            h.update(deep.ks_inner(ext, kd, iq, ipd, 5, v[None, :nq].copy()).tobytes())
            h.update(deep.ks_inner(ext, kd, iq, ipd, 1, None).tobytes())
        for ls in (14, 15, 16):
            h.update(deep.base_convert(v[:ls], list(range(ls)), [ls]).tobytes())
            h.update(deep.mod_down_ntt(v, list(range(len(ps) - ls)), list(range(len(ps) - ls, len(ps)))).tobytes())
    return h.hexdigest()


def _tfhe_digest(preset: str) -> str:
    """Key generation (client side, FFT-based exact products), 24 blind rotations (accumulators and
    sample-extracted) and key switches with a server key built by the current path's kernels."""
    from wavis.backend.cpu.lwe import core_params
    from wavis.tfhe.gates import MU
    from wavis.tfhe.params import get_preset

    t = core_params(get_preset(preset))
    lwe, glwe, mseed, bsk, ksk = _core.tfhe_keygen(t, bytes(range(32)))
    sk = _core.TfheServerKeyCore(t, mseed, bsk, ksk)
    assert sk.simd_path == {"ifma": "avx512"}.get(_core.simd_path(), _core.simd_path())
    mu = MU
    mus = np.array([mu if i % 3 else (1 << 32) - mu for i in range(24)], dtype=np.uint32)
    a = _core.tfhe_encrypt(t, lwe, mus, bytes(32))
    acc = sk.bootstrap(a, mu, False, 1)
    big = sk.bootstrap(a, mu, True, 1)
    out = sk.key_switch(big, 1)
    h = hashlib.sha256()
    for arr in (lwe, glwe, bsk, ksk, acc, big, out):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def test_results_bit_identical_across_paths():
    """Every path this CPU has gives the same bytes (ring, CKKS kernels, TFHE keygen and gates)."""
    prev = _core.simd_path()
    digests = {}
    try:
        for p in _core.simd_paths():
            _core._set_simd_path(p)
            digests[p] = (_ring_digest(), _tfhe_digest("testing"), _tfhe_digest("fast_128"))
    finally:
        _core._set_simd_path(prev)
    first = next(iter(digests.values()))
    assert all(d == first for d in digests.values()), digests


@pytest.mark.parametrize("logn", [4, 5, 6, 7, 12, 13, 14, 15, 16])
def test_ntt_lazy_bounds_bit_identical_across_paths(logn):
    """The AVX-512/IFMA NTT kernels skip conditional subtractions when q leaves room below the lane
    limit (forward (4 + 2 log2 N) q, inverse 2N q below 2^52 IFMA / 2^64) and change structure with
    N (chunked passes, radix-2 leftovers, merged last stage): every path gives the portable bytes on
    primes on both sides of those thresholds, with inputs at the contracts' limits (forward below
    4q, inverse below 2q)."""
    N = 1 << logn
    prev = _core.simd_path()
    rng = np.random.default_rng(logn)
    try:
        for bits in (30, 35, 36, 37, 38, 45, 46, 47, 49, 50, 58, 59, 60, 61):
            try:
                q = _core.generate_ntt_primes(bits, 1, N)
            except Exception:  # no such prime for this N
                continue
            ctx = _core.RnsContext(N, q)
            fwd_in = rng.integers(0, 4 * q[0], (1, N), dtype=np.uint64)
            fwd_in[0, :4] = 4 * q[0] - 1
            inv_in = rng.integers(0, 2 * q[0], (1, N), dtype=np.uint64)
            inv_in[0, :4] = 2 * q[0] - 1
            outs = {}
            for p in _core.simd_paths():
                _core._set_simd_path(p)
                f, i = fwd_in.copy(), inv_in.copy()
                ctx.ntt(f, [0])
                ctx.intt(i, [0])
                assert f.max() < q[0] and i.max() < q[0], (p, bits)
                outs[p] = (f.tobytes(), i.tobytes())
            ref = outs["portable"]
            assert all(o == ref for o in outs.values()), (bits, [p for p, o in outs.items() if o != ref])
    finally:
        _core._set_simd_path(prev)


# -- portability ---------------------------------------------------------------------------------
AVX512_OPERAND = re.compile(r"%zmm|%k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b")
DISPATCHED_AVX2 = re.compile(r"isa_avx2::|_avx2\b|wavis::simd2::")
DISPATCHED_AVX512 = re.compile(r"isa_avx512::|_avx512\b|_ifma\b|inner52|wavis::simd::")


def _instruction_sets(disassembly: str) -> dict[str, set[str]]:
    """Function name -> {'avx', 'avx512'} for functions using VEX / EVEX instructions."""
    used: dict[str, set[str]] = {}
    fn = None
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            fn = re.sub(r"@@?\w+$", "", m.group(1))
            continue
        parts = line.split("\t")
        if fn is None or len(parts) < 2 or not parts[1].strip():
            continue
        ins = parts[1].strip()
        mnemonic = ins.split()[0]
        if AVX512_OPERAND.search(ins):
            used.setdefault(fn, set()).add("avx512")
        elif mnemonic.startswith("v") and mnemonic not in ("verr", "verw"):
            used.setdefault(fn, set()).add("avx")
    return used


def _undispatched(used: dict[str, set[str]]) -> list[str]:
    bad = []
    for fn, kinds in used.items():
        if "avx512" in kinds and not DISPATCHED_AVX512.search(fn):
            bad.append(f"AVX-512 in {fn}")
        elif "avx" in kinds and not (DISPATCHED_AVX512.search(fn) or DISPATCHED_AVX2.search(fn)):
            bad.append(f"AVX in {fn}")
        if "avx512" in kinds and DISPATCHED_AVX2.search(fn):
            bad.append(f"AVX-512 in the AVX2 copy: {fn}")
    return bad


def test_avx_instructions_only_in_dispatched_kernels():
    """objdump: in the per-path TFHE objects no symbol that another copy could share (one
    definition for the linker) exists outside the copy's namespace, and AVX-512 appears only in the
    AVX-512 copy; in the module every exported function with VEX/EVEX code is a dispatched kernel."""
    if not (shutil.which("objdump") and shutil.which("nm")):
        pytest.skip("binutils (objdump, nm) not installed")
    objs = sorted(ROOT.glob("build/*/CMakeFiles/wavis_tfhe_*.dir/**/kernels.cpp.o"))
    if not objs:
        pytest.skip("no build tree (an installed wheel): nothing to disassemble per object")
    seen = set()
    for o in objs:
        isa = re.search(r"wavis_tfhe_(\w+)\.dir", str(o)).group(1)
        seen.add(isa)
        syms = subprocess.run(["nm", "-C", "--defined-only", str(o)], capture_output=True, text=True, check=True).stdout
        shared = [s for s in syms.splitlines() if re.search(r" [TW] ", s) and f"isa_{isa}::" not in s]
        assert not shared, f"{o.name} ({isa}) defines functions the linker may merge with other copies: {shared[:5]}"
        used = _instruction_sets(subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", str(o)],
                                                capture_output=True, text=True, check=True).stdout)
        kinds = set().union(*used.values()) if used else set()
        assert ("avx512" in kinds) == (isa == "avx512"), (isa, kinds)
        assert ("avx" in kinds or "avx512" in kinds) == (isa != "portable"), (isa, kinds)
    assert {"portable", "avx2", "avx512"} <= seen
    # the module (stripped: its exported functions, sized by the dynamic symbol table)
    so = _core.__file__
    dyn = subprocess.run(["nm", "-D", "-S", "-C", "--defined-only", so], capture_output=True, text=True,
                         check=True).stdout
    ranges = []
    for line in dyn.splitlines():
        f = line.split(maxsplit=3)
        if len(f) == 4 and f[2] in "TtWw" and int(f[1], 16) > 0:
            ranges.append((int(f[0], 16), int(f[0], 16) + int(f[1], 16), f[3]))
    assert any("PyInit__core" in r[2] for r in ranges)
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", so], capture_output=True, text=True,
                         check=True).stdout
    starts = sorted(ranges)
    used: dict[str, set[str]] = {}
    k = 0
    for line in dis.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\t(.*)$", line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        while k < len(starts) and starts[k][1] <= addr:
            k += 1
        if k == len(starts) or not starts[k][0] <= addr:
            continue
        ins = m.group(2).strip()
        mnemonic = ins.split()[0] if ins else ""
        if AVX512_OPERAND.search(ins):
            used.setdefault(starts[k][2], set()).add("avx512")
        elif mnemonic.startswith("v") and mnemonic not in ("verr", "verw"):
            used.setdefault(starts[k][2], set()).add("avx")
    assert not _undispatched(used), _undispatched(used)[:5]


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.skipif(QEMU is None, reason="qemu-user not installed (Debian: apt-get install qemu-user)")
@pytest.mark.parametrize("cpu,path", [("Haswell", "avx2"), ("Nehalem", "portable")])
def test_runs_on_cpus_without_avx512_or_avx(cpu, path):
    """qemu-user emulating a Haswell (AVX2, no AVX-512) and a Nehalem (no AVX at all): the core
    picks the path the CPU has, passes the smoke test (ring, CKKS, TFHE), and refuses a forced
    wider path at import."""
    r = subprocess.run([QEMU, "-cpu", cpu, sys.executable, str(ROOT / "tests" / "simd_smoke.py"), "--expect", path],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"OK {path}" in r.stdout
    r = run_py("from wavis import _core", {"WAVIS_SIMD": "avx512"}, prefix=[QEMU, "-cpu", cpu])
    assert r.returncode != 0 and "lacks the instructions of the avx512 path" in r.stderr, r.stderr[-2000:]


# -- the SIMD-path matrix and the wheel (slow) ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_simd_matrix(path):
    """SIMD_SUBSET under WAVIS_SIMD=<path> in a fresh process (the default path runs it in the
    default suite already)."""
    if path not in _core.simd_paths():
        pytest.skip(f"this CPU has no {path} path")
    if path == _core.simd_paths()[-1]:
        pytest.skip("the default path: covered by the default suite")
    env = dict(os.environ, WAVIS_SIMD=path)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SIMD_SUBSET],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_wheel_imports_and_runs_on_avx2_and_portable(tmp_path):
    """A wheel built here (pip wheel, the release build) imports and passes the smoke test with
    WAVIS_SIMD=avx2 and portable (and under qemu Haswell when installed)."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
                        "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("wavis-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    assert list(site.glob("wavis/_core*.so"))
    runs = [([], p) for p in ("avx2", "portable") if p in _core.simd_paths()]
    if QEMU:
        runs.append(([QEMU, "-cpu", "Haswell"], None))
    for prefix, path in runs:
        env = dict(os.environ, WAVIS_SMOKE_PYTHONPATH=str(site))
        if path:
            env["WAVIS_SIMD"] = path
        r = subprocess.run([*prefix, sys.executable, str(ROOT / "tests" / "simd_smoke.py"), "--expect", path or "avx2"],
                           capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        assert r.returncode == 0 and str(site) in r.stdout, (prefix, path, r.stdout[-2000:], r.stderr[-2000:])
