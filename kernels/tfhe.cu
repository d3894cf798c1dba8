// Batched TFHE gate bootstrapping on the GPU: blind rotation with the bootstrapping key
// resident on the device, sample extraction, LWE key switching.
//
// Mirrors the CPU core (csrc/tfhe.hpp, ServerKeyCore::bootstrap_group / keyswitch_group): the
// 32-bit discrete torus (uint32), test vector mu = 1/8 rotated by -round(b·2N/2^32), CMUX
// acc <- acc + GGSW_i ⊡ (X^{a_i} acc - acc), signed gadget decomposition with rounding
// (balanced: rounded to the top l·bg bits, digits in [-B/2, B/2] taken from the least
// significant level up with a carry, ties to even; Decomposer::digits), sample extraction of
// coefficient 0, key switching by the same balanced digits of base 2^bks.
//
// The one difference is the external product's polynomial arithmetic: the CPU multiplies in a
// double-precision negacyclic FFT; here the digit polynomials (|d| <= B/2) times the key
// polynomials (centred torus words, |x| <= 2^31) are multiplied EXACTLY with a negacyclic NTT over
// one prime q ≡ 1 (mod 2N), q > 2 · (k+1)·l · N · B/2 · 2^31 (checked by the host), then lifted to
// the centred integer and reduced mod 2^32. The GPU result is the exact torus product; the CPU's
// equals it except where the FFT rounds differently, so gate outputs decrypt identically (the
// noise differs by at most those rounding errors) but ciphertext words need not match.
//
// Launch layout:
//   tfhe_blind_rotate  one block per bootstrap (grid = J jobs); the whole loop over the n key
//                      bits runs inside the block, so the accumulator never leaves shared memory.
//                      Shared: acc (k+1)·N u32 | tmp N u64 | out (k+1)·N u64  (k=1,N=1024: 32 KiB).
//                      The bootstrapping key (n, (k+1)·l, k+1, N) u64 in the NTT domain is read by
//                      every block in lockstep over i, so consecutive blocks hit the same L2 lines.
//   tfhe_keyswitch     one block per KS_TILE gates, threads over the n+1 output words; each key-
//                      switching-key row is read once per tile of gates.
// All loops are "for (k = threadIdx.x; k < n; k += blockDim.x)" between __syncthreads(), so a
// block computes the same whatever blockDim (the CPU emulation runs blockDim = 1).
#include "modarith.cuh"

#define KS_TILE 8
#define TFHE_MAX_LEVELS 32

// Balanced signed gadget decomposition of x (the CPU's Decomposer::digits): d[p] for level
// p + 1 (most significant first), |d| <= B/2, sum d[p]·2^(32-(p+1)·bg) = x rounded to l·bg bits.
__device__ __forceinline__ void tfhe_digits(u32 x, int bg, int l, int* d) {
  const int shift = 32 - bg * l;
  const u32 mask = bg >= 32 ? 0xffffffffu : ((1u << bg) - 1u);
  const u32 half = 1u << (bg - 1);
  u32 v = shift > 0 ? ((x + (1u << (shift - 1))) >> shift) : x;
  for (int p = l - 1; p >= 0; --p) {
    const u32 u = v & mask;
    v = bg >= 32 ? 0u : (v >> bg);
    const u32 c = (u32)(u > half) | ((u32)(u == half) & (v & 1u));
    d[p] = (int)u - (int)(c << bg);
    v += c;
  }
}

// Digit `p` (0-based level) only.
__device__ __forceinline__ int tfhe_digit(u32 x, int bg, int l, int p) {
  int d[TFHE_MAX_LEVELS];
  tfhe_digits(x, bg, l, d);
  return d[p];
}

// In-shared forward negacyclic NTT of N = 2^logN words (same transform as ntt.cu / the CPU),
// output fully reduced.
__device__ void tfhe_smem_ntt(u64* s, int logN, const u64* __restrict__ W, const u64* __restrict__ Wp, u64 q) {
  const u32 half = 1u << (logN - 1);
  const u64 two_q = 2 * q;
  for (int p = logN - 1; p >= 0; --p) {
    const int st = logN - 1 - p;
    for (u32 k = threadIdx.x; k < half; k += blockDim.x) {
      const u32 e0 = ((k >> p) << (p + 1)) | (k & ((1u << p) - 1));
      const u32 e1 = e0 | (1u << p);
      const u32 widx = (1u << st) + (e0 >> (p + 1));
      u64 u = csub(s[e0], two_q);
      const u64 v = mul_shoup_lazy(s[e1], W[widx], Wp[widx], q);
      s[e0] = u + v;
      s[e1] = u - v + two_q;
    }
    __syncthreads();
  }
  for (u32 e = threadIdx.x; e < 2 * half; e += blockDim.x) s[e] = csub(csub(s[e], two_q), q);
  __syncthreads();
}

