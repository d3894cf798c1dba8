// RnsContext (include/wavis/ring.hpp): NTT tables, element-wise ops, fast basis conversion,
// ModDown, rescale, exact CRT, automorphisms. Plain C++; the Python class is csrc/bindings/ring.cpp.
//
// Sources: Bajard–Eynard–Hasan–Zucca, SAC 2016 and Halevi–Polyakov–Shoup, CT-RSA 2019 (fast
// basis conversion); Han–Ki, CT-RSA 2020 and Cheon–Han–Kim–Kim–Song, SAC 2018 (ModDown for
// hybrid key switching); NTT kernels in src/ntt.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "wavis/ring.hpp"

#include "wavis/simd256.hpp"  // outside namespace wavis (it opens wavis::simd2)
#include "wavis/simd512.hpp"  // outside namespace wavis (it opens wavis::simd)

namespace wavis {

// ======================================================================= CRT / BConv ====
struct CrtTable {
  std::size_t L = 0, W = 0;                   // limbs, words of Q
  std::vector<u64> q, qhat_inv, qhat_inv_shoup;
  std::vector<long double> q_recip;
  std::vector<u64> qhat;                      // L x W words (little-endian)
  std::vector<u64> Q, Qhalf;                  // W words each
};

namespace {
// big = big * w (in place, `words` words, returns carry)
u64 big_mul_word(u64* x, std::size_t words, u64 w) {
  u64 carry = 0;
  for (std::size_t k = 0; k < words; ++k) {
    u128 p = (u128)x[k] * w + carry;
    x[k] = (u64)p;
    carry = (u64)(p >> 64);
  }
  return carry;
}
}  // namespace

RnsContext::RnsContext(std::size_t N_, const std::vector<u64>& moduli_) : N(N_), moduli(moduli_) {
  if (N < 2 || (N & (N - 1)) || N > (std::size_t(1) << 20))
    throw std::invalid_argument("N must be a power of two in [2, 2^20], got " + std::to_string(N));
  if (moduli.empty()) throw std::invalid_argument("moduli must not be empty");
  logN = 0;
  while ((std::size_t(1) << logN) < N) ++logN;
  bitrev.resize(N);
  for (std::size_t k = 0; k < N; ++k) {
    std::uint32_t r = 0;
    for (int b = 0; b < logN; ++b) r |= (std::uint32_t)((k >> b) & 1) << (logN - 1 - b);
    bitrev[k] = r;
  }
  for (std::size_t i = 0; i < moduli.size(); ++i) {
    u64 q = moduli[i];
    if (q < 3 || (q >> 62)) throw std::invalid_argument("modulus " + std::to_string(q) + " is not in [3, 2^62)");
    if ((q - 1) % (2 * N)) throw std::invalid_argument("modulus " + std::to_string(q) + " is not 1 mod 2N");
    if (!is_prime(q)) throw std::invalid_argument("modulus " + std::to_string(q) + " is not prime");
    for (std::size_t j = 0; j < i; ++j)
      if (moduli[j] == q) throw std::invalid_argument("modulus " + std::to_string(q) + " appears twice");
  }
  tables.resize(moduli.size());
  for (std::size_t i = 0; i < moduli.size(); ++i) {
    NttTable& t = tables[i];
    const u64 q = moduli[i];
    t.mod = Modulus(q);
    t.psi = minimal_primitive_root(2 * N, q);
    const u64 ipsi = inv_mod(t.psi, q);
    std::vector<u64> pw(N), ipw(N);
    pw[0] = ipw[0] = 1;
    for (std::size_t k = 1; k < N; ++k) {
      pw[k] = t.mod.mul(pw[k - 1], t.psi);
      ipw[k] = t.mod.mul(ipw[k - 1], ipsi);
    }
    t.psi_rev.resize(N); t.psi_rev_shoup.resize(N); t.ipsi_rev.resize(N); t.ipsi_rev_shoup.resize(N);
    for (std::size_t k = 0; k < N; ++k) {
      t.psi_rev[k] = pw[bitrev[k]];
      t.psi_rev_shoup[k] = shoup_precompute(t.psi_rev[k], q);
      t.ipsi_rev[k] = ipw[bitrev[k]];
      t.ipsi_rev_shoup[k] = shoup_precompute(t.ipsi_rev[k], q);
    }
    t.n_inv = inv_mod(N % q, q);
    t.n_inv_shoup = shoup_precompute(t.n_inv, q);
    t.wn_inv = mul_mod_slow(t.ipsi_rev[N > 1 ? 1 : 0], t.n_inv, q);
    t.wn_inv_shoup = shoup_precompute(t.wn_inv, q);
    if (q < (u64(1) << 50)) {  // 52-bit Shoup companions for the IFMA kernels
      auto s52 = [q](u64 w) { return (u64)(((u128)w << 52) / q); };
      t.psi_rev_shoup52.resize(N);
      t.ipsi_rev_shoup52.resize(N);
      for (std::size_t k = 0; k < N; ++k) {
        t.psi_rev_shoup52[k] = s52(t.psi_rev[k]);
        t.ipsi_rev_shoup52[k] = s52(t.ipsi_rev[k]);
      }
      t.n_inv_shoup52 = s52(t.n_inv);
      t.wn_inv_shoup52 = s52(t.wn_inv);
    }
  }
}

RnsContext::~RnsContext() = default;

void RnsContext::ntt(u64* a, const std::size_t* idx, std::size_t rows) const {
  for_rows(rows, N, [&](std::size_t r) { ntt_forward(a + r * N, tables[idx[r]], N); }, 1 << 13);
}
void RnsContext::intt(u64* a, const std::size_t* idx, std::size_t rows) const {
  for_rows(rows, N, [&](std::size_t r) { ntt_inverse(a + r * N, tables[idx[r]], N); }, 1 << 13);
}

std::shared_ptr<const BConvTable> RnsContext::bconv_table(const std::vector<std::size_t>& in,
                                                          const std::vector<std::size_t>& out) const {
  auto key = std::make_pair(in, out);
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = bconv_cache_.find(key);
    if (it != bconv_cache_.end()) return it->second;
  }
  auto t = std::make_shared<BConvTable>();
  t->in = in;
  t->out = out;
  const std::size_t L = in.size(), K = out.size();
  t->qhat_inv.resize(L); t->qhat_inv_shoup.resize(L);
  for (std::size_t i = 0; i < L; ++i) {
    const Modulus& qi = mod(in[i]);
    u64 prod = 1;
    for (std::size_t k = 0; k < L; ++k)
      if (k != i) prod = qi.mul(prod, qi.reduce(moduli[in[k]]));
    t->qhat_inv[i] = inv_mod(prod, qi.q);
    t->qhat_inv_shoup[i] = shoup_precompute(t->qhat_inv[i], qi.q);
  }
  t->qhat_mod_p.resize(K * L);
  t->qhat_mod_p_shoup.reserve(K * L);
  for (std::size_t j = 0; j < K; ++j) {
    const Modulus& pj = mod(out[j]);
    for (std::size_t i = 0; i < L; ++i) {
      u64 prod = 1;
      for (std::size_t k = 0; k < L; ++k)
        if (k != i) prod = pj.mul(prod, pj.reduce(moduli[in[k]]));
      t->qhat_mod_p[j * L + i] = prod;
      t->qhat_mod_p_shoup.push_back(shoup_precompute(prod, pj.q));
    }
  }
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (bconv_cache_.size() > 4096) bconv_cache_.clear();
  bconv_cache_[key] = t;
  return t;
}

