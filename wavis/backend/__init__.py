"""Compute backends behind one protocol (:mod:`wavis.backend.protocol`: RingOps for CKKS,
LweOps for TFHE, every operation required; :mod:`wavis.backend.reference` holds the generic
compositions a backend delegates to explicitly).

``get(name)`` returns a :class:`~wavis.backend.protocol.Backend`:

* ``"cpu"``  — the C++ core ``wavis._core`` (always available; the bit-exact oracle);
* ``"cuda"`` — CuPy + ``kernels/*.cu`` (:mod:`wavis.backend.cuda`); raises
  :class:`wavis.errors.BackendError` when CuPy or a CUDA device is missing;
* ``"auto"`` (default) — CUDA when ``wavis.backend.cuda`` imports and a device exists, else CPU.

The library never picks a backend by itself: the schemes compute in a context built on an
explicit backend (``CkksContext(params, get("cuda"))``); constructors given only parameters use
the CPU context. The service names its backend in its settings (``WAVIS_BACKEND``).

``host()`` is the CPU backend: the host-side helpers (ChaCha20 CSPRNG, NTT-prime search) that
:mod:`wavis.ring` reaches native code through.

Importing this package never imports CuPy; only ``get("cuda")``/``get("auto")`` try it.
"""

from __future__ import annotations

import functools

from wavis.errors import BackendError

from .protocol import Backend, BackendInfo, LweOps, RingContext, RingOps

__all__ = ["Backend", "BackendInfo", "LweOps", "RingContext", "RingOps", "available", "get", "host"]


@functools.lru_cache(maxsize=None)
def _cpu() -> Backend:
    from .cpu import CpuBackend

    return CpuBackend()


@functools.lru_cache(maxsize=None)
def _cuda() -> Backend:
    try:
        from . import cuda  # noqa: PLC0415  (imports cupy)
    except ImportError as e:  # module missing or CuPy not installed
        raise BackendError(f"CUDA backend unavailable: {e}", backend="cuda") from e
    try:
        backend = cuda.CudaBackend()
    except BackendError:
        raise
    except Exception as e:  # no device, driver errors, ...
        raise BackendError(f"CUDA backend unavailable: {e}", backend="cuda") from e
    return backend


def host() -> Backend:
    """The CPU backend, which owns the host-side native helpers (CSPRNG, prime search)."""
    return _cpu()


def _cuda_available() -> bool:
    try:
        _cuda()
    except BackendError:
        return False
    return True


def available() -> list[str]:
    """Names of the backends usable in this process (``"cpu"`` always; ``"cuda"`` if a device)."""
    return ["cpu"] + (["cuda"] if _cuda_available() else [])


def get(name: str = "auto") -> Backend:
    """The backend ``name`` (``"auto"``, ``"cpu"`` or ``"cuda"``), one instance per process.

    ``"auto"`` prefers CUDA when a device exists. Raises :class:`wavis.errors.BackendError` for an
    unknown name or when ``"cuda"`` is requested without a usable device.
    """
    name = (name or "auto").strip().lower()
    if name == "cpu":
        return _cpu()
    if name == "cuda":
        return _cuda()
    if name == "auto":
        return _cuda() if _cuda_available() else _cpu()
    raise BackendError(f"unknown backend {name!r} (expected 'auto', 'cpu' or 'cuda')", backend=name)
