"""CKKS homomorphic evaluation: add, multiply (tensor, relinearize, rescale), key switching.

Algorithms: RNS-CKKS (Cheon–Han–Kim–Kim–Song, SAC 2018, §3–4) with hybrid key switching
(Han–Ki, CT-RSA 2020, §3: ModUp of each dnum-digit by fast basis conversion, inner product
with the key-switching key over Q_ℓ·P, ModDown by P). Rescale divides by q_ℓ with rounding.
"""

from __future__ import annotations

import math

from typing import Iterable

import numpy as np

from ..errors import (
    DepthExhaustedError, EncodingError, KeyMismatchError, LevelError, MissingKeyError, MissingRotationKeyError,
    ParameterError, ScaleMismatchError, ScaleOverflowError,
)
from . import keyswitch as ks
from .context import CkksContext, context_of
from .keys import galois_element
from .params import CkksParameters
from .structures import Ciphertext, EvaluationKeys, GaloisKey, KeySwitchingKey, Plaintext

SCALE_TOLERANCE = 2.0**-20  # relative scale difference accepted by add/subtract
# A constant or plaintext that puts a result back on the canonical scale is encoded at
# (target scale)·q_ℓ/(ciphertext scale); with a canonical ciphertext that is Δ_ℓ. A ciphertext
# whose scale is more than this many bits above canonical would need a coarser encoding (its
# rounding error silently eats the precision), so such operations are refused instead.
MAX_SCALE_EXCESS_BITS = 4
MAX_SCALE = 2.0**1000  # the largest ciphertext scale (a structural bound, as in _check)


def _shape_dtype(data) -> tuple[tuple[int, ...], object]:
    """(shape, dtype) of an array-like ciphertext payload, ((), None) for anything else."""
    try:
        return tuple(data.shape), data.dtype
    except AttributeError:
        return (), None


