// AVX-512 negacyclic NTT kernels, included twice by ring.cpp (no include guard on purpose):
//   WAVIS_NTT_NAME(x)   suffixes every function (x##_avx512 / x##_ifma)
//   WAVIS_NTT_ATTR      the target attribute
//   WAVIS_NTT_MULW      body of `__m512i mulw(x, w, wp, Q)`: x*w mod q in [0, 2q) (lazy Shoup) for
//                       x < 4q, wp the Shoup companion of w in the kernel's word size
// Harvey lazy butterflies as in the scalar kernels (values in [0, 4q) inside); the last three
// forward stages / first three inverse stages (butterfly span 4, 2, 1) work on blocks of 16
// values with lane permutations, so no stage is scalar. Outputs fully reduced, hence
// bit-identical to the scalar kernels.
namespace {

WAVIS_NTT_ATTR inline __m512i WAVIS_NTT_NAME(mulw)(__m512i x, __m512i w, __m512i wp, __m512i Q) {
  WAVIS_NTT_MULW
}

WAVIS_NTT_ATTR inline __m512i WAVIS_NTT_NAME(csub)(__m512i x, __m512i m) {
  return _mm512_min_epu64(x, _mm512_sub_epi64(x, m));
}

// forward butterfly on (X, Y): X in [0, 4q) -> [0, 4q); Y -> [0, 4q)
#define WAVIS_FWD_BFLY(X, Y, w, wp)                                          \
  do {                                                                       \
    __m512i u_ = WAVIS_NTT_NAME(csub)(X, Q2);                                \
    __m512i v_ = WAVIS_NTT_NAME(mulw)(Y, w, wp, Q);                          \
    X = _mm512_add_epi64(u_, v_);                                            \
    Y = _mm512_add_epi64(_mm512_sub_epi64(u_, v_), Q2);                      \
  } while (0)
// inverse butterfly: X, Y in [0, 2q) -> X in [0, 2q), Y in [0, 2q)
#define WAVIS_INV_BFLY(X, Y, w, wp)                                          \
  do {                                                                       \
    __m512i s_ = WAVIS_NTT_NAME(csub)(_mm512_add_epi64(X, Y), Q2);           \
    __m512i d_ = _mm512_add_epi64(_mm512_sub_epi64(X, Y), Q2);               \
    X = s_;                                                                  \
    Y = WAVIS_NTT_NAME(mulw)(d_, w, wp, Q);                                  \
  } while (0)

WAVIS_NTT_ATTR void WAVIS_NTT_NAME(ntt_fwd)(u64* a, const u64* W, const u64* Wp, u64 q, std::size_t N) {
  const __m512i Q = _mm512_set1_epi64((long long)q), Q2 = _mm512_set1_epi64((long long)(2 * q));
  std::size_t tt = N, m = 1;
  for (; m < N; m <<= 1) {
    tt >>= 1;
    if (tt < 8) break;
    for (std::size_t i = 0; i < m; ++i) {
      const __m512i w = _mm512_set1_epi64((long long)W[m + i]);
      const __m512i wp = _mm512_set1_epi64((long long)Wp[m + i]);
      u64* x = a + 2 * i * tt;
      u64* y = x + tt;
      for (std::size_t j = 0; j < tt; j += 8) {
        __m512i X = _mm512_loadu_si512(x + j), Y = _mm512_loadu_si512(y + j);
        WAVIS_FWD_BFLY(X, Y, w, wp);
        _mm512_storeu_si512(x + j, X);
        _mm512_storeu_si512(y + j, Y);
      }
    }
  }
  // spans 4, 2, 1 on blocks of 16 values (A = a[16b..], B = a[16b+8..])
  const __m512i S4x = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11), S4y = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
  const __m512i S2x = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), S2y = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
  const __m512i S1x = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), S1y = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
  const __m512i M4a = S4x, M4b = S4y;
  const __m512i M2a = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), M2b = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  const __m512i M1a = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), M1b = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  const __m512i T4 = _mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1), T2 = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
  const std::size_t m4 = N / 8, m2 = N / 4, m1 = N / 2;
  for (std::size_t b = 0; b < N / 16; ++b) {
    __m512i A = _mm512_loadu_si512(a + 16 * b), B = _mm512_loadu_si512(a + 16 * b + 8);
    __m512i X = _mm512_permutex2var_epi64(A, S4x, B), Y = _mm512_permutex2var_epi64(A, S4y, B);
    __m512i w = _mm512_permutexvar_epi64(T4, _mm512_loadu_si512(W + m4 + 2 * b));
    __m512i wp = _mm512_permutexvar_epi64(T4, _mm512_loadu_si512(Wp + m4 + 2 * b));
    WAVIS_FWD_BFLY(X, Y, w, wp);
    A = _mm512_permutex2var_epi64(X, M4a, Y);
    B = _mm512_permutex2var_epi64(X, M4b, Y);
    X = _mm512_permutex2var_epi64(A, S2x, B);
    Y = _mm512_permutex2var_epi64(A, S2y, B);
    w = _mm512_permutexvar_epi64(T2, _mm512_loadu_si512(W + m2 + 4 * b));
    wp = _mm512_permutexvar_epi64(T2, _mm512_loadu_si512(Wp + m2 + 4 * b));
    WAVIS_FWD_BFLY(X, Y, w, wp);
    A = _mm512_permutex2var_epi64(X, M2a, Y);
    B = _mm512_permutex2var_epi64(X, M2b, Y);
    X = _mm512_permutex2var_epi64(A, S1x, B);
    Y = _mm512_permutex2var_epi64(A, S1y, B);
    w = _mm512_loadu_si512(W + m1 + 8 * b);
    wp = _mm512_loadu_si512(Wp + m1 + 8 * b);
    WAVIS_FWD_BFLY(X, Y, w, wp);
    X = WAVIS_NTT_NAME(csub)(WAVIS_NTT_NAME(csub)(X, Q2), Q);
    Y = WAVIS_NTT_NAME(csub)(WAVIS_NTT_NAME(csub)(Y, Q2), Q);
    _mm512_storeu_si512(a + 16 * b, _mm512_permutex2var_epi64(X, M1a, Y));
    _mm512_storeu_si512(a + 16 * b + 8, _mm512_permutex2var_epi64(X, M1b, Y));
  }
}

