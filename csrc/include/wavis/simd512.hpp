// AVX-512 64-bit modular helpers shared by ring.cpp (NTT, element-wise) and ckks.cpp (basis
// conversion, key switching). Compiled with per-function target attributes so the rest of the
// core stays portable; callers dispatch at run time (ring.hpp simd_active()).
#pragma once
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WAVIS_HAVE_SIMD512 1
#include <immintrin.h>
#define WAVIS_AVX512 __attribute__((target("avx512f,avx512dq")))

namespace wavis::simd {

// High 64 bits of a*b per lane (bh = b >> 32), from four 32x32 products.
WAVIS_AVX512 inline __m512i mulhi_epu64(__m512i a, __m512i b, __m512i bh) {
  const __m512i mask = _mm512_set1_epi64(0xffffffffLL);
  __m512i ah = _mm512_srli_epi64(a, 32);
  __m512i lolo = _mm512_mul_epu32(a, b);
  __m512i lohi = _mm512_mul_epu32(a, bh);
  __m512i hilo = _mm512_mul_epu32(ah, b);
  __m512i hihi = _mm512_mul_epu32(ah, bh);
  __m512i mid = _mm512_add_epi64(_mm512_srli_epi64(lolo, 32), _mm512_and_si512(lohi, mask));
  mid = _mm512_add_epi64(mid, _mm512_and_si512(hilo, mask));
  __m512i hi = _mm512_add_epi64(hihi, _mm512_srli_epi64(lohi, 32));
  hi = _mm512_add_epi64(hi, _mm512_srli_epi64(hilo, 32));
  return _mm512_add_epi64(hi, _mm512_srli_epi64(mid, 32));
}

// x * w mod q in [0, 2q) (Shoup; wp = floor(w 2^64 / q), wph = wp >> 32), 8 lanes.
WAVIS_AVX512 inline __m512i shoup_lazy8(__m512i x, __m512i w, __m512i wp, __m512i wph, __m512i q) {
  __m512i qh = mulhi_epu64(x, wp, wph);
  return _mm512_sub_epi64(_mm512_mullo_epi64(x, w), _mm512_mullo_epi64(qh, q));
}

// x >= m ? x - m : x  (x < 2m)
WAVIS_AVX512 inline __m512i csub8(__m512i x, __m512i m) { return _mm512_min_epu64(x, _mm512_sub_epi64(x, m)); }

}  // namespace wavis::simd
#endif