void RnsContext::base_convert(const u64* a, u64* out, const std::vector<std::size_t>& in_idx,
                              const std::vector<std::size_t>& out_idx) const {
  auto t = bconv_table(in_idx, out_idx);
  const std::size_t L = in_idx.size(), K = out_idx.size();
  std::vector<u64> y(L * N);
  for_rows(L, N, [&](std::size_t i) {
    const u64 q = moduli[in_idx[i]], w = t->qhat_inv[i], wp = t->qhat_inv_shoup[i];
    const u64* src = a + i * N;
    u64* dst = y.data() + i * N;
    for (std::size_t n = 0; n < N; ++n) dst[n] = mul_shoup(src[n], w, wp, q);
  });
  constexpr std::size_t B = 256;
  for_rows(K, N * L, [&](std::size_t j) {
    const Modulus& pj = mod(out_idx[j]);
    const u64* c = t->qhat_mod_p.data() + j * L;
    u128 acc[B];
    for (std::size_t n0 = 0; n0 < N; n0 += B) {
      const std::size_t nb = std::min(B, N - n0);
      for (std::size_t n = 0; n < nb; ++n) acc[n] = 0;
      std::size_t pending = 0;
      for (std::size_t i = 0; i < L; ++i) {
        const u64* yi = y.data() + i * N + n0;
        const u64 ci = c[i];
        for (std::size_t n = 0; n < nb; ++n) acc[n] += (u128)yi[n] * ci;
        if (++pending == 14) {  // 15 products of < 2^124 each fit in 128 bits
          for (std::size_t n = 0; n < nb; ++n) acc[n] = pj.reduce128(acc[n]);
          pending = 0;
        }
      }
      u64* dst = out + j * N + n0;
      for (std::size_t n = 0; n < nb; ++n) dst[n] = pj.reduce128(acc[n]);
    }
  });
}

