// Ring / CKKS kernels: exactness against plain big-integer arithmetic, and bit-identical results
// on every SIMD path this CPU supports.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "check.hpp"
#include "paths.hpp"
#include "wavis/ckks.hpp"
#include "wavis/ring.hpp"

using namespace wavis;
using wavis_test::all_equal;
using wavis_test::under_each_path;

namespace {

std::vector<u64> primes_for(std::size_t N, std::vector<int> bits) {
  std::vector<u64> out;
  for (int b : bits) {
    auto p = generate_ntt_primes(b, 1, N, out, true);
    out.push_back(p[0]);
  }
  return out;
}

// the largest NTT prime below 2^62 (62 bits: the widest the core accepts; generate_ntt_primes stops at 61)
u64 prime62(std::size_t N, const std::vector<u64>& exclude) {
  for (u64 q = (u64(1) << 62) - 2 * N + 1;; q -= 2 * N)
    if (is_prime(q) && std::find(exclude.begin(), exclude.end(), q) == exclude.end()) return q;
}

std::vector<u64> primes_for(std::size_t N, std::vector<int> bits, bool with62) {
  auto out = primes_for(N, bits);
  if (with62) out.push_back(prime62(N, out));
  return out;
}

std::vector<u64> random_rows(const RnsContext& c, const std::vector<std::size_t>& idx, std::size_t batch,
                             std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<u64> v(batch * idx.size() * c.N);
  for (std::size_t r = 0; r < batch * idx.size(); ++r) {
    const u64 q = c.moduli[idx[r % idx.size()]];
    for (std::size_t n = 0; n < c.N; ++n) v[r * c.N + n] = (r + n) % 7 == 0 ? q - 1 : g() % q;  // edge values too
  }
  return v;
}

}  // namespace

TEST(ntt_product_matches_schoolbook_on_every_path) {
  const std::size_t N = 64;
  RnsContext c(N, primes_for(N, {30, 49, 55, 61}));
  for (std::size_t i = 0; i < c.moduli.size(); ++i) {
    const u64 q = c.moduli[i];
    std::vector<std::size_t> idx{i};
    auto a = random_rows(c, idx, 1, 1 + i), b = random_rows(c, idx, 1, 100 + i);
    std::vector<u64> ref(N, 0);
    for (std::size_t x = 0; x < N; ++x)
      for (std::size_t y = 0; y < N; ++y) {
        const u64 p = mul_mod_slow(a[x], b[y], q);
        const std::size_t k = (x + y) % N;
        ref[k] = x + y < N ? add_mod(ref[k], p, q) : sub_mod(ref[k], p, q);
      }
    auto got = under_each_path<std::vector<u64>>([&] {
      auto A = a, B = b;
      c.ntt(A.data(), idx.data(), 1);
      c.ntt(B.data(), idx.data(), 1);
      c.mul(A.data(), B.data(), A.data(), idx.data(), 1, 1, false);
      c.intt(A.data(), idx.data(), 1);
      return A;
    });
    for (auto& g : got) CHECK(g == ref);
  }
}

TEST(ntt_round_trip_bit_identical_across_paths) {
  const std::size_t N = 4096;
  RnsContext c(N, primes_for(N, {36, 49, 60, 61}));
  std::vector<std::size_t> idx{0, 1, 2, 3};
  const auto a = random_rows(c, idx, 1, 7);
  auto fwd = under_each_path<std::vector<u64>>([&] {
    auto A = a;
    c.ntt(A.data(), idx.data(), idx.size());
    return A;
  });
  CHECK(all_equal(fwd));
  auto back = under_each_path<std::vector<u64>>([&] {
    auto A = fwd[0];
    c.intt(A.data(), idx.data(), idx.size());
    return A;
  });
  for (auto& b : back) CHECK(b == a);
}

