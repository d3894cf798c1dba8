// TFHE gate bootstrapping on the 32-bit discrete torus (Z/2^32), CPU core.
//
// Chillotti, Gama, Georgieva, Izabachène, "TFHE: Fast Fully Homomorphic Encryption over the
// Torus", J. Cryptology 33 (2020): LWE/GLWE/GGSW ciphertexts, gate bootstrapping = blind
// rotation by CMUX external products (§4.3, Alg. 3), sample extraction, LWE key switching
// (§4.1, Alg. 1/2), bit encoding ±1/8 and the gate linear combinations of §5.
//
// Conventions
//  * Torus elements are uint32 (x represents x / 2^32); phase(c) = b - <a, s>.
//  * LWE ciphertext under the small key: n + 1 words (a_0..a_{n-1}, b).
//  * GLWE: k mask polynomials then the body, each N words; the "big" LWE key obtained by
//    sample extraction is the concatenation of the k GLWE key polynomials (kN bits).
//  * GGSW of a bit m: (k+1) * l GLWE rows; row (c, p) (c = component, p = 1..l) has phase
//    -m * S_c / B^p (c < k) or m / B^p (c = k). The message is put in the *body* (for c < k as
//    -m*S_c/B^p), so every mask is uniform and can be regenerated from a public seed: the server
//    key travels as seed + bodies (TFHE-rs "seeded" GGSW), half the size.
//  * Bootstrapping key in the Fourier domain: for each LWE key bit i and row r, the FFT of each
//    of the k+1 polynomials, split re/im arrays of N/2 doubles.
//  * Key-switching key: for each big-key coefficient i < kN and level p = 1..t, an LWE
//    encryption (dim n) of S_i / B_ks^p; switching multiplies rows by signed digits.
//  * Balanced signed gadget decompositions with rounding, digits in [-B/2, B/2], mean 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <mutex>
#include <exception>
#include <thread>
#include <vector>

#include "wavis/threads.hpp"
#include "wavis/tfhe/api.hpp"
#include "wavis/tfhe/fft.hpp"
#include "wavis/tfhe/prng.hpp"

// Compiled once per SIMD path (src/tfhe/kernels.cpp): WAVIS_TFHE_ISA names the copy's namespace.
#ifndef WAVIS_TFHE_ISA
#define WAVIS_TFHE_ISA isa_portable
#endif

