"""The CKKS bootstrapping pipeline: ModRaise → (SubSum) → CoeffsToSlots → EvalMod → SlotsToCoeffs.

Sources: Cheon–Han–Kim–Kim–Song, "Bootstrapping for approximate homomorphic encryption",
EUROCRYPT 2018 (the pipeline, sparse packing by the trace/SubSum, §4); Chen–Chillotti–Song,
"Improved bootstrapping for approximate HE", EUROCRYPT 2019 (factored DFT with level budgets,
§4); Han–Ki, CT-RSA 2020 (cosine + double angle, hybrid key switching); Bossuat et al.,
EUROCRYPT 2021 (scale management: every stage lands on exact target scales, §4–5).

Scale bookkeeping (the chain of a bootstrap preset, see ``CkksParameters.level_scales``):
the input is brought to level 0 at exactly Δ_0 (``bring_to``), so ModRaise yields
t = I + m·Δ_0/q_0 per coefficient, read at scale q_0 at the top level. CoeffsToSlots puts
u = t/K into the slots at the canonical scale of the top EvalMod level; EvalMod returns
sin(2πt) at Δ_{L+s}·q_0/(2πΔ_0), which *is* the message at the canonical Δ_{L+s} (relabelled);
SlotsToCoeffs lands on Δ_L = 2^scale_bits at level L = max_depth.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ...errors import KeyMismatchError, MissingKeyError, ParameterError, ScaleMismatchError
from .. import keyswitch as ks
from ..evaluator import Evaluator
from ..keys import galois_element
from ..linalg import LinearTransform, Workspace
from ..params import CkksParameters
from ..polynomial import evaluate_polynomial
from ..structures import Ciphertext, EvaluationKeys, KeySwitchingKey
from . import dft
from .evalmod import approximation_error_log2, arcsine_coefficients, cosine_coefficients, failure_log2

SCALE_TOLERANCE = 2.0**-20
# Baby/giant split of the DFT factors (LinearTransform(giant_cost=...)): double-hoisted, a giant
# rotation (ModDown + a whole key switch) costs ~5 baby rotations (one key-switching inner product;
# measured at N = 2^14 and 2^16, avx2). Weighting giants by 3 instead of 5 keeps most of the saving
# (at N = 2^16 full slots: 28 giant and 62 baby rotations against 44 and 38 with ⌈√span⌉ baby steps,
# ~22 % fewer key-switching costs) for 4 Galois keys more (42 → 46); 5 would need 56 keys for ~6 % more.
DFT_GIANT_COST = 3.0
# NTT-domain plaintexts a bootstrap DFT factor keeps (LinearTransform.NTT_CACHE_BYTES, per factor):
# at N = 2^16 full slots the two factors of the longest butterflies hold 553 MB (CoeffsToSlots, level
# 24 over Q·P) and 335 MB (SlotsToCoeffs, level 11); kept, they save lifting + NTT'ing 1 696 rows of
# 2^16 coefficients per bootstrap (~1.5 s of CPU on one avx2 core). The factors are shared by every
# key of a context (_shared_transforms), so this is ~0.96 GB per context and configuration (1.15 GB with the
# rounded coefficients and diagonals; 1.58 GB with the context's idle baby-rotation workspace, _WORKSPACES:
# Bootstrapper.cache_bytes, which the service's admission counts).
BOOTSTRAP_NTT_CACHE_BYTES = 1 << 30
# Baby steps of the Chebyshev evaluation in EvalMod (polynomial.evaluate_polynomial): B = 8 is the
# fewest non-scalar products for degree 39 (13, against 24 without; B = 4: 15, B = 16: 18); for
# degree 63 with lazy relinearization, B = 8 and B = 4 both take 15 key switches per part (B = 16: 21).
EVALMOD_BABY_STEPS = 8
# META-BTS: the largest error amplification 2^k_2 accepted (k_2 = 30 already puts the second
# bootstrap's own error ~2^-52 below the output's rescale noise floor at every preset).
MAX_META_BITS = 30


def _preset(params: CkksParameters):
    from ..presets import BOOTSTRAP_PRESETS

    if not isinstance(params, CkksParameters):
        raise ParameterError(f"expected CkksParameters, got {type(params).__name__}")
    if params.bootstrap_preset is None:
        raise ParameterError(
            "these parameters have no bootstrap preset: build them with CkksParameters.bootstrappable(name) "
            f"(presets: {sorted(BOOTSTRAP_PRESETS)})", field="bootstrap_preset", presets=sorted(BOOTSTRAP_PRESETS))
    return BOOTSTRAP_PRESETS[params.bootstrap_preset]


def _check_slots(params: CkksParameters, slots: int | None) -> int:
    full = params.slot_count
    if slots is None:
        return full
    if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or slots < 1 or slots > full \
            or slots & (slots - 1):
        raise ParameterError(f"slots must be a power of two in 1..{full}, got {slots!r}", field="slots")
    return int(slots)


@dataclass(frozen=True)
class BootstrapKeyPlan:
    """What a bootstrap configuration needs, computed before any key exists.

    Attributes:
        galois_steps: the rotation steps (normalised to [0, N/2)), sorted.
        galois_elements: their Galois elements 5^step mod 2N, plus 2N−1 for conjugation.
        conjugation: always True (the real/imaginary split needs it).
        relinearization: always True (EvalMod multiplies ciphertexts).
        encapsulation_hamming_weight: h of the sparse-secret encapsulation keys the preset needs
            (``KeyGenerator.evaluation_keys(encapsulation_hamming_weight=h)``), or None.
        key_count: relinearization key + Galois keys (+ 2 encapsulation keys).
        key_bytes: the size in bytes of the serialized EvaluationKeys (``wavis.serialize.dumps``,
            seeded compact format) holding exactly these keys.
    """

    galois_steps: tuple[int, ...]
    galois_elements: tuple[int, ...]
    conjugation: bool
    relinearization: bool
    encapsulation_hamming_weight: int | None
    key_count: int
    key_bytes: int


class Bootstrapper:
    """Refreshes CKKS ciphertexts of a bootstrappable parameter set.

    Args:
        params: parameters built with ``CkksParameters.bootstrappable(preset)``.
        eval_keys: evaluation keys holding the relinearization key, conjugation and the
            Galois keys of :meth:`key_plan` (generate them with ``KeyGenerator.evaluation_keys(
            galois_steps=plan.galois_steps, conjugation=True)``).
        slots: n, the number of slots of the messages (a power of two ≤ N/2; default N/2, full
            packing). With n < N/2 (sparse packing) the message must be n-periodic in the N/2
            slots (encode ``np.tile(values, N // 2 // n)``), as in Cheon et al. 2018 §4.3.
        input_range: R, the declared bound |x| ≤ R of every slot's real and imaginary part
            (default 1). R > 1 scales the message down by R before ModRaise (inside ``bring_to``,
            so the input must be at level ≥ 1) and back up in SlotsToCoeffs.
        evaluator: an Evaluator of these keys (default: a new one).
        sine_headroom_bits: k_n, the headroom this bootstrap uses, 0..the preset's k (default:
            the slot-count rule of :func:`_sine_headroom_bits`; lower it for data whose energy
            sits in few coefficients, e.g. near-constant vectors, where the sine's error
            (2π·m·2^(k_n − 20))²/6 dominates; higher is more precise for spread-out data).
        iterations: 1 (default) or 2: META-BTS, the two-iteration refinement of Bae, Cheon, Cho,
            Kim, Kim, "META-BTS: Bootstrapping precision beyond the limit", CCS 2022, §3
            (see :meth:`bootstrap`). :meth:`bootstrap` also takes ``iterations=`` per call.
        meta_bits: k_2, the error of the first bootstrap is multiplied by 2^k_2 before the second
            (default: the preset's ``meta_bits``, chosen so that 2^k_2 times the largest measured
            first-bootstrap error stays ≤ 2^-4·R); 1..30.

    Raises:
        ParameterError: parameters without a bootstrap preset, bad slots/range/iterations/meta_bits.
        KeyMismatchError: keys of other parameters.
        ParameterError (at :meth:`bootstrap`, field ``input_range``): an R whose scaling 1/R the
            chain cannot carry at the input's level (e.g. R = 2^-13 on ``testing-n1024``; the
            constant's encoding scale must stay in [Δ_1·2^-4, 2^62)).
    """

    def __init__(self, params: CkksParameters, eval_keys: EvaluationKeys | None, *, slots: int | None = None,
                 input_range: float = 1.0, evaluator: Evaluator | None = None, backend=None,
                 sine_headroom_bits: int | None = None, iterations: int = 1,
                 meta_bits: int | None = None) -> None:
        self.preset = _preset(params)
        self.params = params
        self.slots = _check_slots(params, slots)
        try:
            rng = float(input_range)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"input_range must be a number: {exc}", field="input_range") from exc
        if not (math.isfinite(rng) and 0 < rng <= 2.0**10):
            raise ParameterError(f"input_range must be in (0, 1024], got {input_range!r}", field="input_range")
        self.input_range = rng
        if evaluator is None:
            evaluator = Evaluator(params, eval_keys, backend=backend)
        elif evaluator.params.fingerprint != params.fingerprint:
            raise KeyMismatchError("the evaluator belongs to other parameters")
        self.ev = evaluator
        self.eval_keys = evaluator.eval_keys
        self.backend = evaluator.backend
        self.ctx = evaluator.context.ring
        k_n = _sine_headroom_bits(self.preset, self.slots)
        if sine_headroom_bits is not None:
            if isinstance(sine_headroom_bits, bool) or not isinstance(sine_headroom_bits, int) \
                    or not 0 <= sine_headroom_bits <= self.preset.sine_headroom_bits:
                raise ParameterError(f"sine_headroom_bits must be an integer in 0..{self.preset.sine_headroom_bits} "
                                     f"(the preset's k), got {sine_headroom_bits!r}", field="sine_headroom_bits")
            k_n = sine_headroom_bits
        self.sine_headroom_bits = k_n
        # a sparse bootstrap enters EvalMod 2^(k − k_n) lower and SlotsToCoeffs scales it back
        scale_back = rng * 2.0 ** (self.preset.sine_headroom_bits - self.sine_headroom_bits)
        context = evaluator.context
        self._transforms = _shared_transforms(context, params, self.preset, self.slots, scale_back, DFT_GIANT_COST)
        self._transforms_key = (params.fingerprint, self.slots, float(scale_back), DFT_GIANT_COST)
        if self._lacks_keys(self._transforms):  # keys made for the ⌈√span⌉ split (before the cost-weighted one)
            legacy = _shared_transforms(context, params, self.preset, self.slots, scale_back, None)
            if not self._lacks_keys(legacy):
                self._transforms = legacy
                self._transforms_key = (params.fingerprint, self.slots, float(scale_back), None)
        pre = self.preset
        self.k = pre.eval_mod_k
        self.cheb = np.asarray(cosine_coefficients(pre.eval_mod_k, pre.double_angle, pre.cheb_degree))
        self._monomial_cache: dict[tuple[int, int], object] = {}
        self._down: KeySwitchingKey | None = None
        self.iterations = _check_iterations(iterations)
        if meta_bits is None:
            meta_bits = self.preset.meta_bits
        if isinstance(meta_bits, bool) or not isinstance(meta_bits, (int, np.integer)) \
                or not 1 <= meta_bits <= MAX_META_BITS:
            raise ParameterError(f"meta_bits must be an integer in 1..{MAX_META_BITS}, got {meta_bits!r}",
                                 field="meta_bits")
        self.meta_bits = int(meta_bits)
        self._meta_stc: list[LinearTransform] | None = None

    # -- planning -------------------------------------------------------------------------------
    @staticmethod
    def key_plan(params: CkksParameters, slots: int | None = None) -> BootstrapKeyPlan:
        """The exact Galois steps, conjugation and relinearization keys a bootstrap of
        ``slots`` slots needs, and the serialized size of that key set (bytes), without
        generating anything. Raises ParameterError (no preset, bad slots)."""
        pre = _preset(params)
        slots = _check_slots(params, slots)
        steps = _galois_steps(_build_transforms(params, pre, slots, 1.0, DFT_GIANT_COST), params, slots)
        n = params.poly_degree
        elts = sorted({galois_element(s, n) for s in steps} | {2 * n - 1})
        h = pre.bootstrap_hamming_weight
        return BootstrapKeyPlan(tuple(steps), tuple(elts), True, True, h, 1 + len(elts) + (2 if h else 0),
                                _key_set_bytes(params, len(elts), h is not None))

    @staticmethod
    def cache_bytes(params: CkksParameters, slots: int | None = None, iterations: int = 1) -> int:
        """Bytes of the encoded DFT factors a bootstrap of ``slots`` slots keeps resident after
        its first use, without encoding anything: for every CoeffsToSlots and SlotsToCoeffs
        factor, its diagonals, their rounded coefficients and the NTT-domain plaintexts at the
        level it runs at over Q_ℓ·P (double hoisting), up to ``BOOTSTRAP_NTT_CACHE_BYTES`` per
        factor (``LinearTransform.cache_bytes``); ``iterations`` = 2 (META-BTS) adds the
        scaled copy of the last SlotsToCoeffs factor; plus the one idle scratch
        :class:`~wavis.ckks.linalg.Workspace` a context keeps for the baby rotations
        (``_take_workspace``, 0.44 GB at N = 2^16). Shared by every Bootstrapper of one
        context and configuration (``SHARED_TRANSFORMS``). At N = 2^16, full slots: 1.58 GB.
        Raises ParameterError (no preset, bad slots or iterations)."""
        pre = _preset(params)
        slots = _check_slots(params, slots)
        iterations = _check_iterations(iterations)
        key = (params.fingerprint, slots, iterations, BOOTSTRAP_NTT_CACHE_BYTES)
        found = _CACHE_BYTES.get(key)
        if found is not None:
            return found
        t = _build_transforms(params, pre, slots, 1.0, DFT_GIANT_COST)
        special = len(params.special_index())
        n = params.poly_degree
        total = 0
        for i, lt in enumerate(t["cts"]):  # factor i reads level top_level − i
            total += lt.cache_bytes(n, params.top_level - i + 1 + special)
        top_stc = params.max_depth + len(pre.stc_bits)
        for j, lt in enumerate(t["stc"]):
            total += lt.cache_bytes(n, top_stc - j + 1 + special)
        if iterations == 2:  # META-BTS: the last factor times 2^-k_2 (_shared_meta_stc)
            total += t["stc"][-1].cache_bytes(n, params.max_depth + 1 + 1 + special)
        total += 8 * _workspace_words(t, params, pre)  # the context's idle Workspace (_take_workspace)
        _CACHE_BYTES[key] = total
        return total

    def galois_steps(self) -> list[int]:
        """The rotation steps this bootstrapper uses (see :meth:`key_plan`; with evaluation keys
        made for the earlier ⌈√span⌉ baby-step split, that split's steps)."""
        return _galois_steps(self._transforms, self.params, self.slots)

    def _lacks_keys(self, transforms) -> bool:
        """Whether the evaluation keys miss a rotation step of ``transforms``."""
        have = set(self.eval_keys.galois_keys) if self.eval_keys is not None else set()
        n = self.params.poly_degree
        return any(galois_element(s, n) not in have for s in _galois_steps(transforms, self.params, self.slots))

    @property
    def output_level(self) -> int:
        """The level of every bootstrapped ciphertext: max_depth (the user's top level)."""
        return self.params.max_depth

    @property
    def effective_degree(self) -> int:
        """Degree of the EvalMod approximation as a polynomial in t: d·2^r (times a with the
        arcsine correction of degree a)."""
        p = self.preset
        return p.cheb_degree * 2**p.double_angle * max(1, p.arcsine_degree)

    def failure_probability_log2(self) -> float:
        """log2 of the bound on the probability that a bootstrap fails (some |I| ≥ K − 1);
        h = N (a uniform ternary secret has at most N non-zero coefficients) or the
        encapsulated sparse secret's weight. See :func:`evalmod.failure_log2`."""
        h = self.preset.bootstrap_hamming_weight or self.params.poly_degree
        return failure_log2(self.k, h, self.params.poly_degree)

    def approximation_error_log2(self) -> float:
        """log2 of the largest EvalMod approximation error |EvalMod(t) − sin(2πt)| (with the
        arcsine correction: − 2π(t − I)) (NumPy model, :func:`evalmod.approximation_error_log2`)."""
        p = self.preset
        return approximation_error_log2(p.eval_mod_k, p.double_angle, p.cheb_degree, p.arcsine_degree)

    # -- stages ---------------------------------------------------------------------------------
    def check_input(self, ct: Ciphertext) -> None:
        """The input contract. Raises ParameterError (not a Ciphertext, or size 3: relinearize
        first), KeyMismatchError, ScaleMismatchError (the scale is not its level's canonical
        scale), ParameterError (input_range > 1 at level 0)."""
        ev = self.ev
        if not isinstance(ct, Ciphertext):
            raise ParameterError(f"bootstrap takes a Ciphertext, got {type(ct).__name__}")
        if ct.size != 2:
            raise ParameterError("bootstrap needs a relinearized (size-2) ciphertext: call relinearize first",
                                 size=int(ct.size))
        ev._check_rotatable(ct)  # noqa: SLF001  (fingerprint, key tag, shape; as linalg does)
        if ct.level > self.params.max_level:
            raise ParameterError(f"the ciphertext is at level {ct.level}, above the user's top level "
                                 f"{self.params.max_level}; it needs no bootstrap", level=int(ct.level),
                                 max_level=int(self.params.max_level),
                                 allowed_levels=[0, int(self.params.max_level)])
        canonical = self.params.level_scale(ct.level)
        if abs(ct.scale - canonical) > SCALE_TOLERANCE * canonical:
            raise ScaleMismatchError(
                f"bootstrap needs the canonical scale of the ciphertext's level: level {ct.level} has "
                f"2^{math.log2(canonical):.4f}, the ciphertext 2^{math.log2(ct.scale):.4f}; encrypt at the "
                "default scale (Encoder.encode without scale=) or bring it there with Evaluator.bring_to",
                scale_bits=math.log2(ct.scale), canonical_scale_bits=math.log2(canonical), level=int(ct.level))
        if self.input_range != 1.0 and ct.level == 0:
            raise ParameterError("input_range ≠ 1 scales the message by 1/R on the way to level 0, so the "
                                 "ciphertext must be at level ≥ 1", level=0)

    def _switch(self, ct: Ciphertext, ksk: KeySwitchingKey) -> Ciphertext:
        """(c_0, c_1) → (c_0 + d_0, d_1) with (d_0, d_1) the key switch of c_1 under ``ksk``."""
        d0, d1 = self.ev.key_switch(self.ctx.asarray(ct.data[1]), ct.level, ksk)
        idx = list(range(ct.level + 1))
        out = self.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
        self.ctx.add(self.ctx.asarray(ct.data[0]), d0, out[0], idx)
        out[1] = d1
        return Ciphertext(out, ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def _to_sparse(self, ct: Ciphertext) -> Ciphertext:
        """Level 0, s → s': hybrid key switching with one digit (q_0) and P = p_0 only (the
        encapsulation key exists only modulo q_0·p_0; Bossuat et al., ACNS 2022, §3)."""
        p0 = self.params.special_index()[0]
        acc = ks.key_switch_ext(self.ctx, self.ctx.asarray(ct.data[1]), self._dense_to_sparse_key().data, [0], [p0],
                                [(0, 1)])
        d = ks.mod_down_ntt(self.ctx, acc, [0], [p0])
        out = self.ctx.zeros(2).reshape(2, 1, -1)
        self.ctx.add(self.ctx.asarray(ct.data[0]), d[0], out[0], [0])
        out[1] = d[1]
        return Ciphertext(out, 0, ct.scale, ct.params_fingerprint, ct.key_tag)

    def _dense_to_sparse_key(self) -> KeySwitchingKey:
        """The s → s' key spread onto the full prime index (zero rows elsewhere: the key
        switch reads only the rows of q_0 and p_0)."""
        if self._down is None:
            p = self.params
            small = self.eval_keys.encapsulation.dense_to_sparse.data
            full = self.ctx.zeros(2 * len(p.all_moduli)).reshape(1, 2, len(p.all_moduli), -1)
            rows = [0, p.special_index()[0]]
            small = self.ctx.asarray(small)
            for c in range(2):
                full[0, c][rows] = small[0, c]
            self._down = KeySwitchingKey(full)
        return self._down

    def mod_raise(self, ct: Ciphertext) -> Ciphertext:
        """Level ≥ 0 → the top level: (bring_to level 0 at Δ_0/R, then, with sparse-secret
        encapsulation, switch to the sparse secret s' at level 0,) lift (c_0, c_1) mod q_0
        centred to every prime (and switch back to s). Returns a ciphertext at
        ``params.top_level`` labelled with scale q_0: its message is t = I + m·Δ_0·2^k/(R·q_0) per
        coefficient (k = :attr:`sine_headroom_bits`, see :func:`_sine_headroom_bits`), |I| ≤ (h+1)/2 for the secret's
        Hamming weight h."""
        p = self.params
        x = ct
        boost = 2.0**self.sine_headroom_bits
        if x.level > 0:  # exactly m·Δ_0·2^k/R
            try:
                x = self.ev.bring_to(x, 0, p.level_scale(0) * boost / self.input_range)
            except ScaleMismatchError as exc:
                if self.input_range == 1.0:  # check_input saw a canonical scale: not expected
                    raise
                # the input's scale is canonical (check_input), so it is R that the constant
                # m·Δ_0·2^k/R cannot carry (its encoding scale leaves [Δ_1·2^-4, 2^62)): say so,
                # instead of blaming the ciphertext's scale
                raise ParameterError(
                    f"input_range {self.input_range!r} is out of reach of these parameters at level {ct.level}: "
                    f"scaling the message by 1/R on the way to level 0 would need a constant the chain cannot "
                    f"encode (a much smaller R overflows, a much larger one loses its precision); declare a "
                    f"bound nearer 1", field="input_range", input_range=self.input_range,
                    level=int(ct.level)) from exc
        elif boost != 1.0:  # level 0 (R = 1): times the integer 2^k, no level needed
            x = self._times_integer(x, 1 << self.sine_headroom_bits)
            x.scale = ct.scale * boost
        encaps = self.preset.bootstrap_hamming_weight is not None
        if encaps:
            x = self._to_sparse(x)
        ctx = self.ctx
        q0 = p.moduli[0]
        raw = ctx.asarray(np.ascontiguousarray(ctx.to_numpy(x.data)[:, :1, :]))
        idx_all = list(range(p.top_level + 1))
        out = ctx.zeros(2 * len(idx_all)).reshape(2, len(idx_all), -1)
        for c in range(2):
            a = raw[c].copy()
            ctx.intt(a, [0])
            v = ctx.to_numpy(a)[0].astype(np.int64)
            v = np.where(v > q0 // 2, v - q0, v)
            lifted = ctx.from_signed(v, idx_all)
            ctx.ntt(lifted, idx_all)
            out[c] = lifted
        raised = Ciphertext(out, p.top_level, float(q0), ct.params_fingerprint, ct.key_tag)
        if encaps:
            raised = self._switch(raised, self.eval_keys.encapsulation.sparse_to_dense)
        return raised

    def sub_sum(self, ct: Ciphertext) -> Ciphertext:
        """Sparse packing: Σ over the subgroup <5^n> of the Galois group (log2(N/(2n)) rotations
        by n·2^i), which keeps the coefficients of Y^k = X^{N/(2n)·k} times N/(2n) and removes
        the others (Cheon et al. 2018 §4.3). Identity for full packing."""
        out = ct
        step = self.slots
        while step < self.params.slot_count:
            out = self.ev.add(out, self.ev.rotate(out, step))
            step <<= 1
        return out

    def _times_i(self, ct: Ciphertext, power: int) -> Ciphertext:
        """ct · i^power exactly: multiplication by the monomial X^{power·N/2} (no level, no noise:
        every slot ζ^{5^j·N/2} = i)."""
        power %= 4
        if power == 0:
            return ct
        key = (ct.level, power)
        pt = self._monomial_cache.get(key)
        if pt is None:
            from ..encoder import Encoder

            enc = Encoder(self.ev.context)
            pt = enc.encode(np.full(self.params.slot_count, 1j**power), level=ct.level, scale=1.0)
            self._monomial_cache[key] = pt
        out = self.ev.multiply_plain(ct, pt, rescale=False)
        out.scale = ct.scale
        return out

    def coeffs_to_slots(self, ct: Ciphertext, workspace: Workspace | None = None) -> list[Ciphertext]:
        """The factored homomorphic U^{-1} (one level per factor), then the real split:
        full packing → [Re, Im] (two ciphertexts, real values t_k/K and t_{k+n}/K in
        bit-reversed order); sparse → [one ciphertext with both halves in 2n slots]."""
        x = self._apply_factors(self._transforms["cts"], ct, workspace)
        conj = self.ev.conjugate(x)
        if self.slots == self.params.slot_count:
            re = self.ev.add(x, conj)
            im = self._times_i(self.ev.subtract(x, conj), 3)  # −i(w − w̄) = 2·Im(w)
            return [re, im]
        return [self.ev.add(x, conj)]

    def eval_mod(self, ct: Ciphertext) -> Ciphertext:
        """u = t/K (canonical scale of the top EvalMod level) → sin(2πt) (r double angles after
        the Chebyshev polynomial; with the preset's ``arcsine_degree`` a, then the degree-a arcsine
        Taylor polynomial, ⌈log2(a+1)⌉ levels: ≈ 2π(t − I)), relabelled as the message at the
        canonical scale of the top SlotsToCoeffs level."""
        ev = self.ev
        c = evaluate_polynomial(ev, ct, self.cheb, basis="chebyshev", baby_steps=EVALMOD_BABY_STEPS)
        for _ in range(self.preset.double_angle):
            sq = ev.multiply(c, c)
            c = ev.add_scalar(ev.add(sq, sq), -1.0)
        top_stc = self.params.max_depth + len(self.preset.stc_bits)
        if self.preset.arcsine_degree:  # arcsin(sin(2πt)) = 2π(t − I): the sine's y²/6 removed
            # it lands where the sine would: Δ_{top_stc+1}²/q_{top_stc+1}, the sine's scale
            # (CkksParameters.level_scales), relabelled below like the sine
            sine_scale = self.params.level_scale(top_stc + 1) ** 2 / self.params.moduli[top_stc + 1]
            c = evaluate_polynomial(ev, c, arcsine_coefficients(self.preset.arcsine_degree), basis="power",
                                    scale=sine_scale)
        assert c.level == top_stc, (c.level, top_stc)
        c.scale = self.params.level_scale(top_stc)
        return c

    def slots_to_coeffs(self, parts: list[Ciphertext], transforms: list[LinearTransform] | None = None,
                        workspace: Workspace | None = None) -> Ciphertext:
        """Recombine (full packing: Re + i·Im) and apply the factored U (one level per factor),
        landing on the canonical scale of level max_depth. ``transforms``: other SlotsToCoeffs
        factors of the same levels (META-BTS's second bootstrap uses factors scaled by 2^-k_2)."""
        x = parts[0] if len(parts) == 1 else self.ev.add(parts[0], self._times_i(parts[1], 1))
        return self._apply_factors(self._transforms["stc"] if transforms is None else transforms, x, workspace)

    def _apply_factors(self, factors: list[LinearTransform], x: Ciphertext,
                       workspace: Workspace | None = None) -> Ciphertext:
        """The DFT factors in turn (one level each), their baby rotations in ``workspace``
        (default: the context's idle one, ``_take_workspace``, given back afterwards)."""
        with self._workspace(workspace) as ws:
            for lt in factors:
                x = lt.apply(self.ev, x, workspace=ws)
        return x

    @contextlib.contextmanager
    def _workspace(self, given: Workspace | None = None):
        """``given``, or the context's idle workspace reserved for this configuration
        (``_take_workspace``) and given back on exit (``_give_workspace``)."""
        if given is not None:
            yield given
            return
        ws = _take_workspace(self.ev.context, self._workspace_words())
        try:
            yield ws
        finally:
            _give_workspace(self.ev.context, ws)

    def _workspace_words(self) -> int:
        return _workspace_words(self._transforms, self.params, self.preset)

    def bootstrap(self, ct: Ciphertext, *, iterations: int | None = None) -> Ciphertext:
        """A fresh-level encryption of the same message: ModRaise, SubSum (sparse), CoeffsToSlots,
        EvalMod, SlotsToCoeffs. Input at any level with its canonical scale; output at level
        max_depth with scale Δ = 2^scale_bits.

        ``iterations`` (default: the constructor's): 2 runs META-BTS (Bae et al., CCS 2022, §3):
        ct_1 = BTS(ct) with error e_1; e = 2^k_2·(ct − ct_1) at the input's level and canonical
        scale (:meth:`meta_error`; no level is spent: ct_1 is brought down to the input's level,
        the factor is an integer); ct_2 = BTS(e) with the factor 2^-k_2 folded into its last
        SlotsToCoeffs factor (:meth:`meta_correction`, so it lands on Δ_L at level max_depth like
        ct_1); the result is ct_1 + ct_2 = m + (second bootstrap's error)·2^-k_2 + the rescale
        noise of the two landings. Levels and scales are those of one bootstrap (output level
        max_depth, scale Δ_L; any input level); it costs two bootstraps of time and the memory
        of one more SlotsToCoeffs factor, and no extra keys.

        Raises: see :meth:`check_input`; ParameterError (iterations not 1 or 2); MissingKeyError
        (keys of :meth:`key_plan` absent; ``details['missing']`` lists them, see :meth:`missing_keys`).
        """
        it = self.iterations if iterations is None else _check_iterations(iterations)
        self.check_input(ct)
        self._check_keys()
        first = self._bootstrap_once(ct)
        if it == 1:
            return first
        return self.ev.add(first, self.meta_correction(self.meta_error(ct, first)))

    def _bootstrap_once(self, ct: Ciphertext, stc: list[LinearTransform] | None = None) -> Ciphertext:
        with self._workspace() as ws:
            x = self.sub_sum(self.mod_raise(ct))
            parts = [self.eval_mod(p) for p in self.coeffs_to_slots(x, ws)]
            return self.slots_to_coeffs(parts, stc, ws)

    def meta_error(self, ct: Ciphertext, first: Ciphertext) -> Ciphertext:
        """META-BTS step 1: 2^k_2·(ct − first) (k_2 = :attr:`meta_bits`), ``first`` = BTS(ct) brought to
        ct's level and scale (``Evaluator.subtract`` aligns it with one rescale when ct's level
        is below max_depth), then multiplied by the integer 2^k_2 (no level, scale label kept).
        Returns a ciphertext at ct's level with ct's (canonical) scale whose message is
        −2^k_2·e_1, e_1 the first bootstrap's error. Raises: see :meth:`check_input` (for ``ct``),
        ParameterError (``first`` not at level max_depth)."""
        self.check_input(ct)
        if not isinstance(first, Ciphertext) or first.level != self.output_level:
            raise ParameterError("meta_error takes the input and its bootstrap (a ciphertext at level "
                                 f"{self.output_level})", level=getattr(first, "level", None))
        diff = self.ev.subtract(ct, first)
        return self._times_integer(diff, 1 << self.meta_bits)

    def meta_correction(self, err: Ciphertext) -> Ciphertext:
        """META-BTS step 2: the bootstrap of :meth:`meta_error`'s output with SlotsToCoeffs scaled
        by 2^-k_2 in its last factor (the earlier factors' rounding noise is divided by 2^k_2 too;
        the last factor's diagonals carry the 2^-k_2, encoded at the scale that lands on Δ_L).
        Returns a ciphertext at level max_depth, scale Δ_L, whose message is ct − first to within
        the second bootstrap's error·2^-k_2. Raises: see :meth:`check_input`."""
        self.check_input(err)
        self._check_keys()
        if self._meta_stc is None:
            self._meta_stc = _shared_meta_stc(self.ev.context, self._transforms, self._transforms_key, self.meta_bits)
        return self._bootstrap_once(err, self._meta_stc)

    def _times_integer(self, ct: Ciphertext, n: int) -> Ciphertext:
        """ct·n for a positive integer n: every residue times n mod q_i, the scale label kept (the
        message is multiplied by n; no level, the noise is multiplied by n as well)."""
        idx = list(range(ct.level + 1))
        out = self.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
        res = [n % q for q in self.params.moduli[: ct.level + 1]]
        for c in range(2):
            self.ctx.mul_scalar(self.ctx.asarray(ct.data[c]), res, out[c], idx)
        return Ciphertext(out, ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def missing_keys(self) -> list[str]:
        """What the evaluation keys lack for this bootstrap: "relinearization", "encapsulation",
        "conjugation" and "rotation:<step>" entries (empty when everything is there)."""
        keys = self.eval_keys
        n = self.params.poly_degree
        missing: list[str] = []
        if keys is None or keys.relin_key is None:
            missing.append("relinearization")
        h = self.preset.bootstrap_hamming_weight
        if h is not None and (keys is None or keys.encapsulation is None or keys.encapsulation.hamming_weight != h):
            missing.append("encapsulation")
        have = set(keys.galois_keys) if keys is not None else set()
        if (2 * n - 1) not in have:
            missing.append("conjugation")
        missing += [f"rotation:{s}" for s in self.galois_steps() if galois_element(s, n) not in have]
        return missing

    def _check_keys(self) -> None:
        missing = self.missing_keys()
        if missing:
            steps = [int(m.split(":")[1]) for m in missing if m.startswith("rotation:")]
            h = self.preset.bootstrap_hamming_weight
            raise MissingKeyError(
                f"bootstrap needs keys the evaluation keys lack: {', '.join(missing[:6])}"
                + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
                + "; generate them from Bootstrapper.key_plan(params, slots) (KeyGenerator.evaluation_keys("
                f"galois_steps=plan.galois_steps, conjugation=True, encapsulation_hamming_weight={h}))",
                missing=missing, steps=steps)


def _check_iterations(iterations) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations not in (1, 2):
        raise ParameterError(f"iterations must be 1 or 2 (2: META-BTS), got {iterations!r}", field="iterations")
    return int(iterations)


def _sine_headroom_bits(preset, slots: int) -> int:
    """k_n, the headroom a bootstrap of n = ``slots`` slots uses: min(k, ⌊4.5 + log2(n)/2⌋), k the
    preset's ``sine_headroom_bits``.

    Why: the coefficients EvalMod sees are ~0.58·|x|/√n for uniform data (Cheon et al. 2018 §4:
    a slot is the sum of n coefficients), and the sine's relative error is then about
    8.6/n·2^(2k − 40) (the cubic term (2πε)³/6 of sin(2πε), ε = m·2^(k−20), mapped through U);
    k_n keeps it ≤ 2^-28, e.g. k_n = 12 at n = 2^15, 9 at 2^10, 4 at n = 1. The remaining factor
    2^(k − k_n) is applied by SlotsToCoeffs (as ``input_range`` is), so the chain is unchanged.
    With the arcsine correction (``preset.arcsine_degree``) the cubic term is gone: k_n = k."""
    if preset.arcsine_degree:
        return int(preset.sine_headroom_bits)
    return int(min(preset.sine_headroom_bits, max(0, math.floor(4.5 + math.log2(slots) / 2))))


def _build_transforms(params: CkksParameters, pre, slots: int, rng: float,
                      giant_cost: float | None) -> dict[str, list[LinearTransform]]:
    """The CoeffsToSlots and SlotsToCoeffs factors with their constants folded in; baby steps by
    ``LinearTransform(giant_cost=...)`` (None: ⌈√span⌉)."""
    full = params.slot_count
    sparse = slots < full
    n_c, n_s = len(pre.cts_bits), len(pre.stc_bits)
    cts = dft.coeffs_to_slots_factors(slots, n_c)
    stc = dft.slots_to_coeffs_factors(slots, n_s)
    gap = full // slots
    # CtS: t (read at scale q_0) → u = t/K; the real split doubles (w + w̄ = 2Re w), SubSum multiplies by gap
    const = 1.0 / (2.0 * pre.eval_mod_k * (gap if sparse else 1))
    period = 2 * slots if sparse else slots
    if sparse:
        cts = [dft.tile(m, slots, period) for m in cts]
        mux = np.concatenate([np.ones(slots), np.full(slots, -1j)])  # second half: −i·w → Re = Im(w)
        cts[-1] = dft.scale_rows(cts[-1], mux)
        demux = {0: np.concatenate([np.ones(slots), np.full(slots, 1j)]),
                 slots: np.concatenate([np.full(slots, 1j), np.ones(slots)])}
        stc = [dft.tile(m, slots, period) for m in stc]
        stc[0] = dft.compose(stc[0], demux, period)
    per = const ** (1.0 / len(cts))
    cts = [dft.scale(m, per) for m in cts]
    if rng != 1.0:
        per_s = rng ** (1.0 / len(stc))
        stc = [dft.scale(m, per_s) for m in stc]
    out = {"cts": [LinearTransform(m, full, period, giant_cost=giant_cost) for m in cts],
           "stc": [LinearTransform(m, full, period, giant_cost=giant_cost) for m in stc]}
    for lt in out["cts"] + out["stc"]:
        lt.NTT_CACHE_BYTES = BOOTSTRAP_NTT_CACHE_BYTES
    return out


# The DFT factors (and their cached encoded diagonals) depend on the parameters, the slot count,
# the constants folded in and the baby/giant split, not on the keys: Bootstrappers of one context
# (every key of a parameter set on one device) share them. At most SHARED_TRANSFORMS configurations
# per context are kept (least recently used dropped).
SHARED_TRANSFORMS = 4
_TRANSFORMS: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()
_TRANSFORMS_LOCK = threading.Lock()
# Bootstrapper.cache_bytes per (parameters' fingerprint, slots, iterations, NTT budget): planning the factors
# takes ~1 s at N = 2^16 and the service prices every bootstrap request with it
_CACHE_BYTES: dict[tuple, int] = {}


def _shared(context, key: tuple, build):
    """The context's entry for ``key``, made by ``build()`` (outside the lock) when absent; the
    per-context LRU keeps at most SHARED_TRANSFORMS entries (two racing builders: the first wins)."""
    with _TRANSFORMS_LOCK:
        per = _TRANSFORMS.setdefault(context, OrderedDict())
        found = per.get(key)
        if found is not None:
            per.move_to_end(key)
            return found
    built = build()
    with _TRANSFORMS_LOCK:
        per = _TRANSFORMS.setdefault(context, OrderedDict())
        found = per.setdefault(key, built)
        per.move_to_end(key)
        while len(per) > SHARED_TRANSFORMS:
            per.popitem(last=False)
    return found


# Scratch memory for the DFT factors' baby rotations (linalg.Workspace, 0.44 GB at N = 2^16 full
# slots): each context keeps one idle workspace between bootstraps, so the pages are mapped once,
# not at every CoeffsToSlots and SlotsToCoeffs: fresh, their page faults are cleared serially on the
# calling thread (n65536, Zen 4, 2 threads: 648 faults and 0.57 s of SlotsToCoeffs' 2.08 s CPU,
# benchmarks/profile_bootstrap.py). A bootstrap takes the idle one (or a new one when another
# bootstrap of the context holds it) and gives it back; at most one idle workspace is kept.
_WORKSPACES: "weakref.WeakKeyDictionary[object, list[Workspace]]" = weakref.WeakKeyDictionary()


def _workspace_words(transforms: dict[str, list[LinearTransform]], params: CkksParameters, pre) -> int:
    """uint64 words of the largest baby-rotation buffer of the CoeffsToSlots (factor i at level
    top_level − i) and SlotsToCoeffs factors (over Q_ℓ·P, double-hoisted)."""
    special = len(params.special_index())
    n = params.poly_degree
    top_stc = params.max_depth + len(pre.stc_bits)
    words = [lt.scratch_words(n, params.top_level - i + 1 + special) for i, lt in enumerate(transforms["cts"])]
    words += [lt.scratch_words(n, top_stc - j + 1 + special) for j, lt in enumerate(transforms["stc"])]
    return max(words, default=0)


def _take_workspace(context, words: int) -> Workspace:
    """The context's idle workspace (or a new one), reserved to ``words`` words."""
    with _TRANSFORMS_LOCK:
        idle = _WORKSPACES.get(context)
        ws = idle.pop() if idle else None
    if ws is None:
        ws = Workspace(context.ring)
    ws.reserve(words)
    return ws


def _give_workspace(context, ws: Workspace) -> None:
    with _TRANSFORMS_LOCK:
        idle = _WORKSPACES.setdefault(context, [])
        if not idle:
            idle.append(ws)


def _shared_meta_stc(context, transforms: dict[str, list[LinearTransform]], key: tuple,
                     meta_bits: int) -> list[LinearTransform]:
    """META-BTS's SlotsToCoeffs factors: those of ``transforms`` with the last one times 2^-k_2
    (same offsets and baby/giant split, so the same rotation keys), shared like the DFT factors
    (one LRU entry of the context, keyed by the configuration and k_2)."""

    def build() -> list[LinearTransform]:
        stc = transforms["stc"]
        last = stc[-1]
        c = 2.0**-meta_bits
        scaled = LinearTransform({k: d * c for k, d in last.diagonals.items()}, last.slots, last.period,
                                 baby=last.baby)
        scaled.NTT_CACHE_BYTES = last.NTT_CACHE_BYTES
        return list(stc[:-1]) + [scaled]

    return _shared(context, ("meta-stc", meta_bits, *key), build)


def _shared_transforms(context, params: CkksParameters, pre, slots: int, rng: float,
                       giant_cost: float | None) -> dict[str, list[LinearTransform]]:
    """:func:`_build_transforms`, shared by the Bootstrappers of ``context`` (see SHARED_TRANSFORMS)."""
    return _shared(context, (params.fingerprint, slots, float(rng), giant_cost),
                   lambda: _build_transforms(params, pre, slots, rng, giant_cost))


def _galois_steps(transforms, params: CkksParameters, slots: int) -> list[int]:
    steps: set[int] = set()
    for lt in transforms["cts"] + transforms["stc"]:
        steps |= set(lt.galois_steps())
    step = slots
    while step < params.slot_count:  # SubSum
        steps.add(step % params.slot_count)
        step <<= 1
    steps.discard(0)
    return sorted(steps)


def _key_set_bytes(params: CkksParameters, galois_count: int, encapsulation: bool) -> int:
    """Exact serialized size of the key set (``wavis.serialize.eval_keys_size``)."""
    from ... import serialize

    return serialize.eval_keys_size(params, galois_count, True, encapsulation)
