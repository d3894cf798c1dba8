// wavis._core._mulmod_rate: the modular-multiply throughput of a SIMD path, for the benchmark
// harness's hardware bound (wavis/bench/hwbound.py). It runs the multiply the NTT uses — Shoup's
// x·w mod q in [0, 2q) with a precomputed companion of w (Harvey, "Faster arithmetic for
// number-theoretic transforms", J. Symb. Comp. 2014, §2) — on data held in registers, in 12
// independent chains so that the multiplier's throughput, not its latency, is measured:
//   ifma     52-bit IFMA (vpmadd52lo/hi), as the IFMA NTT kernel (q < 2^50)
//   avx512   64-bit lanes from 32x32 products (simd512.hpp shoup_lazy8), as the AVX-512 kernels
//   avx2     4 lanes from 32x32 products (simd256.hpp shoup_lazy4), as the AVX2 kernels
//   portable scalar 64x64→128 Shoup, as the scalar kernels
#include <ctime>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "registry.hpp"
#include "wavis/arith.hpp"
#include "wavis/simd.hpp"
#include "wavis/simd256.hpp"
#include "wavis/simd512.hpp"

namespace py = pybind11;
using wavis::u64;

namespace {

constexpr int kChains = 12;

// CPU seconds of this thread: a rate per second of CPU actually granted (a shared host's other
// load does not lower it)
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

u64 shoup_companion(u64 w, u64 q, int shift) { return (u64)(((wavis::u128)w << shift) / q); }

double scalar_rate(u64 q, u64 iters) {
  const u64 w = q / 3 + 7, wp = shoup_companion(w, q, 64);
  u64 x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = (q / (c + 2)) | 1;
  const double t0 = thread_seconds();
  for (u64 i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) {
      u64 qh = wavis::mulhi64(x[c], wp);
      x[c] = x[c] * w - qh * q;  // in [0, 2q)
    }
    asm volatile("" : "+m"(x));
  }
  const double s = thread_seconds() - t0;
  volatile u64 sink = 0;
  for (int c = 0; c < kChains; ++c) sink = sink + x[c];
  return (double)iters * kChains / s;
}

#if defined(WAVIS_HAVE_SIMD256)
WAVIS_AVX2 double avx2_rate(u64 q, u64 iters) {
  const u64 w = q / 3 + 7, wp = shoup_companion(w, q, 64);
  const wavis::simd2::Shoup4 S = wavis::simd2::shoup4(w, wp);
  const __m256i Q = _mm256_set1_epi64x((long long)q), QH = _mm256_set1_epi64x((long long)(q >> 32));
  __m256i x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = _mm256_set1_epi64x((long long)((q / (c + 2)) | 1));
  const double t0 = thread_seconds();
  for (u64 i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) x[c] = wavis::simd2::shoup_lazy4(x[c], S, Q, QH);
  }
  const double s = thread_seconds() - t0;
  __m256i acc = x[0];
  for (int c = 1; c < kChains; ++c) acc = _mm256_xor_si256(acc, x[c]);
  alignas(32) long long out[4];
  _mm256_store_si256((__m256i*)out, acc);
  volatile long long sink = out[0] + out[1] + out[2] + out[3];
  (void)sink;
  return (double)iters * kChains * 4 / s;
}
#endif

#if defined(WAVIS_HAVE_SIMD512)
WAVIS_AVX512 double avx512_rate(u64 q, u64 iters) {
  const u64 w = q / 3 + 7, wp = shoup_companion(w, q, 64);
  const __m512i W = _mm512_set1_epi64((long long)w), WP = _mm512_set1_epi64((long long)wp),
                WPH = _mm512_set1_epi64((long long)(wp >> 32)), Q = _mm512_set1_epi64((long long)q);
  __m512i x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = _mm512_set1_epi64((long long)((q / (c + 2)) | 1));
  const double t0 = thread_seconds();
  for (u64 i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) x[c] = wavis::simd::shoup_lazy8(x[c], W, WP, WPH, Q);
  }
  const double s = thread_seconds() - t0;
  __m512i acc = x[0];
  for (int c = 1; c < kChains; ++c) acc = _mm512_xor_si512(acc, x[c]);
  volatile long long sink = _mm512_reduce_add_epi64(acc);
  (void)sink;
  return (double)iters * kChains * 8 / s;
}

__attribute__((target("avx512f,avx512dq,avx512ifma"))) double ifma_rate(u64 q, u64 iters) {
  const u64 w = q / 3 + 7, wp = shoup_companion(w, q, 52);
  const __m512i W = _mm512_set1_epi64((long long)w), WP = _mm512_set1_epi64((long long)wp),
                Q = _mm512_set1_epi64((long long)q), M = _mm512_set1_epi64((1LL << 52) - 1),
                z = _mm512_setzero_si512();
  __m512i x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = _mm512_set1_epi64((long long)((q / (c + 2)) | 1));
  const double t0 = thread_seconds();
  for (u64 i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) {
      __m512i qh = _mm512_madd52hi_epu64(z, x[c], WP);
      __m512i r = _mm512_sub_epi64(_mm512_madd52lo_epu64(z, x[c], W), _mm512_madd52lo_epu64(z, qh, Q));
      x[c] = _mm512_and_si512(r, M);
    }
  }
  const double s = thread_seconds() - t0;
  __m512i acc = x[0];
  for (int c = 1; c < kChains; ++c) acc = _mm512_xor_si512(acc, x[c]);
  volatile long long sink = _mm512_reduce_add_epi64(acc);
  (void)sink;
  return (double)iters * kChains * 8 / s;
}
#endif

double mulmod_rate(const std::string& path, u64 q, u64 iters) {
  wavis::SimdPath p = wavis::parse_simd_path(path);
  if (!wavis::cpu_supports(p)) throw std::invalid_argument("this CPU lacks the " + path + " path");
#if defined(WAVIS_HAVE_SIMD512)
  if (p == wavis::SimdPath::ifma) {
    if (q >= (1ULL << 50)) throw std::invalid_argument("the IFMA multiply needs q < 2^50");
    return ifma_rate(q, iters);
  }
  if (p == wavis::SimdPath::avx512) return avx512_rate(q, iters);
#endif
#if defined(WAVIS_HAVE_SIMD256)
  if (p == wavis::SimdPath::avx2) return avx2_rate(q, iters);
#endif
  return scalar_rate(q, iters);
}

void bind_bench(py::module_& m) {
  m.def("_mulmod_rate", [](const std::string& path, u64 q, u64 iters) {
        try {
          py::gil_scoped_release nogil;
          return mulmod_rate(path, q, iters);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      }, py::arg("path"), py::arg("q"), py::arg("iters") = 2000000,
      "Modular multiplies per second (one thread) of the NTT's lazy Shoup multiply on SIMD path\n"
      "`path` ('ifma' needs q < 2^50; 'portable' runs the scalar multiply), data in\n"
      "registers, 12 independent chains, per second of this thread's CPU time: a throughput, for the\n"
      "benchmark harness's bound.\n"
      "ValueError for a path this CPU lacks.");
}
}  // namespace

WAVIS_REGISTER_BINDINGS(90, bind_bench);
