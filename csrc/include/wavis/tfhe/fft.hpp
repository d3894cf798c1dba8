// Negacyclic FFT over R[X]/(X^N + 1) in double precision, for the TFHE external product.
//
// A real polynomial a of degree < N is "folded" into N/2 complex numbers
//     c_j = (a_j + i a_{j+N/2}) * zeta^j,   zeta = exp(i pi / N),  j < N/2,
// and a complex FFT of size M = N/2 of c evaluates a at the M roots zeta * rho^-k of X^N + 1
// (rho = exp(2 pi i / M)), one of each conjugate pair. Pointwise products in this domain are
// negacyclic products (the folding used by tfhe-fft / TFHE-rs and by Klemsa's "Fast and
// error-free negacyclic integer convolution using extended Fourier transform").
//
// The forward transform is a radix-2 decimation-in-frequency FFT (natural order in,
// bit-reversed order out); the inverse a decimation-in-time FFT (bit-reversed in, natural
// out), so no bit reversal is ever done: every operand in the Fourier domain uses the same
// order. Real and imaginary parts are stored in separate arrays (split layout) so that every
// butterfly loop is a plain vectorisable loop; twiddles are precomputed per stage.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
// AVX2 + FMA kernels for hosts without AVX-512 (e.g. AMD Zen 2/3): the same radix-8 plan and
// Fourier order on 4-wide vectors. Which kernels a copy has is decided at compile time by its
// target flags (src/tfhe/kernels.cpp, one copy per SIMD path), which copy runs at run time.
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define WAVIS_TFHE_AVX2 1
#endif
// The AVX2 8-point DFT takes its loads and stores as lambdas; left to itself GCC 12 outlines
// some instances (in the LTO module build: the inverse passes, one call per butterfly group
// with the lambdas' captured pointers read back through memory; inverse + rounding 1.07 ->
// 0.95 us, blind rotation -3.7 %). Forcing it inline changes no arithmetic.
#if defined(__GNUC__)
#define WAVIS_TFHE_INLINE __attribute__((always_inline))
#else
#define WAVIS_TFHE_INLINE
#endif

#ifndef WAVIS_TFHE_ISA
#define WAVIS_TFHE_ISA isa_portable
#endif

namespace wavis {
namespace tfhe {
namespace WAVIS_TFHE_ISA {  // one copy per SIMD path (src/tfhe/kernels.cpp)

// 64-byte aligned std::vector allocator (AVX-512 friendly).
template <class T>
struct AlignedAlloc {
  using value_type = T;
  AlignedAlloc() = default;
  template <class U>
  AlignedAlloc(const AlignedAlloc<U>&) {}
  T* allocate(std::size_t n) {
    std::size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // large arrays (the Fourier-domain bootstrapping key, tens of MB, streamed once per
    // bootstrap): 2 MiB pages where the kernel allows them, so the stream is not TLB-bound
    constexpr std::size_t kHuge = std::size_t(2) << 20;
    if (bytes >= 2 * kHuge) {
      bytes = (bytes + kHuge - 1) / kHuge * kHuge;
      void* p = std::aligned_alloc(kHuge, bytes);
      if (!p) throw std::bad_alloc();
      madvise(p, bytes, MADV_HUGEPAGE);
      return static_cast<T*>(p);
    }
#endif
    void* p = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  template <class U>
  bool operator==(const AlignedAlloc<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAlloc<U>&) const { return false; }
};
template <class T>
using avec = std::vector<T, AlignedAlloc<T>>;

// std::allocator under this copy's namespace: vectors of this copy are their own template
// instantiations, never shared (by the linker's one-definition merge) with code compiled for
// another SIMD path.
template <class T>
struct VecAlloc : std::allocator<T> {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = VecAlloc<U>;
  };
  VecAlloc() = default;
  template <class U>
  VecAlloc(const VecAlloc<U>&) {}
};
template <class T>
using ivec = std::vector<T, VecAlloc<T>>;

// round(x) mod 2^32 for |x| < 2^62 or so: reduce by 2^32 first, then the 1.5*2^52 trick
// (the low mantissa bits of x + 1.5*2^52 hold round(x) in two's complement). Needs strict
// IEEE semantics (no -ffast-math), which this project uses.
static inline uint32_t f64_to_torus32(double x) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double two32 = 4294967296.0, inv32 = 1.0 / 4294967296.0;
  double q = (x * inv32 + magic) - magic;    // round(x / 2^32)
  double r = x - q * two32;                  // |r| <= 2^31 (+ rounding)
  double y = r + magic;
  uint64_t bits;
  std::memcpy(&bits, &y, 8);
  return (uint32_t)bits;
}
// Software prefetch of a byte range (the next GGSW) spread over the compute loops: each step()
// asks for `per` cache lines (into L2) until the range is covered. A burst of hundreds of
// prefetches fills the load queue and stalls like a plain load would; one or two lines per
// loop iteration keep the memory stream going under the arithmetic.
struct StreamPrefetch {
  const char* p = nullptr;
  const char* e = nullptr;
  int per = 2;
  inline void step() {
    for (int i = 0; i < per && p < e; ++i, p += 64) __builtin_prefetch(p, 0, 2);
  }
  inline void finish() {
    for (; p < e; p += 64) __builtin_prefetch(p, 0, 2);
  }
};

class NegacyclicFFT {
 public:
  int N = 0, M = 0;

  explicit NegacyclicFFT(int n) : N(n), M(n / 2) {
    if (n < 4 || (n & (n - 1))) throw std::invalid_argument("FFT size must be a power of two >= 4");
    tw_re_.resize(M);
    tw_im_.resize(M);
    itw_re_.resize(M);
    itw_im_.resize(M);
    const double pi = 3.14159265358979323846;
    for (int j = 0; j < M; ++j) {
      double ang = pi * j / N;
      tw_re_[j] = std::cos(ang);
      tw_im_[j] = std::sin(ang);
      itw_re_[j] = std::cos(ang) / M;
      itw_im_[j] = -std::sin(ang) / M;
    }
#if defined(__AVX512F__) || defined(WAVIS_TFHE_AVX2)
    // radix-8 plan when M = 8^a, a >= 2 (M = 512 for N = 1024): passes L = M, M/8, ..., 64
    // (8-point DFTs across vectors, then twiddles w_L^{jt}), and a last pass of 8-point DFTs
    // on 8x8 transposed blocks. Output order: base-8 digit reversal, with the last digit pair
    // transposed; internal (the inverse undoes exactly this).
    {
      int lg = __builtin_ctz((unsigned)M);
      r8_ = (lg % 3 == 0 && M >= 64);
      if (r8_) {
        for (int L = M; L >= 64; L /= 8) {
          int q = L / 8;
          for (int t = 1; t < 8; ++t)
            for (int j = 0; j < q; ++j) {
              double ang = -2.0 * pi * (double)j * t / L;
              r8_re_.push_back(std::cos(ang));
              r8_im_.push_back(std::sin(ang));
            }
        }
      }
    }
#endif
    // stage twiddles, stage len = M, M/2, ..., 2 at offset M - len, h = len/2 entries
    st_re_.resize(M > 1 ? M : 1);
    st_im_.resize(M > 1 ? M : 1);
    for (int len = M; len >= 2; len >>= 1) {
      int h = len / 2, off = M - len;
      for (int j = 0; j < h; ++j) {
        double ang = -2.0 * pi * j / len;
        st_re_[off + j] = std::cos(ang);
        st_im_[off + j] = std::sin(ang);
      }
    }
  }

