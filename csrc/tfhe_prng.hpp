// Keystream adapter for TFHE: the ring core's ChaCha20 block function (csrc/prng.cpp, RFC 8439;
// key = 32-byte seed, nonce = 0, block counter from 0), so StreamPrng(seed) yields exactly the
// bytes of wavis._core.Prng(seed).random_bytes(...), read as little-endian words; plus the
// samplers TFHE needs (uniform torus words, a rounded continuous Gaussian).
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>

namespace wavis {
void chacha20_block(const std::uint32_t in[16], std::uint8_t out[64]);  // csrc/prng.cpp

namespace tfhe {

class StreamPrng {
 public:
  explicit StreamPrng(const uint8_t* seed32) {
    state_[0] = 0x61707865u; state_[1] = 0x3320646eu; state_[2] = 0x79622d32u; state_[3] = 0x6b206574u;
    for (int i = 0; i < 8; ++i) {
      state_[4 + i] = (uint32_t)seed32[4 * i] | ((uint32_t)seed32[4 * i + 1] << 8) |
                      ((uint32_t)seed32[4 * i + 2] << 16) | ((uint32_t)seed32[4 * i + 3] << 24);
    }
    state_[12] = state_[13] = state_[14] = state_[15] = 0;
  }
  uint32_t next_u32() {
    if (pos_ >= kWords) refill();
    return buf_[pos_++];
  }
  uint64_t next_u64() {
    uint64_t lo = next_u32();
    return lo | ((uint64_t)next_u32() << 32);
  }
  void fill_u32(uint32_t* out, size_t n) {
    while (n) {
      if (pos_ >= kWords) refill();
      size_t k = std::min<size_t>(n, kWords - pos_);
      std::memcpy(out, buf_ + pos_, 4 * k);
      pos_ += k; out += k; n -= k;
    }
  }
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
  static constexpr int kBlocks = 8, kWords = 16 * kBlocks;
  uint32_t state_[16];
  uint32_t buf_[kWords];
  int pos_ = kWords;
  double spare_ = 0;
  bool have_spare_ = false;
  void refill() {
    uint8_t bytes[64];
    for (int b = 0; b < kBlocks; ++b) {
      chacha20_block(state_, bytes);
      if (++state_[12] == 0) ++state_[13];
      std::memcpy(buf_ + 16 * b, bytes, 64);  // little-endian host
    }
    pos_ = 0;
  }
};

}  // namespace tfhe
}  // namespace wavis
