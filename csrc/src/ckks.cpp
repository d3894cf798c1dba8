// Fused CKKS key-switching kernels (include/wavis/ckks.hpp): portable code and AVX-512 / IFMA
// kernels (target attributes, chosen at run time by the SIMD path, include/wavis/simd.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "wavis/ckks.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WAVIS_CKKS_AVX512 1
#include "wavis/simd256.hpp"
#include "wavis/simd512.hpp"
#endif

namespace wavis {
namespace {

// ---------------------------------------------------------------- AVX-512 helpers ----
// Used on the avx512 and ifma SIMD paths (simd_active(); the IFMA inner product: ifma_active()).
// Every vector kernel computes the same fully reduced values as the scalar loop it replaces (tests/test_ckks_keyswitch.py compares both paths).
#ifdef WAVIS_CKKS_AVX512
#define WAVIS_CK_AVX512 __attribute__((target("avx512f,avx512dq")))
// shared helpers (simd512.hpp) under this file's names
WAVIS_CK_AVX512 inline __m512i ck_mulhi(__m512i a, __m512i b, __m512i bh) { return simd::mulhi_epu64(a, b, bh); }
WAVIS_CK_AVX512 inline __m512i ck_shoup_lazy(__m512i x, __m512i w, __m512i wp, __m512i wph, __m512i q) {
  return simd::shoup_lazy8(x, w, wp, wph, q);
}
WAVIS_CK_AVX512 inline __m512i ck_csub(__m512i x, __m512i m) { return simd::csub8(x, m); }
// a - b mod q for a, b in [0, q) (q < 2^63)
WAVIS_CK_AVX512 inline __m512i ck_submod(__m512i a, __m512i b, __m512i q) {
  __m512i t = _mm512_sub_epi64(a, b);
  return _mm512_min_epu64(t, _mm512_add_epi64(t, q));
}

// convert_lazy on 16 coefficients per step (two independent accumulators)
WAVIS_CK_AVX512 void convert_lazy_avx512(const u64* y, std::size_t N, std::size_t L, const u64* c, const u64* cs,
                                         u64 p, u64* out, u64 sub) {
  const __m512i P = _mm512_set1_epi64((long long)p), P2 = _mm512_set1_epi64((long long)(2 * p));
  const __m512i S = _mm512_set1_epi64((long long)sub);
  for (std::size_t n = 0; n < N; n += 16) {
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (std::size_t i = 0; i < L; ++i) {
      const __m512i w = _mm512_set1_epi64((long long)c[i]), wp = _mm512_set1_epi64((long long)cs[i]);
      const __m512i wph = _mm512_set1_epi64((long long)(cs[i] >> 32));
      const u64* yi = y + i * N + n;
      a0 = ck_csub(_mm512_add_epi64(a0, ck_shoup_lazy(_mm512_loadu_si512(yi), w, wp, wph, P)), P2);
      a1 = ck_csub(_mm512_add_epi64(a1, ck_shoup_lazy(_mm512_loadu_si512(yi + 8), w, wp, wph, P)), P2);
    }
    _mm512_storeu_si512(out + n, ck_submod(ck_csub(a0, P), S, P));
    _mm512_storeu_si512(out + n + 8, ck_submod(ck_csub(a1, P), S, P));
  }
}


// out[n] = (x[n] mod p − sub) mod p, fully reduced (the value of sub_mod(Modulus(p).reduce(x[n]), sub, p)),
// any 64-bit x, 2^20 <= p < 2^62, sub < p, N % 8 == 0; out may alias x. The quotient is estimated
// in double precision (x·(1/p) truncated: x/p < 2^44, so the estimate's error is below 2^-8 and it
// is floor(x/p) or one off), the remainder computed exactly from it in [-p, 2p) and corrected.
WAVIS_CK_AVX512 void reduce_row_avx512(const u64* x, u64* out, std::size_t N, u64 p, u64 sub) {
  const __m512d PI = _mm512_set1_pd(1.0 / (double)p);
  const __m512i P = _mm512_set1_epi64((long long)p), S = _mm512_set1_epi64((long long)sub);
  for (std::size_t n = 0; n < N; n += 8) {
    const __m512i X = _mm512_loadu_si512(x + n);
    const __m512i qt = _mm512_cvttpd_epu64(_mm512_mul_pd(_mm512_cvtepu64_pd(X), PI));
    __m512i r = _mm512_sub_epi64(X, _mm512_mullo_epi64(qt, P));  // in [-p, 2p) (mod 2^64)
    r = _mm512_min_epu64(r, _mm512_add_epi64(r, P));              // [0, 2p)
    _mm512_storeu_si512(out + n, ck_submod(ck_csub(r, P), S, P));
  }
}

// x[n] = add_mod(x[n], h, p) (x, h < p), N % 8 == 0
WAVIS_CK_AVX512 void add_const_avx512(u64* x, std::size_t N, u64 h, u64 p) {
  const __m512i H = _mm512_set1_epi64((long long)h), P = _mm512_set1_epi64((long long)p);
  for (std::size_t n = 0; n < N; n += 8)
    _mm512_storeu_si512(x + n, ck_csub(_mm512_add_epi64(_mm512_loadu_si512(x + n), H), P));
}

// ModDown's overshoot estimate u[n] = clamp(floor(Σ_j (double)x_j[n] · inv[j]), 0, Lp), summed in
// the scalar loop's order with separate multiplies and adds (no FMA): the same doubles. N % 8 == 0.
WAVIS_CK_AVX512 void overshoot_avx512(const u64* x0, std::size_t N, std::size_t Lp, const double* inv,
                                      std::uint8_t* u) {
  const __m512d Z = _mm512_setzero_pd(), LP = _mm512_set1_pd((double)Lp);
  for (std::size_t n = 0; n < N; n += 8) {
    __m512d sum = Z;
    for (std::size_t j = 0; j < Lp; ++j)
      sum = _mm512_add_pd(sum, _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_loadu_si512(x0 + j * N + n)),
                                             _mm512_set1_pd(inv[j])));
    __m512d f = _mm512_roundscale_pd(sum, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    f = _mm512_min_pd(_mm512_max_pd(f, Z), LP);
    _mm_storel_epi64((__m128i*)(u + n), _mm512_cvtepi64_epi8(_mm512_cvttpd_epu64(f)));
  }
}

// d[n] = sub_mod(d[n], corr[u[n]], q), corr: Lp + 1 <= 16 values < q (a two-register table lookup,
// so a ModDown by up to 15 primes, e.g. q_l and seven special primes below 2^50, stays vectorized),
// N % 8 == 0
WAVIS_CK_AVX512 void sub_corr_avx512(u64* d, const std::uint8_t* u, const u64* corr, std::size_t ncorr,
                                     std::size_t N, u64 q) {
  alignas(64) u64 c16[16] = {};
  for (std::size_t k = 0; k < ncorr; ++k) c16[k] = corr[k];
  const __m512i C0 = _mm512_load_si512(c16), C1 = _mm512_load_si512(c16 + 8);
  const __m512i Q = _mm512_set1_epi64((long long)q);
  for (std::size_t n = 0; n < N; n += 8) {
    const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i*)(u + n)));
    _mm512_storeu_si512(d + n, ck_submod(_mm512_loadu_si512(d + n), _mm512_permutex2var_epi64(C0, idx, C1), Q));
  }
}

