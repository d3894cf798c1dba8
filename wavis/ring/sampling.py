"""Samplers over the host ChaCha20 CSPRNG (``wavis.backend.host().prng``, RFC 8439 keystream).

Seeded from the OS (``secrets.token_bytes(32)``) unless a 32-byte seed is given for
reproducible tests. Distributions: uniform mod each prime (rejection sampling), uniform
ternary, and the rounded Gaussian with σ = 3.2 clipped at 6σ (as SEAL/OpenFHE).
Samples are produced on the host (NumPy) and moved to the device by the caller.
"""

from __future__ import annotations

import secrets
from typing import Sequence

import numpy as np

from ..errors import ParameterError

SIGMA = 3.2


class Sampler:
    """Distribution samplers over one CSPRNG stream.

    Args:
        seed: exactly 32 bytes (tests only) or None for OS randomness.

    Raises:
        ParameterError: a seed of another length/type.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        from ..backend import host

        if seed is None:
            seed = secrets.token_bytes(32)
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise ParameterError("seed must be exactly 32 bytes")
        self._prng = host().prng(bytes(seed))

    def ternary(self, n: int) -> np.ndarray:
        """(n,) int64 uniform in {−1, 0, 1}."""
        return np.asarray(self._prng.ternary(n), dtype=np.int64)

    def sparse_ternary(self, n: int, hamming_weight: int) -> np.ndarray:
        """(n,) int64 in {−1, 0, 1} with exactly ``hamming_weight`` non-zero entries: uniform
        positions (a partial Fisher–Yates shuffle driven by the CSPRNG) and uniform signs.
        Raises ParameterError unless 1 ≤ hamming_weight ≤ n."""
        if not 1 <= hamming_weight <= n:
            raise ParameterError(f"hamming_weight must be in 1..{n}, got {hamming_weight}")
        perm = np.arange(n)
        for i in range(hamming_weight):
            j = i + int(self._prng.uniform_below(1, n - i)[0])
            perm[i], perm[j] = perm[j], perm[i]
        signs = np.frombuffer(self.random_bytes(hamming_weight), dtype=np.uint8) & 1
        out = np.zeros(n, dtype=np.int64)
        out[perm[:hamming_weight]] = 1 - 2 * signs.astype(np.int64)
        return out

    def gaussian(self, n: int, sigma: float = SIGMA) -> np.ndarray:
        """(n,) int64 rounded Gaussian, standard deviation ``sigma``, clipped at 6σ."""
        return np.asarray(self._prng.gaussian(n, sigma), dtype=np.int64)

    def uniform(self, moduli: Sequence[int], idx: Sequence[int], n: int) -> np.ndarray:
        """(len(idx), n) uint64, row r uniform in [0, moduli[idx[r]])."""
        out = np.empty((len(idx), n), dtype=np.uint64)
        for r, i in enumerate(idx):
            out[r] = self._prng.uniform_below(n, int(moduli[i]))
        return out

    def random_bytes(self, n: int) -> bytes:
        return bytes(self._prng.random_bytes(n))


def expand_uniform(seed: bytes, moduli: Sequence[int], n: int, count: int = 1) -> np.ndarray:
    """(count, len(moduli), n) uint64 residues, uniform mod each prime, expanded from a 32-byte
    seed with ChaCha20 (rejection sampling, rows in order). Keys store this seed instead of
    their uniform component, which halves their size on the wire (as SEAL does); the
    expansion is deterministic so client and server derive the same values.

    Raises: ParameterError for a seed that is not 32 bytes.
    """
    from ..backend import host

    if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
        raise ParameterError("seed must be exactly 32 bytes")
    prng = host().prng(bytes(seed))
    out = np.empty((count, len(moduli), n), dtype=np.uint64)
    for c in range(count):
        for r, q in enumerate(moduli):
            out[c, r] = prng.uniform_below(n, int(q))
    return out