std::shared_ptr<const ModDownTable> RnsContext::mod_down_table(const std::vector<std::size_t>& iq,
                                                              const std::vector<std::size_t>& ip) const {
  auto key = std::make_pair(iq, ip);
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = moddown_cache_.find(key);
    if (it != moddown_cache_.end()) return it->second;
  }
  auto t = std::make_shared<ModDownTable>();
  t->iq = iq;
  t->ip = ip;
  for (std::size_t i : iq) {
    const Modulus& qi = mod(i);
    u64 Pm = 1;
    for (std::size_t j : ip) Pm = qi.mul(Pm, qi.reduce(moduli[j]));
    t->p_mod.push_back(Pm);
    t->half_p.push_back(qi.mul(sub_mod(Pm, 1, qi.q), (qi.q + 1) / 2));  // (P - 1)·2^-1 = (P - 1)/2 (P odd)
    t->p_inv.push_back(inv_mod(Pm, qi.q));
    t->p_inv_shoup.push_back(shoup_precompute(t->p_inv.back(), qi.q));
  }
  for (std::size_t j : ip) t->p_recip.push_back(1.0 / (double)moduli[j]);
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (moddown_cache_.size() > 4096) moddown_cache_.clear();
  moddown_cache_[key] = t;
  return t;
}

std::shared_ptr<const CrtTable> RnsContext::crt_table(const std::vector<std::size_t>& idx) const {
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = crt_cache_.find(idx);
    if (it != crt_cache_.end()) return it->second;
  }
  auto t = std::make_shared<CrtTable>();
  const std::size_t L = idx.size(), W = L + 1;
  t->L = L;
  t->W = W;
  t->Q.assign(W, 0);
  t->Q[0] = 1;
  for (std::size_t i = 0; i < L; ++i) big_mul_word(t->Q.data(), W, moduli[idx[i]]);
  t->Qhalf = t->Q;
  for (std::size_t k = 0; k < W; ++k)
    t->Qhalf[k] = (t->Qhalf[k] >> 1) | (k + 1 < W ? (t->Qhalf[k + 1] << 63) : 0);
  t->qhat.assign(L * W, 0);
  for (std::size_t i = 0; i < L; ++i) {
    u64* qh = t->qhat.data() + i * W;
    qh[0] = 1;
    for (std::size_t k = 0; k < L; ++k)
      if (k != i) big_mul_word(qh, W, moduli[idx[k]]);
    const Modulus& qi = mod(idx[i]);
    u64 prod = 1;
    for (std::size_t k = 0; k < L; ++k)
      if (k != i) prod = qi.mul(prod, qi.reduce(moduli[idx[k]]));
    t->q.push_back(qi.q);
    t->qhat_inv.push_back(inv_mod(prod, qi.q));
    t->qhat_inv_shoup.push_back(shoup_precompute(t->qhat_inv.back(), qi.q));
    t->q_recip.push_back(1.0L / (long double)qi.q);
  }
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (crt_cache_.size() > 4096) crt_cache_.clear();
  crt_cache_[idx] = t;
  return t;
}

std::shared_ptr<const std::vector<std::uint32_t>> RnsContext::ntt_perm(u64 g) const {
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = perm_cache_.find(g);
    if (it != perm_cache_.end()) return it->second;
  }
  // NTT slot k holds a(ψ^{2·bitrev(k)+1}); (a∘X^g)(ψ^e) = a(ψ^{e·g}).
  auto p = std::make_shared<std::vector<std::uint32_t>>(N);
  const u64 mask = 2 * N - 1;
  for (std::size_t k = 0; k < N; ++k) {
    u64 e = 2 * (u64)bitrev[k] + 1;
    u64 eg = (e * g) & mask;
    (*p)[k] = bitrev[(eg - 1) >> 1];
  }
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (perm_cache_.size() > 4096) perm_cache_.clear();
  perm_cache_[g] = p;
  return p;
}

