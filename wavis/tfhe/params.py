"""TFHE parameter sets (Boolean gate bootstrapping on the 32-bit torus).

Named sizes follow the field's libraries (TFHE-rs, tfhe-go): :data:`LweDimension` (n),
:data:`GlweDimension` (k), :data:`PolynomialSize` (N), :data:`DecompositionBaseLog`,
:data:`DecompositionLevelCount`, :data:`StandardDev`. A :class:`TfheParameters` is immutable,
validated, and has a fingerprint; every key and ciphertext carries its preset id.

Security comes only from the two (dimension, noise) pairs: the LWE pair (n, σ_lwe) and the
GLWE pair (k·N, σ_glwe). Each public preset is checked against the current Zama / TFHE-rs
security curves (:mod:`wavis.tfhe.security`: concrete ``concrete-security-curves-rust/src/
gaussian/curves_gen.rs`` @ 4d6afba9d, 2024-12-16, the curves of TFHE-rs 1.7.0): a set that is
not ``insecure`` and falls below the 128-bit curve on either pair is refused at construction.
Decomposition bases and levels do not change security; they trade speed for noise and are
chosen with :mod:`wavis.tfhe.noise` so that each preset meets its failure bound:

=================  ====  ===  ====  =======  =======  =========  ================================
preset             n     k    N     PBS B/l  KS B/l   security   p_fail per bootstrap, worst (bound)
=================  ====  ===  ====  =======  =======  =========  ================================
fast_128           704   1    1024  2^6 / 3  2^3 / 4  128.7      2^-73.1   (≤ 2^-64)
standard_128       704   1    1024  2^5 / 4  2^2 / 6  128.7      2^-166.3  (≤ 2^-128)
conservative_128   837   2    1024  2^10/ 2  2^3 / 5  132        2^-844.3  (≤ 2^-128, also under
                                                                  TFHE-rs's model: 2^-165.4)
=================  ====  ===  ====  =======  =======  =========  ================================

Security: the smaller of the two pairs' estimates (:func:`wavis.tfhe.security.security_bits`,
interpolated between the 128- and 132-bit curves). fast_128 and standard_128 share
σ_lwe = 2^-15.25 at n = 704 (129.2 bits) and σ_glwe = 2^-23.5 at k·N = 1024 (128.7 bits);
conservative_128 is TFHE-rs's ``PARAMETERS_ERROR_PROB_2_POW_MINUS_165`` verbatim, on the 132-bit
curve (LWE) and at the 2^-30 floor of the 32-bit torus (GLWE, k·N = 2048: far above 132 bits).

p_fail by :func:`wavis.tfhe.noise.p_fail_log2` (model "worst"): margin 1/8 (exact for these
gates), an input error of variance 4 V_mux (two fully correlated operands, e.g. NAND(x, x), each
a MUX output: the largest error any circuit can feed a bootstrap) plus the exact modulus-switching
error, two-sided. Distinct single-bootstrap operands ("typical") give 2^-182.8, 2^-367.7,
2^-1379.4. TFHE-rs's generic model (margin 1/16, 8 V_out) gives 2^-14.6, 2^-30.1 and 2^-165.4; the
tests measure failure rates that match the margin-1/8 model and contradict that one (see
:mod:`wavis.tfhe.noise`). ``testing`` is a tiny, insecure set for fast unit tests only.

Preset ids 1 and 2 were the earlier fast_128 / standard_128 (n = 686, σ_lwe = 2^-15.63,
σ_glwe = 2^-24.56: on the 2022 curve, below the current one, ≈ 123–126 bits); blobs carrying
them are refused with a message saying so (:data:`RETIRED_PRESET_IDS`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import NewType

from ..errors import ParameterError

LweDimension = NewType("LweDimension", int)
GlweDimension = NewType("GlweDimension", int)
PolynomialSize = NewType("PolynomialSize", int)
DecompositionBaseLog = NewType("DecompositionBaseLog", int)
DecompositionLevelCount = NewType("DecompositionLevelCount", int)
StandardDev = NewType("StandardDev", float)


@dataclass(frozen=True)
class TfheParameters:
    """One TFHE Boolean parameter set. Noise std devs are fractions of the torus [0, 1)."""

    name: str
    preset_id: int
    lwe_dimension: LweDimension
    glwe_dimension: GlweDimension
    polynomial_size: PolynomialSize
    pbs_base_log: DecompositionBaseLog
    pbs_level: DecompositionLevelCount
    ks_base_log: DecompositionBaseLog
    ks_level: DecompositionLevelCount
    lwe_noise_std: StandardDev
    glwe_noise_std: StandardDev
    security_bits: int
    source: str = field(default="", compare=False)
    insecure: bool = False

    def __post_init__(self) -> None:
        n, k, N = self.lwe_dimension, self.glwe_dimension, self.polynomial_size
        if not (1 <= n <= 4096) or not (1 <= k <= 8):
            raise ParameterError("LWE/GLWE dimension out of range", n=n, k=k)
        if N < 16 or N > 16384 or N & (N - 1):
            raise ParameterError("PolynomialSize must be a power of two in [16, 16384]", N=N)
        for b, l, what in ((self.pbs_base_log, self.pbs_level, "PBS"), (self.ks_base_log, self.ks_level, "KS")):
            if b < 1 or l < 1 or b * l > 32:
                raise ParameterError(f"{what} decomposition needs base_log * levels <= 32", base_log=b, levels=l)
        if not (0 < self.lwe_noise_std < 0.1 and 0 < self.glwe_noise_std < 0.1):
            raise ParameterError("noise std dev out of range")
        if not self.insecure:
            from . import security

            sec = security.report(self)
            if not security.meets(self, 128) or sec["bits"] < self.security_bits - 0.01:
                raise ParameterError(
                    "TFHE parameters below the claimed security by the current security curves "
                    "(mark them insecure=True for tests)", claimed=self.security_bits,
                    lwe_bits=round(sec["lwe_bits"], 2), glwe_bits=round(sec["glwe_bits"], 2),
                    source=security.CURVES_SOURCE)

    # -- names the API uses -------------------------------------------------------------
    @property
    def n(self) -> int:
        """LWE dimension of ciphertexts (``n`` in /tfhe/session responses)."""
        return int(self.lwe_dimension)

    @property
    def big_n(self) -> int:
        """GLWE polynomial size N (``big_n`` in /tfhe/session responses)."""
        return int(self.polynomial_size)

    @property
    def k(self) -> int:
        return int(self.glwe_dimension)

    @property
    def ciphertext_words(self) -> int:
        return self.n + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 (16 bytes) of the canonical JSON of every field that changes the scheme.
        Computed once per instance (the fields are frozen): every ciphertext written or read
        names it, and ``preset_by_fingerprint`` compares it with each preset's."""
        d = {k: v for k, v in asdict(self).items() if k not in ("source",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()[:16]

    def noise(self) -> dict:
        from . import noise

        return noise.report(self)

    def security(self) -> dict:
        """Security estimate of both pairs by the current curves (:func:`wavis.tfhe.security.report`)."""
        from . import security

        return security.report(self)


def fast_128() -> TfheParameters:
    """``fast_128``: n = 704, k = 1, N = 1024; PBS base 2^6, 3 levels; KS base 2^3, 4 levels;
    σ_lwe = 2^-15.25 (2.5662e-5), σ_glwe = 2^-23.5 (8.4294e-8). Preset id 4.

    Security ≥ 128 bits by the current TFHE-rs / concrete curves (curves_gen.rs @ 4d6afba9d,
    TFHE-rs 1.7.0; :mod:`wavis.tfhe.security`): LWE pair 129.2 bits (log2 σ 0.16 above the
    128-bit curve), GLWE pair 128.7 bits (0.14 above); reported security 128.7.
    Failure per bootstrap: 2^-73.1 worst case (bound ≤ 2^-64): a gate whose two operands are
    the same MUX output (input variance 4 V_mux + exact modulus switching, margin 1/8, two-sided;
    the one-sided truth is half); 2^-182.8 for distinct single-bootstrap operands. TFHE-rs's
    generic model (margin 1/16) gives 2^-14.6 for these parameters; measured failure rates on
    insecure sets match the margin-1/8 model and not that one (tests/test_tfhe.py). Output noise
    std 0.0053 (0.0062 after a MUX), checked against measurement in the tests and in
    benchmarks/bench_tfhe.py --failure-gates (:data:`MEASURED`). A key's Hamming weight (±√n/2)
    and the key switch's key-dependent offset move the worst case by about ±1 bit.
    Cost: three PBS levels (the old n = 686 set had two, which the current curve's larger
    σ_glwe no longer allows at ≤ 2^-64), so ≈ 1.35× the work per bootstrap of that set.
    """
    return _PRESETS["fast_128"]


def standard_128() -> TfheParameters:
    """``standard_128``: n = 704, k = 1, N = 1024; PBS base 2^5, 4 levels; KS base 2^2, 6 levels;
    σ_lwe = 2^-15.25, σ_glwe = 2^-23.5 (the same pairs as fast_128). Preset id 5.

    Security ≥ 128 bits by the current curves: 129.2 (LWE) / 128.7 (GLWE), as fast_128.
    Failure per bootstrap: 2^-166.3 worst case (bound ≤ 2^-128), 2^-367.7 for distinct
    single-bootstrap operands; 2^-30.1 under TFHE-rs's generic margin-1/16 model, which does not
    describe these gates (see fast_128 and :mod:`wavis.tfhe.noise`). Output noise std 0.0035
    (0.0040 after a MUX).
    """
    return _PRESETS["standard_128"]


def conservative_128() -> TfheParameters:
    """``conservative_128``: n = 837, k = 2, N = 1024; PBS base 2^10, 2 levels; KS base 2^3,
    5 levels; σ_lwe = 3.3747e-6 (2^-18.18), σ_glwe = 9.3132e-10 (2^-30). Preset id 3.

    TFHE-rs Boolean ``PARAMETERS_ERROR_PROB_2_POW_MINUS_165`` verbatim (tfhe/src/boolean/
    parameters/params.rs, TFHE-rs 1.7.0: "132-bits of security"). By the current curves: the
    LWE pair sits on the 132-bit curve, the GLWE pair (k·N = 2048) at the 2^-30 floor of the
    32-bit torus, far above it: 132 bits (the highest level the curves cover).
    Failure per bootstrap: 2^-844.3 worst case by our model, 2^-1379.4 typical, and 2^-165.4 by
    TFHE-rs's generic model (TFHE-rs states 2^-165.434; we compute 2^-165.4), so it meets its
    bound (≤ 2^-128) under either model: the wider margin. About 1.5× the work of standard_128
    per bootstrap.
    """
    return _PRESETS["conservative_128"]


#: (lwe std, glwe std) shared by fast_128 and standard_128
_SIGMA_LWE_704 = StandardDev(2.0 ** -15.25)
_SIGMA_GLWE_1024 = StandardDev(2.0 ** -23.5)
_CURVES = "current TFHE-rs/concrete curves (curves_gen.rs @ 4d6afba9d)"

_PRESETS: dict[str, TfheParameters] = {
    "fast_128": TfheParameters(
        "fast_128", 4, LweDimension(704), GlweDimension(1), PolynomialSize(1024),
        DecompositionBaseLog(6), DecompositionLevelCount(3), DecompositionBaseLog(3), DecompositionLevelCount(4),
        _SIGMA_LWE_704, _SIGMA_GLWE_1024, 128,
        f"ours: (n, sigma) pairs >= 128 bits by the {_CURVES}; decompositions by wavis.tfhe.noise"),
    "standard_128": TfheParameters(
        "standard_128", 5, LweDimension(704), GlweDimension(1), PolynomialSize(1024),
        DecompositionBaseLog(5), DecompositionLevelCount(4), DecompositionBaseLog(2), DecompositionLevelCount(6),
        _SIGMA_LWE_704, _SIGMA_GLWE_1024, 128,
        f"ours: (n, sigma) pairs >= 128 bits by the {_CURVES}; decompositions by wavis.tfhe.noise"),
    "conservative_128": TfheParameters(
        "conservative_128", 3, LweDimension(837), GlweDimension(2), PolynomialSize(1024),
        DecompositionBaseLog(10), DecompositionLevelCount(2), DecompositionBaseLog(3), DecompositionLevelCount(5),
        StandardDev(3.374714376692653e-06), StandardDev(9.313225746198247e-10), 132,
        "TFHE-rs 1.7.0 boolean PARAMETERS_ERROR_PROB_2_POW_MINUS_165 (132 bits by the current curves)"),
    # Tiny and INSECURE: unit tests of the plumbing only (never offered by the service).
    "testing": TfheParameters(
        "testing", 255, LweDimension(64), GlweDimension(1), PolynomialSize(256),
        DecompositionBaseLog(8), DecompositionLevelCount(2), DecompositionBaseLog(4), DecompositionLevelCount(4),
        StandardDev(2.0 ** -20), StandardDev(2.0 ** -30), 0, "insecure test set", True),
}

#: failure bound (log2 p_fail per bootstrap, model "worst") each public preset promises
P_FAIL_BOUND_LOG2 = {"fast_128": -64, "standard_128": -128, "conservative_128": -128}

#: preset ids no longer offered -> why (blobs carrying them are refused with this message)
RETIRED_PRESET_IDS = {
    1: "fast_128 before 2026-12 (n = 686, sigma_lwe = 2^-15.63, sigma_glwe = 2^-24.56: below the current "
       "128-bit security curve); generate new keys",
    2: "standard_128 before 2026-12 (n = 686, sigma_lwe = 2^-15.63, sigma_glwe = 2^-24.56: below the current "
       "128-bit security curve); generate new keys",
}

#: the presets the service offers (API.md: all N = 1024, 128-bit)
PUBLIC_PRESETS = ("fast_128", "standard_128", "conservative_128")


def retired_preset(preset_id: int) -> TfheParameters:
    """The parameters a retired preset id stood for, marked ``insecure`` (below the current
    128-bit curve): for benchmarks that measure what the change of presets cost, never for
    keys anyone uses. Raises KeyError for an id that was never retired."""
    name = {1: "fast_128", 2: "standard_128"}[preset_id]
    pbs, ks = {1: ((8, 2), (3, 4)), 2: ((6, 3), (2, 7))}[preset_id]
    return TfheParameters(
        f"{name}_retired", preset_id, LweDimension(686), GlweDimension(1), PolynomialSize(1024),
        DecompositionBaseLog(pbs[0]), DecompositionLevelCount(pbs[1]), DecompositionBaseLog(ks[0]),
        DecompositionLevelCount(ks[1]), StandardDev(1.9703241702943194e-05), StandardDev(4.053919869756513e-08), 0,
        RETIRED_PRESET_IDS[preset_id], True)


def get_preset(name: "str | TfheParameters") -> TfheParameters:
    if isinstance(name, TfheParameters):
        return name
    try:
        return _PRESETS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"unknown TFHE preset {name!r}", allowed=list(PUBLIC_PRESETS)) from None


def preset_by_id(preset_id: int) -> TfheParameters:
    for p in _PRESETS.values():
        if p.preset_id == preset_id:
            return p
    raise KeyError(preset_id)


def preset_by_fingerprint(fingerprint: bytes) -> TfheParameters:
    """The preset whose :attr:`TfheParameters.fingerprint` this is (the wire frame's
    ``params`` field). Raises KeyError for none."""
    for p in _PRESETS.values():
        if p.fingerprint == bytes(fingerprint):
            return p
    raise KeyError(bytes(fingerprint).hex())


#: Empirical checks of each public preset (benchmarks/bench_tfhe.py --failure-gates, see
#: docs/tfhe.md "Checked empirically"): random gates whose inputs are earlier outputs (MUX
#: outputs included, 10 % with the same ciphertext on both operands); failures counted, measured
#: output variances over the model's V_out (single-bootstrap gates) and V_mux (MUX).
_FAILURE_RUN = (".venv/bin/python benchmarks/bench_tfhe.py --reps 5 --batch 16 --no-openfhe --ratio-rounds "
                "0 --failure-gates 8192 --failure-presets fast_128,standard_128,conservative_128 (2026-12-07)")
MEASURED: dict[str, dict] = {
    "fast_128": {"gates": 8192, "bootstraps": 9347, "failures": 0, "max_abs_error": 0.0219,
                "output_var_single_ratio": 0.956, "output_var_mux_ratio": 0.895, "command": _FAILURE_RUN},
    "standard_128": {"gates": 8192, "bootstraps": 9347, "failures": 0, "max_abs_error": 0.0137,
                    "output_var_single_ratio": 1.029, "output_var_mux_ratio": 0.956, "command": _FAILURE_RUN},
    "conservative_128": {"gates": 8192, "bootstraps": 9347, "failures": 0, "max_abs_error": 0.0042,
                        "output_var_single_ratio": 1.006, "output_var_mux_ratio": 0.956, "command": _FAILURE_RUN},
}


@functools.lru_cache(maxsize=None)
def _published(name: str) -> dict:
    from . import noise, security

    p = get_preset(name)
    sec = security.report(p)
    m = MEASURED.get(name)
    return {
        "name": p.name, "n": p.n, "k": p.k, "big_n": p.big_n,
        "pbs_base_log": int(p.pbs_base_log), "pbs_level": int(p.pbs_level),
        "ks_base_log": int(p.ks_base_log), "ks_level": int(p.ks_level),
        "lwe_noise_std": float(p.lwe_noise_std), "glwe_noise_std": float(p.glwe_noise_std),
        "security_bits": round(sec["bits"], 1), "security_bits_lwe": round(sec["lwe_bits"], 1),
        "security_bits_glwe": round(sec["glwe_bits"], 1), "security_source": sec["source"],
        "p_fail_bound_log2": P_FAIL_BOUND_LOG2[name],
        "p_fail_log2_worst": round(noise.p_fail_log2(p, "worst"), 1),
        "p_fail_log2_typical": round(noise.p_fail_log2(p, "typical"), 1),
        "p_fail_log2_tfhe_rs_model": round(noise.p_fail_log2(p, "generic"), 1),
        "output_noise_std": math.sqrt(noise.output_variance(p)),
        "measured": dict(m) if m else None,
        "source": p.source,
    }


def published_presets() -> list[dict]:
    """What GET /tfhe/pricing publishes per public preset (API.md): the parameters, the
    security estimate of both pairs by the current curves with its source
    (:mod:`wavis.tfhe.security`), the failure bound and the modelled failure probabilities
    (log2 per bootstrap: "worst" — what the bound is checked against —, "typical", and
    TFHE-rs's generic model), and the measured failure run (:data:`MEASURED`). Computed once
    (≈ 0.1 s per preset), then cached; returns fresh dicts."""
    return [{**_published(n), "measured": dict(_published(n)["measured"] or {}) or None} for n in PUBLIC_PRESETS]