  // Forward transform of an integer polynomial (int32 coefficients, N of them).
  void forward_i32(const int32_t* __restrict in, double* __restrict re, double* __restrict im) const {
    const double* __restrict tr = tw_re_.data();
    const double* __restrict ti = tw_im_.data();
    for (int j = 0; j < M; ++j) {
      double xr = (double)in[j], xi = (double)in[j + M];
      re[j] = xr * tr[j] - xi * ti[j];
      im[j] = xr * ti[j] + xi * tr[j];
    }
    dif(re, im);
  }
  // Forward transform of a torus polynomial (uint32 read as signed int32).
  void forward_torus(const uint32_t* in, double* re, double* im) const {
    forward_i32(reinterpret_cast<const int32_t*>(in), re, im);
  }
  // Forward transform of an already folded and twisted input (c_j above, split re/im): the
  // external product computes the fold/twist itself, fused with the gadget decomposition.
  void forward_twisted(double* __restrict re, double* __restrict im, StreamPrefetch* pf = nullptr) const {
#if defined(WAVIS_TFHE_AVX2)
    if (r8_) {
      dif_radix8_avx2(re, im, pf);
      return;
    }
#endif
    dif(re, im);
  }
#if defined(WAVIS_TFHE_AVX2)
  // For a caller that computes the input of the first radix-8 pass itself (the external
  // product fuses the gadget decomposition and the fold/twist into it): that pass is 8-point
  // DFTs over the points j + (M/8) m, m = 0..7, output t >= 1 times first_twiddle(t, j),
  // stored at j + (M/8) t; forward_after_first runs the remaining passes. Together they are
  // exactly forward_twisted.
  const double* first_twiddle_re() const { return r8_re_.data(); }  // [(t - 1) * M/8 + j]
  const double* first_twiddle_im() const { return r8_im_.data(); }
  void forward_after_first(double* re, double* im, StreamPrefetch* pf) const { dif_radix8_avx2_from(re, im, pf, M / 8); }
  template <class LD, class ST>
  WAVIS_TFHE_INLINE static inline void dft8(LD ld, ST st) { dft8_4s(ld, st); }
#endif
  // prefetch steps one forward_twisted / inverse_add_torus takes (0: the call ignores pf)
  int prefetch_steps() const {
#if defined(WAVIS_TFHE_AVX2)
    if (r8_) {
      int passes = 0;
      for (int L = M; L >= 64; L /= 8) ++passes;
      return (passes + 1) * (M / 32);
    }
#endif
    return 0;
  }
  const double* twist_re() const { return tw_re_.data(); }
  const double* twist_im() const { return tw_im_.data(); }

  // Outputs of inverse_add_torus are known to stay below 2^bound_log2 in absolute value (the
  // caller's bound on the exact product, e.g. rows * N * B/2 * 2^31 for the external
  // product): below 2^50 the AVX2 path rounds with one magic-number add, otherwise it first
  // reduces mod 2^32 as f64_to_torus32 does. Either way the result equals f64_to_torus32.
  void set_output_bound_log2(double bound_log2) { out_small_ = bound_log2 <= 50.0; }

  // Inverse transform; re/im are destroyed; out[j] += round(result_j) mod 2^32.
  void inverse_add_torus(double* __restrict re, double* __restrict im, uint32_t* __restrict out,
                         StreamPrefetch* pf = nullptr) const {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (r8_) {
      dit_radix8(re, im, out);
      return;
    }
#endif
#if defined(WAVIS_TFHE_AVX2)
    if (r8_) {
      if (out_small_) dit_radix8_avx2<true>(re, im, out, pf);
      else dit_radix8_avx2<false>(re, im, out, pf);
      return;
    }
#endif
    dit(re, im);
    const double* __restrict tr = itw_re_.data();
    const double* __restrict ti = itw_im_.data();
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (M % 8 == 0) {
      // round to nearest (even) int64 in hardware, keep the low 32 bits: the same value as
      // f64_to_torus32 for |x| < 2^51 (the products here stay below 2^47)
      for (int j = 0; j < M; j += 8) {
        __m512d xr = _mm512_load_pd(re + j), xi = _mm512_load_pd(im + j);
        __m512d wr = _mm512_load_pd(tr + j), wi = _mm512_load_pd(ti + j);
        __m512d r = _mm512_fmsub_pd(xr, wr, _mm512_mul_pd(xi, wi));
        __m512d i = _mm512_fmadd_pd(xr, wi, _mm512_mul_pd(xi, wr));
        __m256i lo = _mm512_cvtepi64_epi32(_mm512_cvtpd_epi64(r));
        __m256i hi = _mm512_cvtepi64_epi32(_mm512_cvtpd_epi64(i));
        __m256i* o0 = reinterpret_cast<__m256i*>(out + j);
        __m256i* o1 = reinterpret_cast<__m256i*>(out + j + M);
        _mm256_storeu_si256(o0, _mm256_add_epi32(_mm256_loadu_si256(o0), lo));
        _mm256_storeu_si256(o1, _mm256_add_epi32(_mm256_loadu_si256(o1), hi));
      }
      return;
    }
#endif
    for (int j = 0; j < M; ++j) {
      double r = re[j] * tr[j] - im[j] * ti[j];
      double i = re[j] * ti[j] + im[j] * tr[j];
      out[j] += f64_to_torus32(r);
      out[j + M] += f64_to_torus32(i);
    }
  }
  // Inverse transform to rounded int64 (|values| < 2^50); re/im are destroyed.
  void inverse_i64(double* __restrict re, double* __restrict im, int64_t* __restrict out) const {
    dit(re, im);
    const double* __restrict tr = itw_re_.data();
    const double* __restrict ti = itw_im_.data();
    for (int j = 0; j < M; ++j) {
      double r = re[j] * tr[j] - im[j] * ti[j];
      double i = re[j] * ti[j] + im[j] * tr[j];
      out[j] = (int64_t)std::llround(r);
      out[j + M] = (int64_t)std::llround(i);
    }
  }

 private:
  avec<double> tw_re_, tw_im_, itw_re_, itw_im_, st_re_, st_im_, r8_re_, r8_im_;
  bool r8_ = false;
  bool out_small_ = false;

