// RNS kernels: element-wise modular ops, signed reduction, fast basis conversion, ModDown,
// rescale, automorphisms and the fused key-switching inner product.
//
// Semantics are the CPU oracle's (csrc/ring.cpp); every result is the unique residue in [0, q),
// so the GPU matches the CPU bit for bit.
//
// Layout: arrays are row-major (rows, N) with N = 2^logN; `total` = rows * N elements. Row r is
// reduced modulo the prime row_prime[r % L] (L = limbs per polynomial). Per-prime constants
// (q, Barrett ratio) are indexed by prime index; per-row constants (scalars, conversion
// factors) by r % L. All kernels use grid-stride loops over 64-bit element indices.
#include "modarith.cuh"

#define GRID_LOOP(i, total) \
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (u64)gridDim.x * blockDim.x)

// ------------------------------------------------------------------------ element-wise ----
// b_rows: rows of b (b row = r % b_rows), so a (L, N) operand can broadcast over a batch.
#define EW2(NAME, EXPR)                                                                                    \
  extern "C" __global__ void NAME(const u64* __restrict__ a, const u64* __restrict__ b, u64* out,          \
                                  const int* __restrict__ row_prime, int L, long long b_rows,              \
                                  unsigned long long total, int logN, const u64* __restrict__ mods,        \
                                  const u64* __restrict__ rhi, const u64* __restrict__ rlo) {              \
    const u64 mask = (1ull << logN) - 1;                                                                   \
    GRID_LOOP(i, total) {                                                                                  \
      const u64 r = i >> logN;                                                                             \
      const int pr = row_prime[r % (u64)L];                                                                \
      const u64 q = mods[pr];                                                                              \
      const u64 x = a[i];                                                                                  \
      const u64 y = b[((r % (u64)b_rows) << logN) | (i & mask)];                                           \
      (void)rhi; (void)rlo;                                                                                \
      out[i] = (EXPR);                                                                                     \
    }                                                                                                      \
  }

EW2(ew_add, add_mod(x, y, q))
EW2(ew_sub, sub_mod(x, y, q))
EW2(ew_mul, mul_mod(x, y, q, rhi[pr], rlo[pr]))
EW2(ew_mul_add, mul_add_mod(x, y, out[i], q, rhi[pr], rlo[pr]))

extern "C" __global__ void ew_neg(const u64* __restrict__ a, u64* out, const int* __restrict__ row_prime, int L,
                                  unsigned long long total, int logN, const u64* __restrict__ mods) {
  GRID_LOOP(i, total) {
    const u64 r = i >> logN;
    out[i] = neg_mod(a[i], mods[row_prime[r % (u64)L]]);
  }
}

// out[r] = a[r] * w[r % L] mod q (Shoup, w reduced, wp its companion).
extern "C" __global__ void ew_mul_scalar(const u64* __restrict__ a, u64* out, const int* __restrict__ row_prime,
                                         int L, unsigned long long total, int logN, const u64* __restrict__ mods,
                                         const u64* __restrict__ w, const u64* __restrict__ wp) {
  GRID_LOOP(i, total) {
    const u64 k = (i >> logN) % (u64)L;
    out[i] = mul_shoup(a[i], w[k], wp[k], mods[row_prime[k]]);
  }
}

// Signed int64 coefficients (batch, N) -> (batch, L, N) residues.
extern "C" __global__ void from_signed(const long long* __restrict__ src, u64* out, const int* __restrict__ row_prime,
                                       int L, unsigned long long total, int logN, const u64* __restrict__ mods,
                                       const u64* __restrict__ rhi) {
  const u64 mask = (1ull << logN) - 1;
  GRID_LOOP(i, total) {
    const u64 r = i >> logN;
    const u64 b = r / (u64)L;
    const int pr = row_prime[r % (u64)L];
    const u64 q = mods[pr];
    const long long v = src[(b << logN) | (i & mask)];
    out[i] = v >= 0 ? barrett_reduce64((u64)v, q, rhi[pr]) : neg_mod(barrett_reduce64(0ull - (u64)v, q, rhi[pr]), q);
  }
}

// ---------------------------------------------------------------- fast basis conversion ----
// Step 1: y[i] = a[i] * [(Q/q_i)^-1]_{q_i} mod q_i (rows i < L_in; per-row w/wp, prime in_prime[i]).
extern "C" __global__ void bconv_scale(const u64* __restrict__ a, u64* y, const int* __restrict__ in_prime, int L_in,
                                       unsigned long long total, int logN, const u64* __restrict__ mods,
                                       const u64* __restrict__ w, const u64* __restrict__ wp) {
  GRID_LOOP(i, total) {
    const u64 r = (i >> logN) % (u64)L_in;
    y[i] = mul_shoup(a[i], w[r], wp[r], mods[in_prime[r]]);
  }
}

