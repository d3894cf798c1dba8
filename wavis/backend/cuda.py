"""CUDA backend: CuPy + the kernels in ``kernels/*.cu`` (the one loader of every RawModule).

* :class:`CudaBackend` (``name = "cuda"``): ``ring_context(N, moduli)`` returns a cached
  :class:`CudaRingContext` implementing :class:`wavis.backend.protocol.RingContext` on CuPy
  ``uint64`` arrays; ``asarray``/``to_numpy`` move data. Raises
  :class:`wavis.errors.BackendError` when CuPy or a CUDA device is missing.
* Kernels are compiled with NVRTC through ``cupy.RawModule`` on first use and cached per device
  (CuPy also caches the compiled binaries on disk, keyed by the source text). The shared header
  ``kernels/modarith.cuh`` is inlined into each source before compiling, so the cache key covers
  it too.
* Integer results are bit-identical to the CPU oracle (:mod:`wavis.backend.cpu`): every
  constant a kernel reads is derived once, by the C++ core's ``RnsContext`` (the CPU backend's
  ring), and uploaded: NTT tables and Barrett ratios (``twiddles(i)``), basis-conversion
  constants (``bconv_constants``), ModDown / rescale constants (``mod_down_constants``),
  automorphism permutations (``ntt_perm``) and Shoup companions (``shoup``); every kernel
  returns the unique residue in ``[0, q)``.
* Inputs may be NumPy or CuPy arrays (NumPy inputs are uploaded; a NumPy ``out`` is written
  back), so the CKKS layer runs unchanged; keep data resident (``asarray`` once,
  :meth:`wavis.ckks.CkksContext.to_device` for ciphertexts and keys) for speed.
* ``crt_compose`` (decryption/decoding only) copies to the host and uses the CPU oracle.

CuPy is imported only in this module, and only when a :class:`CudaBackend` is built. The device
abstraction (:class:`_CupyDevice`) is also implemented by :mod:`wavis.backend.cuda_emu`, which
runs the very same kernel sources on the CPU (compiled as C++ with a small shim), so the host
logic and the kernels are tested in CI without a GPU.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wavis.errors import BackendError, ShapeError

from . import reference

__all__ = [
    "CudaBackend",
    "DeviceBackend",
    "CudaRingContext",
    "kernel_dir",
    "kernel_source",
]

_U64 = np.uint64
KERNEL_FILES = ("ntt", "rns", "tfhe")
_TILE_LOG = 12  # NTT tile: 2^12 words = 32 KiB of shared memory
_EW_BLOCK = 256


# ----------------------------------------------------------------------------- sources ----
def kernel_dir() -> Path:
    """The directory holding ``*.cu`` and ``modarith.cuh``: ``$WAVIS_KERNELS_DIR`` if set, else
    ``kernels/`` at the repository root (an editable install or a source checkout)."""
    env = os.environ.get("WAVIS_KERNELS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "kernels", here.parents[1] / "kernels"):
        if (cand / "modarith.cuh").is_file():
            return cand
    raise BackendError(
        "CUDA kernel sources not found: set WAVIS_KERNELS_DIR or install from a checkout (pip install -e .)",
        backend="cuda",
    )


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)


@functools.lru_cache(maxsize=None)
def kernel_source(name: str) -> str:
    """Source of ``kernels/<name>.cu`` with its local ``#include "..."`` headers inlined."""
    d = kernel_dir()
    seen: set[str] = set()

    def expand(text: str) -> str:
        def repl(m: re.Match) -> str:
            inc = m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return expand((d / inc).read_text())

        return _INCLUDE.sub(repl, text)

    text = expand((d / f"{name}.cu").read_text())
    return re.sub(r"^\s*#\s*pragma\s+once\s*$", "", text, flags=re.M)


# ----------------------------------------------------------------------------- devices ----
class _CupyDevice:
    """One CUDA device: the CuPy module as ``xp`` and the compiled RawModules (cached)."""

    _lock = threading.Lock()
    _modules: dict[tuple[int, str], Any] = {}

    def __init__(self, cupy, device_id: int) -> None:
        self.xp = cupy
        self.cupy = cupy
        self.device_id = int(device_id)
        self.emulated = False
        with cupy.cuda.Device(self.device_id):
            props = cupy.cuda.runtime.getDeviceProperties(self.device_id)
        name = props.get("name", b"")
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.sm_count = int(props.get("multiProcessorCount", 0)) or 1
        self.cc = (int(props.get("major", 0)), int(props.get("minor", 0)))

    def module(self, name: str):
        key = (self.device_id, name)
        with self._lock:
            mod = self._modules.get(key)
            if mod is None:
                with self.cupy.cuda.Device(self.device_id):
                    mod = self.cupy.RawModule(code=kernel_source(name), options=("--std=c++17",))
                    mod.compile()
                self._modules[key] = mod
            return mod

    @functools.lru_cache(maxsize=None)  # noqa: B019  (devices live for the process)
    def kernel(self, module: str, name: str):
        fn = self.module(module).get_function(name)

        opted = [48 * 1024]

        def launch(grid: int, block: int, args: tuple, shared_mem: int = 0) -> None:
            if shared_mem > opted[0]:  # opt in to more than 48 KiB of dynamic shared memory
                fn.max_dynamic_shared_size_bytes = int(shared_mem)
                opted[0] = int(shared_mem)
            fn((int(grid),), (int(block),), args, shared_mem=int(shared_mem))

        return launch

    def is_device_array(self, a) -> bool:
        return isinstance(a, self.cupy.ndarray)

    def to_numpy(self, a) -> np.ndarray:
        if isinstance(a, self.cupy.ndarray):
            return self.cupy.asnumpy(a)
        return np.asarray(a)

    def synchronize(self) -> None:
        self.cupy.cuda.Device(self.device_id).synchronize()