// ================================================================= element-wise ops ====
namespace {
#ifdef WAVIS_HAVE_SIMD512
using simd::csub8;

// z = x·y mod q, or z = (x·y + z) mod q with acc, for q < 2^50, inputs in [0, q), N % 8 == 0 (IFMA):
// the product is lo + hi·2^52 (vpmadd52{lo,hi}uq), reduced with two 52-bit Shoup products
// (by 2^52 mod q and by 1), so the result equals the scalar Barrett one. z may alias x or y.
__attribute__((target("avx512f,avx512dq,avx512ifma")))
void mul_row_ifma(const u64* x, const u64* y, u64* z, std::size_t N, u64 q, bool acc) {
  const u64 w = (u64)(((u128)1 << 52) % q);
  const u64 wp = (u64)(((u128)w << 52) / q), op = (u64)(((u128)1 << 52) / q);
  const __m512i Q = _mm512_set1_epi64((long long)q), Q2 = _mm512_set1_epi64((long long)(2 * q));
  const __m512i W = _mm512_set1_epi64((long long)w), Wp = _mm512_set1_epi64((long long)wp);
  const __m512i Op = _mm512_set1_epi64((long long)op), M = _mm512_set1_epi64((1LL << 52) - 1);
  const __m512i z0 = _mm512_setzero_si512();
  for (std::size_t n = 0; n < N; n += 8) {
    const __m512i X = _mm512_loadu_si512(x + n), Y = _mm512_loadu_si512(y + n);
    const __m512i lo = _mm512_madd52lo_epu64(z0, X, Y), hi = _mm512_madd52hi_epu64(z0, X, Y);
    // hi·(2^52 mod q) and lo·1, each in [0, 2q)
    const __m512i qh = _mm512_madd52hi_epu64(z0, hi, Wp), ql = _mm512_madd52hi_epu64(z0, lo, Op);
    __m512i rh = _mm512_and_si512(_mm512_sub_epi64(_mm512_madd52lo_epu64(z0, hi, W), _mm512_madd52lo_epu64(z0, qh, Q)), M);
    __m512i rl = _mm512_and_si512(_mm512_sub_epi64(lo, _mm512_madd52lo_epu64(z0, ql, Q)), M);
    __m512i r = csub8(_mm512_add_epi64(rh, rl), Q2);  // [0, 2q)
    if (acc) r = csub8(_mm512_add_epi64(r, _mm512_loadu_si512(z + n)), Q2);  // [0, 3q) -> [0, 2q)
    _mm512_storeu_si512(z + n, csub8(r, Q));
  }
}

// d[n] = s[n] mod q for signed s (the value of RnsContext::from_signed's scalar loop: the
// residue of |s| negated mod q for s < 0), 2^20 <= q < 2^62, N % 8 == 0. |s| mod q uses a
// double-precision quotient estimate (|s|/q < 2^44: off by at most one), an exact remainder in
// [-q, 2q) and two corrections; no branch on the sign.
WAVIS_AVX512 void from_signed_row_avx512(const std::int64_t* s, u64* d, std::size_t N, u64 q) {
  const __m512d QI = _mm512_set1_pd(1.0 / (double)q);
  const __m512i Q = _mm512_set1_epi64((long long)q), Z = _mm512_setzero_si512();
  for (std::size_t n = 0; n < N; n += 8) {
    const __m512i V = _mm512_loadu_si512(s + n);
    const __m512i A = _mm512_abs_epi64(V);  // INT64_MIN -> 2^63 as unsigned, as (u64)0 - (u64)v
    const __m512i qt = _mm512_cvttpd_epu64(_mm512_mul_pd(_mm512_cvtepu64_pd(A), QI));
    __m512i r = _mm512_sub_epi64(A, _mm512_mullo_epi64(qt, Q));  // [-q, 2q) (mod 2^64)
    r = csub8(_mm512_min_epu64(r, _mm512_add_epi64(r, Q)), Q);     // [0, q)
    const __m512i nr = csub8(_mm512_sub_epi64(Q, r), Q);           // neg_mod(r, q)
    _mm512_storeu_si512(d + n, _mm512_mask_blend_epi64(_mm512_cmplt_epi64_mask(V, Z), r, nr));
  }
}

// add / sub / neg rows (N % 8 == 0), the same fully reduced values as add_mod / sub_mod / neg_mod.
WAVIS_AVX512 void add_row_avx512(const u64* x, const u64* y, u64* z, std::size_t N, u64 q) {
  const __m512i Q = _mm512_set1_epi64((long long)q);
  for (std::size_t n = 0; n < N; n += 8)
    _mm512_storeu_si512(z + n, csub8(_mm512_add_epi64(_mm512_loadu_si512(x + n), _mm512_loadu_si512(y + n)), Q));
}
WAVIS_AVX512 void sub_row_avx512(const u64* x, const u64* y, u64* z, std::size_t N, u64 q) {
  const __m512i Q = _mm512_set1_epi64((long long)q);
  for (std::size_t n = 0; n < N; n += 8) {
    const __m512i t = _mm512_sub_epi64(_mm512_loadu_si512(x + n), _mm512_loadu_si512(y + n));
    _mm512_storeu_si512(z + n, _mm512_min_epu64(t, _mm512_add_epi64(t, Q)));
  }
}
WAVIS_AVX512 void neg_row_avx512(const u64* x, u64* z, std::size_t N, u64 q) {
  const __m512i Q = _mm512_set1_epi64((long long)q);
  for (std::size_t n = 0; n < N; n += 8)
    _mm512_storeu_si512(z + n, csub8(_mm512_sub_epi64(Q, _mm512_loadu_si512(x + n)), Q));
}
#endif

#ifdef WAVIS_HAVE_SIMD256
// AVX2 rows (N % 4 == 0): the same fully reduced values as add_mod / sub_mod / neg_mod / mul_shoup.
WAVIS_AVX2 void add_row_avx2(const u64* x, const u64* y, u64* z, std::size_t N, u64 q) {
  const __m256i Q = _mm256_set1_epi64x((long long)q);
  for (std::size_t n = 0; n < N; n += 4)
    _mm256_storeu_si256((__m256i*)(z + n),
                        simd2::csub4(_mm256_add_epi64(_mm256_loadu_si256((const __m256i*)(x + n)),
                                                      _mm256_loadu_si256((const __m256i*)(y + n))), Q));
}
WAVIS_AVX2 void sub_row_avx2(const u64* x, const u64* y, u64* z, std::size_t N, u64 q) {
  const __m256i Q = _mm256_set1_epi64x((long long)q);
  for (std::size_t n = 0; n < N; n += 4)
    _mm256_storeu_si256((__m256i*)(z + n), simd2::submod4(_mm256_loadu_si256((const __m256i*)(x + n)),
                                                          _mm256_loadu_si256((const __m256i*)(y + n)), Q));
}
WAVIS_AVX2 void neg_row_avx2(const u64* x, u64* z, std::size_t N, u64 q) {
  const __m256i Q = _mm256_set1_epi64x((long long)q), Z = _mm256_setzero_si256();
  for (std::size_t n = 0; n < N; n += 4)
    _mm256_storeu_si256((__m256i*)(z + n), simd2::submod4(Z, _mm256_loadu_si256((const __m256i*)(x + n)), Q));
}
WAVIS_AVX2 void mul_shoup_row_avx2(const u64* x, u64* z, std::size_t N, u64 w, u64 wp, u64 q) {
  const simd2::Shoup4 W = simd2::shoup4(w, wp);
  const __m256i Q = _mm256_set1_epi64x((long long)q), Qh = _mm256_set1_epi64x((long long)(q >> 32));
  for (std::size_t n = 0; n < N; n += 4)
    _mm256_storeu_si256((__m256i*)(z + n),
                        simd2::csub4(simd2::shoup_lazy4(_mm256_loadu_si256((const __m256i*)(x + n)), W, Q, Qh), Q));
}
// z = x·y mod q, or z = (x·y + z) mod q with acc, inputs in [0, q), N % 4 == 0 (AVX2): the same
// fully reduced values as the scalar Barrett product. M: simd2::Mod52x4 for q < 2^50 (double-
// precision quotient), simd2::Mod62x4 for q < 2^62 (one-word Barrett). z may alias x or y.
template <class M>
WAVIS_AVX2 void mul_row_avx2(const u64* x, const u64* y, u64* z, std::size_t N, const M& m, bool acc) {
  for (std::size_t n = 0; n < N; n += 4) {
    __m256i r = simd2::mulmod4(_mm256_loadu_si256((const __m256i*)(x + n)),
                               _mm256_loadu_si256((const __m256i*)(y + n)), m);
    if (acc) r = simd2::csub4(_mm256_add_epi64(r, _mm256_loadu_si256((const __m256i*)(z + n))), m.q);
    _mm256_storeu_si256((__m256i*)(z + n), r);
  }
}
WAVIS_AVX2 void mul_row_avx2(const u64* x, const u64* y, u64* z, std::size_t N, u64 q, bool acc) {
  if (q < (u64(1) << 50)) return mul_row_avx2(x, y, z, N, simd2::mod52x4(q), acc);
  return mul_row_avx2(x, y, z, N, simd2::mod62x4(q), acc);
}
#endif

// the AVX2 rows on the avx2 path (N % 4 == 0)
inline bool avx2_rows(std::size_t N) {
#ifdef WAVIS_HAVE_SIMD256
  return N % 4 == 0 && avx2_active();
#else
  (void)N;
  return false;
#endif
}

// the add/sub/neg vector rows when the path has AVX-512 (and N % 8 == 0)
inline bool vec_rows(std::size_t N) {
#ifdef WAVIS_HAVE_SIMD512
  return N % 8 == 0 && simd_active();
#else
  (void)N;
  return false;
#endif
}
}  // namespace