namespace wavis {
namespace tfhe {
namespace WAVIS_TFHE_ISA {

inline uint32_t gaussian_torus(StreamPrng& rng, double std_dev) {
  return f64_to_torus32(rng.normal() * std_dev * 4294967296.0);
}

// out = X^a * in (negacyclic), a in [0, 2N)
inline void poly_rotate(const uint32_t* __restrict in, uint32_t* __restrict out, int N, int a) {
  if (a < N) {
    for (int j = 0; j < a; ++j) out[j] = 0u - in[j - a + N];
    for (int j = a; j < N; ++j) out[j] = in[j - a];
  } else {
    a -= N;
    for (int j = 0; j < a; ++j) out[j] = in[j - a + N];
    for (int j = a; j < N; ++j) out[j] = 0u - in[j - a];
  }
}
// out = X^a * in - in
inline void poly_rotate_sub(const uint32_t* __restrict in, uint32_t* __restrict out, int N, int a) {
  if (a < N) {
    for (int j = 0; j < a; ++j) out[j] = 0u - in[j - a + N] - in[j];
    for (int j = a; j < N; ++j) out[j] = in[j - a] - in[j];
  } else {
    a -= N;
    for (int j = 0; j < a; ++j) out[j] = in[j - a + N] - in[j];
    for (int j = a; j < N; ++j) out[j] = 0u - in[j - a] - in[j];
  }
}

// Balanced signed gadget decomposition with rounding: x ~ sum_{p=1..l} d_p * 2^(32 - p*base_log),
// d_p in [-B/2, B/2]. The value is first rounded to its top l*base_log bits; digits are then
// taken from the least significant level up, a digit > B/2 (or = B/2 when the next bit up is 1)
// becoming d - B with a carry. The tie rule makes the digits symmetric (mean 0), so the key
// noise they multiply adds no bias (the plain offset trick gives digits of mean -1/2, i.e. a
// fixed key-dependent offset -1/2 * sum(e) on every result).
struct Decomposer {
  int bg, l;
  uint32_t mask, half, round_bit;
  int shift;  // 32 - l*bg
  Decomposer(int base_log, int levels) : bg(base_log), l(levels) {
    mask = (base_log >= 32) ? 0xFFFFFFFFu : ((1u << base_log) - 1u);
    half = 1u << (base_log - 1);
    shift = 32 - bg * l;
    round_bit = shift > 0 ? (1u << (shift - 1)) : 0u;
  }
  inline uint32_t top(uint32_t x) const { return shift > 0 ? ((x + round_bit) >> shift) : x; }
  // digits of one value, d[0] = level 1 (most significant) .. d[l-1] = level l
  inline void digits(uint32_t x, int32_t* d) const {
    uint32_t v = top(x);
    for (int p = l - 1; p >= 0; --p) {
      uint32_t u = v & mask;
      v >>= bg;
      uint32_t c = (u > half) | ((u == half) & (v & 1u));
      d[p] = (int32_t)u - (int32_t)(c << bg);
      v += c;
    }
  }
};

// Exact negacyclic product (mod 2^32) of a torus polynomial with a binary polynomial whose
// Fourier transform is given, through two exact FFT products (16-bit split of a).
class ExactBinaryMul {
 public:
  ExactBinaryMul(const NegacyclicFFT& fft) : fft_(fft), M(fft.M), N(fft.N) {
    lo_.resize(N); hi_.resize(N); re_.resize(M); im_.resize(M); re2_.resize(M); im2_.resize(M); out_.resize(N);
  }
  // acc += a * key   (key_re/key_im: FFT of the 0/1 key polynomial)
  void mul_add(const uint32_t* a, const double* key_re, const double* key_im, uint32_t* acc) {
    for (int j = 0; j < N; ++j) {
      lo_[j] = (int32_t)(a[j] & 0xFFFFu);
      hi_[j] = ((int32_t)a[j]) >> 16;
    }
    for (int half = 0; half < 2; ++half) {
      fft_.forward_i32(half ? hi_.data() : lo_.data(), re_.data(), im_.data());
      for (int j = 0; j < M; ++j) {
        double r = re_[j] * key_re[j] - im_[j] * key_im[j];
        double i = re_[j] * key_im[j] + im_[j] * key_re[j];
        re2_[j] = r; im2_[j] = i;
      }
      fft_.inverse_i64(re2_.data(), im2_.data(), out_.data());
      int sh = half ? 16 : 0;
      for (int j = 0; j < N; ++j) acc[j] += (uint32_t)((uint64_t)out_[j] << sh);
    }
  }
 private:
  const NegacyclicFFT& fft_;
  int M, N;
  ivec<int32_t> lo_, hi_;
  avec<double> re_, im_, re2_, im2_;
  ivec<int64_t> out_;
};

// ---------------------------------------------------------------------------------------
// Client side: key generation and encryption.

// Mask order shared by keygen and ServerKey expansion: for i < n, for row r < (k+1)l, for
// c < k: N words; then for i < kN, for p < t: n words. One ChaCha20 stream keyed by mask_seed.
inline void keygen(const Params& P, const uint8_t* seed32, KeygenResult& out) {
  P.validate();
  const int n = P.n, k = P.k, N = P.N, l = P.l, t = P.t, KN = k * N;
  StreamPrng rng(seed32);
  rng.fill_bytes(out.mask_seed, 32);
  out.size_for(P);  // (portable code: the shared vectors are never resized here)
  for (int i = 0; i < n; ++i) out.lwe_key[i] = (uint8_t)(rng.next_u32() & 1u);
  for (int i = 0; i < KN; ++i) out.glwe_key[i] = (uint8_t)(rng.next_u32() & 1u);
  StreamPrng mrng(out.mask_seed);

  NegacyclicFFT fft(N);
  const int M = N / 2;
  avec<double> key_re((size_t)k * M), key_im((size_t)k * M);
  {
    ivec<int32_t> tmp(N);
    for (int c = 0; c < k; ++c) {
      for (int j = 0; j < N; ++j) tmp[j] = out.glwe_key[c * N + j];
      fft.forward_i32(tmp.data(), key_re.data() + c * M, key_im.data() + c * M);
    }
  }
  ExactBinaryMul mul(fft);
  const int rows = (k + 1) * l;
  ivec<uint32_t> mask(N);
  for (int i = 0; i < n; ++i) {
    const uint32_t m = out.lwe_key[i];
    for (int c = 0; c <= k; ++c) {
      for (int p = 1; p <= l; ++p) {
        uint32_t* body = out.bsk_bodies.data() + ((size_t)i * rows + (size_t)c * l + (p - 1)) * N;
        for (int j = 0; j < N; ++j) body[j] = gaussian_torus(rng, P.glwe_std);
        for (int cc = 0; cc < k; ++cc) {
          mrng.fill_u32(mask.data(), N);
          mul.mul_add(mask.data(), key_re.data() + cc * M, key_im.data() + cc * M, body);
        }
        if (m) {
          const uint32_t g = 1u << (32 - p * P.bg);
          if (c < k) {
            for (int j = 0; j < N; ++j) body[j] -= out.glwe_key[c * N + j] ? g : 0u;
          } else {
            body[0] += g;
          }
        }
      }
    }
  }
  ivec<uint32_t> a(n);
  for (int i = 0; i < KN; ++i) {
    for (int p = 1; p <= t; ++p) {
      mrng.fill_u32(a.data(), n);
      uint32_t b = 0;
      for (int j = 0; j < n; ++j) b += out.lwe_key[j] ? a[j] : 0u;
      b += gaussian_torus(rng, P.lwe_std);
      if (out.glwe_key[i]) b += 1u << (32 - p * P.bks);
      out.ksk_bodies[(size_t)i * t + (p - 1)] = b;
    }
  }
}

// Encrypt torus messages mus[m] under the LWE key: out[m][n+1].
inline void lwe_encrypt(const Params& P, const uint8_t* lwe_key, const uint32_t* mus, size_t m,
                        const uint8_t* seed32, uint32_t* out) {
  StreamPrng rng(seed32);
  const int n = P.n;
  for (size_t c = 0; c < m; ++c) {
    uint32_t* ct = out + c * (n + 1);
    rng.fill_u32(ct, n);
    uint32_t b = 0;
    for (int j = 0; j < n; ++j) b += lwe_key[j] ? ct[j] : 0u;
    ct[n] = b + gaussian_torus(rng, P.lwe_std) + mus[c];
  }
}

inline void lwe_phase(int n, const uint8_t* lwe_key, const uint32_t* cts, size_t m, uint32_t* out) {
  for (size_t c = 0; c < m; ++c) {
    const uint32_t* ct = cts + c * (n + 1);
    uint32_t s = 0;
    for (int j = 0; j < n; ++j) s += lwe_key[j] ? ct[j] : 0u;
    out[c] = ct[n] - s;
  }
}

// ---------------------------------------------------------------------------------------
// Server side.

// The gates themselves (table, linear combinations, the MUX sum) live in wavis/tfhe/gates.py;
// this core provides the batched primitives they are built from: bootstrap (blind rotation with
// the test vector mu·(1 + X + ... + X^{N-1}), optionally followed by sample extraction) and key
// switching.

class ServerKeyCore {
 public:
  Params P;
  NegacyclicFFT fft;
  int M, rows, lwe_size, big_size;
  avec<double> bsk;            // [n][rows][k+1][2][M]
  ivec<uint32_t> ksk;   // [kN][t][n+1]
  static constexpr int kGroup = 16;  // ciphertexts processed in lockstep per thread
  bool fused_first_ = false;         // AVX2, N = 1024: decomposition fused into the first FFT pass
  int pf_per_ = 0;                   // AVX2: lines prefetched per kernel loop step (0: slices)

