// TFHE's view of the core's ChaCha20 keystream (include/wavis/chacha20.hpp; key = 32-byte
// seed, nonce = 0, block counter from 0), so StreamPrng(seed) yields exactly the bytes of
// wavis._core.Prng(seed).random_bytes(...), read as little-endian words; plus the samplers TFHE
// needs (uniform torus words, a rounded continuous Gaussian).
#pragma once
#include <cmath>
#include <cstdint>

#include "wavis/chacha20.hpp"

#ifndef WAVIS_TFHE_ISA
#define WAVIS_TFHE_ISA isa_portable
#endif

namespace wavis {
namespace tfhe {
namespace WAVIS_TFHE_ISA {

class StreamPrng {
 public:
  explicit StreamPrng(const uint8_t* seed32) : s_(seed32) {}
  uint32_t next_u32() { return s_.next_u32(); }
  uint64_t next_u64() {
    uint64_t lo = next_u32();
    return lo | ((uint64_t)next_u32() << 32);
  }
  void fill_u32(uint32_t* out, size_t n) { s_.fill_u32(out, n); }
  void fill_bytes(uint8_t* out, size_t n) {  // whole words, low byte first
    for (size_t i = 0; i < n; i += 4) {
      uint32_t w = next_u32();
      for (size_t b = 0; b < 4 && i + b < n; ++b) out[i + b] = (uint8_t)(w >> (8 * b));
    }
  }
  double uniform01() { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal by Box-Muller on two 53-bit uniforms.
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform01(); while (u1 <= 0.0);
    double u2 = uniform01();
    double r = std::sqrt(-2.0 * std::log(u1));
    double t = 6.283185307179586476925 * u2;
    spare_ = r * std::sin(t);
    have_spare_ = true;
    return r * std::cos(t);
  }

 private:
  ChaCha20 s_;
  double spare_ = 0;
  bool have_spare_ = false;
};

}  // namespace WAVIS_TFHE_ISA
}  // namespace tfhe
}  // namespace wavis
