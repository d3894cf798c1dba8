"""Plaintext-matrix × encrypted-vector products by the diagonal method with baby-step
giant-step rotations and hoisting (Halevi–Shoup, CRYPTO 2014 §4 and CRYPTO 2018 §4–5).

For M (rows × cols, both ≤ slots) acting on the first ``cols`` slots of x, padded to the
slots × slots matrix, only the generalized diagonals k ∈ [−(rows−1), cols−1] are non-zero:
    M·x = Σ_k diag_k ⊙ rot(x, k),  diag_k[i] = M[i, i+k].
Writing k = t_g + j (baby step j ∈ [0, b), giant offset t_g = −(rows−1) + g·b):
    M·x = Σ_g rot( Σ_j rot(diag_{t_g+j}, −t_g) ⊙ rot(x, j), t_g ),
so the b−1 baby rotations share one ModUp and each giant step costs one rotation; the sum is
rescaled once (one level).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DepthExhaustedError, EncodingError, ShapeError
from .evaluator import Evaluator
from .structures import Ciphertext


def _plan(rows: int, cols: int, slots: int) -> tuple[int, int, int, int]:
    """(first offset, number of diagonals, baby steps b, giant steps g)."""
    span = rows + cols - 1
    base = -(rows - 1)
    if span >= slots:
        span, base = slots, 0  # every diagonal
    b = math.isqrt(span - 1) + 1 if span > 1 else 1  # ⌈√span⌉
    return base, span, b, math.ceil(span / b)


def _check_matrix(matrix, slots: int) -> np.ndarray:
    if np.iscomplexobj(matrix) or (isinstance(matrix, (list, tuple)) and any(
            isinstance(v, complex) for row in matrix for v in (row if isinstance(row, (list, tuple)) else [row]))):
        raise EncodingError("matrix entries must be real (complex matrices are not supported)")
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"matrix must be a 2-D array of numbers: {exc}") from exc
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ShapeError(f"matrix must be 2-D and non-empty, got shape {m.shape}")
    if m.shape[0] > slots or m.shape[1] > slots:
        raise ShapeError(f"matrix {m.shape[0]}×{m.shape[1]} is larger than the {slots} slots",
                         rows=m.shape[0], cols=m.shape[1], slots=slots)
    if not np.all(np.isfinite(m)):
        raise EncodingError("matrix entries must be finite")
    return m


def matmul_galois_steps(rows: int, cols: int, slots: int) -> list[int]:
    """The rotation steps (Galois keys) :func:`matmul` needs for a rows × cols matrix,
    normalised to [0, slots). Raises ShapeError when the matrix exceeds the slots."""
    if slots < 1 or slots & (slots - 1):
        raise ShapeError(f"the slot count must be a power of two, got {slots}")
    if not (0 < rows <= slots and 0 < cols <= slots):
        raise ShapeError(f"matrix {rows}×{cols} does not fit {slots} slots")
    base, _, b, g = _plan(rows, cols, slots)
    steps = {j % slots for j in range(1, b)} | {(base + gi * b) % slots for gi in range(g)}
    steps.discard(0)
    return sorted(steps)


def _diagonal(m: np.ndarray, k: int, slots: int) -> np.ndarray:
    """Generalized diagonal k of M zero-padded to slots × slots: d[i] = M[i, (i + k) mod slots]
    (0 where that is outside M), built from M's own entries — O(slots) memory, never the
    padded slots × slots matrix (512 MB at N = 2^14, 8.6 GB at N = 2^16)."""
    rows, cols = m.shape
    d = np.zeros(slots)
    i = np.arange(rows)
    j = (i + k) % slots
    inside = j < cols
    d[i[inside]] = m[i[inside], j[inside]]
    return d


def matmul(ev: Evaluator, matrix, ct: Ciphertext) -> Ciphertext:
    """Encrypted y = M·x in the first ``rows`` slots (other slots 0), one level consumed.

    Args:
        ev: evaluator with the Galois keys of :func:`matmul_galois_steps`.
        matrix: (rows, cols) float array, rows, cols ≤ slot_count; x is read from the
            first ``cols`` slots of ``ct``.
        ct: size-2 ciphertext at level ≥ 1.

    Raises: ShapeError, EncodingError (non-finite), DepthExhaustedError,
        MissingRotationKeyError.
    """
    slots = ev.params.slot_count
    m = _check_matrix(matrix, slots)
    ev._check_rotatable(ct)
    if ct.level == 0:
        raise DepthExhaustedError("matmul needs one level, but the ciphertext is at level 0")
    rows, cols = m.shape
    base, span, b, g = _plan(rows, cols, slots)
    baby = ev.rotate_many(ct, list(range(b)))
    # diagonals encoded so the single final rescale lands on the canonical scale of level ℓ−1
    q_l = ev._derived_scale(ct, ev.params.level_scale(ct.level - 1) * ev.params.moduli[ct.level] / ct.scale,  # noqa: SLF001
                            "matmul")
    enc = ev._encoder()
    total = None
    for gi in range(g):
        t = base + gi * b
        inner = None
        for j in range(b):
            k = t + j
            if gi * b + j >= span:
                break
            diag = _diagonal(m, k, slots)
            if not diag.any():
                continue
            pt = enc.encode(np.roll(diag, t), level=ct.level, scale=q_l)  # rot(diag, −t)[i] = diag[i − t]
            term = ev.multiply_plain(baby[j], pt, rescale=False)
            inner = term if inner is None else ev.add(inner, term)
        if inner is None:
            continue
        if t % slots:
            inner = ev.rotate(inner, t)
        total = inner if total is None else ev.add(total, inner)
    if total is None:  # the zero matrix
        return ev.multiply_scalar(ct, 0.0)
    return ev.rescale(total)


class LinearTransform:
    """A slot-linear map given by its generalized diagonals, evaluated with baby-step
    giant-step rotations, hoisted baby steps and one rescale (Halevi–Shoup, CRYPTO 2014 §4 and
    CRYPTO 2018 §4–5; the bootstrapping DFT factors of Chen–Chillotti–Song, EUROCRYPT 2019).

    Args:
        diagonals: {offset k: (period,) complex array d_k} with y[i] = Σ_k d_k[i]·x[i+k]
            (indices mod ``period``; the ciphertext's slots are read as ``period``-periodic).
        period: a power of two dividing the slot count (default: the slot count).
        slots: the slot count N/2.
        baby: the number of baby steps b (default ⌈√span⌉, which minimises b + span/b for dense
            offsets; offsets in clusters may need fewer rotations with another b).

    The non-zero offsets are read as t = base + stride·m (m in [0, span)); with
    b = ⌈√span⌉ baby steps stride·j (one shared ModUp) and ⌈span/b⌉ giant steps:
        M·x = Σ_g rot( Σ_j rot(d_{t_g+stride·j}, −t_g) ⊙ rot(x, stride·j), t_g ).

    Raises: ShapeError (period not a power of two dividing the slots, a diagonal of another
        length).
    """

    def __init__(self, diagonals: dict[int, np.ndarray], slots: int, period: int | None = None,
                 baby: int | None = None) -> None:
        period = slots if period is None else int(period)
        if period < 1 or period & (period - 1) or slots % period:
            raise ShapeError(f"period {period} must be a power of two dividing the {slots} slots")
        self.slots, self.period = slots, period
        diags: dict[int, np.ndarray] = {}
        for k, d in diagonals.items():
            d = np.asarray(d, dtype=np.complex128)
            if d.shape != (period,):
                raise ShapeError(f"diagonal {k} has shape {d.shape}, expected ({period},)")
            if not np.all(np.isfinite(d)):
                raise EncodingError("diagonal entries must be finite")
            if np.any(d != 0):
                kk = int(k) % period
                diags[kk] = diags[kk] + d if kk in diags else d
        self.diagonals = diags
        centred = sorted((k if k <= period // 2 else k - period) for k in diags) or [0]
        stride = 0
        for k in centred:
            stride = math.gcd(stride, abs(k))
        stride = stride or 1
        m_min, m_max = centred[0] // stride, centred[-1] // stride
        span = m_max - m_min + 1
        b = math.isqrt(span - 1) + 1 if span > 1 else 1
        if baby is not None:  # a caller that knows the offsets' structure (e.g. clusters) picks b
            b = max(1, min(int(baby), span))
        self.stride, self.base, self.baby = stride, m_min * stride, b
        self.giant = math.ceil(span / b)
        self._plan: list[tuple[int, list[tuple[int, int]]]] = []  # (t_g, [(j, offset)])
        used: set[int] = set()
        for g in range(self.giant):
            t = self.base + g * b * stride
            terms = []
            for j in range(b):
                k = (t + j * stride) % period
                if k in diags and k not in used:  # offsets wrap modulo the period: use each once
                    used.add(k)
                    terms.append((j, k))
            if terms:
                self._plan.append((t, terms))
        self._pt_cache: dict[tuple[int, float], list] = {}

    COMPACT_CACHE_ABOVE = 16384  # ring degrees above this cache diagonals as coefficients

    def galois_steps(self) -> list[int]:
        """The rotation steps (normalised to [0, slots)) this transform uses."""
        steps = {(j * self.stride) % self.slots for _, terms in self._plan for j, _ in terms}
        steps |= {t % self.slots for t, _ in self._plan}
        steps.discard(0)
        return sorted(steps)

    def _plaintexts(self, ev: Evaluator, level: int, pt_scale: float) -> list:
        """The encoded diagonals at (level, pt_scale): cached as NTT-domain plaintexts while
        they are small (N ≤ 2^14), else as their rounded coefficients (N int64 each, 8 bytes
        per coefficient instead of 8·(level+1)) that are lifted and NTT'd at each use."""
        key = (level, pt_scale)
        cached = self._pt_cache.get(key)
        if cached is None:
            enc = ev._encoder()  # noqa: SLF001
            reps = self.slots // self.period
            compact = ev.params.poly_degree > self.COMPACT_CACHE_ABOVE
            cached = []
            for t, terms in self._plan:
                row = []
                for j, k in terms:
                    vals = np.roll(np.tile(self.diagonals[k], reps), t)
                    pt = enc.encode(vals, level=level, scale=pt_scale)  # also checks the coefficient range
                    if compact:
                        coeffs = np.rint(enc.embed_inverse(vals) * pt_scale).astype(np.int64)
                        row.append((j, coeffs))
                    else:
                        row.append((j, pt))
                cached.append((t, row))
            self._pt_cache = {key: cached}  # keep only the latest (one level per use in a bootstrap)
        if ev.params.poly_degree <= self.COMPACT_CACHE_ABOVE:
            return cached
        from .structures import Plaintext

        ctx = ev.context.ring
        idx = list(range(level + 1))
        out = []
        for t, row in cached:
            lifted = []
            for j, coeffs in row:
                data = ctx.from_signed(coeffs, idx)
                ctx.ntt(data, idx)
                lifted.append((j, Plaintext(data, level, pt_scale, ev.params.fingerprint)))
            out.append((t, lifted))
        return out

    def apply(self, ev: Evaluator, ct: Ciphertext, target_scale: float | None = None,
              rotations: dict[int, Ciphertext] | None = None) -> Ciphertext:
        """M·x, one level consumed; the result has exactly ``target_scale`` (default: the
        canonical scale of level ℓ−1). ``rotations``: {step: rot(ct, step)} already computed
        for this very ciphertext (several transforms of one input share their baby steps); the
        ones this transform adds are stored into it. Raises DepthExhaustedError at level 0,
        MissingRotationKeyError, ScaleMismatchError (a diagonal encoding scale ≥ 2^62)."""
        ev._check_rotatable(ct)  # noqa: SLF001
        if ct.level == 0:
            raise DepthExhaustedError("a linear transform needs one level, but the ciphertext is at level 0")
        target = ev.params.level_scale(ct.level - 1) if target_scale is None else float(target_scale)
        pt_scale = target * ev.params.moduli[ct.level] / ct.scale
        if not (1.0 <= pt_scale < 2.0**62):
            from ..errors import ScaleMismatchError

            raise ScaleMismatchError(
                f"the linear transform's diagonals would be encoded at 2^{math.log2(pt_scale):.1f} "
                "(must be in [1, 2^62)): the ciphertext's scale is too far from the target",
                scale_bits=math.log2(ct.scale), target_scale_bits=math.log2(target))
        pts = self._plaintexts(ev, ct.level, pt_scale)
        babies = sorted({j for _, row in pts for j, _ in row})
        steps = [j * self.stride for j in babies]
        if rotations is None:
            rot = ev.rotate_many(ct, steps)
        else:
            todo = [st for st in steps if st not in rotations]
            if todo:
                rotations.update(ev.rotate_many(ct, todo))
            rot = rotations
        total = None
        for t, row in pts:
            inner = None
            for j, pt in row:
                term = ev.multiply_plain(rot[j * self.stride], pt, rescale=False)
                inner = term if inner is None else ev.add(inner, term)
            if t % self.slots:
                inner = ev.rotate(inner, t)
            total = inner if total is None else ev.add(total, inner)
        if total is None:
            return ev.multiply_scalar(ct, 0.0)
        out = ev.rescale(total)
        out.scale = target  # equal up to the float rounding of pt_scale
        return out