// d[n] = mul_shoup(sub_mod(s[n], d[n]), w) (the last ModDown step), N % 8 == 0
WAVIS_CK_AVX512 void sub_mul_shoup_avx512(const u64* s, u64* d, std::size_t N, u64 w, u64 wp, u64 q) {
  const __m512i W = _mm512_set1_epi64((long long)w), Wp = _mm512_set1_epi64((long long)wp);
  const __m512i Wph = _mm512_set1_epi64((long long)(wp >> 32)), Q = _mm512_set1_epi64((long long)q);
  for (std::size_t n = 0; n < N; n += 8) {
    __m512i t = ck_submod(_mm512_loadu_si512(s + n), _mm512_loadu_si512(d + n), Q);
    _mm512_storeu_si512(d + n, ck_csub(ck_shoup_lazy(t, W, Wp, Wph, Q), Q));
  }
}

// IFMA inner product of one output row for p < 2^50 (all inputs < p): per 8 coefficients the
// sums Σ x·k stay in registers as lo + hi·2^52 (vpmadd52{lo,hi}uq: < 2^12 terms cannot overflow),
// then V mod p = [hi·(2^52 mod p)]_shoup + [lo·1]_shoup, reduced — the same value as the 128-bit
// lazy accumulator followed by reduce128.
//   o_c[n] = (Σ_d src_d[n]·k_c,d[n] + w·add_c[n]) mod p, c = 0, 1 (add_c may be null)
#define WAVIS_CK_IFMA __attribute__((target("avx512f,avx512dq,avx512ifma")))

// The reduction of such a sum V = lo + hi·2^52 of at most kFin52Terms products of values < 2^50
// with 52-bit IFMA Shoup products (as the IFMA NTT's mulw) instead of the 64-bit ones built from
// 32x32 multiplies: lo's bits above 52 are carried into hi (lo < 15·2^52, hi < 15·2^48, so both
// parts are then < 2^52), and V mod p = [hi·(2^52 mod p)]_shoup52 + [lo·1]_shoup52, each in
// [0, 2p), summed and fully reduced — the same value as WAVIS_CK_FIN's.
constexpr std::size_t kFin52Terms = 15;
struct Fin52 {
  __m512i w52, w52p, onep, p, p2, mask;
};
WAVIS_CK_IFMA inline Fin52 fin52_consts(u64 p) {
  const u64 w52 = (u64)(((u128)1 << 52) % p);
  Fin52 f;
  f.w52 = _mm512_set1_epi64((long long)w52);
  f.w52p = _mm512_set1_epi64((long long)(u64)(((u128)w52 << 52) / p));
  f.onep = _mm512_set1_epi64((long long)(u64)(((u128)1 << 52) / p));
  f.p = _mm512_set1_epi64((long long)p);
  f.p2 = _mm512_set1_epi64((long long)(2 * p));
  f.mask = _mm512_set1_epi64((long long)((u64(1) << 52) - 1));
  return f;
}
// x·w mod p in [0, 2p) for x < 2^52, w < p, wp = floor(w·2^52/p)
WAVIS_CK_IFMA inline __m512i ck_mulw52(__m512i x, __m512i w, __m512i wp, const Fin52& f) {
  const __m512i z = _mm512_setzero_si512();
  const __m512i qh = _mm512_madd52hi_epu64(z, x, wp);
  return _mm512_and_si512(_mm512_sub_epi64(_mm512_madd52lo_epu64(z, x, w), _mm512_madd52lo_epu64(z, qh, f.p)),
                          f.mask);
}
WAVIS_CK_IFMA inline __m512i ck_fin52(__m512i lo, __m512i hi, const Fin52& f) {
  hi = _mm512_add_epi64(hi, _mm512_srli_epi64(lo, 52));
  lo = _mm512_and_si512(lo, f.mask);
  const __m512i s = _mm512_add_epi64(ck_mulw52(hi, f.w52, f.w52p, f),
                                     ck_mulw52(lo, _mm512_set1_epi64(1), f.onep, f));
  return ck_csub(ck_csub(s, f.p2), f.p);
}
WAVIS_CK_IFMA void inner52(const u64* const* src, const u64* const* k0,
                           const u64* const* k1, std::size_t D, const u64* add0, const u64* add1, u64 w, u64 p,
                           u64* o0, u64* o1, std::size_t N) {
  const __m512i P = _mm512_set1_epi64((long long)p), P2 = _mm512_set1_epi64((long long)(2 * p));
  const __m512i W = _mm512_set1_epi64((long long)w);
  const u64 w52 = (u64)(((u128)1 << 52) % p), w52p = shoup_precompute(w52, p), onep = shoup_precompute(1, p);
  const __m512i W52 = _mm512_set1_epi64((long long)w52), W52p = _mm512_set1_epi64((long long)w52p);
  const __m512i W52ph = _mm512_set1_epi64((long long)(w52p >> 32)), One = _mm512_set1_epi64(1);
  const __m512i Onep = _mm512_set1_epi64((long long)onep), Oneph = _mm512_set1_epi64((long long)(onep >> 32));
  const __m512i z = _mm512_setzero_si512();
  const bool f52 = D + ((add0 || add1) ? 1 : 0) <= kFin52Terms;
  const Fin52 F = fin52_consts(p);
#define WAVIS_CK_FIN(lo, hi) \
  ck_csub(ck_csub(_mm512_add_epi64(ck_shoup_lazy(hi, W52, W52p, W52ph, P), ck_shoup_lazy(lo, One, Onep, Oneph, P)), P2), P)
  for (std::size_t n = 0; n < N; n += 8) {
    __m512i l0 = z, h0 = z, l1 = z, h1 = z;
    if (add0) {
      const __m512i x = _mm512_loadu_si512(add0 + n);
      l0 = _mm512_madd52lo_epu64(l0, x, W);
      h0 = _mm512_madd52hi_epu64(h0, x, W);
    }
    if (add1) {
      const __m512i x = _mm512_loadu_si512(add1 + n);
      l1 = _mm512_madd52lo_epu64(l1, x, W);
      h1 = _mm512_madd52hi_epu64(h1, x, W);
    }
    for (std::size_t d = 0; d < D; ++d) {
      const __m512i x = _mm512_loadu_si512(src[d] + n);
      const __m512i a = _mm512_loadu_si512(k0[d] + n), b = _mm512_loadu_si512(k1[d] + n);
      l0 = _mm512_madd52lo_epu64(l0, x, a);
      h0 = _mm512_madd52hi_epu64(h0, x, a);
      l1 = _mm512_madd52lo_epu64(l1, x, b);
      h1 = _mm512_madd52hi_epu64(h1, x, b);
    }
    if (f52) {
      _mm512_storeu_si512(o0 + n, ck_fin52(l0, h0, F));
      _mm512_storeu_si512(o1 + n, ck_fin52(l1, h1, F));
    } else {
      _mm512_storeu_si512(o0 + n, WAVIS_CK_FIN(l0, h0));
      _mm512_storeu_si512(o1 + n, WAVIS_CK_FIN(l1, h1));
    }
  }
#undef WAVIS_CK_FIN
}

