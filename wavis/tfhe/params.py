"""TFHE parameter sets (Boolean gate bootstrapping on the 32-bit torus).

Named sizes follow the field's libraries (TFHE-rs, tfhe-go): :data:`LweDimension` (n),
:data:`GlweDimension` (k), :data:`PolynomialSize` (N), :data:`DecompositionBaseLog`,
:data:`DecompositionLevelCount`, :data:`StandardDev`. A :class:`TfheParameters` is immutable,
validated, and has a fingerprint; every key and ciphertext carries its preset id.

Security comes only from the two (dimension, noise) pairs: the LWE pair (n, σ_lwe) and the
GLWE pair (k·N, σ_glwe), both taken from published 128-bit sets whose authors ran the lattice
estimator. Decomposition bases and levels do not change security; they trade speed for noise
and are chosen here with :mod:`wavis.tfhe.noise` so that each preset meets its failure bound:

=================  ====  ===  ====  =======  =======  ==================================
preset             n     k    N     PBS B/l  KS B/l   p_fail per bootstrap, worst case (bound)
=================  ====  ===  ====  =======  =======  ==================================
fast_128           686   1    1024  2^8 / 2  2^3 / 4  2^-43.3   (≤ 2^-40)
standard_128       686   1    1024  2^6 / 3  2^2 / 7  2^-256.7  (≤ 2^-64)
conservative_128   837   2    1024  2^10/ 2  2^3 / 5  2^-844.3  (≤ 2^-80)
=================  ====  ===  ====  =======  =======  ==================================

p_fail by :func:`wavis.tfhe.noise.p_fail_log2` (model "worst"): margin 1/8 (exact for these
gates), an input error of variance 4 V_mux (two fully correlated operands, e.g. NAND(x, x), each
a MUX output: the largest error any circuit can feed a bootstrap) plus the exact modulus-switching
error, two-sided. Distinct single-bootstrap operands ("typical") give 2^-134.2, 2^-563.2,
2^-1379.4. TFHE-rs's generic model (margin 1/16, 8 V_out) gives 2^-10.9, 2^-48.7 and 2^-165.4; the
tests measure failure rates that match the margin-1/8 model and contradict that one (see
:mod:`wavis.tfhe.noise`). ``testing`` is a tiny, insecure set for fast unit tests only.
"""

from __future__ import annotations

