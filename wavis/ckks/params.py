"""RNS-CKKS parameters: a plain JSON-able literal becomes validated, immutable parameters
with a derived modulus chain and a fingerprint.

Modulus chain (Cheon–Han–Kim–Kim–Song, "A full RNS variant of approximate HE", SAC 2018):
``q_0`` (``first_mod_bits``) holds the message at the last level; ``q_1..q_L`` (L = max_depth,
``scale_bits`` each, the NTT primes closest below 2^scale_bits) are consumed one per rescale;
the special primes ``p_0..p_{k-1}`` form P for hybrid key switching with ``dnum`` digits
(Han–Ki, CT-RSA 2020, §3): digit j holds α = ⌈(L+1)/dnum⌉ consecutive q_i, and P ≥ every
digit's product. log2(Q·P) is checked against the HE Standard table (``wavis.ring.security``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from ..errors import InsufficientSecurityError, ParameterError
from ..ring import max_log_qp, ntt_primes
from ..ring.security import SECURITY_LEVELS

SCHEME = "rns-ckks"
_KNOWN: "OrderedDict[str, CkksParameters]" = OrderedDict()  # recent parameters by fingerprint
PARAMS_VERSION = 1


def _chain_bits(scale_bits: int, max_depth: int, first_bits: int, special_bits: int, dnum: int) -> float:
    """log2(Q·P) (approximate, in bits) of the chain these sizes produce."""
    alpha = math.ceil((max_depth + 1) / dnum)
    digit_bits = first_bits + (alpha - 1) * scale_bits  # the first digit is the widest
    k = math.ceil((digit_bits + 1) / special_bits)
    return first_bits + max_depth * scale_bits + k * special_bits


@dataclass(frozen=True)
class CkksParameters:
    """Validated RNS-CKKS parameters.

    Attributes:
        poly_degree: ring degree N (power of two, 16..65536); slots = N/2.
        scale_bits: log2 of the encoding scale Δ (10..60) and the size of q_1..q_L in bits.
        max_depth: L, the number of multiplications (rescales) a fresh ciphertext allows (0..60).
        security_level: "128-bit", "192-bit", "256-bit" (HE Standard) or "testing" (no bound).
        first_mod_bits: size of q_0 in bits (default min(60, scale_bits + 20)).
        special_mod_bits: size of each special prime p_i in bits (default 61, so one p exceeds a 60-bit q_0).
        dnum: number of key-switching digits (default: the fewest that fit the security bound).

    Raises:
        ParameterError: a field out of range.
        InsufficientSecurityError: log2(QP) exceeds the HE Standard bound;
            ``details['max_depth']`` is the largest depth that fits (-1 if none).
    """

    poly_degree: int
    scale_bits: int = 40
    max_depth: int = 5
    security_level: str = "128-bit"
    first_mod_bits: int | None = None
    special_mod_bits: int = 61
    dnum: int | None = None

    # -- construction ---------------------------------------------------------------------
    def __post_init__(self) -> None:
        n = self.poly_degree
        if not isinstance(n, int) or isinstance(n, bool) or n < 16 or n > 65536 or n & (n - 1):
            raise ParameterError(f"poly_degree must be a power of two in 16..65536, got {n!r}", field="poly_degree")
        for name, lo, hi in (("scale_bits", 10, 60), ("max_depth", 0, 60), ("special_mod_bits", 20, 61)):
            v = getattr(self, name)
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
        bound = max_log_qp(n, self.security_level)
        levels = self.max_depth + 1
        if self.dnum is not None:
            if not isinstance(self.dnum, int) or not 1 <= self.dnum <= levels:
                raise ParameterError(f"dnum must be in 1..max_depth+1 = {levels}, got {self.dnum!r}", field="dnum")
            dnum = self.dnum
        else:
            dnum = next(
                (d for d in range(1, levels + 1)
                 if bound is None or _chain_bits(self.scale_bits, self.max_depth, first, self.special_mod_bits, d) <= bound),
                levels,
            )
            object.__setattr__(self, "dnum", dnum)
        if bound is not None:
            total = _chain_bits(self.scale_bits, self.max_depth, first, self.special_mod_bits, dnum)
            if total > bound:
                if self.dnum is not None and _chain_bits(self.scale_bits, self.max_depth, first,
                                                         self.special_mod_bits, levels) <= bound:
                    raise InsufficientSecurityError(
                        f"log2(QP) = {total:.0f} bits exceeds the {self.security_level} bound of {bound} bits for "
                        f"poly_degree {n}: with dnum={dnum} the special modulus P is too large; "
                        f"use more digits (dnum up to {levels}) or leave dnum unset",
                        max_depth=self.max_depth, dnum=dnum, log_qp_bits=round(total), max_log_qp_bits=bound,
                    )
                best = -1
                for d in range(self.max_depth, -1, -1):
                    if _chain_bits(self.scale_bits, d, first, self.special_mod_bits, d + 1) <= bound:
                        best = d
                        break
                hint = (f"the largest max_depth that fits is {best}" if best >= 1 else
                        "no max_depth fits with these scale_bits: use a larger poly_degree or fewer scale_bits")
                raise InsufficientSecurityError(
                    f"log2(QP) = {total:.0f} bits exceeds the {self.security_level} bound of {bound} bits for "
                    f"poly_degree {n} (HE Standard); {hint}",
                    max_depth=best, log_qp_bits=round(total), max_log_qp_bits=bound,
                )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CkksParameters":
        """Build from a JSON-able mapping (the API's ``params`` object). Unknown keys → ParameterError."""
        if not isinstance(d, Mapping):
            raise ParameterError("params must be an object")
        allowed = {"poly_degree", "scale_bits", "max_depth", "security_level", "first_mod_bits", "special_mod_bits", "dnum"}
        extra = set(d) - allowed
        if extra:
            raise ParameterError(f"unknown parameter(s): {sorted(extra)}", field=sorted(extra)[0])
        if "poly_degree" not in d:
            raise ParameterError("poly_degree is required", field="poly_degree")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able literal (round-trips through :meth:`from_dict`)."""
        return {
            "poly_degree": self.poly_degree, "scale_bits": self.scale_bits, "max_depth": self.max_depth,
            "security_level": self.security_level, "first_mod_bits": self.first_mod_bits,
            "special_mod_bits": self.special_mod_bits, "dnum": self.dnum,
        }

    # -- derived --------------------------------------------------------------------------
    @cached_property
    def moduli(self) -> tuple[int, ...]:
        """Ciphertext primes (q_0, q_1, …, q_L)."""
        q0 = ntt_primes(self.first_mod_bits, 1, self.poly_degree)
        rest = ntt_primes(self.scale_bits, self.max_depth, self.poly_degree, exclude=q0)
        return q0 + rest

    @cached_property
    def special_moduli(self) -> tuple[int, ...]:
        """Special primes (p_0, …, p_{k-1}) whose product P is ≥ every key-switching digit."""
        widest = max(math.prod(self.moduli[s:e]) for s, e in self.digits)
        k = 1
        while True:
            ps = ntt_primes(self.special_mod_bits, k, self.poly_degree, exclude=self.moduli)
            if math.prod(ps) > widest:
                return ps
            k += 1

    @cached_property
    def digits(self) -> tuple[tuple[int, int], ...]:
        """Key-switching digits as half-open prime-index ranges [start, end) over q_0..q_L."""
        levels = self.max_depth + 1
        alpha = math.ceil(levels / self.dnum)
        return tuple((s, min(s + alpha, levels)) for s in range(0, levels, alpha))

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
        error", CT-RSA 2022, §3)."""
        scales = [0.0] * (self.max_depth + 1)
        scales[self.max_depth] = float(2**self.scale_bits)
        for lv in range(self.max_depth, 0, -1):
            scales[lv - 1] = scales[lv] * scales[lv] / self.moduli[lv]
        return tuple(scales)

    def level_scale(self, level: int) -> float:
        """The canonical scale Δ_level (see :attr:`level_scales`)."""
        return self.level_scales[level]

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
        }
        fp = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]
        _KNOWN[fp] = self
        _KNOWN.move_to_end(fp)
        while len(_KNOWN) > 256:
            _KNOWN.popitem(last=False)
        return fp

    @property
    def fingerprint_bytes(self) -> bytes:
        return bytes.fromhex(self.fingerprint)


def params_for(fingerprint: str) -> CkksParameters | None:
    """The parameters with this fingerprint if this process made them recently (the last 256
    distinct sets), else None."""
    return _KNOWN.get(fingerprint)
