"""Encrypted polynomial evaluation in the power or Chebyshev basis (degree ≤ 64).

Recursive splitting p = q·B_m + r with m = 2^{k−1} for deg p < 2^k (B_m = x^m or the
Chebyshev T_m), as in the baby-step/giant-step evaluators of Bossuat et al., "Efficient
bootstrapping for approximate HE with non-sparse keys", EUROCRYPT 2021, §4.2 and Lee et al.
2020: every branch is evaluated towards an exact *target level and scale*, so the pieces add
without scale mismatch and the result's level is predictable:

    level(result) = level(x) − max(1, ⌈log2(d+1)⌉)  (power basis; Chebyshev on [−1, 1])
    level(result) = level(x) − max(1, ⌈log2(d+1)⌉) − 1  (Chebyshev on another interval [a, b]:
                                                      one level for y = (2x − a − b)/(b − a))
and scale(result) = the canonical scale of the result's level (``params.level_scale``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DepthExhaustedError, EncodingError, ParameterError
from .evaluator import Evaluator
from .structures import Ciphertext

MAX_DEGREE = 64


def poly_depth(degree: int) -> int:
    """Levels consumed by a degree-``degree`` polynomial (without the interval map)."""
    return max(1, math.ceil(math.log2(degree + 1)))


class _PolyEval:
    def __init__(self, ev: Evaluator, x: Ciphertext, basis: str, baby_steps: int = 0):
        self.ev, self.basis = ev, basis
        self.powers: dict[int, Ciphertext] = {1: x}
        self.baby_steps = baby_steps
        self.babies: dict[int, Ciphertext] = {1: x}

    def baby(self, i: int) -> Ciphertext:
        """T_i (Chebyshev) or x^i (power) for 1 ≤ i < baby_steps, at the lowest depth ⌈log2 i⌉:
        powers of two by squaring, the others as T_{a+b} = 2·T_a·T_b − T_{a−b} (x^{a+b} = x^a·x^b)
        with a the largest power of two below i (operands at different levels are aligned by
        the evaluator onto exact canonical scales)."""
        if i not in self.babies:
            if i & (i - 1) == 0:
                self.babies[i] = self.power(i)
            else:
                a = 1 << (i.bit_length() - 1)
                b = i - a
                prod = self.ev.multiply(self.baby(a), self.baby(b))
                if self.basis == "chebyshev":
                    prod = self.ev.add(prod, prod)
                    prod = self.ev.subtract(prod, self.baby(a - b)) if a != b else self.ev.add_scalar(prod, -1.0)
                self.babies[i] = prod
        return self.babies[i]

    def leaf(self, coeffs: np.ndarray, level: int, scale: float) -> tuple[Ciphertext, float] | None:
        """Σ c_i·B_i (i < baby_steps) as one sum of scalar products, *before* its rescale: a
        ciphertext at level + 1 with scale·q_{level+1} (see :meth:`pending`) and the constant
        c_0 to add after it; None when some baby step sits below level + 1 (then the caller
        splits)."""
        ev = self.ev
        used = [i for i in range(1, len(coeffs)) if coeffs[i] != 0.0]
        if not used:
            return self.linear(float(coeffs[0]), 0.0, level, scale)
        top = self.powers[1].level  # B_i sits at level top − ⌈log2 i⌉ (checked before computing any)
        if any(top - (i - 1).bit_length() < level + 1 for i in used):
            return None
        q = float(ev.params.moduli[level + 1])
        idx = list(range(level + 2))
        acc = ev.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
        ref = None
        for i in used:
            b = self.baby(i)
            b = ev.drop_to_level(b, level + 1) if b.level > level + 1 else b
            const_scale = ev._derived_scale(b, scale * q / b.scale, "polynomial evaluation")  # noqa: SLF001
            res = ev._scalar_residues(float(coeffs[i]), const_scale, b.level)  # noqa: SLF001
            term = ev.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
            for c in range(2):
                ev.ctx.mul_scalar(b.data[c], res, term[c], idx)
                ev.ctx.add(acc[c], term[c], acc[c], idx)
            ref = b
        return Ciphertext(acc, level + 1, scale * q, ref.params_fingerprint, ref.key_tag), float(coeffs[0])

    def power(self, m: int) -> Ciphertext:
        """B_m for m a power of two: x^{2m} = (x^m)², T_{2m} = 2·T_m² − 1."""
        if m not in self.powers:
            half = self.power(m // 2)
            sq = self.ev.multiply(half, half)
            if self.basis == "chebyshev":
                sq = self.ev.add_scalar(self.ev.add(sq, sq), -1.0)
            self.powers[m] = sq
        return self.powers[m]

    def linear(self, c0: float, c1: float, level: int, scale: float) -> tuple[Ciphertext, float]:
        """c1·x *before* its rescale (level + 1, scale·q_{level+1}) and c0 to add after it, so
        that the result lands exactly at (level, scale) (see :meth:`pending`)."""
        ev, x = self.ev, self.powers[1]
        x = ev.drop_to_level(x, level + 1) if x.level > level + 1 else x
        q = float(ev.params.moduli[level + 1])
        # multiply by round(c1 · scale·q/s_x): rescaled by q it has scale exactly `scale`
        const_scale = ev._derived_scale(x, scale * q / x.scale, "polynomial evaluation")  # noqa: SLF001
        res = ev._scalar_residues(c1, const_scale, x.level)
        idx = list(range(x.level + 1))
        out = ev.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
        for c in range(2):
            ev.ctx.mul_scalar(x.data[c], res, out[c], idx)
        return Ciphertext(out, x.level, scale * q, x.params_fingerprint, x.key_tag), c0

    def finish(self, pending: tuple[Ciphertext, float], scale: float) -> Ciphertext:
        """A :meth:`pending` sum brought to (level, scale): relinearized (when it holds tensor
        products) and rescaled in one ModDown, then its constant added."""
        ct, c0 = pending
        ct = self.ev.relinearize_rescale(ct)
        ct.scale = scale  # equal up to the float rounding of each constant's scale
        return self.ev.add_scalar(ct, c0) if c0 else ct

    def eval(self, coeffs: np.ndarray, level: int, scale: float) -> Ciphertext:
        """p(x) landing exactly at (level, scale)."""
        return self.finish(self.pending(coeffs, level, scale), scale)

    def pending(self, coeffs: np.ndarray, level: int, scale: float) -> tuple[Ciphertext, float]:
        """p(x) − c_0 *before* the last relinearization and rescale: a ciphertext at level + 1
        with scale·q_{level+1}, of size 3 when it holds tensor products, and the constant c_0.

        Lazy relinearization and rescaling: p = q·B_m + r is the tensor product q·B_m (q is
        evaluated and finished first: it is multiplied) plus r's own pending sum, which lands on
        the same level + 1 and scale, so the products along the remainders' chain are summed
        and relinearized + rescaled once (``Evaluator.relinearize_rescale``) instead of once
        each, and the leaves of that chain need no rescale of their own (Bossuat et al.,
        EUROCRYPT 2021, §4.2; Lattigo's lazy polynomial evaluator)."""
        d = len(coeffs) - 1
        if d <= 1:
            return self.linear(float(coeffs[0]), float(coeffs[1]) if d == 1 else 0.0, level, scale)
        if d < self.baby_steps:
            out = self.leaf(coeffs, level, scale)
            if out is not None:
                return out
        m = 1 << (math.ceil(math.log2(d + 1)) - 1)
        if self.basis == "power":
            r, q = coeffs[:m], coeffs[m:]
        else:
            r = coeffs[:m].astype(np.float64).copy()
            q = np.zeros(d - m + 1)
            q[0] = coeffs[m]
            for j in range(1, d - m + 1):
                q[j] = 2 * coeffs[m + j]
                r[m - j] -= coeffs[m + j]
        bm = self.power(m)
        bm = self.ev.drop_to_level(bm, level + 1) if bm.level > level + 1 else bm
        q_next = float(self.ev.params.moduli[level + 1])
        qc = self.eval(q, level + 1, scale * q_next / bm.scale)
        prod = self.ev.multiply(qc, bm, relinearize=False, rescale=False)
        prod.scale = scale * q_next
        rest, c0 = self.pending(r, level, scale)
        return self.ev.add(prod, rest), c0


def check_interval(interval) -> tuple[float, float]:
    """The Chebyshev interval [a, b] as two floats, checked: both finite, a < b, and the map
    y = (2x − a − b)/(b − a) computable, i.e. b − a and a + b finite too (a = −1e308, b = 1.5e308
    would make b − a overflow to infinity, 2/(b − a) = 0, and every slot evaluate to p(0) with no
    error: a wrong number). Raises ParameterError (``field="interval"``) otherwise."""
    try:
        a, b = (float(v) for v in interval)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"interval must be two numbers [a, b], got {interval!r}", field="interval") from exc
    if not (math.isfinite(a) and math.isfinite(b) and a < b and math.isfinite(b - a) and math.isfinite(a + b)):
        raise ParameterError(f"interval must be finite with a < b (and b − a, a + b finite), got {[a, b]}",
                             field="interval")
    return a, b


