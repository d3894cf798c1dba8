// ChaCha20 (RFC 8439): block function and keystream (include/wavis/chacha20.hpp).
#include "wavis/chacha20.hpp"

#include <algorithm>

namespace wavis {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the keystream words are read as little-endian");

static inline std::uint32_t rotl32(std::uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

#define WAVIS_QR(a, b, c, d)             \
  a += b; d ^= a; d = rotl32(d, 16);     \
  c += d; b ^= c; b = rotl32(b, 12);     \
  a += b; d ^= a; d = rotl32(d, 8);      \
  c += d; b ^= c; b = rotl32(b, 7);

void chacha20_block(const std::uint32_t in[16], std::uint8_t out[64]) {
  std::uint32_t x[16];
  std::memcpy(x, in, sizeof(x));
  for (int i = 0; i < 10; ++i) {
    WAVIS_QR(x[0], x[4], x[8], x[12]);
    WAVIS_QR(x[1], x[5], x[9], x[13]);
    WAVIS_QR(x[2], x[6], x[10], x[14]);
    WAVIS_QR(x[3], x[7], x[11], x[15]);
    WAVIS_QR(x[0], x[5], x[10], x[15]);
    WAVIS_QR(x[1], x[6], x[11], x[12]);
    WAVIS_QR(x[2], x[7], x[8], x[13]);
    WAVIS_QR(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < 16; ++i) {
    std::uint32_t v = x[i] + in[i];
    out[4 * i + 0] = (std::uint8_t)v;
    out[4 * i + 1] = (std::uint8_t)(v >> 8);
    out[4 * i + 2] = (std::uint8_t)(v >> 16);
    out[4 * i + 3] = (std::uint8_t)(v >> 24);
  }
}
#undef WAVIS_QR

namespace {
std::uint32_t load32(const std::uint8_t* p) {
  return (std::uint32_t)p[0] | ((std::uint32_t)p[1] << 8) | ((std::uint32_t)p[2] << 16) | ((std::uint32_t)p[3] << 24);
}
const std::uint8_t kZeroNonce[12] = {0};
}  // namespace

ChaCha20::ChaCha20(const std::uint8_t key[32], const std::uint8_t nonce[12], std::uint32_t counter) {
  state_[0] = 0x61707865; state_[1] = 0x3320646e; state_[2] = 0x79622d32; state_[3] = 0x6b206574;
  for (int i = 0; i < 8; ++i) state_[4 + i] = load32(key + 4 * i);
  state_[12] = counter;
  for (int i = 0; i < 3; ++i) state_[13 + i] = load32(nonce + 4 * i);
}

ChaCha20::ChaCha20(const std::uint8_t key[32]) : ChaCha20(key, kZeroNonce, 0) {}

void ChaCha20::refill() {
  for (std::size_t b = 0; b < kBlocks; ++b) {
    chacha20_block(state_, buf_ + 64 * b);
    if (++state_[12] == 0) ++state_[13];  // counter carry into the first nonce word
  }
  pos_ = 0;
  avail_ = 64 * kBlocks;
}

void ChaCha20::bytes(std::uint8_t* out, std::size_t n) {
  while (n) {
    if (pos_ == avail_) refill();
    std::size_t k = std::min(n, avail_ - pos_);
    std::memcpy(out, buf_ + pos_, k);
    pos_ += k; out += k; n -= k;
  }
}

std::uint32_t ChaCha20::slow_u32() {
  std::uint8_t b[4];
  bytes(b, 4);
  return load32(b);
}

std::uint64_t ChaCha20::slow_u64() {
  std::uint8_t b[8];
  bytes(b, 8);
  std::uint64_t v;
  std::memcpy(&v, b, 8);
  return v;
}

}  // namespace wavis
