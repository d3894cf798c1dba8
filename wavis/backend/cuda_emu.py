"""CPU emulation of the CUDA kernels, for tests without a GPU (not a production backend).

The very same ``kernels/*.cu`` sources are compiled as C++ (g++) with a small shim that
defines the CUDA built-ins (``threadIdx``/``blockIdx``/``blockDim``/``gridDim`` as globals,
``__umul64hi`` through ``unsigned __int128``, ``__syncthreads`` as a no-op, one static
``sm`` buffer for ``extern __shared__``). Each block runs with ``blockDim.x = 1``: every kernel
is written as ``for (k = threadIdx.x; k < n; k += blockDim.x)`` loops separated by
``__syncthreads()``, so one thread doing all the work of a block between barriers computes
exactly what the block computes on the device. Grid-stride kernels run as one block.

:class:`EmulatedDevice` implements the device interface of :mod:`wavis.backend.cuda`
(``xp = numpy``, ``kernel(module, name)``), so :class:`wavis.backend.cuda.CudaRingContext`
runs unchanged on it: the host logic (table upload, NTT pass plan, launch arguments) and the
kernels are both exercised against the CPU oracle. It says nothing about speed, occupancy,
shared-memory limits or races between threads; those need the device check.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from wavis.errors import BackendError

from .cuda import KERNEL_FILES, CudaRingContext, DeviceBackend, kernel_dir

__all__ = ["EmulatedDevice", "EmulatedBackend", "compiler_available"]

_SHIM = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
struct wavis_dim3 { unsigned x, y, z; };
static wavis_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __syncthreads() ((void)0)
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline double __ll2double_rn(long long x) { return (double)x; }
static inline double __ull2double_rn(unsigned long long x) { return (double)x; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
static inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
using std::floor;
unsigned long long sm[1 << 17];
extern "C" void wavis_emu_set(unsigned bx, unsigned gx) {
  blockIdx.x = bx; gridDim.x = gx; threadIdx.x = 0; blockDim.x = 1;
}
"""

# kernels that are not grid-stride loops (their blocks are distinct tiles)
_BLOCK_KERNELS = {"ntt_fwd_pass", "ntt_inv_pass"}
_BLOCK_KERNEL_PREFIXES = ("tfhe_",)


def compiler_available() -> bool:
    return shutil.which(os.environ.get("CXX", "g++")) is not None


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
    d = kernel_dir()
    files = [f for f in KERNEL_FILES if (d / f"{f}.cu").is_file()]
    src = _SHIM + "".join(f'#include "{d / f}.cu"\n' for f in files)
    h = hashlib.sha256(src.encode())
    for f in files + ["modarith.cuh"]:
        h.update((d / (f if f.endswith(".cuh") else f + ".cu")).read_bytes())
    cache = Path(os.environ.get("WAVIS_EMU_CACHE", Path(tempfile.gettempdir()) / "wavis-cuda-emu"))
    cache.mkdir(parents=True, exist_ok=True)
    so = cache / f"kernels-{h.hexdigest()[:16]}.so"
    if not so.exists():
        cpp = cache / f"kernels-{h.hexdigest()[:16]}.cpp"
        cpp.write_text(src)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        cxx = os.environ.get("CXX", "g++")
        cmd = [cxx, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-w", "-x", "c++", str(cpp), "-I", str(d), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BackendError(f"emulated kernel build failed:\n{r.stderr[-4000:]}", backend="cuda-emu")
        os.replace(tmp, so)
    return ctypes.CDLL(str(so))


def _carg(v):
    if isinstance(v, np.ndarray):
        if not v.flags.c_contiguous:
            raise BackendError("emulated kernel argument is not contiguous", backend="cuda-emu")
        return ctypes.c_void_p(v.ctypes.data)
    if isinstance(v, np.int32):
        return ctypes.c_int32(int(v))
    if isinstance(v, np.uint32):
        return ctypes.c_uint32(int(v))
    if isinstance(v, np.int64):
        return ctypes.c_int64(int(v))
    if isinstance(v, np.uint64):
        return ctypes.c_uint64(int(v))
    if isinstance(v, np.float64):
        return ctypes.c_double(float(v))
    raise BackendError(f"emulated kernel argument of unsupported type {type(v).__name__}", backend="cuda-emu")


class EmulatedDevice:
    """The device interface of :mod:`wavis.backend.cuda` on the CPU (NumPy arrays)."""

    xp = np
    emulated = True
    device_id = -1
    name = "cpu-emulation"
    sm_count = 1
    cc = (0, 0)

    def __init__(self) -> None:
        self._lib = _library()
        self._lock = threading.Lock()  # the shim's block/grid globals are process-wide

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def kernel(self, module: str, name: str):
        fn = getattr(self._lib, name)
        fn.restype = None
        blocky = name in _BLOCK_KERNELS or name.startswith(_BLOCK_KERNEL_PREFIXES)

        def launch(grid: int, block: int, args: tuple, shared_mem: int = 0) -> None:
            if shared_mem > 8 * (1 << 17):
                raise BackendError("emulated shared memory too small", backend="cuda-emu")
            cargs = [_carg(a) for a in args]
            with self._lock:
                if blocky:
                    for b in range(int(grid)):
                        self._lib.wavis_emu_set(ctypes.c_uint(b), ctypes.c_uint(int(grid)))
                        fn(*cargs)
                else:
                    self._lib.wavis_emu_set(ctypes.c_uint(0), ctypes.c_uint(1))
                    fn(*cargs)

        return launch

    def is_device_array(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        pass


class EmulatedBackend(DeviceBackend):
    """A Backend whose contexts are :class:`CudaRingContext` / :class:`~wavis.backend.cuda_tfhe.CudaLwe`
    on :class:`EmulatedDevice` (the kernels compiled for the CPU)."""

    name = "cuda-emu"

    def __init__(self) -> None:
        super().__init__(EmulatedDevice())

    def __repr__(self) -> str:
        return "EmulatedBackend(cpu-emulation)"
