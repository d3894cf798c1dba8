"""RNS-CKKS parameters: a plain JSON-able literal becomes validated, immutable parameters
with a derived modulus chain and a fingerprint.

Modulus chain (Cheon–Han–Kim–Kim–Song, "A full RNS variant of approximate HE", SAC 2018):
``q_0`` (``first_mod_bits``) holds the message at the last level; ``q_1..q_L`` (L = max_depth,
``scale_bits`` each, the NTT primes closest below 2^scale_bits) are consumed one per rescale;
the special primes ``p_0..p_{k-1}`` form P for hybrid key switching with ``dnum`` digits
(Han–Ki, CT-RSA 2020, §3): digit j holds α = ⌈(L+1)/dnum⌉ consecutive q_i, and P ≥ every
digit's product. log2(Q·P) is checked against the HE Standard table (``wavis.ring.security``).

Magnitude bound (headroom): at level 0 a value m is held as Δ_0·m + e modulo q_0, so every
value a computation produces must satisfy |m| < q_0/(2Δ_0) ≈ 2^(first_mod_bits − scale_bits − 1),
or it wraps modulo q_0 and decrypts to garbage with no error. The parameters therefore carry a
declared bound |values| < 2^magnitude_bits (default 19) and refuse a first modulus whose
headroom over the scale, H = first_mod_bits − scale_bits, is below magnitude_bits + 1 bits:
the default 40-bit scale with a 60-bit q_0 keeps exactly 20 bits (values below 2^19 = 524288).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from ..errors import InsufficientSecurityError, ParameterError
from ..ring import max_log_qp, ntt_primes
from ..ring.security import SECURITY_LEVELS

SCHEME = "rns-ckks"
PARAMS_VERSION = 1
DEFAULT_MAGNITUDE_BITS = 19  # |values| < 2^19 by default: 20 bits of headroom between q_0 and Δ

# Special-prime sizes (see CkksParameters.special_mod_bits): primes below 2^50 run the 52-bit IFMA
# kernels (docs/ring.md), about 2x faster per limb than the 64-bit ones, so the default tries them
# first; 61 bits (one prime above a 60-bit q_0) is the fallback and the size before issue 21.
IFMA_SPECIAL_MOD_BITS = (50, 49)
WIDE_SPECIAL_MOD_BITS = 61
# P must exceed the widest digit by this many bits for a default below 2^50 (measured at N = 2^16,
# dnum 3, benchmarks/special_primes_ab.py: P only 2^0.0 above the digit lost ~6 bits of a rotation's
# minimum precision, 2^5 about 1 bit, 2^43 none).
MIN_SPECIAL_MARGIN_BITS = 10
# Special-prime sizes a bootstrap preset used before it changed: (preset, bits) → the date of the
# change, named in the error when saved parameters (and so their keys) still carry the old size.
LEGACY_PRESET_SPECIAL_MOD_BITS = {("n65536", 61): "2026-12-08", ("testing-n1024", 61): "2026-12-08"}


def special_prime_sizes(digit_bits: float, special_bits: int, first_special_bits: int | None = None) -> list[int]:
    """Sizes (bits) of the special primes p_0, p_1, … whose product P exceeds a widest digit of
    ``digit_bits`` bits: p_0 of ``first_special_bits`` (a bootstrap preset's wider p_0, the P of
    its (q_0, p_0) encapsulation key; None: ``special_bits`` like the others), then as few
    ``special_bits`` primes as that takes (the count :func:`_special_primes` gives)."""
    if first_special_bits is None:
        return [special_bits] * math.ceil((digit_bits + 1) / special_bits)
    rest = max(0, math.ceil((digit_bits + 1 - first_special_bits) / special_bits))
    return [first_special_bits] + [special_bits] * rest


def _chain_bits(scale_bits: int, max_depth: int, first_bits: int, special_bits: int, dnum: int,
                boot_bits: tuple[int, ...] = (), first_special_bits: int | None = None) -> float:
    """log2(Q·P) (approximate, in bits) of the chain these sizes produce: q_0, max_depth primes
    of scale_bits, then the bootstrapping primes ``boot_bits`` (bottom-up), and the special
    primes P ≥ the widest of the dnum key-switching digits (:func:`special_prime_sizes`)."""
    bits = [first_bits] + [scale_bits] * max_depth + list(boot_bits)
    alpha = math.ceil(len(bits) / dnum)
    digit_bits = max(sum(bits[s:s + alpha]) for s in range(0, len(bits), alpha))
    return sum(bits) + sum(special_prime_sizes(digit_bits, special_bits, first_special_bits))


def _special_primes(bits: int, moduli: tuple[int, ...], digits: tuple[tuple[int, int], ...],
                    poly_degree: int, first_bits: int | None = None) -> tuple[int, ...]:
    """The fewest NTT primes of ``bits`` bits (closest below 2^bits, none in ``moduli``), after a
    first prime p_0 of ``first_bits`` bits when given, whose product P exceeds every
    key-switching digit's product (Han–Ki, CT-RSA 2020, §3)."""
    widest = max(math.prod(moduli[s:e]) for s, e in digits)
    head = ntt_primes(first_bits, 1, poly_degree, exclude=moduli) if first_bits is not None else ()
    if math.prod(head) > widest:
        return head
    k = 1
    while True:
        ps = head + ntt_primes(bits, k, poly_degree, exclude=moduli + head)
        if math.prod(ps) > widest:
            return ps
        k += 1