void RnsContext::add(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L,
                     std::size_t rows) const {
  const bool vec = vec_rows(N), v2 = avx2_rows(N);
  for_rows(rows, N, [&](std::size_t r) {
    const u64 q = moduli[idx[r % L]];
    const u64* x = a + r * N;
    const u64* y = b + r * N;
    u64* z = out + r * N;
#ifdef WAVIS_HAVE_SIMD512
    if (vec) return add_row_avx512(x, y, z, N, q);
#endif
#ifdef WAVIS_HAVE_SIMD256
    if (v2) return add_row_avx2(x, y, z, N, q);
#endif
    for (std::size_t n = 0; n < N; ++n) z[n] = add_mod(x[n], y[n], q);
  }, 1 << 16);
  (void)vec;
  (void)v2;
}

void RnsContext::sub(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L,
                     std::size_t rows) const {
  const bool vec = vec_rows(N), v2 = avx2_rows(N);
  for_rows(rows, N, [&](std::size_t r) {
    const u64 q = moduli[idx[r % L]];
    const u64* x = a + r * N;
    const u64* y = b + r * N;
    u64* z = out + r * N;
#ifdef WAVIS_HAVE_SIMD512
    if (vec) return sub_row_avx512(x, y, z, N, q);
#endif
#ifdef WAVIS_HAVE_SIMD256
    if (v2) return sub_row_avx2(x, y, z, N, q);
#endif
    for (std::size_t n = 0; n < N; ++n) z[n] = sub_mod(x[n], y[n], q);
  }, 1 << 16);
  (void)vec;
  (void)v2;
}