// convert_lazy's value for a target 2^20 <= p < 2^50 with IFMA: Σ_i x_i·c_i kept in registers as
// lo + hi·2^52 (vpmadd52{lo,hi}uq; x_i, c_i < 2^52), reduced once as in inner52, minus sub.
// x_i = y_i for a source prime < 2^50; for a wider one (wide[i]) x_i = y_i mod p first (the same
// residue; double-precision quotient as reduce_row_avx512). 16 coefficients per step.
WAVIS_CK_IFMA void convert_ifma(const u64* y, std::size_t N, std::size_t L, const u64* c, const std::uint8_t* wide,
                                u64 p, u64* out, u64 sub) {
  const __m512i P = _mm512_set1_epi64((long long)p), P2 = _mm512_set1_epi64((long long)(2 * p));
  const __m512i S = _mm512_set1_epi64((long long)sub);
  const __m512d PI = _mm512_set1_pd(1.0 / (double)p);
  const u64 w52 = (u64)(((u128)1 << 52) % p), w52p = shoup_precompute(w52, p), onep = shoup_precompute(1, p);
  const __m512i W52 = _mm512_set1_epi64((long long)w52), W52p = _mm512_set1_epi64((long long)w52p);
  const __m512i W52ph = _mm512_set1_epi64((long long)(w52p >> 32)), One = _mm512_set1_epi64(1);
  const __m512i Onep = _mm512_set1_epi64((long long)onep), Oneph = _mm512_set1_epi64((long long)(onep >> 32));
  const __m512i z = _mm512_setzero_si512();
  const bool f52 = L <= kFin52Terms;
  const Fin52 F = fin52_consts(p);
#define WAVIS_CK_RED(X)                                                                              \
  do {                                                                                               \
    const __m512i qt_ = _mm512_cvttpd_epu64(_mm512_mul_pd(_mm512_cvtepu64_pd(X), PI));              \
    __m512i r_ = _mm512_sub_epi64(X, _mm512_mullo_epi64(qt_, P));                                   \
    X = ck_csub(_mm512_min_epu64(r_, _mm512_add_epi64(r_, P)), P);                                  \
  } while (0)
#define WAVIS_CK_FIN(lo, hi) \
  ck_csub(ck_csub(_mm512_add_epi64(ck_shoup_lazy(hi, W52, W52p, W52ph, P), ck_shoup_lazy(lo, One, Onep, Oneph, P)), P2), P)
  for (std::size_t n = 0; n < N; n += 16) {
    __m512i l0 = z, h0 = z, l1 = z, h1 = z;
    for (std::size_t i = 0; i < L; ++i) {
      const u64* yi = y + i * N + n;
      __m512i x0 = _mm512_loadu_si512(yi), x1 = _mm512_loadu_si512(yi + 8);
      if (wide[i]) {
        WAVIS_CK_RED(x0);
        WAVIS_CK_RED(x1);
      }
      const __m512i C = _mm512_set1_epi64((long long)c[i]);
      l0 = _mm512_madd52lo_epu64(l0, x0, C);
      h0 = _mm512_madd52hi_epu64(h0, x0, C);
      l1 = _mm512_madd52lo_epu64(l1, x1, C);
      h1 = _mm512_madd52hi_epu64(h1, x1, C);
    }
    if (f52) {
      _mm512_storeu_si512(out + n, ck_submod(ck_fin52(l0, h0, F), S, P));
      _mm512_storeu_si512(out + n + 8, ck_submod(ck_fin52(l1, h1, F), S, P));
    } else {
      _mm512_storeu_si512(out + n, ck_submod(WAVIS_CK_FIN(l0, h0), S, P));
      _mm512_storeu_si512(out + n + 8, ck_submod(WAVIS_CK_FIN(l1, h1), S, P));
    }
  }
#undef WAVIS_CK_FIN
#undef WAVIS_CK_RED
}