TEST(elementwise_ops_bit_identical_across_paths) {
  const std::size_t N = 256;
  RnsContext c(N, primes_for(N, {40, 49, 58, 61}));
  std::vector<std::size_t> idx{0, 1, 2, 3};
  const std::size_t L = idx.size(), batch = 2, rows = batch * L;
  const auto a = random_rows(c, idx, batch, 1), b = random_rows(c, idx, batch, 2);
  std::vector<u64> scalars{c.moduli[0] - 1, 3, c.moduli[2] / 3, 1};
  auto res = under_each_path<std::vector<u64>>([&] {
    std::vector<u64> all, o(a.size());
    auto put = [&] { all.insert(all.end(), o.begin(), o.end()); };
    c.add(a.data(), b.data(), o.data(), idx.data(), L, rows); put();
    c.sub(a.data(), b.data(), o.data(), idx.data(), L, rows); put();
    c.neg(a.data(), o.data(), idx.data(), L, rows); put();
    c.mul(a.data(), b.data(), o.data(), idx.data(), L, rows, false); put();
    c.mul(a.data(), b.data(), o.data(), idx.data(), L, rows, true); put();
    c.mul_scalar(a.data(), scalars.data(), o.data(), idx.data(), L, rows); put();
    c.automorphism(a.data(), o.data(), 5, idx.data(), L, rows, true); put();
    c.automorphism(a.data(), o.data(), 2 * N - 1, idx.data(), L, rows, false); put();
    return all;
  });
  CHECK(all_equal(res));
  // spot-check against the scalar definitions
  const std::size_t n = 3 * N + 5;  // row 3 (prime 3), coefficient 5
  const u64 q = c.moduli[3];
  const std::size_t block = a.size();
  CHECK(res[0][n] == add_mod(a[n], b[n], q));
  CHECK(res[0][block + n] == sub_mod(a[n], b[n], q));
  CHECK(res[0][2 * block + n] == neg_mod(a[n], q));
  CHECK(res[0][3 * block + n] == mul_mod_slow(a[n], b[n], q));
}

TEST(products_exact_for_every_prime_width_on_every_path) {
  // the pointwise product and the key-switching inner product: the avx2 path has two kernels
  // (q < 2^50: double-precision quotient; q >= 2^50: one-word Barrett), the edges of both
  const std::size_t N = 64;
  RnsContext c(N, primes_for(N, {30, 49, 50, 51, 52, 55, 59, 60, 61}, true));
  const std::size_t L = c.moduli.size();
  std::vector<std::size_t> idx(L);
  for (std::size_t i = 0; i < L; ++i) idx[i] = i;
  std::vector<u64> a(L * N), b(L * N), z(L * N);
  std::mt19937_64 g(17);
  for (std::size_t i = 0; i < L; ++i) {
    const u64 q = c.moduli[i];
    const u64 edge[] = {0, 1, 2, q - 1, q - 2, q / 2, (q + 1) / 2, q >> 1 | 1, (u64(1) << 32) % q, (u64(1) << 32) - 1};
    for (std::size_t n = 0; n < N; ++n) {
      a[i * N + n] = n < 10 ? edge[n] : (n < 20 ? q - 1 - (g() & 0xff) : g() % q);
      b[i * N + n] = n < 10 ? edge[(n * 3) % 10] : (n < 20 ? q - 1 - (g() & 0xffff) : g() % q);
      z[i * N + n] = n % 2 ? q - 1 : g() % q;
    }
  }
  auto res = under_each_path<std::vector<u64>>([&] {
    std::vector<u64> o(L * N), acc = z;
    c.mul(a.data(), b.data(), o.data(), idx.data(), L, L, false);
    c.mul(a.data(), b.data(), acc.data(), idx.data(), L, L, true);
    for (std::size_t r = 0; r < L; ++r)
      for (std::size_t n = 0; n < N; ++n) {
        const u64 q = c.moduli[r];
        CHECK(o[r * N + n] == mul_mod_slow(a[r * N + n], b[r * N + n], q));
        CHECK(acc[r * N + n] == add_mod(mul_mod_slow(a[r * N + n], b[r * N + n], q), z[r * N + n], q));
      }
    o.insert(o.end(), acc.begin(), acc.end());
    return o;
  });
  CHECK(all_equal(res));
  // key switching with wide special primes and a wide q_0 (the avx2 inner product's Barrett rows)
  auto wp = primes_for(N, {60, 50, 51}, true);  // q_0 60, q_1 50, q_2 51 bits; p_0 62 bits
  wp.push_back(generate_ntt_primes(61, 1, N, wp, true)[0]);  // p_1 61 bits
  RnsContext w(N, wp);
  std::vector<std::size_t> iq{0, 1, 2}, ip{3, 4};
  Digits dg;
  dg.start = {0, 2};
  dg.end = {2, 3};
  const std::size_t R = 5, D = 2, LW = w.moduli.size();
  auto x = random_rows(w, iq, 1, 23);
  std::vector<u64> key(D * 2 * LW * N);
  for (std::size_t r = 0; r < D * 2 * LW; ++r)
    for (std::size_t n = 0; n < N; ++n) key[r * N + n] = n % 5 == 0 ? w.moduli[r % LW] - 1 : g() % w.moduli[r % LW];
  auto ks = under_each_path<std::vector<u64>>([&] {
    KsPlan P(w, iq, ip, dg);
    std::vector<u64> out(2 * R * N), exts(D * R * N), rot(2 * R * N);
    key_switch_ext(P, x.data(), key.data(), LW, x.data(), 1, nullptr, out.data());
    ks_mod_up(P, x.data(), exts.data());
    auto perm = w.ntt_perm(2 * N - 1);
    ks_inner(P, exts.data(), D, key.data(), LW, perm->data(), x.data(), 1, rot.data());
    // the inner product against its definition, row by row: aut(Σ_d exts[d]·key[d] + P·x)
    for (std::size_t t = 0; t < R; ++t) {
      const u64 q = w.moduli[t];
      for (std::size_t n = 0; n < N; n += 7)
        for (std::size_t c2 = 0; c2 < 2; ++c2) {
          const std::size_t k = (*perm)[n];
          u64 want = c2 == 0 && t < 3 ? mul_mod_slow(x[t * N + k], P.p_mod[t], q) : 0;
          for (std::size_t d = 0; d < D; ++d)
            want = add_mod(want, mul_mod_slow(exts[(d * R + t) * N + k],
                                              key[((d * 2 + c2) * LW + t) * N + k], q), q);
          CHECK(rot[(c2 * R + t) * N + n] == want);
        }
    }
    out.insert(out.end(), rot.begin(), rot.end());
    return out;
  });
  CHECK(all_equal(ks));
}

