"""EvalMod: the homomorphic reduction t = I + ε ↦ ε (|ε| ≪ 1, I an integer, |t| < K).

Scaled sine with double angles (Han–Ki, "Better bootstrapping for approximate homomorphic
encryption", CT-RSA 2020, §4; Bossuat et al., EUROCRYPT 2021, §5): with u = t/K ∈ [−1, 1],
    c_0(u) ≈ cos(2π(K·u − 1/4)/2^r)      (Chebyshev interpolant of degree d on [−1, 1]),
    c_{i+1} = 2·c_i² − 1                  (r double-angle steps),
so c_r = cos(2π(t − 1/4)) = sin(2πt) = 2πε − (2πε)³/6 + …. The bootstrap reads c_r as 2π·ε
(the relative error (2πε)²/6 is 2^-37 for ε = 2^-20, the q_0/Δ ratio of the presets).

Optional arcsine correction (a preset's ``arcsine_degree`` a > 0): after the double angles, the
odd Taylor polynomial of arcsin of degree a is evaluated on y = sin(2πt), so the output is
arcsin(sin(2πε)) = 2πε up to the first omitted Taylor term: relative error 3y⁴/40 for a = 3,
5y⁶/112 for a = 5, instead of y²/6 (Lattigo ``EvalModLiteral.ArcSineDegree``, after Lee, Lee,
Lee, Kim, No, "High-precision bootstrapping of RNS-CKKS ... using optimal minimax polynomial
approximation and inverse sine function", EUROCRYPT 2021, §5). It costs ⌈log2(a + 1)⌉ more
EvalMod levels; the sine's y²/6 is the error of data whose energy sits in few coefficients
(a near-constant vector: 13.3 bits at N = 2^16 with k = 12), which the correction removes.

Failure probability: after ModRaise, t_k = (c_0 + c_1·s)_k / q_0 is, for a secret of Hamming
weight h and (pseudo)uniform c_0, c_1, a sum of h + 1 independent uniform terms in
[−1/2, 1/2) (Bossuat et al. 2021 §5.1; Cheon et al. EUROCRYPT 2018 §4.3 use the same model).
:func:`failure_log2` bounds P(max_k |t_k| ≥ K − 1) over the N coefficients by the Chernoff
bound with the exact moment-generating function, P(|S| ≥ x) ≤ 2·min_λ e^{−λx}·(sinh(λ/2)/(λ/2))^{h+1}.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev as C


@lru_cache(maxsize=32)
def cosine_coefficients(k: int, double_angle: int, degree: int) -> tuple[float, ...]:
    """Chebyshev coefficients (T_0..T_degree) of u ↦ cos(2π(K·u − 1/4)/2^r) on [−1, 1]
    (interpolation at the Chebyshev points of the first kind, NumPy ``chebinterpolate``)."""
    r = double_angle

    def f(u):
        return np.cos(2 * np.pi * (k * u - 0.25) / 2**r)

    return tuple(float(c) for c in C.chebinterpolate(f, degree))


@lru_cache(maxsize=8)
def arcsine_coefficients(degree: int) -> tuple[float, ...]:
    """Power-basis coefficients (x^0..x^degree) of the Taylor polynomial of arcsin at 0 of odd
    ``degree`` ≥ 3: Σ_j (2j)!/(4^j·(j!)²·(2j+1))·y^(2j+1) (1, 1/6, 3/40, 5/112, …).
    Raises ValueError for an even degree or one below 3."""
    if degree < 3 or degree % 2 == 0:
        raise ValueError(f"the arcsine degree must be odd and ≥ 3, got {degree}")
    c = [0.0] * (degree + 1)
    for j in range((degree - 1) // 2 + 1):
        c[2 * j + 1] = math.comb(2 * j, j) / (4**j * (2 * j + 1))
    return tuple(c)


def reference_evalmod(t: np.ndarray, k: int, double_angle: int, degree: int, arcsine_degree: int = 0) -> np.ndarray:
    """NumPy model of EvalMod (polynomial, then the double angles): ≈ sin(2πt); with
    ``arcsine_degree`` a > 0 the arcsine polynomial follows: ≈ 2π(t − round(t))."""
    c = C.chebval(np.asarray(t, dtype=np.float64) / k, cosine_coefficients(k, double_angle, degree))
    for _ in range(double_angle):
        c = 2 * c * c - 1
    if arcsine_degree:
        c = np.polynomial.polynomial.polyval(c, arcsine_coefficients(arcsine_degree))
    return c


def approximation_error_log2(k: int, double_angle: int, degree: int, arcsine_degree: int = 0) -> float:
    """log2 of the largest |EvalMod(t) − sin(2πt)| (with an arcsine degree: − 2πδ) over
    t = I + δ, |I| ≤ K − 1, |δ| ≤ 2^-10."""
    i = np.arange(-k + 1, k)
    delta = np.linspace(-2.0**-10, 2.0**-10, 9)
    t = (i[:, None] + delta[None, :]).ravel()
    target = np.tile(2 * np.pi * delta, len(i)) if arcsine_degree else np.sin(2 * np.pi * t)
    err = np.max(np.abs(reference_evalmod(t, k, double_angle, degree, arcsine_degree) - target))
    return float(math.log2(max(err, 2.0**-60)))


def failure_log2(k: int, hamming_weight: int, poly_degree: int) -> float:
    """log2 of an upper bound on the probability that some coefficient of t = I + ε leaves
    (−(K − 1), K − 1) (then EvalMod returns a wrong value there): the union over the N
    coefficients of the Chernoff bound above for h + 1 = ``hamming_weight`` + 1 terms."""
    n = hamming_weight + 1
    x = k - 1.0

    def f(lam: float) -> float:
        return -lam * x + n * math.log(math.sinh(lam / 2) / (lam / 2))

    # f is convex in λ: golden-section search on (0, 60]
    lo, hi = 1e-6, 60.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(200):
        if f(a) < f(b):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    best = min(f(a), f(b), 0.0)
    return (math.log(2) + best) / math.log(2) + math.log2(poly_degree)