  ServerKeyCore(const Params& p, const uint8_t* mask_seed, const uint32_t* bsk_bodies,
                const uint32_t* ksk_bodies)
      : P(p), fft((p.validate(), p.N)) {
    const int n = P.n, k = P.k, N = P.N, l = P.l, t = P.t, KN = k * N;
    M = N / 2;
    rows = (k + 1) * l;
    lwe_size = n + 1;
    big_size = KN + 1;
    // |external product coefficient| <= rows * N * B/2 * 2^31 (digits times int32 key words)
    fft.set_output_bound_log2(std::log2((double)rows * N) + (P.bg - 1) + 31);
#if defined(WAVIS_TFHE_AVX2)
    {
      // prefetch steps per CMUX (see cmux_rotate) and lines per step to cover one GGSW
      const int fs = fft.prefetch_steps();
      const bool kernels = fs > 0 && M % 8 == 0 && P.bg <= 30 && (k == 1 || k == 2);
      long steps = (long)(k + 1) * (M / 8) + (long)(rows + k + 1) * fs + M / 4;
      const long lines = (long)rows * (k + 1) * 2 * M * 8 / 64;
      fused_first_ = kernels && M == 512 && (l == 2 || l == 3);
      // fused first pass: per component 8 * (1 + 2l) steps instead of M/8 for the
      // decomposition and M/32 per row for the first FFT pass
      if (fused_first_) steps += (long)(k + 1) * 8 * (1 + 2 * l) - (long)(k + 1) * (M / 8) - (long)rows * (M / 32);
      pf_per_ = kernels ? (int)((lines + steps - 1) / steps) : 0;
    }
#endif
    StreamPrng mrng(mask_seed);
    const size_t ggsw_doubles = (size_t)rows * (k + 1) * 2 * M;
    bsk.assign((size_t)n * ggsw_doubles, 0.0);
    ivec<uint32_t> poly(N);
    avec<double> fre(M), fim(M);
    for (int i = 0; i < n; ++i) {
      double* g = bsk.data() + (size_t)i * ggsw_doubles;
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c <= k; ++c) {
          const uint32_t* src = poly.data();
          if (c < k) mrng.fill_u32(poly.data(), N);
          else src = bsk_bodies + ((size_t)i * rows + r) * N;
          fft.forward_torus(src, fre.data(), fim.data());
          for (int j = 0; j < M; ++j) {
            double* d = g + bsk_offset(j >> 3, c, r) + (j & 7);
            d[0] = fre[j];
            d[8] = fim[j];
          }
        }
      }
    }
    ksk.assign((size_t)KN * t * (n + 1), 0u);
    for (int i = 0; i < KN; ++i) {
      for (int p = 0; p < t; ++p) {
        uint32_t* row = ksk.data() + ((size_t)i * t + p) * (n + 1);
        mrng.fill_u32(row, n);
        row[n] = ksk_bodies[(size_t)i * t + p];
      }
    }
  }

  // Fourier-domain GGSW layout, interleaved so that the external product reads one GGSW as a
  // single sequential stream: blocks of 8 Fourier points; in each block, for every output
  // component oc, every row r (= input component c * l + level p): 8 re then 8 im doubles.
  inline size_t bsk_offset(int block, int oc, int r) const {
    return (((size_t)block * (P.k + 1) + oc) * rows + r) * 16;
  }

  size_t memory_bytes() const { return bsk.size() * sizeof(double) + ksk.size() * sizeof(uint32_t); }

  struct Work {
    ivec<uint32_t> diff;
    ivec<int32_t> dig;
    avec<double> fre, fim, are, aim;
    ivec<uint32_t> accs;
    Work(const ServerKeyCore& s) {
      const int k = s.P.k, N = s.P.N, M = s.M;
      diff.resize((size_t)(k + 1) * N);
      dig.resize((size_t)s.rows * N);
      fre.resize((size_t)s.rows * M);
      fim.resize((size_t)s.rows * M);
      are.resize((size_t)(k + 1) * M);
      aim.resize((size_t)(k + 1) * M);
      accs.resize((size_t)kGroup * (k + 1) * N);
    }
  };

