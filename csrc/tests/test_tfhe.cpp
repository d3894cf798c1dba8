// TFHE kernels on every SIMD path: exact FFT products, key generation and gate bootstrapping
// (blind rotation, sample extraction, key switching) bit-identical across paths and correct.
#include <algorithm>
#include <cstdint>
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

constexpr uint32_t kMu = 1u << 29;  // 1/8

Params make(int n, int k, int N, int bg, int l, int bks, int t) {
  Params P;
  P.n = n; P.k = k; P.N = N; P.bg = bg; P.l = l; P.bks = bks; P.t = t;
  P.lwe_std = 1.0 / (1 << 20);
  P.glwe_std = 1.0 / (1 << 30);
  P.validate();
  return P;
}

enum Op { NAND, AND, OR, XOR, NOR, XNOR, MUX };

// Key generation, then every gate (linear combination as in wavis/tfhe/gates.py, bootstrap,
// key switch) on all four input pairs, plus the raw GLWE accumulators; returns keys and outputs.
std::vector<uint32_t> gates(const Params& P, bool check_truth) {
  const Kernels& K = kernels();
  uint8_t seed[32] = {42};
  KeygenResult kr;
  K.keygen(P, seed, kr);
  auto sk = K.make_server_key(P, kr.mask_seed, kr.bsk_bodies.data(), kr.ksk_bodies.data());
  CHECK(sk->path() == (simd_path() == SimdPath::ifma ? SimdPath::avx512 : simd_path()));
  const std::size_t L = (std::size_t)P.n + 1, B = (std::size_t)P.extracted_lwe_dimension() + 1;
  std::vector<int> ops, va, vb, vs;
  std::vector<uint32_t> mus_a, mus_b, mus_s;
  for (int op = NAND; op <= MUX; ++op)
    for (int x = 0; x < 4; ++x) {
      ops.push_back(op);
      va.push_back(x & 1); vb.push_back(x >> 1); vs.push_back((x + op) & 1);
      mus_a.push_back(va.back() ? kMu : 0u - kMu);
      mus_b.push_back(vb.back() ? kMu : 0u - kMu);
      mus_s.push_back(vs.back() ? kMu : 0u - kMu);
    }
  const std::size_t m = ops.size();
  std::vector<uint32_t> A(m * L), Bc(m * L), S(m * L);
  uint8_t s1[32] = {1}, s2[32] = {2}, s3[32] = {3};
  K.lwe_encrypt(P, kr.lwe_key.data(), mus_a.data(), m, s1, A.data());
  K.lwe_encrypt(P, kr.lwe_key.data(), mus_b.data(), m, s2, Bc.data());
  K.lwe_encrypt(P, kr.lwe_key.data(), mus_s.data(), m, s3, S.data());
  // bootstrap inputs: one per gate, two for MUX (sel AND a, NOT sel AND b)
  std::vector<uint32_t> jobs;
  std::vector<std::size_t> first;
  for (std::size_t g = 0; g < m; ++g) {
    const uint32_t *a = &A[g * L], *b = &Bc[g * L], *s = &S[g * L];
    first.push_back(jobs.size() / L);
    std::vector<uint32_t> x(L), y(L);
    switch (ops[g]) {
      case NAND: for (std::size_t j = 0; j < L; ++j) x[j] = 0u - a[j] - b[j]; x[L - 1] += kMu; break;
      case AND: for (std::size_t j = 0; j < L; ++j) x[j] = a[j] + b[j]; x[L - 1] -= kMu; break;
      case OR: for (std::size_t j = 0; j < L; ++j) x[j] = a[j] + b[j]; x[L - 1] += kMu; break;
      case XOR: for (std::size_t j = 0; j < L; ++j) x[j] = 2u * (a[j] + b[j]); x[L - 1] += 2 * kMu; break;
      case NOR: for (std::size_t j = 0; j < L; ++j) x[j] = 0u - a[j] - b[j]; x[L - 1] -= kMu; break;
      case XNOR: for (std::size_t j = 0; j < L; ++j) x[j] = 0u - 2u * (a[j] + b[j]); x[L - 1] -= 2 * kMu; break;
      case MUX:
        for (std::size_t j = 0; j < L; ++j) { x[j] = s[j] + a[j]; y[j] = b[j] - s[j]; }
        x[L - 1] -= kMu;
        y[L - 1] -= kMu;
        break;
    }
    jobs.insert(jobs.end(), x.begin(), x.end());
    if (ops[g] == MUX) jobs.insert(jobs.end(), y.begin(), y.end());
  }
  const std::size_t J = jobs.size() / L;
  std::vector<uint32_t> big(J * B), acc(J * (P.k + 1) * (std::size_t)P.N), ks_in(m * B), out(m * L), ph(m);
  sk->bootstrap(jobs.data(), J, kMu, true, big.data(), 2);
  sk->bootstrap(jobs.data(), J, kMu, false, acc.data(), 2);
  for (std::size_t g = 0; g < m; ++g) {
    uint32_t* x = &ks_in[g * B];
    std::copy(&big[first[g] * B], &big[first[g] * B] + B, x);
    if (ops[g] == MUX) {
      for (std::size_t j = 0; j < B; ++j) x[j] += big[(first[g] + 1) * B + j];
      x[B - 1] += kMu;
    }
  }
  sk->key_switch(ks_in.data(), m, out.data(), 2);
  K.lwe_phase(P.n, kr.lwe_key.data(), out.data(), m, ph.data());
  if (check_truth) {
    for (std::size_t g = 0; g < m; ++g) {
      const int a = va[g], b = vb[g], s = vs[g];
      int want = 0;
      switch (ops[g]) {
        case NAND: want = !(a && b); break;
        case AND: want = a && b; break;
        case OR: want = a || b; break;
        case XOR: want = a ^ b; break;
        case NOR: want = !(a || b); break;
        case XNOR: want = !(a ^ b); break;
        case MUX: want = s ? a : b; break;
      }
      CHECK(((int32_t)ph[g] > 0) == (want == 1));
    }
  }
  // sample extraction of the accumulators is the extracted output (coefficient 0)
  for (std::size_t j = 0; j < J; ++j) CHECK(acc[j * (P.k + 1) * P.N + (std::size_t)P.k * P.N] == big[j * B + B - 1]);
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
TEST(tfhe_gates_bit_identical_and_correct_on_every_path) {
  const Params sets[] = {make(32, 1, 256, 8, 2, 4, 4), make(24, 1, 1024, 8, 2, 3, 4), make(24, 1, 1024, 6, 3, 2, 7),
                         make(16, 2, 1024, 10, 2, 3, 5)};
  for (const Params& P : sets) {
    auto res = under_each_path<std::vector<uint32_t>>([&] { return gates(P, true); });
    CHECK(all_equal(res));
  }
}

TEST(tfhe_params_validate) {
  CHECK_THROWS(make(0, 1, 1024, 8, 2, 3, 4));
  CHECK_THROWS(make(16, 1, 1000, 8, 2, 3, 4));
  CHECK_THROWS(make(16, 1, 1024, 16, 3, 3, 4));
}
