"""CPU backend: the C++ core ``wavis._core`` (pybind11), the bit-exact oracle for other backends.

* :class:`CpuBackend` — ``name = "cpu"``; :meth:`CpuBackend.ring_context` returns a cached
  :class:`wavis._core.RnsContext` (implements :class:`wavis.backend.protocol.RingContext` on
  NumPy ``uint64`` arrays of shape ``(limbs, N)`` / ``(batch, limbs, N)``).
* :class:`Prng` — ChaCha20 (RFC 8439) CSPRNG with the samplers (uniform mod q, ternary,
  fixed-Hamming-weight ternary, rounded Gaussian σ = 3.2); seeded from the OS unless a 32-byte
  seed is given.
* :func:`generate_ntt_primes`, :func:`is_prime`, :func:`minimal_primitive_root`.

Heavy calls release the GIL and use ``WAVIS_THREADS`` threads (default: all cores; 1 = off).
Errors: ``ValueError`` (:class:`wavis.errors.ShapeError` for array/idx problems) — never a crash.
"""

from __future__ import annotations

import functools
import secrets
from typing import Sequence

from wavis import _core
from wavis._core import RnsContext, generate_ntt_primes, is_prime, minimal_primitive_root

__all__ = [
    "CpuBackend",
    "Prng",
    "RnsContext",
    "generate_ntt_primes",
    "is_prime",
    "minimal_primitive_root",
    "thread_count",
]

thread_count = _core.thread_count


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
def _context(N: int, moduli: tuple[int, ...]) -> RnsContext:
    return RnsContext(N, list(moduli))


class CpuBackend:
    """The CPU backend (``wavis.backend.get("cpu")``)."""

    name = "cpu"

    def ring_context(self, N: int, moduli: Sequence[int]) -> RnsContext:
        """A cached :class:`wavis._core.RnsContext` for ring degree ``N`` (power of two) and
        distinct primes ``moduli`` (each ≡ 1 mod 2N, < 2^62). Raises ``ValueError`` otherwise."""
        return _context(int(N), tuple(int(q) for q in moduli))

    def prng(self, seed: bytes | None = None) -> Prng:
        """A new :class:`Prng` (OS-seeded when ``seed`` is None)."""
        return Prng(seed)

    def __repr__(self) -> str:
        return f"CpuBackend(threads={_core.thread_count()})"
