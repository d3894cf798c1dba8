"""NTT-friendly prime generation (q ≡ 1 mod 2N, primality by deterministic Miller–Rabin)."""

from __future__ import annotations

from functools import lru_cache

from ..errors import ParameterError


@lru_cache(maxsize=256)
def ntt_primes(bits: int, count: int, poly_degree: int, exclude: tuple[int, ...] = ()) -> tuple[int, ...]:
    """``count`` distinct primes of exactly ``bits`` bits with q ≡ 1 (mod 2·poly_degree),
    closest to 2^bits first (so rescaling by them keeps the CKKS scale near 2^bits), none in
    ``exclude``. Deterministic (CPU and GPU, client and server derive the same chain).

    Raises:
        ParameterError: bits outside 20..61 or not enough such primes.
    """
    from ..backend import host

    if not 20 <= bits <= 61:
        raise ParameterError(f"prime size must be 20..61 bits, got {bits}", field="bits")
    if count == 0:
        return ()
    try:
        return tuple(int(q) for q in host().generate_ntt_primes(bits, count, poly_degree, exclude))
    except ValueError as exc:
        raise ParameterError(str(exc), field="bits") from exc
