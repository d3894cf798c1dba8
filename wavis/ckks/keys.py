"""CKKS key generation: secret, public, relinearization and Galois keys.

Secret: uniform ternary s ∈ {−1,0,1}^N (the distribution the HE Standard table assumes).
Public key: (b, a) = (−a·s + e, a) mod Q_L with a uniform and e discrete Gaussian (σ = 3.2).
Key-switching keys: hybrid RNS gadget with ``dnum`` digits and special modulus P
(Han–Ki, "Better bootstrapping for approximate homomorphic encryption", CT-RSA 2020, §3;
Kim et al., "Over 100x faster bootstrapping", 2021, §2.3).
Randomness: ChaCha20 CSPRNG seeded from the OS (``secrets``) unless a test seed is given.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from ..errors import ParameterError
from ..ring.sampling import Sampler, expand_uniform
from .context import CkksContext, context_of
from .params import CkksParameters
from .structures import (
    EncapsulationKeys, EvaluationKeys, GaloisKey, KeySwitchingKey, PublicKey, RelinearizationKey, SecretKey,
)


def galois_element(steps: int, poly_degree: int) -> int:
    """Galois element 5^steps mod 2N realising a left rotation by ``steps`` slots
    (negative = right); steps are taken modulo N/2."""
    slots = poly_degree // 2
    return pow(5, steps % slots, 2 * poly_degree)


CONJUGATION = -1  # marker: galois element 2N−1 (complex conjugation)


def key_tag_of(public_key_data: np.ndarray) -> bytes:
    """16-byte identifier of a key pair: SHA-256 of the public key's residues."""
    return hashlib.sha256(np.ascontiguousarray(public_key_data).tobytes()).digest()[:16]