TEST(mod_down_and_rescale_are_exact_rounded_divisions) {
  const std::size_t N = 32;
  RnsContext c(N, primes_for(N, {30, 31}));
  const u64 q = c.moduli[0], p = c.moduli[1];
  auto a = random_rows(c, {0, 1}, 1, 3);
  // CRT value x of each coefficient, in [0, qp)
  const u64 p_inv_q = inv_mod(p % q, q);
  auto crt = [&](u64 aq, u64 ap) -> u128 {
    const u64 t = mul_mod_slow(sub_mod(aq, ap % q, q), p_inv_q, q);  // x = ap + p·t
    return (u128)ap + (u128)p * t;
  };
  std::vector<u64> out(N);
  c.mod_down(a.data(), out.data(), {0}, {1});
  for (std::size_t n = 0; n < N; ++n) {
    const u128 x = crt(a[n], a[N + n]);
    CHECK(out[n] == (u64)(((x + p / 2) / p) % q));
  }
  // rescale: NTT domain in and out, divides by the last prime
  std::vector<u64> e = a;
  std::vector<std::size_t> idx{0, 1};
  c.ntt(e.data(), idx.data(), 2);
  auto got = under_each_path<std::vector<u64>>([&] {
    std::vector<u64> o(N);
    c.rescale(e.data(), o.data(), idx);
    std::vector<std::size_t> i0{0};
    c.intt(o.data(), i0.data(), 1);
    return o;
  });
  CHECK(all_equal(got));
  for (std::size_t n = 0; n < N; ++n) {
    const u128 x = crt(a[n], a[N + n]);
    CHECK(got[0][n] == (u64)(((x + p / 2) / p) % q));
  }
}

TEST(crt_compose_is_the_centred_value) {
  const std::size_t N = 16;
  RnsContext c(N, primes_for(N, {24, 25}));
  const u64 q0 = c.moduli[0], q1 = c.moduli[1];
  const std::int64_t Q = (std::int64_t)(q0 * q1);
  std::vector<std::int64_t> vals{0, 1, -1, Q / 2, -(Q / 2) + 1, 123456789, -987654321, 42, 7, -7, 1000, -1000, 5, 6, 9, 11};
  std::vector<u64> a(2 * N);
  for (std::size_t n = 0; n < N; ++n) {
    a[n] = (u64)(((vals[n] % (std::int64_t)q0) + (std::int64_t)q0) % (std::int64_t)q0);
    a[N + n] = (u64)(((vals[n] % (std::int64_t)q1) + (std::int64_t)q1) % (std::int64_t)q1);
  }
  std::vector<double> out(N);
  c.crt_compose(a.data(), out.data(), {0, 1});
  for (std::size_t n = 0; n < N; ++n) CHECK(out[n] == (double)vals[n]);
  // from_signed is its inverse on these values
  std::vector<u64> back(2 * N);
  c.from_signed(vals.data(), 1, back.data(), {0, 1});
  CHECK(back == a);
}