// diag_mac's row t for a prime p < 2^50 (values < p < 2^52): per block of `blk` coefficients and
// group g, out[g, c] = Σ_j pts[j] ⊙ rots[sel[j], c] kept in registers as lo + hi·2^52
// (vpmadd52{lo,hi}uq; < 4096 terms per group, so lo and hi cannot overflow) and reduced once as
// in inner52: the same fully reduced value as the scalar 128-bit accumulation. m in {1, 2};
// pts read with `shift` (value n >> shift at coefficient n). 16 coefficients per step.
WAVIS_CK_IFMA void diag_mac_ifma_row(const u64* rots, std::size_t m, const u64* pts, const std::size_t* sel,
                                     const std::size_t* counts, std::size_t G, std::size_t L, std::size_t t,
                                     std::size_t N, unsigned shift, u64 p, u64* out) {
  const std::size_t Np = N >> shift;
  const __m512i P = _mm512_set1_epi64((long long)p), P2 = _mm512_set1_epi64((long long)(2 * p));
  const u64 w52 = (u64)(((u128)1 << 52) % p), w52p = shoup_precompute(w52, p), onep = shoup_precompute(1, p);
  const __m512i W52 = _mm512_set1_epi64((long long)w52), W52p = _mm512_set1_epi64((long long)w52p);
  const __m512i W52ph = _mm512_set1_epi64((long long)(w52p >> 32)), One = _mm512_set1_epi64(1);
  const __m512i Onep = _mm512_set1_epi64((long long)onep), Oneph = _mm512_set1_epi64((long long)(onep >> 32));
  const __m512i z = _mm512_setzero_si512();
  // lanes of a vector at coefficient n read pts value (n >> shift) + (lane >> shift) for shift 1, 2
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i perm = _mm512_srli_epi64(lane, shift < 3 ? shift : 0);
  const __mmask8 need = shift >= 3 ? 1 : (__mmask8)((1u << (8u >> shift)) - 1u);
#define WAVIS_CK_FIN(lo, hi) \
  ck_csub(ck_csub(_mm512_add_epi64(ck_shoup_lazy(hi, W52, W52p, W52ph, P), ck_shoup_lazy(lo, One, Onep, Oneph, P)), P2), P)
#define ptv(row, n)                                                      \
  (shift == 0   ? _mm512_loadu_si512((row) + (n))                         \
   : shift >= 3 ? _mm512_set1_epi64((long long)(row)[(n) >> shift])      \
                : _mm512_permutexvar_epi64(perm, _mm512_maskz_loadu_epi64(need, (row) + ((n) >> shift))))
  constexpr std::size_t BLK = 256;
  for (std::size_t n0 = 0; n0 < N; n0 += BLK) {
    const std::size_t n1 = std::min(N, n0 + BLK);
    std::size_t j0 = 0;
    for (std::size_t g = 0; g < G; ++g) {
      const std::size_t j1 = j0 + counts[g];
      u64* o0 = out + ((g * m) * L + t) * N;
      u64* o1 = m == 2 ? out + ((g * m + 1) * L + t) * N : nullptr;
      for (std::size_t n = n0; n < n1; n += 16) {
        __m512i la0 = z, ha0 = z, lb0 = z, hb0 = z, la1 = z, ha1 = z, lb1 = z, hb1 = z;
        for (std::size_t j = j0; j < j1; ++j) {
          const u64* prow = pts + (j * L + t) * Np;
          const __m512i x0 = ptv(prow, n), x1 = ptv(prow, n + 8);
          const u64* r0 = rots + ((sel[j] * m) * L + t) * N + n;
          const __m512i a0 = _mm512_loadu_si512(r0), a1 = _mm512_loadu_si512(r0 + 8);
          la0 = _mm512_madd52lo_epu64(la0, x0, a0);
          ha0 = _mm512_madd52hi_epu64(ha0, x0, a0);
          lb0 = _mm512_madd52lo_epu64(lb0, x1, a1);
          hb0 = _mm512_madd52hi_epu64(hb0, x1, a1);
          if (m == 2) {
            const u64* r1 = r0 + L * N;
            const __m512i b0 = _mm512_loadu_si512(r1), b1 = _mm512_loadu_si512(r1 + 8);
            la1 = _mm512_madd52lo_epu64(la1, x0, b0);
            ha1 = _mm512_madd52hi_epu64(ha1, x0, b0);
            lb1 = _mm512_madd52lo_epu64(lb1, x1, b1);
            hb1 = _mm512_madd52hi_epu64(hb1, x1, b1);
          }
        }
        _mm512_storeu_si512(o0 + n, WAVIS_CK_FIN(la0, ha0));
        _mm512_storeu_si512(o0 + n + 8, WAVIS_CK_FIN(lb0, hb0));
        if (m == 2) {
          _mm512_storeu_si512(o1 + n, WAVIS_CK_FIN(la1, ha1));
          _mm512_storeu_si512(o1 + n + 8, WAVIS_CK_FIN(lb1, hb1));
        }
      }
      j0 = j1;
    }
  }
#undef ptv
#undef WAVIS_CK_FIN
}
#endif

// ---------------------------------------------------------------- AVX2 helpers ----
// Used on the avx2 SIMD path (avx2_active()); 64-bit products from 32x32 pieces (simd256.hpp).
#ifdef WAVIS_HAVE_SIMD256
// convert_lazy on 8 coefficients per step (two independent accumulators), N % 8 == 0
WAVIS_AVX2 void convert_lazy_avx2(const u64* y, std::size_t N, std::size_t L, const u64* c, const u64* cs, u64 p,
                                  u64* out, u64 sub) {
  const __m256i P = _mm256_set1_epi64x((long long)p), Ph = _mm256_set1_epi64x((long long)(p >> 32));
  const __m256i P2 = _mm256_set1_epi64x((long long)(2 * p)), S = _mm256_set1_epi64x((long long)sub);
  for (std::size_t n = 0; n < N; n += 8) {
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (std::size_t i = 0; i < L; ++i) {
      const simd2::Shoup4 w = simd2::shoup4(c[i], cs[i]);
      const u64* yi = y + i * N + n;
      a0 = simd2::csub4(_mm256_add_epi64(a0, simd2::shoup_lazy4(_mm256_loadu_si256((const __m256i*)yi), w, P, Ph)), P2);
      a1 = simd2::csub4(_mm256_add_epi64(a1, simd2::shoup_lazy4(_mm256_loadu_si256((const __m256i*)(yi + 4)), w, P, Ph)), P2);
    }
    _mm256_storeu_si256((__m256i*)(out + n), simd2::submod4(simd2::csub4(a0, P), S, P));
    _mm256_storeu_si256((__m256i*)(out + n + 4), simd2::submod4(simd2::csub4(a1, P), S, P));
  }
}


// d[n] = mul_shoup(sub_mod(s[n], d[n]), w) (the last ModDown step), N % 4 == 0
WAVIS_AVX2 void sub_mul_shoup_avx2(const u64* s, u64* d, std::size_t N, u64 w, u64 wp, u64 q) {
  const simd2::Shoup4 W = simd2::shoup4(w, wp);
  const __m256i Q = _mm256_set1_epi64x((long long)q), Qh = _mm256_set1_epi64x((long long)(q >> 32));
  for (std::size_t n = 0; n < N; n += 4) {
    __m256i t = simd2::submod4(_mm256_loadu_si256((const __m256i*)(s + n)), _mm256_loadu_si256((const __m256i*)(d + n)), Q);
    _mm256_storeu_si256((__m256i*)(d + n), simd2::csub4(simd2::shoup_lazy4(t, W, Q, Qh), Q));
  }
}
#endif

inline bool use_avx2(std::size_t N) {
#ifdef WAVIS_HAVE_SIMD256
  return N >= 8 && N % 8 == 0 && avx2_active();
#else
  (void)N;
  return false;
#endif
}

inline bool use_simd(std::size_t N) {
#ifdef WAVIS_CKKS_AVX512
  return N >= 16 && simd_active();
#else
  (void)N;
  return false;
#endif
}