  // Balanced gadget decomposition of the k+1 polynomials in w.diff, folded and twisted for
  // the FFT: row r = c*l + p gets c_j = (d_j + i d_{j+N/2}) zeta^j in w.fre/w.fim.
  void decompose_twist(Work& w, StreamPrefetch* pf = nullptr) const {
    const int k = P.k, N = P.N, l = P.l;
    const Decomposer dec(P.bg, P.l);
    const double* __restrict tr = fft.twist_re();
    const double* __restrict ti = fft.twist_im();
#if defined(__AVX512F__)
    if (M % 16 == 0 && l <= 16) {
      const __m512i rb = _mm512_set1_epi32((int)dec.round_bit), msk = _mm512_set1_epi32((int)dec.mask);
      const __m512i half = _mm512_set1_epi32((int)dec.half), B = _mm512_set1_epi32((int)(1u << dec.bg));
      const __m512i one = _mm512_set1_epi32(1);
      const __m128i sh = _mm_cvtsi32_si128(dec.shift), bgc = _mm_cvtsi32_si128(dec.bg);
      for (int c = 0; c <= k; ++c) {
        const uint32_t* v = w.diff.data() + (size_t)c * N;
        for (int j = 0; j < M; j += 16) {
          __m512i X = _mm512_loadu_si512(v + j), Y = _mm512_loadu_si512(v + j + M);
          if (dec.shift > 0) {
            X = _mm512_srl_epi32(_mm512_add_epi32(X, rb), sh);
            Y = _mm512_srl_epi32(_mm512_add_epi32(Y, rb), sh);
          }
          const __m512d t0r = _mm512_load_pd(tr + j), t1r = _mm512_load_pd(tr + j + 8);
          const __m512d t0i = _mm512_load_pd(ti + j), t1i = _mm512_load_pd(ti + j + 8);
          for (int p = l - 1; p >= 0; --p) {
            __m512i dx, dy;
            {
              __m512i u = _mm512_and_si512(X, msk), rest = _mm512_srl_epi32(X, bgc);
              __mmask16 cy = _mm512_cmpgt_epu32_mask(u, half) |
                             (_mm512_cmpeq_epu32_mask(u, half) & _mm512_test_epi32_mask(rest, one));
              dx = _mm512_mask_sub_epi32(u, cy, u, B);
              X = _mm512_mask_add_epi32(rest, cy, rest, one);
            }
            {
              __m512i u = _mm512_and_si512(Y, msk), rest = _mm512_srl_epi32(Y, bgc);
              __mmask16 cy = _mm512_cmpgt_epu32_mask(u, half) |
                             (_mm512_cmpeq_epu32_mask(u, half) & _mm512_test_epi32_mask(rest, one));
              dy = _mm512_mask_sub_epi32(u, cy, u, B);
              Y = _mm512_mask_add_epi32(rest, cy, rest, one);
            }
            double* fr = w.fre.data() + (size_t)(c * l + p) * M + j;
            double* fi = w.fim.data() + (size_t)(c * l + p) * M + j;
            __m512d xr = _mm512_cvtepi32_pd(_mm512_castsi512_si256(dx));
            __m512d xi = _mm512_cvtepi32_pd(_mm512_castsi512_si256(dy));
            _mm512_store_pd(fr, _mm512_fmsub_pd(xr, t0r, _mm512_mul_pd(xi, t0i)));
            _mm512_store_pd(fi, _mm512_fmadd_pd(xr, t0i, _mm512_mul_pd(xi, t0r)));
            xr = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(dx, 1));
            xi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(dy, 1));
            _mm512_store_pd(fr + 8, _mm512_fmsub_pd(xr, t1r, _mm512_mul_pd(xi, t1i)));
            _mm512_store_pd(fi + 8, _mm512_fmadd_pd(xr, t1i, _mm512_mul_pd(xi, t1r)));
          }
        }
      }
      return;
    }
#elif defined(WAVIS_TFHE_AVX2)
    if (M % 8 == 0 && P.bg <= 30) {
      // the AVX-512 code on 8 lanes: digits < 2^30, so signed compares do; carry masks are
      // all-ones lanes (rest - mask = rest + 1). The carry rule u > B/2 or (u = B/2 and the
      // next bit is 1) is one compare: u + (rest & 1) > B/2.
      const __m256i rb = _mm256_set1_epi32((int)dec.round_bit), msk = _mm256_set1_epi32((int)dec.mask);
      const __m256i half = _mm256_set1_epi32((int)dec.half), B = _mm256_set1_epi32((int)(1u << dec.bg));
      const __m256i one = _mm256_set1_epi32(1);
      const __m128i sh = _mm_cvtsi32_si128(dec.shift), bgc = _mm_cvtsi32_si128(dec.bg);
      for (int c = 0; c <= k; ++c) {
        const uint32_t* v = w.diff.data() + (size_t)c * N;
        for (int j = 0; j < M; j += 8) {
          if (pf) pf->step();
          __m256i X = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j));
          __m256i Y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j + M));
          if (dec.shift > 0) {
            X = _mm256_srl_epi32(_mm256_add_epi32(X, rb), sh);
            Y = _mm256_srl_epi32(_mm256_add_epi32(Y, rb), sh);
          }
          const __m256d t0r = _mm256_load_pd(tr + j), t1r = _mm256_load_pd(tr + j + 4);
          const __m256d t0i = _mm256_load_pd(ti + j), t1i = _mm256_load_pd(ti + j + 4);
          for (int p = l - 1; p >= 0; --p) {
            __m256i dx, dy;
            {
              __m256i u = _mm256_and_si256(X, msk), rest = _mm256_srl_epi32(X, bgc);
              __m256i cy = _mm256_cmpgt_epi32(_mm256_add_epi32(u, _mm256_and_si256(rest, one)), half);
              dx = _mm256_sub_epi32(u, _mm256_and_si256(cy, B));
              X = _mm256_sub_epi32(rest, cy);
            }
            {
              __m256i u = _mm256_and_si256(Y, msk), rest = _mm256_srl_epi32(Y, bgc);
              __m256i cy = _mm256_cmpgt_epi32(_mm256_add_epi32(u, _mm256_and_si256(rest, one)), half);
              dy = _mm256_sub_epi32(u, _mm256_and_si256(cy, B));
              Y = _mm256_sub_epi32(rest, cy);
            }
            double* fr = w.fre.data() + (size_t)(c * l + p) * M + j;
            double* fi = w.fim.data() + (size_t)(c * l + p) * M + j;
            __m256d xr = _mm256_cvtepi32_pd(_mm256_castsi256_si128(dx));
            __m256d xi = _mm256_cvtepi32_pd(_mm256_castsi256_si128(dy));
            _mm256_store_pd(fr, _mm256_fmsub_pd(xr, t0r, _mm256_mul_pd(xi, t0i)));
            _mm256_store_pd(fi, _mm256_fmadd_pd(xr, t0i, _mm256_mul_pd(xi, t0r)));
            xr = _mm256_cvtepi32_pd(_mm256_extracti128_si256(dx, 1));
            xi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(dy, 1));
            _mm256_store_pd(fr + 4, _mm256_fmsub_pd(xr, t1r, _mm256_mul_pd(xi, t1i)));
            _mm256_store_pd(fi + 4, _mm256_fmadd_pd(xr, t1i, _mm256_mul_pd(xi, t1r)));
          }
        }
      }
      return;
    }