TEST(key_switching_bit_identical_across_paths) {
  const std::size_t N = 256;
  RnsContext c(N, primes_for(N, {49, 45, 55, 61}));  // IFMA primes and wide ones
  std::vector<std::size_t> iq{0, 1, 2}, ip{3};
  Digits dg;
  dg.start = {0, 1, 2};
  dg.end = {1, 2, 3};
  const std::size_t R = 4, D = 3, L = c.moduli.size();
  auto a = random_rows(c, iq, 1, 11);
  std::vector<u64> key(D * 2 * L * N);
  std::mt19937_64 g(5);
  for (std::size_t r = 0; r < D * 2 * L; ++r)
    for (std::size_t n = 0; n < N; ++n) key[r * N + n] = g() % c.moduli[r % L];
  auto res = under_each_path<std::vector<u64>>([&] {
    KsPlan P(c, iq, ip, dg);
    std::vector<u64> ks(2 * R * N), exts(D * R * N), inner(2 * R * N), rot(2 * R * N), down(2 * 3 * N);
    key_switch_ext(P, a.data(), key.data(), L, nullptr, 0, nullptr, ks.data());
    ks_mod_up(P, a.data(), exts.data());
    ks_inner(P, exts.data(), D, key.data(), L, nullptr, nullptr, 0, inner.data());
    CHECK(inner == ks);  // the hoisted split computes the same inner product
    auto perm = c.ntt_perm(5);
    ks_inner(P, exts.data(), D, key.data(), L, perm->data(), a.data(), 1, rot.data());
    std::vector<u64> rot_ext(2 * R * N);  // the fused ModUp with the same output automorphism
    key_switch_ext(P, a.data(), key.data(), L, a.data(), 1, perm->data(), rot_ext.data());
    CHECK(rot_ext == rot);
    mod_down_ntt(c, ks.data(), down.data(), 2, iq, ip);
    std::vector<u64> all = ks;
    all.insert(all.end(), rot.begin(), rot.end());
    all.insert(all.end(), down.begin(), down.end());
    return all;
  });
  CHECK(all_equal(res));
}

TEST(simd_path_parsing_and_refusal) {
  CHECK(parse_simd_path("portable") == SimdPath::portable);
  CHECK(parse_simd_path("0") == SimdPath::portable);
  CHECK(parse_simd_path("avx2") == SimdPath::avx2);
  CHECK(parse_simd_path("avx512") == SimdPath::avx512);
  CHECK(parse_simd_path("ifma") == SimdPath::ifma);
  CHECK_THROWS(parse_simd_path("avx1024"));
  CHECK(cpu_supports(SimdPath::portable));
  CHECK(supported_paths().front() == SimdPath::portable);
  CHECK(cpu_best_path() == supported_paths().back());
  for (int p = 0; p < 4; ++p)
    if (!cpu_supports((SimdPath)p)) CHECK_THROWS(set_simd_path((SimdPath)p));
  // a lower path switches the ring kernels off
  const SimdPath saved = simd_path();
  set_simd_path(SimdPath::portable);
  CHECK(!simd_active() && !ifma_active());
  set_simd_path(saved);
  CHECK(simd_path() == saved);
}

TEST(mod_down_constants_are_the_definitions) {
  // RnsContext::mod_down_table: the one place ModDown / rescale constants are derived (the CUDA
  // backend uploads them), checked against the definitions with 128-bit arithmetic.
  const std::size_t N = 16;
  RnsContext c(N, primes_for(N, {61, 55, 50, 45, 36}));
  const std::vector<std::size_t> iq{0, 1, 2}, ip{3, 4};
  auto t = c.mod_down_table(iq, ip);
  CHECK(t == c.mod_down_table(iq, ip));  // cached
  const u128 P = (u128)c.moduli[3] * c.moduli[4];
  for (std::size_t i = 0; i < iq.size(); ++i) {
    const u64 q = c.moduli[iq[i]];
    CHECK(t->p_mod[i] == (u64)(P % q));
    CHECK(t->half_p[i] == (u64)(((P - 1) / 2) % q));
    CHECK(mul_mod_slow(t->p_inv[i], t->p_mod[i], q) == 1);
    CHECK(t->p_inv_shoup[i] == shoup_precompute(t->p_inv[i], q));
  }
  CHECK(t->p_recip.size() == 2 && t->p_recip[0] == 1.0 / (double)c.moduli[3]);
}