def evaluate_polynomial(ev: Evaluator, ct: Ciphertext, coeffs, basis: str = "power",
                        interval: tuple[float, float] = (-1.0, 1.0), baby_steps: int = 0,
                        scale: float | None = None) -> Ciphertext:
    """p(x) slot-wise for ``coeffs`` (lowest degree first, ≤ 65 of them).

    Args:
        ev: evaluator with a relinearization key.
        ct: size-2 ciphertext.
        coeffs: float sequence, length 1..65.
        basis: "power" or "chebyshev" (then p(x) = Σ c_k T_k(y), y = (2x − a − b)/(b − a)).
        interval: [a, b] for the Chebyshev basis (a < b; a, b, b − a and a + b finite:
            :func:`check_interval`).
        baby_steps: B, 0 (default) or a power of two 4..32: baby-step giant-step evaluation
            (Han–Ki CT-RSA 2020 §4.2; Bossuat et al. EUROCRYPT 2021 §4.2): B_1..B_{B−1} are
            computed once and every piece of degree < B is a sum of scalar products of them
            (one rescale) instead of further splits, so degree 39 with B = 8 takes 13 non-scalar
            products instead of 24. Relinearization and rescaling are lazy (:meth:`_PolyEval.pending`):
            the products along a remainder chain are summed and relinearized + rescaled once, so
            degree 63 with B = 8 takes 18 tensor products but 15 key switches. Same level and scale of the result; a piece whose baby steps
            sit too low for its target level is split as without B (depth never grows), and a
            degree below 2B is evaluated without baby steps (they would cost more than they save).
        scale: the result's scale (default: the canonical scale of its level). Another value
            must keep every intermediate constant's encoding scale within the evaluator's bounds
            (the bootstrap's EvalMod lands on the sine's scale, ``wavis.ckks.bootstrap``).

    Returns: ciphertext at level ``ct.level − poly_depth(d)`` (− 1 more for a Chebyshev
    interval other than [−1, 1]) at that level's canonical scale (or ``scale``).

    Raises: ParameterError (bad basis/interval/length), EncodingError (non-finite
    coefficients), DepthExhaustedError (not enough levels).
    """
    if basis not in ("power", "chebyshev"):
        raise ParameterError(f"basis must be 'power' or 'chebyshev', got {basis!r}", field="basis")
    try:
        c = np.asarray(coeffs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"coefficients must be numbers: {exc}") from exc
    if not 1 <= c.size <= MAX_DEGREE + 1:
        raise ParameterError(f"between 1 and {MAX_DEGREE + 1} coefficients are allowed, got {c.size}")
    if not np.all(np.isfinite(c)):
        raise EncodingError("polynomial coefficients must be finite")
    if isinstance(baby_steps, bool) or not isinstance(baby_steps, int) or not (
            baby_steps == 0 or (4 <= baby_steps <= 32 and baby_steps & (baby_steps - 1) == 0)):
        raise ParameterError(f"baby_steps must be 0 or a power of two in 4..32, got {baby_steps!r}",
                             field="baby_steps")
    ev._check_rotatable(ct)
    nz = np.nonzero(c)[0]
    d = int(nz[-1]) if nz.size else 0
    c = c[: d + 1] if d > 0 else np.array([c[0], 0.0])
    a, b = check_interval(interval) if basis == "chebyshev" else (-1.0, 1.0)
    remap = (a, b) != (-1.0, 1.0)
    need = poly_depth(max(d, 1)) + (1 if remap else 0)
    if ct.level < need:
        raise DepthExhaustedError(
            f"a degree-{d} polynomial needs {need} levels, the ciphertext has {ct.level}", needed=need, level=ct.level
        )
    x = ct
    if remap:
        x = ev.add_scalar(ev.multiply_scalar(ct, 2.0 / (b - a)), -(a + b) / (b - a))
    # below 2B the baby steps cost more products than they save: plain recursion
    pe = _PolyEval(ev, x, basis, baby_steps if d >= 2 * baby_steps else 0)
    target = x.level - poly_depth(max(d, 1))
    if scale is None:
        scale = ev.params.level_scale(target)
    elif not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ParameterError(f"scale must be a positive finite number, got {scale!r}", field="scale")
    return pe.eval(c, target, float(scale))
