"""The one Backend protocol shared by the CPU (``wavis._core``) and CUDA implementations.

Data model
----------
A polynomial in RNS form is a 2-D array of shape ``(limbs, N)``, dtype ``uint64``, C-contiguous,
row ``r`` holding the residues modulo ``ctx.moduli[idx[r]]``. ``idx`` is a 1-D ``int64`` array
(or sequence) of prime indices into the context's modulus list, so one context that holds
every prime of a scheme (the ciphertext chain q_0..q_L and the special primes p_0..p_{k-1})
serves every level and every sub-basis. Batches of polynomials are 3-D arrays
``(batch, limbs, N)`` where noted. All residues are fully reduced (in ``[0, q)``) on input and
output of every call; NTT-domain arrays are in bit-reversed order (the order the negacyclic
Cooley–Tukey forward transform produces; only automorphisms depend on it).

Arrays are NumPy arrays for the CPU backend and CuPy arrays for the CUDA backend; the
caller converts with ``asarray``/``to_numpy``. Integer results must match bit for bit
between backends (the CPU backend is the oracle).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

Array = Any  # numpy.ndarray or cupy.ndarray, shape (limbs, N) uint64 unless stated
Index = Sequence[int] | np.ndarray


@runtime_checkable
class RingContext(Protocol):
    """Precomputed tables (NTT twiddles with Shoup companions, Barrett constants, CRT
    constants) for ring degree ``N`` and a fixed list of NTT-friendly primes.

    Algorithms: negacyclic NTT with Harvey lazy butterflies (D. Harvey, "Faster arithmetic
    for number-theoretic transforms", J. Symb. Comp. 2014); fast basis conversion
    (Bajard et al., SAC 2016; Halevi–Polyakov–Shoup, CT-RSA 2019, §2).
    """

    N: int
    moduli: tuple[int, ...]

    # -- memory -------------------------------------------------------------------------
    def asarray(self, a: np.ndarray) -> Array: ...
    def to_numpy(self, a: Array) -> np.ndarray: ...
    def zeros(self, limbs: int) -> Array: ...

    # -- transforms (in place) -------------------------------------------------------------
    def ntt(self, a: Array, idx: Index) -> None:
        """Forward negacyclic NTT of every row, in place. ``a``: (limbs, N) or (batch, limbs, N)."""
    def intt(self, a: Array, idx: Index) -> None:
        """Inverse of :meth:`ntt` (includes the 1/N factor), in place."""

    # -- element-wise (out may alias an input) -------------------------------------------
    def add(self, a: Array, b: Array, out: Array, idx: Index) -> None: ...
    def sub(self, a: Array, b: Array, out: Array, idx: Index) -> None: ...
    def neg(self, a: Array, out: Array, idx: Index) -> None: ...
    def mul(self, a: Array, b: Array, out: Array, idx: Index) -> None:
        """Pointwise product mod q (NTT-domain polynomial product)."""
    def mul_add(self, a: Array, b: Array, out: Array, idx: Index) -> None:
        """out += a * b mod q (key-switching inner products)."""
    def mul_scalar(self, a: Array, scalars: Sequence[int], out: Array, idx: Index) -> None:
        """out[r] = a[r] * scalars[r] mod q_idx[r]; ``scalars[r]`` already reduced mod its prime."""

    # -- RNS ------------------------------------------------------------------------------
    def from_signed(self, coeffs: np.ndarray, idx: Index) -> Array:
        """Reduce signed int64 coefficients (N,) or (batch, N) into RNS rows (coeff domain)."""
    def base_convert(self, a: Array, idx_in: Index, idx_out: Index) -> Array:
        """Fast basis conversion (coeff domain) of ``a`` (len(idx_in), N) from the basis
        ``idx_in`` to ``idx_out``: returns (len(idx_out), N) holding
        sum_i [a_i * (Q/q_i)^-1]_{q_i} * (Q/q_i) mod p_j (exact up to a small multiple of Q)."""
    def mod_down(self, a: Array, idx_q: Index, idx_p: Index) -> Array:
        """ModDown: ``a`` (coeff domain) over basis Q∪P (rows idx_q then idx_p) →
        round(a / P) over Q, (len(idx_q), N) (Han–Ki, CT-RSA 2020, Alg. 2)."""
    def rescale(self, a: Array, idx: Index) -> Array:
        """NTT-domain in, NTT-domain out: divide by the last prime of ``idx`` with rounding and
        drop that limb; returns (len(idx) - 1, N)."""
    def crt_compose(self, a: Array, idx: Index) -> np.ndarray:
        """Exact CRT of coeff-domain rows to the centred integer in (-Q/2, Q/2], returned
        as float64 (N,) (rounded to nearest). Used by decryption/decoding."""
    def automorphism(self, a: Array, galois_elt: int, idx: Index, ntt_domain: bool) -> Array:
        """Apply X -> X^galois_elt (galois_elt odd, < 2N) to every row."""


@runtime_checkable
class Backend(Protocol):
    """A compute backend: ``wavis.backend.get("cpu" | "cuda" | "auto")``."""

    name: str  # "cpu" or "cuda"

    def ring_context(self, N: int, moduli: Sequence[int]) -> RingContext:
        """A (cached) :class:`RingContext` for ring degree N and these primes."""


@runtime_checkable
class FusedKeySwitching(Protocol):
    """Optional fused hybrid key-switching methods of a :class:`RingContext` (the CPU core has
    them). Callers go through ``wavis.ckks.keyswitch``, which uses a method when
    ``hasattr(ctx, name)`` and otherwise composes the basic protocol operations with a
    bit-identical result — so a backend may add any subset, and must then match the
    composition bit for bit (tests/test_ckks_keyswitch.py checks the CPU core).

    Conventions: NTT domain in and out; ``idx_q`` the ciphertext primes, ``idx_p`` the special
    primes (disjoint), output rows ordered ``idx_q + idx_p`` (R rows); ``digits`` consecutive
    ``(start, end)`` ranges of positions in ``idx_q`` covering all of it, digit d paired with
    ``key[d]``; ``key`` is ``(≥D, 2, len(ctx.moduli), N)`` with row r of ``key[d, c]``
    belonging to prime index r (no fancy-index copy of the rows of a level);
    ``add`` is None or ``(m, len(idx_q), N)`` with m ∈ {1, 2}: ``P·add[c]`` (P = ∏ idx_p) is added
    to the idx_q rows of component c before ModDown (relinearization/rotation fold c_0, c_1 in).
    """

    def ks_mod_up(self, a: Array, idx_q: Index, idx_p: Index, digits: Sequence[tuple[int, int]]) -> Array:
        """ModUp of every digit: ``a`` (len(idx_q), N) → (D, R, N). Rows of digit d inside the
        digit are ``a``'s rows; the others are ``base_convert`` of the digit's coefficients
        (INTT of ``a``'s rows) to that prime, then NTT (Han–Ki 2020, Alg. 1)."""

    def ks_inner(self, exts: Array, key: Array, idx_q: Index, idx_p: Index, galois_elt: int = 1,
                 add: Array | None = None) -> Array:
        """Inner product (2, R, N): ``acc[c] = Σ_d aut_g(exts[d]) ⊙ key[d, c, idx_q + idx_p]``
        (+ P·add[c] on the idx_q rows), ``aut_g`` the NTT-domain automorphism (``automorphism``
        with ``ntt_domain=True``; galois_elt 1 = none). No ModDown."""

    def key_switch_ext(self, a: Array, key: Array, idx_q: Index, idx_p: Index,
                       digits: Sequence[tuple[int, int]], add: Array | None = None) -> Array:
        """``ks_inner(ks_mod_up(a, ...), key, ..., 1, add)`` without storing the digits: (2, R, N)."""

    def mod_down_ntt(self, a: Array, idx_q: Index, idx_p: Index) -> Array:
        """Rounded ModDown, NTT domain: ``a`` (R, N) or (batch, R, N) over idx_q + idx_p →
        (…, len(idx_q), N) holding round(a / P) − u, 0 ≤ u < len(idx_p):
        INTT of the idx_p rows, + (p_j − 1)/2, ``base_convert`` to idx_q, − ((P − 1)/2 mod q_i),
        NTT, then (a_q − ·)·P^{-1} mod q_i. With idx_p = [q_l] it equals ``rescale``."""
