"""CKKS homomorphic evaluation: add, multiply (tensor, relinearize, rescale), key switching.

Algorithms: RNS-CKKS (Cheon–Han–Kim–Kim–Song, SAC 2018, §3–4) with hybrid key switching
(Han–Ki, CT-RSA 2020, §3: ModUp of each dnum-digit by fast basis conversion, inner product
with the key-switching key over Q_ℓ·P, ModDown by P). Rescale divides by q_ℓ with rounding.
"""

from __future__ import annotations

import math

from ..errors import DepthExhaustedError, KeyMismatchError, MissingKeyError, ParameterError, ScaleMismatchError
from .params import CkksParameters
from .structures import Ciphertext, EvaluationKeys, KeySwitchingKey

SCALE_TOLERANCE = 2.0**-20  # relative scale difference accepted by add/subtract


class Evaluator:
    """Homomorphic operations on ciphertexts of one key pair.

    Args:
        params: scheme parameters.
        eval_keys: the key pair's :class:`EvaluationKeys` (relinearization key for
            multiply; Galois keys for rotations). Without them only linear ops work.
        backend: compute backend (default ``wavis.backend.get()``).

    Every method raises :class:`KeyMismatchError` for operands of other parameters or
    keys and never mutates its inputs.
    """

    def __init__(self, params: CkksParameters, eval_keys: EvaluationKeys | None = None, backend=None):
        from ..backend import get as get_backend

        if eval_keys is not None and eval_keys.params_fingerprint != params.fingerprint:
            raise KeyMismatchError("evaluation keys belong to other parameters")
        self.params = params
        self.eval_keys = eval_keys
        self.backend = backend or get_backend()
        self.ctx = self.backend.ring_context(params.poly_degree, params.all_moduli)
        self._p_idx = params.special_index()

    # -- checks -----------------------------------------------------------------------------------
    def _check(self, *cts: Ciphertext) -> None:
        p = self.params
        for ct in cts:
            if not isinstance(ct, Ciphertext):
                raise ParameterError(f"expected a Ciphertext, got {type(ct).__name__}")
            if ct.params_fingerprint != p.fingerprint:
                raise KeyMismatchError("ciphertext belongs to other parameters",
                                       expected=p.fingerprint, got=ct.params_fingerprint)
            if self.eval_keys is not None and ct.key_tag != self.eval_keys.key_tag:
                raise KeyMismatchError("ciphertext was encrypted under another key than the evaluation keys")
            shape = tuple(ct.data.shape)
            if not (0 <= ct.level <= p.max_level) or shape[1:] != (ct.level + 1, p.poly_degree) or shape[0] not in (2, 3):
                raise ParameterError(f"malformed ciphertext: shape {shape} at level {ct.level}")
            if not (math.isfinite(ct.scale) and ct.scale > 0):
                raise ParameterError(f"malformed ciphertext: scale {ct.scale}")
        if len({ct.key_tag for ct in cts}) > 1:
            raise KeyMismatchError("ciphertexts were encrypted under different keys")

    def _match_scale(self, a: Ciphertext, b: Ciphertext) -> None:
        if abs(a.scale - b.scale) > SCALE_TOLERANCE * max(a.scale, b.scale):
            raise ScaleMismatchError(
                f"operand scales differ: 2^{math.log2(a.scale):.6f} vs 2^{math.log2(b.scale):.6f}",
                scale_bits=[math.log2(a.scale), math.log2(b.scale)],
            )

    # -- level management -------------------------------------------------------------------------
    def drop_to_level(self, ct: Ciphertext, level: int) -> Ciphertext:
        """Drop primes q_{level+1}..q_ℓ (the message and scale are unchanged)."""
        self._check(ct)
        if level > ct.level or level < 0:
            raise ParameterError(f"cannot raise level {ct.level} to {level}")
        if level == ct.level:
            return ct.copy()
        return Ciphertext(ct.data[:, : level + 1].copy(), level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def _align(self, a: Ciphertext, b: Ciphertext) -> tuple[Ciphertext, Ciphertext]:
        lv = min(a.level, b.level)
        return (a if a.level == lv else self.drop_to_level(a, lv)), (b if b.level == lv else self.drop_to_level(b, lv))

    # -- linear ops ------------------------------------------------------------------------------
    def _combine(self, a: Ciphertext, b: Ciphertext, op: str) -> Ciphertext:
        self._check(a, b)
        a, b = self._align(a, b)
        self._match_scale(a, b)
        ctx = self.ctx
        idx = list(range(a.level + 1))
        size = max(a.size, b.size)
        out = ctx.zeros(size * len(idx)).reshape(size, len(idx), -1)
        for c in range(size):
            if c < a.size and c < b.size:
                getattr(ctx, op)(a.data[c], b.data[c], out[c], idx)
            elif c < a.size:
                out[c] = a.data[c]
            elif op == "add":
                out[c] = b.data[c]
            else:
                ctx.neg(b.data[c], out[c], idx)
        return Ciphertext(out, a.level, a.scale, a.params_fingerprint, a.key_tag)

    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """a + b. Operands at different levels meet at the lower one.

        Raises: KeyMismatchError, ScaleMismatchError (relative difference > 2^-20).
        """
        return self._combine(a, b, "add")

    def subtract(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """a − b (same rules as :meth:`add`)."""
        return self._combine(a, b, "sub")

    def negate(self, a: Ciphertext) -> Ciphertext:
        """−a."""
        self._check(a)
        idx = list(range(a.level + 1))
        out = self.ctx.zeros(a.size * len(idx)).reshape(a.size, len(idx), -1)
        for c in range(a.size):
            self.ctx.neg(a.data[c], out[c], idx)
        return Ciphertext(out, a.level, a.scale, a.params_fingerprint, a.key_tag)

    # -- multiplication -----------------------------------------------------------------------------
    def multiply(self, a: Ciphertext, b: Ciphertext, relinearize: bool = True, rescale: bool = True) -> Ciphertext:
        """a · b: tensor product, then (by default) relinearization and rescale.

        The result is at level min(ℓ_a, ℓ_b) − 1 with scale s_a·s_b / q_ℓ.

        Raises:
            DepthExhaustedError: an operand is at level 0 and ``rescale`` is requested.
            MissingKeyError: no relinearization key.
            ParameterError: an operand of size 3 (relinearize first).
        """
        self._check(a, b)
        if a.size != 2 or b.size != 2:
            raise ParameterError("multiply needs relinearized (size-2) ciphertexts; call relinearize first")
        a, b = self._align(a, b)
        if rescale and a.level == 0:
            raise DepthExhaustedError("multiplication needs a level to rescale, but the ciphertext is at level 0",
                                      level=0)
        if relinearize:
            self._relin_key()  # fail before computing
        ctx = self.ctx
        idx = list(range(a.level + 1))
        rows = len(idx)
        n = self.params.poly_degree
        out = ctx.zeros(3 * rows).reshape(3, rows, n)
        ctx.mul(a.data[0], b.data[0], out[0], idx)
        ctx.mul(a.data[0], b.data[1], out[1], idx)
        ctx.mul_add(a.data[1], b.data[0], out[1], idx)
        ctx.mul(a.data[1], b.data[1], out[2], idx)
        ct = Ciphertext(out, a.level, a.scale * b.scale, a.params_fingerprint, a.key_tag)
        if relinearize:
            ct = self.relinearize(ct)
        if rescale:
            ct = self.rescale(ct)
        return ct

    def square(self, a: Ciphertext) -> Ciphertext:
        """a² (relinearized and rescaled)."""
        return self.multiply(a, a)

    def _relin_key(self) -> KeySwitchingKey:
        if self.eval_keys is None or self.eval_keys.relin_key is None:
            raise MissingKeyError("no relinearization key: pass EvaluationKeys with a relinearization key")
        return self.eval_keys.relin_key

    def relinearize(self, ct: Ciphertext) -> Ciphertext:
        """Size-3 → size-2 ciphertext by key switching c_2 from s² to s."""
        self._check(ct)
        if ct.size == 2:
            return ct.copy()
        d0, d1 = self.key_switch(ct.data[2], ct.level, self._relin_key())
        idx = list(range(ct.level + 1))
        out = self.ctx.zeros(2 * len(idx)).reshape(2, len(idx), -1)
        self.ctx.add(ct.data[0], d0, out[0], idx)
        self.ctx.add(ct.data[1], d1, out[1], idx)
        return Ciphertext(out, ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def rescale(self, ct: Ciphertext) -> Ciphertext:
        """Divide by q_ℓ (rounded) and drop it: level ℓ → ℓ−1, scale → scale / q_ℓ.

        Raises: DepthExhaustedError at level 0.
        """
        self._check(ct)
        if ct.level == 0:
            raise DepthExhaustedError("cannot rescale a ciphertext at level 0", level=0)
        idx = list(range(ct.level + 1))
        comps = [self.ctx.rescale(ct.data[c].copy(), idx) for c in range(ct.size)]
        out = self.ctx.zeros(ct.size * ct.level).reshape(ct.size, ct.level, -1)
        for c, comp in enumerate(comps):
            out[c] = comp
        q_last = self.params.moduli[ct.level]
        return Ciphertext(out, ct.level - 1, ct.scale / q_last, ct.params_fingerprint, ct.key_tag)

    # -- key switching ------------------------------------------------------------------------------
    def key_switch(self, poly, level: int, ksk: KeySwitchingKey):
        """Hybrid key switching of one NTT-domain polynomial ``poly`` (level+1, N) under
        ``ksk``: returns (d_0, d_1), each (level+1, N) NTT domain, with
        d_0 + d_1·s ≈ poly·s' (mod Q_ℓ)."""
        p, ctx = self.params, self.ctx
        n = p.poly_degree
        q_idx = list(range(level + 1))
        full = q_idx + self._p_idx
        coeff = poly.copy()
        ctx.intt(coeff, q_idx)
        acc = ctx.zeros(2 * len(full)).reshape(2, len(full), n)
        for j, (start, end) in enumerate(p.digits):
            if start > level:
                break
            end = min(end, level + 1)
            digit = list(range(start, end))
            pos_other = list(range(0, start)) + list(range(end, len(full)))
            other = [full[i] for i in pos_other]
            ext = ctx.zeros(len(full))
            conv = ctx.base_convert(coeff[start:end].copy(), digit, other)
            ctx.ntt(conv, other)
            ext[start:end] = poly[start:end]
            ext[pos_other] = conv
            for c in range(2):
                key = ksk.data[j, c][full]
                ctx.mul_add(ext, key, acc[c], full)
        outs = []
        for c in range(2):
            a = acc[c]
            ctx.intt(a, full)
            d = ctx.mod_down(a, q_idx, self._p_idx)
            ctx.ntt(d, q_idx)
            outs.append(d)
        return outs[0], outs[1]
