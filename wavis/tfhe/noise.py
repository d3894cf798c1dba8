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
* Output of a gate (after key switching): V_out = V_BR + V_KS.
* Modulus switching to Z_2N before the blind rotation: V_MS = (1 + n/2) / (48 N^2).
* Input of the next bootstrap for the worst gate (NAND/AND/OR/NOR: e_a + e_b; XOR/XNOR:
  2(e_a + e_b) against a margin twice as large; MUX: sel ± a with the same variance):
    V_in = 2 V_out + V_MS,   margin 1/8 (inputs ±1/8, decision boundaries at 0 and 1/2).
  A bootstrap fails when |error| ≥ 1/8: p_fail = erfc(1/8 / sqrt(2 V_in)).

``p_fail_log2(params)`` gives log2 of that probability (the "exact-margin" model, what the
gates here really need). ``p_fail_log2(params, model="generic")`` gives the more pessimistic
figure of the generic model used by TFHE-rs / concrete-optimizer for its Boolean sets (margin
1/16 and a linear combination of 2-norm sqrt(8), i.e. V = 8 V_out + V_MS): it reproduces
TFHE-rs's stated 2^-40 for GPU_DEFAULT_PARAMETERS (we get 2^-40.1) and 2^-165.4 for
PARAMETERS_ERROR_PROB_2_POW_MINUS_165 (we get 2^-165.4). Both are reported per preset.

The empirical check (tests/test_tfhe.py) measures the phase error of many gate outputs and
compares its variance with V_out.
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
    """Variance of the phase error of a gate output (bootstrap then key switch)."""
    return blind_rotation_variance(p) + key_switch_variance(p)


def bootstrap_input_variance(p: "TfheParameters", model: str = "exact") -> float:
    if model == "exact":
        return 2.0 * output_variance(p) + modulus_switch_variance(p)
    if model == "generic":
        return 8.0 * output_variance(p) + modulus_switch_variance(p)
    raise ValueError("model must be 'exact' or 'generic'")


def _log2_two_sided_tail(x: float) -> float:
    """log2 P(|Z| >= x) for a standard normal Z, accurate far into the tail."""
    p = math.erfc(x / math.sqrt(2.0))
    if p > 1e-300:
        return math.log2(p)
    # asymptotic expansion: P ~ sqrt(2/pi) e^{-x^2/2} / x (1 - 1/x^2 + 3/x^4)
    ln = -x * x / 2.0 + math.log(math.sqrt(2.0 / math.pi) / x) + math.log1p(-1.0 / x ** 2 + 3.0 / x ** 4)
    return ln / math.log(2.0)


def p_fail_log2(p: "TfheParameters", model: str = "exact") -> float:
    """log2 of the failure probability of one gate bootstrap (see the module docstring)."""
    margin = 1.0 / 8.0 if model == "exact" else 1.0 / 16.0
    return _log2_two_sided_tail(margin / math.sqrt(bootstrap_input_variance(p, model)))


def report(p: "TfheParameters") -> dict:
    """All the numbers above as a JSON-able dict (variances in torus units)."""
    return {
        "v_blind_rotation": blind_rotation_variance(p),
        "v_key_switch": key_switch_variance(p),
        "v_modulus_switch": modulus_switch_variance(p),
        "v_output": output_variance(p),
        "std_output": math.sqrt(output_variance(p)),
        "p_fail_log2": p_fail_log2(p, "exact"),
        "p_fail_log2_generic_model": p_fail_log2(p, "generic"),
    }
