"""Generic compositions of protocol operations (:mod:`wavis.backend.protocol`).

A backend without a native kernel for an operation delegates to the function of the same name
here, explicitly, in its own method (``def ks_mod_up(self, *a): return reference.ks_mod_up(self, *a)``).
Each composition uses only the basic :class:`~wavis.backend.protocol.RingOps` operations (memory,
transforms, element-wise, ``base_convert``, ``automorphism``, ``rescale``) of the context it is
given, so its result is bit for bit what the CPU core's fused kernels compute
(tests/test_ckks_keyswitch.py and tests/test_backend_conformance.py compare them).

Conventions: see :mod:`wavis.backend.protocol` (NTT domain throughout, ``idx_q`` the ciphertext
primes, ``idx_p`` the special primes, ``full = idx_q + idx_p``, key rows indexed by prime).

Algorithms: Han–Ki, CT-RSA 2020, Alg. 1–2 (ModUp/ModDown); Halevi–Shoup, CRYPTO 2018 §5
(hoisting); Kim et al., "Over 100x faster bootstrapping", 2021 §3.2 (NTT-domain ModDown);
TFHE sample extraction: Chillotti et al., J. Cryptology 33 (2020), §4.1.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Digits = Sequence[tuple[int, int]]


def _const_rows(ctx, values: Sequence[int]):
    n = ctx.N
    return ctx.asarray(np.asarray(values, dtype=np.uint64)[:, None] * np.ones((1, n), dtype=np.uint64))


def _p_mod(ctx, idx_q, idx_p) -> list[int]:
    big_p = math.prod(ctx.moduli[i] for i in idx_p)
    return [big_p % ctx.moduli[i] for i in idx_q]


# ------------------------------------------------------------------------- key switching ---
def ks_mod_up(ctx, a, idx_q, idx_p, digits: Digits):
    """ModUp of every digit of ``a`` ((len(idx_q), N), NTT domain): (D, R, N) over ``idx_q + idx_p``."""
    idx_q, idx_p = [int(i) for i in idx_q], [int(i) for i in idx_p]
    digits = [(int(s), int(e)) for s, e in digits]
    full = idx_q + idx_p
    coeff = ctx.asarray(a).copy()
    ctx.intt(coeff, idx_q)
    exts = ctx.zeros(len(full), len(digits))
    for d, (start, end) in enumerate(digits):
        pos_other = list(range(0, start)) + list(range(end, len(full)))
        other = [full[i] for i in pos_other]
        conv = ctx.base_convert(coeff[start:end].copy(), idx_q[start:end], other)
        ctx.ntt(conv, other)
        exts[d, start:end] = a[start:end]
        exts[d, pos_other] = conv
    return exts


def _add_scaled_start(ctx, add, idx_q, idx_p, acc) -> None:
    if add is None:
        return
    pm = _p_mod(ctx, idx_q, idx_p)
    lq = len(idx_q)
    for c in range(add.shape[0]):
        t = ctx.zeros(lq)
        ctx.mul_scalar(add[c], pm, t, idx_q)
        acc[c, :lq] = t


def ks_inner(ctx, exts, key, idx_q, idx_p, galois_elt: int = 1, add=None):
    """aut_g(Σ_d exts[d] ⊙ key[d, c] (+ P·add[c] on the idx_q rows)) for c = 0, 1: (2, R, N)
    (a Galois key pre-permuted: ``GaloisKey.permuted``)."""
    idx_q, idx_p = [int(i) for i in idx_q], [int(i) for i in idx_p]
    full = idx_q + idx_p
    acc = ctx.zeros(len(full), 2)
    _add_scaled_start(ctx, add, idx_q, idx_p, acc)
    for d in range(len(exts)):
        for c in range(2):
            ctx.mul_add(exts[d], key[d, c][full], acc[c], full)
    if int(galois_elt) % (2 * ctx.N) != 1:
        acc = ctx.automorphism(acc, int(galois_elt), full, True)
    return acc


def key_switch_ext(ctx, a, key, idx_q, idx_p, digits: Digits, add=None, galois_elt: int = 1):
    """``ctx.ks_inner(ctx.ks_mod_up(a), ..., galois_elt, add)``: (2, R, N)."""
    return ctx.ks_inner(ctx.ks_mod_up(a, idx_q, idx_p, digits), key, idx_q, idx_p, galois_elt, add)


def mod_down_ntt(ctx, a, idx_q, idx_p):
    """Rounded ModDown in the NTT domain (see :meth:`~wavis.backend.protocol.RingOps.mod_down_ntt`):
    the fast-conversion overshoot u·P is estimated in floating point and removed (off by one only
    when a/P is within ~2^-50 of a half-integer). With ``idx_p = [q_l]`` it equals ``ctx.rescale``."""
    idx_q, idx_p = [int(i) for i in idx_q], [int(i) for i in idx_p]
    if a.ndim == 3:
        out = ctx.zeros(len(idx_q), a.shape[0])
        for b in range(a.shape[0]):
            out[b] = mod_down_ntt(ctx, a[b], idx_q, idx_p)
        return out
    lq = len(idx_q)
    mods = ctx.moduli
    big_p = math.prod(mods[i] for i in idx_p)
    xp = a[lq:].copy()
    ctx.intt(xp, idx_p)
    ctx.add(xp, _const_rows(ctx, [(mods[i] - 1) // 2 for i in idx_p]), xp, idx_p)
    conv = ctx.base_convert(xp, idx_p, idx_q)
    ctx.sub(conv, _const_rows(ctx, [((big_p - 1) // 2) % mods[i] for i in idx_q]), conv, idx_q)
    if len(idx_p) > 1:  # remove the conversion overshoot u·P, u = floor(Σ_j y_j / p_j) (float estimate)
        y = ctx.zeros(len(idx_p))
        ctx.mul_scalar(xp, [pow((big_p // mods[i]) % mods[i], -1, mods[i]) for i in idx_p], y, idx_p)
        yn = ctx.to_numpy(y)
        s = np.zeros(ctx.N)
        for j, i in enumerate(idx_p):
            s = s + yn[j].astype(np.float64) * (1.0 / mods[i])
        u = np.clip(np.floor(s), 0, len(idx_p)).astype(np.uint64)
        corr = ctx.zeros(lq)
        ctx.mul_scalar(ctx.asarray(np.repeat(u[None, :], lq, axis=0)), [big_p % mods[i] for i in idx_q], corr, idx_q)
        ctx.sub(conv, corr, conv, idx_q)
    ctx.ntt(conv, idx_q)
    out = ctx.zeros(lq)
    ctx.sub(a[:lq].copy(), conv, out, idx_q)
    ctx.mul_scalar(out, [pow(big_p % mods[i], -1, mods[i]) for i in idx_q], out, idx_q)
    return out


def diag_mac(ctx, rots, pts, sel, counts, idx, repeat: int = 1):
    """``out[g, c] = Σ_{j in group g} pts[j] ⊙ rots[sel[j], c]`` (see
    :meth:`~wavis.backend.protocol.RingOps.diag_mac`): each plaintext repeated to N values, then
    one ``mul_add`` per term."""
    idx = [int(i) for i in idx]
    sel = [int(s) for s in sel]
    counts = [int(c) for c in counts]
    repeat = int(repeat)
    n = ctx.N
    if rots.ndim != 4 or pts.ndim != 3 or len(sel) != int(pts.shape[0]) \
            or any(not 0 <= s < int(rots.shape[0]) for s in sel) \
            or not counts or any(c < 0 for c in counts) or sum(counts) != len(sel) \
            or repeat < 1 or repeat & (repeat - 1) or repeat > n or int(pts.shape[-1]) * repeat != n:
        from ..errors import ShapeError

        raise ShapeError(f"diag_mac needs rots (B, m, limbs, N), pts (J, limbs, N / repeat), J indices in [0, B) "
                         f"and counts summing to J: rots {tuple(rots.shape)}, pts {tuple(pts.shape)}, sel {sel}, "
                         f"counts {counts}, repeat {repeat}")
    m = int(rots.shape[1])
    out = ctx.zeros(m * len(idx), len(counts)).reshape(len(counts), m, len(idx), n)
    j = 0
    for g, cnt in enumerate(counts):
        for _ in range(cnt):
            pt = pts[j]
            if repeat > 1:
                full = ctx.zeros(len(idx))
                full.reshape(len(idx), n // repeat, repeat)[...] = pt[:, :, None]
                pt = full
            for c in range(m):
                ctx.mul_add(rots[sel[j], c], pt, out[g, c], idx)
            j += 1
    return out


# ------------------------------------------------------------------------ batched (loops) ---
def automorphism_batch(ctx, a, galois_elts: Sequence[int], idx, ntt_domain: bool):
    """Loop of :meth:`automorphism` over (B, limbs, N) with one Galois element per item."""
    if len(galois_elts) != a.shape[0]:
        raise ValueError(f"one Galois element per item needed ({a.shape[0]}), got {len(galois_elts)}")
    out = ctx.empty(a.shape[1], a.shape[0])
    for b, g in enumerate(galois_elts):
        out[b] = ctx.automorphism(a[b], int(g), idx, ntt_domain)
    return out


def rescale_batch(ctx, a, idx):
    """Loop of :meth:`rescale` over (B, len(idx), N)."""
    out = ctx.empty(len(idx) - 1, a.shape[0])
    for b in range(a.shape[0]):
        out[b] = ctx.rescale(a[b].copy(), idx)
    return out


def ks_mod_up_batch(ctx, a, idx_q, idx_p, digits: Digits):
    """Loop of :meth:`ks_mod_up` over (B, len(idx_q), N) → (B, D, R, N)."""
    items = [ctx.ks_mod_up(a[b], idx_q, idx_p, digits) for b in range(a.shape[0])]
    return _stack4(ctx, items, (len(digits), len(idx_q) + len(idx_p)), a.shape[0])


def ks_inner_batch(ctx, exts, key, idx_q, idx_p, galois_elts: Sequence[int], add=None):
    """Loop of :meth:`ks_inner` over (B, D, R, N) → (B, 2, R, N)."""
    if len(galois_elts) != exts.shape[0]:
        raise ValueError(f"one Galois element per item needed ({exts.shape[0]}), got {len(galois_elts)}")
    items = [ctx.ks_inner(exts[b], key, idx_q, idx_p, int(g), None if add is None else add[b])
             for b, g in enumerate(galois_elts)]
    return _stack4(ctx, items, (2, len(idx_q) + len(idx_p)), exts.shape[0])


def key_switch_ext_batch(ctx, a, key, idx_q, idx_p, digits: Digits, add=None, galois_elt: int = 1):
    """Loop of :meth:`key_switch_ext` over (B, len(idx_q), N) → (B, 2, R, N)."""
    items = [ctx.key_switch_ext(a[b], key, idx_q, idx_p, digits, None if add is None else add[b], galois_elt)
             for b in range(a.shape[0])]
    return _stack4(ctx, items, (2, len(idx_q) + len(idx_p)), a.shape[0])


def _stack4(ctx, items, inner: tuple[int, int], batch: int):
    out = ctx.empty(inner[0] * inner[1], batch).reshape(batch, inner[0], inner[1], ctx.N)
    for b, x in enumerate(items):
        out[b] = x
    return out


# ---------------------------------------------------------------------------------- LWE ---
def sample_extract(xp, glwe):
    """Sample extraction of coefficient 0 (TFHE §4.1): u32 (J, k+1, N) GLWE → u32 (J, k·N+1) LWE
    under the extracted key: mask coefficients a_c[0], −a_c[N−1], …, −a_c[1]; body b[0].
    ``xp`` is the array module of ``glwe`` (NumPy or CuPy)."""
    J, k1, N = (int(s) for s in glwe.shape)
    k = k1 - 1
    out = xp.empty((J, k * N + 1), dtype=np.uint32)
    masks = glwe[:, :k, :]
    rev = masks[:, :, ::-1]  # a_c[N-1], ..., a_c[0]
    body = out[:, : k * N].reshape(J, k, N)
    body[:, :, 0] = masks[:, :, 0]
    body[:, :, 1:] = (np.uint32(0) - rev[:, :, : N - 1]).astype(np.uint32)
    out[:, k * N] = glwe[:, k, 0]
    return out


def bootstrap(lwe_ops, key, lwe, mu: int, threads: int = 0):
    """``sample_extract(blind_rotate(...))``: u32 (J, n+1) → u32 (J, k·N+1)."""
    return lwe_ops.sample_extract(lwe_ops.blind_rotate(key, lwe, mu, threads))