# ------------------------------------------------------------------------------ helpers ---
def _u64(values) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=_U64)


def _norm_idx(idx, nmods: int, name: str = "idx") -> tuple[int, ...]:
    try:
        t = tuple(int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx))
    except (TypeError, ValueError) as e:
        raise ShapeError(f"{name} must be a sequence of ints") from e
    for k, i in enumerate(t):
        if not 0 <= i < nmods:
            raise ShapeError(f"{name}[{k}]={i} out of range [0, {nmods})")
    return t


def ntt_plan(logN: int) -> list[tuple[int, int, int, int]]:
    """Forward passes (bit_lo, cnt, logC, logG) for N = 2^logN (the inverse runs them reversed).

    N <= 2^12: one pass over the whole row. Otherwise two: the high bits first (tiles of
    2^logC consecutive columns), then the low bits (tiles of 2^logG consecutive groups)."""
    if logN <= _TILE_LOG:
        return [(0, logN, 0, 0)]
    if logN > 2 * _TILE_LOG:
        raise BackendError(f"NTT of N = 2^{logN} not supported on the GPU (max 2^{2 * _TILE_LOG})", backend="cuda")
    cnt_b = logN // 2
    cnt_a = logN - cnt_b
    a = (cnt_b, cnt_a, min(_TILE_LOG - cnt_a, cnt_b), 0)
    b = (0, cnt_b, 0, min(_TILE_LOG - cnt_b, cnt_a))
    return [a, b]


