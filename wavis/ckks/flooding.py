"""Noise flooding for CKKS decryptions that someone else will see (IND-CPA-D).

Why: a CKKS decryption returns m + e, and e is a linear function of the secret key with
coefficients the ciphertext reveals; Li and Micciancio ("On the security of homomorphic
encryption on approximate numbers", EUROCRYPT 2021, §4) recover the key from one ciphertext
and its decoded output. Whoever shares a decoded CKKS result (a server answering a decryption
request, a client publishing a result) must first drown e in fresh noise (as OpenFHE's
``NOISE_FLOODING_DECRYPT`` mode does) and round the output to the precision that is left.

What this module does (``flood_decode``):

1. B, the noise bound: an upper bound on ‖e‖₂, the Euclidean norm of the decryption's error
   polynomial (coefficients, integer units). Either the caller's ``noise_bound`` or, for
   plaintexts that encode *real* values (every ciphertext the service makes: its inputs, plain
   operands and matrices are real and every operation keeps them real), an estimate from the
   decryption itself: the imaginary parts of the decoded slots are then noise alone, and by
   Parseval (Σ_j |e(ζ_j)|² over the N/2 slots = (N/2)·‖e‖₂²) with the real parts of about the
   same size, ‖e‖₂ ≈ 2·sqrt(Σ_j Im(z_j)²·Δ²/N); B takes twice that, rounded up to a power of two
   (so the size of the flood reveals at most log2 B), and never less than the bound of a fresh
   public-key encryption, B_fresh = σ·sqrt(N·(4N/3 + 1)·(1 + 8·sqrt(2/N))) (Enc(m) = v·pk + (e0, e1):
   each coefficient of e = v·e_pk + e_0 + e_1·s sums about 4N/3 + 1 terms of variance σ²,
   σ = 3.2, for a uniform ternary v and s).
2. The flood: e_f with i.i.d. Gaussian coefficients of standard deviation σ_flood = 2^s·B,
   s = ``statistical_bits`` ≥ 30, drawn from the OS CSPRNG (Box–Muller on 53-bit uniforms),
   added to the decrypted coefficients. For spherical Gaussians the statistical distance
   between e_f and e + e_f is at most ‖e‖₂/(2σ_flood) ≤ 2^-(s+1), so the output is
   statistically independent of e, hence of the key (the smudging lemma in ℓ2 form).
3. Rounding: each slot's flood has standard deviation σ_slot = σ_flood·sqrt(N/2)/Δ (real part);
   values are rounded to multiples of 2^-p with p = ⌊-log2(7·σ_slot)⌋, the precision the flooded
   ciphertext still holds (7σ: exceeded with probability < 2^-37 per slot).

Cost in precision: about s + log2(B·sqrt(N/2)/Δ) + 3 bits below the noise-free precision. At
the default 40-bit scale (N = 8192, fresh: log2 B ≈ 16) that is 40 − 30 − 16 − 6 − 3 < 0: a
flooded default ciphertext holds no bits (``precision_bits`` ≤ 0); server-managed decryption
needs scales of about 2^55 and more (docs/security.md has the table per parameter set).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..ring.sampling import SIGMA
from .params import CkksParameters

MIN_STATISTICAL_BITS = 30
SLOT_TAIL = 7.0  # slot error bound in flood standard deviations


@dataclass(frozen=True)
class Flooded:
    """A flooded decoding.

    Attributes:
        values: float64 (slot_count,), the real parts, rounded to multiples of 2^-precision_bits.
        precision_bits: p, the absolute precision kept (bits after the binary point; ≤ 0 means
            none below 1: the flood is as large as the values' units).
        noise_bound_log2: log2 B (B bounds ‖e‖₂ of the decryption error, integer units).
        sigma_log2: log2 σ_flood (coefficient standard deviation of the flood).
        statistical_bits: s.
    """

    values: np.ndarray
    precision_bits: int
    noise_bound_log2: float
    sigma_log2: float
    statistical_bits: int


def fresh_noise_bound(params: CkksParameters) -> float:
    """B_fresh: bound on ‖e‖₂ of a fresh public-key encryption (integer units; see the module
    docstring for the derivation)."""
    n = params.poly_degree
    # E‖e‖₂² = N·σ²·(4N/3 + 1); the sum of N such squares exceeds its mean by 8 of its standard
    # deviations (relative sqrt(2/N)) with negligible probability
    return SIGMA * math.sqrt(n * (4 * n / 3 + 1) * (1 + 8 * math.sqrt(2 / n)))


def precision_bits(params: CkksParameters, scale: float, noise_bound: float,
                   statistical_bits: int = MIN_STATISTICAL_BITS) -> int:
    """The absolute precision (bits) a flooded decoding at ``scale`` keeps: ⌊-log2(7·σ_slot)⌋
    with σ_slot = 2^s·B·sqrt(N/2)/scale."""
    sigma = 2.0**statistical_bits * noise_bound
    slot = sigma * math.sqrt(params.poly_degree / 2) / scale
    return math.floor(-math.log2(SLOT_TAIL * slot))


def _gaussian(n: int) -> np.ndarray:
    """n standard normal samples from the OS CSPRNG (Box–Muller on 53-bit uniforms)."""
    raw = np.frombuffer(os.urandom(16 * ((n + 1) // 2)), dtype=np.uint64).reshape(2, -1)
    u1 = ((raw[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    u2 = (raw[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])
    return z[:n]


def estimate_noise_bound(params: CkksParameters, slots: np.ndarray, scale: float) -> float:
    """B from the imaginary parts of decoded slots of a plaintext that encodes real values (see
    the module docstring): 2·‖e‖₂-estimate rounded up to a power of two, at least B_fresh."""
    n = params.poly_degree
    im2 = float(np.sum(np.square(np.asarray(slots).imag))) * scale * scale
    est = 2.0 * math.sqrt(4.0 * im2 / n)
    bound = max(est, fresh_noise_bound(params))
    return 2.0 ** math.ceil(math.log2(bound))


def flood_coefficients(coeffs: np.ndarray, sigma: float) -> np.ndarray:
    """``coeffs`` (N float64, the centred decryption) plus a Gaussian flood of std ``sigma``."""
    return np.asarray(coeffs, dtype=np.float64) + sigma * _gaussian(coeffs.shape[-1])


def check_statistical_bits(statistical_bits: int) -> int:
    if not isinstance(statistical_bits, int) or isinstance(statistical_bits, bool) \
            or statistical_bits < MIN_STATISTICAL_BITS or statistical_bits > 128:
        raise ParameterError(f"statistical_bits must be an integer in {MIN_STATISTICAL_BITS}..128, "
                             f"got {statistical_bits!r}", field="statistical_bits")
    return statistical_bits