@dataclass(frozen=True)
class CkksParameters:
    """Validated RNS-CKKS parameters.

    Attributes:
        poly_degree: ring degree N (power of two, 16..65536); slots = N/2.
        scale_bits: log2 of the encoding scale Δ (10..60) and the size of q_1..q_L in bits.
        max_depth: L, the number of multiplications (rescales) a fresh ciphertext allows (0..60).
        security_level: "128-bit", "192-bit", "256-bit" (HE Standard) or "testing" (no bound).
        first_mod_bits: size of q_0 in bits (default min(60, scale_bits + 20)).
        special_mod_bits: size of each special prime p_i in bits (20..61). Default (None): 50 or 49
            bits, below 2^50 so ModUp, the key inner product and ModDown run the IFMA kernels on
            every limb of P (issue 21), when that keeps the chain within the security bound at the
            same dnum as 61-bit primes, needs fewer than twice as many special primes (one 61-bit
            prime is cheaper than two IFMA ones, measured at N = 2^14), and leaves P at least
            2^MIN_SPECIAL_MARGIN_BITS above the widest digit (key-switching noise); otherwise 61.
            The resolved size is what :meth:`to_dict` carries, so parameters (and keys) serialized
            with 61 keep their primes. A bootstrap preset fixes it and may make p_0 alone wider
            (:attr:`first_special_mod_bits`: n65536 has p_0 of 61 bits and eight of 50).
        dnum: number of key-switching digits (default: the fewest that fit the security bound).
        magnitude_bits: the declared input bound: every value the computation encrypts or produces
            has |value| < 2^magnitude_bits (default 19, 0..60). Needs first_mod_bits − scale_bits ≥
            magnitude_bits + 1 (see the module docstring); not part of the fingerprint (it changes no
            prime), reported in key metadata as ``magnitude_bound``.

    Raises:
        ParameterError: a field out of range, or a first modulus with too little headroom over
            the scale for ``magnitude_bits`` (values would wrap modulo q_0 silently).
        InsufficientSecurityError: log2(QP) exceeds the HE Standard bound;
            ``details['max_depth']`` is the largest depth that fits (-1 if none).
    """

    poly_degree: int
    scale_bits: int = 40
    max_depth: int = 5
    security_level: str = "128-bit"
    first_mod_bits: int | None = None
    special_mod_bits: int | None = None
    dnum: int | None = None
    bootstrap_preset: str | None = None
    magnitude_bits: int | None = None

    # -- construction ---------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.bootstrap_preset is not None:
            self._check_preset()
        n = self.poly_degree
        if not isinstance(n, int) or isinstance(n, bool) or n < 16 or n > 65536 or n & (n - 1):
            raise ParameterError(f"poly_degree must be a power of two in 16..65536, got {n!r}", field="poly_degree")
        for name, lo, hi in (("scale_bits", 10, 60), ("max_depth", 0, 60), ("special_mod_bits", 20, 61)):
            v = getattr(self, name)
            if name == "special_mod_bits" and v is None:
                continue  # resolved below, once the chain and dnum are known
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ParameterError(f"{name} must be an integer in {lo}..{hi}, got {v!r}", field=name)
        if self.security_level not in SECURITY_LEVELS:
            raise ParameterError(f"security_level must be one of {SECURITY_LEVELS}", field="security_level")
        first = self.first_mod_bits if self.first_mod_bits is not None else min(60, self.scale_bits + 20)
        if not isinstance(first, int) or not self.scale_bits <= first <= 61 or first < 20:
            raise ParameterError(
                f"first_mod_bits must be in max(20, scale_bits)..61, got {first!r}", field="first_mod_bits"
            )
        object.__setattr__(self, "first_mod_bits", first)
        mag = self.magnitude_bits if self.magnitude_bits is not None else DEFAULT_MAGNITUDE_BITS
        if not isinstance(mag, int) or isinstance(mag, bool) or not 0 <= mag <= 60:
            raise ParameterError(f"magnitude_bits must be an integer in 0..60, got {mag!r}", field="magnitude_bits")
        headroom = first - self.scale_bits
        if headroom < mag + 1:
            declared = "declared" if self.magnitude_bits is not None else "default"
            hint = (f"declare magnitude_bits ≤ {headroom - 1} if your values stay below 2^{headroom - 1}, or "
                    if headroom >= 1 else "")
            widen = (f"use first_mod_bits ≥ {self.scale_bits + mag + 1} (at most 61) or " if self.scale_bits + mag + 1 <= 61
                     else "")
            raise ParameterError(
                f"the first modulus q_0 ({first} bits) leaves {headroom} bit(s) of headroom over the {self.scale_bits}-bit "
                f"scale, but values up to the {declared} bound 2^{mag} need {mag + 1}: they would wrap modulo q_0 and "
                f"decrypt to wrong numbers without any error; {hint}{widen}use scale_bits ≤ {first - mag - 1}",
                field="first_mod_bits", headroom_bits=headroom, magnitude_bits=mag,
                min_first_mod_bits=self.scale_bits + mag + 1)
        object.__setattr__(self, "magnitude_bits", mag)
        bound = max_log_qp(n, self.security_level)
        boot = self.boot_mod_bits
        levels = self.max_depth + 1 + len(boot)
        if self.special_mod_bits is None:
            self._resolve_special_mod_bits(first, boot, levels, bound)
        fsp = self.first_special_mod_bits
        if self.dnum is not None:
            if not isinstance(self.dnum, int) or isinstance(self.dnum, bool) or self.dnum < 1:
                raise ParameterError(f"dnum must be a positive integer, got {self.dnum!r}", field="dnum")
            if self.dnum > levels:
                # the prime count comes from max_depth: a max_depth lowered under a dnum kept from
                # an earlier to_dict() lands here, so the message names max_depth first (issue 18)
                raise ParameterError(
                    f"max_depth={self.max_depth} gives {levels} ciphertext prime(s), fewer than dnum={self.dnum}: "
                    f"raise max_depth to ≥ {self.dnum - 1 - len(boot)}, or set dnum ≤ {levels} (or leave dnum out "
                    f"for the default)", field="max_depth", fields=["max_depth", "dnum"], max_dnum=levels)
            dnum = self.dnum
        else:
            dnum = next(
                (d for d in range(1, levels + 1)
                 if bound is None or _chain_bits(self.scale_bits, self.max_depth, first, self.special_mod_bits, d, boot,
                                                 fsp) <= bound),
                levels,
            )
            object.__setattr__(self, "dnum", dnum)
        if bound is not None:
            total = _chain_bits(self.scale_bits, self.max_depth, first, self.special_mod_bits, dnum, boot, fsp)
            if total > bound:
                if self.dnum is not None and _chain_bits(self.scale_bits, self.max_depth, first,
                                                         self.special_mod_bits, levels, boot, fsp) <= bound:
                    # the fewest digits that fit: a concrete dnum to set (a bootstrap preset's literal
                    # gets the preset's dnum when it names none, so "leave it unset" would not help)
                    fits = next(d for d in range(dnum + 1, levels + 1) if _chain_bits(
                        self.scale_bits, self.max_depth, first, self.special_mod_bits, d, boot, fsp) <= bound)
                    raise InsufficientSecurityError(
                        f"log2(QP) = {total:.0f} bits exceeds the {self.security_level} bound of {bound} bits for "
                        f"poly_degree {n}: with dnum={dnum} the special modulus P is too large; "
                        f"set dnum to {fits} or more (up to {levels})",
                        max_depth=self.max_depth, dnum=dnum, min_dnum=fits, log_qp_bits=round(total),
                        max_log_qp_bits=bound,
                    )
                best = -1
                for d in range(self.max_depth, -1, -1):
                    if _chain_bits(self.scale_bits, d, first, self.special_mod_bits, d + 1 + len(boot), boot,
                                   fsp) <= bound:
                        best = d
                        break
                hint = (f"the largest max_depth that fits is {best}" if best >= 1 else
                        "no max_depth fits with these scale_bits: use a larger poly_degree or fewer scale_bits")
                raise InsufficientSecurityError(
                    f"log2(QP) = {total:.0f} bits exceeds the {self.security_level} bound of {bound} bits for "
                    f"poly_degree {n} (HE Standard); {hint}",
                    max_depth=best, log_qp_bits=round(total), max_log_qp_bits=bound,
                )

    def _resolve_special_mod_bits(self, first: int, boot: tuple[int, ...], levels: int, bound: int | None) -> None:
        """Pick the default special-prime size (see the class docstring); with dnum unset, dnum
        becomes the fewest digits that fit with 61-bit special primes, as before issue 21."""
        wide = WIDE_SPECIAL_MOD_BITS
        dnum = self.dnum
        if dnum is None or not isinstance(dnum, int) or isinstance(dnum, bool) or not 1 <= dnum <= levels:
            if dnum is not None:  # invalid: let the dnum checks below report it
                object.__setattr__(self, "special_mod_bits", wide)
                return
            dnum = next((d for d in range(1, levels + 1)
                         if bound is None or _chain_bits(self.scale_bits, self.max_depth, first, wide, d, boot) <= bound),
                        levels)
        chosen = wide
        if bound is None or _chain_bits(self.scale_bits, self.max_depth, first, wide, dnum, boot) <= bound:
            bits = [first] + [self.scale_bits] * self.max_depth + list(boot)
            alpha = math.ceil(len(bits) / dnum)
            k_wide = math.ceil((max(sum(bits[s:s + alpha]) for s in range(0, len(bits), alpha)) + 1) / wide)
            digits = self._digit_ranges(levels, dnum)
            widest = max(math.prod(self.moduli[s:e]) for s, e in digits)
            for b in IFMA_SPECIAL_MOD_BITS:
                if bound is not None and _chain_bits(self.scale_bits, self.max_depth, first, b, dnum, boot) > bound:
                    continue
                ps = _special_primes(b, self.moduli, digits, self.poly_degree)
                if len(ps) < 2 * k_wide and math.log2(math.prod(ps)) - math.log2(widest) >= MIN_SPECIAL_MARGIN_BITS:
                    chosen = b
                    break
        object.__setattr__(self, "special_mod_bits", chosen)
        if self.dnum is None:
            object.__setattr__(self, "dnum", dnum)

    @staticmethod
    def _digit_ranges(levels: int, dnum: int) -> tuple[tuple[int, int], ...]:
        alpha = math.ceil(levels / dnum)
        return tuple((s, min(s + alpha, levels)) for s in range(0, levels, alpha))

    def _check_preset(self) -> None:
        """A bootstrappable preset fixes the ring, the scale, q_0, the special primes and the
        security level (``wavis.ckks.presets``); fields given explicitly must agree."""
        from .presets import BOOTSTRAP_PRESETS

        name = self.bootstrap_preset
        preset = BOOTSTRAP_PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:
            raise ParameterError(
                f"unknown bootstrap_preset {name!r}; the presets are {sorted(BOOTSTRAP_PRESETS)}",
                field="bootstrap_preset", presets=sorted(BOOTSTRAP_PRESETS))
        if self.special_mod_bits is None:  # the preset fixes it
            object.__setattr__(self, "special_mod_bits", preset.special_mod_bits)
        for fld in ("poly_degree", "scale_bits", "security_level", "special_mod_bits", "first_mod_bits"):
            mine, theirs = getattr(self, fld), getattr(preset, fld)
            if fld == "first_mod_bits" and mine is None:
                continue
            if mine != theirs:
                legacy = ""
                if fld == "special_mod_bits" and (name, mine) in LEGACY_PRESET_SPECIAL_MOD_BITS:
                    legacy = (f"; parameters and keys saved with special_mod_bits = {mine} come from the preset "
                              f"before {LEGACY_PRESET_SPECIAL_MOD_BITS[name, mine]} (other special primes, another "
                              f"fingerprint) and cannot be used with it: generate new keys")
                raise ParameterError(
                    f"{fld} = {mine!r} disagrees with bootstrap_preset {name!r}, which fixes {fld} = {theirs!r} "
                    f"(leave {fld} out, or name another preset){legacy}",
                    field=fld, fields=[fld, "bootstrap_preset"], expected=theirs, got=mine,
                    bootstrap_preset=name, presets=sorted(BOOTSTRAP_PRESETS))

    @classmethod
    def bootstrappable(cls, preset: str, max_depth: int | None = None, dnum: int | None = None) -> "CkksParameters":
        """Parameters of the bootstrappable preset ``preset`` (``wavis.ckks.presets``): the user's
        chain has ``max_depth`` levels (default: the preset's, the levels left after each
        bootstrap) and the bootstrapping levels sit above it. Raises ParameterError (unknown
        preset) or InsufficientSecurityError (a max_depth too large for the security bound)."""
        from .presets import BOOTSTRAP_PRESETS

        if preset not in BOOTSTRAP_PRESETS:
            raise ParameterError(f"unknown bootstrap_preset {preset!r}; the presets are {sorted(BOOTSTRAP_PRESETS)}",
                                 field="bootstrap_preset", presets=sorted(BOOTSTRAP_PRESETS))
        p = BOOTSTRAP_PRESETS[preset]
        return cls(poly_degree=p.poly_degree, scale_bits=p.scale_bits,
                   max_depth=p.max_depth if max_depth is None else max_depth, security_level=p.security_level,
                   first_mod_bits=p.first_mod_bits, special_mod_bits=p.special_mod_bits,
                   dnum=p.dnum if dnum is None else dnum,
                   bootstrap_preset=preset)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CkksParameters":
        """Build from a JSON-able mapping (the API's ``params`` object). Unknown keys → ParameterError.
        With ``bootstrap_preset``, missing fields come from the preset (``max_depth``: the levels
        left to the user after each bootstrap); see :meth:`resolve_literal`."""
        return cls(**cls.resolve_literal(d))

    @staticmethod
    def resolve_literal(d: Mapping[str, Any]) -> dict[str, Any]:
        """The parameter literal ``d`` as :meth:`from_dict` builds it, without building it: keys
        whose value is None dropped (None means "the default"), and with ``bootstrap_preset`` every
        field the literal leaves out taken from the preset (a preset fixes the ring, so
        ``poly_degree`` may be left out then). Fields given explicitly are kept as given: one that
        disagrees with the preset is refused when the parameters are built (ParameterError naming
        the field and the preset).

        Raises:
            ParameterError: ``d`` not a mapping, unknown keys, or no ``poly_degree`` and no preset.
        """
        if not isinstance(d, Mapping):
            raise ParameterError("params must be an object")
        allowed = {"poly_degree", "scale_bits", "max_depth", "security_level", "first_mod_bits", "special_mod_bits", "dnum",
                   "bootstrap_preset", "magnitude_bits"}
        extra = set(d) - allowed
        if extra:
            raise ParameterError(f"unknown parameter(s): {sorted(extra)}", field=sorted(extra)[0])
        d = {k: v for k, v in d.items() if v is not None}
        if d.get("bootstrap_preset") is not None:
            from .presets import BOOTSTRAP_PRESETS

            preset = BOOTSTRAP_PRESETS.get(d["bootstrap_preset"]) if isinstance(d["bootstrap_preset"], str) else None
            if preset is not None:
                for fld in ("poly_degree", "scale_bits", "max_depth", "security_level", "first_mod_bits",
                            "special_mod_bits", "dnum"):
                    d.setdefault(fld, getattr(preset, fld))
        if "poly_degree" not in d:
            raise ParameterError("poly_degree is required (unless bootstrap_preset names a preset, which fixes it)",
                                 field="poly_degree")
        return d

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able literal (round-trips through :meth:`from_dict`)."""
        return {
            "poly_degree": self.poly_degree, "scale_bits": self.scale_bits, "max_depth": self.max_depth,
            "security_level": self.security_level, "first_mod_bits": self.first_mod_bits,
            "special_mod_bits": self.special_mod_bits, "dnum": self.dnum, "magnitude_bits": self.magnitude_bits,
            **({"bootstrap_preset": self.bootstrap_preset} if self.bootstrap_preset is not None else {}),
        }

    # -- derived --------------------------------------------------------------------------
    @cached_property
    def moduli(self) -> tuple[int, ...]:
        """Ciphertext primes (q_0, q_1, …, q_L)."""
        q0 = ntt_primes(self.first_mod_bits, 1, self.poly_degree)
        chain = q0 + ntt_primes(self.scale_bits, self.max_depth, self.poly_degree, exclude=q0)
        for bits in self.boot_mod_bits:  # bootstrapping primes, bottom-up (closest to 2^bits first)
            chain = chain + ntt_primes(bits, 1, self.poly_degree, exclude=chain)
        return chain

    @property
    def boot_mod_bits(self) -> tuple[int, ...]:
        """Sizes of the bootstrapping primes above q_max_depth, bottom-up (SlotsToCoeffs,
        EvalMod, CoeffsToSlots; ``wavis.ckks.presets``); () without a bootstrap preset."""
        if self.bootstrap_preset is None:
            return ()
        from .presets import BOOTSTRAP_PRESETS

        return BOOTSTRAP_PRESETS[self.bootstrap_preset].boot_mod_bits

    @property
    def top_level(self) -> int:
        """The highest level of the chain (len(moduli) − 1): max_level plus the bootstrapping
        levels of a bootstrap preset (a ciphertext reaches them only inside a bootstrap)."""
        return self.max_depth + len(self.boot_mod_bits)

    @property
    def first_special_mod_bits(self) -> int | None:
        """Size of p_0 when a bootstrap preset makes it wider than the other special primes (its
        ``first_special_mod_bits``: p_0 is the P of the (q_0, p_0) encapsulation key and must
        exceed q_0, the others stay below 2^50 for the IFMA kernels); None: all special primes
        have ``special_mod_bits``."""
        if self.bootstrap_preset is None:
            return None
        from .presets import BOOTSTRAP_PRESETS

        return BOOTSTRAP_PRESETS[self.bootstrap_preset].first_special_mod_bits

    @cached_property
    def special_moduli(self) -> tuple[int, ...]:
        """Special primes (p_0, …, p_{k-1}) whose product P is ≥ every key-switching digit: all
        of ``special_mod_bits`` bits, except p_0 of :attr:`first_special_mod_bits` when set."""
        return _special_primes(self.special_mod_bits, self.moduli, self.digits, self.poly_degree,
                               self.first_special_mod_bits)

    @cached_property
    def digits(self) -> tuple[tuple[int, int], ...]:
        """Key-switching digits as half-open prime-index ranges [start, end) over q_0..q_L."""
        return self._digit_ranges(self.top_level + 1, self.dnum)

    @property
    def all_moduli(self) -> tuple[int, ...]:
        """q_0..q_L then p_0..p_{k-1}: the prime list of the scheme's ring context."""
        return self.moduli + self.special_moduli

    @property
    def slot_count(self) -> int:
        return self.poly_degree // 2

    @property
    def max_level(self) -> int:
        return self.max_depth

    @property
    def scale(self) -> float:
        """The default encoding scale Δ = 2^scale_bits."""
        return float(2 ** self.scale_bits)

    @cached_property
    def level_scales(self) -> tuple[float, ...]:
        """Canonical scale of each level ℓ = 0..L: Δ_L = 2^scale_bits and Δ_{ℓ−1} = Δ_ℓ²/q_ℓ, so a
        product of two level-ℓ ciphertexts at their canonical scale lands exactly on Δ_{ℓ−1}
        after rescaling (the scale of a ciphertext then depends only on its level, as in
        OpenFHE's FLEXIBLEAUTO; Kim et al., "Approximate HE with reduced approximation
        error", CT-RSA 2022, §3).

        With a bootstrap preset the levels above L = max_depth continue the same recurrence
        upwards, Δ_ℓ = √(Δ_{ℓ−1}·q_ℓ), region by region (``wavis.ckks.bootstrap``): the
        SlotsToCoeffs levels start from Δ_L (with the preset's ``stc_headroom_bits`` h > 0 they are
        instead a straight log ladder Δ_{L+i} = Δ_L·2^(h·i/s), i = 1..s: SlotsToCoeffs only
        multiplies by plaintexts, whose scale absorbs the ratio); the EvalMod levels start from
        Δ_{L+s}·q_0/(2π·Δ_0·2^k) (s SlotsToCoeffs levels, k the preset's ``sine_headroom_bits``),
        the scale at which sin(2πt) ≈ 2π·m·Δ_0·2^k/q_0 carries the message m at exactly Δ_{L+s}
        (the bootstrap relabels it there); the
        CoeffsToSlots levels continue the EvalMod ladder."""
        scales = [0.0] * (self.top_level + 1)
        scales[self.max_depth] = float(2**self.scale_bits)
        for lv in range(self.max_depth, 0, -1):
            scales[lv - 1] = scales[lv] * scales[lv] / self.moduli[lv]
        if self.bootstrap_preset is not None:
            from .presets import BOOTSTRAP_PRESETS

            pre = BOOTSTRAP_PRESETS[self.bootstrap_preset]
            top_stc = self.max_depth + len(pre.stc_bits)
            for lv in range(self.max_depth + 1, self.top_level + 1):
                below = scales[lv - 1]
                if lv <= top_stc and pre.stc_headroom_bits:  # SlotsToCoeffs: a straight log ladder
                    scales[lv] = scales[self.max_depth] * 2.0 ** (
                        pre.stc_headroom_bits * (lv - self.max_depth) / len(pre.stc_bits))
                    continue
                if lv == top_stc + 1:  # first EvalMod level: its product lands on the sine's scale
                    below = scales[top_stc] * self.moduli[0] / (2 * math.pi * scales[0] * 2.0**pre.sine_headroom_bits)
                scales[lv] = math.sqrt(below * self.moduli[lv])
        return tuple(scales)

    def level_scale(self, level: int) -> float:
        """The canonical scale Δ_level (see :attr:`level_scales`)."""
        return self.level_scales[level]

    @property
    def magnitude_bound(self) -> float:
        """The declared bound on |values|: 2^magnitude_bits."""
        return float(2**self.magnitude_bits)

    def log_modulus_bits(self, level: int) -> float:
        """log2(Q_ℓ) = log2(q_0·…·q_ℓ), the modulus a level-ℓ ciphertext has left."""
        return sum(math.log2(q) for q in self.moduli[: level + 1])

    @property
    def is_secure(self) -> bool:
        return self.security_level != "testing"

    @property
    def log_qp_bits(self) -> float:
        return sum(math.log2(q) for q in self.all_moduli)

    def special_index(self) -> list[int]:
        """Indices of the special primes in :attr:`all_moduli`."""
        n = len(self.moduli)
        return list(range(n, n + len(self.special_moduli)))

    @cached_property
    def fingerprint(self) -> str:
        """32 hex chars: SHA-256 of the canonical description (scheme, N, every prime, dnum)."""
        desc = {
            "scheme": SCHEME, "version": PARAMS_VERSION, "N": self.poly_degree, "scale_bits": self.scale_bits,
            "q": list(self.moduli), "p": list(self.special_moduli), "dnum": self.dnum,
            "security": self.security_level,
            **({"bootstrap_preset": self.bootstrap_preset} if self.bootstrap_preset is not None else {}),
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def fingerprint_bytes(self) -> bytes:
        return bytes.fromhex(self.fingerprint)

