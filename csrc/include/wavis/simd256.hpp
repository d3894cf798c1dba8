// AVX2 64-bit modular helpers (4 lanes) shared by the ring/CKKS AVX2 kernels (src/ntt.cpp,
// src/ring.cpp, src/ckks.cpp). AVX2 has no 64x64-bit multiply and no unsigned 64-bit compare:
// products are built from 32x32 -> 64 (vpmuludq) pieces and comparisons flip the sign bit.
// Compiled with per-function target attributes so the rest of the core stays portable; callers
// dispatch at run time (simd.hpp avx2_active()). Every helper computes exactly the scalar value.
#pragma once
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WAVIS_HAVE_SIMD256 1
#include <immintrin.h>
#define WAVIS_AVX2 __attribute__((target("avx2")))

namespace wavis::simd2 {

// High 64 bits of a*b per lane (bh = b >> 32), from four 32x32 products.
WAVIS_AVX2 inline __m256i mulhi4(__m256i a, __m256i b, __m256i bh) {
  const __m256i mask = _mm256_set1_epi64x(0xffffffffLL);
  __m256i ah = _mm256_srli_epi64(a, 32);
  __m256i lolo = _mm256_mul_epu32(a, b);
  __m256i lohi = _mm256_mul_epu32(a, bh);
  __m256i hilo = _mm256_mul_epu32(ah, b);
  __m256i hihi = _mm256_mul_epu32(ah, bh);
  __m256i mid = _mm256_add_epi64(_mm256_srli_epi64(lolo, 32), _mm256_and_si256(lohi, mask));
  mid = _mm256_add_epi64(mid, _mm256_and_si256(hilo, mask));
  __m256i hi = _mm256_add_epi64(hihi, _mm256_srli_epi64(lohi, 32));
  hi = _mm256_add_epi64(hi, _mm256_srli_epi64(hilo, 32));
  return _mm256_add_epi64(hi, _mm256_srli_epi64(mid, 32));
}

// Low 64 bits of a*b per lane (bh = b >> 32), from three 32x32 products.
WAVIS_AVX2 inline __m256i mullo4(__m256i a, __m256i b, __m256i bh) {
  __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), _mm256_mul_epu32(a, bh));
  return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

// A fixed multiplier w (< q) with its Shoup companion wp = floor(w 2^64 / q), and q, broadcast
// with their high halves (the operands of mulhi4 / mullo4).
struct Shoup4 {
  __m256i w, wh, wp, wph;
};
WAVIS_AVX2 inline Shoup4 shoup4(unsigned long long w, unsigned long long wp) {
  return {_mm256_set1_epi64x((long long)w), _mm256_set1_epi64x((long long)(w >> 32)),
          _mm256_set1_epi64x((long long)wp), _mm256_set1_epi64x((long long)(wp >> 32))};
}
// Per-lane multipliers (w, wp loaded from tables).
WAVIS_AVX2 inline Shoup4 shoup4v(__m256i w, __m256i wp) {
  return {w, _mm256_srli_epi64(w, 32), wp, _mm256_srli_epi64(wp, 32)};
}

// x * w mod q in [0, 2q) (Shoup, lazy; any 64-bit x): x*w - floor(x*wp / 2^64)*q mod 2^64.
WAVIS_AVX2 inline __m256i shoup_lazy4(__m256i x, const Shoup4& s, __m256i q, __m256i qh) {
  __m256i est = mulhi4(x, s.wp, s.wph);
  return _mm256_sub_epi64(mullo4(x, s.w, s.wh), mullo4(est, q, qh));
}

// Unsigned x < m per lane (all-ones mask), by flipping the sign bits.
WAVIS_AVX2 inline __m256i lt4(__m256i x, __m256i m) {
  const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ULL);
  return _mm256_cmpgt_epi64(_mm256_xor_si256(m, sign), _mm256_xor_si256(x, sign));
}
// x >= m ? x - m : x
WAVIS_AVX2 inline __m256i csub4(__m256i x, __m256i m) { return _mm256_sub_epi64(x, _mm256_andnot_si256(lt4(x, m), m)); }
// a - b mod q for a, b in [0, q)
WAVIS_AVX2 inline __m256i submod4(__m256i a, __m256i b, __m256i q) {
  __m256i t = _mm256_sub_epi64(a, b);
  return _mm256_add_epi64(t, _mm256_and_si256(lt4(a, b), q));
}

