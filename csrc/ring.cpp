// RnsContext: negacyclic NTT over RNS limbs, element-wise ops, fast basis conversion, ModDown,
// rescale, exact CRT, automorphisms; plus the small thread pool. Python class wavis._core.RnsContext.
//
// Sources: D. Harvey, "Faster arithmetic for number-theoretic transforms", J. Symb. Comp. 2014
// (lazy butterflies, Shoup twiddles); P. Longa, M. Naehrig, "Speeding up the NTT", CANS 2016
// (negacyclic CT/GS with ψ powers in bit-reversed order, as in SEAL); Bajard–Eynard–Hasan–Zucca,
// SAC 2016 and Halevi–Polyakov–Shoup, CT-RSA 2019 (fast basis conversion); Han–Ki, CT-RSA 2020
// and Cheon–Han–Kim–Kim–Song, SAC 2018 (ModDown for hybrid key switching).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <string>
#include <thread>
#include <unistd.h>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "registry.hpp"
#include "ring.hpp"
#include "ring_py.hpp"

#include "simd512.hpp"  // outside namespace wavis (it opens wavis::simd)

namespace py = pybind11;

namespace wavis {

// ======================================================================== thread pool ====
namespace {
struct Job {
  const std::function<void(std::size_t)>* f;
  std::size_t n;
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;
  Job(const std::function<void(std::size_t)>* f_, std::size_t n_) : f(f_), n(n_) {}
  void work() {
    std::size_t i;
    while ((i = next.fetch_add(1)) < n) {
      (*f)(i);
      if (done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lk(mu);
        cv.notify_all();
      }
    }
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done.load() == n; });
  }
};

class Pool {
 public:
  explicit Pool(std::size_t nthreads) : nthreads_(nthreads) {
    for (std::size_t t = 1; t < nthreads; ++t) workers_.emplace_back([this] { loop(); });
  }
  // Never joined: the pool lives for the process (avoids shutdown-order problems).
  std::size_t size() const { return nthreads_; }
  void run(std::size_t n, const std::function<void(std::size_t)>& f) {
    auto job = std::make_shared<Job>(&f, n);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(job);
    }
    cv_.notify_all();
    job->work();
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end()) queue_.erase(it);
    }
    job->wait();
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        job = queue_.front();
        if (job->next.load() >= job->n) {  // exhausted: drop it and look again
          queue_.pop_front();
          continue;
        }
      }
      job->work();
    }
  }
  std::size_t nthreads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
};

std::size_t env_threads() {
  std::size_t n = std::thread::hardware_concurrency();
  if (const char* s = std::getenv("WAVIS_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end != s && v >= 1) n = (std::size_t)v;
  }
  return std::max<std::size_t>(1, std::min<std::size_t>(n, 256));
}

Pool* pool() {
  // Re-create after fork (threads do not survive fork); the old pool is leaked on purpose.
  static std::mutex mu;
  static Pool* p = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lk(mu);
  pid_t me = getpid();
  if (!p || owner != me) {
    p = new Pool(env_threads());
    owner = me;
  }
  return p;
}
}  // namespace