#endif
    for (int c = 0; c <= k; ++c) {
      uint32_t* __restrict v = w.diff.data() + (size_t)c * N;  // rounded top bits, consumed in place
      int32_t* d0 = w.dig.data() + (size_t)c * l * N;
      const int sh = dec.shift;
      const uint32_t rbit = dec.round_bit, msk = dec.mask, half = dec.half;
      const int bg = dec.bg;
      if (sh > 0)
        for (int j = 0; j < N; ++j) v[j] = (v[j] + rbit) >> sh;
      for (int p = l - 1; p >= 0; --p) {
        int32_t* __restrict dp = d0 + (size_t)p * N;
        for (int j = 0; j < N; ++j) {
          uint32_t u = v[j] & msk;
          uint32_t rest = v[j] >> bg;
          uint32_t cy = (uint32_t)(u > half) | ((uint32_t)(u == half) & (rest & 1u));
          dp[j] = (int32_t)u - (int32_t)(cy << bg);
          v[j] = rest + cy;
        }
      }
    }
    for (int r = 0; r < rows; ++r) {
      const int32_t* d = w.dig.data() + (size_t)r * N;
      double* fr = w.fre.data() + (size_t)r * M;
      double* fi = w.fim.data() + (size_t)r * M;
      for (int j = 0; j < M; ++j) {
        double xr = (double)d[j], xi = (double)d[j + M];
        fr[j] = xr * tr[j] - xi * ti[j];
        fi[j] = xr * ti[j] + xi * tr[j];
      }
    }
  }

#if defined(WAVIS_TFHE_AVX2)
  // N = 1024 (M = 512, first-pass stride 64), L levels: decompose_twist fused into the first
  // radix-8 pass of every digit polynomial. Per 8 positions j..j+7 the digits of the 8 points
  // j + 64 m (all levels) are computed once into a small stack block, then each level is
  // converted, twisted, sent through the 8-point DFT and its twiddles and stored: the twisted
  // input never goes to memory. Same values as decompose_twist + the first pass.
  template <int L>
  void decompose_first_pass_avx2(Work& w, StreamPrefetch* pf) const {
    constexpr int q = 64, MM = 512;
    const int k = P.k, N = P.N;
    const Decomposer dec(P.bg, L);
    const double* __restrict tr = fft.twist_re();
    const double* __restrict ti = fft.twist_im();
    const double* __restrict wr0 = fft.first_twiddle_re() - q;
    const double* __restrict wi0 = fft.first_twiddle_im() - q;
    const __m256i rb = _mm256_set1_epi32((int)dec.round_bit), msk = _mm256_set1_epi32((int)dec.mask);
    const __m256i half = _mm256_set1_epi32((int)dec.half), B = _mm256_set1_epi32((int)(1u << dec.bg));
    const __m256i one = _mm256_set1_epi32(1);
    const __m128i sh = _mm_cvtsi32_si128(dec.shift), bgc = _mm_cvtsi32_si128(dec.bg);
    alignas(32) int32_t dg[L][2][8][8];  // [level][x/y][m][lane]
    for (int c = 0; c <= k; ++c) {
      const uint32_t* v = w.diff.data() + (size_t)c * N;
#pragma GCC unroll 1
      for (int j = 0; j < q; j += 8) {
        if (pf) pf->step();
#pragma GCC unroll 1
        for (int m = 0; m < 8; ++m) {
          __m256i X = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j + q * m));
          __m256i Y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j + q * m + MM));
          if (dec.shift > 0) {
            X = _mm256_srl_epi32(_mm256_add_epi32(X, rb), sh);
            Y = _mm256_srl_epi32(_mm256_add_epi32(Y, rb), sh);
          }
          for (int p = L - 1; p >= 0; --p) {
            __m256i u = _mm256_and_si256(X, msk), rest = _mm256_srl_epi32(X, bgc);
            __m256i cy = _mm256_cmpgt_epi32(_mm256_add_epi32(u, _mm256_and_si256(rest, one)), half);
            _mm256_store_si256(reinterpret_cast<__m256i*>(dg[p][0][m]), _mm256_sub_epi32(u, _mm256_and_si256(cy, B)));
            X = _mm256_sub_epi32(rest, cy);
            u = _mm256_and_si256(Y, msk);
            rest = _mm256_srl_epi32(Y, bgc);
            cy = _mm256_cmpgt_epi32(_mm256_add_epi32(u, _mm256_and_si256(rest, one)), half);
            _mm256_store_si256(reinterpret_cast<__m256i*>(dg[p][1][m]), _mm256_sub_epi32(u, _mm256_and_si256(cy, B)));
            Y = _mm256_sub_epi32(rest, cy);
          }
        }
