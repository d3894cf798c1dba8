// In-process A/B of two versions of the AVX-512/IFMA NTT kernel file (csrc/src/ntt_simd.inc), IFMA
// instantiation, no Python: both are compiled into one binary and timed alternately, 25 rounds,
// best round kept (a shared host only ever adds time). Timing only: the prime is 2^bits - 1 and the
// twiddles random (the values are not an NTT; tests/test_simd_paths.py checks those).
//
//   git show fdd7ce1:csrc/src/ntt_simd.inc > /tmp/ntt_a.inc; cp csrc/src/ntt_simd.inc /tmp/ntt_b.inc
//   g++ -O3 -std=c++17 -DKA='"/tmp/ntt_a.inc"' -DKB='"/tmp/ntt_b.inc"' -DA_SUB_MULW
//     benchmarks/ntt_kernel_ab.cpp -o /tmp/ntt_kernel_ab  &&  /tmp/ntt_kernel_ab 49
//
// -DA_SUB_MULW: A uses the Shoup product of ntt.cpp before issue 21's change (x·w − qh·q as a
// subtraction of two low products); else both use today's (accumulated, one IFMA less on the path).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

using u64 = std::uint64_t;
using u128 = unsigned __int128;
#define WAVIS_NTT_NAME(x) x##_ifma
#define WAVIS_NTT_ATTR __attribute__((target("avx512f,avx512dq,avx512ifma")))
#define WAVIS_NTT_LANE_BITS 52
#define MULW_ACC                                                                                   \
  const __m512i z = _mm512_setzero_si512();                                                        \
  __m512i qh = _mm512_madd52hi_epu64(z, x, wp);                                                    \
  __m512i r = _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(z, x, w), qh, _mm512_sub_epi64(z, Q));   \
  return _mm512_and_si512(r, _mm512_set1_epi64((1LL << 52) - 1));
#define MULW_SUB                                                                                   \
  const __m512i z = _mm512_setzero_si512();                                                        \
  __m512i qh = _mm512_madd52hi_epu64(z, x, wp);                                                    \
  __m512i r = _mm512_sub_epi64(_mm512_madd52lo_epu64(z, x, w), _mm512_madd52lo_epu64(z, qh, Q));   \
  return _mm512_and_si512(r, _mm512_set1_epi64((1LL << 52) - 1));
namespace va {
#ifdef A_SUB_MULW
#define WAVIS_NTT_MULW MULW_SUB
#else
#define WAVIS_NTT_MULW MULW_ACC
#endif
#include KA
#undef WAVIS_NTT_MULW
}  // namespace va
namespace vb {
#define WAVIS_NTT_MULW MULW_ACC
#include KB
#undef WAVIS_NTT_MULW
}  // namespace vb

static double now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char** argv) {
  const int bits = argc > 1 ? atoi(argv[1]) : 49;
  for (int logn : {12, 14, 16}) {
    const std::size_t N = (std::size_t)1 << logn;
    const u64 q = ((u64)1 << bits) - 1;
    std::mt19937_64 g(1);
    std::vector<u64> W(N), Wp(N), a(N);
    for (auto& w : W) w = g() % q;
    for (std::size_t i = 0; i < N; ++i) Wp[i] = (u64)(((u128)W[i] << 52) / q);
    for (auto& x : a) x = g() % q;
    double t[4] = {1e9, 1e9, 1e9, 1e9};
    const int reps = (1 << 22) / N;
    for (int r = 0; r < 25; ++r) {
      double s = now();
      for (int i = 0; i < reps; ++i) va::ntt_fwd_ifma(a.data(), W.data(), Wp.data(), q, N, a.data());
      t[0] = std::min(t[0], (now() - s) / reps);
      s = now();
      for (int i = 0; i < reps; ++i) vb::ntt_fwd_ifma(a.data(), W.data(), Wp.data(), q, N, a.data());
      t[1] = std::min(t[1], (now() - s) / reps);
      s = now();
      for (int i = 0; i < reps; ++i)
        va::ntt_inv_ifma(a.data(), W.data(), Wp.data(), q, N, W[5], Wp[5], W[7], Wp[7], a.data());
      t[2] = std::min(t[2], (now() - s) / reps);
      s = now();
      for (int i = 0; i < reps; ++i)
        vb::ntt_inv_ifma(a.data(), W.data(), Wp.data(), q, N, W[5], Wp[5], W[7], Wp[7], a.data());
      t[3] = std::min(t[3], (now() - s) / reps);
    }
    std::printf("N=2^%d %d-bit  fwd A %.2f B %.2f us (B/A %.3f)  inv A %.2f B %.2f us (B/A %.3f)\n", logn, bits,
                t[0] * 1e6, t[1] * 1e6, t[1] / t[0], t[2] * 1e6, t[3] * 1e6, t[3] / t[2]);
  }
}