void RnsContext::neg(const u64* a, u64* out, const std::size_t* idx, std::size_t L, std::size_t rows) const {
  const bool vec = vec_rows(N), v2 = avx2_rows(N);
  for_rows(rows, N, [&](std::size_t r) {
    const u64 q = moduli[idx[r % L]];
    const u64* x = a + r * N;
    u64* z = out + r * N;
#ifdef WAVIS_HAVE_SIMD512
    if (vec) return neg_row_avx512(x, z, N, q);
#endif
#ifdef WAVIS_HAVE_SIMD256
    if (v2) return neg_row_avx2(x, z, N, q);
#endif
    for (std::size_t n = 0; n < N; ++n) z[n] = neg_mod(x[n], q);
  }, 1 << 16);
  (void)vec;
  (void)v2;
}

void RnsContext::mul(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L,
                     std::size_t rows, bool acc) const {
  const bool vec = N >= 8 && ifma_active(), v2 = avx2_rows(N);
  for_rows(rows, N, [&](std::size_t r) {
    const Modulus m = mod(idx[r % L]);  // a local copy: the output cannot alias it
    const u64* x = a + r * N;
    const u64* y = b + r * N;
    u64* z = out + r * N;
#ifdef WAVIS_HAVE_SIMD512
    if (vec && m.q < (u64(1) << 50)) return mul_row_ifma(x, y, z, N, m.q, acc);
#endif
#ifdef WAVIS_HAVE_SIMD256
    if (v2) return mul_row_avx2(x, y, z, N, m.q, acc);
#endif
    if (acc) {
      for (std::size_t n = 0; n < N; ++n) z[n] = m.reduce128((u128)x[n] * y[n] + z[n]);
    } else {
      for (std::size_t n = 0; n < N; ++n) z[n] = m.mul(x[n], y[n]);
    }
  }, 1 << 16);
  (void)vec;
  (void)v2;
}

void RnsContext::mul_scalar(const u64* a, const u64* scalars, u64* out, const std::size_t* idx, std::size_t L,
                            std::size_t rows) const {
  std::vector<u64> sp(L);
  for (std::size_t k = 0; k < L; ++k) sp[k] = shoup_precompute(scalars[k], moduli[idx[k]]);
  const bool v2 = avx2_rows(N);
  for_rows(rows, N, [&](std::size_t r) {
    const std::size_t k = r % L;
    const u64 q = moduli[idx[k]], w = scalars[k], wp = sp[k];
    const u64* x = a + r * N;
    u64* z = out + r * N;
#ifdef WAVIS_HAVE_SIMD256
    if (v2) return mul_shoup_row_avx2(x, z, N, w, wp, q);
#endif
    for (std::size_t n = 0; n < N; ++n) z[n] = mul_shoup(x[n], w, wp, q);
  }, 1 << 16);
  (void)v2;
}

