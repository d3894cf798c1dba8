"""The homomorphic DFT of CKKS bootstrapping as sparse-diagonal matrices (NumPy only).

Slot j of a plaintext with n slots (n | N/2; n < N/2 is sparse packing, the polynomial then lives
in Z[Y], Y = X^{N/(2n)}) is z_j = Σ_{k<n} w_k·ξ_j^k with w_k = m_k + i·m_{k+n} and
ξ_j = exp(2πi·5^j/(4n)) (Cheon–Kim–Kim–Song, ASIACRYPT 2017, §3.2; the 5^j order), i.e.
z = U·w with U_jk = ξ_j^k. U factors like an FFT ("special FFT", Cheon–Han–Kim–Kim–Song,
"Bootstrapping for approximate HE", EUROCRYPT 2018, §4.1 and the HEAAN ``fftSpecial``):

    U = L_n · L_{n/2} ⋯ L_2 · BR,

BR the bit-reversal permutation and L_len one butterfly layer with three non-zero diagonals
(offsets 0 and ±len/2). CoeffsToSlots applies U^{-1} = BR·L_2^{-1}⋯L_n^{-1} without the BR,
SlotsToCoeffs applies L_n⋯L_2 to the bit-reversed vector, so the BRs cancel through the
slot-wise EvalMod. Consecutive layers are merged into ``levels`` factors (one ciphertext level
each, Chen–Chillotti–Song, EUROCRYPT 2019, §4): a merged factor of k layers has at most 2^{k+1}−1
diagonals.

A matrix is a dict {offset k: diagonal d_k} with d_k a complex (period,) array and
M[i, (i+k) mod period] = d_k[i], so M·x = Σ_k d_k ⊙ rot(x, k) (left rotation by k).
"""

from __future__ import annotations

import numpy as np

Diagonals = dict[int, np.ndarray]


def bit_reverse_indices(n: int) -> np.ndarray:
    """(n,) int64: the bit-reversal permutation of range(n), n a power of two."""
    bits = n.bit_length() - 1
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def slot_matrix(n: int) -> np.ndarray:
    """The dense (n, n) complex matrix U, U[j, k] = exp(2πi·(5^j mod 4n)·k/(4n)) (reference)."""
    g = np.array([pow(5, j, 4 * n) for j in range(n)], dtype=np.int64)
    return np.exp(2j * np.pi * np.outer(g, np.arange(n)) / (4 * n))


def _omega(lenh: int) -> np.ndarray:
    length = 2 * lenh
    lenq = 4 * length
    j = np.arange(lenh)
    g = np.array([pow(5, int(x), lenq) for x in j], dtype=np.int64)
    return np.exp(2j * np.pi * g / lenq)


def butterfly_layer(n: int, length: int, inverse: bool = False) -> Diagonals:
    """Layer L_length (or its inverse) of the special FFT of size n as diagonals (period n)."""
    lenh = length // 2
    w = _omega(lenh)
    pos = np.arange(n)
    j = pos % length
    first = j < lenh
    om = np.where(first, w[np.minimum(j, lenh - 1)], w[np.where(first, 0, j - lenh)])
    d0 = np.zeros(n, dtype=np.complex128)
    dp = np.zeros(n, dtype=np.complex128)  # offset +lenh (rows of the first half)
    dm = np.zeros(n, dtype=np.complex128)  # offset −lenh (rows of the second half)
    if not inverse:
        d0[first] = 1.0
        dp[first] = om[first]
        dm[~first] = 1.0
        d0[~first] = -om[~first]
    else:
        d0[first] = 0.5
        dp[first] = 0.5
        dm[~first] = 0.5 / om[~first]
        d0[~first] = -0.5 / om[~first]
    out: Diagonals = {}
    for k, d in ((0, d0), (lenh % n, dp), ((-lenh) % n, dm)):
        out[k] = out.get(k, 0) + d
    return {k: v for k, v in out.items() if np.any(v)}


def compose(a: Diagonals, b: Diagonals, period: int) -> Diagonals:
    """Diagonals of the product A·B (B applied first): (AB)_k[i] = Σ_{u+v≡k} a_u[i]·b_v[i+u]."""
    out: Diagonals = {}
    for u, du in a.items():
        for v, dv in b.items():
            k = (u + v) % period
            term = du * np.roll(dv, -u)
            out[k] = out[k] + term if k in out else term
    return {k: v for k, v in out.items() if np.any(np.abs(v) > 1e-300)}


def apply(m: Diagonals, x: np.ndarray) -> np.ndarray:
    """M·x for a (period,) vector (reference for tests)."""
    y = np.zeros(len(x), dtype=np.complex128)
    for k, d in m.items():
        y += d * np.roll(x, -k)
    return y


def to_dense(m: Diagonals, period: int) -> np.ndarray:
    out = np.zeros((period, period), dtype=np.complex128)
    i = np.arange(period)
    for k, d in m.items():
        out[i, (i + k) % period] += d
    return out


def split_layers(total: int, levels: int) -> list[int]:
    """Layer counts per factor (larger groups first), e.g. 9 layers in 3 levels → [3, 3, 3];
    exactly ``levels`` entries (0 = an identity factor, when there are fewer layers than levels)."""
    levels = max(1, levels)
    base, extra = divmod(total, levels)
    return [base + (1 if i < extra else 0) for i in range(levels)]


def coeffs_to_slots_factors(n: int, levels: int) -> list[Diagonals]:
    """The CoeffsToSlots factors (application order) with BR·∏ = U^{-1} (period n)."""
    lengths = [n >> i for i in range(n.bit_length() - 1)]  # n, n/2, …, 2: L_n^{-1} applied first
    out, pos = [], 0
    for cnt in split_layers(len(lengths), levels):
        m: Diagonals | None = None
        for length in lengths[pos:pos + cnt]:
            layer = butterfly_layer(n, length, inverse=True)
            m = layer if m is None else compose(layer, m, n)
        pos += cnt
        out.append(m if m is not None else {0: np.ones(n, dtype=np.complex128)})
    return out


def slots_to_coeffs_factors(n: int, levels: int) -> list[Diagonals]:
    """The SlotsToCoeffs factors (application order) with ∏·BR = U (period n)."""
    lengths = [2 << i for i in range(n.bit_length() - 1)]  # 2, 4, …, n: L_2 applied first
    out, pos = [], 0
    for cnt in split_layers(len(lengths), levels):
        m: Diagonals | None = None
        for length in lengths[pos:pos + cnt]:
            layer = butterfly_layer(n, length)
            m = layer if m is None else compose(layer, m, n)
        pos += cnt
        out.append(m if m is not None else {0: np.ones(n, dtype=np.complex128)})
    return out


def tile(m: Diagonals, period: int, new_period: int) -> Diagonals:
    """The same operator on new_period-periodic vectors (new_period a multiple of period)."""
    reps = new_period // period
    return {k: np.tile(d, reps) for k, d in m.items()}


def scale(m: Diagonals, c: complex) -> Diagonals:
    return {k: d * c for k, d in m.items()}


def scale_rows(m: Diagonals, rows: np.ndarray) -> Diagonals:
    """diag(rows)·M."""
    return {k: d * rows for k, d in m.items()}
