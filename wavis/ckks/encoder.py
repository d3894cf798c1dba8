"""CKKS canonical-embedding encoder (N/2 complex slots).

Slot j of a plaintext polynomial m(X) ∈ Z[X]/(X^N+1) is m(ζ^{5^j}), ζ = exp(iπ/N)
(Cheon–Kim–Kim–Song, "Homomorphic encryption for arithmetic of approximate numbers",
ASIACRYPT 2017, §3.2–3.3; the 5^j ordering makes slot rotations the automorphisms
X → X^{5^k}). Since 5^j ≡ 1 (mod 4), the slots are one length-N/2 DFT of the twisted, folded
coefficients (m_c + i·m_{c+N/2})·ζ^c (the "special FFT"), so encode and decode cost one
N/2-point complex FFT each (NumPy's).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from ..errors import EncodingError, LevelError
from .context import CkksContext, context_of
from .params import CkksParameters
from .structures import Plaintext

_MAX_COEFF = float(2**62)  # |round(Δ·m_c)| must stay below this (int64 RNS reduction)


class Encoder:
    """Encode complex/real vectors into :class:`Plaintext` polynomials and back.

    Args:
        params: a :class:`CkksContext`, or the scheme parameters (gives N and the default scale
            Δ = 2^scale_bits; then the default CPU context, or the context of ``backend``).
        backend: with parameters only: the backend whose context to use.
    """

    def __init__(self, params: "CkksParameters | CkksContext", backend=None) -> None:
        self.context = context_of(params, backend)
        self.params = self.context.params
        self.backend = self.context.backend
        self.ctx = self.context.ring

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.params.poly_degree
        two_n = 2 * n
        slots = n // 2
        g = np.empty(slots, dtype=np.int64)
        acc = 1
        for j in range(slots):
            g[j] = acc
            acc = acc * 5 % two_n
        # 5^j ≡ 1 (mod 4), so ζ^{5^j} = ζ·ω^u with ω = ζ^4 a primitive (N/2)-th root of unity and
        # u = (5^j − 1)/4: the N/2 slots are one length-N/2 DFT (a permutation u of its outputs)
        u = (g - 1) // 4
        twist = np.exp(1j * np.pi * np.arange(slots) / n)  # ζ^c, c < N/2
        return u, twist

    # -- real/complex ↔ coefficient vectors ------------------------------------------------
    def embed_inverse(self, values: np.ndarray) -> np.ndarray:
        """Slots (N/2 complex128) → real polynomial coefficients (N float64), unscaled.

        The inverse of :meth:`embed`: one length-N/2 complex FFT (the "special FFT" of
        Cheon–Han–Kim–Kim–Song, SAC 2018, §2; HEAAN's and SEAL's encoders do the same).
        """
        n = self.params.poly_degree
        u, twist = self._tables
        spectrum = np.empty(n // 2, dtype=np.complex128)
        spectrum[u] = values
        w = np.fft.fft(spectrum)                # Σ_u F[u] ω^{-uc}
        w *= np.conj(twist)
        w *= 2.0 / n
        out = np.empty(n, dtype=np.float64)
        out[: n // 2] = w.real
        out[n // 2:] = w.imag
        return out

    def embed(self, coeffs: np.ndarray) -> np.ndarray:
        """Real polynomial coefficients (N float64) → slots (N/2 complex128).

        Slot j is m(ζ^{5^j}) = Σ_{c<N/2} (m_c + i·m_{c+N/2})·ζ^c·ω^{u_j c}, since
        ζ^{(N/2)·5^j} = i: one length-N/2 inverse FFT of z_c = (m_c + i·m_{c+N/2})·ζ^c.
        """
        n = self.params.poly_degree
        u, twist = self._tables
        coeffs = np.asarray(coeffs, dtype=np.float64)
        z = coeffs[: n // 2] + 1j * coeffs[n // 2:]
        z *= twist
        spectrum = np.fft.ifft(z)
        spectrum *= n // 2
        return spectrum[u]

    # -- public API --------------------------------------------------------------------------
    def encode(self, values, level: int | None = None, scale: float | None = None) -> Plaintext:
        """Encode up to N/2 real or complex values (zero-padded) at ``level`` (default: the
        top level L) and ``scale`` (default Δ = 2^scale_bits).

        Args:
            values: array-like of shape (k,), k ≤ slot_count; float or complex.
            level: 0..L, the number of primes minus one the plaintext lives over.
            scale: positive float, the scale the coefficients are multiplied by (default: the
                level's canonical scale ``params.level_scale(level)``; 2^scale_bits at the top).

        Returns:
            Plaintext in the NTT domain, shape (level+1, N) uint64.

        Raises:
            EncodingError: too many values, NaN/inf, non-numeric input, |values| not below the
                declared magnitude bound 2^magnitude_bits, or values × scale too large for the
                62-bit coefficient range / the modulus q_0.
            LevelError: level outside 0..L.
        """
        p = self.params
        level = p.max_level if level is None else level
        if not isinstance(level, (int, np.integer)) or not 0 <= level <= p.top_level:
            raise LevelError(f"level must be in 0..{p.top_level}, got {level!r}", level=level)
        scale = p.level_scale(level) if scale is None else float(scale)
        if not np.isfinite(scale) or scale < 1.0:
            raise EncodingError(f"scale must be a finite number ≥ 1, got {scale!r}")
        try:
            arr = np.asarray(values, dtype=np.complex128)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"values must be numbers: {exc}") from exc
        if arr.ndim > 1:
            raise EncodingError(f"values must be a 1-D vector, got shape {arr.shape}")
        arr = arr.reshape(-1)
        if arr.size > p.slot_count:
            raise EncodingError(
                f"{arr.size} values do not fit in {p.slot_count} slots", count=int(arr.size), slots=p.slot_count
            )
        if not np.all(np.isfinite(arr)):
            raise EncodingError("values must be finite (no NaN or infinity)")
        big = float(np.max(np.abs(arr))) if arr.size else 0.0
        if big >= p.magnitude_bound:
            raise EncodingError(
                f"|value| up to {big:.6g} is not below the parameters' declared magnitude bound 2^{p.magnitude_bits}: "
                "results near it would wrap modulo q_0 and decrypt to wrong numbers (CkksParameters.magnitude_bits)",
                max_abs=big, magnitude_bits=p.magnitude_bits)
        slots = np.zeros(p.slot_count, dtype=np.complex128)
        slots[: arr.size] = arr
        coeffs = self.embed_inverse(slots)
        coeffs *= scale
        np.rint(coeffs, out=coeffs)
        peak = max(float(coeffs.max()), -float(coeffs.min()))
        q_level = math.prod(p.moduli[: level + 1])
        limit = _MAX_COEFF if q_level.bit_length() > 64 else min(_MAX_COEFF, q_level / 2)
        if not np.isfinite(peak) or peak >= limit:
            raise EncodingError(
                f"values × scale overflow the coefficient range (max |coefficient| ≈ 2^{np.log2(max(peak, 1)):.1f}); "
                "use smaller values or a smaller scale", max_coeff_bits=float(np.log2(max(peak, 1.0)))
            )
        idx = list(range(level + 1))
        data = self.ctx.from_signed(coeffs.astype(np.int64), idx)
        self.ctx.ntt(data, idx)
        return Plaintext(data=data, level=level, scale=scale, params_fingerprint=p.fingerprint)

    def decode(self, pt: Plaintext) -> np.ndarray:
        """Decode a plaintext (e.g. from :class:`Decryptor`) to its N/2 complex slots.

        Exact centred CRT of the coefficients over q_0..q_level, divided by the scale.

        Returns: complex128 array of shape (slot_count,).
        """
        if pt.params_fingerprint != self.params.fingerprint:
            from ..errors import KeyMismatchError

            raise KeyMismatchError("plaintext belongs to other parameters")
        idx = list(range(pt.level + 1))
        data = pt.data.copy() if pt.is_ntt else pt.data
        if pt.is_ntt:
            self.ctx.intt(data, idx)
        coeffs = self.ctx.crt_compose(data, idx)
        return self.embed(np.asarray(coeffs, dtype=np.float64) / pt.scale)

    def decode_flooded(self, pt: Plaintext, statistical_bits: int = 30, noise_bound: float | None = None):
        """Decode for sharing: the decryption's error is drowned in fresh Gaussian noise of
        standard deviation 2^statistical_bits·B and the real parts are rounded to the precision
        that is left (IND-CPA-D, Li–Micciancio EUROCRYPT 2021; OpenFHE's NOISE_FLOODING_DECRYPT).
        Use it for any decoded result someone else will see; keep :meth:`decode` for yourself.

        Args:
            pt: a decryption (from :class:`Decryptor`) of a ciphertext encoding real values.
            statistical_bits: s ≥ 30.
            noise_bound: B, a bound on the Euclidean norm of the decryption error's coefficients
                (integer units); default: estimated from the imaginary parts of the slots
                (valid for real-valued plaintexts), never below a fresh encryption's bound.

        Returns: :class:`wavis.ckks.flooding.Flooded` (values float64 (slot_count,),
            precision_bits, noise_bound_log2, sigma_log2, statistical_bits).

        Raises: ParameterError (statistical_bits < 30 or > 128, non-positive noise_bound),
            KeyMismatchError (plaintext of other parameters).
        """
        from . import flooding

        s = flooding.check_statistical_bits(statistical_bits)
        if pt.params_fingerprint != self.params.fingerprint:
            from ..errors import KeyMismatchError

            raise KeyMismatchError("plaintext belongs to other parameters")
        idx = list(range(pt.level + 1))
        data = pt.data.copy() if pt.is_ntt else pt.data
        if pt.is_ntt:
            self.ctx.intt(data, idx)
        coeffs = np.asarray(self.ctx.crt_compose(data, idx), dtype=np.float64)
        if noise_bound is None:
            noise_bound = flooding.estimate_noise_bound(self.params, self.embed(coeffs / pt.scale), pt.scale)
        elif not (np.isfinite(noise_bound) and noise_bound > 0):
            from ..errors import ParameterError

            raise ParameterError(f"noise_bound must be a positive number, got {noise_bound!r}", field="noise_bound")
        sigma = 2.0**s * float(noise_bound)
        slots = self.embed(flooding.flood_coefficients(coeffs, sigma) / pt.scale).real
        p = flooding.precision_bits(self.params, pt.scale, float(noise_bound), s)
        step = 2.0 ** -p
        return flooding.Flooded(np.round(slots / step) * step, p, math.log2(noise_bound), math.log2(sigma), s)
