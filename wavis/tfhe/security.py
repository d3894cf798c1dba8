"""Lattice security of TFHE parameter sets from the current Zama / TFHE-rs security curves.

Source: the "security curves" that Zama fits to lattice-estimator runs (binary secret, Gaussian
noise, q = 2^64) and verifies point by point: for a security level λ the curve says that an LWE
instance of dimension n and noise standard deviation σ (a fraction of the modulus) has at least
λ bits of security when

    log2 σ >= slope_λ · n + bias_λ        (n >= minimal_lwe_dimension_λ = 450)

with a floor of σ >= 2^(2 - log2 q) (σ covers the two lowest bits). Current values:
zama-ai/concrete ``tools/parameter-curves/concrete-security-curves-rust/src/gaussian/curves_gen.rs``
(commit 4d6afba9d "chore(common): add 132 bits security curves", 2024-12-16; unchanged at the
2025-06 head) — the same curves TFHE-rs 1.7.0 uses (``tfhe/src/core_crypto/algorithms/test/
noise_distribution/variance_formula/secure_noise.rs``: the 128- and 132-bit curves as variances,
slope 2·s and bias 2·b). They replace the 2022 curve (128 bits: slope -0.026405028765226296,
bias 2.482642269104389), on which the old presets (n = 686, σ = 2^-15.63; N = 1024,
σ = 2^-24.56) sat; by the current curve those give about 125.7 and 126.6 bits.

A GLWE instance of dimension k and polynomial size N counts as LWE of dimension k·N (as in
TFHE-rs's ``minimal_glwe_variance_*``). The torus here is 32-bit: like TFHE-rs for its u32
Boolean parameters, the curve is applied to σ relative to the modulus and only the floor uses
the real modulus (σ >= 2^-30 on the 32-bit torus).

:func:`security_bits` turns a (dimension, σ) pair into a number: 128 + 4·t where t is the
position of log2 σ between the 128-bit and the 132-bit curve (linear interpolation; above the
132-bit curve it reports 132, the highest level the source covers). Below the 128-bit curve the
same line extrapolates downwards; that figure is only indicative (the lattice estimator itself
gives somewhat more, e.g. 125.7 rather than 122.9 bits for n = 686, σ = 2^-15.63), and every
public preset is at or above the 128-bit curve (:func:`meets`, checked in
:class:`wavis.tfhe.params.TfheParameters`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .params import TfheParameters

#: the source of :data:`CURVES` (cited in the presets and in GET /tfhe/pricing)
CURVES_SOURCE = ("zama-ai/concrete tools/parameter-curves/concrete-security-curves-rust/src/gaussian/"
                 "curves_gen.rs @ 4d6afba9d (2024-12-16), as used by TFHE-rs 1.7.0 "
                 "(core_crypto/.../variance_formula/secure_noise.rs)")

#: security level -> (slope, bias, minimal LWE dimension) of log2 σ_min = slope·n + bias
CURVES: dict[int, tuple[float, float, int]] = {
    128: (-0.025696778711484593, 2.675931372549016, 450),
    132: (-0.024891456582633045, 2.65734593837534, 450),
}

#: the superseded 2022 curve (concrete-security-curves v0; what the old presets were chosen on)
CURVE_128_2022 = (-0.026405028765226296, 2.482642269104389, 450)

TORUS_LOG2_MODULUS = 32


def min_log2_std(dimension: int, level: int, log2_modulus: int = TORUS_LOG2_MODULUS) -> float:
    """Smallest log2 σ (fraction of the modulus) with ``level`` bits of security at this LWE
    dimension by the current curve (TFHE-rs's ``secure_log2_std``), floor 2^(2 - log2 q).

    Raises: KeyError for a level without a curve (128 and 132 exist)."""
    slope, bias, n_min = CURVES[level]
    if dimension < n_min:
        return 0.0  # no σ is secure below the curve's minimal dimension
    return max(slope * dimension + bias, 2.0 - log2_modulus)


def security_bits(dimension: int, std: float, log2_modulus: int = TORUS_LOG2_MODULUS) -> float:
    """Estimated security (bits) of LWE of this dimension and noise std (fraction of the
    modulus): interpolated between the 128- and 132-bit curves, capped at 132 (see the module
    docstring). 0 below the curves' minimal dimension."""
    if dimension < CURVES[128][2] or not std > 0:
        return 0.0
    ls = math.log2(std)
    lo, hi = min_log2_std(dimension, 128, log2_modulus), min_log2_std(dimension, 132, log2_modulus)
    if ls >= hi:
        return 132.0
    if hi <= lo:  # both curves at the modular floor and σ below it: not counted as secure
        return 0.0
    return max(0.0, 128.0 + 4.0 * (ls - lo) / (hi - lo))


def report(p: "TfheParameters") -> dict:
    """The security of both (dimension, σ) pairs of a parameter set, JSON-able:
    ``lwe_bits``, ``glwe_bits``, ``bits`` (the smaller), the margins log2 σ - log2 σ_min(128)
    of each pair, and the source."""
    kn = p.k * p.big_n
    lwe = security_bits(p.n, p.lwe_noise_std)
    glwe = security_bits(kn, p.glwe_noise_std)
    return {
        "bits": min(lwe, glwe),
        "lwe_bits": lwe,
        "glwe_bits": glwe,
        "lwe_log2_std_margin": math.log2(p.lwe_noise_std) - min_log2_std(p.n, 128),
        "glwe_log2_std_margin": math.log2(p.glwe_noise_std) - min_log2_std(kn, 128),
        "source": CURVES_SOURCE,
    }


def meets(p: "TfheParameters", level: int = 128) -> bool:
    """Whether both pairs are on or above the current ``level``-bit curve."""
    return (p.n >= CURVES[level][2] and p.k * p.big_n >= CURVES[level][2]
            and math.log2(p.lwe_noise_std) >= min_log2_std(p.n, level)
            and math.log2(p.glwe_noise_std) >= min_log2_std(p.k * p.big_n, level))
