"""Bootstrappable CKKS parameter presets: the one place where the prime sizes of every
bootstrapping chain are chosen (``CkksParameters.bootstrappable(name)`` builds them; the
primes themselves come from ``wavis.ring.ntt_primes``, closest below 2^bits).

A chain, bottom-up: q_0 (``first_mod_bits``), ``max_depth`` user primes of ``scale_bits``
(the levels left to the user after each bootstrap), then the bootstrapping primes
(``boot_mod_bits``): SlotsToCoeffs (``stc_bits``, one prime per level of the factored
inverse DFT), EvalMod (``evalmod_bits``: ⌈log2(degree+1)⌉ levels for the Chebyshev
polynomial and one per double-angle step), CoeffsToSlots (``cts_bits``). A bootstrap
consumes all of them and returns a ciphertext at level ``max_depth`` with scale Δ = 2^scale_bits.

Sources of the constants:

* Chain layout and prime sizes: Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, "Efficient
  bootstrapping for approximate homomorphic encryption with non-sparse keys", EUROCRYPT 2021,
  Table 6 (q_0 = 60 bits, 60-bit EvalMod primes, 56/53-bit CoeffsToSlots primes, ~40-bit
  SlotsToCoeffs and user primes); Lattigo v5 ``bootstrapping.DefaultParametersSparse`` (N16QP1546H192H32:
  the same layout, 9 user levels at 2^40; ours has 10, see n65536 below). q_0/Δ_0 = 2^20, and the message enters EvalMod
  multiplied by 2^k (``sine_headroom_bits``), the message ratio q_0/(Δ_0·2^k) = 2^8 of Lattigo's
  defaults (``LogMessageRatio``). The SlotsToCoeffs scale ladder (``stc_headroom_bits``) is ours:
  the stage-by-stage error measurement (``wavis.ckks.bootstrap.diagnostics``,
  ``benchmarks/bootstrap_noise.py``, docs/bootstrapping.md) showed the rounding noise of EvalMod's
  last rescale and of SlotsToCoeffs' first rotations, both relative to the small coefficients at
  Δ = 2^40, as the dominant error at N = 2^16 with the earlier k = 6.
* EvalMod: cos(2π(t − 1/4)/2^r) approximated by Chebyshev interpolation on [−K, K], then r
  double-angle steps (Han–Ki, "Better bootstrapping for approximate HE", CT-RSA 2020, §4;
  Bossuat et al. 2021 §5). K bounds |I| in t = I + m·Δ/q_0 (see
  :func:`wavis.ckks.bootstrap.evalmod.failure_log2`: a Chernoff bound on the sum of h + 1
  uniform terms for a secret of Hamming weight h; Bossuat et al. 2021 §5.1 and Bossuat–
  Troncoso-Pastoriza–Hubaux, "Bootstrapping for approximate HE with negligible failure-
  probability by using sparse-secret encapsulation", ACNS 2022, §3). Degrees/r were chosen
  with the numeric search in ``tests/test_bootstrap.py::test_evalmod_approximation`` so that
  the approximation error before the double angles is ≤ 2^-45.
* Level budgets (factors of the homomorphic DFT): Chen–Chillotti–Song, "Improved
  bootstrapping for approximate HE", EUROCRYPT 2019, §4 (a depth-c factorisation of the
  n-point special FFT into c groups of ⌈log2 n / c⌉ butterfly layers).
* Security: the whole chain (user secret, uniform ternary) is checked against the HE
  Standard table (``wavis.ring.security``). Special primes (``special_mod_bits``): n65536 and
  testing-n1024 use primes below 2^50 (ModUp, the key inner product and ModDown run the 52-bit
  IFMA kernels on those limbs, issue 21) except p_0, which stays 61-bit
  (``first_special_mod_bits``): the sparse-secret encapsulation key lives on (q_0, p_0) only
  (``KeyGenerator.encapsulation_keys``) and needs p_0 > q_0 = 2^60 (or its key-switching noise
  grows by q_0/p_0), while its modulus must stay the ~121 bits the published analysis of the
  h = 32 sparse secret covers (a two-prime P of 50-bit primes would make it 160 bits). n65536:
  p_0 of 61 bits and eight of 50 (P ≈ 2^461, 2^21 above the widest digit; log2 QP 1695 ≤ 1747).
  Until 2026-12-08 n65536 and testing-n1024 used only 61-bit special primes (n65536: eight,
  log2 QP 1722; another fingerprint: keys made then do not load, see
  :meth:`CkksParameters._check_preset`). n32768 keeps two 45-bit special primes (P must exceed a
  one-prime digit by far, and 2 × 61 bits do not fit; its p_0 < q_0 costs 2^15 more noise in
  the level-0 encapsulation key switch, inside its measured 12.9 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BootstrapPreset:
    """One bootstrappable parameter set (see the module docstring for every constant's source).

    Attributes:
        name: the preset's name (REST ``bootstrap_preset``).
        poly_degree, scale_bits, first_mod_bits, special_mod_bits, security_level: as in
            :class:`wavis.ckks.params.CkksParameters`.
        max_depth: levels of scale ≥ 2^scale_bits left to the user after each bootstrap.
        stc_bits / evalmod_bits / cts_bits: prime sizes of the SlotsToCoeffs, EvalMod and
            CoeffsToSlots levels (bottom-up; their counts are the level budgets).
        eval_mod_k: K, half-width of the EvalMod interval (|I| + 1 must stay below it).
        double_angle: r, the number of double-angle steps.
        cheb_degree: degree of the Chebyshev approximation of cos(2π(t − 1/4)/2^r).
        dnum: key-switching digits.
        bootstrap_hamming_weight: h of the secret the bootstrap runs under (None: the user's
            uniform ternary secret, bounded by h ≤ N; an int: sparse-secret encapsulation).
        sine_headroom_bits: k, the message is multiplied by 2^k before ModRaise, so EvalMod sees
            ε = m·Δ_0·2^k/q_0 per coefficient (message ratio q_0/(Δ_0·2^k)). A larger k puts
            2^k more signal against the rounding noise of CoeffsToSlots and EvalMod (the
            dominant error at N = 2^16, ``benchmarks/bootstrap_noise.py``), at a relative error
            (2π·ε)²/6 of the sine: negligible for full-slot random data, whose coefficients are
            ~|x|/√n, but 2^-13.3 for a constant vector at k = 12 (every slot's mass in one
            coefficient; ``input_range=R`` lowers the effective k by log2 R). k = 12 is Lattigo's
            default ratio (``LogMessageRatio`` = 8 with q_0/Δ_0 = 2^20).
        stc_headroom_bits: h, the SlotsToCoeffs input carries the message at 2^(scale_bits + h)
            (a straight log ladder down to Δ_L = 2^scale_bits over the SlotsToCoeffs levels,
            :attr:`CkksParameters.level_scales`): the coefficients are ~√n times smaller than the
            slots they become, so their rounding noise needs this headroom; it also lifts the
            EvalMod output scale to Δ_{L+s}·q_0/(2π·Δ_0·2^k) = 2^(scale_bits + h + 20 − 2.65 − k),
            kept just under the 60-bit EvalMod primes (h = k + 2).
        precision_bits: the measured mean precision (−log2 |error| averaged over all N/2 slots,
            uniform [−1, 1] real inputs, level-0 input; docs/bootstrapping.md gives the command), None if
            not measured.
        meta_bits: k_2 of META-BTS (``Bootstrapper(iterations=2)``; Bae et al., CCS 2022, §3): the
            first bootstrap's error is multiplied by 2^k_2 before the second bootstrap. Chosen as
            ⌊the measured minimum precision⌋ − 4, so the amplified error stays ≤ 2^-4·R and well
            inside the range the second bootstrap is accurate for; the second bootstrap's own error
            (absolute, ~2^-precision_bits) then returns divided by 2^k_2, below the rescale noise
            of the output level.
        arcsine_degree: a, 0 (none) or the odd degree ≥ 3 of the arcsine correction evaluated after
            the double angles (:mod:`wavis.ckks.bootstrap.evalmod`); its ⌈log2(a + 1)⌉ levels are
            part of ``evalmod_bits``. With it the sine's error no longer depends on how the data's
            energy is spread, so every slot count uses the full headroom k.
        precision_bits_meta: the measured mean precision with META-BTS (same measurement as
            ``precision_bits``: against the encoded input, so a public-key encryption's own noise,
            2^-22.7 at N = 2^16 and 2^-28.7 at N = 2^10, caps it; against the decrypted input META-BTS
            gives 26.4 bits at N = 2^16 and 32.4 at N = 2^10, docs/bootstrapping.md), None if not
            measured.
        first_special_mod_bits: size of the first special prime p_0 in bits when it differs from
            ``special_mod_bits`` (None: the same): p_0 is the P of the (q_0, p_0) sparse-secret
            encapsulation key and must exceed q_0, the others run the IFMA kernels below 2^50
            (:attr:`CkksParameters.special_moduli`).
    """

    name: str
    poly_degree: int
    security_level: str
    scale_bits: int
    first_mod_bits: int
    max_depth: int
    stc_bits: tuple[int, ...]
    evalmod_bits: tuple[int, ...]
    cts_bits: tuple[int, ...]
    eval_mod_k: int
    double_angle: int
    cheb_degree: int
    dnum: int
    special_mod_bits: int = 61
    bootstrap_hamming_weight: int | None = None
    sine_headroom_bits: int = 0
    stc_headroom_bits: int = 0
    precision_bits: float | None = None
    meta_bits: int = 12
    arcsine_degree: int = 0
    precision_bits_meta: float | None = None
    first_special_mod_bits: int | None = None

    @property
    def boot_mod_bits(self) -> tuple[int, ...]:
        return self.stc_bits + self.evalmod_bits + self.cts_bits

    @property
    def boot_depth(self) -> int:
        return len(self.boot_mod_bits)

    def check(self) -> None:
        """Internal consistency (EvalMod levels = ⌈log2(d+1)⌉ + r (+ ⌈log2(a+1)⌉ with the arcsine
        correction)). Raises ValueError."""
        need = max(1, math.ceil(math.log2(self.cheb_degree + 1))) + self.double_angle
        if self.arcsine_degree:
            if self.arcsine_degree < 3 or self.arcsine_degree % 2 == 0:
                raise ValueError(f"preset {self.name}: arcsine_degree must be 0 or odd ≥ 3")
            need += math.ceil(math.log2(self.arcsine_degree + 1))
        if len(self.evalmod_bits) != need:
            raise ValueError(f"preset {self.name}: EvalMod needs {need} levels, has {len(self.evalmod_bits)}")
        if self.first_special_mod_bits is not None and not 20 <= self.first_special_mod_bits <= 61:
            raise ValueError(f"preset {self.name}: first_special_mod_bits must be in 20..61")


def _p(**kw) -> BootstrapPreset:
    p = BootstrapPreset(**kw)
    p.check()
    return p


BOOTSTRAP_PRESETS: dict[str, BootstrapPreset] = {
    p.name: p for p in (
        # N = 2^16, 128-bit (log2 QP = 1695 ≤ 1747, HE Standard): 10 user levels at ≥ 2^40, then
        # SlotsToCoeffs 3 × 40 bits (scales 2^54 → 2^40), EvalMod 8 × 60 bits (K = 16, r = 2,
        # degree 63: the same precision as r = 3 with degree 39 at one level fewer, which became
        # the tenth user level; the baby-step giant-step evaluation keeps its cost close),
        # CoeffsToSlots 3 × 58 bits; message ratio 2^8 (k = 12); sparse-secret encapsulation
        # h = 32 (OpenFHE SPARSE_ENCAPSULATED, K = 16); dnum = 3 (the fewest digits that fit the
        # bound), 9 special primes: p_0 of 61 bits (the (q_0, p_0) encapsulation key) and eight of 50
        # (IFMA; P 2^21 above the widest digit).
        _p(name="n65536", poly_degree=65536, security_level="128-bit", scale_bits=40, first_mod_bits=60,
           max_depth=10, stc_bits=(40, 40, 40), evalmod_bits=(60,) * 8, cts_bits=(58, 58, 58),
           eval_mod_k=16, double_angle=2, cheb_degree=63, dnum=3, bootstrap_hamming_weight=32,
           sine_headroom_bits=12, stc_headroom_bits=14, precision_bits=22.0, meta_bits=15,
           precision_bits_meta=22.7, special_mod_bits=50, first_special_mod_bits=61),
        # N = 2^15, 128-bit (log2 QP = 870 ≤ 881): the same pipeline squeezed into half the
        # modulus: 2 user levels at 2^40, 50-bit EvalMod primes (≈ 10 bits less EvalMod precision),
        # CoeffsToSlots 60 + 50 bits (the first factor reads the ModRaise output at scale q_0 = 2^60,
        # so its diagonals are encoded at Δ·q/q_0: a 50-bit prime there left them 2^40 and the
        # stage at 12 bits in the same-structure N = 2^13 measurement), one prime per key-switching
        # digit and P = two 45-bit primes (one 61-bit prime, barely above a digit, made key
        # switching noisy); k = 12, h = 4 keep the EvalMod output just under its 50-bit primes.
        _p(name="n32768", poly_degree=32768, security_level="128-bit", scale_bits=40, first_mod_bits=60,
           max_depth=2, stc_bits=(40, 40), evalmod_bits=(50,) * 9, cts_bits=(50, 60),
           eval_mod_k=16, double_angle=3, cheb_degree=39, dnum=16, bootstrap_hamming_weight=32,
           special_mod_bits=45, sine_headroom_bits=12, stc_headroom_bits=4, meta_bits=8,
           precision_bits=12.9, precision_bits_meta=20.9),
        # Small insecure rings for the test suite: the N = 2^16 layout (sparse-secret encapsulation,
        # h = 32, K = 16 as OpenFHE's K_SPARSE_ENCAPSULATED, r = 2, degree 63, p_0 of 61 bits and five
        # 50-bit special primes, P 2^13 above its widest digit) with fewer user levels …
        _p(name="testing-n1024", poly_degree=1024, security_level="testing", scale_bits=40, first_mod_bits=60,
           max_depth=2, stc_bits=(40, 40, 40), evalmod_bits=(60,) * 8, cts_bits=(58, 58, 58),
           eval_mod_k=16, double_angle=2, cheb_degree=63, dnum=4, bootstrap_hamming_weight=32, sine_headroom_bits=12,
           stc_headroom_bits=14, precision_bits=28.0, meta_bits=22,
           precision_bits_meta=28.7, special_mod_bits=50, first_special_mod_bits=61),
        # … the same with the arcsine correction of degree 3 (two more 60-bit EvalMod levels; Lattigo's
        # ArcSineDegree): the sine's y²/6 error is gone, so every slot count uses k_n = k = 12 …
        _p(name="testing-n1024-arcsine", poly_degree=1024, security_level="testing", scale_bits=40,
           first_mod_bits=60, max_depth=2, stc_bits=(40, 40, 40), evalmod_bits=(60,) * 10, cts_bits=(58, 58, 58),
           eval_mod_k=16, double_angle=2, cheb_degree=63, dnum=4, bootstrap_hamming_weight=32, sine_headroom_bits=12,
           stc_headroom_bits=14, arcsine_degree=3, meta_bits=22,
           precision_bits=28.7, precision_bits_meta=28.7),
        # … and the dense user secret inside the bootstrap (h ≤ N = 1024 → K = 84, r = 5).
        _p(name="testing-n1024-dense", poly_degree=1024, security_level="testing", scale_bits=40,
           first_mod_bits=60, max_depth=2, stc_bits=(40, 40, 40), evalmod_bits=(60,) * 11, cts_bits=(58, 58, 58),
           eval_mod_k=84, double_angle=5, cheb_degree=63, dnum=4, precision_bits=16.0, meta_bits=10,
           precision_bits_meta=25.7),
    )
}