// ni_p / wn_p: companions (kernel word size) of N^-1 and W[1]·N^-1.
WAVIS_NTT_ATTR void WAVIS_NTT_NAME(ntt_inv)(u64* a, const u64* W, const u64* Wp, u64 q, std::size_t N, u64 ni,
                                            u64 ni_p, u64 wn, u64 wn_p) {
  const __m512i Q = _mm512_set1_epi64((long long)q), Q2 = _mm512_set1_epi64((long long)(2 * q));
  const __m512i S4x = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11), S4y = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
  const __m512i S2x = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), S2y = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
  const __m512i S1x = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), S1y = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
  const __m512i M4a = S4x, M4b = S4y;
  const __m512i M2a = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), M2b = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  const __m512i M1a = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), M1b = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  const __m512i T4 = _mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1), T2 = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
  const std::size_t h1 = N / 2, h2 = N / 4, h4 = N / 8;
  for (std::size_t b = 0; b < N / 16; ++b) {
    __m512i A = _mm512_loadu_si512(a + 16 * b), B = _mm512_loadu_si512(a + 16 * b + 8);
    __m512i X = _mm512_permutex2var_epi64(A, S1x, B), Y = _mm512_permutex2var_epi64(A, S1y, B);
    __m512i w = _mm512_loadu_si512(W + h1 + 8 * b), wp = _mm512_loadu_si512(Wp + h1 + 8 * b);
    WAVIS_INV_BFLY(X, Y, w, wp);
    A = _mm512_permutex2var_epi64(X, M1a, Y);
    B = _mm512_permutex2var_epi64(X, M1b, Y);
    X = _mm512_permutex2var_epi64(A, S2x, B);
    Y = _mm512_permutex2var_epi64(A, S2y, B);
    w = _mm512_permutexvar_epi64(T2, _mm512_loadu_si512(W + h2 + 4 * b));
    wp = _mm512_permutexvar_epi64(T2, _mm512_loadu_si512(Wp + h2 + 4 * b));
    WAVIS_INV_BFLY(X, Y, w, wp);
    A = _mm512_permutex2var_epi64(X, M2a, Y);
    B = _mm512_permutex2var_epi64(X, M2b, Y);
    X = _mm512_permutex2var_epi64(A, S4x, B);
    Y = _mm512_permutex2var_epi64(A, S4y, B);
    w = _mm512_permutexvar_epi64(T4, _mm512_loadu_si512(W + h4 + 2 * b));
    wp = _mm512_permutexvar_epi64(T4, _mm512_loadu_si512(Wp + h4 + 2 * b));
    WAVIS_INV_BFLY(X, Y, w, wp);
    _mm512_storeu_si512(a + 16 * b, _mm512_permutex2var_epi64(X, M4a, Y));
    _mm512_storeu_si512(a + 16 * b + 8, _mm512_permutex2var_epi64(X, M4b, Y));
  }
  std::size_t tt = 8;
  for (std::size_t m = N / 8; m > 2; m >>= 1) {
    const std::size_t h = m >> 1;
    for (std::size_t i = 0; i < h; ++i) {
      const __m512i w = _mm512_set1_epi64((long long)W[h + i]);
      const __m512i wp = _mm512_set1_epi64((long long)Wp[h + i]);
      u64* x = a + 2 * i * tt;
      u64* y = x + tt;
      for (std::size_t j = 0; j < tt; j += 8) {
        __m512i X = _mm512_loadu_si512(x + j), Y = _mm512_loadu_si512(y + j);
        WAVIS_INV_BFLY(X, Y, w, wp);
        _mm512_storeu_si512(x + j, X);
        _mm512_storeu_si512(y + j, Y);
      }
    }
    tt <<= 1;
  }
  // last stage (span N/2) merged with the multiplication by N^-1
  const __m512i NI = _mm512_set1_epi64((long long)ni), NIP = _mm512_set1_epi64((long long)ni_p);
  const __m512i WN = _mm512_set1_epi64((long long)wn), WNP = _mm512_set1_epi64((long long)wn_p);
  u64* x = a;
  u64* y = a + tt;
  for (std::size_t j = 0; j < tt; j += 8) {
    __m512i u = _mm512_loadu_si512(x + j), v = _mm512_loadu_si512(y + j);
    __m512i s = _mm512_add_epi64(u, v);
    __m512i d = _mm512_add_epi64(_mm512_sub_epi64(u, v), Q2);
    _mm512_storeu_si512(x + j, WAVIS_NTT_NAME(csub)(WAVIS_NTT_NAME(mulw)(s, NI, NIP, Q), Q));
    _mm512_storeu_si512(y + j, WAVIS_NTT_NAME(csub)(WAVIS_NTT_NAME(mulw)(d, WN, WNP, Q), Q));
  }
}

#undef WAVIS_FWD_BFLY
#undef WAVIS_INV_BFLY

}  // namespace
