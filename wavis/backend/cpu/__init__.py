"""CPU backend: the C++ core ``wavis._core`` (pybind11), the bit-exact oracle for other backends.

This package is the only importer of ``wavis._core`` (tests/test_backend_conformance.py checks it):

* :class:`CpuBackend` — ``name = "cpu"``; :meth:`CpuBackend.ring_context` returns a cached
  :class:`~wavis.backend.cpu.ring.CpuRingContext` (:class:`wavis.backend.protocol.RingOps` on
  NumPy ``uint64`` arrays), :meth:`CpuBackend.lwe` a cached
  :class:`~wavis.backend.cpu.lwe.CpuLwe` (:class:`wavis.backend.protocol.LweOps`).
* :class:`Prng` — ChaCha20 (RFC 8439) CSPRNG with the samplers (uniform mod q, ternary,
  fixed-Hamming-weight ternary, rounded Gaussian σ = 3.2); seeded from the OS unless a 32-byte
  seed is given. The one ChaCha20 of the host: every backend's ``prng`` is this one.
* :func:`generate_ntt_primes`, :func:`is_prime`, :func:`minimal_primitive_root` (number theory).
* :func:`pack_bits`, :func:`unpack_bits` — the wire format's fixed-width bit packing.
* :func:`simd_path`, :func:`simd_paths` — the SIMD path the core runs and those this CPU has;
  :func:`mulmod_rate` — that path's modular-multiply throughput (the benchmark harness's bound).

Heavy calls release the GIL and use ``WAVIS_THREADS`` threads (default: all cores; 1 = off).
Errors: ``ValueError`` (:class:`wavis.errors.ShapeError` for array/idx problems) — never a crash.
"""

from __future__ import annotations

import functools
import platform
import secrets
from typing import Any, Sequence

from wavis import _core
from wavis._core import generate_ntt_primes, is_prime, minimal_primitive_root, pack_bits, unpack_bits

from ..protocol import BackendInfo
from .lwe import CpuLwe
from .ring import CpuRingContext

__all__ = [
    "CpuBackend",
    "CpuLwe",
    "CpuRingContext",
    "Prng",
    "RnsContext",
    "generate_ntt_primes",
    "is_prime",
    "minimal_primitive_root",
    "pack_bits",
    "unpack_bits",
    "simd_path",
    "thread_count",
    "simd_paths",
    "mulmod_rate",
]

#: the C++ class (tests and the CUDA backend's table source use it directly)
RnsContext = _core.RnsContext
thread_count = _core.thread_count
simd_path = _core.simd_path  # the SIMD path the core dispatches to (include/wavis/simd.hpp)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` or the machine elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


#: the paths this CPU can run, portable first
simd_paths = _core.simd_paths
#: mulmod_rate(path, q, iters) -> modular multiplies per CPU second of path's NTT multiply (one
#: thread, in registers; 'ifma' needs q < 2^50); ValueError for a path the CPU lacks
mulmod_rate = _core._mulmod_rate


class Prng(_core.Prng):
    """ChaCha20 (RFC 8439) keystream PRNG. ``seed``: exactly 32 bytes, or ``None`` (default) for
    ``secrets.token_bytes(32)`` from the OS. ``nonce``: 12 bytes (default zero). Fixed seeds are
    for tests and reproducible experiments only.

    Methods (all return new NumPy arrays): ``random_bytes(n) -> bytes``;
    ``uniform_u64(n) -> uint64 (n,)``; ``uniform_below(n, bound) -> uint64 (n,)``;
    ``uniform_mod(ctx, idx) -> uint64 (len(idx), N)``; ``ternary(N) -> int64 (N,)``;
    ``ternary_hw(N, h) -> int64 (N,)``; ``gaussian(N, sigma=3.2) -> int64 (N,)`` (rounded
    Box–Muller Gaussian truncated at 6σ).
    """

    def __init__(self, seed: bytes | None = None, nonce: bytes = bytes(12)) -> None:
        if seed is None:
            seed = secrets.token_bytes(32)
        super().__init__(bytes(seed), bytes(nonce))


@functools.lru_cache(maxsize=64)
def _context(N: int, moduli: tuple[int, ...]) -> CpuRingContext:
    return CpuRingContext(N, list(moduli))


@functools.lru_cache(maxsize=16)
def _lwe(params: Any) -> CpuLwe:
    return CpuLwe(params)


class CpuBackend:
    """The CPU backend (:class:`wavis.backend.protocol.Backend`)."""

    name = "cpu"
    device = "cpu"

    def ring_context(self, N: int, moduli: Sequence[int]) -> CpuRingContext:
        """A cached :class:`CpuRingContext` for ring degree ``N`` (power of two) and distinct
        primes ``moduli`` (each ≡ 1 mod 2N, < 2^62). Raises ``ValueError`` otherwise."""
        return _context(int(N), tuple(int(q) for q in moduli))

    def lwe(self, params: Any) -> CpuLwe:
        """A cached :class:`CpuLwe` for a :class:`wavis.tfhe.TfheParameters`."""
        return _lwe(params)

    def prng(self, seed: bytes | None = None, nonce: bytes = bytes(12)) -> Prng:
        """A new :class:`Prng` (OS-seeded when ``seed`` is None)."""
        return Prng(seed, nonce)

    def generate_ntt_primes(self, bits: int, count: int, N: int, exclude: Sequence[int] = (),
                            descending: bool = True) -> list[int]:
        """``count`` primes q ≡ 1 (mod 2N) of exactly ``bits`` bits (20..61), none in ``exclude``;
        largest first (``descending``). Raises ``ValueError``."""
        return generate_ntt_primes(int(bits), int(count), int(N), [int(q) for q in exclude], bool(descending))

    def is_prime(self, q: int) -> bool:
        """Deterministic Miller–Rabin (bases 2..37) for q < 2^64."""
        return bool(is_prime(int(q)))

    def synchronize(self) -> None:
        """Nothing to wait for: every CPU call returns when its work is done."""

    def info(self) -> BackendInfo:
        """This CPU (model name), the core's SIMD path and thread count."""
        return BackendInfo(name=self.name, kind="cpu", device_name=cpu_model(), gpu=False,
                           simd_path=str(_core.simd_path()), threads=int(_core.thread_count()))

    def __repr__(self) -> str:
        return f"CpuBackend(threads={_core.thread_count()})"
