// ChaCha20 (RFC 8439 test vector, stream consistency, counter carry) and the thread pool.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "wavis/chacha20.hpp"
#include "wavis/prng.hpp"
#include "wavis/threads.hpp"

using namespace wavis;

TEST(chacha20_rfc8439_block_vector) {
  // RFC 8439 §2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, block counter 1
  std::uint8_t key[32], nonce[12] = {0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0};
  for (int i = 0; i < 32; ++i) key[i] = (std::uint8_t)i;
  const std::uint8_t expect[16] = {0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15,
                                   0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4};
  const std::uint8_t expect_tail[4] = {0xa2, 0x50, 0x3c, 0x4e};
  ChaCha20 s(key, nonce, 1);
  std::uint8_t out[64];
  s.bytes(out, 64);
  CHECK(std::memcmp(out, expect, 16) == 0);
  CHECK(std::memcmp(out + 60, expect_tail, 4) == 0);
}

TEST(chacha20_words_bytes_and_refills_agree) {
  std::uint8_t key[32] = {1, 2, 3};
  ChaCha20 a(key), b(key);
  const std::size_t n = 3 * 64 * ChaCha20::kBlocks + 13;  // across refills, unaligned tail
  std::vector<std::uint8_t> bytes(n);
  a.bytes(bytes.data(), n);
  std::vector<std::uint8_t> mixed;
  while (mixed.size() + 8 <= n) {  // words, bytes and 64-bit words interleaved
    std::uint32_t w = b.next_u32();
    for (int i = 0; i < 4; ++i) mixed.push_back((std::uint8_t)(w >> (8 * i)));
    mixed.push_back(b.next_byte());
    std::uint64_t d = b.next_u64();
    for (int i = 0; i < 8 && mixed.size() < n; ++i) mixed.push_back((std::uint8_t)(d >> (8 * i)));
  }
  CHECK(std::equal(mixed.begin(), mixed.end(), bytes.begin()));
}

TEST(chacha20_counter_carries_into_the_nonce) {
  std::uint8_t key[32] = {9}, n0[12] = {0}, n1[12] = {1, 0};
  ChaCha20 wrap(key, n0, 0xffffffffu), next(key, n1, 0);
  std::uint8_t a[128], b[64];
  wrap.bytes(a, 128);  // block 2^32 - 1, then the carried block
  next.bytes(b, 64);
  CHECK(std::memcmp(a + 64, b, 64) == 0);
}

TEST(prng_samplers_in_range) {
  std::uint8_t key[32] = {7}, nonce[12] = {0};
  Prng p(key, nonce);
  std::vector<std::int64_t> t(1000), h(1000), g(1000);
  p.ternary(t.data(), t.size());
  p.ternary_hw(h.data(), h.size(), 64);
  p.gaussian(g.data(), g.size(), 3.2);
  int nz = 0;
  for (std::size_t i = 0; i < 1000; ++i) {
    CHECK(t[i] >= -1 && t[i] <= 1);
    CHECK(h[i] >= -1 && h[i] <= 1);
    nz += h[i] != 0;
    CHECK(g[i] >= -19 && g[i] <= 19);  // truncated at 6σ
  }
  CHECK(nz == 64);
  std::vector<u64> u(1000);
  p.uniform_below(u.data(), u.size(), 3);
  for (u64 x : u) CHECK(x < 3);
}

TEST(thread_pool_runs_every_index_once_and_rethrows) {
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(hits.size(), [&](std::size_t i) { hits[i].fetch_add(1); });
  for (auto& h : hits) CHECK(h.load() == 1);
  std::atomic<int> ran{0};
  CHECK_THROWS(parallel_for(64, [&](std::size_t i) {
    ran.fetch_add(1);
    if (i == 17) throw std::runtime_error("boom");
  }));
  CHECK(ran.load() == 64);  // the other indices still ran
  std::vector<int> cover(101, 0);
  parallel_chunks(cover.size(), 3, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) cover[i] += 1;
  });
  for (int x : cover) CHECK(x == 1);
  CHECK(thread_count() >= 1);
}