// out[n] = sub_mod(x[n] mod p, sub, p) (AVX-512 on the avx512/ifma paths); out may alias x
inline void reduce_rows(const u64* x, u64* out, std::size_t N, u64 p, u64 sub) {
#ifdef WAVIS_CKKS_AVX512
  if (use_simd(N) && p >= (u64(1) << 20)) return reduce_row_avx512(x, out, N, p, sub);
#endif
  const Modulus m(p);
  for (std::size_t n = 0; n < N; ++n) out[n] = sub_mod(m.reduce(x[n]), sub, p);
}

// Y (Lq, N): coefficient form of a times [(Q_d/q_i)^{-1}]_{q_i} of its digit d.
void modup_prepare(const KsPlan& P, const u64* a, u64* Y) {
  const std::size_t N = P.N;
  for_rows(P.Lq, N, [&](std::size_t i) {
    u64* y = Y + i * N;
    const std::size_t d = P.dg.of(i);
    const BConvTable& T = *P.tabs[d];
    const std::size_t k = i - P.dg.start[d];
    ntt_inverse_scaled(a + i * N, y, P.c->tables[P.full[i]], N, T.qhat_inv[k]);  // INTT, times qhat_inv
  }, 1 << 12);
}

// out[n] = (Σ_i y[i·N + n]·c_i mod p) − sub mod p, fully reduced: Shoup products in [0, 2p) summed
// lazily in [0, 2p) (p < 2^62), no 128-bit arithmetic. Same value as the 128-bit conversion.
// srcq[i]: the prime of row i of y (the IFMA kernel reduces the rows of primes >= 2^50 first).
inline void convert_lazy(const u64* y, std::size_t N, std::size_t L, const u64* c, const u64* cs, const u64* srcq,
                         u64 p, u64* out, u64 sub) {
#ifdef WAVIS_CKKS_AVX512
  if (use_simd(N) && ifma_active() && p < (u64(1) << 50) && p >= (u64(1) << 20) && L < 4096) {
    std::uint8_t wide[4096];
    for (std::size_t i = 0; i < L; ++i) wide[i] = srcq[i] >= (u64(1) << 50);
    return convert_ifma(y, N, L, c, wide, p, out, sub);
  }
  if (use_simd(N)) return convert_lazy_avx512(y, N, L, c, cs, p, out, sub);
#endif
#ifdef WAVIS_HAVE_SIMD256
  if (use_avx2(N)) return convert_lazy_avx2(y, N, L, c, cs, p, out, sub);
#endif
  const u64 p2 = 2 * p;
  for (std::size_t n = 0; n < N; ++n) {
    u64 acc = 0;
    for (std::size_t i = 0; i < L; ++i) {
      acc += mul_shoup_lazy(y[i * N + n], c[i], cs[i], p);
      acc = acc >= p2 ? acc - p2 : acc;
    }
    acc = acc >= p ? acc - p : acc;
    out[n] = sub_mod(acc, sub, p);
  }
}

// Row t of digit d's ModUp (t outside the digit): basis conversion then NTT, into out (N).
void modup_row(const KsPlan& P, const u64* Y, std::size_t d, std::size_t t, u64* out) {
  const std::size_t N = P.N, s = P.dg.start[d], L = P.dg.end[d] - s;
  const Modulus& pt = P.c->mod(P.full[t]);
  const BConvTable& T = *P.tabs[d];
  const u64* cst = T.qhat_mod_p.data() + t * L;
  const u64* y0 = Y + s * N;
  if (L == 1) {  // (Q_d/q)^{±1} = 1: a plain reduction
    if (P.c->moduli[P.full[s]] <= pt.q) {  // the values are already < p_t: NTT straight from y0
      ntt_forward_from(y0, out, P.c->tables[P.full[t]], N);
      return;
    }
    reduce_rows(y0, out, N, pt.q, 0);
  } else {
    const u64* cs = T.qhat_mod_p_shoup.data() + t * L;
    u64 srcq[4096];
    for (std::size_t i = 0; i < L && i < 4096; ++i) srcq[i] = P.c->moduli[P.full[s + i]];
    convert_lazy(y0, N, L, cst, cs, srcq, pt.q, out, 0);
  }
  ntt_forward(out, P.c->tables[P.full[t]], N);
}

