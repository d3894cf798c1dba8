"""Hybrid key-switching building blocks with a fused fast path.

Each function calls the backend's fused kernel when the ring context has it (the CPU core has
all four: ``key_switch_ext``, ``ks_mod_up``, ``ks_inner``, ``mod_down_ntt``) and otherwise
composes the basic :class:`wavis.backend.protocol.RingContext` operations, bit for bit the
same result. So a backend only needs the basic protocol; the fused methods are an
optimisation it may add (see the "Optional fused key-switching methods" section of
``wavis.backend.protocol``).

Conventions (NTT domain throughout): ``idx_q`` the ciphertext primes at the current level,
``idx_p`` the special primes, ``full = idx_q + idx_p``; ``digits`` consecutive (start, end)
ranges of positions in ``idx_q`` covering it, digit d paired with ``key[d]``; a key-switching
key is ``(dnum, 2, len(ctx.moduli), N)`` with row r belonging to prime index r.

Algorithms: Han–Ki, CT-RSA 2020, Alg. 1–2 (ModUp/ModDown); Halevi–Shoup, CRYPTO 2018 §5
(hoisting); Kim et al., "Over 100x faster bootstrapping", 2021 §3 (NTT-domain ModDown).
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


def ks_mod_up(ctx, a, idx_q, idx_p, digits: Digits):
    """ModUp of every digit of ``a`` ((len(idx_q), N), NTT domain): returns
    (D, len(idx_q)+len(idx_p), N), NTT domain over ``idx_q + idx_p``."""
    idx_q, idx_p = list(idx_q), list(idx_p)
    digits = [(int(s), int(e)) for s, e in digits]
    fused = getattr(ctx, "ks_mod_up", None)
    if fused is not None:
        return fused(a, idx_q, idx_p, digits)
    full = idx_q + idx_p
    coeff = a.copy()
    ctx.intt(coeff, idx_q)
    exts = ctx.zeros(len(digits) * len(full)).reshape(len(digits), len(full), -1)
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
    """Σ_d aut_g(exts[d]) ⊙ key[d, c] (+ P·add[c] on the idx_q rows) for c = 0, 1:
    (2, len(idx_q)+len(idx_p), N), NTT domain, before ModDown. ``galois_elt`` 1 = no automorphism;
    ``add``: None or (1|2, len(idx_q), N)."""
    idx_q, idx_p = list(idx_q), list(idx_p)
    fused = getattr(ctx, "ks_inner", None)
    if fused is not None:
        if isinstance(exts, (list, tuple)):
            exts = np.stack(exts)
        return fused(exts, key, idx_q, idx_p, int(galois_elt), add)
    full = idx_q + idx_p
    acc = ctx.zeros(2 * len(full)).reshape(2, len(full), -1)
    _add_scaled_start(ctx, add, idx_q, idx_p, acc)
    for d in range(len(exts)):
        ext = exts[d]
        if galois_elt != 1:
            ext = ctx.automorphism(ext, galois_elt, full, True)
        for c in range(2):
            ctx.mul_add(ext, key[d, c][full], acc[c], full)
    return acc


def key_switch_ext(ctx, a, key, idx_q, idx_p, digits: Digits, add=None):
    """``ks_inner(ks_mod_up(a))`` in one pass (the digits are never stored): (2, R, N)."""
    idx_q, idx_p = list(idx_q), list(idx_p)
    digits = [(int(s), int(e)) for s, e in digits]
    fused = getattr(ctx, "key_switch_ext", None)
    if fused is not None:
        return fused(a, key, idx_q, idx_p, digits, add)
    return ks_inner(ctx, ks_mod_up(ctx, a, idx_q, idx_p, digits), key, idx_q, idx_p, 1, add)


def mod_down_ntt(ctx, a, idx_q, idx_p):
    """Rounded ModDown in the NTT domain: ``a`` (len(idx_q)+len(idx_p), N) or (batch, …, N)
    over ``idx_q + idx_p`` → round(a / P) over ``idx_q`` (P = ∏ idx_p): the fast-conversion
    overshoot u·P is estimated in floating point and removed (off by one only when a/P is within
    ~2^-50 of a half-integer). With ``idx_p = [q_l]`` it equals ``ctx.rescale``."""
    idx_q, idx_p = list(idx_q), list(idx_p)
    fused = getattr(ctx, "mod_down_ntt", None)
    if fused is not None:
        return fused(a, idx_q, idx_p)
    if a.ndim == 3:
        out = ctx.zeros(a.shape[0] * len(idx_q)).reshape(a.shape[0], len(idx_q), -1)
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
