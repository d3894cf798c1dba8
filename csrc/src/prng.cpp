// Ring samplers over ChaCha20 (include/wavis/prng.hpp).
#include "wavis/prng.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace wavis {

u64 Prng::below(u64 bound) {
  if (bound <= 1) return 0;
  const u64 mask = ~(u64)0 >> __builtin_clzll(bound - 1);
  for (;;) {
    u64 v = next_u64() & mask;
    if (v < bound) return v;
  }
}

void Prng::uniform_below(u64* out, std::size_t n, u64 bound) {
  for (std::size_t i = 0; i < n; ++i) out[i] = below(bound);
}

void Prng::ternary(std::int64_t* o, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t b;
    do b = next_byte(); while (b == 255);  // 255 = 3·85: unbiased mod 3
    o[i] = (std::int64_t)(b % 3) - 1;
  }
}

void Prng::ternary_hw(std::int64_t* o, std::size_t n, std::size_t h) {
  std::vector<std::uint32_t> pos(n);
  for (std::size_t i = 0; i < n; ++i) pos[i] = (std::uint32_t)i;
  for (std::size_t i = 0; i < h; ++i) {  // partial Fisher–Yates
    std::size_t j = i + (std::size_t)below(n - i);
    std::swap(pos[i], pos[j]);
  }
  std::fill(o, o + n, 0);
  u64 bits = 0;
  for (std::size_t i = 0; i < h; ++i) {
    if (i % 64 == 0) bits = next_u64();
    o[pos[i]] = (bits >> (i % 64)) & 1 ? 1 : -1;
  }
}

void Prng::gaussian(std::int64_t* o, std::size_t n, double sigma) {
  const double bound = std::floor(6.0 * sigma);
  const double two_pi = 6.283185307179586476925;
  std::size_t i = 0;
  while (i < n) {
    const double u1 = 1.0 - unit();  // (0, 1]
    const double u2 = unit();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double z[2] = {r * std::cos(two_pi * u2), r * std::sin(two_pi * u2)};
    for (int k = 0; k < 2 && i < n; ++k) {
      double x = std::nearbyint(sigma * z[k]);
      if (std::fabs(x) <= bound) o[i++] = (std::int64_t)x;
    }
  }
}

}  // namespace wavis
