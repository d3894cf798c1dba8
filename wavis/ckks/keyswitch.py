"""Hybrid key-switching building blocks of CKKS, on the backend's fused operations.

Every function calls the :class:`wavis.backend.protocol.RingOps` operation of the same name —
all backends implement all of them (the CPU core and the CUDA backend with fused kernels; a
backend without one delegates explicitly to :mod:`wavis.backend.reference`) — so nothing here
probes for capabilities. These wrappers only normalise the index arguments.

Conventions (NTT domain throughout): ``idx_q`` the ciphertext primes at the current level,
``idx_p`` the special primes, ``full = idx_q + idx_p``; ``digits`` consecutive (start, end)
ranges of positions in ``idx_q`` covering it, digit d paired with ``key[d]``; a key-switching
key is ``(dnum, 2, len(ctx.moduli), N)`` with row r belonging to prime index r. A rotation's
Galois key comes in its evaluation form (``GaloisKey.permuted``: aut_g^{-1} of the key, made once
by :meth:`wavis.ckks.CkksContext.to_device`), with ``galois_elt`` g: the automorphism is applied to
the two sums, ``aut_g(Σ_d x_d ⊙ K'_d + P·add)``, bit for bit ``Σ_d aut_g(x_d) ⊙ K_d + P·aut_g(add)``
(see :mod:`wavis.backend.protocol`, "Rotations"): pass c_0 unrotated as ``add``.

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
    """aut_g(Σ_d exts[d] ⊙ key[d, c] (+ P·add[c] on the idx_q rows)) for c = 0, 1:
    (2, len(idx_q)+len(idx_p), N), NTT domain, before ModDown. ``exts`` (D, R, N);
    ``galois_elt`` 1 = no automorphism (else ``key`` in the evaluation form);
    ``add``: None or (1|2, len(idx_q), N)."""
    return ctx.ks_inner(exts, key, _ix(idx_q), _ix(idx_p), int(galois_elt), add)


def key_switch_ext(ctx, a, key, idx_q, idx_p, digits: Digits, add=None, galois_elt: int = 1):
    """``ks_inner(ks_mod_up(a), ..., galois_elt, add)`` in one pass (the digits are never
    stored): (2, R, N)."""
    return ctx.key_switch_ext(a, key, _ix(idx_q), _ix(idx_p), _digits(digits), add, int(galois_elt))


def key_switch_ext_batch(ctx, a, key, idx_q, idx_p, digits: Digits, add=None, galois_elt: int = 1):
    """:func:`key_switch_ext` of every item of ``a`` ((B, len(idx_q), N)) with one key, as ONE
    backend call; ``add`` None or (B, m, len(idx_q), N): (B, 2, R, N)."""
    return ctx.key_switch_ext_batch(a, key, _ix(idx_q), _ix(idx_p), _digits(digits), add, int(galois_elt))


def galois_key_form(ctx, data, galois_elt: int, permuted: bool):
    """A Galois key's ``data`` ((dnum, 2, len(ctx.moduli), N), NTT domain) in the evaluation form
    (``permuted`` True: aut_g^{-1} of every row) or back in the canonical form (False: aut_g):
    one ``automorphism`` over every row, a new array (the input is not changed)."""
    n2 = 2 * int(ctx.N)
    g = pow(int(galois_elt), -1, n2) if permuted else int(galois_elt) % n2
    shape = tuple(int(s) for s in data.shape)
    rows = shape[0] * shape[1]
    flat = data.reshape(rows, shape[2], shape[3])
    return ctx.automorphism(flat, g, list(range(shape[2])), True).reshape(shape)


def automorphism_batch(ctx, a, galois_elts: Sequence[int], idx, ntt_domain: bool = True):
    """X → X^g on every item of ``a`` ((B, len(idx), N)), one Galois element per item, as ONE
    backend call."""
    return ctx.automorphism_batch(a, [int(g) for g in galois_elts], _ix(idx), ntt_domain)


def mod_down_ntt(ctx, a, idx_q, idx_p):
    """Rounded ModDown in the NTT domain: ``a`` (len(idx_q)+len(idx_p), N) or (batch, …, N)
    over ``idx_q + idx_p`` → round(a / P) over ``idx_q`` (P = ∏ idx_p). With ``idx_p = [q_l]``
    it equals ``ctx.rescale``."""
    return ctx.mod_down_ntt(a, _ix(idx_q), _ix(idx_p))
