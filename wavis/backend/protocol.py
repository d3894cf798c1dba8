"""The one Backend protocol: :class:`RingOps` (CKKS) and :class:`LweOps` (TFHE), every operation
required, implemented by the CPU backend (:mod:`wavis.backend.cpu`, the C++ core, the bit-exact
oracle) and the CUDA backend (:mod:`wavis.backend.cuda`; its CPU emulation
:mod:`wavis.backend.cuda_emu` runs the same kernels in CI).

Rules (docs/architecture.md):

* Every operation listed in :data:`RING_OPS`, :data:`LWE_OPS` and :data:`BACKEND_OPS` is required.
  A backend without a native kernel for one delegates *explicitly* to the generic composition in
  :mod:`wavis.backend.reference` (``def ks_mod_up(self, ...): return reference.ks_mod_up(self, ...)``);
  callers never probe with ``getattr``/``hasattr``. ``tests/test_backend_conformance.py`` checks
  every backend against these lists.
* Integer results match the CPU backend bit for bit (ring ops); TFHE results decrypt identically.

Data model (ring)
-----------------
A polynomial in RNS form is a 2-D array of shape ``(limbs, N)``, dtype ``uint64``, C-contiguous,
row ``r`` holding the residues modulo ``ctx.moduli[idx[r]]``. ``idx`` is a 1-D ``int64`` array
(or sequence) of prime indices into the context's modulus list, so one context that holds
every prime of a scheme (the ciphertext chain q_0..q_L and the special primes p_0..p_{k-1})
serves every level and every sub-basis. Batches are 3-D arrays ``(batch, limbs, N)``: the
element-wise operations, the transforms and :meth:`RingOps.mod_down_ntt` take them directly;
operations whose single form is already 3-D have a ``*_batch`` variant. All residues are fully
reduced (in ``[0, q)``) on input and output of every call; NTT-domain arrays are in bit-reversed
order (the order the negacyclic Cooley–Tukey forward transform produces; only automorphisms
depend on it).

Arrays are NumPy arrays for the CPU backend and CuPy arrays for the CUDA backend; the caller
converts with ``asarray``/``to_numpy`` (both backends also accept NumPy inputs).

Key switching (hybrid, Han–Ki, CT-RSA 2020): ``idx_q`` the ciphertext primes, ``idx_p`` the
special primes (disjoint), extended rows ordered ``idx_q + idx_p`` (R rows); ``digits``
consecutive ``(start, end)`` ranges of positions in ``idx_q`` covering all of it, digit d paired
with ``key[d]``; a key-switching key is ``(≥D, 2, len(ctx.moduli), N)`` with row r of
``key[d, c]`` belonging to prime index r (no gather of the rows of a level); ``add`` is None or
``(m, len(idx_q), N)`` with m ∈ {1, 2}: ``P·add[c]`` (P = ∏ idx_p) is added to the idx_q rows of
component c before ModDown (relinearization/rotation fold c_0, c_1 in).

Rotations (``galois_elt`` g ≠ 1 in ``ks_inner``/``key_switch_ext``): the Galois key is passed in
its evaluation form K'_d = aut_g^{-1}(K_d) (:attr:`wavis.ckks.GaloisKey.permuted`, made once when
the key is loaded) and the automorphism is applied once to the two sums, after ``add``:
``aut_g(Σ_d x_d ⊙ K'_d + P·add)`` — exactly ``Σ_d aut_g(x_d) ⊙ K_d + P·aut_g(add)``, since the
NTT-domain automorphism permutes each row and the arithmetic is exact — so the inner product
streams over the digits as they are (no per-digit gather) and the caller passes c_0 unrotated.

Data model (LWE, TFHE on the 32-bit torus)
------------------------------------------
Torus elements are ``uint32``; an LWE ciphertext under the small key is ``n + 1`` words (mask,
then body); batches are ``(m, n + 1)``. A GLWE ciphertext is ``(k + 1, N)`` (k masks, body);
sample extraction yields an LWE ciphertext of ``k·N + 1`` words under the extracted key (the
concatenation of the k GLWE key polynomials). The server key is made resident on the backend once
(:meth:`LweOps.load_server_key`) and every bootstrap/key switch is keyed by that handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

Array = Any  # numpy.ndarray or cupy.ndarray, shape (limbs, N) uint64 unless stated
Index = Sequence[int] | np.ndarray
Digits = Sequence[tuple[int, int]]

#: every RingOps operation (the conformance test checks each backend implements all of them)
RING_OPS = (
    # memory
    "asarray", "to_numpy", "zeros", "empty",
    # transforms
    "ntt", "intt",
    # element-wise
    "add", "sub", "neg", "mul", "mul_add", "mul_scalar",
    # RNS
    "from_signed", "base_convert", "mod_down", "rescale", "crt_compose", "automorphism",
    # fused key switching
    "ks_mod_up", "ks_inner", "key_switch_ext", "mod_down_ntt", "diag_mac",
    # batched variants
    "automorphism_batch", "rescale_batch", "ks_mod_up_batch", "ks_inner_batch", "key_switch_ext_batch",
)

#: every LweOps operation
LWE_OPS = (
    # memory
    "asarray", "to_numpy",
    # client side (secret key; the CUDA backend delegates these to the host)
    "keygen", "encrypt", "phase",
    # server key residency
    "load_server_key",
    # evaluation (batched)
    "blind_rotate", "sample_extract", "bootstrap", "key_switch",
)

#: every Backend operation
BACKEND_OPS = ("ring_context", "lwe", "prng", "generate_ntt_primes", "is_prime", "synchronize", "info")


@dataclass(frozen=True)
class BackendInfo:
    """What a backend runs on (:meth:`Backend.info`; the service's ``/health`` reports it).

    Attributes:
        name: the backend's name (``"cpu"``, ``"cuda"``, ``"cuda-emu"``).
        kind: ``"cpu"`` (the C++ core) or ``"cuda"`` (the ``kernels/*.cu`` sources, on a GPU or
            in the CPU emulation).
        device_name: the CPU model (``/proc/cpuinfo``) or the GPU's name; the emulation says
            ``"cpu-emulation"``.
        gpu: whether the kernels run on a real GPU.
        simd_path: the host core's SIMD path (``portable``/``avx2``/``avx512``/``ifma``,
            include/wavis/simd.hpp), which every backend's host-side work (CSPRNG, encoding,
            TFHE client operations) and the whole CPU backend run on.
        threads: the host core's thread count (``WAVIS_THREADS`` or all cores).
    """

    name: str
    kind: str
    device_name: str
    gpu: bool
    simd_path: str
    threads: int


@runtime_checkable
class RingOps(Protocol):
    """Ring operations for ring degree ``N`` and a fixed list of NTT-friendly primes, with their
    precomputed tables (NTT twiddles with Shoup companions, Barrett constants, CRT constants).

    Algorithms: negacyclic NTT with Harvey lazy butterflies (D. Harvey, "Faster arithmetic
    for number-theoretic transforms", J. Symb. Comp. 2014); fast basis conversion
    (Bajard et al., SAC 2016; Halevi–Polyakov–Shoup, CT-RSA 2019, §2); hybrid key switching
    (Han–Ki, CT-RSA 2020, Alg. 1–2); NTT-domain ModDown (Kim et al., "Over 100x faster
    bootstrapping", 2021, §3.2); hoisting (Halevi–Shoup, CRYPTO 2018, §5).
    """

    N: int
    moduli: tuple[int, ...]

    # -- memory -------------------------------------------------------------------------
    def asarray(self, a: np.ndarray) -> Array:
        """The backend's C-contiguous uint64 array for ``a`` (no copy when it already is one)."""
    def to_numpy(self, a: Array) -> np.ndarray:
        """A NumPy uint64 copy (or view on the CPU) of ``a``."""
    def zeros(self, limbs: int, batch: int | None = None) -> Array:
        """Zero array (limbs, N) or (batch, limbs, N), uint64."""
    def empty(self, limbs: int, batch: int | None = None) -> Array:
        """Uninitialised array (limbs, N) or (batch, limbs, N), uint64 (an ``out`` buffer)."""

    # -- transforms (in place) -------------------------------------------------------------
    def ntt(self, a: Array, idx: Index) -> None:
        """Forward negacyclic NTT of every row, in place. ``a``: (limbs, N) or (batch, limbs, N)."""
    def intt(self, a: Array, idx: Index) -> None:
        """Inverse of :meth:`ntt` (includes the 1/N factor), in place."""

    # -- element-wise (out may alias an input; (limbs, N) or (batch, limbs, N)) -----------
    def add(self, a: Array, b: Array, out: Array, idx: Index) -> None:
        """out = a + b mod q."""
    def sub(self, a: Array, b: Array, out: Array, idx: Index) -> None:
        """out = a − b mod q."""
    def neg(self, a: Array, out: Array, idx: Index) -> None:
        """out = −a mod q."""
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
        """Apply X -> X^galois_elt (galois_elt odd, < 2N) to every row of (limbs, N) or
        (batch, limbs, N); returns a new array."""

    # -- fused key switching ----------------------------------------------------------------
    def ks_mod_up(self, a: Array, idx_q: Index, idx_p: Index, digits: Digits) -> Array:
        """ModUp of every digit: ``a`` (len(idx_q), N), NTT domain → (D, R, N). Rows of digit d
        inside the digit are ``a``'s rows; the others are ``base_convert`` of the digit's
        coefficients (INTT of ``a``'s rows) to that prime, then NTT (Han–Ki 2020, Alg. 1)."""
    def ks_inner(self, exts: Array, key: Array, idx_q: Index, idx_p: Index, galois_elt: int = 1,
                 add: Array | None = None) -> Array:
        """Inner product (2, R, N): ``acc[c] = aut_g(Σ_d exts[d] ⊙ key[d, c, idx_q + idx_p]
        (+ P·add[c] on the idx_q rows))``, ``aut_g`` the NTT-domain automorphism (``automorphism``
        with ``ntt_domain=True``; galois_elt 1 = none) applied to the sums (a Galois key in its
        evaluation form, see "Rotations" above). ``exts`` (D, R, N). No ModDown."""
    def key_switch_ext(self, a: Array, key: Array, idx_q: Index, idx_p: Index, digits: Digits,
                       add: Array | None = None, galois_elt: int = 1) -> Array:
        """``ks_inner(ks_mod_up(a, ...), key, ..., galois_elt, add)`` (the digits need not be
        stored): (2, R, N)."""
    def mod_down_ntt(self, a: Array, idx_q: Index, idx_p: Index) -> Array:
        """Rounded ModDown, NTT domain: ``a`` (R, N) or (batch, R, N) over idx_q + idx_p →
        (…, len(idx_q), N) holding round(a / P) − u, 0 ≤ u < len(idx_p):
        INTT of the idx_p rows, + (p_j − 1)/2, ``base_convert`` to idx_q, − ((P − 1)/2 mod q_i),
        the conversion overshoot estimated in float64 and removed, NTT, then (a_q − ·)·P^{-1}
        mod q_i. With idx_p = [q_l] it equals ``rescale``; with idx_p = [q_l] + P it is the fused
        ModDown + rescale."""

    def diag_mac(self, rots: Array, pts: Array, sel: Sequence[int], counts: Sequence[int], idx: Index,
                 repeat: int = 1) -> Array:
        """Plaintext-diagonal inner sums of the giant steps of a baby-step giant-step linear
        transform, all in one pass: ``out[g, c] = Σ_{j in group g} pts[j] ⊙ rots[sel[j], c]`` mod q,
        (G, m, limbs, N), group g being the ``counts[g]`` terms after those of the groups before.
        ``rots`` (B, m, limbs, N): the baby rotations (in double hoisting over Q·P before ModDown:
        Bossuat–Mouchet–Troncoso-Pastoriza–Hubaux, EUROCRYPT 2021, §3); ``pts`` (J, limbs,
        N / repeat) with value ``n // repeat`` used at coefficient n (``repeat`` a power of two: a
        plaintext in X^repeat, whose NTT is its small NTT repeated, see ``wavis.ckks.linalg``);
        ``sel`` J indices into ``rots``; NTT domain, rows over the primes ``idx``. The products
        are summed lazily and reduced once (the value equals one ``mul_add`` per term). Raises
        ShapeError for bad shapes, an out-of-range or mismatched ``sel``, ``counts`` that do not
        sum to J, a ``repeat`` that is not a power of two ≤ N."""

    # -- batched variants (the reference composition is a loop over the batch) -------------------
    def automorphism_batch(self, a: Array, galois_elts: Sequence[int], idx: Index, ntt_domain: bool) -> Array:
        """(B, limbs, N) with one Galois element per item → (B, limbs, N)."""
    def rescale_batch(self, a: Array, idx: Index) -> Array:
        """(B, len(idx), N) → (B, len(idx) − 1, N), each item as :meth:`rescale`."""
    def ks_mod_up_batch(self, a: Array, idx_q: Index, idx_p: Index, digits: Digits) -> Array:
        """(B, len(idx_q), N) → (B, D, R, N), each item as :meth:`ks_mod_up`."""
    def ks_inner_batch(self, exts: Array, key: Array, idx_q: Index, idx_p: Index, galois_elts: Sequence[int],
                       add: Array | None = None) -> Array:
        """(B, D, R, N) with one Galois element per item, one key, ``add`` None or (B, m, len(idx_q), N)
        → (B, 2, R, N), each item as :meth:`ks_inner`."""
    def key_switch_ext_batch(self, a: Array, key: Array, idx_q: Index, idx_p: Index, digits: Digits,
                             add: Array | None = None, galois_elt: int = 1) -> Array:
        """(B, len(idx_q), N), one key (and its Galois element), ``add`` None or (B, m, len(idx_q), N)
        → (B, 2, R, N), each item as :meth:`key_switch_ext`."""


# Kept for code written against the first protocol (same object).
RingContext = RingOps


@runtime_checkable
class LweServerKey(Protocol):
    """A TFHE server key resident on a backend (bootstrapping key in the transform domain,
    key-switching key expanded), made by :meth:`LweOps.load_server_key`."""

    memory_bytes: int


@runtime_checkable
class LweOps(Protocol):
    """TFHE operations for one parameter set on one backend (Chillotti–Gama–Georgieva–Izabachène,
    "TFHE: Fast Fully Homomorphic Encryption over the Torus", J. Cryptology 33 (2020)).

    ``threads``: 0 = the backend's default (CPU: ``WAVIS_THREADS`` or all cores; ignored on a GPU).
    Shapes are checked; a wrong shape raises ``ValueError``/:class:`wavis.errors.ShapeError`.
    """

    params: Any  # wavis.tfhe.TfheParameters

    # -- memory --------------------------------------------------------------------------------
    def asarray(self, a: np.ndarray) -> Array:
        """The backend's C-contiguous uint32 array for ``a`` (no copy when it already is one)."""
    def to_numpy(self, a: Array) -> np.ndarray:
        """A NumPy uint32 copy (or view on the CPU) of ``a``."""

    # -- client side ---------------------------------------------------------------------------
    def keygen(self, seed: bytes) -> tuple[np.ndarray, np.ndarray, bytes, np.ndarray, np.ndarray]:
        """Key generation from a 32-byte seed (ChaCha20 CSPRNG): (lwe_key u8 (n,), glwe_key u8 (k·N,),
        mask_seed (32 bytes), bsk_bodies u32 (n, (k+1)·l, N), ksk_bodies u32 (k·N, t))."""
    def encrypt(self, lwe_key: np.ndarray, mus: np.ndarray, seed: bytes) -> np.ndarray:
        """LWE encryption of torus messages ``mus`` u32 (m,) under the small key → u32 (m, n+1)."""
    def phase(self, lwe_key: np.ndarray, cts: np.ndarray) -> np.ndarray:
        """Phases b − <a, s> of u32 (m, n+1) ciphertexts → u32 (m,)."""

    # -- server key ----------------------------------------------------------------------------
    def load_server_key(self, mask_seed: bytes, bsk_bodies: np.ndarray, ksk_bodies: np.ndarray) -> LweServerKey:
        """Expand a compact server key (masks regenerated from ``mask_seed``) and make it resident."""

    # -- evaluation ----------------------------------------------------------------------------
    def blind_rotate(self, key: LweServerKey, lwe: Array, mu: int, threads: int = 0) -> Array:
        """Blind rotation (TFHE §4.3, Alg. 3) of J small-key LWE ciphertexts u32 (J, n+1) with the
        gate-bootstrapping test vector μ·(1 + X + … + X^{N−1}): GLWE accumulators u32 (J, k+1, N)."""
    def sample_extract(self, glwe: Array) -> Array:
        """Sample extraction of coefficient 0: u32 (J, k+1, N) → u32 (J, k·N+1) (TFHE §4.1)."""
    def bootstrap(self, key: LweServerKey, lwe: Array, mu: int, threads: int = 0) -> Array:
        """``sample_extract(blind_rotate(...))`` in one pass: u32 (J, n+1) → u32 (J, k·N+1) encrypting ±μ."""
    def key_switch(self, key: LweServerKey, big: Array, threads: int = 0) -> Array:
        """LWE key switching (TFHE §4.1, Alg. 1) u32 (J, k·N+1) → u32 (J, n+1) under the small key."""


@runtime_checkable
class Backend(Protocol):
    """A compute backend (CPU or CUDA): factories for :class:`RingOps` and :class:`LweOps`, and
    the host helpers that reach native code (CSPRNG, prime search)."""

    name: str  # "cpu", "cuda" or "cuda-emu"

    def ring_context(self, N: int, moduli: Sequence[int]) -> RingOps:
        """A (cached) :class:`RingOps` for ring degree N and these primes."""
    def lwe(self, params: Any) -> LweOps:
        """A (cached) :class:`LweOps` for a TFHE parameter set."""
    def prng(self, seed: bytes | None = None, nonce: bytes = bytes(12)) -> Any:
        """A ChaCha20 (RFC 8439) CSPRNG on the host (OS-seeded when ``seed`` is None)."""
    def generate_ntt_primes(self, bits: int, count: int, N: int, exclude: Sequence[int] = (),
                            descending: bool = True) -> list[int]:
        """``count`` primes of ``bits`` bits with q ≡ 1 mod 2N, not in ``exclude``."""
    def is_prime(self, q: int) -> bool:
        """Deterministic primality of q < 2^64."""
    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""
    def info(self) -> BackendInfo:
        """The device this backend computes on and the host's SIMD path (:class:`BackendInfo`)."""