void RnsContext::from_signed(const std::int64_t* src, std::size_t batch, u64* dst,
                             const std::vector<std::size_t>& idx) const {
  const std::size_t L = idx.size();
  const bool vec = vec_rows(N);
  for_rows(batch * L, N, [&](std::size_t r) {
    const std::size_t b = r / L, k = r % L;
    const Modulus& m = mod(idx[k]);
    const std::int64_t* s = src + b * N;
    u64* d = dst + r * N;
#ifdef WAVIS_HAVE_SIMD512
    if (vec && m.q >= (u64(1) << 20)) return from_signed_row_avx512(s, d, N, m.q);
#endif
    for (std::size_t n = 0; n < N; ++n) {
      std::int64_t v = s[n];
      if (v >= 0) {
        d[n] = m.reduce((u64)v);
      } else {
        d[n] = neg_mod(m.reduce((u64)0 - (u64)v), m.q);
      }
    }
  }, 1 << 16);
  (void)vec;
}

void RnsContext::automorphism(const u64* a, u64* o, u64 gm, const std::size_t* idx, std::size_t L,
                              std::size_t rows, bool ntt_domain) const {
  if (ntt_domain) {
    auto perm = ntt_perm(gm);
    const std::uint32_t* p = perm->data();
    for_rows(rows, N, [&](std::size_t r) {
      // the row is first copied in order (a stream the hardware prefetcher follows) into a
      // per-thread buffer, then gathered from there (L1/L2) instead of from memory at random
      thread_local std::vector<u64> tmp;
      if (tmp.size() < N) tmp.resize(N);
      std::memcpy(tmp.data(), a + r * N, N * sizeof(u64));
      const u64* s = tmp.data();
      u64* d = o + r * N;
      for (std::size_t k = 0; k < N; ++k) d[k] = s[p[k]];
    }, 1 << 16);
  } else {
    const u64 mask = 2 * N - 1;
    for_rows(rows, N, [&](std::size_t r) {
      const u64 q = moduli[idx[r % L]];
      const u64* s = a + r * N;
      u64* d = o + r * N;
      u64 j = 0;
      for (std::size_t i = 0; i < N; ++i, j = (j + gm) & mask) {
        if (j < N) d[j] = s[i]; else d[j - N] = neg_mod(s[i], q);
      }
    }, 1 << 16);
  }
}

// ========================================================================= RNS ops ====
void RnsContext::mod_down(const u64* a, u64* o, const std::vector<std::size_t>& iq,
                          const std::vector<std::size_t>& ip) const {
  const std::size_t l = iq.size(), k = ip.size();
  // halfP = (P - 1) / 2 (P odd): ≡ (p_j - 1)/2 mod p_j, ≡ (P - 1)·2^-1 mod q_i.
  std::vector<u64> ap((std::size_t)k * N);
  for_rows(k, N, [&](std::size_t j) {
    const u64 p = moduli[ip[j]], h = (p - 1) / 2;
    const u64* s = a + (l + j) * N;
    u64* d = ap.data() + j * N;
    for (std::size_t n = 0; n < N; ++n) d[n] = add_mod(s[n], h, p);
  });
  base_convert(ap.data(), o, ip, iq);
  auto T = mod_down_table(iq, ip);
  for_rows(l, N, [&](std::size_t i) {
    const Modulus& qi = mod(iq[i]);
    const u64 h = T->half_p[i], pinv = T->p_inv[i], pinvp = T->p_inv_shoup[i];
    const u64* s = a + i * N;
    u64* d = o + i * N;
    for (std::size_t n = 0; n < N; ++n)
      d[n] = mul_shoup(sub_mod(add_mod(s[n], h, qi.q), d[n], qi.q), pinv, pinvp, qi.q);
  });
}

