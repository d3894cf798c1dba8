"""CKKS data objects: Plaintext, Ciphertext, SecretKey, PublicKey, KeySwitchingKey,
RelinearizationKey, GaloisKey and EvaluationKeys.

Polynomials are RNS arrays (see ``wavis.backend.protocol``): shape (limbs, N), uint64, NTT
domain unless stated. A ciphertext at level ℓ lives over q_0..q_ℓ (ℓ+1 limbs) and carries
its scale (a float, exact value, not just 2^scale_bits), the parameter fingerprint and a
``key_tag`` (16 bytes identifying the key pair) so operands of different keys are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Plaintext:
    """An encoded (not encrypted) polynomial: ``data`` (level+1, N) uint64."""

    data: Any
    level: int
    scale: float
    params_fingerprint: str
    is_ntt: bool = True


@dataclass
class Ciphertext:
    """An RLWE ciphertext (c_0, c_1[, c_2]) decrypting to c_0 + c_1·s (+ c_2·s²).

    Attributes:
        data: (size, level+1, N) uint64, NTT domain; size is 2, or 3 before relinearization.
        level: ℓ, remaining multiplicative depth (0 = no rescale left).
        scale: the scale of the encrypted message (float).
        params_fingerprint: hex fingerprint of the :class:`CkksParameters`.
        key_tag: 16 bytes identifying the key pair that encrypted it.
    """

    data: Any
    level: int
    scale: float
    params_fingerprint: str
    key_tag: bytes

    @property
    def size(self) -> int:
        return int(self.data.shape[0])

    def copy(self) -> "Ciphertext":
        return Ciphertext(self.data.copy(), self.level, self.scale, self.params_fingerprint, self.key_tag)


@dataclass
class SecretKey:
    """Uniform ternary secret s: ``coeffs`` (N,) int64 in {-1,0,1}; ``data`` its NTT over
    every prime of the scheme (q_0..q_L, p_0..), shape (L+1+k, N) uint64."""

    coeffs: np.ndarray
    data: Any
    params_fingerprint: str
    key_tag: bytes


@dataclass
class PublicKey:
    """RLWE public key (b, a) = (−a·s + e, a) over q_0..q_L: ``data`` (2, L+1, N) uint64 NTT."""

    data: Any
    params_fingerprint: str
    key_tag: bytes
    a_seed: bytes | None = None  # 32-byte seed the uniform component a was expanded from


@dataclass
class KeySwitchingKey:
    """Hybrid key-switching key from s' to s (Han–Ki, CT-RSA 2020, §3): for each digit j,
    (b_j, a_j) = (−a_j·s + e_j + P·[Q̂_j·(Q̂_j^{-1} mod Q_j)]·s', a_j) over every prime
    q_0..q_L, p_0..p_{k-1}. ``data``: (dnum, 2, L+1+k, N) uint64, NTT domain. ``a_seed``:
    the 32-byte seed every a_j was expanded from (``wavis.ring.sampling.expand_uniform``),
    if any — the wire format then stores the seed instead of the a_j."""

    data: Any
    a_seed: bytes | None = None


@dataclass
class RelinearizationKey(KeySwitchingKey):
    """Key-switching key from s² to s."""


@dataclass
class GaloisKey(KeySwitchingKey):
    """Key-switching key from s(X^g) to s for the Galois element ``galois_elt``.

    ``permuted``: False (the canonical form: what key generation makes, the wire format stores
    and the key tags cover) or True, the evaluation form rotations compute with: ``data`` holds
    aut_g^{-1} of every key polynomial (the NTT-domain automorphism X → X^{g^{-1}}, a permutation
    of each row), so that a rotation's inner product Σ_d aut_g(x_d)·K_d = aut_g(Σ_d x_d·aut_g^{-1}(K_d))
    runs over the digits x_d as they are and the automorphism is applied once to its two sums.
    Loading keys into a context (:meth:`wavis.ckks.CkksContext.to_device`, an ``Evaluator``)
    converts them once, in place on the CPU (so they are never held twice); serialization writes
    the canonical form either way, and ``CkksContext.to_host`` returns canonical copies."""

    galois_elt: int = 1
    permuted: bool = False


@dataclass
class EncapsulationKeys:
    """Sparse-secret encapsulation keys of a bootstrap (Bossuat, Troncoso-Pastoriza, Hubaux,
    "Bootstrapping for approximate HE with negligible failure-probability by using
    sparse-secret encapsulation", ACNS 2022; OpenFHE's SPARSE_ENCAPSULATED).

    Attributes:
        hamming_weight: h of the sparse secret s' (exactly h non-zero coefficients in {±1}).
        dense_to_sparse: key switching s → s' over q_0 and the first special prime p_0 only (so
            the sparse secret is never used with a large modulus): ``data`` (1, 2, 2, N) uint64
            NTT over (q_0, p_0).
        sparse_to_dense: key switching s' → s, an ordinary hybrid key over every prime,
            ``data`` (dnum, 2, L+1+k, N) encrypted under the user's secret s.
    """

    hamming_weight: int
    dense_to_sparse: KeySwitchingKey
    sparse_to_dense: KeySwitchingKey


@dataclass
class EvaluationKeys:
    """Everything the server needs to compute (nothing secret): the relinearization key,
    Galois keys by Galois element and (for bootstrap presets with sparse-secret
    encapsulation) the :class:`EncapsulationKeys`."""

    params_fingerprint: str
    key_tag: bytes
    relin_key: RelinearizationKey | None = None
    galois_keys: dict[int, GaloisKey] = field(default_factory=dict)
    encapsulation: EncapsulationKeys | None = None
