"""Hybrid key-switching building blocks of CKKS, on the backend's fused operations.

Every function calls the :class:`wavis.backend.protocol.RingOps` operation of the same name —
all backends implement all of them (the CPU core and the CUDA backend with fused kernels; a
backend without one delegates explicitly to :mod:`wavis.backend.reference`) — so nothing here
probes for capabilities. These wrappers only normalise the index arguments.

Conventions (NTT domain throughout): ``idx_q`` the ciphertext primes at the current level,
``idx_p`` the special primes, ``full = idx_q + idx_p``; ``digits`` consecutive (start, end)
ranges of positions in ``idx_q`` covering it, digit d paired with ``key[d]``; a key-switching
key is ``(dnum, 2, len(ctx.moduli), N)`` with row r belonging to prime index r.

Algorithms: Han–Ki, CT-RSA 2020, Alg. 1–2 (ModUp/ModDown); Halevi–Shoup, CRYPTO 2018 §5
(hoisting); Kim et al., "Over 100x faster bootstrapping", 2021 §3 (NTT-domain ModDown).
"""

from __future__ import annotations

from typing import Sequence

Digits = Sequence[tuple[int, int]]


def _ix(idx) -> list[int]:
    return [int(i) for i in idx]


def _digits(digits: Digits) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in digits]


def ks_mod_up(ctx, a, idx_q, idx_p, digits: Digits):
    """ModUp of every digit of ``a`` ((len(idx_q), N), NTT domain): returns
    (D, len(idx_q)+len(idx_p), N), NTT domain over ``idx_q + idx_p``."""
    return ctx.ks_mod_up(a, _ix(idx_q), _ix(idx_p), _digits(digits))


def ks_inner(ctx, exts, key, idx_q, idx_p, galois_elt: int = 1, add=None):
    """Σ_d aut_g(exts[d]) ⊙ key[d, c] (+ P·add[c] on the idx_q rows) for c = 0, 1:
    (2, len(idx_q)+len(idx_p), N), NTT domain, before ModDown. ``exts`` (D, R, N);
    ``galois_elt`` 1 = no automorphism; ``add``: None or (1|2, len(idx_q), N)."""
    return ctx.ks_inner(exts, key, _ix(idx_q), _ix(idx_p), int(galois_elt), add)


def key_switch_ext(ctx, a, key, idx_q, idx_p, digits: Digits, add=None):
    """``ks_inner(ks_mod_up(a))`` in one pass (the digits are never stored): (2, R, N)."""
    return ctx.key_switch_ext(a, key, _ix(idx_q), _ix(idx_p), _digits(digits), add)


def key_switch_ext_batch(ctx, a, key, idx_q, idx_p, digits: Digits, add=None):
    """:func:`key_switch_ext` of every item of ``a`` ((B, len(idx_q), N)) with one key, as ONE
    backend call; ``add`` None or (B, m, len(idx_q), N): (B, 2, R, N)."""
    return ctx.key_switch_ext_batch(a, key, _ix(idx_q), _ix(idx_p), _digits(digits), add)


def automorphism_batch(ctx, a, galois_elts: Sequence[int], idx, ntt_domain: bool = True):
    """X → X^g on every item of ``a`` ((B, len(idx), N)), one Galois element per item, as ONE
    backend call."""
    return ctx.automorphism_batch(a, [int(g) for g in galois_elts], _ix(idx), ntt_domain)


def mod_down_ntt(ctx, a, idx_q, idx_p):
    """Rounded ModDown in the NTT domain: ``a`` (len(idx_q)+len(idx_p), N) or (batch, …, N)
    over ``idx_q + idx_p`` → round(a / P) over ``idx_q`` (P = ∏ idx_p). With ``idx_p = [q_l]``
    it equals ``ctx.rescale``."""
    return ctx.mod_down_ntt(a, _ix(idx_q), _ix(idx_p))
