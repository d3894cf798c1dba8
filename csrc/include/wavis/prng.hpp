// Prng: the ring samplers over the ChaCha20 keystream (chacha20.hpp). Python class
// wavis._core.Prng (use wavis.backend.cpu.Prng, which seeds from the OS by default).
// Samplers draw from the keystream in order, so the same seed gives the same outputs.
// Not thread-safe by itself: callers sharing one Prng hold `mu`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "wavis/arith.hpp"
#include "wavis/chacha20.hpp"

namespace wavis {

class Prng {
 public:
  Prng(const std::uint8_t key[32], const std::uint8_t nonce[12], std::uint32_t counter = 0) : s_(key, nonce, counter) {}

  void bytes(std::uint8_t* out, std::size_t n) { s_.bytes(out, n); }
  u64 next_u64() { return s_.next_u64(); }
  std::uint8_t next_byte() { return s_.next_byte(); }
  // Uniform in [0, bound), bound >= 1, by masked rejection (unbiased).
  u64 below(u64 bound);
  // Uniform double in [0, 1) with 53 random bits.
  double unit() { return (double)(next_u64() >> 11) * 0x1.0p-53; }

  // out[i] uniform in [0, bound) for i < n.
  void uniform_below(u64* out, std::size_t n, u64 bound);
  // n values uniform in {-1, 0, 1} (byte rejection: 255 is redrawn, unbiased mod 3).
  void ternary(std::int64_t* out, std::size_t n);
  // n values in {-1, 0, 1} with exactly h <= n nonzeros: positions by a partial Fisher–Yates
  // shuffle with unbiased indices, signs uniform.
  void ternary_hw(std::int64_t* out, std::size_t n, std::size_t h);
  // n rounded Gaussians of standard deviation sigma, truncated at 6σ (redrawn): Box–Muller over
  // 53-bit uniforms, rounded to nearest (the usual rounded continuous Gaussian of RLWE libraries).
  void gaussian(std::int64_t* out, std::size_t n, double sigma);

  std::mutex mu;

 private:
  ChaCha20 s_;
};

}  // namespace wavis