# ------------------------------------------------------------------------------ context ---
class CudaRingContext:
    """:class:`wavis.backend.protocol.RingContext` on device arrays (see the module docstring).

    Fused kernels: :meth:`ks_inner` (inner product with the key, automorphism fused),
    :meth:`mod_down_ntt`; :meth:`ks_mod_up`, :meth:`key_switch_ext` and the ``*_batch`` variants
    delegate to :mod:`wavis.backend.reference` on the device kernels. Extra: :meth:`synchronize`.
    """

    def __init__(self, device, N: int, moduli: Sequence[int]) -> None:
        from .cpu import CpuBackend

        self._dev = device
        self.xp = device.xp
        self.N = int(N)
        self.moduli = tuple(int(q) for q in moduli)
        # The CPU context validates N and the primes and derives every constant (the oracle's).
        try:
            self._cpu = CpuBackend().ring_context(self.N, self.moduli)
        except ValueError as e:
            raise BackendError(str(e), backend="cuda") from e
        self.logN = self.N.bit_length() - 1
        self._plan = ntt_plan(self.logN)
        P, N, xp = len(self.moduli), self.N, self.xp
        tw = np.empty((4, P, N), dtype=_U64)
        sc = {k: [] for k in ("n_inv", "n_inv_shoup", "wn_inv", "wn_inv_shoup", "barrett_hi", "barrett_lo")}
        for i in range(P):
            t = self._cpu.twiddles(i)
            tw[0, i], tw[1, i] = t["psi_rev"], t["psi_rev_shoup"]
            tw[2, i], tw[3, i] = t["ipsi_rev"], t["ipsi_rev_shoup"]
            for k, v in sc.items():
                v.append(int(t[k]))
        self._tw = xp.asarray(tw)
        self._ninv, self._ninvp = xp.asarray(_u64(sc["n_inv"])), xp.asarray(_u64(sc["n_inv_shoup"]))
        self._wl, self._wlp = xp.asarray(_u64(sc["wn_inv"])), xp.asarray(_u64(sc["wn_inv_shoup"]))
        self._mods = xp.asarray(_u64(self.moduli))
        self._rhi = xp.asarray(_u64(sc["barrett_hi"]))
        self._rlo = xp.asarray(_u64(sc["barrett_lo"]))
        self._lock = threading.Lock()
        self._cache: dict[Any, Any] = {}

    # -- small caches -------------------------------------------------------------------------
    def _cached(self, key, make):
        with self._lock:
            v = self._cache.get(key)
        if v is None:
            v = make()
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = v
        return v

    def _mod_down_constants(self, iq: tuple[int, ...], ip: tuple[int, ...]) -> dict:
        """The core's ModDown constants of P = ∏ ip onto iq (``RnsContext.mod_down_constants``),
        uploaded once: half_p, p_mod, p_inv, p_inv_shoup (per iq), p_recip (per ip)."""
        def make():
            t = self._cpu.mod_down_constants(list(iq), list(ip))
            return {k: self.xp.asarray(v) for k, v in t.items()}

        return self._cached(("moddown", iq, ip), make)

    def _primes(self, idx: tuple[int, ...]):
        return self._cached(("rows", idx), lambda: self.xp.asarray(np.array(idx, dtype=np.int32)))

    def _k(self, module: str, name: str):
        return self._dev.kernel(module, name)

    def _grid(self, total: int) -> int:
        return max(1, min((total + _EW_BLOCK - 1) // _EW_BLOCK, 1 << 20))

    # -- memory -------------------------------------------------------------------------------
    def asarray(self, a):
        """Device (CuPy) C-contiguous uint64 copy of ``a`` (no copy if it already is one)."""
        xp = self.xp
        if self._dev.is_device_array(a):
            return xp.ascontiguousarray(a, dtype=_U64) if (a.dtype != _U64 or not a.flags.c_contiguous) else a
        return xp.asarray(np.ascontiguousarray(a, dtype=_U64))

    def to_numpy(self, a) -> np.ndarray:
        return np.ascontiguousarray(self._dev.to_numpy(a), dtype=_U64)

    def zeros(self, limbs: int, batch: int | None = None):
        shape = (int(limbs), self.N) if batch is None else (int(batch), int(limbs), self.N)
        return self.xp.zeros(shape, dtype=_U64)

    def empty(self, limbs: int, batch: int | None = None):
        shape = (int(limbs), self.N) if batch is None else (int(batch), int(limbs), self.N)
        return self.xp.empty(shape, dtype=_U64)

    def synchronize(self) -> None:
        self._dev.synchronize()

    # -- operand handling ---------------------------------------------------------------------------
    def _check(self, a, name: str, L: int, allow3: bool = True) -> None:
        shp = tuple(a.shape)
        if len(shp) not in ((2, 3) if allow3 else (2,)):
            raise ShapeError(f"{name} must be {'2-D or 3-D' if allow3 else '2-D'} (limbs, N), got shape {shp}")
        if shp[-1] != self.N:
            raise ShapeError(f"{name}: last dimension must be N={self.N}, got {shp[-1]}")
        if shp[-2] != L:
            raise ShapeError(f"{name} has {shp[-2]} limbs, expected {L}")

    def _in(self, a, name: str, L: int, allow3: bool = True):
        if not hasattr(a, "shape"):
            raise ShapeError(f"{name} must be an array of uint64")
        if not self._dev.is_device_array(a) or a.dtype != _U64 or not a.flags.c_contiguous:
            if np.dtype(a.dtype) != _U64:
                raise ShapeError(f"{name} must have dtype uint64, got {a.dtype}")
            a = self.asarray(a)
        self._check(a, name, L, allow3)
        return a

    def _out(self, out, L: int, allow3: bool = True):
        """(device buffer to write, write-back target or None)."""
        if not hasattr(out, "shape") or np.dtype(out.dtype) != _U64:
            raise ShapeError("out must be a uint64 array")
        self._check(out, "out", L, allow3)
        if self._dev.is_device_array(out) and out.flags.c_contiguous:
            return out, None
        return self.xp.empty(out.shape, dtype=_U64), out

    def _writeback(self, buf, target) -> None:
        if target is None:
            return
        if self._dev.is_device_array(target):
            target[...] = buf
        else:
            target[...] = self._dev.to_numpy(buf)

    # -- transforms -------------------------------------------------------------------------
    def _ntt_rows(self, a, idx: tuple[int, ...], inverse: bool) -> None:
        """In-place (I)NTT of the contiguous device array ``a`` (rows = a.size / N)."""
        rows = a.size // self.N
        if rows == 0:
            return
        L = len(idx)
        rp = self._primes(idx)
        plan = list(reversed(self._plan)) if inverse else self._plan
        for n_pass, (bit_lo, cnt, logC, logG) in enumerate(plan):
            E = 1 << (logG + cnt + logC)
            grid = rows * (self.N // E)
            block = max(1, min(512, E // 2))
            if inverse:
                args = (a, rp, np.int32(L), self._mods, self._tw[2], self._tw[3], self._ninv, self._ninvp,
                        self._wl, self._wlp, np.int32(self.logN), np.int32(bit_lo), np.int32(cnt),
                        np.int32(logC), np.int32(logG))
                self._k("ntt", "ntt_inv_pass")(grid, block, args, E * 8)
            else:
                last = n_pass == len(plan) - 1
                args = (a, rp, np.int32(L), self._mods, self._tw[0], self._tw[1], np.int32(self.logN),
                        np.int32(bit_lo), np.int32(cnt), np.int32(logC), np.int32(logG), np.int32(last))
                self._k("ntt", "ntt_fwd_pass")(grid, block, args, E * 8)

    def _transform(self, a, idx, inverse: bool) -> None:
        ix = _norm_idx(idx, len(self.moduli))
        if not hasattr(a, "shape") or np.dtype(a.dtype) != _U64:
            raise ShapeError("a must be a uint64 array")
        self._check(a, "a", len(ix))
        if self._dev.is_device_array(a) and a.flags.c_contiguous:
            self._ntt_rows(a, ix, inverse)
            return
        buf = self.asarray(a).copy() if self._dev.is_device_array(a) else self.asarray(a)
        self._ntt_rows(buf, ix, inverse)
        self._writeback(buf, a)

    def ntt(self, a, idx) -> None:
        """Forward negacyclic NTT of every row in place (bit-reversed output, as the CPU)."""
        self._transform(a, idx, False)

    def intt(self, a, idx) -> None:
        """Inverse NTT (includes N^-1), in place."""
        self._transform(a, idx, True)

    # -- element-wise -------------------------------------------------------------------------
    def _ew2(self, kname: str, a, b, out, idx) -> None:
        ix = _norm_idx(idx, len(self.moduli))
        L = len(ix)
        a = self._in(a, "a", L)
        b = self._in(b, "b", L)
        buf, target = self._out(out, L)
        if tuple(a.shape) != tuple(buf.shape):
            raise ShapeError("a and out must have the same shape")
        if tuple(b.shape) != tuple(a.shape) and tuple(b.shape) != (L, self.N):
            raise ShapeError("b must have the shape of a (or (limbs, N) to broadcast over the batch)")
        if kname == "ew_mul_add" and target is not None:
            buf[...] = self.asarray(out)
        total = a.size
        b_rows = b.size // self.N
        args = (a, b, buf, self._primes(ix), np.int32(L), np.int64(b_rows), np.uint64(total),
                np.int32(self.logN), self._mods, self._rhi, self._rlo)
        self._k("rns", kname)(self._grid(total), _EW_BLOCK, args)
        self._writeback(buf, target)

    def add(self, a, b, out, idx) -> None:
        self._ew2("ew_add", a, b, out, idx)

    def sub(self, a, b, out, idx) -> None:
        self._ew2("ew_sub", a, b, out, idx)

    def mul(self, a, b, out, idx) -> None:
        """Pointwise product mod q (Barrett on the 128-bit product)."""
        self._ew2("ew_mul", a, b, out, idx)

    def mul_add(self, a, b, out, idx) -> None:
        """out += a * b mod q."""
        self._ew2("ew_mul_add", a, b, out, idx)

    def neg(self, a, out, idx) -> None:
        ix = _norm_idx(idx, len(self.moduli))
        L = len(ix)
        a = self._in(a, "a", L)
        buf, target = self._out(out, L)
        if tuple(a.shape) != tuple(buf.shape):
            raise ShapeError("a and out must have the same shape")
        args = (a, buf, self._primes(ix), np.int32(L), np.uint64(a.size), np.int32(self.logN), self._mods)
        self._k("rns", "ew_neg")(self._grid(a.size), _EW_BLOCK, args)
        self._writeback(buf, target)

    def mul_scalar(self, a, scalars, out, idx) -> None:
        """out[r] = a[r] * scalars[r] mod q_idx[r] (Shoup; scalars reduced mod their primes)."""
        ix = _norm_idx(idx, len(self.moduli))
        L = len(ix)
        sc = tuple(int(s) for s in scalars)
        if len(sc) != L:
            raise ShapeError(f"scalars has length {len(sc)}, expected {L}")
        for r, (s, i) in enumerate(zip(sc, ix)):
            if not 0 <= s < self.moduli[i]:
                raise ShapeError(f"scalars[{r}] is not reduced mod its prime")
        a = self._in(a, "a", L)
        buf, target = self._out(out, L)
        if tuple(a.shape) != tuple(buf.shape):
            raise ShapeError("a and out must have the same shape")

        def make():
            return (self.xp.asarray(_u64(sc)),
                    self.xp.asarray(self._cpu.shoup(list(sc), list(ix))))

        w, wp = self._cached(("scalar", sc, ix), make)
        args = (a, buf, self._primes(ix), np.int32(L), np.uint64(a.size), np.int32(self.logN), self._mods, w, wp)
        self._k("rns", "ew_mul_scalar")(self._grid(a.size), _EW_BLOCK, args)
        self._writeback(buf, target)

    # -- RNS ----------------------------------------------------------------------------------
    def from_signed(self, coeffs, idx):
        """Signed int64 coefficients (N,) or (batch, N) → (limbs, N) or (batch, limbs, N)."""
        ix = _norm_idx(idx, len(self.moduli))
        if not hasattr(coeffs, "dtype") or np.dtype(coeffs.dtype) != np.int64:
            raise ShapeError("coeffs must be an int64 array")
        if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != self.N:
            raise ShapeError(f"coeffs must have shape (N,) or (batch, N) with N={self.N}")
        src = coeffs if self._dev.is_device_array(coeffs) else self.xp.asarray(np.ascontiguousarray(coeffs))
        src = self.xp.ascontiguousarray(src)
        L = len(ix)
        shape = (L, self.N) if coeffs.ndim == 1 else (coeffs.shape[0], L, self.N)
        out = self.xp.empty(shape, dtype=_U64)
        total = out.size
        if total:
            args = (src, out, self._primes(ix), np.int32(L), np.uint64(total), np.int32(self.logN),
                    self._mods, self._rhi)
            self._k("rns", "from_signed")(self._grid(total), _EW_BLOCK, args)
        return out

    def _bconv_tables(self, ii: tuple[int, ...], io: tuple[int, ...]):
        def make():
            t, xp = self._cpu.bconv_constants(list(ii), list(io)), self.xp
            return (xp.asarray(t["qhat_inv"]), xp.asarray(t["qhat_inv_shoup"]), xp.asarray(t["qhat_mod_p"]),
                    self._primes(ii), self._primes(io))

        return self._cached(("bconv", ii, io), make)

    def _base_convert(self, a, ii: tuple[int, ...], io: tuple[int, ...]):
        w, wp, c, pin, pout = self._bconv_tables(ii, io)
        N, logN = self.N, np.int32(self.logN)
        y = self.xp.empty((len(ii), N), dtype=_U64)
        self._k("rns", "bconv_scale")(self._grid(y.size), _EW_BLOCK,
                                       (a, y, pin, np.int32(len(ii)), np.uint64(y.size), logN, self._mods, w, wp))
        out = self.xp.empty((len(io), N), dtype=_U64)
        if out.size:
            self._k("rns", "bconv_accum")(self._grid(out.size), _EW_BLOCK,
                                           (y, out, pout, np.int32(len(ii)), np.int32(len(io)), logN, self._mods,
                                            self._rhi, self._rlo, c))
        return out

    def base_convert(self, a, idx_in, idx_out):
        """Fast basis conversion (coefficient domain), exactly the CPU's
        sum_i [a_i (Q/q_i)^-1]_{q_i} (Q/q_i) mod p_j."""
        ii = _norm_idx(idx_in, len(self.moduli), "idx_in")
        io = _norm_idx(idx_out, len(self.moduli), "idx_out")
        if not ii:
            raise ShapeError("idx_in must not be empty")
        if len(set(ii)) != len(ii):
            raise ShapeError("idx_in must not repeat a prime")
        a = self._in(a, "a", len(ii), allow3=False)
        return self._base_convert(a, ii, io)

    def _q_p(self, idx_q, idx_p) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Validated (idx_q, idx_p) of a ModDown: non-empty, in range, pairwise distinct."""
        iq = _norm_idx(idx_q, len(self.moduli), "idx_q")
        ip = _norm_idx(idx_p, len(self.moduli), "idx_p")
        if not iq or not ip:
            raise ShapeError("idx_q and idx_p must not be empty")
        if len(set(iq + ip)) != len(iq) + len(ip):
            raise ShapeError("idx_q and idx_p must be distinct primes")
        return iq, ip

    def mod_down(self, a, idx_q, idx_p):
        """ModDown (coefficient domain): a over Q∪P → round(a / P) over Q (as the CPU)."""
        iq, ip = self._q_p(idx_q, idx_p)
        a = self._in(a, "a", len(iq) + len(ip), allow3=False)
        l, k, N, logN = len(iq), len(ip), self.N, np.int32(self.logN)

        t = self._mod_down_constants(iq, ip)
        h, pinv, pinvp = t["half_p"], t["p_inv"], t["p_inv_shoup"]
        ap = self.xp.empty((k, N), dtype=_U64)
        self._k("rns", "moddown_offset")(self._grid(ap.size), _EW_BLOCK,
                                          (a[l:], ap, self._primes(ip), np.int32(k), logN, self._mods))
        conv = self._base_convert(ap, ip, iq)
        self._k("rns", "moddown_final")(self._grid(conv.size), _EW_BLOCK,
                                         (a[:l], conv, conv, self._primes(iq), np.int32(l), logN, self._mods,
                                          h, pinv, pinvp))
        return conv

    def rescale(self, a, idx):
        """NTT domain in/out: round(a / q_last) over idx[:-1]."""
        ix = _norm_idx(idx, len(self.moduli))
        if len(ix) < 2:
            raise ShapeError("rescale needs at least two limbs")
        a = self._in(a, "a", len(ix), allow3=False)
        l, N, logN = len(ix) - 1, self.N, np.int32(self.logN)
        ql = self.moduli[ix[l]]
        half = ql >> 1
        iq = ix[:l]

        t = self._mod_down_constants(iq, ix[l:])
        inv, invp = t["p_inv"], t["p_inv_shoup"]
        x = a[l:].copy()
        self._ntt_rows(x, (ix[l],), True)
        d = self.xp.empty((l, N), dtype=_U64)
        self._k("rns", "rescale_expand")(self._grid(d.size), _EW_BLOCK,
                                          (x, d, self._primes(iq), np.int32(l), logN, self._mods, self._rhi,
                                           np.uint64(ql), np.uint64(half)))
        self._ntt_rows(d, iq, False)
        self._k("rns", "rescale_final")(self._grid(d.size), _EW_BLOCK,
                                         (a[:l], d, d, self._primes(iq), np.int32(l), logN, self._mods, inv, invp))
        return d

    def mod_down_ntt(self, a, idx_q, idx_p):
        """Rounded ModDown in the NTT domain, entirely on the device: ``a`` (lq+lp, N) or
        (batch, lq+lp, N) over ``idx_q + idx_p`` → round(a / P) over ``idx_q``, P = ∏ idx_p.

        Bit-identical to the CPU oracle (:func:`wavis.ckks.keyswitch.mod_down_ntt`, including its
        floating-point estimate of the conversion overshoot, evaluated here by ``moddown_sub``):
        INTT of the P rows, rounding offset, fast basis conversion, overshoot and offset removal,
        NTT, then (a − conv)·P^-1. Hybrid key switching, Han–Ki, CT-RSA 2020 §3; with
        ``idx_p = [q_l] + P`` it is the fused ModDown + rescale of Kim et al. 2021 §3.2.

        Raises:
            ShapeError: bad indices (empty, repeated or overlapping) or a wrong shape/dtype.
        """
        iq, ip = self._q_p(idx_q, idx_p)
        lq, lp = len(iq), len(ip)
        a = self._in(a, "a", lq + lp)
        N, logN, xp = self.N, np.int32(self.logN), self.xp
        three = a.ndim == 3
        a3 = a if three else a.reshape(1, lq + lp, N)

        t = self._mod_down_constants(iq, ip)
        h, pm, inv, invp, pinv_f = t["half_p"], t["p_mod"], t["p_inv"], t["p_inv_shoup"], t["p_recip"]
        w, wp, c, pin, pout = self._bconv_tables(ip, iq)
        out = xp.empty((a3.shape[0], lq, N), dtype=_U64)
        for b in range(a3.shape[0]):
            x = xp.ascontiguousarray(a3[b, lq:]).copy()
            self._ntt_rows(x, ip, True)
            xo = xp.empty((lp, N), dtype=_U64)
            self._k("rns", "moddown_offset")(self._grid(x.size), _EW_BLOCK, (x, xo, pin, np.int32(lp), logN, self._mods))
            y = x  # reused: y_j = (x_j + (p_j - 1)/2)·(P/p_j)^-1 mod p_j
            self._k("rns", "bconv_scale")(self._grid(y.size), _EW_BLOCK,
                                           (xo, y, pin, np.int32(lp), np.uint64(y.size), logN, self._mods, w, wp))
            conv = out[b]
            self._k("rns", "bconv_accum")(self._grid(conv.size), _EW_BLOCK,
                                           (y, conv, pout, np.int32(lp), np.int32(lq), logN, self._mods, self._rhi,
                                            self._rlo, c))
            self._k("rns", "moddown_sub")(self._grid(conv.size), _EW_BLOCK,
                                           (y, conv, pout, np.int32(lq), np.int32(lp), logN, self._mods, pinv_f, h,
                                            pm))
            self._ntt_rows(conv, iq, False)
            head = xp.ascontiguousarray(a3[b, :lq])
            self._k("rns", "rescale_final")(self._grid(conv.size), _EW_BLOCK,
                                             (head, conv, conv, pout, np.int32(lq), logN, self._mods, inv, invp))
        return out if three else out[0]

    def crt_compose(self, a, idx) -> np.ndarray:
        """Exact centred CRT → float64 (N,), on the host (CPU oracle); decryption/decoding only."""
        return self._cpu.crt_compose(self.to_numpy(a), list(_norm_idx(idx, len(self.moduli))))

    def _perm(self, g: int):
        return self._cached(("perm", g), lambda: self.xp.asarray(self._cpu.ntt_perm(int(g))))

    def _scatter_perm(self, g: int):
        """The inverse of ``ntt_perm(g)``: out[inv[j]] = x[j] is out[k] = x[perm[k]] (a scatter)."""
        def make():
            perm = np.asarray(self._cpu.ntt_perm(int(g)), dtype=np.int64)
            inv = np.empty(perm.shape, dtype=np.uint32)
            inv[perm] = np.arange(perm.size, dtype=np.uint32)
            return self.xp.asarray(inv)

        return self._cached(("scatter_perm", g), make)

    def automorphism(self, a, galois_elt: int, idx, ntt_domain: bool):
        """X -> X^g on every row; returns a new array (NTT domain: a permutation of the
        bit-reversed evaluation points; coefficient domain: with the negacyclic sign)."""
        ix = _norm_idx(idx, len(self.moduli))
        a = self._in(a, "a", len(ix))
        twoN = 2 * self.N
        g = int(galois_elt) % twoN
        if g % 2 == 0:
            raise ShapeError(f"galois_elt must be odd, got {galois_elt}")
        out = self.xp.empty(a.shape, dtype=_U64)
        if a.size == 0:
            return out
        if ntt_domain:
            args = (a, out, self._perm(g), np.uint64(a.size), np.int32(self.logN))
            self._k("rns", "automorph_ntt")(self._grid(a.size), _EW_BLOCK, args)
        else:
            args = (a, out, self._primes(ix), np.int32(len(ix)), np.uint64(a.size), np.int32(self.logN),
                    self._mods, np.uint64(g))
            self._k("rns", "automorph_coeff")(self._grid(a.size), _EW_BLOCK, args)
        return out

    # -- key switching ---------------------------------------------------------------------------
    def ks_mod_up(self, a, idx_q, idx_p, digits):
        """ModUp of every digit (protocol :meth:`~wavis.backend.protocol.RingOps.ks_mod_up`) by the
        reference composition on the device (INTT, ``base_convert``, NTT kernels per digit)."""
        return reference.ks_mod_up(self, self.asarray(a), idx_q, idx_p, digits)

    def ks_inner(self, exts, key, idx_q, idx_p, galois_elt: int = 1, add=None):
        """Fused key-switching inner product (kernel ``ks_inner_keyed``): (2, R, N) with
        ``acc[c] = aut_g(Σ_d exts[d] ⊙ key[d, c, idx_q + idx_p] (+ P·add[c] on the idx_q rows))``
        (a Galois key in its pre-permuted evaluation form, protocol "Rotations").

        The automorphism is a permutation fused into the writes (a scatter by aut_g^{-1}); ``exts``
        and the key are read in order; the key's rows are read
        in place from the full-prime layout ``(≥D, 2, len(moduli), N)``, so a key kept resident on
        the device (:meth:`wavis.ckks.CkksContext.put_key`) is never copied. Bit-identical to the CPU
        oracle (128-bit accumulation, Barrett reduction). Raises ShapeError for bad shapes/indices."""
        iq, ip = self._q_p(idx_q, idx_p)
        full = iq + ip
        R, lq, N = len(full), len(iq), self.N
        exts = self._in(exts, "exts", R)
        if exts.ndim != 3:
            raise ShapeError(f"exts must be 3-D (digits, {R}, {N})")
        D = int(exts.shape[0])
        key = self.asarray(key)
        if key.ndim != 4 or key.shape[0] < D or tuple(key.shape[1:]) != (2, len(self.moduli), N):
            raise ShapeError(f"key must be (>= {D}, 2, {len(self.moduli)}, {N}), got {tuple(key.shape)}")
        g = int(galois_elt) % (2 * N)
        if g % 2 == 0:
            raise ShapeError(f"galois_elt must be odd, got {galois_elt}")
        pre = self.xp.zeros((2, R, N), dtype=_U64)
        if add is not None:
            add = self._in(add, "add", lq)
            if add.ndim != 3 or add.shape[0] not in (1, 2):
                raise ShapeError(f"add must be (1 or 2, {lq}, {N})")
            pm = [int(v) for v in self._cpu.mod_down_constants(list(iq), list(ip))["p_mod"]]
            for c in range(int(add.shape[0])):
                self.mul_scalar(add[c], pm, pre[c, :lq], iq)
        if not (D and R):
            return pre if g == 1 else self.automorphism(pre, g, full, True)
        acc = pre if g == 1 else self.xp.empty((2, R, N), dtype=_U64)  # a scatter must not overwrite pre
        args = (exts, key, pre, acc, self._primes(full), self._scatter_perm(g), np.int32(R), np.int32(D),
                np.int32(len(self.moduli)), np.int32(self.logN), self._mods, self._rhi, self._rlo, np.int32(1))
        self._k("rns", "ks_inner_keyed")(self._grid(R * N), _EW_BLOCK, args)
        return acc

    def key_switch_ext(self, a, key, idx_q, idx_p, digits, add=None, galois_elt: int = 1):
        """:meth:`ks_inner` of :meth:`ks_mod_up` (the digits are stored on the device)."""
        return self.ks_inner(self.ks_mod_up(a, idx_q, idx_p, digits), key, idx_q, idx_p, galois_elt, add)

    def diag_mac(self, rots, pts, sel, counts, idx, repeat: int = 1):
        """Plaintext-diagonal inner sums of a double-hoisted linear transform (protocol
        :meth:`~wavis.backend.protocol.RingOps.diag_mac`): the reference composition on the device
        (``mul_add`` kernels, one per term; the plaintexts repeated with CuPy)."""
        return reference.diag_mac(self, self.asarray(rots), self.asarray(pts), sel, counts, idx, repeat)

    # -- batched variants: loops over the kernels above (wavis.backend.reference) -------------------
    def automorphism_batch(self, a, galois_elts, idx, ntt_domain: bool):
        return reference.automorphism_batch(self, a, galois_elts, idx, ntt_domain)

    def rescale_batch(self, a, idx):
        return reference.rescale_batch(self, a, idx)

    def ks_mod_up_batch(self, a, idx_q, idx_p, digits):
        return reference.ks_mod_up_batch(self, a, idx_q, idx_p, digits)

    def ks_inner_batch(self, exts, key, idx_q, idx_p, galois_elts, add=None):
        return reference.ks_inner_batch(self, exts, key, idx_q, idx_p, galois_elts, add)

    def key_switch_ext_batch(self, a, key, idx_q, idx_p, digits, add=None, galois_elt: int = 1):
        return reference.key_switch_ext_batch(self, a, key, idx_q, idx_p, digits, add, galois_elt)

    def __repr__(self) -> str:
        return f"CudaRingContext(N={self.N}, limbs={len(self.moduli)}, device={getattr(self._dev, 'name', '?')})"


# ------------------------------------------------------------------------------ backend ---
class DeviceBackend:
    """What the CUDA backend and its CPU emulation share: per-device caches of
    :class:`CudaRingContext` (tables uploaded once per (N, moduli)) and
    :class:`wavis.backend.cuda_tfhe.CudaLwe` (per TFHE parameter set), and the host helpers
    (CSPRNG, prime search), delegated explicitly to the CPU backend (they run on the host)."""

    name = "cuda"

    def __init__(self, device) -> None:
        self._dev = device
        self._contexts: dict[tuple[int, tuple[int, ...]], CudaRingContext] = {}
        self._lwes: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def device(self):
        return self._dev

    def _cached(self, table: dict, key, make):
        with self._lock:
            v = table.get(key)
        if v is None:
            v = make()
            with self._lock:
                v = table.setdefault(key, v)
        return v

    def ring_context(self, N: int, moduli: Sequence[int]) -> CudaRingContext:
        """A cached :class:`CudaRingContext` (tables uploaded once per (N, moduli))."""
        key = (int(N), tuple(int(q) for q in moduli))
        return self._cached(self._contexts, key, lambda: CudaRingContext(self._dev, *key))

    def lwe(self, params):
        """A cached :class:`wavis.backend.cuda_tfhe.CudaLwe` for a TFHE parameter set."""
        from .cuda_tfhe import CudaLwe

        return self._cached(self._lwes, params, lambda: CudaLwe(self._dev, params))

    def prng(self, seed: bytes | None = None, nonce: bytes = bytes(12)):
        """The host ChaCha20 CSPRNG (the CPU backend's)."""
        from .cpu import CpuBackend

        return CpuBackend().prng(seed, nonce)

    def generate_ntt_primes(self, bits: int, count: int, N: int, exclude: Sequence[int] = (),
                            descending: bool = True) -> list[int]:
        """Host prime search (the CPU backend's)."""
        from .cpu import CpuBackend

        return CpuBackend().generate_ntt_primes(bits, count, N, exclude, descending)

    def is_prime(self, q: int) -> bool:
        """Host primality test (the CPU backend's)."""
        from .cpu import CpuBackend

        return CpuBackend().is_prime(q)

    def synchronize(self) -> None:
        self._dev.synchronize()

    def info(self):
        """The device's name (``cpu-emulation`` for the emulation), and the host's SIMD path and
        threads (the CPU backend's: host-side work runs there)."""
        from .cpu import CpuBackend
        from .protocol import BackendInfo

        host = CpuBackend().info()
        return BackendInfo(name=self.name, kind="cuda", device_name=str(self._dev.name),
                           gpu=not self._dev.emulated, simd_path=host.simd_path,
                           threads=host.threads)


class CudaBackend(DeviceBackend):
    """The CUDA backend (``wavis.backend.get("cuda")``). Raises :class:`BackendError` when CuPy
    is not installed or no CUDA device is usable."""

    name = "cuda"

    def __init__(self, device_id: int | None = None) -> None:
        try:
            import cupy  # noqa: PLC0415  (the only CuPy import of the package)
        except Exception as e:  # ImportError, or CUDA libraries missing at import
            raise BackendError(f"CUDA backend unavailable: CuPy cannot be imported ({e})", backend="cuda") from e
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            raise BackendError(f"CUDA backend unavailable: {e}", backend="cuda") from e
        if count < 1:
            raise BackendError("CUDA backend unavailable: no CUDA device", backend="cuda")
        if device_id is None:
            device_id = int(os.environ.get("WAVIS_CUDA_DEVICE", "0"))
        if not 0 <= device_id < count:
            raise BackendError(f"CUDA device {device_id} does not exist ({count} present)", backend="cuda")
        try:
            dev = _CupyDevice(cupy, device_id)
        except Exception as e:
            raise BackendError(f"CUDA backend unavailable: {e}", backend="cuda") from e
        super().__init__(dev)

    def __repr__(self) -> str:
        return f"CudaBackend(device={self._dev.device_id}: {self._dev.name}, sm_{self._dev.cc[0]}{self._dev.cc[1]})"