// Step 2: out[j] = sum_i y[i] * c[j * L_in + i] mod p_j, with c = (Q/q_i) mod p_j.
// 128-bit accumulation, reduced every 14 products (15 products < 2^124 fit in 128 bits).
extern "C" __global__ void bconv_accum(const u64* __restrict__ y, u64* out, const int* __restrict__ out_prime,
                                       int L_in, int L_out, int logN, const u64* __restrict__ mods,
                                       const u64* __restrict__ rhi, const u64* __restrict__ rlo,
                                       const u64* __restrict__ c) {
  const u64 N = 1ull << logN;
  const u64 total = (u64)L_out * N;
  GRID_LOOP(i, total) {
    const u64 j = i >> logN, n = i & (N - 1);
    const int pr = out_prime[j];
    const u64 p = mods[pr], h = rhi[pr], l = rlo[pr];
    const u64* cj = c + j * (u64)L_in;
    u64 lo = 0, hi = 0;
    int pending = 0;
    for (int k = 0; k < L_in; ++k) {
      acc128_mad(lo, hi, y[((u64)k << logN) | n], cj[k]);
      if (++pending == 14) {
        lo = barrett_reduce128(lo, hi, p, h, l);
        hi = 0;
        pending = 0;
      }
    }
    out[i] = barrett_reduce128(lo, hi, p, h, l);
  }
}

// ------------------------------------------------------------------------------ ModDown ----
// ap[j] = a[l + j] + (p_j - 1)/2 mod p_j  (rounding offset), rows j < k.
extern "C" __global__ void moddown_offset(const u64* __restrict__ a_p, u64* ap, const int* __restrict__ p_prime,
                                          int k, int logN, const u64* __restrict__ mods) {
  const u64 total = (u64)k << logN;
  GRID_LOOP(i, total) {
    const u64 p = mods[p_prime[i >> logN]];
    ap[i] = add_mod(a_p[i], (p - 1) >> 1, p);
  }
}

// out[i] = (a[i] + h_i - conv[i]) * P^-1 mod q_i, h_i = (P-1)/2 mod q_i. `out` may alias conv.
extern "C" __global__ void moddown_final(const u64* __restrict__ a, const u64* conv, u64* out,
                                         const int* __restrict__ q_prime, int l, int logN,
                                         const u64* __restrict__ mods, const u64* __restrict__ h,
                                         const u64* __restrict__ pinv, const u64* __restrict__ pinvp) {
  const u64 total = (u64)l << logN;
  GRID_LOOP(i, total) {
    const u64 r = i >> logN;
    const u64 q = mods[q_prime[r]];
    out[i] = mul_shoup(sub_mod(add_mod(a[i], h[r], q), conv[i], q), pinv[r], pinvp[r], q);
  }
}

// ModDown in the NTT domain (CudaRingContext.mod_down_ntt), the step between the fast
// conversion and the forward NTT: conv[i] = conv[i] - h_i - u·(P mod q_i) mod q_i, with
// h_i = ((P-1)/2) mod q_i and, for k > 1 special primes, the conversion overshoot
// u = clamp(floor(sum_j y_j · (1/p_j)), 0, k) (y: the k scaled rows of bconv_scale). The double
// products and sums are rounded one at a time in order j (never fused into an FMA), exactly as
// the CPU oracle (wavis/ckks/keyswitch.py: mod_down_ntt), so u matches it bit for bit.
extern "C" __global__ void moddown_sub(const u64* __restrict__ y, u64* conv, const int* __restrict__ q_prime, int l,
                                       int k, int logN, const u64* __restrict__ mods,
                                       const double* __restrict__ pinv_f, const u64* __restrict__ h,
                                       const u64* __restrict__ pmod) {
  const u64 total = (u64)l << logN;
  const u64 mask = (1ull << logN) - 1;
  GRID_LOOP(i, total) {
    const u64 r = i >> logN, n = i & mask;
    const u64 q = mods[q_prime[r]];
    u64 v = sub_mod(conv[i], h[r], q);
    if (k > 1) {
      double s = 0.0;
      for (int j = 0; j < k; ++j) s = __dadd_rn(s, __dmul_rn(__ull2double_rn(y[((u64)j << logN) | n]), pinv_f[j]));
      const double f = floor(s);
      const int u = f < 0.0 ? 0 : (f > (double)k ? k : (int)f);
      for (int t = 0; t < u; ++t) v = sub_mod(v, pmod[r], q);
    }
    conv[i] = v;
  }
}

// ------------------------------------------------------------------------------ rescale ----
// x: the last limb in the coefficient domain (mod q_l). d[i] = ((x + half mod q_l) mod q_i) - (half mod q_i).
extern "C" __global__ void rescale_expand(const u64* __restrict__ x, u64* d, const int* __restrict__ q_prime,
                                          int l, int logN, const u64* __restrict__ mods,
                                          const u64* __restrict__ rhi, u64 ql, u64 half) {
  const u64 total = (u64)l << logN;
  const u64 mask = (1ull << logN) - 1;
  GRID_LOOP(i, total) {
    const int pr = q_prime[i >> logN];
    const u64 q = mods[pr];
    const u64 xv = add_mod(x[i & mask], half, ql);
    d[i] = sub_mod(barrett_reduce64(xv, q, rhi[pr]), barrett_reduce64(half, q, rhi[pr]), q);
  }
}