  void dif(double* __restrict re, double* __restrict im) const {
#if defined(WAVIS_TFHE_AVX2)
    if (r8_) {
      dif_radix8_avx2(re, im);
      return;
    }
#endif
#if defined(__AVX512F__)
    if (r8_) {
      dif_radix8(re, im);
      return;
    }
    if (M >= 16) {
      int len = M;
      for (; len >= 32; len >>= 2) dif_radix4_avx512(re, im, len);
      if (len == 16) dif_stage_wide(re, im, 16);
      dif_last3_avx512(re, im);
      return;
    }
#endif
    for (int len = M; len >= 2; len >>= 1) {
      const int h = len >> 1;
      const double* __restrict wr = st_re_.data() + (M - len);
      const double* __restrict wi = st_im_.data() + (M - len);
      if (h >= 8) {
        for (int s = 0; s < M; s += len) {
          double* __restrict ar = re + s;
          double* __restrict ai = im + s;
          double* __restrict br = re + s + h;
          double* __restrict bi = im + s + h;
          for (int j = 0; j < h; ++j) {
            double ur = ar[j], ui = ai[j], vr = br[j], vi = bi[j];
            ar[j] = ur + vr;
            ai[j] = ui + vi;
            double dr = ur - vr, di = ui - vi;
            br[j] = dr * wr[j] - di * wi[j];
            bi[j] = dr * wi[j] + di * wr[j];
          }
        }
      } else if (h == 4) {
        dif_h<4>(re, im, wr, wi);
      } else if (h == 2) {
        dif_h<2>(re, im, wr, wi);
      } else {
        for (int s = 0; s < M; s += 2) {
          double ur = re[s], ui = im[s], vr = re[s + 1], vi = im[s + 1];
          re[s] = ur + vr;
          im[s] = ui + vi;
          re[s + 1] = ur - vr;
          im[s + 1] = ui - vi;
        }
      }
    }
  }