// Per-thread scratch buffers, so that no call allocates (and first-touches) fresh pages: a
// large std::vector is an mmap, and its pages are faulted in and cleared on every call (16 % of
// a key switch at N = 2^14, 28 % of a ModDown, measured with perf on Zen 5). Pool threads
// persist, so each buffer is allocated once per thread and grows to the largest size used.
//   kCall  held by the calling thread for a whole call (pool rows may run on it meanwhile)
//   kRow   one output row's temporaries (ModUp digits, gathered rows)
//   kAcc   the 128-bit accumulator of a row (Acc)
//   kOut   a row pair's sums before the output automorphism (permute_out)
enum Scratch { kCall = 0, kRow = 1, kAcc = 2, kOut = 3 };
u64* scratch(Scratch slot, std::size_t n) {
  thread_local std::vector<u64> bufs[4];
  std::vector<u64>& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Lazy inner-product accumulator for one output row (two components), in the thread's kAcc
// scratch (one Acc per thread at a time).
struct Acc {
  u128* a0;
  u128* a1;
  std::size_t n;
  int pending = 0;
  explicit Acc(std::size_t N) : n(N) {
    u128* base = reinterpret_cast<u128*>(scratch(kAcc, 4 * N));  // malloc: 16-byte aligned
    a0 = base;
    a1 = base + N;
    std::fill(a0, a0 + 2 * N, (u128)0);
  }
  void fold(const Modulus& m) {
    for (std::size_t n = 0; n < this->n; ++n) {
      a0[n] = m.reduce128(a0[n]);
      a1[n] = m.reduce128(a1[n]);
    }
    pending = 0;
  }
  // a_c += src * k_c (after at most 15 products since the last fold: < 2^128 for q < 2^62)
  void mac(const Modulus& m, const u64* src, const u64* k0, const u64* k1) {
    if (pending == 15) fold(m);
    const std::size_t N = n;
    u128* x0 = a0;
    u128* x1 = a1;
    for (std::size_t n = 0; n < N; ++n) {
      const u64 v = src[n];
      x0[n] += (u128)v * k0[n];
      x1[n] += (u128)v * k1[n];
    }
    ++pending;
  }
  void add_scaled(const Modulus& m, const u64* src, u128* x, u64 w) {
    for (std::size_t k = 0; k < n; ++k) x[k] += (u128)src[k] * w;
  }
  void store(const Modulus& m, u64* o0, u64* o1) const {
    for (std::size_t n = 0; n < this->n; ++n) {
      o0[n] = m.reduce128(a0[n]);
      o1[n] = m.reduce128(a1[n]);
    }
  }
};

// The NTT-domain automorphism of an output row pair, applied once after its inner product (keys in
// the pre-permuted form, docs/ring.md "Galois keys pre-permuted"): o_c[n] = x_c[perm[n]], the x_c
// being the row's sums in the thread's kOut scratch (L1/L2), read with plain loads and written in
// order (a vpgatherdq per 8 values measured no faster: n14 key_switch_ext with the permutation
// 9.87-9.91 vs 10.0-10.3 ms, ks_inner 2.72 vs 2.64-2.75 ms; Xeon model 167, ifma, 1 thread).
// perm null: the sums were written to o_c directly.
void permute_out(const std::uint32_t* perm, const u64* x0, const u64* x1, u64* o0, u64* o1, std::size_t N) {
  if (!perm) return;
  for (std::size_t n = 0; n < N; ++n) {
    const std::uint32_t k = perm[n];
    o0[n] = x0[k];
    o1[n] = x1[k];
  }
}

inline const u64* key_row(const u64* key, std::size_t R, std::size_t N, std::size_t d, std::size_t c,
                          std::size_t prime) {
  return key + ((d * 2 + c) * R + prime) * N;
}

// Start an output row with P·add (rows t < Lq only).
void start_row(const KsPlan& P, Acc& acc, std::size_t t, const u64* add, std::size_t add_m) {
  if (!add || t >= P.Lq) return;
  const Modulus& m = P.c->mod(P.full[t]);
  for (std::size_t c = 0; c < add_m; ++c)
    acc.add_scaled(m, add + (c * P.Lq + t) * P.N, c == 0 ? acc.a0 : acc.a1, P.p_mod[t]);
  acc.pending = 1;
}

#ifdef WAVIS_HAVE_SIMD256
// inner52's product on the avx2 path, 4 coefficients per step: each product reduced exactly
// (simd2::mulmod52_4, q < 2^50) and summed in [0, p), so the result is the same fully reduced value.
// Blocks of 256 coefficients (the row's partial sums stay in L1 across the digits).
WAVIS_AVX2 void inner_avx2(const u64* const* src, const u64* const* k0,
                           const u64* const* k1, std::size_t D, const u64* add0, const u64* add1, u64 w, u64 p,
                           u64* o0, u64* o1, std::size_t N) {
  const simd2::Mod52x4 m = simd2::mod52x4(p);
  const __m256i W = _mm256_set1_epi64x((long long)w);
  constexpr std::size_t B = 256;
  for (std::size_t n0 = 0; n0 < N; n0 += B) {
    const std::size_t nb = std::min(B, N - n0);
    for (std::size_t k = 0; k < nb; k += 4) {  // start the block with w·add (or 0)
      const std::size_t n = n0 + k;
      __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
      if (add0) s0 = simd2::mulmod52_4(_mm256_loadu_si256((const __m256i*)(add0 + n)), W, m);
      if (add1) s1 = simd2::mulmod52_4(_mm256_loadu_si256((const __m256i*)(add1 + n)), W, m);
      _mm256_storeu_si256((__m256i*)(o0 + n), s0);
      _mm256_storeu_si256((__m256i*)(o1 + n), s1);
    }
    for (std::size_t d = 0; d < D; ++d) {
      const u64* x = src[d] + n0;
      const u64* a = k0[d] + n0;
      const u64* b = k1[d] + n0;
      for (std::size_t k = 0; k < nb; k += 4) {
        const __m256i X = _mm256_loadu_si256((const __m256i*)(x + k));
        __m256i s0 = _mm256_loadu_si256((const __m256i*)(o0 + n0 + k)), s1 = _mm256_loadu_si256((const __m256i*)(o1 + n0 + k));
        s0 = simd2::csub4(_mm256_add_epi64(s0, simd2::mulmod52_4(X, _mm256_loadu_si256((const __m256i*)(a + k)), m)), m.q);
        s1 = simd2::csub4(_mm256_add_epi64(s1, simd2::mulmod52_4(X, _mm256_loadu_si256((const __m256i*)(b + k)), m)), m.q);
        _mm256_storeu_si256((__m256i*)(o0 + n0 + k), s0);
        _mm256_storeu_si256((__m256i*)(o1 + n0 + k), s1);
      }
    }
  }
}
#endif

#ifdef WAVIS_CKKS_AVX512
// rows whose inner product runs register-resident: IFMA (ifma path) or AVX2 (avx2 path), q < 2^50.
// Rows of wider primes keep the scalar 128-bit lazy accumulator (Acc) on the avx2 path too: an
// AVX2 product reduced exactly per term (simd2::mulmod62_4, one-word Barrett) measured 0.79-0.97x
// the scalar accumulator here (Zen 3, N = 2^14, 2-3 digits, CPU time), since the scalar code
// reduces once per row and mulx makes its 64x64 products cheap.
inline bool use_ifma52(std::size_t N, u64 q) {
  return q < (u64(1) << 50) && ((use_simd(N) && ifma_active()) || use_avx2(N));
}

// Row t of the inner product with inner52 (inner_avx2 on the avx2 path), including P·add on the
// idx_q rows (as start_row).
void inner52_row(const KsPlan& P, std::size_t t, const u64* const* src, const u64* const* k0, const u64* const* k1, std::size_t D, const u64* add, std::size_t add_m,
                 u64* o0, u64* o1) {
  const u64* a0 = nullptr;
  const u64* a1 = nullptr;
  u64 w = 0;
  if (add && t < P.Lq) {
    w = P.p_mod[t];
    a0 = add + t * P.N;
    if (add_m > 1) a1 = add + (P.Lq + t) * P.N;
  }
#ifdef WAVIS_HAVE_SIMD256
  if (avx2_active()) return inner_avx2(src, k0, k1, D, a0, a1, w, P.c->mod(P.full[t]).q, o0, o1, P.N);
#endif
  inner52(src, k0, k1, D, a0, a1, w, P.c->mod(P.full[t]).q, o0, o1, P.N);
}
#endif
}  // namespace

