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
    full = np.zeros((slots, slots))
    full[:rows, :cols] = m
    base, span, b, g = _plan(rows, cols, slots)
    baby = ev.rotate_many(ct, list(range(b)))
    # diagonals encoded so the single final rescale lands on the canonical scale of level ℓ−1
    q_l = ev._derived_scale(ct, ev.params.level_scale(ct.level - 1) * ev.params.moduli[ct.level] / ct.scale,  # noqa: SLF001
                            "matmul")
    enc = ev._encoder()
    i = np.arange(slots)
    total = None
    for gi in range(g):
        t = base + gi * b
        inner = None
        for j in range(b):
            k = t + j
            if gi * b + j >= span:
                break
            diag = full[i, (i + k) % slots]
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