  void dif_stage_wide(double* __restrict re, double* __restrict im, int len) const {
    const int h = len >> 1;
    const double* __restrict wr = st_re_.data() + (M - len);
    const double* __restrict wi = st_im_.data() + (M - len);
    for (int s = 0; s < M; s += len) {
      double* __restrict ar = re + s;
      double* __restrict ai = im + s;
      double* __restrict br = re + s + h;
      double* __restrict bi = im + s + h;
      for (int j = 0; j < h; ++j) {
        double ur = ar[j], ui = ai[j], vr = br[j], vi = bi[j];
        ar[j] = ur + vr;
        ai[j] = ui + vi;
        double dr = ur - vr, di = ui - vi;
        br[j] = dr * wr[j] - di * wi[j];
        bi[j] = dr * wi[j] + di * wr[j];
      }
    }
  }
  void dit_stage_wide(double* __restrict re, double* __restrict im, int len) const {
    const int h = len >> 1;
    const double* __restrict wr = st_re_.data() + (M - len);
    const double* __restrict wi = st_im_.data() + (M - len);
    for (int s = 0; s < M; s += len) {
      double* __restrict ar = re + s;
      double* __restrict ai = im + s;
      double* __restrict br = re + s + h;
      double* __restrict bi = im + s + h;
      for (int j = 0; j < h; ++j) {
        double vr = br[j] * wr[j] + bi[j] * wi[j];
        double vi = bi[j] * wr[j] - br[j] * wi[j];
        double ur = ar[j], ui = ai[j];
        ar[j] = ur + vr;
        ai[j] = ui + vi;
        br[j] = ur - vr;
        bi[j] = ui - vi;
      }
    }
  }
#if defined(__AVX512F__)
  // In-place 8-point DFT (w = exp(-2 pi i / 8)) across 8 complex vectors; natural order out.
  // The inverse DFT is the same call with re and im swapped (swap(z) = i conj(z)).
  static inline void dft8(__m512d* r, __m512d* i) {
    const __m512d h = _mm512_set1_pd(0.70710678118654752440);
    __m512d br[4], bi[4], cr[4], ci[4];
    for (int m = 0; m < 4; ++m) {
      br[m] = _mm512_add_pd(r[m], r[m + 4]);
      bi[m] = _mm512_add_pd(i[m], i[m + 4]);
      cr[m] = _mm512_sub_pd(r[m], r[m + 4]);
      ci[m] = _mm512_sub_pd(i[m], i[m + 4]);
    }
    // c1 *= (1 - i)/sqrt2, c2 *= -i, c3 *= (-1 - i)/sqrt2
    __m512d t;
    t = _mm512_mul_pd(_mm512_add_pd(cr[1], ci[1]), h);
    ci[1] = _mm512_mul_pd(_mm512_sub_pd(ci[1], cr[1]), h);
    cr[1] = t;
    t = ci[2]; ci[2] = _mm512_sub_pd(_mm512_setzero_pd(), cr[2]); cr[2] = t;
    t = _mm512_mul_pd(_mm512_sub_pd(ci[3], cr[3]), h);
    ci[3] = _mm512_mul_pd(_mm512_add_pd(cr[3], ci[3]), _mm512_sub_pd(_mm512_setzero_pd(), h));
    cr[3] = t;
    // two 4-point DFTs: even outputs from b, odd from c
    for (int half = 0; half < 2; ++half) {
      __m512d* dr = half ? cr : br;
      __m512d* di = half ? ci : bi;
      __m512d e0r = _mm512_add_pd(dr[0], dr[2]), e0i = _mm512_add_pd(di[0], di[2]);
      __m512d e1r = _mm512_sub_pd(dr[0], dr[2]), e1i = _mm512_sub_pd(di[0], di[2]);
      __m512d f0r = _mm512_add_pd(dr[1], dr[3]), f0i = _mm512_add_pd(di[1], di[3]);
      // f1 = (d1 - d3) * (-i) = (im, -re)
      __m512d f1r = _mm512_sub_pd(di[1], di[3]), f1i = _mm512_sub_pd(dr[3], dr[1]);
      r[half + 0] = _mm512_add_pd(e0r, f0r); i[half + 0] = _mm512_add_pd(e0i, f0i);
      r[half + 4] = _mm512_sub_pd(e0r, f0r); i[half + 4] = _mm512_sub_pd(e0i, f0i);
      r[half + 2] = _mm512_add_pd(e1r, f1r); i[half + 2] = _mm512_add_pd(e1i, f1i);
      r[half + 6] = _mm512_sub_pd(e1r, f1r); i[half + 6] = _mm512_sub_pd(e1i, f1i);
    }
  }
  static inline void transpose8(__m512d* v) {
    const __m512i ia = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i ib = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    __m512d t[8], u[8];
    for (int m = 0; m < 8; m += 2) {
      t[m] = _mm512_unpacklo_pd(v[m], v[m + 1]);
      t[m + 1] = _mm512_unpackhi_pd(v[m], v[m + 1]);
    }
    for (int m = 0; m < 8; m += 4) {
      u[m + 0] = _mm512_permutex2var_pd(t[m], ia, t[m + 2]);
      u[m + 1] = _mm512_permutex2var_pd(t[m + 1], ia, t[m + 3]);
      u[m + 2] = _mm512_permutex2var_pd(t[m], ib, t[m + 2]);
      u[m + 3] = _mm512_permutex2var_pd(t[m + 1], ib, t[m + 3]);
    }
    for (int m = 0; m < 4; ++m) {
      v[m] = _mm512_shuffle_f64x2(u[m], u[m + 4], 0x44);
      v[m + 4] = _mm512_shuffle_f64x2(u[m], u[m + 4], 0xEE);
    }
  }
  void dif_radix8(double* __restrict re, double* __restrict im) const {
    const double* twr = r8_re_.data();
    const double* twi = r8_im_.data();
    for (int L = M; L >= 64; L /= 8) {
      const int q = L / 8;
      for (int s = 0; s < M; s += L) {
        for (int j = 0; j < q; j += 8) {
          __m512d r[8], i[8];
          for (int m = 0; m < 8; ++m) {
            r[m] = _mm512_load_pd(re + s + j + m * q);
            i[m] = _mm512_load_pd(im + s + j + m * q);
          }
          dft8(r, i);
          _mm512_store_pd(re + s + j, r[0]);
          _mm512_store_pd(im + s + j, i[0]);
          for (int t = 1; t < 8; ++t) {
            __m512d wr = _mm512_loadu_pd(twr + (t - 1) * q + j), wi = _mm512_loadu_pd(twi + (t - 1) * q + j);
            _mm512_store_pd(re + s + j + t * q, _mm512_fmsub_pd(r[t], wr, _mm512_mul_pd(i[t], wi)));
            _mm512_store_pd(im + s + j + t * q, _mm512_fmadd_pd(r[t], wi, _mm512_mul_pd(i[t], wr)));
          }
        }
      }
      twr += 7 * q;
      twi += 7 * q;
    }
    for (int s = 0; s < M; s += 64) {
      __m512d r[8], i[8];
      for (int m = 0; m < 8; ++m) {
        r[m] = _mm512_load_pd(re + s + 8 * m);
        i[m] = _mm512_load_pd(im + s + 8 * m);
      }
      transpose8(r);
      transpose8(i);
      dft8(r, i);
      for (int t = 0; t < 8; ++t) {
        _mm512_store_pd(re + s + 8 * t, r[t]);
        _mm512_store_pd(im + s + 8 * t, i[t]);
      }
    }
  }
  // Exact inverse of dif_radix8 up to the factor M.
  // With `out`, the last pass also applies the inverse twist and adds the rounded result to
  // out (what inverse_add_torus does), saving a pass over the data.
  void dit_radix8(double* __restrict re, double* __restrict im, uint32_t* __restrict out = nullptr) const {
    for (int s = 0; s < M; s += 64) {
      __m512d r[8], i[8];
      for (int t = 0; t < 8; ++t) {
        r[t] = _mm512_load_pd(re + s + 8 * t);
        i[t] = _mm512_load_pd(im + s + 8 * t);
      }
      dft8(i, r);  // inverse DFT
      transpose8(r);
      transpose8(i);
      for (int m = 0; m < 8; ++m) {
        _mm512_store_pd(re + s + 8 * m, r[m]);
        _mm512_store_pd(im + s + 8 * m, i[m]);
      }
    }
    const double* twr = r8_re_.data() + r8_re_.size();
    const double* twi = r8_im_.data() + r8_im_.size();
    for (int L = 64; L <= M; L *= 8) {
      const int q = L / 8;
      twr -= 7 * q;
      twi -= 7 * q;
      for (int s = 0; s < M; s += L) {
        for (int j = 0; j < q; j += 8) {
          __m512d r[8], i[8];
          r[0] = _mm512_load_pd(re + s + j);
          i[0] = _mm512_load_pd(im + s + j);
          for (int t = 1; t < 8; ++t) {
            __m512d xr = _mm512_load_pd(re + s + j + t * q), xi = _mm512_load_pd(im + s + j + t * q);
            __m512d wr = _mm512_loadu_pd(twr + (t - 1) * q + j), wi = _mm512_loadu_pd(twi + (t - 1) * q + j);
            // x * conj(w)
            r[t] = _mm512_fmadd_pd(xr, wr, _mm512_mul_pd(xi, wi));
            i[t] = _mm512_fmsub_pd(xi, wr, _mm512_mul_pd(xr, wi));
          }
          dft8(i, r);
#if defined(__AVX512DQ__)
          if (out && L == M) {
            for (int m = 0; m < 8; ++m) {
              const int e = j + m * q;
              __m512d wr = _mm512_load_pd(itw_re_.data() + e), wi = _mm512_load_pd(itw_im_.data() + e);
              __m512d xr = _mm512_fmsub_pd(r[m], wr, _mm512_mul_pd(i[m], wi));
              __m512d xi = _mm512_fmadd_pd(r[m], wi, _mm512_mul_pd(i[m], wr));
              __m256i lo = _mm512_cvtepi64_epi32(_mm512_cvtpd_epi64(xr));
              __m256i hi = _mm512_cvtepi64_epi32(_mm512_cvtpd_epi64(xi));
              __m256i* o0 = reinterpret_cast<__m256i*>(out + e);
              __m256i* o1 = reinterpret_cast<__m256i*>(out + e + M);
              _mm256_storeu_si256(o0, _mm256_add_epi32(_mm256_loadu_si256(o0), lo));
              _mm256_storeu_si256(o1, _mm256_add_epi32(_mm256_loadu_si256(o1), hi));
            }
            continue;
          }
#endif
          for (int m = 0; m < 8; ++m) {
            _mm512_store_pd(re + s + j + m * q, r[m]);
            _mm512_store_pd(im + s + j + m * q, i[m]);
          }
        }
      }
    }
  }
#endif

#if defined(WAVIS_TFHE_AVX2)
  // The AVX-512 radix-8 kernels on 4-wide vectors. dft8_4s is dft8 with __m256d; the 8x8
  // transposes of the last (first, inverse) pass are four 4x4 transposes through a 64-double
  // scratch block per component (the pass is in place). Same Fourier order as AVX-512.
  // dft8 on __m256d with the same arithmetic, scheduled for 16 registers: ld(m, a, b) gives input m
  // (a: real, b: imaginary part; the inverse passes them swapped), st(t, a, b) takes output t.
  // All eight inputs are read before the first output is written (in-place safe); the odd
  // half (c) waits in a 256-byte stack block while the even half is finished and stored.
  template <class LD, class ST>
  WAVIS_TFHE_INLINE static inline void dft8_4s(LD ld, ST st) {
    const __m256d h = _mm256_set1_pd(0.70710678118654752440);
    const __m256d z = _mm256_setzero_pd();
    alignas(32) double cb[8][4];
    __m256d br[4], bi[4];
    for (int m = 0; m < 4; ++m) {
      __m256d xr, xi, yr, yi;
      ld(m, xr, xi);
      ld(m + 4, yr, yi);
      br[m] = _mm256_add_pd(xr, yr);
      bi[m] = _mm256_add_pd(xi, yi);
      __m256d cr = _mm256_sub_pd(xr, yr), ci = _mm256_sub_pd(xi, yi), t;
      if (m == 1) {
        t = _mm256_mul_pd(_mm256_add_pd(cr, ci), h);
        ci = _mm256_mul_pd(_mm256_sub_pd(ci, cr), h);
        cr = t;
      } else if (m == 2) {
        t = ci; ci = _mm256_sub_pd(z, cr); cr = t;
      } else if (m == 3) {
        t = _mm256_mul_pd(_mm256_sub_pd(ci, cr), h);
        ci = _mm256_mul_pd(_mm256_add_pd(cr, ci), _mm256_sub_pd(z, h));
        cr = t;
      }
      _mm256_store_pd(cb[m], cr);
      _mm256_store_pd(cb[m + 4], ci);
    }
    for (int half = 0; half < 2; ++half) {
      __m256d dr[4], di[4];
      if (half == 0) {
        for (int m = 0; m < 4; ++m) { dr[m] = br[m]; di[m] = bi[m]; }
      } else {
        for (int m = 0; m < 4; ++m) { dr[m] = _mm256_load_pd(cb[m]); di[m] = _mm256_load_pd(cb[m + 4]); }
      }
      __m256d e0r = _mm256_add_pd(dr[0], dr[2]), e0i = _mm256_add_pd(di[0], di[2]);
      __m256d e1r = _mm256_sub_pd(dr[0], dr[2]), e1i = _mm256_sub_pd(di[0], di[2]);
      __m256d f0r = _mm256_add_pd(dr[1], dr[3]), f0i = _mm256_add_pd(di[1], di[3]);
      __m256d f1r = _mm256_sub_pd(di[1], di[3]), f1i = _mm256_sub_pd(dr[3], dr[1]);
      st(half + 0, _mm256_add_pd(e0r, f0r), _mm256_add_pd(e0i, f0i));
      st(half + 4, _mm256_sub_pd(e0r, f0r), _mm256_sub_pd(e0i, f0i));
      st(half + 2, _mm256_add_pd(e1r, f1r), _mm256_add_pd(e1i, f1i));
      st(half + 6, _mm256_sub_pd(e1r, f1r), _mm256_sub_pd(e1i, f1i));
    }
  }
  static inline void transpose4(__m256d& a, __m256d& b, __m256d& c, __m256d& d) {
    __m256d t0 = _mm256_unpacklo_pd(a, b), t1 = _mm256_unpackhi_pd(a, b);
    __m256d t2 = _mm256_unpacklo_pd(c, d), t3 = _mm256_unpackhi_pd(c, d);
    a = _mm256_permute2f128_pd(t0, t2, 0x20);
    b = _mm256_permute2f128_pd(t1, t3, 0x20);
    c = _mm256_permute2f128_pd(t0, t2, 0x31);
    d = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
  // 64-point block x (rows t of 8 at x + 8t) -> tb[8 * col + row] = x[8 * row + col]
  static inline void transpose8_to(const double* __restrict x, double* __restrict tb) {
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 2; ++c) {
        __m256d a0 = _mm256_load_pd(x + 8 * (4 * h + 0) + 4 * c), a1 = _mm256_load_pd(x + 8 * (4 * h + 1) + 4 * c);
        __m256d a2 = _mm256_load_pd(x + 8 * (4 * h + 2) + 4 * c), a3 = _mm256_load_pd(x + 8 * (4 * h + 3) + 4 * c);
        transpose4(a0, a1, a2, a3);
        _mm256_store_pd(tb + 8 * (4 * c + 0) + 4 * h, a0);
        _mm256_store_pd(tb + 8 * (4 * c + 1) + 4 * h, a1);
        _mm256_store_pd(tb + 8 * (4 * c + 2) + 4 * h, a2);
        _mm256_store_pd(tb + 8 * (4 * c + 3) + 4 * h, a3);
      }
  }
  // round(x) mod 2^32 in the low dword of each lane, packed to 4 words
  template <bool kSmall>
  static inline __m128i torus_round4(__m256d x) {
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);  // 1.5 * 2^52
    if (!kSmall) {  // as f64_to_torus32: subtract round(x / 2^32) * 2^32 first (both exact)
      const __m256d inv32 = _mm256_set1_pd(1.0 / 4294967296.0), two32 = _mm256_set1_pd(4294967296.0);
      __m256d q = _mm256_sub_pd(_mm256_fmadd_pd(x, inv32, magic), magic);
      x = _mm256_fnmadd_pd(q, two32, x);
    }
    __m256i y = _mm256_castpd_si256(_mm256_add_pd(x, magic));
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(y, idx));
  }
  // one forward radix-8 pass of span L = 8q (q a compile-time constant when kQ > 0)
  template <int kQ>
  static inline void dif_pass_avx2(double* __restrict re, double* __restrict im, int M, int qr, const double* twr,
                                   const double* twi, StreamPrefetch* pf) {
    const int q = kQ > 0 ? kQ : qr;
    for (int s = 0; s < M; s += 8 * q) {
#pragma GCC unroll 1
      for (int j = 0; j < q; j += 4) {
        if (pf) pf->step();
        double* xr = re + s + j;
        double* xi = im + s + j;
        const double* wr0 = twr + j - q;
        const double* wi0 = twi + j - q;
        dft8_4s(
            [&](int m, __m256d& a, __m256d& b) {
              a = _mm256_load_pd(xr + m * q);
              b = _mm256_load_pd(xi + m * q);
            },
            [&](int t, __m256d a, __m256d b) {
              if (t == 0) {
                _mm256_store_pd(xr, a);
                _mm256_store_pd(xi, b);
                return;
              }
              __m256d wr = _mm256_loadu_pd(wr0 + t * q), wi = _mm256_loadu_pd(wi0 + t * q);
              _mm256_store_pd(xr + t * q, _mm256_fmsub_pd(a, wr, _mm256_mul_pd(b, wi)));
              _mm256_store_pd(xi + t * q, _mm256_fmadd_pd(a, wi, _mm256_mul_pd(b, wr)));
            });
      }
    }
  }
  void dif_radix8_avx2(double* __restrict re, double* __restrict im, StreamPrefetch* pf = nullptr) const {
    dif_radix8_avx2_from(re, im, pf, M);
  }
  // the forward passes L = L0, L0/8, ..., 64, then the last pass
  void dif_radix8_avx2_from(double* __restrict re, double* __restrict im, StreamPrefetch* pf, int L0) const {
    const double* twr = r8_re_.data();
    const double* twi = r8_im_.data();
    for (int L = M; L > L0; L /= 8) {
      twr += 7 * (L / 8);
      twi += 7 * (L / 8);
    }
    for (int L = L0; L >= 64; L /= 8) {
      const int q = L / 8;
      if (q == 64) dif_pass_avx2<64>(re, im, M, q, twr, twi, pf);
      else if (q == 8) dif_pass_avx2<8>(re, im, M, q, twr, twi, pf);
      else dif_pass_avx2<0>(re, im, M, q, twr, twi, pf);
      twr += 7 * q;
      twi += 7 * q;
    }
    alignas(32) double tr[64], ti[64];
    for (int s = 0; s < M; s += 64) {
      transpose8_to(re + s, tr);
      transpose8_to(im + s, ti);
      for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h+3 in the lanes
        if (pf) pf->step();
        const double* ar = tr + 4 * h;
        const double* ai = ti + 4 * h;
        double* xr = re + s + 4 * h;
        double* xi = im + s + 4 * h;
        dft8_4s(
            [&](int m, __m256d& a, __m256d& b) {
              a = _mm256_load_pd(ar + 8 * m);
              b = _mm256_load_pd(ai + 8 * m);
            },
            [&](int t, __m256d a, __m256d b) {
              _mm256_store_pd(xr + 8 * t, a);
              _mm256_store_pd(xi + 8 * t, b);
            });
      }
    }
  }
  // Exact inverse of dif_radix8_avx2 up to the factor M; with `out`, the last pass untwists,
  // rounds and adds into out (inverse_add_torus).
  template <bool kSmall>
  void dit_radix8_avx2(double* __restrict re, double* __restrict im, uint32_t* __restrict out,
                       StreamPrefetch* pf) const {
    alignas(32) double tr[64], ti[64];
    for (int s = 0; s < M; s += 64) {
      for (int h = 0; h < 2; ++h) {
        if (pf) pf->step();
        const double* xr = re + s + 4 * h;
        const double* xi = im + s + 4 * h;
        double* ar = tr + 4 * h;
        double* ai = ti + 4 * h;
        dft8_4s(  // inverse DFT: imaginary parts in the real slot
            [&](int t, __m256d& a, __m256d& b) {
              a = _mm256_load_pd(xi + 8 * t);
              b = _mm256_load_pd(xr + 8 * t);
            },
            [&](int m, __m256d a, __m256d b) {
              _mm256_store_pd(ar + 8 * m, b);
              _mm256_store_pd(ai + 8 * m, a);
            });
      }
      transpose8_to(tr, re + s);
      transpose8_to(ti, im + s);
    }
    const double* twr = r8_re_.data() + r8_re_.size();
    const double* twi = r8_im_.data() + r8_im_.size();
    for (int L = 64; L <= M; L *= 8) {
      const int q = L / 8;
      twr -= 7 * q;
      twi -= 7 * q;
      uint32_t* o = L == M ? out : nullptr;
      if (q == 8) dit_pass_avx2<kSmall, 8>(re, im, q, twr, twi, o, pf);
      else if (q == 64) dit_pass_avx2<kSmall, 64>(re, im, q, twr, twi, o, pf);
      else dit_pass_avx2<kSmall, 0>(re, im, q, twr, twi, o, pf);
    }
  }
  // one inverse radix-8 pass of span 8q (q compile-time when kQ > 0); with `out` (last pass),
  // untwist, round and add into out instead of storing
  template <bool kSmall, int kQ>
  void dit_pass_avx2(double* __restrict re, double* __restrict im, int qr, const double* twr, const double* twi,
                     uint32_t* __restrict out, StreamPrefetch* pf) const {
    const int q = kQ > 0 ? kQ : qr;
    for (int s = 0; s < M; s += 8 * q) {
#pragma GCC unroll 1
      for (int j = 0; j < q; j += 4) {
        if (pf) pf->step();
        double* xr = re + s + j;
        double* xi = im + s + j;
        const double* wr0 = twr + j - q;
        const double* wi0 = twi + j - q;
        // inputs times conj(w); inverse DFT (imaginary parts in the real slot)
        auto ld = [&](int t, __m256d& a, __m256d& b) {
          __m256d vr = _mm256_load_pd(xr + t * q), vi = _mm256_load_pd(xi + t * q);
          if (t == 0) {
            a = vi;
            b = vr;
            return;
          }
          __m256d wr = _mm256_loadu_pd(wr0 + t * q), wi = _mm256_loadu_pd(wi0 + t * q);
          b = _mm256_fmadd_pd(vr, wr, _mm256_mul_pd(vi, wi));
          a = _mm256_fmsub_pd(vi, wr, _mm256_mul_pd(vr, wi));
        };
        if (out) {
          dft8_4s(ld, [&](int m, __m256d a, __m256d b) {
            const int e = j + m * q;
            __m256d wr = _mm256_load_pd(itw_re_.data() + e), wi = _mm256_load_pd(itw_im_.data() + e);
            __m256d yr = _mm256_fmsub_pd(b, wr, _mm256_mul_pd(a, wi));
            __m256d yi = _mm256_fmadd_pd(b, wi, _mm256_mul_pd(a, wr));
            __m128i* o0 = reinterpret_cast<__m128i*>(out + e);
            __m128i* o1 = reinterpret_cast<__m128i*>(out + e + M);
            _mm_storeu_si128(o0, _mm_add_epi32(_mm_loadu_si128(o0), torus_round4<kSmall>(yr)));
            _mm_storeu_si128(o1, _mm_add_epi32(_mm_loadu_si128(o1), torus_round4<kSmall>(yi)));
          });
          continue;
        }
        dft8_4s(ld, [&](int m, __m256d a, __m256d b) {
          _mm256_store_pd(xr + m * q, b);
          _mm256_store_pd(xi + m * q, a);
        });
      }
    }
  }
