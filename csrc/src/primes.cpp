// NTT-friendly primes and roots of unity (declared in include/wavis/ring.hpp).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "wavis/ring.hpp"

namespace wavis {

bool is_prime(u64 n) {
  if (n < 2) return false;
  static const u64 small[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  for (u64 p : small) {
    if (n == p) return true;
    if (n % p == 0) return false;
  }
  u64 d = n - 1;
  int s = 0;
  while ((d & 1) == 0) { d >>= 1; ++s; }
  for (u64 a : small) {  // deterministic for n < 3.3 * 10^24 (Sorenson–Webster 2015)
    u64 x = pow_mod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int r = 1; r < s; ++r) {
      x = mul_mod_slow(x, x, n);
      if (x == n - 1) { composite = false; break; }
    }
    if (composite) return false;
  }
  return true;
}

static bool is_pow2(u64 x) { return x && !(x & (x - 1)); }

std::vector<u64> generate_ntt_primes(int bits, std::size_t count, std::size_t N,
                                     const std::vector<u64>& exclude, bool descending) {
  if (bits < 20 || bits > 61) throw std::invalid_argument("bits must be in [20, 61], got " + std::to_string(bits));
  if (!is_pow2(N) || N < 2) throw std::invalid_argument("N must be a power of two >= 2, got " + std::to_string(N));
  const u64 m = 2 * (u64)N;
  const u64 lo = (u64)1 << (bits - 1), hi = (u64)1 << bits;  // exactly `bits` bits: lo < q < hi
  if (m >= lo) throw std::invalid_argument("2N too large for the requested bit size");
  std::unordered_set<u64> ex(exclude.begin(), exclude.end());
  std::vector<u64> out;
  if (count == 0) return out;
  if (descending) {
    u64 q = hi + 1 - m;  // largest value ≡ 1 mod 2N below 2^bits (2^bits ≡ 0 mod 2N)
    for (; q > lo; q -= m) {
      if (!ex.count(q) && is_prime(q)) { out.push_back(q); if (out.size() == count) return out; }
    }
  } else {
    for (u64 q = lo + 1; q < hi; q += m) {
      if (!ex.count(q) && is_prime(q)) { out.push_back(q); if (out.size() == count) return out; }
    }
  }
  throw std::range_error("only " + std::to_string(out.size()) + " primes of " + std::to_string(bits) +
                         " bits with q = 1 mod " + std::to_string(m) + " exist (requested " +
                         std::to_string(count) + ")");
}

u64 minimal_primitive_root(u64 m, u64 q) {
  if (!is_pow2(m) || m < 2) throw std::invalid_argument("m must be a power of two >= 2");
  if (!is_prime(q)) throw std::invalid_argument("q must be prime");
  if ((q - 1) % m != 0) throw std::invalid_argument("m must divide q - 1");
  // Any x with (x^((q-1)/m))^(m/2) = -1 gives a primitive m-th root; no factoring needed.
  u64 root = 0;
  for (u64 x = 2; x < q; ++x) {
    u64 c = pow_mod(x, (q - 1) / m, q);
    if (pow_mod(c, m / 2, q) == q - 1) { root = c; break; }
  }
  if (!root) throw std::runtime_error("no primitive root found");
  // All primitive m-th roots are root^k, k odd; take the smallest.
  u64 sq = mul_mod_slow(root, root, q), cur = root, best = root;
  for (u64 k = 1; k < m; k += 2) {
    if (cur < best) best = cur;
    cur = mul_mod_slow(cur, sq, q);
  }
  return best;
}

}  // namespace wavis