// out (2, Lq+Lp, N) = aut(sum_d ModUp_d(a) * key[d] (+ P·add)), NTT domain.
void key_switch_ext(const KsPlan& P, const u64* a, const u64* key, std::size_t key_rows, const u64* add,
                    std::size_t add_m, const std::uint32_t* perm, u64* out) {
  const std::size_t N = P.N, R = P.R;
  u64* Y = scratch(kCall, P.Lq * N);
  modup_prepare(P, a, Y);
  for_rows(R, N, [&](std::size_t t) {
    const Modulus& m = P.c->mod(P.full[t]);
    u64* o0 = out + t * N;
    u64* o1 = out + (R + t) * N;
    u64* x0 = perm ? scratch(kOut, 2 * N) : o0;
    u64* x1 = perm ? x0 + N : o1;
#ifdef WAVIS_CKKS_AVX512
    if (use_ifma52(N, m.q)) {  // all digits of the row first, then one register-resident inner product
      const std::size_t D = P.dg.count();
      u64* bufs = scratch(kRow, D * N);
      std::vector<const u64*> src(D), k0(D), k1(D);
      for (std::size_t d = 0; d < D; ++d) {
        if (P.in_digit(d, t)) {
          src[d] = a + t * N;
        } else {
          modup_row(P, Y, d, t, bufs + d * N);
          src[d] = bufs + d * N;
        }
        k0[d] = key_row(key, key_rows, N, d, 0, P.full[t]);
        k1[d] = key_row(key, key_rows, N, d, 1, P.full[t]);
      }
      inner52_row(P, t, src.data(), k0.data(), k1.data(), D, add, add_m, x0, x1);
      permute_out(perm, x0, x1, o0, o1, N);
      return;
    }
#endif
    Acc acc(N);
    start_row(P, acc, t, add, add_m);
    u64* buf = scratch(kRow, N);
    for (std::size_t d = 0; d < P.dg.count(); ++d) {
      const u64* src;
      if (P.in_digit(d, t)) {
        src = a + t * N;
      } else {
        modup_row(P, Y, d, t, buf);
        src = buf;
      }
      acc.mac(m, src, key_row(key, key_rows, N, d, 0, P.full[t]), key_row(key, key_rows, N, d, 1, P.full[t]));
    }
    acc.store(m, x0, x1);
    permute_out(perm, x0, x1, o0, o1, N);
  }, 1);
}

// exts (D, Lq+Lp, N): ModUp of every digit, NTT domain.
void ks_mod_up(const KsPlan& P, const u64* a, u64* exts) {
  const std::size_t N = P.N, R = P.R, D = P.dg.count();
  u64* Y = scratch(kCall, P.Lq * N);
  modup_prepare(P, a, Y);
  for_rows(D * R, N, [&](std::size_t k) {
    const std::size_t d = k / R, t = k % R;
    u64* o = exts + (d * R + t) * N;
    if (P.in_digit(d, t)) std::memcpy(o, a + t * N, N * 8);
    else modup_row(P, Y, d, t, o);
  }, 1);
}

// out (2, Lq+Lp, N) = aut(sum_d exts[d] * key[d] (+ P·add)): the digits are read in order (the key
// in the pre-permuted form), the automorphism applied once to the row's two sums.
void ks_inner(const KsPlan& P, const u64* exts, std::size_t D, const u64* key, std::size_t key_rows,
              const std::uint32_t* perm, const u64* add, std::size_t add_m, u64* out) {
  const std::size_t N = P.N, R = P.R;
  for_rows(R, N, [&](std::size_t t) {
    const Modulus& m = P.c->mod(P.full[t]);
    u64* o0 = out + t * N;
    u64* o1 = out + (R + t) * N;
    u64* x0 = perm ? scratch(kOut, 2 * N) : o0;
    u64* x1 = perm ? x0 + N : o1;
#ifdef WAVIS_CKKS_AVX512
    if (use_ifma52(N, m.q)) {
      std::vector<const u64*> src(D), k0(D), k1(D);
      for (std::size_t d = 0; d < D; ++d) {
        src[d] = exts + (d * R + t) * N;
        k0[d] = key_row(key, key_rows, N, d, 0, P.full[t]);
        k1[d] = key_row(key, key_rows, N, d, 1, P.full[t]);
      }
      inner52_row(P, t, src.data(), k0.data(), k1.data(), D, add, add_m, x0, x1);
      permute_out(perm, x0, x1, o0, o1, N);
      return;
    }
#endif
    Acc acc(N);
    start_row(P, acc, t, add, add_m);
    for (std::size_t d = 0; d < D; ++d)
      acc.mac(m, exts + (d * R + t) * N, key_row(key, key_rows, N, d, 0, P.full[t]),
              key_row(key, key_rows, N, d, 1, P.full[t]));
    acc.store(m, x0, x1);
    permute_out(perm, x0, x1, o0, o1, N);
  }, 1);
}

// out[g] (m, L, N) = Σ_{j in group g} pts[j] ⊙ rots[sel[j]]: per row and block of 256 coefficients,
// every group in turn (the block of each baby rotation is read from memory once and stays in
// L1/L2 across the groups); the m accumulators are 128-bit sums (16 products of values < 2^62
// fit; folded every 15).
void diag_mac(const RnsContext& c, const u64* rots, std::size_t m, const u64* pts, const std::vector<std::size_t>& sel,
              const std::vector<std::size_t>& counts, const std::vector<std::size_t>& idx, unsigned shift, u64* out) {
  const std::size_t N = c.N, L = idx.size(), J = sel.size(), G = counts.size(), Np = N >> shift;
  constexpr std::size_t BLK = 256;
#ifdef WAVIS_CKKS_AVX512
  // rows of primes < 2^50 on the ifma path: register-resident IFMA sums (diag_mac_ifma_row)
  const bool ifma_rows = use_simd(N) && ifma_active() && N % 16 == 0 && (m == 1 || m == 2) &&
                         std::all_of(counts.begin(), counts.end(), [](std::size_t k) { return k < 4096; });
#endif
  for_rows(L, N * (J + G), [&](std::size_t t) {
    const Modulus& M = c.mod(idx[t]);
#ifdef WAVIS_CKKS_AVX512
    if (ifma_rows && M.q < (u64(1) << 50)) {
      diag_mac_ifma_row(rots, m, pts, sel.data(), counts.data(), G, L, t, N, shift, M.q, out);
      return;
    }
#endif
    std::vector<u128> accv(m * BLK);
    u128* acc = accv.data();
    u64 pb[BLK];
    for (std::size_t n0 = 0; n0 < N; n0 += BLK) {
      const std::size_t nb = std::min(BLK, N - n0);
      std::size_t j = 0;
      for (std::size_t g = 0; g < G; ++g) {
        std::fill(acc, acc + m * BLK, (u128)0);
        int pending = 0;
        for (const std::size_t end = j + counts[g]; j < end; ++j) {
          if (pending == 15) {
            for (std::size_t k = 0; k < m * BLK; ++k) acc[k] = M.reduce128(acc[k]);
            pending = 1;
          }
          const u64* p = pts + (j * L + t) * Np;
          if (shift) {  // expand the repeated plaintext block once
            for (std::size_t k = 0; k < nb; ++k) pb[k] = p[(n0 + k) >> shift];
            p = pb;
          } else {
            p += n0;
          }
          if (m == 2) {  // both components in one pass: the plaintext is read once
            const u64* r0 = rots + ((sel[j] * 2) * L + t) * N + n0;
            const u64* r1 = r0 + L * N;
            u128* a0 = acc;
            u128* a1 = acc + BLK;
            for (std::size_t k = 0; k < nb; ++k) {
              const u64 v = p[k];
              a0[k] += (u128)v * r0[k];
              a1[k] += (u128)v * r1[k];
            }
          } else {
            for (std::size_t comp = 0; comp < m; ++comp) {
              const u64* r = rots + ((sel[j] * m + comp) * L + t) * N + n0;
              u128* a = acc + comp * BLK;
              for (std::size_t k = 0; k < nb; ++k) a[k] += (u128)p[k] * r[k];
            }
          }
          ++pending;
        }
        for (std::size_t comp = 0; comp < m; ++comp) {
          u64* o = out + ((g * m + comp) * L + t) * N + n0;
          const u128* a = acc + comp * BLK;
          for (std::size_t k = 0; k < nb; ++k) o[k] = M.reduce128(a[k]);
        }
      }
    }
  }, 1);
}