// In-shared inverse NTT (includes N^-1; wl = W^-1[1]·N^-1), output fully reduced.
__device__ void tfhe_smem_intt(u64* s, int logN, const u64* __restrict__ W, const u64* __restrict__ Wp, u64 q,
                               u64 ninv, u64 ninvp, u64 wl, u64 wlp) {
  const u32 half = 1u << (logN - 1);
  const u64 two_q = 2 * q;
  for (int p = 0; p < logN; ++p) {
    const bool last = (p == logN - 1);
    for (u32 k = threadIdx.x; k < half; k += blockDim.x) {
      const u32 e0 = ((k >> p) << (p + 1)) | (k & ((1u << p) - 1));
      const u32 e1 = e0 | (1u << p);
      const u64 u = s[e0], v = s[e1];
      if (last) {
        s[e0] = mul_shoup(u + v, ninv, ninvp, q);
        s[e1] = mul_shoup(u - v + two_q, wl, wlp, q);
      } else {
        const u32 widx = ((1u << logN) >> (p + 1)) + (e0 >> (p + 1));
        s[e0] = csub(u + v, two_q);
        s[e1] = mul_shoup_lazy(u - v + two_q, W[widx], Wp[widx], q);
      }
    }
    __syncthreads();
  }
}

// The CPU's mod_switch: round(x · 2N / 2^32) mod 2N.
__device__ __forceinline__ int tfhe_mod_switch(u32 x, int log2_2N) {
  return (int)((((x >> (31 - log2_2N)) + 1u) >> 1) & ((1u << log2_2N) - 1u));
}