std::size_t thread_count() { return pool()->size(); }

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& f) {
  if (n == 0) return;
  Pool* p = n > 1 ? pool() : nullptr;
  if (!p || p->size() <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  p->run(n, f);
}

// ============================================================================== NTT ======
// ------------------------------------------------------------------ AVX-512 kernels ----
// Runtime dispatch: used when the CPU has AVX-512F/DQ (any q < 2^62: the 64x64 high product is
// built from four 32x32 products). WAVIS_SIMD=0 or _core._set_simd(False) forces portable code.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WAVIS_HAVE_AVX512_KERNELS 1
namespace {
using simd::mulhi_epu64;
using simd::shoup_lazy8;
using simd::csub8;

}  // namespace

#define WAVIS_NTT_NAME(x) x##_avx512
#define WAVIS_NTT_ATTR WAVIS_AVX512
#define WAVIS_NTT_MULW return shoup_lazy8(x, w, wp, _mm512_srli_epi64(wp, 32), Q);
#include "ring_ntt_simd.hpp"
#undef WAVIS_NTT_NAME
#undef WAVIS_NTT_ATTR
#undef WAVIS_NTT_MULW

// IFMA (vpmadd52{lo,hi}uq) for q < 2^50: 52-bit Shoup companions floor(w·2^52/q); x < 4q < 2^52.
#define WAVIS_NTT_NAME(x) x##_ifma
#define WAVIS_NTT_ATTR __attribute__((target("avx512f,avx512dq,avx512ifma")))
#define WAVIS_NTT_MULW                                                                          \
  const __m512i z = _mm512_setzero_si512();                                                     \
  __m512i qh = _mm512_madd52hi_epu64(z, x, wp);                                                 \
  __m512i r = _mm512_sub_epi64(_mm512_madd52lo_epu64(z, x, w), _mm512_madd52lo_epu64(z, qh, Q)); \
  return _mm512_and_si512(r, _mm512_set1_epi64((1LL << 52) - 1));
#include "ring_ntt_simd.hpp"
#undef WAVIS_NTT_NAME
#undef WAVIS_NTT_ATTR
#undef WAVIS_NTT_MULW
#endif

namespace {
std::atomic<int> g_simd{-1};  // -1: not decided yet
std::atomic<int> g_ifma{-1};
bool simd_enabled() {
  int v = g_simd.load(std::memory_order_relaxed);
  if (v < 0) {
    v = 0;
#ifdef WAVIS_HAVE_AVX512_KERNELS
    __builtin_cpu_init();
    v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif
    if (const char* s = std::getenv("WAVIS_SIMD"))
      if (s[0] == '0') v = 0;
    g_simd.store(v);
  }
  return v == 1;
}
bool cpu_has_ifma() {
#ifdef WAVIS_HAVE_AVX512_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512ifma");
#else
  return false;
#endif
}
bool ifma_enabled() {
  int v = g_ifma.load(std::memory_order_relaxed);
  if (v < 0) {
    v = cpu_has_ifma();
    if (const char* s = std::getenv("WAVIS_IFMA"))
      if (s[0] == '0') v = 0;
    g_ifma.store(v);
  }
  return v == 1;
}
}  // namespace

bool set_simd(bool on) {
  bool prev = simd_enabled();
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (on) {
    __builtin_cpu_init();
    on = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  }
#else
  on = false;
#endif
  g_simd.store(on ? 1 : 0);
  return prev;
}

bool simd_active() { return simd_enabled(); }
bool ifma_active() { return ifma_enabled(); }

bool set_ifma(bool on) {
  bool prev = ifma_enabled();
  g_ifma.store(on && cpu_has_ifma() ? 1 : 0);
  return prev;
}

static void ntt_forward_scalar(u64* a, const NttTable& t, std::size_t N);
static void ntt_inverse_scalar(u64* a, const NttTable& t, std::size_t N);

void ntt_forward(u64* a, const NttTable& t, std::size_t N) {
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_enabled()) {
    if (!t.psi_rev_shoup52.empty() && ifma_enabled())
      return ntt_fwd_ifma(a, t.psi_rev.data(), t.psi_rev_shoup52.data(), t.mod.q, N);
    return ntt_fwd_avx512(a, t.psi_rev.data(), t.psi_rev_shoup.data(), t.mod.q, N);
  }
#endif
  ntt_forward_scalar(a, t, N);
}
void ntt_inverse(u64* a, const NttTable& t, std::size_t N) {
#ifdef WAVIS_HAVE_AVX512_KERNELS
  if (N >= 16 && simd_enabled()) {
    if (!t.ipsi_rev_shoup52.empty() && ifma_enabled())
      return ntt_inv_ifma(a, t.ipsi_rev.data(), t.ipsi_rev_shoup52.data(), t.mod.q, N, t.n_inv, t.n_inv_shoup52,
                          t.wn_inv, t.wn_inv_shoup52);
    return ntt_inv_avx512(a, t.ipsi_rev.data(), t.ipsi_rev_shoup.data(), t.mod.q, N, t.n_inv, t.n_inv_shoup,
                          t.wn_inv, t.wn_inv_shoup);
  }
#endif
  ntt_inverse_scalar(a, t, N);
}