void RnsContext::rescale(const u64* a, u64* o, const std::vector<std::size_t>& idx) const {
  const std::size_t l = idx.size() - 1;
  const Modulus& ql = mod(idx[l]);
  const u64 half = ql.q >> 1;
  std::vector<u64> x(a + l * N, a + (l + 1) * N);
  ntt_inverse(x.data(), tables[idx[l]], N);
  for (std::size_t n = 0; n < N; ++n) x[n] = add_mod(x[n], half, ql.q);
  auto T = mod_down_table(std::vector<std::size_t>(idx.begin(), idx.end() - 1), {idx[l]});
  for_rows(l, N, [&](std::size_t i) {
    const Modulus& qi = mod(idx[i]);
    const u64 hi = T->half_p[i];  // floor(q_l / 2) mod q_i
    u64* d = o + i * N;
    for (std::size_t n = 0; n < N; ++n) d[n] = sub_mod(qi.reduce(x[n]), hi, qi.q);
    ntt_forward(d, tables[idx[i]], N);
    const u64 inv = T->p_inv[i], invp = T->p_inv_shoup[i];
    const u64* s = a + i * N;
    for (std::size_t n = 0; n < N; ++n) d[n] = mul_shoup(sub_mod(s[n], d[n], qi.q), inv, invp, qi.q);
  }, 1 << 12);
}

void RnsContext::crt_compose(const u64* a, double* o, const std::vector<std::size_t>& idx) const {
  auto t = crt_table(idx);
  const std::size_t L = t->L, W = t->W;
  constexpr std::size_t CH = 512;
  const std::size_t chunks = (N + CH - 1) / CH;
  for_rows(chunks, CH * L, [&](std::size_t ch) {
    std::vector<u64> S(W), M(W);
    for (std::size_t n = ch * CH; n < std::min(N, (ch + 1) * CH); ++n) {
      long double f = 0;
      std::fill(S.begin(), S.end(), 0);
      for (std::size_t i = 0; i < L; ++i) {
        const u64 yi = mul_shoup(a[i * N + n], t->qhat_inv[i], t->qhat_inv_shoup[i], t->q[i]);
        f += (long double)yi * t->q_recip[i];
        const u64* qh = t->qhat.data() + i * W;
        u64 carry = 0;
        for (std::size_t w = 0; w < W; ++w) {
          u128 p = (u128)qh[w] * yi + S[w] + carry;
          S[w] = (u64)p;
          carry = (u64)(p >> 64);
        }
      }
      // S = x + k·Q with 0 <= k < L: subtract (floor(f) - 1)·Q, then fix up.
      u64 k = (u64)std::floor(f);
      if (k > 0) --k;
      if (k) {
        u64 borrow = 0, carry = 0;
        for (std::size_t w = 0; w < W; ++w) {
          u128 p = (u128)t->Q[w] * k + carry;
          carry = (u64)(p >> 64);
          u64 sub = (u64)p;
          u64 s = S[w];
          u64 d = s - sub - borrow;
          borrow = (s < sub) || (s - sub < borrow) ? 1 : 0;
          S[w] = d;
        }
      }
      auto geq = [&](const std::vector<u64>& X, const std::vector<u64>& Y) {
        for (std::size_t w = W; w-- > 0;)
          if (X[w] != Y[w]) return X[w] > Y[w];
        return true;
      };
      auto sub_into = [&](const std::vector<u64>& X, const std::vector<u64>& Y, std::vector<u64>& Z) {
        u64 borrow = 0;
        for (std::size_t w = 0; w < W; ++w) {
          u64 x = X[w], yv = Y[w];
          u64 d = x - yv - borrow;
          borrow = (x < yv) || (x - yv < borrow) ? 1 : 0;
          Z[w] = d;
        }
      };
      while (geq(S, t->Q)) sub_into(S, t->Q, S);
      bool negative = !geq(t->Qhalf, S);  // S > floor(Q/2)
      if (negative) sub_into(t->Q, S, M); else M = S;
      // nearest double of the multi-word magnitude M
      std::size_t top = W;
      while (top > 0 && M[top - 1] == 0) --top;
      double v;
      if (top == 0) {
        v = 0.0;
      } else if (top == 1) {
        v = (double)M[0];
      } else {
        const int lz = __builtin_clzll(M[top - 1]);
        const std::size_t shift = (top - 1) * 64 - lz;  // bits below the 64-bit window
        u64 hi = lz ? (M[top - 1] << lz) | (M[top - 2] >> (64 - lz)) : M[top - 1];
        u64 rest = lz ? (M[top - 2] << lz) : M[top - 2];
        bool sticky = rest != 0;
        for (std::size_t w = 0; w + 2 < top && !sticky; ++w) sticky = M[w] != 0;
        v = std::ldexp((double)(hi | (sticky ? 1 : 0)), (int)shift);
      }
      o[n] = negative ? -v : v;
    }
  });
}

}  // namespace wavis