import hashlib
import json
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

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 (16 bytes) of the canonical JSON of every field that changes the scheme."""
        d = {k: v for k, v in asdict(self).items() if k not in ("source",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()[:16]

    def noise(self) -> dict:
        from . import noise

        return noise.report(self)


def fast_128() -> TfheParameters:
    """``fast_128``: n = 686, k = 1, N = 1024; PBS base 2^8, 2 levels; KS base 2^3, 4 levels;
    σ_lwe = 1.9703e-5 (2^-15.63), σ_glwe = 4.0539e-8 (2^-24.56).

    Security: the (n, σ_lwe) and (k·N, σ_glwe) pairs of TFHE-rs's Boolean
    ``GPU_DEFAULT_PARAMETERS`` (tfhe-rs ``boolean/parameters``: "128-bit security", lattice
    estimator). Only the decompositions differ (two PBS levels instead of three: a third fewer
    FFTs per CMUX), which leaves security unchanged.
    Failure per bootstrap: 2^-43.3 worst case (bound ≤ 2^-40): a gate whose two operands are
    the same MUX output (input variance 4 V_mux + exact modulus switching, margin 1/8, two-sided;
    the one-sided truth is half); 2^-134.2 for distinct single-bootstrap operands. TFHE-rs's
    generic model (margin 1/16) gives 2^-10.9 for these parameters; measured failure rates on
    insecure sets match the margin-1/8 model and not that one (tests/test_tfhe.py). Output noise
    std 0.0063 (0.0083 after a MUX), checked against measurement in the tests and over 10^5 gates
    in benchmarks/bench_tfhe.py --failure-gates. A key's Hamming weight (±√n/2) and the key
    switch's key-dependent offset move the worst case by about ±1 bit.
    """
    return _PRESETS["fast_128"]


def standard_128() -> TfheParameters:
    """``standard_128``: n = 686, k = 1, N = 1024; PBS base 2^6, 3 levels; KS base 2^2, 7 levels;
    σ_lwe = 1.9703e-5, σ_glwe = 4.0539e-8.

    TFHE-rs Boolean ``GPU_DEFAULT_PARAMETERS`` (128-bit security by the lattice estimator,
    as stated by TFHE-rs) with one more key-switching level (7 instead of 6: finer rounding).
    Failure per bootstrap: 2^-256.7 worst case (same MUX output on both operands; bound
    ≤ 2^-64), 2^-563.2 for distinct single-bootstrap operands; 2^-48.7 under TFHE-rs's generic
    margin-1/16 model (TFHE-rs states 2^-40 for its 6-level original; we compute 2^-40.1), which
    does not describe these gates (see fast_128 and :mod:`wavis.tfhe.noise`).
    """
    return _PRESETS["standard_128"]


def conservative_128() -> TfheParameters:
    """``conservative_128``: n = 837, k = 2, N = 1024; PBS base 2^10, 2 levels; KS base 2^3,
    5 levels; σ_lwe = 3.3747e-6, σ_glwe = 9.3132e-10.

    TFHE-rs Boolean ``PARAMETERS_ERROR_PROB_2_POW_MINUS_165`` verbatim: "132-bit security"
    (lattice estimator, as stated by TFHE-rs), p-fail 2^-165.4 by TFHE-rs's generic model (we
    compute 2^-165.4 with the same model), so it meets its bound (≤ 2^-80) under either model;
    2^-844.3 worst case / 2^-1379.4 typical by ours. About 1.4× the work of standard_128 per
    bootstrap.
    """
    return _PRESETS["conservative_128"]


_PRESETS: dict[str, TfheParameters] = {
    "fast_128": TfheParameters(
        "fast_128", 1, LweDimension(686), GlweDimension(1), PolynomialSize(1024),
        DecompositionBaseLog(8), DecompositionLevelCount(2), DecompositionBaseLog(3), DecompositionLevelCount(4),
        StandardDev(1.9703241702943194e-05), StandardDev(4.053919869756513e-08), 128,
        "TFHE-rs boolean GPU_DEFAULT_PARAMETERS (n, sigma); decompositions ours"),
    "standard_128": TfheParameters(
        "standard_128", 2, LweDimension(686), GlweDimension(1), PolynomialSize(1024),
        DecompositionBaseLog(6), DecompositionLevelCount(3), DecompositionBaseLog(2), DecompositionLevelCount(7),
        StandardDev(1.9703241702943194e-05), StandardDev(4.053919869756513e-08), 128,
        "TFHE-rs boolean GPU_DEFAULT_PARAMETERS, ks_level 7"),
    "conservative_128": TfheParameters(
        "conservative_128", 3, LweDimension(837), GlweDimension(2), PolynomialSize(1024),
        DecompositionBaseLog(10), DecompositionLevelCount(2), DecompositionBaseLog(3), DecompositionLevelCount(5),
        StandardDev(3.374714376692653e-06), StandardDev(9.313225746198247e-10), 132,
        "TFHE-rs boolean PARAMETERS_ERROR_PROB_2_POW_MINUS_165"),
    # Tiny and INSECURE: unit tests of the plumbing only (never offered by the service).
    "testing": TfheParameters(
        "testing", 255, LweDimension(64), GlweDimension(1), PolynomialSize(256),
        DecompositionBaseLog(8), DecompositionLevelCount(2), DecompositionBaseLog(4), DecompositionLevelCount(4),
        StandardDev(2.0 ** -20), StandardDev(2.0 ** -30), 0, "insecure test set", True),
}

#: the presets the service offers (API.md: all N = 1024, 128-bit)
PUBLIC_PRESETS = ("fast_128", "standard_128", "conservative_128")


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