// ModDown by P' = prod idx_p, NTT domain in/out, rounded: for each of `batch` polynomials
// a (Lq+Lp, N) -> out (Lq, N) = round(a / P') - u, 0 <= u < Lp (fast-conversion error).
void mod_down_ntt(const RnsContext& c, const u64* a, u64* out, std::size_t batch, const std::vector<std::size_t>& iq,
                  const std::vector<std::size_t>& ip) {
  const std::size_t N = c.N, Lq = iq.size(), Lp = ip.size(), R = Lq + Lp;
  auto T = c.bconv_table(ip, iq);
  auto MD = c.mod_down_table(iq, ip);
  // X (batch, Lp, N): [(INTT(a_P) + h) · (P'/p_j)^{-1}]_{p_j}, h = (P' - 1)/2 ≡ (p_j - 1)/2.
  u64* X = scratch(kCall, batch * Lp * N);
  for_rows(batch * Lp, N, [&](std::size_t r) {
    const std::size_t b = r / Lp, j = r % Lp;
    // (INTT(a_P) + h)·w = INTT(a_P)·w + h·w: w folded into the INTT's last stage, then h·w added
    const u64 p = c.moduli[ip[j]], w = T->qhat_inv[j], h = mul_mod_slow((p - 1) / 2, w, p);
    u64* x = X + r * N;
    ntt_inverse_scaled(a + (b * R + Lq + j) * N, x, c.tables[ip[j]], N, w);
#ifdef WAVIS_CKKS_AVX512
    if (use_simd(N)) {
      add_const_avx512(x, N, h, p);
    } else
#endif
    {
      for (std::size_t n = 0; n < N; ++n) x[n] = add_mod(x[n], h, p);
    }
  }, 1 << 12);
  // The conversion Σ_j y_j·(P'/p_j) = x + u·P' overshoots by u = floor(Σ_j y_j / p_j) < Lp; u is
  // estimated in double precision and removed, so the result is round(a / P') (off by one only
  // when x/P' is within ~2^-50 of an integer). Without this, −u lands in c_1 and is multiplied by
  // the secret key (Halevi–Polyakov–Shoup, CT-RSA 2019, §2.2 — exact conversion).
  std::vector<std::uint8_t> U(batch * N, 0);
  if (Lp > 1) {
    const std::vector<double>& inv = MD->p_recip;
    for_rows(batch, N * Lp, [&](std::size_t b) {
      const u64* x0 = X + b * Lp * N;
      std::uint8_t* u = U.data() + b * N;
#ifdef WAVIS_CKKS_AVX512
      if (use_simd(N)) return overshoot_avx512(x0, N, Lp, inv.data(), u);
#endif
      for (std::size_t n = 0; n < N; ++n) {
        double sum = 0.0;
        for (std::size_t j = 0; j < Lp; ++j) {
          const double t = (double)x0[j * N + n] * inv[j];
          sum = sum + t;
        }
        const double f = std::floor(sum);
        u[n] = (std::uint8_t)(f < 0 ? 0 : (f > (double)Lp ? (double)Lp : f));
      }
    });
  }
  std::vector<u64> srcq(Lp);
  for (std::size_t j = 0; j < Lp; ++j) srcq[j] = c.moduli[ip[j]];
  for_rows(batch * Lq, N, [&](std::size_t r) {
    const std::size_t b = r / Lq, i = r % Lq;
    const Modulus& qi = c.mod(iq[i]);
    const u64 Pm = MD->p_mod[i];
    std::vector<u64> corr(Lp + 1);
    for (std::size_t k = 0; k <= Lp; ++k) corr[k] = qi.mul(qi.reduce(k), Pm);
    const std::uint8_t* ub = U.data() + b * N;
    const u64 h = MD->half_p[i], pinv = MD->p_inv[i], pinvp = MD->p_inv_shoup[i];
    const u64* cst = T->qhat_mod_p.data() + i * Lp;
    const u64* x0 = X + b * Lp * N;
    u64* d = out + (b * Lq + i) * N;
    if (Lp == 1) {
      reduce_rows(x0, d, N, qi.q, h);
    } else {
      convert_lazy(x0, N, Lp, cst, T->qhat_mod_p_shoup.data() + i * Lp, srcq.data(), qi.q, d, h);
#ifdef WAVIS_CKKS_AVX512
      if (use_simd(N) && Lp + 1 <= 16) {
        sub_corr_avx512(d, ub, corr.data(), Lp + 1, N, qi.q);
      } else
#endif
      {
        for (std::size_t n = 0; n < N; ++n) d[n] = sub_mod(d[n], corr[ub[n]], qi.q);
      }
    }
    ntt_forward(d, c.tables[iq[i]], N);
    const u64* s = a + (b * R + i) * N;
#ifdef WAVIS_CKKS_AVX512
    if (use_simd(N)) {
      sub_mul_shoup_avx512(s, d, N, pinv, pinvp, qi.q);
      return;
    }
#endif
#ifdef WAVIS_HAVE_SIMD256
    if (use_avx2(N)) {
      sub_mul_shoup_avx2(s, d, N, pinv, pinvp, qi.q);
      return;
    }
#endif
    for (std::size_t n = 0; n < N; ++n) d[n] = mul_shoup(sub_mod(s[n], d[n], qi.q), pinv, pinvp, qi.q);
  }, 1 << 12);
}

}  // namespace wavis
