"""Shared helpers of the CUDA tests (imported by tests/test_cuda_*.py; not a pytest conftest).

Two flavours of "device" run the same parity suites against the CPU oracle:

* ``"emu"``  — :class:`wavis.backend.cuda_emu.EmulatedBackend`: the kernels/*.cu sources
  compiled as C++ and run on the CPU through the real :class:`CudaRingContext` host code
  (runs in CI; needs g++);
* ``"cuda"`` — the real CUDA backend, marked ``cuda`` and skipped when no device is present.

``pytest -m cuda tests/test_cuda_*.py`` runs only the device flavour (the device check).
"""

from __future__ import annotations

import functools
import shutil

import numpy as np
import pytest

from wavis.errors import BackendError


@functools.lru_cache(maxsize=None)
def cuda_backend_or_reason():
    """(backend, None) when a CUDA device is usable, else (None, reason)."""
    from wavis.backend import get

    try:
        return get("cuda"), None
    except BackendError as e:
        return None, str(e)


def cuda_available() -> bool:
    return cuda_backend_or_reason()[0] is not None


@functools.lru_cache(maxsize=None)
def emu_backend():
    from wavis.backend.cuda_emu import EmulatedBackend

    return EmulatedBackend()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device (CuPy missing or no GPU)")
requires_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not available for the kernel emulation")

# pytest params for a `dev` fixture: the emulation always, the GPU marked `cuda`
DEVICE_PARAMS = [
    pytest.param("emu", marks=requires_cxx, id="emu"),
    pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda], id="cuda"),
]


def device_backend(kind: str):
    if kind == "cuda":
        be, why = cuda_backend_or_reason()
        if be is None:
            pytest.skip(why)
        return be
    return emu_backend()


def cpu_backend():
    from wavis.backend import get

    return get("cpu")


@functools.lru_cache(maxsize=None)
def primes(bits: int, count: int, N: int) -> tuple[int, ...]:
    from wavis.ring import ntt_primes

    return tuple(ntt_primes(bits, count, max(N, 2)))


def random_rows(rng: np.random.Generator, moduli, idx, N: int, batch: int | None = None) -> np.ndarray:
    shape_b = () if batch is None else (batch,)
    out = np.empty(shape_b + (len(idx), N), dtype=np.uint64)
    for r, i in enumerate(idx):
        q = moduli[i]
        out[..., r, :] = rng.integers(0, q, size=shape_b + (N,), dtype=np.uint64)
    return out
