// Negacyclic NTT kernels (include/wavis/ring.hpp: ntt_forward / ntt_inverse): portable scalar
// code, and AVX2 / AVX-512 / AVX-512 IFMA kernels compiled with target attributes and chosen at
// run time by the SIMD path (include/wavis/simd.hpp).
//
// Sources: D. Harvey, "Faster arithmetic for number-theoretic transforms", J. Symb. Comp. 2014
// (lazy butterflies, Shoup twiddles); P. Longa, M. Naehrig, "Speeding up the NTT", CANS 2016
// (negacyclic CT/GS with ψ powers in bit-reversed order, as in SEAL).
#include <cstring>

#include "wavis/ring.hpp"
#include "wavis/simd.hpp"

#include "wavis/simd256.hpp"  // outside namespace wavis (it opens wavis::simd2)
#include "wavis/simd512.hpp"  // outside namespace wavis (it opens wavis::simd)

namespace wavis {

#include "ntt_avx2.inc"

// ============================================================================== NTT ======
// ------------------------------------------------------------------ AVX-512 kernels ----
// Used on the avx512 and ifma paths (any q < 2^62: the 64x64 high product is
// built from four 32x32 products); the IFMA copy on the ifma path for primes q < 2^50.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WAVIS_HAVE_AVX512_KERNELS 1
namespace {
using simd::mulhi_epu64;
using simd::shoup_lazy8;
using simd::csub8;

}  // namespace

#define WAVIS_NTT_NAME(x) x##_avx512
#define WAVIS_NTT_ATTR WAVIS_AVX512
#define WAVIS_NTT_MULW return shoup_lazy8(x, w, wp, _mm512_srli_epi64(wp, 32), Q);
#define WAVIS_NTT_LANE_BITS 64  // the Shoup multiply takes any x < 2^64
#include "ntt_simd.inc"
#undef WAVIS_NTT_NAME
#undef WAVIS_NTT_ATTR
#undef WAVIS_NTT_MULW
#undef WAVIS_NTT_LANE_BITS

// IFMA (vpmadd52{lo,hi}uq) for q < 2^50: 52-bit Shoup companions floor(w·2^52/q); x < 4q < 2^52.
// x·w − qh·q is formed mod 2^52 by accumulating qh·(2^52 − q) onto the low product (the low 52
// bits of −q), then masked: it lies in [0, 2q), so the mask gives it exactly (3 IFMA + 1 op).
#define WAVIS_NTT_NAME(x) x##_ifma
#define WAVIS_NTT_ATTR __attribute__((target("avx512f,avx512dq,avx512ifma")))
#define WAVIS_NTT_MULW                                                                          \
  const __m512i z = _mm512_setzero_si512();                                                     \
  __m512i qh = _mm512_madd52hi_epu64(z, x, wp);                                                 \
  __m512i r = _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(z, x, w), qh, _mm512_sub_epi64(z, Q));  \
  return _mm512_and_si512(r, _mm512_set1_epi64((1LL << 52) - 1));
#define WAVIS_NTT_LANE_BITS 52  // IFMA reads the low 52 bits of x
#include "ntt_simd.inc"
#undef WAVIS_NTT_NAME
#undef WAVIS_NTT_ATTR
#undef WAVIS_NTT_MULW
#undef WAVIS_NTT_LANE_BITS
#endif

static void ntt_forward_scalar(u64* a, const NttTable& t, std::size_t N);
static void ntt_inverse_scalar(u64* a, const NttTable& t, std::size_t N);

void ntt_forward(u64* a, const NttTable& t, std::size_t N) {
#ifdef WAVIS_HAVE_SIMD256
  if (N >= 8 && avx2_active()) return ntt_fwd_avx2(a, t.psi_rev.data(), t.psi_rev_shoup.data(), t.mod.q, N);
#endif
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_active()) {
    if (!t.psi_rev_shoup52.empty() && ifma_active())
      return ntt_fwd_ifma(a, t.psi_rev.data(), t.psi_rev_shoup52.data(), t.mod.q, N, a);
    return ntt_fwd_avx512(a, t.psi_rev.data(), t.psi_rev_shoup.data(), t.mod.q, N, a);
  }
#endif
  ntt_forward_scalar(a, t, N);
}

void ntt_forward_from(const u64* src, u64* a, const NttTable& t, std::size_t N) {
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_active()) {  // the first pass reads src: no copy
    if (!t.psi_rev_shoup52.empty() && ifma_active())
      return ntt_fwd_ifma(a, t.psi_rev.data(), t.psi_rev_shoup52.data(), t.mod.q, N, src);
    return ntt_fwd_avx512(a, t.psi_rev.data(), t.psi_rev_shoup.data(), t.mod.q, N, src);
  }
#endif
  if (src != a) std::memcpy(a, src, N * sizeof(u64));
  ntt_forward(a, t, N);
}
void ntt_inverse(u64* a, const NttTable& t, std::size_t N) {
#ifdef WAVIS_HAVE_SIMD256
  if (N >= 8 && avx2_active())
    return ntt_inv_avx2(a, t.ipsi_rev.data(), t.ipsi_rev_shoup.data(), t.mod.q, N, t.n_inv, t.n_inv_shoup, t.wn_inv,
                        t.wn_inv_shoup);
#endif
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_active()) {
    if (!t.ipsi_rev_shoup52.empty() && ifma_active())
      return ntt_inv_ifma(a, t.ipsi_rev.data(), t.ipsi_rev_shoup52.data(), t.mod.q, N, t.n_inv, t.n_inv_shoup52,
                          t.wn_inv, t.wn_inv_shoup52, a);
    return ntt_inv_avx512(a, t.ipsi_rev.data(), t.ipsi_rev_shoup.data(), t.mod.q, N, t.n_inv, t.n_inv_shoup,
                          t.wn_inv, t.wn_inv_shoup, a);
  }