static void ntt_forward_scalar(u64* a, const NttTable& t, std::size_t N) {
  const u64 q = t.mod.q, two_q = 2 * q;
  const u64* W = t.psi_rev.data();
  const u64* Wp = t.psi_rev_shoup.data();
  std::size_t tt = N;
  for (std::size_t m = 1; m < N; m <<= 1) {
    tt >>= 1;
    {
      for (std::size_t i = 0; i < m; ++i) {
        const u64 w = W[m + i], wp = Wp[m + i];
        u64* x = a + 2 * i * tt;
        u64* y = x + tt;
        for (std::size_t j = 0; j < tt; ++j) {
          u64 u = x[j];
          u = u >= two_q ? u - two_q : u;
          u64 v = mul_shoup_lazy(y[j], w, wp, q);
          x[j] = u + v;
          y[j] = u - v + two_q;
        }
      }
    }
  }
  for (std::size_t j = 0; j < N; ++j) {
    u64 v = a[j];
    v = v >= two_q ? v - two_q : v;
    a[j] = v >= q ? v - q : v;
  }
}

static void ntt_inverse_scalar(u64* a, const NttTable& t, std::size_t N) {
  const u64 q = t.mod.q, two_q = 2 * q;
  const u64* W = t.ipsi_rev.data();
  const u64* Wp = t.ipsi_rev_shoup.data();
  std::size_t tt = 1;
  for (std::size_t m = N; m > 2; m >>= 1) {
    const std::size_t h = m >> 1;
    for (std::size_t i = 0; i < h; ++i) {
      const u64 w = W[h + i], wp = Wp[h + i];
      u64* x = a + 2 * i * tt;
      u64* y = x + tt;
      for (std::size_t j = 0; j < tt; ++j) {
        u64 u = x[j], v = y[j];
        u64 s = u + v;
        x[j] = s >= two_q ? s - two_q : s;
        y[j] = mul_shoup_lazy(u - v + two_q, w, wp, q);
      }
    }
    tt <<= 1;
  }
  // last stage (m = 2) merged with the multiplication by N^{-1}
  if (N >= 2) {
    const u64 ni = t.n_inv, nip = t.n_inv_shoup;
    const u64 wn = mul_mod_slow(W[1], ni, q), wnp = shoup_precompute(wn, q);
    u64* x = a;
    u64* y = a + tt;
    for (std::size_t j = 0; j < tt; ++j) {
      u64 u = x[j], v = y[j];
      x[j] = mul_shoup(u + v, ni, nip, q);
      y[j] = mul_shoup(u - v + two_q, wn, wnp, q);
    }
  } else {
    a[0] = mul_shoup(a[0], t.n_inv, t.n_inv_shoup, q);
  }
}

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