// Blind rotation + sample extraction of J LWE ciphertexts (small key, (n+1) words each) into
// big-key LWE ciphertexts (k·N + 1 words each) encrypting ±mu; with extract = 0 the GLWE
// accumulators themselves ((k+1)·N words each) instead.
//   lwe:  (J, n+1) u32            big: (J, k·N+1) u32 (extract) or (J, k+1, N) u32 (!extract)
//   bsk:  (n, rows, k+1, N) u64, NTT domain mod q (rows = (k+1)·l; row r = (c, p) = (r / l, r % l + 1))
//   tw:   NTT tables (psi_rev, psi_rev_shoup, ipsi_rev, ipsi_rev_shoup), N words each.
extern "C" __global__ void tfhe_blind_rotate(const u32* __restrict__ lwe, u32* __restrict__ big,
                                             const u64* __restrict__ bsk, const u64* __restrict__ tw,
                                             const u64* __restrict__ twp, const u64* __restrict__ itw,
                                             const u64* __restrict__ itwp, u64 q, u64 rhi, u64 rlo, u64 ninv,
                                             u64 ninvp, u64 wl, u64 wlp, int n, int k, int logN, int bg, int l,
                                             u32 mu, int extract) {
  extern __shared__ u64 sm[];
  const int N = 1 << logN;
  const int rows = (k + 1) * l;
  u64* tmp = sm;                                   // N
  u64* outp = sm + N;                              // (k+1) N
  u32* acc = (u32*)(sm + (size_t)(k + 2) * N);     // (k+1) N
  const u32* in = lwe + (size_t)blockIdx.x * (n + 1);
  const int log2_2N = logN + 1;
  const u64 qhalf = q >> 1;

  // acc = (0, ..., 0, X^{-b~} · mu·(1 + X + ... + X^{N-1}))
  {
    const int bb = tfhe_mod_switch(in[n], log2_2N);
    int rot = (2 * N - bb) % (2 * N);
    for (u32 j = threadIdx.x; j < (u32)(k * N); j += blockDim.x) acc[j] = 0u;
    u32* body = acc + (size_t)k * N;
    for (u32 j = threadIdx.x; j < (u32)N; j += blockDim.x) {
      if (rot < N) body[j] = (int)j < rot ? 0u - mu : mu;
      else body[j] = (int)j < rot - N ? mu : 0u - mu;
    }
  }
  __syncthreads();

  for (int i = 0; i < n; ++i) {
    const int a = tfhe_mod_switch(in[i], log2_2N);  // uniform across the block
    if (a == 0) continue;
    const u64* key = bsk + (size_t)i * rows * (k + 1) * N;
    for (int r = 0; r < rows; ++r) {
      const int c = r / l, p = r % l;
      const u32* src = acc + (size_t)c * N;
      // digit p of (X^a acc_c - acc_c), centred, into tmp mod q
      for (u32 j = threadIdx.x; j < (u32)N; j += blockDim.x) {
        // coefficient j of X^a * src (negacyclic), a in [1, 2N)
        int s = (int)j - a;
        u32 v;
        if (s >= 0) v = src[s];
        else if (s >= -N) v = 0u - src[s + N];
        else v = src[s + 2 * N];
        v -= src[j];
        const int d = tfhe_digit(v, bg, l, p);
        tmp[j] = d >= 0 ? (u64)d : q - (u64)(-d);
      }
      __syncthreads();
      tfhe_smem_ntt(tmp, logN, tw, twp, q);
      for (u32 j = threadIdx.x; j < (u32)N; j += blockDim.x) {
        const u64 x = tmp[j];
        for (int oc = 0; oc <= k; ++oc) {
          const u64 kv = key[((size_t)r * (k + 1) + oc) * N + j];
          const u64 prev = r == 0 ? 0ull : outp[(size_t)oc * N + j];
          outp[(size_t)oc * N + j] = mul_add_mod(x, kv, prev, q, rhi, rlo);
        }
      }
      __syncthreads();
    }
    for (int oc = 0; oc <= k; ++oc) tfhe_smem_intt(outp + (size_t)oc * N, logN, itw, itwp, q, ninv, ninvp, wl, wlp);
    // acc += centred lift mod 2^32
    for (u32 j = threadIdx.x; j < (u32)((k + 1) * N); j += blockDim.x) {
      const u64 v = outp[j];
      const long long cv = v > qhalf ? -(long long)(q - v) : (long long)v;
      acc[j] += (u32)(unsigned long long)cv;
    }
    __syncthreads();
  }

  if (!extract) {
    u32* o = big + (size_t)blockIdx.x * ((size_t)(k + 1) * N);
    for (u32 e = threadIdx.x; e < (u32)((k + 1) * N); e += blockDim.x) o[e] = acc[e];
    return;
  }
  // sample extraction (coefficient 0)
  u32* o = big + (size_t)blockIdx.x * ((size_t)k * N + 1);
  for (u32 e = threadIdx.x; e < (u32)(k * N); e += blockDim.x) {
    const u32 c = e >> logN, j = e & (N - 1);
    const u32* ac = acc + (size_t)c * N;
    o[e] = j == 0 ? ac[0] : 0u - ac[N - j];
  }
  if (threadIdx.x == 0) o[(size_t)k * N] = acc[(size_t)k * N];
}

// Key switching of G big-key ciphertexts (k·N + 1 words) to small-key ones (n + 1 words):
// out = (0, ..., 0, b) - sum_i sum_p digit_p(big_i) · ksk[i][p].
//   big: rows src_row[g] of a (*, k·N+1) array; ksk: (k·N, t, n+1) u32; out: (G, n+1) rows dst_row[g].
extern "C" __global__ void tfhe_keyswitch(const u32* __restrict__ big, const int* __restrict__ src_row,
                                          const int* __restrict__ dst_row, u32* __restrict__ out,
                                          const u32* __restrict__ ksk, int G, int n, int KN, int t, int bks) {
  const int g0 = blockIdx.x * KS_TILE;
  const int gn = min(KS_TILE, G - g0);
  const size_t bsz = (size_t)KN + 1;
  for (int j = threadIdx.x; j <= n; j += blockDim.x) {
    u32 acc[KS_TILE];
    for (int g = 0; g < KS_TILE; ++g) acc[g] = (g < gn && j == n) ? big[(size_t)src_row[g0 + g] * bsz + KN] : 0u;
    for (int i = 0; i < KN; ++i) {
      const u32* krow = ksk + (size_t)i * t * (n + 1) + j;
      for (int g = 0; g < KS_TILE; ++g) {
        if (g < gn) {
          int d[TFHE_MAX_LEVELS];
          tfhe_digits(big[(size_t)src_row[g0 + g] * bsz + i], bks, t, d);
          u32 s = 0;
          for (int p = 0; p < t; ++p) s += (u32)d[p] * krow[(size_t)p * (n + 1)];
          acc[g] -= s;
        }
      }
    }
    for (int g = 0; g < gn; ++g) out[(size_t)dst_row[g0 + g] * (n + 1) + j] = acc[g];
  }
}
