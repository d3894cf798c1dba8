// ChaCha20 keystream (RFC 8439): the core's one implementation, read by the ring samplers
// (wavis::Prng, prng.hpp) and by TFHE (tfhe/prng.hpp) alike.
//
// Key = 32 bytes, nonce = 12 bytes, 32-bit block counter starting at `counter`; when the
// counter wraps (after 256 GiB) it carries into the first nonce word, so the stream never
// repeats. The stream is consumed in order as bytes; words are little-endian.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wavis {

// One ChaCha20 block (RFC 8439 §2.3): in = constants | key | counter | nonce (16 words).
void chacha20_block(const std::uint32_t in[16], std::uint8_t out[64]);

class ChaCha20 {
 public:
  static constexpr std::size_t kBlocks = 16;  // keystream blocks generated per refill

  ChaCha20(const std::uint8_t key[32], const std::uint8_t nonce[12], std::uint32_t counter = 0);
  // Key only: nonce 0, counter 0.
  explicit ChaCha20(const std::uint8_t key[32]);

  // The next n keystream bytes.
  void bytes(std::uint8_t* out, std::size_t n);
  // The next 4 / 8 bytes as a little-endian word.
  std::uint32_t next_u32() {
    if (avail_ - pos_ < 4) return slow_u32();
    std::uint32_t v;
    std::memcpy(&v, buf_ + pos_, 4);
    pos_ += 4;
    return v;
  }
  std::uint64_t next_u64() {
    if (avail_ - pos_ < 8) return slow_u64();
    std::uint64_t v;
    std::memcpy(&v, buf_ + pos_, 8);
    pos_ += 8;
    return v;
  }
  std::uint8_t next_byte() {
    if (pos_ == avail_) refill();
    return buf_[pos_++];
  }
  // n little-endian words (4n bytes).
  void fill_u32(std::uint32_t* out, std::size_t n) { bytes(reinterpret_cast<std::uint8_t*>(out), 4 * n); }

 private:
  void refill();
  std::uint32_t slow_u32();
  std::uint64_t slow_u64();
  std::uint32_t state_[16];
  std::uint8_t buf_[64 * kBlocks];
  std::size_t pos_ = 0, avail_ = 0;
};

}  // namespace wavis