// ======================================================================== bindings ======
namespace {

using namespace pyh;

#ifdef WAVIS_HAVE_AVX512_KERNELS
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
#endif

// out = a·b (acc: out += a·b) mod q per row; IFMA rows for q < 2^50, Barrett otherwise.
void elementwise_mul(const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx, bool acc) {
  auto ix = parse_idx(idx, c.moduli.size());
  Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
  Arr B = check_arr(b, "b", c.N, ix.size(), true, false);
  Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
  same_shape(A, B, "a", "b");
  same_shape(A, O, "a", "out");
  const std::size_t rows = A.batch * A.rows, L = ix.size(), N = c.N;
  const bool vec = N >= 8 && simd_enabled() && ifma_enabled();
  py::gil_scoped_release nogil;
  for_rows(rows, N, [&](std::size_t r) {
    const Modulus m = c.mod(ix[r % L]);
    const u64* x = A.ptr + r * N;
    const u64* y = B.ptr + r * N;
    u64* z = O.ptr + r * N;
#ifdef WAVIS_HAVE_AVX512_KERNELS
    if (vec && m.q < (u64(1) << 50)) return mul_row_ifma(x, y, z, N, m.q, acc);
#endif
    if (acc) {
      for (std::size_t n = 0; n < N; ++n) z[n] = m.reduce128((u128)x[n] * y[n] + z[n]);
    } else {
      for (std::size_t n = 0; n < N; ++n) z[n] = m.mul(x[n], y[n]);
    }
  }, 1 << 16);
  (void)vec;
}

template <class F>
void elementwise2(const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx, F op) {
  auto ix = parse_idx(idx, c.moduli.size());
  Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
  Arr B = check_arr(b, "b", c.N, ix.size(), true, false);
  Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
  same_shape(A, B, "a", "b");
  same_shape(A, O, "a", "out");
  const std::size_t rows = A.batch * A.rows, L = ix.size(), N = c.N;
  py::gil_scoped_release nogil;
  for_rows(rows, N, [&](std::size_t r) {
    const Modulus m = c.mod(ix[r % L]);  // a local copy: the output cannot alias it (lets add/sub vectorize)
    const u64* x = A.ptr + r * N;
    const u64* y = B.ptr + r * N;
    u64* z = O.ptr + r * N;
    for (std::size_t n = 0; n < N; ++n) z[n] = op(m, x[n], y[n], z[n]);
  }, 1 << 16);
}

const char* kCtxDoc = R"doc(RnsContext(N: int, moduli: list[int])

Precomputed tables for the ring Z[X]/(X^N + 1) in RNS form over a list of NTT-friendly primes
(q ≡ 1 mod 2N, prime, q < 2^62, distinct); implements wavis.backend.protocol.RingContext on
NumPy uint64 arrays.

Arrays: (limbs, N) uint64 C-contiguous, row r reduced mod moduli[idx[r]]; ntt/intt/add/sub/neg/
mul/mul_add also accept (batch, limbs, N). NTT-domain arrays are in bit-reversed order.
Errors: ValueError (wavis.errors.ShapeError) for a wrong dtype/shape/non-contiguous or read-only
output/idx out of range; ValueError for bad N or moduli. Inputs are assumed fully reduced
(unreduced inputs give meaningless results but never touch memory out of bounds).
Heavy calls release the GIL and use WAVIS_THREADS threads over limbs.

Algorithms: negacyclic NTT with Harvey lazy butterflies and Shoup twiddles (Harvey 2014;
Longa–Naehrig 2016), ψ = the minimal primitive 2N-th root of unity; fast basis conversion
(BEHZ 2016, HPS 2019); ModDown (Han–Ki 2020); exact multi-word CRT.)doc";

}  // namespace
}  // namespace wavis

using namespace wavis;