// out[i] = (a[i] - d[i]) * q_l^-1 mod q_i (NTT domain); out may alias d.
extern "C" __global__ void rescale_final(const u64* __restrict__ a, const u64* d, u64* out,
                                         const int* __restrict__ q_prime, int l, int logN,
                                         const u64* __restrict__ mods, const u64* __restrict__ inv,
                                         const u64* __restrict__ invp) {
  const u64 total = (u64)l << logN;
  GRID_LOOP(i, total) {
    const u64 r = i >> logN;
    const u64 q = mods[q_prime[r]];
    out[i] = mul_shoup(sub_mod(a[i], d[i], q), inv[r], invp[r], q);
  }
}

// ----------------------------------------------------------------------- automorphisms ----
// NTT domain: out[r, k] = a[r, perm[k]] (perm from the bit-reversed evaluation points).
extern "C" __global__ void automorph_ntt(const u64* __restrict__ a, u64* __restrict__ out,
                                         const unsigned int* __restrict__ perm, unsigned long long total, int logN) {
  const u64 mask = (1ull << logN) - 1;
  GRID_LOOP(i, total) {
    out[i] = a[(i & ~mask) | perm[i & mask]];
  }
}

// Coefficient domain: a_n X^n -> a_n X^{n g mod 2N} with the negacyclic sign.
extern "C" __global__ void automorph_coeff(const u64* __restrict__ a, u64* __restrict__ out,
                                           const int* __restrict__ row_prime, int L, unsigned long long total,
                                           int logN, const u64* __restrict__ mods, u64 g) {
  const u64 N = 1ull << logN, mask2 = 2 * N - 1;
  GRID_LOOP(i, total) {
    const u64 r = i >> logN, n = i & (N - 1);
    const u64 q = mods[row_prime[r % (u64)L]];
    const u64 j = (n * g) & mask2;
    const u64 v = a[i];
    if (j < N) out[(r << logN) | j] = v;
    else out[(r << logN) | (j - N)] = neg_mod(v, q);
  }
}

// ---------------------------------------------------------- key-switching inner product ----
// Fused key-switching inner product against a key over the full prime list, with a rotation's
// automorphism applied to the sums as a scatter of the writes (Han–Ki, CT-RSA 2020 §3;
// Halevi–Shoup, CRYPTO 2018 §5; the Galois key pre-permuted, K' = aut_g^{-1}(K)):
//   acc[c][r][operm[j]] = (pre[c][r][j] if accumulate) + sum_d ext[d][r][j] * key[d][c][row_prime[r]][j]  mod q
//   ext: (dnum, rows, N); key: (>= dnum, 2, nmods, N) (row p of key[d, c] belongs to prime p, so a
//   level's rows are read in place, never gathered); pre, acc: (2, rows, N) (pre may be acc only
//   when operm is the identity); operm: N entries, the permutation of g^{-1} (out[operm[j]] = x[j]
//   is out[k] = x[perm_g[k]]). Bit-identical to mul_add over the digits, then the automorphism.
extern "C" __global__ void ks_inner_keyed(const u64* __restrict__ ext, const u64* __restrict__ key, const u64* pre,
                                          u64* acc, const int* __restrict__ row_prime,
                                          const unsigned int* __restrict__ operm, int rows, int dnum, int nmods,
                                          int logN, const u64* __restrict__ mods, const u64* __restrict__ rhi,
                                          const u64* __restrict__ rlo, int accumulate) {
  const u64 mask = (1ull << logN) - 1;
  const u64 plane = (u64)rows << logN;
  const u64 kplane = (u64)nmods << logN;  // one (nmods, N) key polynomial
  GRID_LOOP(i, plane) {
    const int pr = row_prime[i >> logN];
    const u64 j = i & mask;
    const u64 dst = (i & ~mask) | operm[j];
    const u64 q = mods[pr], h = rhi[pr], l = rlo[pr];
    const u64 kofs = ((u64)pr << logN) | j;
    u64 lo0 = accumulate ? pre[i] : 0, hi0 = 0, lo1 = accumulate ? pre[plane + i] : 0, hi1 = 0;
    int pending = 0;
    for (int d = 0; d < dnum; ++d) {
      const u64 e = ext[(u64)d * plane + i];
      acc128_mad(lo0, hi0, e, key[(2 * (u64)d) * kplane + kofs]);
      acc128_mad(lo1, hi1, e, key[(2 * (u64)d + 1) * kplane + kofs]);
      if (++pending == 14) {
        lo0 = barrett_reduce128(lo0, hi0, q, h, l); hi0 = 0;
        lo1 = barrett_reduce128(lo1, hi1, q, h, l); hi1 = 0;
        pending = 0;
      }
    }
    acc[dst] = barrett_reduce128(lo0, hi0, q, h, l);
    acc[plane + dst] = barrett_reduce128(lo1, hi1, q, h, l);
  }
}