class KeyGenerator:
    """Generates a fresh key pair and its evaluation keys.

    Args:
        params: a :class:`CkksContext`, or the scheme parameters (then the default CPU context, or
            the context of ``backend``).
        seed: 32 bytes for reproducible tests only; ``None`` (default) draws OS randomness.
        backend: with parameters only: the backend whose context to use.

    Raises:
        ParameterError: a seed that is not 32 bytes.
    """

    def __init__(self, params: "CkksParameters | CkksContext", seed: bytes | None = None, backend=None) -> None:
        self.context = context_of(params, backend)
        params = self.params = self.context.params
        self.backend = self.context.backend
        self.ctx = self.context.ring
        self.sampler = Sampler(seed)
        n = params.poly_degree
        self._all_idx = list(range(len(params.all_moduli)))
        s = self.sampler.ternary(n)
        s_ntt = self.ctx.from_signed(s, self._all_idx)
        self.ctx.ntt(s_ntt, self._all_idx)
        pk = self._public_key_data(s_ntt)
        self.key_tag = key_tag_of(self.ctx.to_numpy(pk))
        self.secret_key = SecretKey(coeffs=s, data=s_ntt, params_fingerprint=params.fingerprint, key_tag=self.key_tag)
        self._public_key = PublicKey(data=pk, params_fingerprint=params.fingerprint, key_tag=self.key_tag,
                                     a_seed=self._pk_seed)

    # -- helpers -------------------------------------------------------------------------------
    def _error_ntt(self, idx: list[int]):
        e = self.ctx.from_signed(self.sampler.gaussian(self.params.poly_degree), idx)
        self.ctx.ntt(e, idx)
        return e

    def _rlwe_zero(self, s_ntt, idx: list[int], a):
        """(−a·s + e, a) over the primes ``idx`` (NTT domain) for a uniform ``a``."""
        ctx = self.ctx
        a = ctx.asarray(np.ascontiguousarray(a))
        s = s_ntt[idx] if len(idx) != s_ntt.shape[0] else s_ntt
        b = self._error_ntt(idx)
        t = ctx.zeros(len(idx))
        ctx.mul(a, s, t, idx)
        ctx.sub(b, t, b, idx)
        return b, a

    def _public_key_data(self, s_ntt):
        q_idx = list(range(len(self.params.moduli)))
        self._pk_seed = self.sampler.random_bytes(32)
        a0 = expand_uniform(self._pk_seed, self.params.moduli, self.params.poly_degree)[0]
        b, a = self._rlwe_zero(s_ntt, q_idx, a0)
        out = self.ctx.zeros(2 * len(q_idx)).reshape(2, len(q_idx), -1)
        out[0] = b
        out[1] = a
        return out

    def _switching_key(self, s_from_ntt) -> tuple[np.ndarray, bytes]:
        """Rows (dnum, 2, L+1+k, N): key switching from ``s_from`` to s, and the seed of its a_j."""
        p = self.params
        ctx = self.ctx
        idx = self._all_idx
        big_p = 1
        for q in p.special_moduli:
            big_p *= q
        seed = self.sampler.random_bytes(32)
        a_all = expand_uniform(seed, p.all_moduli, p.poly_degree, len(p.digits))
        out = ctx.zeros(len(p.digits) * 2 * len(idx)).reshape(len(p.digits), 2, len(idx), -1)
        for j, (start, end) in enumerate(p.digits):
            b, a = self._rlwe_zero(self.secret_key.data, idx, a_all[j])
            rows = list(range(start, end))
            scaled = ctx.zeros(len(rows))
            ctx.mul_scalar(s_from_ntt[start:end], [big_p % p.all_moduli[i] for i in rows], scaled, rows)
            bj = b[start:end].copy()
            ctx.add(bj, scaled, bj, rows)
            b[start:end] = bj
            out[j, 0] = b
            out[j, 1] = a
        return out, seed

    # -- public API ------------------------------------------------------------------------------
    def public_key(self) -> PublicKey:
        """The public key (b, a) over q_0..q_L, NTT domain."""
        return self._public_key

    def relinearization_key(self) -> RelinearizationKey:
        """Key-switching key from s² to s."""
        s = self.secret_key.data
        s2 = self.ctx.zeros(len(self._all_idx))
        self.ctx.mul(s, s, s2, self._all_idx)
        data, seed = self._switching_key(s2)
        return RelinearizationKey(data=data, a_seed=seed)

    def galois_key(self, galois_elt: int) -> GaloisKey:
        """Key-switching key from s(X^g) to s, for an odd Galois element g < 2N."""
        n2 = 2 * self.params.poly_degree
        if galois_elt % 2 == 0 or not 0 < galois_elt < n2:
            raise ParameterError(f"galois element must be odd in 1..{n2 - 1}, got {galois_elt}")
        sg = self.ctx.automorphism(self.secret_key.data, galois_elt, self._all_idx, True)
        data, seed = self._switching_key(sg)
        return GaloisKey(data=data, a_seed=seed, galois_elt=galois_elt)

    def encapsulation_keys(self, hamming_weight: int) -> EncapsulationKeys:
        """A fresh sparse secret s' of exactly ``hamming_weight`` non-zero ±1 coefficients and the
        two key-switching keys of sparse-secret encapsulation (Bossuat–Troncoso-Pastoriza–Hubaux,
        ACNS 2022, §3): s → s' over q_0·p_0 only (one digit, the first special prime as P: an
        RLWE sample under s' with a ~121-bit modulus, as Lattigo's and OpenFHE's; its security is
        that paper's analysis, not the HE Standard table) and s' → s over Q·P (under the user's
        uniform ternary s, covered by the table). s' itself is discarded.

        Raises: ParameterError (hamming_weight outside 1..N)."""
        p = self.params
        ctx = self.ctx
        n = p.poly_degree
        if isinstance(hamming_weight, bool) or not isinstance(hamming_weight, (int, np.integer)) \
                or not 1 <= hamming_weight <= n:
            raise ParameterError(f"hamming_weight must be an integer in 1..{n}, got {hamming_weight!r}")
        sp = ctx.from_signed(self.sampler.sparse_ternary(n, int(hamming_weight)), self._all_idx)
        ctx.ntt(sp, self._all_idx)
        up, seed_up = self._switching_key(sp)  # s' → s, under s
        # s → s' restricted to (q_0, p_0): b = −a·s' + e + p_0·s over those two primes only
        rows = [0, p.special_index()[0]]
        mods = [p.all_moduli[i] for i in rows]
        seed = self.sampler.random_bytes(32)
        a = expand_uniform(seed, mods, n)[0]
        full_a = ctx.zeros(len(self._all_idx))
        full_a[rows] = ctx.asarray(a)
        b, _ = self._rlwe_zero(sp, self._all_idx, full_a)
        t = ctx.zeros(1)
        ctx.mul_scalar(self.secret_key.data[:1], [p.special_moduli[0] % p.moduli[0]], t, [0])
        b0 = b[:1].copy()
        ctx.add(b0, t, b0, [0])
        b[:1] = b0
        down = ctx.zeros(2 * len(rows)).reshape(1, 2, len(rows), -1)
        down[0, 0] = b[rows]
        down[0, 1] = full_a[rows]
        return EncapsulationKeys(int(hamming_weight), KeySwitchingKey(down, a_seed=seed),
                                 KeySwitchingKey(up, a_seed=seed_up))

    def evaluation_keys(self, galois_steps: Iterable[int] = (), conjugation: bool = False,
                        encapsulation_hamming_weight: int | None = None) -> EvaluationKeys:
        """Relinearization key plus Galois keys for the rotation ``galois_steps`` (slot
        counts, any integers; normalised modulo N/2), optionally conjugation and the
        sparse-secret encapsulation keys (:meth:`encapsulation_keys`) with that Hamming weight."""
        gk: dict[int, GaloisKey] = {}
        galois_steps = list(galois_steps)
        for st in galois_steps:
            if isinstance(st, bool) or not isinstance(st, (int, np.integer)):
                raise ParameterError(f"rotation steps must be integers, got {st!r}")
        for st in galois_steps:
            g = galois_element(int(st), self.params.poly_degree)
            if g != 1 and g not in gk:
                gk[g] = self.galois_key(g)
        if conjugation:
            g = 2 * self.params.poly_degree - 1
            gk[g] = self.galois_key(g)
        return EvaluationKeys(
            params_fingerprint=self.params.fingerprint, key_tag=self.key_tag,
            relin_key=self.relinearization_key(), galois_keys=gk,
            encapsulation=(self.encapsulation_keys(encapsulation_hamming_weight)
                           if encapsulation_hamming_weight is not None else None),
        )