class Evaluator:
    """Homomorphic operations on ciphertexts of one key pair.

    Args:
        params: the :class:`CkksContext` to compute in (parameters × backend), or the parameters
            (then the default CPU context, or the context of ``backend``).
        eval_keys: the key pair's :class:`EvaluationKeys` (relinearization key for
            multiply; Galois keys for rotations). Without them only linear ops work. They are
            moved onto the context's device once (no copy on the CPU).
        backend: with parameters only: the backend whose context to use.

    Every method raises :class:`KeyMismatchError` for operands of other parameters or
    keys and never mutates its inputs. Raises ParameterError for a context with a backend other
    than ``backend``.
    """

    def __init__(self, params: "CkksParameters | CkksContext", eval_keys: EvaluationKeys | None = None,
                 backend=None):
        context = context_of(params, backend)
        params = context.params
        if eval_keys is not None and eval_keys.params_fingerprint != params.fingerprint:
            raise KeyMismatchError("evaluation keys belong to other parameters")
        self.context = context
        self.params = params
        self.backend = context.backend
        self.ctx = context.ring
        self.eval_keys = context.to_device(eval_keys) if eval_keys is not None else None
        self._p_idx = context.special_index
        self._p_inv = context.p_inv
        self._enc = None

    def _ks_plan(self, level: int) -> tuple[list[int], list[tuple[int, int]]]:
        """(q indices 0..level, key-switching digits truncated to the level)."""
        return self.context.ks_plan(level)

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
            if isinstance(ct.level, bool) or not isinstance(ct.level, (int, np.integer)):
                raise ParameterError(f"malformed ciphertext: level {ct.level!r} is not an integer")
            shape, dtype = _shape_dtype(ct.data)
            if dtype != np.uint64 or len(shape) != 3:
                raise ParameterError("malformed ciphertext: data must be a (size, level+1, N) uint64 array")
            if not (0 <= ct.level <= p.top_level) or shape[1:] != (ct.level + 1, p.poly_degree) or shape[0] not in (2, 3):
                raise ParameterError(f"malformed ciphertext: shape {shape} at level {ct.level}")
            if isinstance(ct.scale, bool) or not isinstance(ct.scale, (int, float, np.floating)) \
                    or not (math.isfinite(float(ct.scale)) and 1.0 <= float(ct.scale) < 2.0**1000):
                raise ParameterError(f"malformed ciphertext: scale {ct.scale!r} (must be a finite float in [1, 2^1000))")
        if len({ct.key_tag for ct in cts}) > 1:
            raise KeyMismatchError("ciphertexts were encrypted under different keys")

    def _match_scale(self, a: Ciphertext, b: Ciphertext) -> None:
        if abs(a.scale - b.scale) > SCALE_TOLERANCE * max(a.scale, b.scale):
            raise ScaleMismatchError(
                f"operand scales differ: 2^{math.log2(a.scale):.6f} vs 2^{math.log2(b.scale):.6f}",
                scale_bits=[math.log2(a.scale), math.log2(b.scale)],
            )

    def _derived_scale(self, ct: Ciphertext, derived: float, what: str) -> float:
        """Check the scale at which a constant/plaintext for ``ct`` is encoded (see
        MAX_SCALE_EXCESS_BITS): at least Δ_ℓ·2^-4 and below 2^62.

        Raises: ScaleMismatchError (the ciphertext's scale is too far from the canonical Δ_ℓ of
        its level for ``what``)."""
        canonical = self.params.level_scale(ct.level)
        if not (math.isfinite(derived) and canonical * 2.0**-MAX_SCALE_EXCESS_BITS <= derived < 2.0**62):
            raise ScaleMismatchError(
                f"{what}: the ciphertext's scale 2^{math.log2(ct.scale):.2f} is too far from the canonical "
                f"scale 2^{math.log2(canonical):.2f} of level {ct.level} (its constant would be encoded at "
                f"2^{math.log2(derived) if derived > 0 else float('-inf'):.2f} and lose precision or overflow); "
                "encrypt at the default scale of its level",
                scale_bits=math.log2(ct.scale), canonical_scale_bits=math.log2(canonical), level=int(ct.level))
        return derived

    def _check_fits(self, scale: float, level: int, what: str) -> None:
        """A level-ℓ result at ``scale`` must leave room below Q_ℓ/2 = q_0···q_ℓ/2 for values of
        magnitude ≥ 1; otherwise every value wraps modulo Q_ℓ and decrypts to garbage.

        Raises: ScaleOverflowError."""
        need = math.log2(scale) + 1 if scale > 0 and math.isfinite(scale) else math.inf
        have = self.params.log_modulus_bits(level)
        if need > have:
            raise ScaleOverflowError(
                f"{what}: the result's scale 2^{math.log2(scale) if scale > 0 else float('-inf'):.2f} would exceed the "
                f"modulus 2^{have:.2f} left at level {level}: its values would wrap and decrypt to garbage; rescale "
                "(the default) instead of multiplying further at this level, or use a parameter set with more levels",
                scale_bits=round(math.log2(scale), 3) if scale > 0 and math.isfinite(scale) else None,
                modulus_bits=round(have, 3), level=int(level))

    # -- level management -------------------------------------------------------------------------
    def drop_to_level(self, ct: Ciphertext, level: int) -> Ciphertext:
        """Drop primes q_{level+1}..q_ℓ (the message and scale are unchanged)."""
        self._check(ct)
        if level > ct.level or level < 0:
            raise ParameterError(f"cannot raise level {ct.level} to {level}")
        if level == ct.level:
            return ct.copy()
        return Ciphertext(ct.data[:, : level + 1].copy(), level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def bring_to(self, ct: Ciphertext, level: int, scale: float) -> Ciphertext:
        """The same message at a lower ``level`` with exactly ``scale``: drop to level+1, multiply
        by the integer round(scale·q_{level+1}/ct.scale), rescale. Uses only levels the
        ciphertext has anyway (its level goes down), so operands at different levels meet
        without any scale error. Raises ParameterError if ``level`` ≥ ct.level."""
        self._check(ct)
        if level >= ct.level or level < 0:
            raise ParameterError(f"cannot bring level {ct.level} to {level}")
        x = self.drop_to_level(ct, level + 1) if ct.level > level + 1 else ct
        const_scale = self._derived_scale(x, scale * self.params.moduli[level + 1] / x.scale,
                                          f"bringing level {ct.level} to level {level}")
        res = self._scalar_residues(1.0, const_scale, x.level)
        idx = list(range(x.level + 1))
        out = self.ctx.zeros(x.size * len(idx)).reshape(x.size, len(idx), -1)
        for c in range(x.size):
            self.ctx.mul_scalar(x.data[c], res, out[c], idx)
        y = self.rescale(Ciphertext(out, x.level, x.scale * const_scale, x.params_fingerprint, x.key_tag))
        y.scale = scale  # equal up to the float rounding of const_scale (relative 2^-40)
        return y

    def _align(self, a: Ciphertext, b: Ciphertext) -> tuple[Ciphertext, Ciphertext]:
        """Bring the higher operand down to the lower's level and exact scale."""
        if a.level > b.level:
            return self.bring_to(a, b.level, b.scale), b
        if b.level > a.level:
            return a, self.bring_to(b, a.level, a.scale)
        return a, b

    # -- linear ops ------------------------------------------------------------------------------
    def _combine(self, a: Ciphertext, b: Ciphertext, op: str) -> Ciphertext:
        self._check(a, b)
        a, b = self._align(a, b)
        self._match_scale(a, b)
        ctx = self.ctx
        idx = list(range(a.level + 1))
        size = max(a.size, b.size)
        fn = ctx.add if op == "add" else ctx.sub
        if a.size == b.size:  # one call over the (size, limbs, N) batch, no zero fill
            out = ctx.empty(len(idx), size)
            fn(ctx.asarray(a.data), ctx.asarray(b.data), out, idx)
            return Ciphertext(out, a.level, a.scale, a.params_fingerprint, a.key_tag)
        out = ctx.zeros(len(idx), size)
        for c in range(size):
            if c < a.size and c < b.size:
                fn(a.data[c], b.data[c], out[c], idx)
            elif c < a.size:
                out[c] = a.data[c]
            elif op == "add":
                out[c] = b.data[c]
            else:
                ctx.neg(b.data[c], out[c], idx)
        return Ciphertext(out, a.level, a.scale, a.params_fingerprint, a.key_tag)

    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """a + b. Operands at different levels meet at the lower one with exactly its scale
        (:meth:`bring_to`); at the same level, scales must agree within 2^-20 relative.

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
        scale = a.scale * b.scale
        canonical = self.params.level_scale(a.level)
        if not math.isfinite(scale) or scale > canonical * canonical * 2.0**(2 * MAX_SCALE_EXCESS_BITS) \
                or (not rescale and scale >= MAX_SCALE):
            # a product this far above Δ_ℓ² can exceed the modulus (silent wrap-around) or overflow
            raise ScaleMismatchError(
                f"the product scale 2^{math.log2(a.scale) + math.log2(b.scale):.2f} is too far above the "
                f"canonical 2^{2 * math.log2(canonical):.2f} of level {a.level}: encrypt at the default scale",
                scale_bits=[math.log2(a.scale), math.log2(b.scale)], level=int(a.level))
        self._check_fits(scale, a.level, "multiply")
        ctx = self.ctx
        idx = list(range(a.level + 1))
        rows = len(idx)
        n = self.params.poly_degree
        out = ctx.empty(3 * rows).reshape(3, rows, n)  # every row written below (no zero fill)
        ctx.mul(a.data[0], b.data[0], out[0], idx)
        ctx.mul(a.data[0], b.data[1], out[1], idx)
        ctx.mul_add(a.data[1], b.data[0], out[1], idx)
        ctx.mul(a.data[1], b.data[1], out[2], idx)
        if rescale:
            self._check_rescaled_scale(scale, a.level)
        if relinearize:
            # c_2 is key-switched with (c_0, c_1)·P folded into the accumulator, then one ModDown
            # divides by P (or by P·q_ℓ, fusing the rescale: Kim et al. 2021 §3.2).
            q_idx, digits = self._ks_plan(a.level)
            acc = ks.key_switch_ext(ctx, out[2], self._relin_key().data, q_idx, self._p_idx, digits, add=out[:2])
            if rescale:
                data = ks.mod_down_ntt(ctx, acc, q_idx[:-1], [q_idx[-1]] + self._p_idx)
                return Ciphertext(data, a.level - 1, scale / self.params.moduli[a.level], a.params_fingerprint,
                                  a.key_tag)
            return Ciphertext(ks.mod_down_ntt(ctx, acc, q_idx, self._p_idx), a.level, scale, a.params_fingerprint,
                              a.key_tag)
        ct = Ciphertext(out, a.level, scale, a.params_fingerprint, a.key_tag)
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
        q_idx, digits = self._ks_plan(ct.level)
        data = self.ctx.asarray(ct.data)
        acc = ks.key_switch_ext(self.ctx, data[2], self._relin_key().data, q_idx, self._p_idx, digits,
                                add=data[:2])
        out = ks.mod_down_ntt(self.ctx, acc, q_idx, self._p_idx)
        return Ciphertext(out, ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)

    def relinearize_rescale(self, ct: Ciphertext) -> Ciphertext:
        """A size-3 ciphertext (e.g. a sum of tensor products, ``multiply(…, relinearize=False,
        rescale=False)``) relinearized and rescaled in one ModDown by P·q_ℓ, as :meth:`multiply`
        does for one product (Kim et al. 2021 §3.2): level ℓ → ℓ−1, scale → scale / q_ℓ. A
        size-2 ciphertext is only rescaled. Lazy relinearization: a sum of k products costs one
        key switch instead of k.

        Raises: DepthExhaustedError at level 0; MissingKeyError (no relinearization key);
        ParameterError (the rescaled scale would be far below the canonical one)."""
        self._check(ct)
        if ct.size == 2:
            return self.rescale(ct)
        if ct.level == 0:
            raise DepthExhaustedError("cannot rescale a ciphertext at level 0", level=0)
        self._check_rescaled_scale(ct.scale, ct.level)
        q_idx, digits = self._ks_plan(ct.level)
        data = self.ctx.asarray(ct.data)
        acc = ks.key_switch_ext(self.ctx, data[2], self._relin_key().data, q_idx, self._p_idx, digits, add=data[:2])
        out = ks.mod_down_ntt(self.ctx, acc, q_idx[:-1], [q_idx[-1]] + self._p_idx)
        return Ciphertext(out, ct.level - 1, ct.scale / self.params.moduli[ct.level], ct.params_fingerprint,
                          ct.key_tag)

    def rescale(self, ct: Ciphertext) -> Ciphertext:
        """Divide by q_ℓ (rounded) and drop it: level ℓ → ℓ−1, scale → scale / q_ℓ.

        Raises: DepthExhaustedError at level 0.
        """
        self._check(ct)
        if ct.level == 0:
            raise DepthExhaustedError("cannot rescale a ciphertext at level 0", level=0)
        self._check_rescaled_scale(ct.scale, ct.level)
        idx = list(range(ct.level + 1))
        # all components in one call (the same result as ctx.rescale per component)
        out = self.ctx.mod_down_ntt(self.ctx.asarray(ct.data), idx[:-1], idx[-1:])
        q_last = self.params.moduli[ct.level]
        return Ciphertext(out, ct.level - 1, ct.scale / q_last, ct.params_fingerprint, ct.key_tag)

    def _check_rescaled_scale(self, scale: float, level: int) -> None:
        """Rescaling must leave a scale ≥ 2 and at most 2^4 below the canonical Δ_{ℓ−1} (else the
        rescale rounding destroys the message, e.g. rescaling a ciphertext that was not
        multiplied since its last rescale).

        Raises: ParameterError."""
        after = scale / self.params.moduli[level]
        if after < 2.0 or (level > 0 and after < self.params.level_scale(level - 1) * 2.0**-MAX_SCALE_EXCESS_BITS):
            raise ParameterError(
                f"rescaling would leave scale 2^{math.log2(after):.1f}, far below the canonical "
                f"2^{math.log2(self.params.level_scale(level - 1)) if level > 0 else 0:.1f} of level {level - 1}: "
                f"the ciphertext's scale 2^{math.log2(scale):.1f} is too small to divide by q_{level}; rescale only "
                "after a multiplication",
                scale_bits=math.log2(scale))

    # -- plaintext and scalar operands ------------------------------------------------------------------
    def _encoder(self):
        if self._enc is None:
            from .encoder import Encoder

            self._enc = Encoder(self.context)
        return self._enc

    def _as_plain(self, values, level: int, scale: float) -> Plaintext:
        if isinstance(values, Plaintext):
            if values.params_fingerprint != self.params.fingerprint:
                raise KeyMismatchError("plaintext belongs to other parameters")
            if values.level != level:
                raise LevelError(f"plaintext is at level {values.level}, the ciphertext at level {level}",
                                 plaintext_level=values.level, ciphertext_level=level)
            return values
        return self._encoder().encode(values, level=level, scale=scale)

    def add_plain(self, ct: Ciphertext, values) -> Ciphertext:
        """ct + p for a vector (≤ slot_count values, zero-padded) or a Plaintext at the
        ciphertext's level. Raises EncodingError (NaN/inf/too many), LevelError, ScaleMismatchError."""
        self._check(ct)
        pt = self._as_plain(values, ct.level, ct.scale)
        if abs(pt.scale - ct.scale) > SCALE_TOLERANCE * ct.scale:
            raise ScaleMismatchError("plaintext scale differs from the ciphertext's")
        out = ct.copy()
        self.ctx.add(out.data[0], pt.data, out.data[0], list(range(ct.level + 1)))
        return out

    def subtract_plain(self, ct: Ciphertext, values) -> Ciphertext:
        """ct − p (see :meth:`add_plain`)."""
        if isinstance(values, Plaintext):
            raise ParameterError("subtract_plain takes values; negate a Plaintext by encoding −values")
        return self.add_plain(ct, -np.asarray(values, dtype=np.complex128))

    def multiply_plain(self, ct: Ciphertext, values, rescale: bool = True) -> Ciphertext:
        """ct ⊙ p slot-wise; p is encoded at the ciphertext's level with the scale that puts the
        rescaled result exactly on the canonical scale Δ_{ℓ−1} (unless a Plaintext is given).
        Consumes one level.

        Raises: DepthExhaustedError at level 0; EncodingError; LevelError.
        """
        self._check(ct)
        if rescale and ct.level == 0:
            raise DepthExhaustedError("multiply_plain needs a level to rescale, but the ciphertext is at level 0")
        # scale chosen so the rescaled result sits exactly on the canonical scale of level ℓ−1
        target = self.params.level_scale(ct.level - 1) if ct.level > 0 else ct.scale
        pt_scale = target * self.params.moduli[ct.level] / ct.scale
        self._check_fits(ct.scale * (values.scale if isinstance(values, Plaintext) else pt_scale), ct.level,
                         "multiply_plain")
        if not isinstance(values, Plaintext):
            self._derived_scale(ct, pt_scale, "multiply_plain")
        pt = self._as_plain(values, ct.level, pt_scale)
        idx = list(range(ct.level + 1))
        out = self.ctx.zeros(ct.size * len(idx)).reshape(ct.size, len(idx), -1)
        for c in range(ct.size):
            self.ctx.mul(ct.data[c], pt.data, out[c], idx)
        res = Ciphertext(out, ct.level, ct.scale * pt.scale, ct.params_fingerprint, ct.key_tag)
        return self.rescale(res) if rescale else res

    def _scalar_residues(self, value: float, scale: float, level: int) -> list[int]:
        try:
            scaled = float(value) * float(scale)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"scalar must be a real number: {exc}") from exc
        if not math.isfinite(scaled) or abs(scaled) >= 2.0**62:
            raise EncodingError("scalar × scale must be finite and below 2^62", value=float(value)
                                if math.isfinite(float(value)) else None)
        v = round(scaled)
        return [v % q for q in self.params.moduli[: level + 1]]

    def multiply_scalar(self, ct: Ciphertext, value: float, rescale: bool = True) -> Ciphertext:
        """ct · c for a real constant c (encoded as an integer with the scale that puts the
        rescaled result exactly on the canonical scale Δ_{ℓ−1}). One level."""
        self._check(ct)
        if rescale and ct.level == 0:
            raise DepthExhaustedError("multiply_scalar needs a level to rescale, but the ciphertext is at level 0")
        target = self.params.level_scale(ct.level - 1) if ct.level > 0 else ct.scale
        q_l = self._derived_scale(ct, target * self.params.moduli[ct.level] / ct.scale,  # rescaled: canonical
                                  "multiply_scalar")
        self._check_fits(ct.scale * q_l, ct.level, "multiply_scalar")
        res_mod = self._scalar_residues(value, q_l, ct.level)
        idx = list(range(ct.level + 1))
        out = self.ctx.zeros(ct.size * len(idx)).reshape(ct.size, len(idx), -1)
        for c in range(ct.size):
            self.ctx.mul_scalar(ct.data[c], res_mod, out[c], idx)
        res = Ciphertext(out, ct.level, ct.scale * q_l, ct.params_fingerprint, ct.key_tag)
        return self.rescale(res) if rescale else res

    def add_scalar(self, ct: Ciphertext, value: float) -> Ciphertext:
        """ct + c in every slot (the constant polynomial round(c·scale)); no level used."""
        self._check(ct)
        res_mod = self._scalar_residues(value, ct.scale, ct.level)
        out = ct.copy()
        idx = list(range(ct.level + 1))
        # a constant polynomial is the constant in every NTT slot
        const = self.ctx.asarray(np.asarray(res_mod, dtype=np.uint64)[:, None] * np.ones((1, self.params.poly_degree), dtype=np.uint64))
        self.ctx.add(out.data[0], const, out.data[0], idx)
        return out

    # -- rotations -------------------------------------------------------------------------------------
    def _galois_keys(self) -> dict:
        return self.eval_keys.galois_keys if self.eval_keys is not None else {}

    def rotation_plan(self, steps: int) -> list[int]:
        """Galois elements whose keys realise a left rotation by ``steps`` (normalised modulo
        the slot count; 0 → []): the direct key if present, else the binary decomposition
        into available power-of-two keys. Raises MissingRotationKeyError naming the steps."""
        slots = self.params.slot_count
        k = int(steps) % slots
        if k == 0:
            return []
        n = self.params.poly_degree
        keys = self._galois_keys()
        g = galois_element(k, n)
        if g in keys:
            return [g]
        plan, missing = [], []
        bit = 1
        while bit < slots:
            if k & bit:
                gb = galois_element(bit, n)
                (plan if gb in keys else missing).append(gb if gb in keys else bit)
            bit <<= 1
        if missing:
            # also try right rotations by powers of two (k = slots - r)
            r = slots - k
            plan2, missing2, bit = [], [], 1
            while bit < slots:
                if r & bit:
                    gb = galois_element(-bit, n)
                    (plan2 if gb in keys else missing2).append(gb if gb in keys else -bit)
                bit <<= 1
            if not missing2:
                return plan2
            raise MissingRotationKeyError(
                f"no Galois key for a rotation by {k} and no composition from the available keys; "
                f"upload a key for step {k} or for steps {missing}",
                steps=[k], missing_power_of_two_steps=missing,
            )
        return plan

    def _galois_key(self, g: int) -> GaloisKey:
        """The Galois key of element ``g`` in its evaluation form (``GaloisKey.permuted``; the
        evaluator's keys are converted once, by ``CkksContext.to_device``)."""
        key = self._galois_keys()[g]
        if not key.permuted:  # keys swapped in after construction: convert (cached per key)
            key = self.context.to_device(key)
        return key

    def _apply_galois(self, ct: Ciphertext, g: int, exts=None) -> Ciphertext:
        """One Galois key switch (Halevi–Shoup, CRYPTO 2018 §5): aut_g(Σ_d x_d ⊙ K'_d + P·c_0),
        ModDown; x_d the digits of the unrotated c_1 (``exts`` when hoisted, else made on the fly),
        K' the key's evaluation form; the automorphism is applied once, to the two sums of each
        output row (protocol "Rotations"). A single rotation is the hoisted one of one step."""
        key = self._galois_key(g)
        ctx = self.ctx
        q_idx, digits = self._ks_plan(ct.level)
        data = ctx.asarray(ct.data)
        c0 = data[0].reshape(1, len(q_idx), -1)
        if exts is None:
            acc = ks.key_switch_ext(ctx, data[1], key.data, q_idx, self._p_idx, digits, add=c0, galois_elt=g)
        else:
            acc = ks.ks_inner(ctx, exts, key.data, q_idx, self._p_idx, galois_elt=g, add=c0)
        out = ks.mod_down_ntt(ctx, acc, q_idx, self._p_idx)
        return Ciphertext(out, ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)

    # -- batched: many independent operations of one kind and level as one backend call per stage --
    def _stack(self, arrays) -> "np.ndarray":
        """(B, rows, N) on the device from B arrays (rows, N)."""
        first = arrays[0]
        out = self.ctx.empty(int(first.shape[0]), len(arrays))
        for i, a in enumerate(arrays):
            out[i] = a
        return out

    def multiply_many(self, pairs: "list[tuple[Ciphertext, Ciphertext]]") -> list[Ciphertext]:
        """``[multiply(a, b) for a, b in pairs]`` (relinearized and rescaled), bit for bit, with
        the batch in one backend call per stage: the tensor products element-wise over
        (B, rows, N), the relinearizations as one ``key_switch_ext_batch`` (hybrid key switching,
        Han–Ki CT-RSA 2020), the fused ModDown + rescale (Kim et al. 2021 §3.2) as one
        ``mod_down_ntt`` over (2B, R, N). Every pair is checked as :meth:`multiply` checks it,
        first; pairs at different levels (after alignment) are multiplied one by one.

        Raises: what :meth:`multiply` raises, for the first pair at fault (nothing is computed).
        """
        prepared = []
        for a, b in pairs:
            self._check(a, b)
            if a.size != 2 or b.size != 2:
                raise ParameterError("multiply needs relinearized (size-2) ciphertexts; call relinearize first")
            a, b = self._align(a, b)
            if a.level == 0:
                raise DepthExhaustedError("multiplication needs a level to rescale, but the ciphertext is at level 0",
                                          level=0)
            prepared.append((a, b))
        if len(prepared) < 2 or len({a.level for a, _ in prepared}) != 1:
            return [self.multiply(a, b) for a, b in prepared]
        self._relin_key()
        scales = []
        for a, b in prepared:  # the scale rules of multiply, per pair, before anything is computed
            scale = a.scale * b.scale
            canonical = self.params.level_scale(a.level)
            if not math.isfinite(scale) or scale > canonical * canonical * 2.0**(2 * MAX_SCALE_EXCESS_BITS):
                return [self.multiply(x, y) for x, y in prepared]  # multiply raises the precise error
            self._check_fits(scale, a.level, "multiply")
            self._check_rescaled_scale(scale, a.level)
            scales.append(scale)
        ctx = self.ctx
        level = prepared[0][0].level
        idx = list(range(level + 1))
        rows, n, count = len(idx), self.params.poly_degree, len(prepared)
        a0 = self._stack([a.data[0] for a, _ in prepared])
        a1 = self._stack([a.data[1] for a, _ in prepared])
        b0 = self._stack([b.data[0] for _, b in prepared])
        b1 = self._stack([b.data[1] for _, b in prepared])
        d0, d1, d2 = ctx.empty(rows, count), ctx.empty(rows, count), ctx.empty(rows, count)  # written below
        ctx.mul(a0, b0, d0, idx)
        ctx.mul(a0, b1, d1, idx)
        ctx.mul_add(a1, b0, d1, idx)
        ctx.mul(a1, b1, d2, idx)
        add = ctx.empty(2 * rows, count).reshape(count, 2, rows, n)
        add[:, 0] = d0
        add[:, 1] = d1
        q_idx, digits = self._ks_plan(level)
        acc = ks.key_switch_ext_batch(ctx, d2, self._relin_key().data, q_idx, self._p_idx, digits, add=add)
        full = acc.shape[-2]
        data = ks.mod_down_ntt(ctx, acc.reshape(2 * count, full, n), q_idx[:-1], [q_idx[-1]] + self._p_idx)
        data = data.reshape(count, 2, rows - 1, n)
        q_last = self.params.moduli[level]
        return [Ciphertext(data[i].copy(), level - 1, scales[i] / q_last, a.params_fingerprint, a.key_tag)
                for i, (a, _) in enumerate(prepared)]

    def rotate_batch(self, cts: "list[Ciphertext]", steps: int) -> list[Ciphertext]:
        """``[rotate(ct, steps) for ct in cts]``, bit for bit, with each Galois key switch of the
        rotation plan as one ``key_switch_ext_batch`` (automorphism applied to its sums) + one
        ``mod_down_ntt`` over the batch. Ciphertexts at different levels are rotated one by one.

        Raises: what :meth:`rotate` raises (MissingRotationKeyError, ParameterError), before
        anything is computed."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise ParameterError(f"steps must be an integer, got {steps!r}")
        for ct in cts:
            self._check_rotatable(ct)
        plan = self.rotation_plan(int(steps))
        if len(cts) < 2 or len({ct.level for ct in cts}) != 1:
            return [self.rotate(ct, int(steps)) for ct in cts]
        ctx = self.ctx
        level, count, n = cts[0].level, len(cts), self.params.poly_degree
        q_idx, digits = self._ks_plan(level)
        rows = len(q_idx)
        c0 = self._stack([ct.data[0] for ct in cts])
        c1 = self._stack([ct.data[1] for ct in cts])
        for g in plan:
            key = self._galois_key(g)
            acc = ks.key_switch_ext_batch(ctx, c1, key.data, q_idx, self._p_idx, digits,
                                          add=c0.reshape(count, 1, rows, n), galois_elt=g)
            out = ks.mod_down_ntt(ctx, acc.reshape(2 * count, acc.shape[-2], n), q_idx, self._p_idx)
            out = out.reshape(count, 2, rows, n)
            c0, c1 = out[:, 0].copy(), out[:, 1].copy()
        return [Ciphertext(self._pair(c0[i], c1[i]), ct.level, ct.scale, ct.params_fingerprint, ct.key_tag)
                if plan else ct.copy() for i, ct in enumerate(cts)]

    def _pair(self, c0, c1):
        out = self.ctx.empty(2 * int(c0.shape[0])).reshape(2, int(c0.shape[0]), self.params.poly_degree)
        out[0] = c0
        out[1] = c1
        return out

    def _check_rotatable(self, ct: Ciphertext) -> None:
        self._check(ct)
        if ct.size != 2:
            raise ParameterError("rotation needs a relinearized (size-2) ciphertext; call relinearize first")

    def rotate(self, ct: Ciphertext, steps: int) -> Ciphertext:
        """Rotate slots left by ``steps`` (negative = right; normalised modulo slot_count;
        0 → a copy) with the automorphism X → X^{5^steps} and a Galois key switch.

        Raises: MissingRotationKeyError (lists the steps needed); ParameterError for a
        size-3 ciphertext or a non-integer step.
        """
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise ParameterError(f"steps must be an integer, got {steps!r}")
        self._check_rotatable(ct)
        out = ct.copy()
        for g in self.rotation_plan(int(steps)):
            out = self._apply_galois(out, g)
        return out

    def rotate_many(self, ct: Ciphertext, steps: Iterable[int]) -> dict[int, Ciphertext]:
        """Hoisted rotations: one ModUp of c_1 shared by every rotation whose key exists
        directly (Halevi–Shoup, "Faster homomorphic linear transformations in HElib",
        CRYPTO 2018, §5); others fall back to :meth:`rotate`. Returns {step: ciphertext}."""
        self._check_rotatable(ct)
        steps = list(steps)
        for st in steps:
            if isinstance(st, bool) or not isinstance(st, (int, np.integer)):
                raise ParameterError(f"steps must be integers, got {st!r}")
        steps = [int(s) for s in steps]
        keys = self._galois_keys()
        exts = None
        out: dict[int, Ciphertext] = {}
        for st in steps:
            k = st % self.params.slot_count
            if k == 0:
                out[st] = ct.copy()
                continue
            g = galois_element(k, self.params.poly_degree)
            if g in keys:
                if exts is None:
                    exts = self.mod_up(ct.data[1], ct.level)
                out[st] = self._apply_galois(ct, g, exts)
            else:
                out[st] = self.rotate(ct, st)
        return out

    def conjugate(self, ct: Ciphertext) -> Ciphertext:
        """Complex conjugation of every slot (X → X^{2N−1}). Raises MissingRotationKeyError."""
        self._check_rotatable(ct)
        g = 2 * self.params.poly_degree - 1
        if g not in self._galois_keys():
            raise MissingRotationKeyError("no conjugation key: generate evaluation keys with conjugation=True",
                                          steps=["conjugate"])
        return self._apply_galois(ct, g)

    def sum_slots(self, ct: Ciphertext) -> Ciphertext:
        """Sum of all slots, in every slot: log2(slots) rotations by 1, 2, 4, … (needs those
        Galois keys). No level used."""
        out = ct
        step = 1
        while step < self.params.slot_count:
            out = self.add(out, self.rotate(out, step))
            step <<= 1
        return out

    def inner_product(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """Σ_i a_i·b_i in every slot (one multiply + :meth:`sum_slots`). One level."""
        return self.sum_slots(self.multiply(a, b))

    # -- key switching ------------------------------------------------------------------------------
    def mod_up(self, poly, level: int):
        """ModUp of every dnum-digit of ``poly`` ((level+1, N), NTT domain): returns a
        (digits, level+1+k, N) array, one NTT-domain extension over Q_ℓ·P per digit (Han–Ki 2020,
        Alg. 1). Shared by all rotations of one ciphertext (hoisting, Halevi–Shoup 2018 §5)."""
        q_idx, digits = self._ks_plan(level)
        return ks.ks_mod_up(self.ctx, poly, q_idx, self._p_idx, digits)

    def key_switch_inner(self, exts, level: int, ksk: KeySwitchingKey, galois_elt: int | None = None):
        """Inner product of ModUp digits with ``ksk`` over Q_ℓ·P, then ModDown by P.
        With ``galois_elt`` the automorphism is applied to each digit first (hoisted
        rotation; ``ksk`` canonical or in the evaluation form, computed as aut_g(Σ_d x_d ⊙ K'_d)).
        Returns (d_0, d_1), each (level+1, N) NTT domain."""
        q_idx, _ = self._ks_plan(level)
        g = int(galois_elt or 1) % (2 * self.params.poly_degree)
        data = ksk.data
        if g != 1:
            if isinstance(ksk, GaloisKey) and ksk.galois_elt % (2 * self.params.poly_degree) == g:
                data = self.context.to_device(ksk).data
            elif not (isinstance(ksk, GaloisKey) and ksk.permuted):
                data = ks.galois_key_form(self.ctx, self.ctx.asarray(ksk.data), g, True)
        acc = ks.ks_inner(self.ctx, exts, data, q_idx, self._p_idx, galois_elt=g)
        d = ks.mod_down_ntt(self.ctx, acc, q_idx, self._p_idx)
        return d[0], d[1]

    def mod_down_ntt(self, a, level: int):
        """ModDown in the NTT domain: round(a / P) over q_0..q_ℓ, computed as
        (a_Q − Conv_{P→Q}([a]_P)) · P^{-1} with the rounding offset ⌊P/2⌋. Only the k special
        rows go back to coefficients, so this costs k inverse and ℓ+1 forward NTTs instead of
        ℓ+1+k and ℓ+1 (Kim et al., "Over 100x faster bootstrapping", 2021, §3.2). ``a``:
        (level+1+k, N) NTT domain over Q_ℓ·P; returns (level+1, N)."""
        q_idx, _ = self._ks_plan(level)
        return ks.mod_down_ntt(self.ctx, a, q_idx, self._p_idx)

    def key_switch(self, poly, level: int, ksk: KeySwitchingKey):
        """Hybrid key switching of one NTT-domain polynomial ``poly`` (level+1, N) under
        ``ksk``: returns (d_0, d_1), each (level+1, N) NTT domain, with
        d_0 + d_1·s ≈ poly·s' (mod Q_ℓ)."""
        q_idx, digits = self._ks_plan(level)
        acc = ks.key_switch_ext(self.ctx, poly, ksk.data, q_idx, self._p_idx, digits)
        d = ks.mod_down_ntt(self.ctx, acc, q_idx, self._p_idx)
        return d[0], d[1]