#endif
  ntt_inverse_scalar(a, t, N);
}

void ntt_inverse_from(const u64* src, u64* a, const NttTable& t, std::size_t N) { ntt_inverse_scaled(src, a, t, N, 1); }

void ntt_inverse_scaled(const u64* src, u64* a, const NttTable& t, std::size_t N, u64 w) {
  const u64 q = t.mod.q;
  // w folds into the last stage's constants N^-1 and W[1]·N^-1 on the vector paths
  const u64 ni = w == 1 ? t.n_inv : mul_mod_slow(t.n_inv, w, q);
  const u64 wn = w == 1 ? t.wn_inv : mul_mod_slow(t.wn_inv, w, q);
#ifdef WAVIS_HAVE_SIMD256
  if (N >= 8 && avx2_active()) {
    if (src != a) std::memcpy(a, src, N * sizeof(u64));
    return ntt_inv_avx2(a, t.ipsi_rev.data(), t.ipsi_rev_shoup.data(), q, N, ni, shoup_precompute(ni, q), wn,
                        shoup_precompute(wn, q));
  }
#endif
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_active()) {  // the first pass reads src: no copy
    if (!t.ipsi_rev_shoup52.empty() && ifma_active()) {
      const u64 ni52 = w == 1 ? t.n_inv_shoup52 : (u64)(((u128)ni << 52) / q);
      const u64 wn52 = w == 1 ? t.wn_inv_shoup52 : (u64)(((u128)wn << 52) / q);
      return ntt_inv_ifma(a, t.ipsi_rev.data(), t.ipsi_rev_shoup52.data(), q, N, ni, ni52, wn, wn52, src);
    }
    return ntt_inv_avx512(a, t.ipsi_rev.data(), t.ipsi_rev_shoup.data(), q, N, ni, shoup_precompute(ni, q), wn,
                          shoup_precompute(wn, q), src);
  }
#endif
  // portable: copy, transform in place, then one Shoup multiplication by w (the same values)
  if (src != a) std::memcpy(a, src, N * sizeof(u64));
  ntt_inverse(a, t, N);
  if (w != 1) {
    const u64 wp = shoup_precompute(w, q);
    for (std::size_t n = 0; n < N; ++n) a[n] = mul_shoup(a[n], w, wp, q);
  }
}

static void ntt_forward_scalar(u64* a, const NttTable& t, std::size_t N) {
  const u64 q = t.mod.q, two_q = 2 * q;
  const u64* W = t.psi_rev.data();
  const u64* Wp = t.psi_rev_shoup.data();
  std::size_t tt = N;
  for (std::size_t m = 1; m < N; m <<= 1) {
    tt >>= 1;
    {
      for (std::size_t i = 0; i < m; ++i) {
        const u64 w = W[m + i], wp = Wp[m + i];
        u64* x = a + 2 * i * tt;
        u64* y = x + tt;
        for (std::size_t j = 0; j < tt; ++j) {
          u64 u = x[j];
          u = u >= two_q ? u - two_q : u;
          u64 v = mul_shoup_lazy(y[j], w, wp, q);
          x[j] = u + v;
          y[j] = u - v + two_q;
        }
      }
    }
  }
  for (std::size_t j = 0; j < N; ++j) {
    u64 v = a[j];
    v = v >= two_q ? v - two_q : v;
    a[j] = v >= q ? v - q : v;
  }
}

static void ntt_inverse_scalar(u64* a, const NttTable& t, std::size_t N) {
  const u64 q = t.mod.q, two_q = 2 * q;
  const u64* W = t.ipsi_rev.data();
  const u64* Wp = t.ipsi_rev_shoup.data();
  std::size_t tt = 1;
  for (std::size_t m = N; m > 2; m >>= 1) {
    const std::size_t h = m >> 1;
    for (std::size_t i = 0; i < h; ++i) {
      const u64 w = W[h + i], wp = Wp[h + i];
      u64* x = a + 2 * i * tt;
      u64* y = x + tt;
      for (std::size_t j = 0; j < tt; ++j) {
        u64 u = x[j], v = y[j];
        u64 s = u + v;
        x[j] = s >= two_q ? s - two_q : s;
        y[j] = mul_shoup_lazy(u - v + two_q, w, wp, q);
      }
    }
    tt <<= 1;
  }
  // last stage (m = 2) merged with the multiplication by N^{-1}
  if (N >= 2) {
    const u64 ni = t.n_inv, nip = t.n_inv_shoup;
    const u64 wn = mul_mod_slow(W[1], ni, q), wnp = shoup_precompute(wn, q);
    u64* x = a;
    u64* y = a + tt;
    for (std::size_t j = 0; j < tt; ++j) {
      u64 u = x[j], v = y[j];
      x[j] = mul_shoup(u + v, ni, nip, q);
      y[j] = mul_shoup(u - v + two_q, wn, wnp, q);
    }
  } else {
    a[0] = mul_shoup(a[0], t.n_inv, t.n_inv_shoup, q);
  }
}

}  // namespace wavis