// x·y mod q for q < 2^50 and x, y in [0, q), fully reduced (the scalar Barrett product's value):
// the quotient floor(x·y/q) is estimated in double precision (x, y < 2^52 convert exactly through
// the 2^52 exponent trick; x·y/q < q < 2^50 and three roundings of relative error 2^-53 leave the
// floor off by at most one), then r = x·y − t·q is computed mod 2^64 (low products from 32×32
// pieces); it lies in [−q, 2q) and is corrected once each way.
struct Mod52x4 {
  __m256i q, qh;
  __m256d qinv;
};
WAVIS_AVX2 inline Mod52x4 mod52x4(unsigned long long q) {
  return {_mm256_set1_epi64x((long long)q), _mm256_set1_epi64x((long long)(q >> 32)), _mm256_set1_pd(1.0 / (double)q)};
}
WAVIS_AVX2 inline __m256d u52_to_pd(__m256i x) {  // exact for x < 2^52
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(x, _mm256_set1_epi64x(0x4330000000000000LL))),
                       _mm256_set1_pd(4503599627370496.0));
}
WAVIS_AVX2 inline __m256i mulmod52_4(__m256i x, __m256i y, const Mod52x4& m) {
  const __m256d t = _mm256_floor_pd(_mm256_mul_pd(_mm256_mul_pd(u52_to_pd(x), u52_to_pd(y)), m.qinv));
  const __m256i T = _mm256_xor_si256(_mm256_castpd_si256(_mm256_add_pd(t, _mm256_set1_pd(4503599627370496.0))),
                                     _mm256_set1_epi64x(0x4330000000000000LL));
  __m256i r = _mm256_sub_epi64(mullo4(x, y, _mm256_srli_epi64(y, 32)), mullo4(T, m.q, m.qh));
  r = _mm256_add_epi64(r, _mm256_and_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), r), m.q));
  return csub4(r, m.q);
}

// The full 128-bit product x·y per lane (lo, hi), from four 32x32 products.
WAVIS_AVX2 inline void mul128_4(__m256i x, __m256i y, __m256i& lo, __m256i& hi) {
  const __m256i mask = _mm256_set1_epi64x(0xffffffffLL);
  const __m256i xh = _mm256_srli_epi64(x, 32), yh = _mm256_srli_epi64(y, 32);
  const __m256i lolo = _mm256_mul_epu32(x, y), lohi = _mm256_mul_epu32(x, yh);
  const __m256i hilo = _mm256_mul_epu32(xh, y), hihi = _mm256_mul_epu32(xh, yh);
  __m256i mid = _mm256_add_epi64(_mm256_srli_epi64(lolo, 32), _mm256_and_si256(lohi, mask));
  mid = _mm256_add_epi64(mid, _mm256_and_si256(hilo, mask));  // < 3·2^32
  lo = _mm256_or_si256(_mm256_and_si256(lolo, mask), _mm256_slli_epi64(mid, 32));
  hi = _mm256_add_epi64(_mm256_add_epi64(hihi, _mm256_srli_epi64(lohi, 32)),
                        _mm256_add_epi64(_mm256_srli_epi64(hilo, 32), _mm256_srli_epi64(mid, 32)));
}

// x·y mod q for any q < 2^62 and x, y in [0, q), fully reduced (the scalar Barrett product's value;
// the avx2 path's product for primes >= 2^50, where mulmod52_4's double-precision quotient is too
// coarse). Barrett with a one-word constant (Barrett, CRYPTO '86; the shifted form as in Shoup's
// NTL): with 2^(b-1) <= q < 2^b and k = b - 2, s = floor(x·y / 2^k) < 2^(b+2) <= 2^64 and
// m = floor(2^(64+k) / q) < 2^63; t = floor(s·m / 2^64) satisfies x·y/q - 1.5 < t <= x·y/q, so
// r = x·y - t·q (computed mod 2^64) lies in [0, 3q) and two conditional subtractions finish it.
struct Mod62x4 {
  __m256i q, qh, q2, m, mh;
  __m128i k, k64;  // shift counts k and 64 - k (vpsrlq / vpsllq by register; a count of 64 gives 0)
};
inline unsigned long long barrett62_constant(unsigned long long q, int k) {
  return (unsigned long long)((((unsigned __int128)1) << (64 + k)) / q);
}
WAVIS_AVX2 inline Mod62x4 mod62x4(unsigned long long q) {
  const int b = 64 - __builtin_clzll(q), k = b >= 2 ? b - 2 : 0;
  const unsigned long long m = barrett62_constant(q, k);
  return {_mm256_set1_epi64x((long long)q), _mm256_set1_epi64x((long long)(q >> 32)),
          _mm256_set1_epi64x((long long)(2 * q)), _mm256_set1_epi64x((long long)m),
          _mm256_set1_epi64x((long long)(m >> 32)), _mm_cvtsi32_si128(k), _mm_cvtsi32_si128(64 - k)};
}
WAVIS_AVX2 inline __m256i mulmod62_4(__m256i x, __m256i y, const Mod62x4& M) {
  __m256i lo, hi;
  mul128_4(x, y, lo, hi);
  const __m256i s = _mm256_or_si256(_mm256_srl_epi64(lo, M.k), _mm256_sll_epi64(hi, M.k64));
  const __m256i t = mulhi4(s, M.m, M.mh);
  const __m256i r = _mm256_sub_epi64(lo, mullo4(t, M.q, M.qh));  // [0, 3q)
  return csub4(csub4(r, M.q2), M.q);
}

// The two kernels behind one name for the row loops: Mod52x4 (q < 2^50) or Mod62x4 (q < 2^62).
WAVIS_AVX2 inline __m256i mulmod4(__m256i x, __m256i y, const Mod52x4& m) { return mulmod52_4(x, y, m); }
WAVIS_AVX2 inline __m256i mulmod4(__m256i x, __m256i y, const Mod62x4& m) { return mulmod62_4(x, y, m); }

}  // namespace wavis::simd2
#endif