#pragma GCC unroll 1
        for (int pp = 0; pp < 2 * L; ++pp) {  // (level, half of the 8 positions)
          if (pf) pf->step();
          const int p = pp >> 1, hh = (pp & 1) * 4, j0 = j + hh;
          double* re = w.fre.data() + (size_t)(c * L + p) * MM;
          double* im = w.fim.data() + (size_t)(c * L + p) * MM;
          NegacyclicFFT::dft8(
              [&](int m, __m256d& a, __m256d& b) {
                const int e = j0 + q * m;
                __m256d xr = _mm256_cvtepi32_pd(_mm_load_si128(reinterpret_cast<const __m128i*>(dg[p][0][m] + hh)));
                __m256d xi = _mm256_cvtepi32_pd(_mm_load_si128(reinterpret_cast<const __m128i*>(dg[p][1][m] + hh)));
                const __m256d twr = _mm256_load_pd(tr + e), twi = _mm256_load_pd(ti + e);
                a = _mm256_fmsub_pd(xr, twr, _mm256_mul_pd(xi, twi));
                b = _mm256_fmadd_pd(xr, twi, _mm256_mul_pd(xi, twr));
              },
              [&](int t, __m256d a, __m256d b) {
                if (t == 0) {
                  _mm256_store_pd(re + j0, a);
                  _mm256_store_pd(im + j0, b);
                  return;
                }
                __m256d wr = _mm256_loadu_pd(wr0 + t * q + j0), wi = _mm256_loadu_pd(wi0 + t * q + j0);
                _mm256_store_pd(re + j0 + t * q, _mm256_fmsub_pd(a, wr, _mm256_mul_pd(b, wi)));
                _mm256_store_pd(im + j0 + t * q, _mm256_fmadd_pd(a, wi, _mm256_mul_pd(b, wr)));
              });
        }
      }
    }
  }
#endif

  // acc <- acc + GGSW ⊡ (X^a acc - acc)
  // `next` (may be null): the GGSW the following CMUX will read; it is prefetched into L2 in
  // slices between the FFTs, so a single bootstrap's key stream overlaps with computation.
  void cmux_rotate(uint32_t* acc, int a, const double* ggsw, Work& w, const double* next = nullptr) const {
    const int k = P.k, N = P.N;
    const size_t ggsw_bytes = (size_t)rows * (k + 1) * 2 * M * sizeof(double);
#if defined(WAVIS_TFHE_AVX2)
    if (pf_per_ > 0) {
      // the next GGSW is prefetched a few lines per loop iteration of every kernel below
      StreamPrefetch pf;
      if (next) {
        pf.p = reinterpret_cast<const char*>(next);
        pf.e = pf.p + ggsw_bytes;
        pf.per = pf_per_;
      }
      StreamPrefetch* q = next ? &pf : nullptr;
      for (int c = 0; c <= k; ++c) poly_rotate_sub(acc + (size_t)c * N, w.diff.data() + (size_t)c * N, N, a);
      if (fused_first_ && P.l == 2) {
        decompose_first_pass_avx2<2>(w, q);
        for (int r = 0; r < rows; ++r) fft.forward_after_first(w.fre.data() + (size_t)r * M, w.fim.data() + (size_t)r * M, q);
      } else if (fused_first_ && P.l == 3) {
        decompose_first_pass_avx2<3>(w, q);
        for (int r = 0; r < rows; ++r) fft.forward_after_first(w.fre.data() + (size_t)r * M, w.fim.data() + (size_t)r * M, q);
      } else {
        decompose_twist(w, q);
        for (int r = 0; r < rows; ++r) fft.forward_twisted(w.fre.data() + (size_t)r * M, w.fim.data() + (size_t)r * M, q);
      }
      mac(ggsw, w, q);
      for (int oc = 0; oc <= k; ++oc)
        fft.inverse_add_torus(w.are.data() + (size_t)oc * M, w.aim.data() + (size_t)oc * M, acc + (size_t)oc * N, q);
      pf.finish();
      return;
    }
#endif
    const int slices = rows + k + 2;
    const size_t slice = ((ggsw_bytes + slices - 1) / slices + 63) & ~(size_t)63;
    int sl = 0;
    auto prefetch_slice = [&]() {
      if (!next || sl >= slices) return;
      const char* p = reinterpret_cast<const char*>(next) + (size_t)sl * slice;
      const char* e = reinterpret_cast<const char*>(next) + std::min(ggsw_bytes, (size_t)(sl + 1) * slice);
      for (; p < e; p += 64) __builtin_prefetch(p, 0, 2);
      ++sl;
    };
    for (int c = 0; c <= k; ++c) poly_rotate_sub(acc + (size_t)c * N, w.diff.data() + (size_t)c * N, N, a);
    prefetch_slice();
    decompose_twist(w);
    for (int r = 0; r < rows; ++r) {
      prefetch_slice();
      fft.forward_twisted(w.fre.data() + (size_t)r * M, w.fim.data() + (size_t)r * M);
    }
    mac(ggsw, w);
    for (int oc = 0; oc <= k; ++oc) {
      prefetch_slice();
      fft.inverse_add_torus(w.are.data() + (size_t)oc * M, w.aim.data() + (size_t)oc * M, acc + (size_t)oc * N);
    }
  }

  void mac(const double* ggsw, Work& w, StreamPrefetch* pf = nullptr) const {
    const int k = P.k;
#if defined(WAVIS_TFHE_AVX2)
    if (k == 1) { mac_avx2<2>(ggsw, w, pf); return; }
    if (k == 2) { mac_avx2<3>(ggsw, w, pf); return; }
#endif
    // Fourier-domain multiply-accumulate over all rows, blocks of 8 points (two blocks at a
    // time with split accumulators, so the FMA chains stay short)
    const int nb = M / 8;
    const double* __restrict fre = w.fre.data();
    const double* __restrict fim = w.fim.data();
    for (int oc = 0; oc <= k; ++oc) {
      double* __restrict ore = w.are.data() + (size_t)oc * M;
      double* __restrict oim = w.aim.data() + (size_t)oc * M;
      int b = 0;
#if defined(__AVX512F__)
      for (; b + 2 <= nb; b += 2) {
        const double* kb0 = ggsw + bsk_offset(b, oc, 0);
        const double* kb1 = ggsw + bsk_offset(b + 1, oc, 0);
        __m512d R0 = _mm512_setzero_pd(), R1 = R0, I0 = R0, I1 = R0, S0 = R0, S1 = R0, J0 = R0, J1 = R0;
        for (int r = 0; r < rows; ++r) {
          const double* xr = fre + (size_t)r * M + 8 * b;
          const double* xi = fim + (size_t)r * M + 8 * b;
          __m512d ar = _mm512_load_pd(xr), ai = _mm512_load_pd(xi);
          __m512d cr = _mm512_load_pd(xr + 8), ci = _mm512_load_pd(xi + 8);
          __m512d br = _mm512_load_pd(kb0 + 16 * r), bi = _mm512_load_pd(kb0 + 16 * r + 8);
          __m512d dr = _mm512_load_pd(kb1 + 16 * r), di = _mm512_load_pd(kb1 + 16 * r + 8);
          R0 = _mm512_fmadd_pd(ar, br, R0);
          S0 = _mm512_fnmadd_pd(ai, bi, S0);
          I0 = _mm512_fmadd_pd(ar, bi, I0);
          J0 = _mm512_fmadd_pd(ai, br, J0);
          R1 = _mm512_fmadd_pd(cr, dr, R1);
          S1 = _mm512_fnmadd_pd(ci, di, S1);
          I1 = _mm512_fmadd_pd(cr, di, I1);
          J1 = _mm512_fmadd_pd(ci, dr, J1);
        }
        _mm512_store_pd(ore + 8 * b, _mm512_add_pd(R0, S0));
        _mm512_store_pd(oim + 8 * b, _mm512_add_pd(I0, J0));
        _mm512_store_pd(ore + 8 * b + 8, _mm512_add_pd(R1, S1));
        _mm512_store_pd(oim + 8 * b + 8, _mm512_add_pd(I1, J1));
      }
#endif
      for (; b < nb; ++b) {
        const double* kb = ggsw + bsk_offset(b, oc, 0);
        double R[8] = {0}, I[8] = {0};
        for (int r = 0; r < rows; ++r) {
          const double* kk = kb + (size_t)r * 16;
          const double* xr = fre + (size_t)r * M + 8 * b;
          const double* xi = fim + (size_t)r * M + 8 * b;
          for (int q = 0; q < 8; ++q) {
            R[q] += xr[q] * kk[q] - xi[q] * kk[8 + q];
            I[q] += xr[q] * kk[8 + q] + xi[q] * kk[q];
          }
        }
        for (int q = 0; q < 8; ++q) {
          ore[8 * b + q] = R[q];
          oim[8 * b + q] = I[q];
        }
      }
    }
  }