#endif
#if defined(__AVX512F__)
  // The three radix-2 stages on blocks of 8 (len = 8, 4, 2) inside one register pair.
  // Lane twiddle vectors: stage len=8: lanes 4..7 get w8_j; len=4: lanes 2,3,6,7 get w4_j.
  void dif_last3_avx512(double* __restrict re, double* __restrict im) const {
    const __m512i kSwap4 = _mm512_setr_epi64(4, 5, 6, 7, 0, 1, 2, 3);
    const __m512i kSwap2 = _mm512_setr_epi64(2, 3, 0, 1, 6, 7, 4, 5);
    const __m512i kSwap1 = _mm512_setr_epi64(1, 0, 3, 2, 5, 4, 7, 6);
    const double* w8r = st_re_.data() + (M - 8);
    const double* w8i = st_im_.data() + (M - 8);
    const double* w4r = st_re_.data() + (M - 4);
    const double* w4i = st_im_.data() + (M - 4);
    const __m512d W8r = _mm512_setr_pd(1, 1, 1, 1, w8r[0], w8r[1], w8r[2], w8r[3]);
    const __m512d W8i = _mm512_setr_pd(0, 0, 0, 0, w8i[0], w8i[1], w8i[2], w8i[3]);
    const __m512d W4r = _mm512_setr_pd(1, 1, w4r[0], w4r[1], 1, 1, w4r[0], w4r[1]);
    const __m512d W4i = _mm512_setr_pd(0, 0, w4i[0], w4i[1], 0, 0, w4i[0], w4i[1]);
    for (int s = 0; s < M; s += 8) {
      __m512d R = _mm512_load_pd(re + s), I = _mm512_load_pd(im + s);
      // len 8, h = 4
      __m512d SR = _mm512_permutex2var_pd(R, kSwap4, R), SI = _mm512_permutex2var_pd(I, kSwap4, I);
      R = _mm512_mask_blend_pd(0xF0, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xF0, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      __m512d tR = _mm512_fmsub_pd(R, W8r, _mm512_mul_pd(I, W8i));
      I = _mm512_fmadd_pd(R, W8i, _mm512_mul_pd(I, W8r));
      R = tR;
      // len 4, h = 2
      SR = _mm512_permutex2var_pd(R, kSwap2, R);
      SI = _mm512_permutex2var_pd(I, kSwap2, I);
      R = _mm512_mask_blend_pd(0xCC, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xCC, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      tR = _mm512_fmsub_pd(R, W4r, _mm512_mul_pd(I, W4i));
      I = _mm512_fmadd_pd(R, W4i, _mm512_mul_pd(I, W4r));
      R = tR;
      // len 2, h = 1 (twiddle 1)
      SR = _mm512_permutex2var_pd(R, kSwap1, R);
      SI = _mm512_permutex2var_pd(I, kSwap1, I);
      R = _mm512_mask_blend_pd(0xAA, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xAA, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      _mm512_store_pd(re + s, R);
      _mm512_store_pd(im + s, I);
    }
  }

  // Two fused radix-2 DIF stages (len L and L/2), q = L/4 >= 8.
  void dif_radix4_avx512(double* __restrict re, double* __restrict im, int L) const {
    const int q = L >> 2;
    const double* wLr = st_re_.data() + (M - L);
    const double* wLi = st_im_.data() + (M - L);
    const double* w2r = st_re_.data() + (M - L / 2);
    const double* w2i = st_im_.data() + (M - L / 2);
    for (int s = 0; s < M; s += L) {
      double* r0 = re + s; double* i0 = im + s;
      for (int j = 0; j < q; j += 8) {
        __m512d x0r = _mm512_load_pd(r0 + j), x0i = _mm512_load_pd(i0 + j);
        __m512d x1r = _mm512_load_pd(r0 + j + q), x1i = _mm512_load_pd(i0 + j + q);
        __m512d x2r = _mm512_load_pd(r0 + j + 2 * q), x2i = _mm512_load_pd(i0 + j + 2 * q);
        __m512d x3r = _mm512_load_pd(r0 + j + 3 * q), x3i = _mm512_load_pd(i0 + j + 3 * q);
        __m512d wa_r = _mm512_loadu_pd(wLr + j), wa_i = _mm512_loadu_pd(wLi + j);
        __m512d wb_r = _mm512_loadu_pd(wLr + j + q), wb_i = _mm512_loadu_pd(wLi + j + q);
        __m512d wc_r = _mm512_loadu_pd(w2r + j), wc_i = _mm512_loadu_pd(w2i + j);
        __m512d y0r = _mm512_add_pd(x0r, x2r), y0i = _mm512_add_pd(x0i, x2i);
        __m512d dr = _mm512_sub_pd(x0r, x2r), di = _mm512_sub_pd(x0i, x2i);
        __m512d y2r = _mm512_fmsub_pd(dr, wa_r, _mm512_mul_pd(di, wa_i));
        __m512d y2i = _mm512_fmadd_pd(dr, wa_i, _mm512_mul_pd(di, wa_r));
        __m512d y1r = _mm512_add_pd(x1r, x3r), y1i = _mm512_add_pd(x1i, x3i);
        dr = _mm512_sub_pd(x1r, x3r); di = _mm512_sub_pd(x1i, x3i);
        __m512d y3r = _mm512_fmsub_pd(dr, wb_r, _mm512_mul_pd(di, wb_i));
        __m512d y3i = _mm512_fmadd_pd(dr, wb_i, _mm512_mul_pd(di, wb_r));
        _mm512_store_pd(r0 + j, _mm512_add_pd(y0r, y1r));
        _mm512_store_pd(i0 + j, _mm512_add_pd(y0i, y1i));
        dr = _mm512_sub_pd(y0r, y1r); di = _mm512_sub_pd(y0i, y1i);
        _mm512_store_pd(r0 + j + q, _mm512_fmsub_pd(dr, wc_r, _mm512_mul_pd(di, wc_i)));
        _mm512_store_pd(i0 + j + q, _mm512_fmadd_pd(dr, wc_i, _mm512_mul_pd(di, wc_r)));
        _mm512_store_pd(r0 + j + 2 * q, _mm512_add_pd(y2r, y3r));
        _mm512_store_pd(i0 + j + 2 * q, _mm512_add_pd(y2i, y3i));
        dr = _mm512_sub_pd(y2r, y3r); di = _mm512_sub_pd(y2i, y3i);
        _mm512_store_pd(r0 + j + 3 * q, _mm512_fmsub_pd(dr, wc_r, _mm512_mul_pd(di, wc_i)));
        _mm512_store_pd(i0 + j + 3 * q, _mm512_fmadd_pd(dr, wc_i, _mm512_mul_pd(di, wc_r)));
      }
    }
  }
  // Inverse of dif_radix4_avx512 up to the factor 4 (stages len L/2 then L, conjugate twiddles).
  void dit_radix4_avx512(double* __restrict re, double* __restrict im, int L) const {
    const int q = L >> 2;
    const double* wLr = st_re_.data() + (M - L);
    const double* wLi = st_im_.data() + (M - L);
    const double* w2r = st_re_.data() + (M - L / 2);
    const double* w2i = st_im_.data() + (M - L / 2);
    for (int s = 0; s < M; s += L) {
      double* r0 = re + s; double* i0 = im + s;
      for (int j = 0; j < q; j += 8) {
        __m512d x0r = _mm512_load_pd(r0 + j), x0i = _mm512_load_pd(i0 + j);
        __m512d x1r = _mm512_load_pd(r0 + j + q), x1i = _mm512_load_pd(i0 + j + q);
        __m512d x2r = _mm512_load_pd(r0 + j + 2 * q), x2i = _mm512_load_pd(i0 + j + 2 * q);
        __m512d x3r = _mm512_load_pd(r0 + j + 3 * q), x3i = _mm512_load_pd(i0 + j + 3 * q);
        __m512d wa_r = _mm512_loadu_pd(wLr + j), wa_i = _mm512_loadu_pd(wLi + j);
        __m512d wb_r = _mm512_loadu_pd(wLr + j + q), wb_i = _mm512_loadu_pd(wLi + j + q);
        __m512d wc_r = _mm512_loadu_pd(w2r + j), wc_i = _mm512_loadu_pd(w2i + j);
        // v = x * conj(w): (xr*wr + xi*wi, xi*wr - xr*wi)
        __m512d vr = _mm512_fmadd_pd(x1r, wc_r, _mm512_mul_pd(x1i, wc_i));
        __m512d vi = _mm512_fmsub_pd(x1i, wc_r, _mm512_mul_pd(x1r, wc_i));
        __m512d y0r = _mm512_add_pd(x0r, vr), y0i = _mm512_add_pd(x0i, vi);
        __m512d y1r = _mm512_sub_pd(x0r, vr), y1i = _mm512_sub_pd(x0i, vi);
        vr = _mm512_fmadd_pd(x3r, wc_r, _mm512_mul_pd(x3i, wc_i));
        vi = _mm512_fmsub_pd(x3i, wc_r, _mm512_mul_pd(x3r, wc_i));
        __m512d y2r = _mm512_add_pd(x2r, vr), y2i = _mm512_add_pd(x2i, vi);
        __m512d y3r = _mm512_sub_pd(x2r, vr), y3i = _mm512_sub_pd(x2i, vi);
        vr = _mm512_fmadd_pd(y2r, wa_r, _mm512_mul_pd(y2i, wa_i));
        vi = _mm512_fmsub_pd(y2i, wa_r, _mm512_mul_pd(y2r, wa_i));
        _mm512_store_pd(r0 + j, _mm512_add_pd(y0r, vr));
        _mm512_store_pd(i0 + j, _mm512_add_pd(y0i, vi));
        _mm512_store_pd(r0 + j + 2 * q, _mm512_sub_pd(y0r, vr));
        _mm512_store_pd(i0 + j + 2 * q, _mm512_sub_pd(y0i, vi));
        vr = _mm512_fmadd_pd(y3r, wb_r, _mm512_mul_pd(y3i, wb_i));
        vi = _mm512_fmsub_pd(y3i, wb_r, _mm512_mul_pd(y3r, wb_i));
        _mm512_store_pd(r0 + j + q, _mm512_add_pd(y1r, vr));
        _mm512_store_pd(i0 + j + q, _mm512_add_pd(y1i, vi));
        _mm512_store_pd(r0 + j + 3 * q, _mm512_sub_pd(y1r, vr));
        _mm512_store_pd(i0 + j + 3 * q, _mm512_sub_pd(y1i, vi));
      }
    }
  }
  void dit_first3_avx512(double* __restrict re, double* __restrict im) const {
    const __m512i kSwap4 = _mm512_setr_epi64(4, 5, 6, 7, 0, 1, 2, 3);
    const __m512i kSwap2 = _mm512_setr_epi64(2, 3, 0, 1, 6, 7, 4, 5);
    const __m512i kSwap1 = _mm512_setr_epi64(1, 0, 3, 2, 5, 4, 7, 6);
    const double* w8r = st_re_.data() + (M - 8);
    const double* w8i = st_im_.data() + (M - 8);
    const double* w4r = st_re_.data() + (M - 4);
    const double* w4i = st_im_.data() + (M - 4);
    // conjugate twiddles
    const __m512d W8r = _mm512_setr_pd(1, 1, 1, 1, w8r[0], w8r[1], w8r[2], w8r[3]);
    const __m512d W8i = _mm512_setr_pd(0, 0, 0, 0, -w8i[0], -w8i[1], -w8i[2], -w8i[3]);
    const __m512d W4r = _mm512_setr_pd(1, 1, w4r[0], w4r[1], 1, 1, w4r[0], w4r[1]);
    const __m512d W4i = _mm512_setr_pd(0, 0, -w4i[0], -w4i[1], 0, 0, -w4i[0], -w4i[1]);
    for (int s = 0; s < M; s += 8) {
      __m512d R = _mm512_load_pd(re + s), I = _mm512_load_pd(im + s);
      // len 2
      __m512d SR = _mm512_permutex2var_pd(R, kSwap1, R), SI = _mm512_permutex2var_pd(I, kSwap1, I);
      R = _mm512_mask_blend_pd(0xAA, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xAA, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      // len 4: v *= conj(w) on lanes 2,3,6,7 then butterfly
      __m512d tR = _mm512_fmsub_pd(R, W4r, _mm512_mul_pd(I, W4i));
      I = _mm512_fmadd_pd(R, W4i, _mm512_mul_pd(I, W4r));
      R = tR;
      SR = _mm512_permutex2var_pd(R, kSwap2, R);
      SI = _mm512_permutex2var_pd(I, kSwap2, I);
      R = _mm512_mask_blend_pd(0xCC, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xCC, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      // len 8
      tR = _mm512_fmsub_pd(R, W8r, _mm512_mul_pd(I, W8i));
      I = _mm512_fmadd_pd(R, W8i, _mm512_mul_pd(I, W8r));
      R = tR;
      SR = _mm512_permutex2var_pd(R, kSwap4, R);
      SI = _mm512_permutex2var_pd(I, kSwap4, I);
      R = _mm512_mask_blend_pd(0xF0, _mm512_add_pd(R, SR), _mm512_sub_pd(SR, R));
      I = _mm512_mask_blend_pd(0xF0, _mm512_add_pd(I, SI), _mm512_sub_pd(SI, I));
      _mm512_store_pd(re + s, R);
      _mm512_store_pd(im + s, I);
    }
  }
#endif
  template <int H>
  void dif_h(double* __restrict re, double* __restrict im, const double* __restrict wr,
             const double* __restrict wi) const {
    for (int s = 0; s < M; s += 2 * H) {
      for (int j = 0; j < H; ++j) {
        double ur = re[s + j], ui = im[s + j], vr = re[s + H + j], vi = im[s + H + j];
        re[s + j] = ur + vr;
        im[s + j] = ui + vi;
        double dr = ur - vr, di = ui - vi;
        re[s + H + j] = dr * wr[j] - di * wi[j];
        im[s + H + j] = dr * wi[j] + di * wr[j];
      }
    }
  }
  void dit(double* __restrict re, double* __restrict im) const {
#if defined(WAVIS_TFHE_AVX2)
    if (r8_) {
      dit_radix8_avx2<false>(re, im, nullptr, nullptr);
      return;
    }
#endif
#if defined(__AVX512F__)
    if (r8_) {
      dit_radix8(re, im);
      return;
    }
    if (M >= 16) {
      dit_first3_avx512(re, im);
      int stages = __builtin_ctz((unsigned)M) - 3;  // remaining radix-2 stages (len 16 .. M)
      int len = 32;  // dit_radix4_avx512(L) does the stages L/2 and L
      if (stages & 1) { dit_stage_wide(re, im, 16); len = 64; }
      for (; len <= M; len <<= 2) dit_radix4_avx512(re, im, len);
      return;
    }
#endif
    // len = 2: twiddle 1
    for (int s = 0; s < M; s += 2) {
      double ur = re[s], ui = im[s], vr = re[s + 1], vi = im[s + 1];
      re[s] = ur + vr;
      im[s] = ui + vi;
      re[s + 1] = ur - vr;
      im[s + 1] = ui - vi;
    }
    for (int len = 4; len <= M; len <<= 1) {
      const int h = len >> 1;
      const double* __restrict wr = st_re_.data() + (M - len);
      const double* __restrict wi = st_im_.data() + (M - len);
      if (h >= 8) {
        for (int s = 0; s < M; s += len) {
          double* __restrict ar = re + s;
          double* __restrict ai = im + s;
          double* __restrict br = re + s + h;
          double* __restrict bi = im + s + h;
          for (int j = 0; j < h; ++j) {
            // v = b * conj(w)
            double vr = br[j] * wr[j] + bi[j] * wi[j];
            double vi = bi[j] * wr[j] - br[j] * wi[j];
            double ur = ar[j], ui = ai[j];
            ar[j] = ur + vr;
            ai[j] = ui + vi;
            br[j] = ur - vr;
            bi[j] = ui - vi;
          }
        }
      } else if (h == 4) {
        dit_h<4>(re, im, wr, wi);
      } else {
        dit_h<2>(re, im, wr, wi);
      }
    }
  }
  template <int H>
  void dit_h(double* __restrict re, double* __restrict im, const double* __restrict wr,
             const double* __restrict wi) const {
    for (int s = 0; s < M; s += 2 * H) {
      for (int j = 0; j < H; ++j) {
        double br = re[s + H + j], bi = im[s + H + j];
        double vr = br * wr[j] + bi * wi[j];
        double vi = bi * wr[j] - br * wi[j];
        double ur = re[s + j], ui = im[s + j];
        re[s + j] = ur + vr;
        im[s + j] = ui + vi;
        re[s + H + j] = ur - vr;
        im[s + H + j] = ui - vi;
      }
    }
  }
};

}  // namespace WAVIS_TFHE_ISA
}  // namespace tfhe
}  // namespace wavis
