// 64-bit modular arithmetic for primes q < 2^62 (header-only; shared by the ring core, TFHE, ...).
//
//  * mul_mod / Barrett: x mod q for 128-bit x with the precomputed 2-word ratio floor(2^128/q)
//    (exact quotient estimate, one correcting subtraction; as in Microsoft SEAL).
//  * Shoup multiplication by a fixed operand w: w' = floor(w * 2^64 / q); x*w mod q in [0, 2q)
//    ("lazy") for any 64-bit x (V. Shoup, NTL; D. Harvey, J. Symb. Comp. 2014).
//  * q < 2^62 leaves room for Harvey's lazy butterflies (values in [0, 4q)).
#pragma once
#include <cstdint>
#include <stdexcept>

namespace wavis {

using u64 = std::uint64_t;
using u128 = unsigned __int128;

inline u64 mulhi64(u64 a, u64 b) { return (u64)(((u128)a * b) >> 64); }

// a + b mod q, a, b in [0, q)
inline u64 add_mod(u64 a, u64 b, u64 q) {
  u64 s = a + b;
  return s >= q ? s - q : s;
}
// a - b mod q, a, b in [0, q)
inline u64 sub_mod(u64 a, u64 b, u64 q) { return a >= b ? a - b : a + q - b; }
inline u64 neg_mod(u64 a, u64 q) { return a ? q - a : 0; }

// Plain (slow-ish) mulmod through unsigned __int128 division; for precomputation.
inline u64 mul_mod_slow(u64 a, u64 b, u64 q) { return (u64)(((u128)a * b) % q); }

inline u64 pow_mod(u64 b, u64 e, u64 q) {
  u64 r = 1 % q;
  b %= q;
  while (e) {
    if (e & 1) r = mul_mod_slow(r, b, q);
    b = mul_mod_slow(b, b, q);
    e >>= 1;
  }
  return r;
}

// Inverse of a mod q (q prime or gcd(a, q) = 1) by the extended Euclidean algorithm.
// Throws std::domain_error when a is not invertible.
inline u64 inv_mod(u64 a, u64 q) {
  __int128 t = 0, nt = 1;
  __int128 r = q, nr = a % q;
  while (nr != 0) {
    __int128 qq = r / nr;
    __int128 tmp = t - qq * nt; t = nt; nt = tmp;
    tmp = r - qq * nr; r = nr; nr = tmp;
  }
  if (r != 1) throw std::domain_error("inv_mod: not invertible");
  if (t < 0) t += q;
  return (u64)t;
}

// A modulus with its Barrett constant floor(2^128 / q) = ratio_hi * 2^64 + ratio_lo.
struct Modulus {
  u64 q = 0;
  u64 ratio_hi = 0, ratio_lo = 0;
  Modulus() = default;
  explicit Modulus(u64 q_) : q(q_) {
    if (q_ < 2 || (q_ >> 62) != 0) throw std::invalid_argument("modulus must be in [2, 2^62)");
    // floor((2^128 - 1) / q) == floor(2^128 / q) unless q is a power of two
    u128 r = ~(u128)0 / q_;
    if ((q_ & (q_ - 1)) == 0) r = (u128)1 << (128 - __builtin_ctzll(q_));
    ratio_hi = (u64)(r >> 64);
    ratio_lo = (u64)r;
  }

  // x mod q for a 64-bit x.
  inline u64 reduce(u64 x) const {
    u64 qh = mulhi64(x, ratio_hi);
    u64 r = x - qh * q;
    return r >= q ? r - q : r;
  }

  // x mod q for a 128-bit x (exact floor(x * ratio / 2^128) estimate; result before the
  // final correction is in [0, 2q)).
  inline u64 reduce128(u128 x) const {
    u64 in0 = (u64)x, in1 = (u64)(x >> 64);
    u64 carry = mulhi64(in0, ratio_lo);
    u128 t2 = (u128)in0 * ratio_hi;
    u64 t1 = (u64)t2 + carry;
    u64 t3 = (u64)(t2 >> 64) + (t1 < carry ? 1 : 0);
    t2 = (u128)in1 * ratio_lo;
    u64 lo = (u64)t2;
    t1 += lo;
    carry = (u64)(t2 >> 64) + (t1 < lo ? 1 : 0);
    u64 qhat = in1 * ratio_hi + t3 + carry;
    u64 r = in0 - qhat * q;
    return r >= q ? r - q : r;
  }

  inline u64 mul(u64 a, u64 b) const { return reduce128((u128)a * b); }
  inline u64 add(u64 a, u64 b) const { return add_mod(a, b, q); }
  inline u64 sub(u64 a, u64 b) const { return sub_mod(a, b, q); }
  inline u64 neg(u64 a) const { return neg_mod(a, q); }
  inline u64 pow(u64 b, u64 e) const { return pow_mod(b, e, q); }
  inline u64 inv(u64 a) const { return inv_mod(a, q); }
};

// Shoup companion of w (w < q): floor(w * 2^64 / q).
inline u64 shoup_precompute(u64 w, u64 q) { return (u64)(((u128)w << 64) / q); }

// x * w mod q, result in [0, 2q); any 64-bit x; wp = shoup_precompute(w, q).
inline u64 mul_shoup_lazy(u64 x, u64 w, u64 wp, u64 q) {
  u64 qh = mulhi64(x, wp);
  return x * w - qh * q;
}
// x * w mod q fully reduced.
inline u64 mul_shoup(u64 x, u64 w, u64 wp, u64 q) {
  u64 r = mul_shoup_lazy(x, w, wp, q);
  return r >= q ? r - q : r;
}

}  // namespace wavis