static void bind_ring(py::module_& m) {
  m.def("_set_ifma", &wavis::set_ifma, py::arg("enabled"),
        "Enable/disable the AVX-512 IFMA NTT kernels (primes < 2^50, CPUs with avx512ifma); returns the\n"
        "previous state. For tests and benchmarks; env WAVIS_IFMA=0 disables them at start-up.");
  m.def("_set_simd", &wavis::set_simd, py::arg("enabled"),
        "Enable/disable the AVX-512 kernels (when the CPU has them); returns the previous state.\n"
        "For tests and benchmarks; env WAVIS_SIMD=0 disables them at start-up.");
  m.def("thread_count", &wavis::thread_count, "Threads of the C++ pool (env WAVIS_THREADS, default: all cores).");

  py::class_<RnsContext>(m, "RnsContext", kCtxDoc)
      .def(py::init([](std::size_t N, std::vector<u64> moduli) {
             try {
               py::gil_scoped_release nogil;
               return std::make_unique<RnsContext>(N, moduli);
             } catch (const std::exception& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("N"), py::arg("moduli"))
      .def_property_readonly("N", [](const RnsContext& c) { return c.N; })
      .def_property_readonly("moduli", [](const RnsContext& c) {
        py::tuple t(c.moduli.size());
        for (std::size_t i = 0; i < c.moduli.size(); ++i) t[i] = py::int_(c.moduli[i]);
        return t;
      })
      .def("__repr__", [](const RnsContext& c) {
        return "RnsContext(N=" + std::to_string(c.N) + ", limbs=" + std::to_string(c.moduli.size()) + ")";
      })
      .def("psi", [](const RnsContext& c, std::size_t i) {
        if (i >= c.moduli.size()) shape_error("prime index out of range");
        return c.tables[i].psi;
      }, py::arg("i"), "The ψ (minimal primitive 2N-th root of unity) used for prime i.")
      .def("twiddles", [](const RnsContext& c, std::size_t i) {
        if (i >= c.moduli.size()) shape_error("prime index out of range");
        const NttTable& t = c.tables[i];
        auto mk = [&](const std::vector<u64>& v) {
          py::array_t<std::uint64_t> a((py::ssize_t)v.size());
          std::memcpy(a.mutable_data(), v.data(), v.size() * 8);
          return a;
        };
        py::dict d;
        d["psi_rev"] = mk(t.psi_rev);
        d["psi_rev_shoup"] = mk(t.psi_rev_shoup);
        d["ipsi_rev"] = mk(t.ipsi_rev);
        d["ipsi_rev_shoup"] = mk(t.ipsi_rev_shoup);
        d["n_inv"] = t.n_inv;
        d["n_inv_shoup"] = t.n_inv_shoup;
        d["psi"] = t.psi;
        return d;
      }, py::arg("i"),
      "NTT tables of prime i (for other backends): psi_rev[k] = ψ^bitrev(k), ipsi_rev[k] = ψ^-bitrev(k),\n"
      "their Shoup companions floor(w·2^64/q), n_inv = N^-1 mod q and its companion.")
      // ---- memory
      .def("asarray", [](const RnsContext&, py::handle a) {
        return py::module_::import("numpy").attr("ascontiguousarray")(a, "uint64");
      }, py::arg("a"), "C-contiguous uint64 NumPy array (no copy if already one).")
      .def("to_numpy", [](const RnsContext&, py::handle a) {
        return py::module_::import("numpy").attr("ascontiguousarray")(a, "uint64");
      }, py::arg("a"))
      .def("zeros", [](const RnsContext& c, std::size_t limbs, py::object batch) {
        std::vector<py::ssize_t> shape;
        if (!batch.is_none()) shape.push_back(py::cast<py::ssize_t>(batch));
        shape.push_back((py::ssize_t)limbs);
        shape.push_back((py::ssize_t)c.N);
        auto a = new_u64(shape);
        std::memset(a.mutable_data(), 0, a.size() * 8);
        return a;
      }, py::arg("limbs"), py::arg("batch") = py::none(), "Zero array (limbs, N) or (batch, limbs, N), uint64.")
      // ---- transforms
      .def("ntt", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, true);
        auto t = tile(ix, A.batch);
        py::gil_scoped_release nogil;
        c.ntt(A.ptr, t.data(), t.size());
      }, py::arg("a"), py::arg("idx"),
      "Forward negacyclic NTT of every row in place; a: (limbs, N) or (batch, limbs, N) uint64,\n"
      "coefficients in [0, q) → evaluations a(ψ^(2·bitrev(k)+1)) at position k, in [0, q).")
      .def("intt", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, true);
        auto t = tile(ix, A.batch);
        py::gil_scoped_release nogil;
        c.intt(A.ptr, t.data(), t.size());
      }, py::arg("a"), py::arg("idx"), "Inverse of ntt (includes N^-1), in place.")
      // ---- element-wise
      .def("add", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        elementwise2(c, a, b, out, idx, [](const Modulus& m, u64 x, u64 y, u64) { return add_mod(x, y, m.q); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out = a + b mod q (out may alias a or b).")
      .def("sub", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        elementwise2(c, a, b, out, idx, [](const Modulus& m, u64 x, u64 y, u64) { return sub_mod(x, y, m.q); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out = a - b mod q.")
      .def("mul", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        elementwise_mul(c, a, b, out, idx, false);
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"),
      "out = a * b mod q (Barrett); the polynomial product when a, b are in the NTT domain.")
      .def("mul_add", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        elementwise_mul(c, a, b, out, idx, true);
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out += a * b mod q.")
      .def("neg", [](const RnsContext& c, py::handle a, py::handle out, py::handle idx) {
        elementwise2(c, a, a, out, idx, [](const Modulus& m, u64 x, u64, u64) { return neg_mod(x, m.q); });
      }, py::arg("a"), py::arg("out"), py::arg("idx"), "out = -a mod q.")
      .def("mul_scalar", [](const RnsContext& c, py::handle a, std::vector<u64> scalars, py::handle out, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
        Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
        same_shape(A, O, "a", "out");
        if (scalars.size() != ix.size())
          shape_error("scalars has length " + std::to_string(scalars.size()) + ", expected " + std::to_string(ix.size()));
        std::vector<u64> sp(ix.size());
        for (std::size_t r = 0; r < ix.size(); ++r) {
          if (scalars[r] >= c.moduli[ix[r]]) shape_error("scalars[" + std::to_string(r) + "] is not reduced mod its prime");
          sp[r] = shoup_precompute(scalars[r], c.moduli[ix[r]]);
        }
        const std::size_t rows = A.batch * A.rows, L = ix.size(), N = c.N;
        py::gil_scoped_release nogil;
        for_rows(rows, N, [&](std::size_t r) {
          const std::size_t k = r % L;
          const u64 q = c.moduli[ix[k]], w = scalars[k], wp = sp[k];
          const u64* x = A.ptr + r * N;
          u64* z = O.ptr + r * N;
          for (std::size_t n = 0; n < N; ++n) z[n] = mul_shoup(x[n], w, wp, q);
        }, 1 << 16);
      }, py::arg("a"), py::arg("scalars"), py::arg("out"), py::arg("idx"),
      "out[r] = a[r] * scalars[r] mod q_idx[r] (scalars reduced mod their primes; Shoup).")
      // ---- RNS
      .def("from_signed", [](const RnsContext& c, py::handle coeffs, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (!py::isinstance<py::array_t<std::int64_t>>(coeffs)) shape_error("coeffs must be a numpy int64 array");
        py::array arr = py::reinterpret_borrow<py::array>(coeffs);
        if (!(arr.flags() & py::array::c_style)) shape_error("coeffs must be C-contiguous");
        if (!(arr.ndim() == 1 || arr.ndim() == 2) || (std::size_t)arr.shape(arr.ndim() - 1) != c.N)
          shape_error("coeffs must have shape (N,) or (batch, N) with N=" + std::to_string(c.N));
        const std::size_t batch = arr.ndim() == 2 ? (std::size_t)arr.shape(0) : 1, L = ix.size(), N = c.N;
        std::vector<py::ssize_t> shape;
        if (arr.ndim() == 2) shape.push_back((py::ssize_t)batch);
        shape.push_back((py::ssize_t)L);
        shape.push_back((py::ssize_t)N);
        auto out = new_u64(shape);
        const std::int64_t* src = static_cast<const std::int64_t*>(arr.data());
        u64* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          for_rows(batch * L, N, [&](std::size_t r) {
            const std::size_t b = r / L, k = r % L;
            const Modulus& m = c.mod(ix[k]);
            const std::int64_t* s = src + b * N;
            u64* d = dst + r * N;
            for (std::size_t n = 0; n < N; ++n) {
              std::int64_t v = s[n];
              if (v >= 0) {
                d[n] = m.reduce((u64)v);
              } else {
                d[n] = neg_mod(m.reduce((u64)0 - (u64)v), m.q);
              }
            }
          }, 1 << 16);
        }
        return out;
      }, py::arg("coeffs"), py::arg("idx"),
      "Signed int64 coefficients (N,) or (batch, N) → RNS rows (limbs, N) or (batch, limbs, N), uint64.")
      .def("base_convert", [](const RnsContext& c, py::handle a, py::handle idx_in, py::handle idx_out) {
        auto ii = parse_idx(idx_in, c.moduli.size(), "idx_in");
        auto io = parse_idx(idx_out, c.moduli.size(), "idx_out");
        if (ii.empty()) shape_error("idx_in must not be empty");
        for (std::size_t k = 0; k < ii.size(); ++k)
          for (std::size_t l = 0; l < k; ++l)
            if (ii[k] == ii[l]) shape_error("idx_in must not repeat a prime");
        Arr A = check_arr(a, "a", c.N, ii.size(), false, false);
        auto out = new_u64({(py::ssize_t)io.size(), (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.base_convert(A.ptr, o, ii, io);
        }
        return out;
      }, py::arg("a"), py::arg("idx_in"), py::arg("idx_out"),
      "Fast basis conversion (coefficient domain): a (len(idx_in), N) over Q = ∏ q_idx_in →\n"
      "(len(idx_out), N) holding Σ_i [a_i·(Q/q_i)^-1]_{q_i}·(Q/q_i) mod p_j, i.e. x + u·Q with\n"
      "0 <= u < len(idx_in) where x in [0, Q) is the CRT value (BEHZ 2016 / HPS 2019).")
      .def("mod_down", [](const RnsContext& c, py::handle a, py::handle idx_q, py::handle idx_p) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        std::vector<std::size_t> all = iq;
        all.insert(all.end(), ip.begin(), ip.end());
        for (std::size_t k = 0; k < all.size(); ++k)
          for (std::size_t l = 0; l < k; ++l)
            if (all[k] == all[l]) shape_error("idx_q and idx_p must be distinct primes");
        Arr A = check_arr(a, "a", c.N, all.size(), false, false);
        const std::size_t l = iq.size(), k = ip.size(), N = c.N;
        auto out = new_u64({(py::ssize_t)l, (py::ssize_t)N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          // halfP = (P - 1) / 2 (P odd): ≡ (p_j - 1)/2 mod p_j, ≡ (P - 1)·2^-1 mod q_i.
          std::vector<u64> ap((std::size_t)k * N);
          for_rows(k, N, [&](std::size_t j) {
            const u64 p = c.moduli[ip[j]], h = (p - 1) / 2;
            const u64* s = A.ptr + (l + j) * N;
            u64* d = ap.data() + j * N;
            for (std::size_t n = 0; n < N; ++n) d[n] = add_mod(s[n], h, p);
          });
          c.base_convert(ap.data(), o, ip, iq);
          for_rows(l, N, [&](std::size_t i) {
            const Modulus& qi = c.mod(iq[i]);
            u64 Pm = 1;
            for (std::size_t j = 0; j < k; ++j) Pm = qi.mul(Pm, qi.reduce(c.moduli[ip[j]]));
            const u64 inv2 = (qi.q + 1) / 2;
            const u64 h = qi.mul(sub_mod(Pm, 1, qi.q), inv2);
            const u64 pinv = inv_mod(Pm, qi.q), pinvp = shoup_precompute(pinv, qi.q);
            const u64* s = A.ptr + i * N;
            u64* d = o + i * N;
            for (std::size_t n = 0; n < N; ++n)
              d[n] = mul_shoup(sub_mod(add_mod(s[n], h, qi.q), d[n], qi.q), pinv, pinvp, qi.q);
          });
        }
        return out;
      }, py::arg("a"), py::arg("idx_q"), py::arg("idx_p"),
      "ModDown (coefficient domain in/out): a over Q∪P (rows idx_q then idx_p) → (len(idx_q), N)\n"
      "holding round(a / P) - u mod Q with 0 <= u < len(idx_p) (fast basis conversion error;\n"
      "Han–Ki CT-RSA 2020 Alg. 2, Cheon et al. SAC 2018). Rounding via a + floor(P/2).")
      .def("rescale", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (ix.size() < 2) shape_error("rescale needs at least two limbs");
        Arr A = check_arr(a, "a", c.N, ix.size(), false, false);
        const std::size_t l = ix.size() - 1, N = c.N;
        auto out = new_u64({(py::ssize_t)l, (py::ssize_t)N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          const Modulus& ql = c.mod(ix[l]);
          const u64 half = ql.q >> 1;
          std::vector<u64> x(A.ptr + l * N, A.ptr + (l + 1) * N);
          ntt_inverse(x.data(), c.tables[ix[l]], N);
          for (std::size_t n = 0; n < N; ++n) x[n] = add_mod(x[n], half, ql.q);
          for_rows(l, N, [&](std::size_t i) {
            const Modulus& qi = c.mod(ix[i]);
            const u64 hi = qi.reduce(half);
            u64* d = o + i * N;
            for (std::size_t n = 0; n < N; ++n) d[n] = sub_mod(qi.reduce(x[n]), hi, qi.q);
            ntt_forward(d, c.tables[ix[i]], N);
            const u64 inv = inv_mod(qi.reduce(ql.q), qi.q), invp = shoup_precompute(inv, qi.q);
            const u64* s = A.ptr + i * N;
            for (std::size_t n = 0; n < N; ++n) d[n] = mul_shoup(sub_mod(s[n], d[n], qi.q), inv, invp, qi.q);
          }, 1 << 12);
        }
        return out;
      }, py::arg("a"), py::arg("idx"),
      "NTT domain in/out: round(a / q_last) over idx[:-1] (a (len(idx), N) → (len(idx)-1, N)).")
      .def("crt_compose", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (ix.empty()) shape_error("idx must not be empty");
        for (std::size_t k = 0; k < ix.size(); ++k)
          for (std::size_t l = 0; l < k; ++l)
            if (ix[k] == ix[l]) shape_error("idx must not repeat a prime");
        Arr A = check_arr(a, "a", c.N, ix.size(), false, false);
        py::array_t<double> out((py::ssize_t)c.N);
        double* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          auto t = c.crt_table(ix);
          const std::size_t L = t->L, W = t->W, N = c.N;
          constexpr std::size_t CH = 512;
          const std::size_t chunks = (N + CH - 1) / CH;
          for_rows(chunks, CH * L, [&](std::size_t ch) {
            std::vector<u64> S(W), M(W);
            std::vector<u64> y(L);
            for (std::size_t n = ch * CH; n < std::min(N, (ch + 1) * CH); ++n) {
              long double f = 0;
              std::fill(S.begin(), S.end(), 0);
              for (std::size_t i = 0; i < L; ++i) {
                const u64 yi = mul_shoup(A.ptr[i * N + n], t->qhat_inv[i], t->qhat_inv_shoup[i], t->q[i]);
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
        return out;
      }, py::arg("a"), py::arg("idx"),
      "Exact centred CRT of coefficient-domain rows (multi-word integers): the integer in\n"
      "(-Q/2, Q/2] congruent to the rows, rounded to the nearest float64; (N,) float64.")
      .def("automorphism", [](const RnsContext& c, py::handle a, std::int64_t g, py::handle idx, bool ntt_domain) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
        const std::size_t N = c.N;
        const std::int64_t twoN = 2 * (std::int64_t)N;
        std::int64_t gm = ((g % twoN) + twoN) % twoN;
        if ((gm & 1) == 0) shape_error("galois_elt must be odd, got " + std::to_string(g));
        std::vector<py::ssize_t> shape;
        if (A.ndim == 3) shape.push_back((py::ssize_t)A.batch);
        shape.push_back((py::ssize_t)ix.size());
        shape.push_back((py::ssize_t)N);
        auto out = new_u64(shape);
        u64* o = out.mutable_data();
        const std::size_t rows = A.batch * A.rows, L = ix.size();
        {
          py::gil_scoped_release nogil;
          if (ntt_domain) {
            auto perm = c.ntt_perm((u64)gm);
            const std::uint32_t* p = perm->data();
            for_rows(rows, N, [&](std::size_t r) {
              const u64* s = A.ptr + r * N;
              u64* d = o + r * N;
              for (std::size_t k = 0; k < N; ++k) d[k] = s[p[k]];
            }, 1 << 16);
          } else {
            const u64 mask = 2 * N - 1;
            for_rows(rows, N, [&](std::size_t r) {
              const u64 q = c.moduli[ix[r % L]];
              const u64* s = A.ptr + r * N;
              u64* d = o + r * N;
              u64 j = 0;
              for (std::size_t i = 0; i < N; ++i, j = (j + (u64)gm) & mask) {
                if (j < N) d[j] = s[i]; else d[j - N] = neg_mod(s[i], q);
              }
            }, 1 << 16);
          }
        }
        return out;
      }, py::arg("a"), py::arg("galois_elt"), py::arg("idx"), py::arg("ntt_domain"),
      "X -> X^g (g odd, taken mod 2N) on every row; a (limbs, N) or (batch, limbs, N); returns a new\n"
      "array. Coefficient domain: a_i X^{ig} with the negacyclic sign; NTT domain: the matching\n"
      "permutation of the bit-reversed evaluation points (ntt∘aut_coeff == aut_ntt∘ntt).");
}
WAVIS_REGISTER_BINDINGS(10, bind_ring);