#if defined(WAVIS_TFHE_AVX2)
  // mac() on 4-lane half blocks with all KC = k+1 output components at once, so each input
  // vector is loaded once (the AVX-512 loop reloads the inputs per component; with 16 ymm
  // registers and a 32 KB L1 the loads were the limit). Same per-lane sums in the same order
  // as the generic code: R + S and I + J with R, I, J accumulated by FMA over the rows.
  template <int KC>
  void mac_avx2(const double* ggsw, Work& w, StreamPrefetch* pf) const {
    const int nb = M / 8;
    const double* __restrict fre = w.fre.data();
    const double* __restrict fim = w.fim.data();
    for (int b = 0; b < nb; ++b) {
      for (int h = 0; h < 2; ++h) {
        if (pf) pf->step();
        __m256d R[KC], S[KC], I[KC], J[KC];
        for (int oc = 0; oc < KC; ++oc) R[oc] = S[oc] = I[oc] = J[oc] = _mm256_setzero_pd();
        const double* kb = ggsw + bsk_offset(b, 0, 0) + 4 * h;
        for (int r = 0; r < rows; ++r) {
          const __m256d ar = _mm256_load_pd(fre + (size_t)r * M + 8 * b + 4 * h);
          const __m256d ai = _mm256_load_pd(fim + (size_t)r * M + 8 * b + 4 * h);
          for (int oc = 0; oc < KC; ++oc) {
            const double* kk = kb + ((size_t)oc * rows + r) * 16;
            const __m256d br = _mm256_load_pd(kk), bi = _mm256_load_pd(kk + 8);
            R[oc] = _mm256_fmadd_pd(ar, br, R[oc]);
            S[oc] = _mm256_fnmadd_pd(ai, bi, S[oc]);
            I[oc] = _mm256_fmadd_pd(ar, bi, I[oc]);
            J[oc] = _mm256_fmadd_pd(ai, br, J[oc]);
          }
        }
        for (int oc = 0; oc < KC; ++oc) {
          _mm256_store_pd(w.are.data() + (size_t)oc * M + 8 * b + 4 * h, _mm256_add_pd(R[oc], S[oc]));
          _mm256_store_pd(w.aim.data() + (size_t)oc * M + 8 * b + 4 * h, _mm256_add_pd(I[oc], J[oc]));
        }
      }
    }
  }
