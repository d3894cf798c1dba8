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
from . import keyswitch as ks
from .evaluator import Evaluator
from .keys import galois_element
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
    CRYPTO 2018 §4–5; the bootstrapping DFT factors of Chen–Chillotti–Song, EUROCRYPT 2019);
    with a Galois key for every step, double-hoisted (Bossuat–Mouchet–Troncoso-Pastoriza–Hubaux,
    EUROCRYPT 2021, §3: see :meth:`_apply_double_hoisted`).

    Args:
        diagonals: {offset k: (period,) complex array d_k} with y[i] = Σ_k d_k[i]·x[i+k]
            (indices mod ``period``; the ciphertext's slots are read as ``period``-periodic).
        period: a power of two dividing the slot count (default: the slot count).
        slots: the slot count N/2.
        baby: the number of baby steps b (default ⌈√span⌉, which minimises b + span/b for dense
            offsets; offsets in clusters may need fewer rotations with another b).
        giant_cost: with ``baby`` None, choose b minimising (baby rotations) + giant_cost ·
            (giant rotations) instead (fewer Galois keys first among equal costs). Double-hoisted,
            a baby rotation is one key-switching inner product while a giant rotation is a
            ModDown and a whole key switch: about 5× as much (measured, ``RingOps`` at N = 2^14..2^16).

    The non-zero offsets are read as t = base + stride·m (m in [0, span)); with
    b = ⌈√span⌉ baby steps stride·j (one shared ModUp) and ⌈span/b⌉ giant steps:
        M·x = Σ_g rot( Σ_j rot(d_{t_g+stride·j}, −t_g) ⊙ rot(x, stride·j), t_g ).

    Raises: ShapeError (period not a power of two dividing the slots, a diagonal of another
        length).
    """

    def __init__(self, diagonals: dict[int, np.ndarray], slots: int, period: int | None = None,
                 baby: int | None = None, giant_cost: float | None = None) -> None:
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
        self.stride, self.base = stride, m_min * stride
        b = math.isqrt(span - 1) + 1 if span > 1 else 1
        if baby is not None:  # a caller that knows the offsets' structure (e.g. clusters) picks b
            b = max(1, min(int(baby), span))
        elif giant_cost is not None:
            def score(bb: int) -> tuple[float, int]:
                plan = self._make_plan(diags, bb, span)
                babies = {j for _, terms in plan for j, _ in terms if (j * stride) % slots}
                giants = [t for t, _ in plan if t % slots]
                steps = {(j * stride) % slots for j in babies} | {t % slots for t in giants}
                return len(babies) + giant_cost * len(giants), len(steps)
            b = min(range(1, span + 1), key=score)
        self.baby = b
        self.giant = math.ceil(span / b)
        self._plan = self._make_plan(diags, b, span)
        self._pt_cache: dict[tuple, list] = {}
        self._coef_cache: dict[float, list] = {}

    def _make_plan(self, diags: dict[int, np.ndarray], b: int, span: int) -> list[tuple[int, list[tuple[int, int]]]]:
        """[(t_g, [(j, offset)])]: giant step t_g = base + g·b·stride and the baby steps j of the
        offsets t_g + j·stride present (each offset once: they wrap modulo the period)."""
        plan = []
        used: set[int] = set()
        for g in range(math.ceil(span / b)):
            t = self.base + g * b * self.stride
            terms = []
            for j in range(b):
                k = (t + j * self.stride) % self.period
                if k in diags and k not in used:
                    used.add(k)
                    terms.append((j, k))
            if terms:
                plan.append((t, terms))
        return plan

    #: bytes of NTT-domain plaintexts a transform keeps (per level and scale); the giant steps
    #: beyond it keep their diagonals as rounded coefficients, lifted and NTT'd at each use
    NTT_CACHE_BYTES = 1 << 28
    #: the smallest ring a periodic diagonal is transformed in (see :meth:`_coefficients`)
    MIN_SPARSE_DEGREE = 64

    def cache_bytes(self, poly_degree: int, rows: int) -> int:
        """Bytes this transform keeps cached after one use over ``rows`` primes (level + 1, plus
        the special primes when double-hoisted), computed from the plan alone (nothing encoded):
        the diagonals themselves (complex128), the rounded coefficients (J, N/gap) int64
        (:meth:`_coefficients`) and the NTT-domain plaintexts of the first giant steps up to
        :attr:`NTT_CACHE_BYTES` (:meth:`_plaintexts`), J the number of diagonals, gap the
        transform's periodicity gap. Exact for the arrays (the Python objects around them are
        not counted)."""
        gap = max(1, int(poly_degree) // self.MIN_SPARSE_DEGREE)
        for _, terms in self._plan:
            for _, k in terms:
                gap = min(gap, self.slots // _period(self.diagonals[k]))
        width = int(poly_degree) // max(gap, 1)
        sizes = [len(terms) for _, terms in self._plan]
        per = width * int(rows) * 8
        kept = 0
        for s in sizes:
            if (kept + s) * per > self.NTT_CACHE_BYTES:
                break
            kept += s
        return sum(d.nbytes for d in self.diagonals.values()) + sum(sizes) * width * 8 + kept * per

    def galois_steps(self) -> list[int]:
        """The rotation steps (normalised to [0, slots)) this transform uses."""
        steps = {(j * self.stride) % self.slots for _, terms in self._plan for j, _ in terms}
        steps |= {t % self.slots for t, _ in self._plan}
        steps.discard(0)
        return sorted(steps)

    def _coefficients(self, ev: Evaluator, pt_scale: float) -> tuple[list[tuple[int, list[int]]], np.ndarray, int]:
        """The diagonals' rounded coefficients at ``pt_scale``: (giant steps [(t_g, [j, …])],
        (J, N/gap) int64 in the order of the giant steps' terms, gap) (cached for the latest scale).

        A diagonal whose slot vector has period p (a power of two; the factors of the bootstrapping
        DFT made of short butterflies have p = 32 or 1024 of 2^15 slots) encodes to a polynomial in
        X^gap, gap = (N/2)/p (the sparse-packing structure, Cheon et al. 2018 §4.3): only every
        gap-th coefficient is kept, and its NTT is the NTT of that polynomial in the ring of degree
        N/gap, repeated (``_sparse_ntt_order``). One gap per transform (its least periodic
        diagonal's). The dropped coefficients are the rounding noise of the FFT (|·| ≲ 2^-52 of
        the largest), as in the encoder's own.

        Raises EncodingError when a coefficient reaches 2^62 (the int64 range the RNS reduction reads)."""
        cached = self._coef_cache.get(pt_scale)
        if cached is None:
            enc = ev._encoder()  # noqa: SLF001
            n = ev.params.poly_degree
            reps = self.slots // self.period
            rows, gap = [], max(1, n // self.MIN_SPARSE_DEGREE)
            for t, terms in self._plan:
                for _, k in terms:
                    vals = np.roll(np.tile(self.diagonals[k], reps), t)
                    gap = min(gap, self.slots // _period(vals))
                    coeffs = np.rint(enc.embed_inverse(vals) * pt_scale)
                    peak = float(np.max(np.abs(coeffs)))
                    if not peak < 2.0**62:
                        raise EncodingError(
                            f"a diagonal times its scale 2^{math.log2(pt_scale):.1f} overflows the coefficient range "
                            f"(max |coefficient| ≈ 2^{math.log2(max(peak, 1.0)):.1f})")
                    rows.append(coeffs.astype(np.int64))
            gap = max(gap, 1)
            giants = [(t, [j for j, _ in terms]) for t, terms in self._plan]
            cached = (giants, np.ascontiguousarray(np.stack(rows)[:, ::gap]), gap)
            self._coef_cache = {pt_scale: cached}  # one scale per use in a bootstrap
        return cached

    def _plaintexts(self, ev: Evaluator, level: int, pt_scale: float, ext: bool):
        """Batches of giant steps ([(t_g, [j, …])], (J, R, N/gap) NTT-domain plaintexts, gap) over
        Q_ℓ (R = ℓ+1) or, with ``ext``, over Q_ℓ·P (the rows q_0..q_ℓ then the special primes), for
        one :meth:`RingOps.diag_mac` each (``repeat=gap``). The first giant steps, up to
        :attr:`NTT_CACHE_BYTES` of plaintexts per (level, scale, ext), form one batch cached in
        the NTT domain; each further giant step is its own batch, lifted and NTT'd from the cached
        coefficients at its use."""
        rows = list(range(level + 1)) + (list(ev.context.special_index) if ext else [])
        key = (level, pt_scale, ext)
        giants, coeffs, gap = self._coefficients(ev, pt_scale)
        starts = np.cumsum([0] + [len(js) for _, js in giants])
        cached = self._pt_cache.get(key)
        if cached is None:
            per = coeffs[0].size * len(rows) * 8  # bytes of one plaintext
            keep = 0
            while keep < len(giants) and starts[keep + 1] * per <= self.NTT_CACHE_BYTES:
                keep += 1
            cached = (keep, _lift(ev, coeffs[:starts[keep]], gap, rows) if keep else None)
            self._pt_cache = {key: cached}  # one level per use in a bootstrap
        keep, pts = cached
        if keep:
            yield giants[:keep], pts, gap
        for g in range(keep, len(giants)):
            yield giants[g:g + 1], _lift(ev, coeffs[starts[g]:starts[g + 1]], gap, rows), gap

    def apply(self, ev: Evaluator, ct: Ciphertext, target_scale: float | None = None,
              rotations: dict[int, Ciphertext] | None = None, workspace: "Workspace | None" = None) -> Ciphertext:
        """M·x, one level consumed; the result has exactly ``target_scale`` (default: the
        canonical scale of level ℓ−1). ``rotations``: {step: rot(ct, step)} already computed
        for this very ciphertext (several transforms of one input share their baby steps); the
        ones this transform adds are stored into it. ``workspace``: scratch memory shared by a
        sequence of transforms (see :class:`Workspace`; default: fresh memory for this call).
        Raises DepthExhaustedError at level 0, MissingRotationKeyError, ScaleMismatchError (a
        diagonal encoding scale ≥ 2^62)."""
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
        if rotations is None and self._double_hoistable(ev):
            return self._apply_double_hoisted(ev, ct, target, pt_scale, workspace)
        babies = sorted({j for _, terms in self._plan for j, _ in terms})
        steps = [j * self.stride for j in babies]
        if rotations is None:
            rot = ev.rotate_many(ct, steps)
        else:
            todo = [st for st in steps if st not in rotations]
            if todo:
                rotations.update(ev.rotate_many(ct, todo))
            rot = rotations
        ctx = ev.ctx
        q_idx = list(range(ct.level + 1))
        rots = _scratch(ctx, workspace, (len(babies), 2, len(q_idx), ev.params.poly_degree))
        for i, st in enumerate(steps):
            rots[i] = rot[st].data
        slot_of = {j: i for i, j in enumerate(babies)}
        total = None
        for giants, pts, gap in self._plaintexts(ev, ct.level, pt_scale, ext=False):
            sums = ctx.diag_mac(rots, pts, [slot_of[j] for _, js in giants for j in js],
                                [len(js) for _, js in giants], q_idx, gap)
            for (t, _), acc in zip(giants, sums):
                inner = Ciphertext(acc, ct.level, ct.scale * pt_scale, ct.params_fingerprint, ct.key_tag)
                if t % self.slots:
                    inner = ev.rotate(inner, t)
                total = inner if total is None else ev.add(total, inner)
        if total is None:
            return ev.multiply_scalar(ct, 0.0)
        out = ev.rescale(total)
        out.scale = target  # equal up to the float rounding of pt_scale
        return out

    @property
    def baby_count(self) -> int:
        """The number of baby rotations one :meth:`apply` holds at once (step 0 included)."""
        return len({j for _, terms in self._plan for j, _ in terms})

    def scratch_words(self, poly_degree: int, rows: int) -> int:
        """uint64 words of :class:`Workspace` memory one :meth:`apply` takes over ``rows`` primes
        (level + 1, plus the special primes when double-hoisted): the baby rotations
        (B, 2, rows, N)."""
        return self.baby_count * 2 * int(rows) * int(poly_degree)

    def _double_hoistable(self, ev: Evaluator) -> bool:
        """Whether every baby and giant step has its own Galois key (double hoisting needs them;
        otherwise :meth:`apply` composes rotations from power-of-two keys, hoisting only the baby steps)."""
        keys = ev._galois_keys()  # noqa: SLF001
        n = ev.params.poly_degree
        steps = {(j * self.stride) % self.slots for _, terms in self._plan for j, _ in terms}
        steps |= {t % self.slots for t, _ in self._plan}
        steps.discard(0)
        return all(galois_element(s, n) in keys for s in steps)

    def _apply_double_hoisted(self, ev: Evaluator, ct: Ciphertext, target: float, pt_scale: float,
                              workspace: "Workspace | None" = None) -> Ciphertext:
        """BSGS with double hoisting (Bossuat–Mouchet–Troncoso-Pastoriza–Hubaux, EUROCRYPT 2021,
        §3): one ModUp of c_1; every baby rotation stays over Q_ℓ·P without ModDown and is
        multiplied by its diagonal there (``RingOps.rotate_mac_ext``); per giant step only the
        inner sum's c_1 is brought down by P (ModDown) to be rotated (one key switch), its c_0 is
        rotated over Q_ℓ·P as it is; the giant steps are summed over Q_ℓ·P and one ModDown fused
        with the rescale (Kim et al. 2021 §3.2) ends the transform."""
        ctx = ev.ctx
        n, slots = ev.params.poly_degree, self.slots
        q_idx, digits = ev._ks_plan(ct.level)  # noqa: SLF001
        p_idx = list(ev.context.special_index)
        full = q_idx + p_idx
        lq, R = len(q_idx), len(full)
        c = ctx.asarray(ct.data)
        babies = sorted({j for _, terms in self._plan for j, _ in terms})
        slot_of = {j: i for i, j in enumerate(babies)}
        rots = _scratch(ctx, workspace, (len(babies), 2, R, n))
        exts = None
        for i, j in enumerate(babies):  # every baby rotation once, over Q_ℓ·P (no ModDown)
            step = (j * self.stride) % slots
            if step == 0:  # P·ct on the Q rows, 0 on the P rows
                p_mod = ev.context.p_mod[:lq]
                rots[i, :, lq:] = 0
                for comp in range(2):
                    ctx.mul_scalar(c[comp], p_mod, rots[i, comp, :lq], q_idx)
                continue
            if exts is None:
                exts = ks.ks_mod_up(ctx, c[1], q_idx, p_idx, digits)
            g = galois_element(step, n)  # aut_g(Σ_d x_d ⊙ K'_d + P·c_0): the key's evaluation form
            rots[i] = ks.ks_inner(ctx, exts, ev._galois_key(g).data, q_idx, p_idx, galois_elt=g,  # noqa: SLF001
                                  add=c[0].reshape(1, lq, n))
        total = None
        for giants, pts, gap in self._plaintexts(ev, ct.level, pt_scale, ext=True):
            sums = ctx.diag_mac(rots, pts, [slot_of[j] for _, js in giants for j in js],
                                [len(js) for _, js in giants], full, gap)
            for (t, _), acc in zip(giants, sums):
                if t % slots:  # rotate the inner sum: c_1 down by P and key-switched, c_0 rotated over Q_ℓ·P
                    g = galois_element(t % slots, n)
                    a1 = ks.mod_down_ntt(ctx, acc[1], q_idx, p_idx)
                    rot = ks.key_switch_ext(ctx, a1, ev._galois_key(g).data, q_idx, p_idx, digits,  # noqa: SLF001
                                            galois_elt=g)
                    ctx.add(rot[0], ctx.automorphism(acc[0], g, full, True), rot[0], full)
                    acc = rot
                if total is None:
                    total = acc.copy()
                else:
                    ctx.add(total, acc, total, full)
        if total is None:
            return ev.multiply_scalar(ct, 0.0)
        data = ks.mod_down_ntt(ctx, total, q_idx[:-1], [q_idx[-1]] + p_idx)  # ModDown by P fused with the rescale
        return Ciphertext(data, ct.level - 1, target, ct.params_fingerprint, ct.key_tag)


class Workspace:
    """Scratch memory reused by a sequence of :meth:`LinearTransform.apply` calls (e.g. the
    factors of one CoeffsToSlots), so that the baby rotations of each factor (hundreds of MB at
    N = 2^16) are written into memory already mapped instead of fresh pages: a fresh NumPy array
    that large is mmap'd and every page is faulted in and cleared by the kernel on first touch,
    serially on the calling thread (n65536, full slots, Zen 4, one thread, interleaved in one
    process under load: page faults per CoeffsToSlots 2333 → 720–1244, per SlotsToCoeffs
    1559–2073 → 655; CPU medians 4.04 → 3.75 s and 1.78 → 1.65 s). One workspace per thread of
    work (not thread-safe); it holds its largest request (``reserve`` sizes it up front) and is
    freed with the object.

    Args:
        ctx: the ring context (``RingOps``) whose ``empty`` allocates the memory."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._buf = None

    def reserve(self, words: int) -> None:
        """Make the workspace at least ``words`` uint64 words (one allocation now, none later
        for requests up to that size)."""
        words = int(words)
        n = int(self.ctx.N)
        if self._buf is None or self._buf.size < words:
            self._buf = None  # drop the old buffer before mapping the larger one
            self._buf = self.ctx.empty(-(-words // n)).reshape(-1)

    def take(self, shape: tuple[int, ...]):
        """A C-contiguous uint64 array of ``shape`` (uninitialised) in the workspace's memory;
        valid until the next ``take`` or ``reserve``."""
        words = int(np.prod(shape))
        self.reserve(words)
        return self._buf[:words].reshape(shape)


def _scratch(ctx, workspace: Workspace | None, shape: tuple[int, ...]):
    if workspace is None:
        return ctx.empty(int(np.prod(shape[:-1])), None).reshape(shape)
    return workspace.take(shape)


def _period(vals: np.ndarray) -> int:
    """The smallest power-of-two period of a (slots,) vector (exact equality; ``len(vals)`` if none)."""
    n = len(vals)
    p = 1
    while p < n:
        if np.array_equal(vals.reshape(-1, p), np.broadcast_to(vals[:p], (n // p, p))):
            return p
        p *= 2
    return n


def _lift(ev: Evaluator, coeffs: np.ndarray, gap: int, rows: list[int]):
    """(J, R, N/gap) NTT-domain plaintexts from (J, N/gap) coefficients of polynomials in X^gap:
    the NTT in the ring of degree M = N/gap, reordered so that value i serves NTT positions
    i·gap … i·gap + gap − 1 of the degree-N ring (``RingOps.diag_mac``'s ``repeat``)."""
    if gap == 1:
        ctx = ev.context.ring
        data = ctx.from_signed(coeffs, rows)
        ctx.ntt(data, rows)
        return data
    small = ev.backend.ring_context(ev.params.poly_degree // gap, ev.params.all_moduli)
    data = small.from_signed(coeffs, rows)
    small.ntt(data, rows)
    order = _sparse_ntt_order(ev, gap, tuple(rows))
    host = small.to_numpy(data)
    return ev.context.ring.asarray(np.ascontiguousarray(np.take_along_axis(host, order[None], axis=2)))


_ORDER_CACHE: dict[tuple, np.ndarray] = {}


def _sparse_ntt_order(ev: Evaluator, gap: int, rows: tuple[int, ...]) -> np.ndarray:
    """(R, M) int64: for f(X) = g(X^gap) (M = N/gap), NTT_N(f)[r, pos] = NTT_M(g)[r, order[r, pos // gap]].

    Why: NTT_N(f) at position pos evaluates f at ψ^e (ψ the ring's 2N-th root of unity, e odd,
    bit-reversed order), i.e. g at (ψ^gap)^e; ψ^gap is a primitive 2M-th root, so these are the
    values NTT_M(g) holds, in the small ring's own root and order. The map is read off the
    monomials X^gap and Y (distinct values; each repeated ``gap`` times consecutively in the
    large ring, which is checked). Cached per (N, gap, primes)."""
    params = ev.params
    n = params.poly_degree
    key = (n, gap, tuple(params.all_moduli[i] for i in rows))
    order = _ORDER_CACHE.get(key)
    if order is None:
        big, small = ev.context.ring, ev.backend.ring_context(n // gap, params.all_moduli)
        m = n // gap
        x = np.zeros(n, dtype=np.int64)
        x[gap] = 1
        vb = big.from_signed(x, list(rows))
        big.ntt(vb, list(rows))
        vb = big.to_numpy(vb)
        y = np.zeros(m, dtype=np.int64)
        y[1] = 1
        vs = small.from_signed(y, list(rows))
        small.ntt(vs, list(rows))
        vs = small.to_numpy(vs)
        order = np.empty((len(rows), m), dtype=np.int64)
        for r in range(len(rows)):
            head = vb[r, ::gap]
            if not np.array_equal(vb[r], np.repeat(head, gap)):
                raise AssertionError("the NTT of a polynomial in X^gap is not its small NTT repeated")
            srt = np.argsort(vs[r])
            pos = np.searchsorted(vs[r], head, sorter=srt)
            order[r] = srt[pos]
            if not np.array_equal(vs[r, order[r]], head):
                raise AssertionError("the NTT orders of the two rings do not match")
        _ORDER_CACHE[key] = order
    return order
