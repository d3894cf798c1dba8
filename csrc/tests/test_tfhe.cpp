// TFHE kernels on every SIMD path: exact FFT products, key generation and the bootstrapping
// primitives (blind rotation, sample extraction, key switching) bit-identical across paths and
// correct.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "check.hpp"
#include "paths.hpp"
#include "wavis/tfhe/api.hpp"

using namespace wavis;
using namespace wavis::tfhe;
using wavis_test::all_equal;
using wavis_test::under_each_path;

namespace {

constexpr uint32_t kEighth = 0x20000000u;  // the torus value 1/8

Params make(int n, int k, int N, int bg, int l, int bks, int t) {
  Params P;
  P.n = n; P.k = k; P.N = N; P.bg = bg; P.l = l; P.bks = bks; P.t = t;
  P.lwe_std = 1.0 / (1 << 20);
  P.glwe_std = 1.0 / (1 << 30);
  P.validate();
  return P;
}

// Key generation, then the primitives the gates are built from (wavis/tfhe/gates.py owns the
// gates): blind rotation (accumulators, and sample-extracted), key switching, on fresh
// encryptions of ±1/8. Checks the signs survive (bootstrap output under the extracted key,
// key-switched output under the small key) and returns keys and outputs for the cross-path check.
std::vector<uint32_t> primitives(const Params& P, bool check_signs) {
  const Kernels& K = kernels();
  uint8_t seed[32] = {42};
  KeygenResult kr;
  K.keygen(P, seed, kr);
  auto sk = K.make_server_key(P, kr.mask_seed, kr.bsk_bodies.data(), kr.ksk_bodies.data());
  CHECK(sk->path() == (simd_path() == SimdPath::ifma ? SimdPath::avx512 : simd_path()));
  const std::size_t L = (std::size_t)P.n + 1, KN = (std::size_t)P.extracted_lwe_dimension(), B = KN + 1;
  const std::size_t m = 24;
  std::vector<uint32_t> mus(m);
  for (std::size_t i = 0; i < m; ++i) mus[i] = (i * 7) % 3 ? kEighth : 0u - kEighth;
  std::vector<uint32_t> in(m * L);
  uint8_t s1[32] = {1};
  K.lwe_encrypt(P, kr.lwe_key.data(), mus.data(), m, s1, in.data());
  const uint32_t mu = kEighth / 2;  // any output amplitude
  std::vector<uint32_t> big(m * B), acc(m * (P.k + 1) * (std::size_t)P.N), out(m * L), ph_big(m), ph(m);
  sk->bootstrap(in.data(), m, mu, true, big.data(), 2);
  sk->bootstrap(in.data(), m, mu, false, acc.data(), 2);
  sk->key_switch(big.data(), m, out.data(), 2);
  K.lwe_phase((int)KN, kr.glwe_key.data(), big.data(), m, ph_big.data());
  K.lwe_phase(P.n, kr.lwe_key.data(), out.data(), m, ph.data());
  if (check_signs) {
    for (std::size_t i = 0; i < m; ++i) {
      const bool positive = mus[i] == kEighth;
      CHECK(((int32_t)ph_big[i] > 0) == positive);
      CHECK(((int32_t)ph[i] > 0) == positive);
      // |phase - (±mu)| well inside the margin
      const int32_t want = positive ? (int32_t)mu : -(int32_t)mu;
      CHECK(std::abs((int64_t)(int32_t)ph_big[i] - want) < (int64_t)(mu / 4));
    }
  }
  // the extracted body is the accumulator's body coefficient 0
  for (std::size_t j = 0; j < m; ++j) CHECK(acc[j * (P.k + 1) * P.N + (std::size_t)P.k * P.N] == big[j * B + KN]);
  std::vector<uint32_t> all(kr.bsk_bodies);
  all.insert(all.end(), kr.ksk_bodies.begin(), kr.ksk_bodies.end());
  all.insert(all.end(), acc.begin(), acc.end());
  all.insert(all.end(), out.begin(), out.end());
  return all;
}

}  // namespace

TEST(tfhe_fft_product_exact_on_every_path) {
  for (int N : {16, 256, 1024, 2048}) {
    std::mt19937_64 g(N);
    std::vector<uint32_t> a(N);
    std::vector<int32_t> b(N);
    for (int i = 0; i < N; ++i) {
      a[i] = (uint32_t)g();
      b[i] = (int32_t)(g() % 256) - 128;
    }
    std::vector<uint32_t> ref(N, 0);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) {
        const uint32_t p = a[i] * (uint32_t)b[j];
        if (i + j < N) ref[i + j] += p; else ref[i + j - N] -= p;
      }
    auto got = under_each_path<std::vector<uint32_t>>([&] {
      std::vector<uint32_t> o(N);
      kernels().negacyclic_mul(a.data(), b.data(), o.data(), N);
      return o;
    });
    for (auto& o : got) CHECK(o == ref);
  }
}

// N = 1024 with l = 2 and l = 3 and k = 1, 2 exercise the radix-8 kernels (and, on AVX2, the
// decomposition fused into the first FFT pass); N = 256 the radix-4 / portable FFT.
TEST(tfhe_bootstrap_and_key_switch_bit_identical_and_correct_on_every_path) {
  const Params sets[] = {make(32, 1, 256, 8, 2, 4, 4), make(24, 1, 1024, 8, 2, 3, 4), make(24, 1, 1024, 6, 3, 2, 7),
                         make(16, 2, 1024, 10, 2, 3, 5)};
  for (const Params& P : sets) {
    auto res = under_each_path<std::vector<uint32_t>>([&] { return primitives(P, true); });
    CHECK(all_equal(res));
  }
}

TEST(tfhe_params_validate) {
  CHECK_THROWS(make(0, 1, 1024, 8, 2, 3, 4));
  CHECK_THROWS(make(16, 1, 1000, 8, 2, 3, 4));
  CHECK_THROWS(make(16, 1, 1024, 16, 3, 3, 4));
}