#endif

  inline int mod_switch(uint32_t x) const {
    const int log2n = __builtin_ctz((unsigned)(2 * P.N));
    return (int)(((x >> (31 - log2n)) + 1u) >> 1) & (2 * P.N - 1);
  }

  // Bootstrap G LWE ciphertexts (small key): blind rotation of the test vector mu·sum X^j, then
  // (extract) sample extraction to big-key LWE ciphertexts (kN+1 words) encrypting ±mu, or
  // (!extract) the GLWE accumulators themselves ((k+1)·N words).
  void bootstrap_group(const uint32_t* const* in, int G, uint32_t* const* out, Work& w, uint32_t mu,
                       bool extract) const {
    const int n = P.n, k = P.k, N = P.N, twoN = 2 * N;
    const size_t accsz = (size_t)(k + 1) * N;
    const size_t ggsw_stride = (size_t)rows * (k + 1) * 2 * M;
    for (int g = 0; g < G; ++g) {
      uint32_t* acc = w.accs.data() + g * accsz;
      std::fill(acc, acc + (size_t)k * N, 0u);
      int bb = mod_switch(in[g][n]);
      int rot = (twoN - bb) % twoN;  // X^{-b} * testv, testv = mu * sum X^j
      uint32_t* body = acc + (size_t)k * N;
      if (rot < N) {
        for (int j = 0; j < rot; ++j) body[j] = 0u - mu;
        for (int j = rot; j < N; ++j) body[j] = mu;
      } else {
        rot -= N;
        for (int j = 0; j < rot; ++j) body[j] = mu;
        for (int j = rot; j < N; ++j) body[j] = 0u - mu;
      }
    }
    for (int i = 0; i < n; ++i) {
      const double* ggsw = bsk.data() + (size_t)i * ggsw_stride;
      const double* next = i + 1 < n ? ggsw + ggsw_stride : nullptr;
      bool fetched = false;
      for (int g = 0; g < G; ++g) {
        int a = mod_switch(in[g][i]);
        if (a) {
          cmux_rotate(w.accs.data() + g * accsz, a, ggsw, w, fetched ? nullptr : next);
          fetched = true;
        }
      }
    }
    if (!extract) {
      for (int g = 0; g < G; ++g) std::memcpy(out[g], w.accs.data() + g * accsz, accsz * sizeof(uint32_t));
      return;
    }
    // sample extraction (coefficient 0)
    for (int g = 0; g < G; ++g) {
      const uint32_t* acc = w.accs.data() + g * accsz;
      uint32_t* o = out[g];
      for (int c = 0; c < k; ++c) {
        const uint32_t* a = acc + (size_t)c * N;
        o[c * N] = a[0];
        for (int j = 1; j < N; ++j) o[c * N + j] = 0u - a[N - j];
      }
      o[k * N] = acc[(size_t)k * N];
    }
  }

  // Key-switch G big-key LWE ciphertexts (kN+1) to small-key ones (n+1).
  void keyswitch_group(const uint32_t* const* in, int G, uint32_t* const* out) const {
    const int n = P.n, KN = P.k * P.N, t = P.t;
    const Decomposer dec(P.bks, P.t);
    for (int g = 0; g < G; ++g) {
      std::fill(out[g], out[g] + n, 0u);
      out[g][n] = in[g][KN];
    }
    int32_t digs[kGroup][32];
    for (int i = 0; i < KN; ++i) {
      for (int g = 0; g < G; ++g) dec.digits(in[g][i], digs[g]);
      for (int p = 0; p < t; ++p) {
        const uint32_t* __restrict row = ksk.data() + ((size_t)i * t + p) * (n + 1);
        for (int g = 0; g < G; ++g) {
          const uint32_t d = (uint32_t)digs[g][p];
          if (!d) continue;
          uint32_t* __restrict o = out[g];
          for (int j = 0; j <= n; ++j) o[j] -= d * row[j];
        }
      }
    }
  }

  // Batched bootstrap of J small-key LWE ciphertexts lwe[J][n+1]: out[J][kN+1] (extract) or the GLWE
  // accumulators out[J][k+1][N] (!extract). Split over threads in lockstep groups of kGroup.
  void bootstrap(const uint32_t* lwe, size_t J, uint32_t mu, bool extract, uint32_t* out, int threads) const {
    const size_t L = (size_t)lwe_size;
    const size_t osz = extract ? (size_t)big_size : (size_t)(P.k + 1) * P.N;
    parallel_chunks(J, threads, [&](size_t b0, size_t e0) {
      Work w(*this);
      const uint32_t* ins[kGroup];
      uint32_t* outs[kGroup];
      for (size_t s = b0; s < e0; s += kGroup) {
        int G = (int)std::min<size_t>(kGroup, e0 - s);
        for (int g = 0; g < G; ++g) {
          ins[g] = lwe + (s + g) * L;
          outs[g] = out + (s + g) * osz;
        }
        bootstrap_group(ins, G, outs, w, mu, extract);
      }
    });
  }

  // Batched key switching of J big-key LWE ciphertexts big[J][kN+1] to out[J][n+1].
  void key_switch(const uint32_t* big, size_t J, uint32_t* out, int threads) const {
    const size_t L = (size_t)lwe_size;
    parallel_chunks(J, threads, [&](size_t b0, size_t e0) {
      const uint32_t* ins[kGroup];
      uint32_t* outs[kGroup];
      for (size_t s = b0; s < e0; s += kGroup) {
        int G = (int)std::min<size_t>(kGroup, e0 - s);
        for (int g = 0; g < G; ++g) {
          ins[g] = big + (s + g) * (size_t)big_size;
          outs[g] = out + (s + g) * L;
        }
        keyswitch_group(ins, G, outs);
      }
    });
  }
};

}  // namespace WAVIS_TFHE_ISA
}  // namespace tfhe
}  // namespace wavis
