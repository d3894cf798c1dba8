// WAVIS device modular arithmetic: the ONE header shared by every kernels/*.cu file.
//
// Mirrors csrc/arith.hpp (the CPU oracle) for primes q < 2^62:
//   * add/sub/neg mod q on fully reduced operands;
//   * Barrett reduction of 64- and 128-bit values with the precomputed two-word ratio
//     floor(2^128 / q) = ratio_hi * 2^64 + ratio_lo (Modulus::reduce / reduce128, as in SEAL);
//   * Shoup multiplication by a fixed operand w with w' = floor(w * 2^64 / q)
//     (V. Shoup, NTL; D. Harvey, J. Symb. Comp. 2014), lazy result in [0, 2q);
//   * q < 2^62 leaves room for Harvey's lazy butterflies (values in [0, 4q)).
// Every function returns the unique residue in [0, q) unless its name says "lazy", so results
// are bit-identical to the CPU whatever reduction path each side takes.
//
// Self-contained (no standard headers) so that it compiles both with nvcc and with NVRTC
// (CuPy RawModule). The loader (wavis/backend/cuda.py) inlines this file into each kernel
// source before compiling, so CuPy's on-disk cache key covers the header too.
#pragma once

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;

#define WAVIS_DEV __device__ __forceinline__

// high 64 bits of a 64x64-bit product
WAVIS_DEV u64 mulhi64(u64 a, u64 b) { return __umul64hi(a, b); }

WAVIS_DEV u64 add_mod(u64 a, u64 b, u64 q) {
  u64 s = a + b;
  return s >= q ? s - q : s;
}
WAVIS_DEV u64 sub_mod(u64 a, u64 b, u64 q) { return a >= b ? a - b : a + q - b; }
WAVIS_DEV u64 neg_mod(u64 a, u64 q) { return a ? q - a : 0; }

// x mod q for a 64-bit x (Modulus::reduce): estimate floor(x / q) by mulhi(x, ratio_hi).
WAVIS_DEV u64 barrett_reduce64(u64 x, u64 q, u64 ratio_hi) {
  u64 qh = mulhi64(x, ratio_hi);
  u64 r = x - qh * q;
  return r >= q ? r - q : r;
}

// (hi * 2^64 + lo) mod q (Modulus::reduce128), any 128-bit value.
WAVIS_DEV u64 barrett_reduce128(u64 lo, u64 hi, u64 q, u64 ratio_hi, u64 ratio_lo) {
  u64 carry = mulhi64(lo, ratio_lo);
  u64 t2_lo = lo * ratio_hi, t2_hi = mulhi64(lo, ratio_hi);
  u64 t1 = t2_lo + carry;
  u64 t3 = t2_hi + (t1 < carry ? 1ull : 0ull);
  u64 p_lo = hi * ratio_lo, p_hi = mulhi64(hi, ratio_lo);
  t1 += p_lo;
  carry = p_hi + (t1 < p_lo ? 1ull : 0ull);
  u64 qhat = hi * ratio_hi + t3 + carry;
  u64 r = lo - qhat * q;
  return r >= q ? r - q : r;
}

// a * b mod q (a, b < q) through the full 128-bit product and Barrett.
WAVIS_DEV u64 mul_mod(u64 a, u64 b, u64 q, u64 ratio_hi, u64 ratio_lo) {
  return barrett_reduce128(a * b, mulhi64(a, b), q, ratio_hi, ratio_lo);
}

// a * b + c mod q (a, b, c < q): the 128-bit value a*b + c < 2^124 + 2^62 cannot overflow.
WAVIS_DEV u64 mul_add_mod(u64 a, u64 b, u64 c, u64 q, u64 ratio_hi, u64 ratio_lo) {
  u64 lo = a * b, hi = mulhi64(a, b);
  u64 s = lo + c;
  hi += (s < lo) ? 1ull : 0ull;
  return barrett_reduce128(s, hi, q, ratio_hi, ratio_lo);
}

// 128-bit accumulator helpers (sum of products, reduced by barrett_reduce128).
WAVIS_DEV void acc128_mad(u64& lo, u64& hi, u64 a, u64 b) {
  u64 pl = a * b, ph = mulhi64(a, b);
  lo += pl;
  hi += ph + (lo < pl ? 1ull : 0ull);
}

// Shoup: x * w mod q in [0, 2q) for any 64-bit x; wp = floor(w * 2^64 / q).
WAVIS_DEV u64 mul_shoup_lazy(u64 x, u64 w, u64 wp, u64 q) {
  u64 qh = mulhi64(x, wp);
  return x * w - qh * q;
}
WAVIS_DEV u64 mul_shoup(u64 x, u64 w, u64 wp, u64 q) {
  u64 r = mul_shoup_lazy(x, w, wp, q);
  return r >= q ? r - q : r;
}

// Conditional subtraction helpers for lazy ranges.
WAVIS_DEV u64 csub(u64 x, u64 m) { return x >= m ? x - m : x; }
