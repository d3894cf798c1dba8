"""Noise variances and failure probabilities of TFHE gate bootstrapping (32-bit torus).

Variances are in torus units (the torus is [0, 1)); they are average-case formulas for
uniform signed decomposition digits and uniform binary keys, as in Chillotti et al., J. Cryptology
2020, Thm. 4.3 / Lemma 4.4 (external product, CMUX), §4.1 (key switching), and the
modulus-switching term of the blind rotation.

* Blind rotation (n CMUXes), decomposition base B = 2^pbs_base_log, l levels:
    V_BR = n [ (k+1) l N (B^2 + 2)/12 · σ_glwe^2  +  ½ (1 + kN/2) / (12 B^{2l}) ]
  (key noise amplified by the digits; rounding of the decomposition times the GLWE key,
  present only in the CMUXes whose LWE key bit is 1, half of them on average).
* Key switching from the kN-dimensional extracted key, base B_ks = 2^ks_base_log, t levels,
  signed digits multiplying the key rows:
    V_KS = kN t (B_ks^2 + 2)/12 · σ_lwe^2  +  (kN/2) / (12 B_ks^{2t})
* Output of a gate (after key switching): V_out = V_BR + V_KS; a MUX output is the sum of two
  blind rotations before one key switch: V_mux = 2 V_BR + V_KS (the largest output variance).
* Modulus switching to Z_2N before the blind rotation: each of the 1 + h rounded words (b and
  the a_i with s_i = 1, h ≈ n/2 the key's Hamming weight) adds an independent error uniform
  on [-1/(4N), 1/(4N)]: V_MS = (1 + n/2) / (48 N^2). This part is bounded (Irwin–Hall), so it is
  folded in exactly (its density by numerical convolution), not as a Gaussian.

Failure. Inputs are ±1/8; every gate's linear combination lands at distance exactly 1/8 from a
decision boundary (0 or 1/2) for NAND/AND/OR/NOR/MUX, and 1/4 for XOR/XNOR whose error is doubled,
which is the same ratio. The blind rotation decides on the rounded phase; with the test vector
used here a phase error e fails iff e ≥ 1/8 on one side (≥ 1/8 + 1/(2N) on the other), so the
margin is exactly 1/8. A gate's input error is e_a ± e_b (× 2 for XOR against a margin × 2);
each operand has at most the variance V_mux, and the two may be the *same* ciphertext (the API
allows it: NAND(x, x)), i.e. fully correlated, so the worst input variance over all circuits is

    V_worst = (σ_a + σ_b)^2 + V_MS ≤ 4 V_mux + V_MS.

``p_fail_log2(params)`` (model "worst", what the presets claim): log2 P(|G + U| ≥ 1/8) with G
Gaussian of variance 4 V_mux and U the exact modulus-switching error (two-sided, so a factor ≤ 2
pessimistic). Model "typical": two distinct outputs of single-bootstrap gates, 2 V_out (+ U).
Model "generic": the pessimistic model TFHE-rs / concrete-optimizer use for their Boolean sets,
margin 1/16 and a linear combination of 2-norm √8, all Gaussian: V = 8 V_out + V_MS. It
reproduces the p-fail TFHE-rs 1.7.0 states for its Boolean sets (tfhe/src/boolean/parameters/
params.rs): 2^-64.344 for DEFAULT_PARAMETERS (we get 2^-64.3), 2^-165.434 for
PARAMETERS_ERROR_PROB_2_POW_MINUS_165 (we get 2^-165.4), and 2^-40 for the older
GPU_DEFAULT_PARAMETERS (we get 2^-40.1); its margin 1/16 is the half-distance of a
generic 3-bit message space, not the 1/8 that these gates have, so it overstates p_fail here
(the insecure-set test in tests/test_tfhe.py measures 4.5 % failures where the margin-1/8 model
predicts 4.6 % and the generic one ≈ 60 %).

The empirical checks (tests/test_tfhe.py, benchmarks/bench_tfhe.py --failure-gates) measure the
output-noise variance of single-bootstrap and MUX gates against V_out and V_mux, the failure
rate on an insecure set where failures are observable, and count failures over ≥ 10^5 gates
that reuse noisy outputs (including MUX outputs and same-operand gates) on fast_128.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .params import TfheParameters


def blind_rotation_variance(p: "TfheParameters") -> float:
    B = 2.0 ** p.pbs_base_log
    l, k, N, n = p.pbs_level, p.glwe_dimension, p.polynomial_size, p.lwe_dimension
    key_term = (k + 1) * l * N * (B * B + 2) / 12.0 * p.glwe_noise_std ** 2
    rounding_term = 0.5 * (1 + k * N / 2.0) / (12.0 * B ** (2 * l))
    return n * (key_term + rounding_term)


def key_switch_variance(p: "TfheParameters") -> float:
    B = 2.0 ** p.ks_base_log
    t, kN = p.ks_level, p.glwe_dimension * p.polynomial_size
    return kN * t * (B * B + 2) / 12.0 * p.lwe_noise_std ** 2 + (kN / 2.0) / (12.0 * B ** (2 * t))


def modulus_switch_variance(p: "TfheParameters") -> float:
    return (1 + p.lwe_dimension / 2.0) / (48.0 * p.polynomial_size ** 2)


def output_variance(p: "TfheParameters") -> float:
    """Variance of the phase error of a single-bootstrap gate output (bootstrap, key switch)."""
    return blind_rotation_variance(p) + key_switch_variance(p)


def mux_output_variance(p: "TfheParameters") -> float:
    """Variance of a MUX output (two blind rotations summed, one key switch): the largest."""
    return 2.0 * blind_rotation_variance(p) + key_switch_variance(p)


def bootstrap_input_variance(p: "TfheParameters", model: str = "worst") -> float:
    """Total input-error variance of a bootstrap (Gaussian part + modulus switching)."""
    return _gaussian_input_variance(p, model) + modulus_switch_variance(p)


def _gaussian_input_variance(p: "TfheParameters", model: str) -> float:
    if model == "worst":
        return 4.0 * mux_output_variance(p)
    if model in ("typical", "exact"):
        return 2.0 * output_variance(p)
    if model == "generic":
        return 8.0 * output_variance(p)
    raise ValueError("model must be 'worst', 'typical' or 'generic'")


def _log2_two_sided_tail(x: float) -> float:
    """log2 P(|Z| >= x) for a standard normal Z, accurate far into the tail."""
    p = math.erfc(x / math.sqrt(2.0))
    if p > 1e-300:
        return math.log2(p)
    # asymptotic expansion: P ~ sqrt(2/pi) e^{-x^2/2} / x (1 - 1/x^2 + 3/x^4)
    ln = -x * x / 2.0 + math.log(math.sqrt(2.0 / math.pi) / x) + math.log1p(-1.0 / x ** 2 + 3.0 / x ** 4)
    return ln / math.log(2.0)


def _log_q(z):
    """ln P(Z >= z) for a standard normal Z (vectorised, accurate far into the tail)."""
    import numpy as np

    z = np.asarray(z, dtype=float)
    q = 0.5 * _ERFC(z / math.sqrt(2.0)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.log(np.where(q > 1e-300, q, 1.0))
        # asymptotic expansion where erfc underflows (z > ~37)
        zz = np.where(q > 1e-300, 2.0, z)
        asym = -zz * zz / 2.0 - np.log(zz * math.sqrt(2.0 * math.pi)) + np.log(1.0 - 1.0 / zz ** 2 + 3.0 / zz ** 4)
    return np.where(q > 1e-300, direct, asym)


def _erfc_ufunc():
    import numpy as np

    return np.frompyfunc(math.erfc, 1, 1)


_ERFC = None  # set lazily (numpy is imported only when a tail is computed)


def _log2_tail_with_uniform_sum(margin: float, var_g: float, terms: int, half_width: float) -> float:
    """log2 P(|G + U| >= margin), G ~ N(0, var_g), U a sum of `terms` independent uniforms on
    [-half_width, half_width] (the modulus-switching error). U's density is taken from the
    saddle-point approximation of the sum (relative error O(1/terms) on the density, i.e. far
    below 0.1 bit here), integrated against the Gaussian tail in log space."""
    import numpy as np

    global _ERFC
    if _ERFC is None:
        _ERFC = _erfc_ufunc()
    T, a = float(terms), half_width
    x = np.linspace(1e-6, 400.0, 40001)  # x = lambda * a >= 0, u = K'(lambda) >= 0
    lam = x / a
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    log_sinhc = np.where(small, x * x / 6.0, xs + np.log1p(-np.exp(-2 * xs)) - np.log(2 * xs))
    coth_m = np.where(small, x / 3.0, 1.0 / np.tanh(xs) - 1.0 / xs)
    k2_unit = np.where(small, 1.0 / 3.0 - x * x / 15.0, 1.0 / xs ** 2 - 1.0 / np.sinh(np.minimum(xs, 300)) ** 2)
    K = T * log_sinhc
    u = T * a * coth_m
    K2 = T * a * a * np.maximum(k2_unit, 1e-300)
    log_f = K - lam * u - 0.5 * np.log(2 * np.pi * K2)
    dlam = np.gradient(lam)
    log_w = log_f + np.log(K2) + np.log(dlam)  # f(u) du, du = K'' dlambda
    sg = np.sqrt(var_g)
    # P(G + U >= m) = sum over u >= 0 and u < 0 (symmetric density): Q((m - u)/sg) + Q((m + u)/sg)
    lt = np.logaddexp(_log_q((margin - u) / sg), _log_q((margin + u) / sg))
    tot = log_w + lt
    mx = tot.max()
    ln_one_sided = mx + np.log(np.sum(np.exp(tot - mx)))
    return float((ln_one_sided + np.log(2.0)) / np.log(2.0))  # two-sided


def p_fail_log2(p: "TfheParameters", model: str = "worst") -> float:
    """log2 of the failure probability of one gate bootstrap (see the module docstring).

    "worst" (default; what the presets claim): margin 1/8, Gaussian part 4 V_mux, modulus
    switching exact. "typical": 2 V_out instead. "generic": TFHE-rs's model (margin 1/16,
    8 V_out + V_MS, all Gaussian)."""
    if model == "generic":
        return _log2_two_sided_tail((1.0 / 16.0) / math.sqrt(bootstrap_input_variance(p, "generic")))
    var_g = _gaussian_input_variance(p, model)
    N, n = p.polynomial_size, p.lwe_dimension
    return _log2_tail_with_uniform_sum(1.0 / 8.0, var_g, 1 + n // 2, 1.0 / (4.0 * N))


def p_fail_log2_for_variance(p: "TfheParameters", var_gaussian: float) -> float:
    """log2 P(|G + U| >= 1/8) for a Gaussian input error of the given variance plus this
    parameter set's exact modulus-switching error (used by the tests on insecure sets)."""
    N, n = p.polynomial_size, p.lwe_dimension
    return _log2_tail_with_uniform_sum(1.0 / 8.0, var_gaussian, 1 + n // 2, 1.0 / (4.0 * N))


def p_fail_log2_gaussian(p: "TfheParameters", model: str = "worst") -> float:
    """Same as p_fail_log2 with the modulus-switching error treated as Gaussian (pessimistic)."""
    return _log2_two_sided_tail((1.0 / 8.0) / math.sqrt(bootstrap_input_variance(p, model)))


def report(p: "TfheParameters") -> dict:
    """All the numbers above as a JSON-able dict (variances in torus units)."""
    return {
        "v_blind_rotation": blind_rotation_variance(p),
        "v_key_switch": key_switch_variance(p),
        "v_modulus_switch": modulus_switch_variance(p),
        "v_output": output_variance(p),
        "v_output_mux": mux_output_variance(p),
        "std_output": math.sqrt(output_variance(p)),
        "p_fail_log2": p_fail_log2(p, "worst"),
        "p_fail_log2_typical": p_fail_log2(p, "typical"),
        "p_fail_log2_gaussian_ms": p_fail_log2_gaussian(p, "worst"),
        "p_fail_log2_generic_model": p_fail_log2(p, "generic"),
    }
