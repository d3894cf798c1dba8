// Prng: ChaCha20 (RFC 8439) keystream CSPRNG with the samplers the schemes need.
// Python class wavis._core.Prng (use wavis.backend.cpu.Prng, which seeds from the OS by default).
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "registry.hpp"
#include "ring.hpp"

namespace py = pybind11;

namespace wavis {

static inline std::uint32_t rotl32(std::uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

#define WAVIS_QR(a, b, c, d)             \
  a += b; d ^= a; d = rotl32(d, 16);     \
  c += d; b ^= c; b = rotl32(b, 12);     \
  a += b; d ^= a; d = rotl32(d, 8);      \
  c += d; b ^= c; b = rotl32(b, 7);

// One ChaCha20 block (RFC 8439 §2.3): state = constants | key | counter | nonce.
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

class Prng {
 public:
  static constexpr std::size_t kBlocks = 16;

  // key: 32 bytes; nonce: 12 bytes. Block counter starts at `counter` (RFC 8439 §2.4).
  Prng(const std::uint8_t key[32], const std::uint8_t nonce[12], std::uint32_t counter = 0) {
    state_[0] = 0x61707865; state_[1] = 0x3320646e; state_[2] = 0x79622d32; state_[3] = 0x6b206574;
    for (int i = 0; i < 8; ++i) state_[4 + i] = load32(key + 4 * i);
    state_[12] = counter;
    for (int i = 0; i < 3; ++i) state_[13 + i] = load32(nonce + 4 * i);
  }

  void bytes(std::uint8_t* out, std::size_t n) {
    while (n) {
      if (pos_ == avail_) refill();
      std::size_t k = std::min(n, avail_ - pos_);
      std::memcpy(out, buf_ + pos_, k);
      pos_ += k; out += k; n -= k;
    }
  }
  u64 next_u64() {
    if (avail_ - pos_ >= 8) {
      u64 v;
      std::memcpy(&v, buf_ + pos_, 8);  // little-endian machine: keystream bytes as LE u64
      pos_ += 8;
      return v;
    }
    std::uint8_t b[8];
    bytes(b, 8);
    u64 v;
    std::memcpy(&v, b, 8);
    return v;
  }
  std::uint8_t next_byte() {
    if (pos_ == avail_) refill();
    return buf_[pos_++];
  }
  // Uniform in [0, bound), bound >= 1, by masked rejection (unbiased).
  u64 below(u64 bound) {
    if (bound <= 1) return 0;
    const u64 mask = ~(u64)0 >> __builtin_clzll(bound - 1);
    for (;;) {
      u64 v = next_u64() & mask;
      if (v < bound) return v;
    }
  }
  // Uniform double in [0, 1) with 53 random bits.
  double unit() { return (double)(next_u64() >> 11) * 0x1.0p-53; }

  std::mutex mu;

 private:
  static std::uint32_t load32(const std::uint8_t* p) {
    return (std::uint32_t)p[0] | ((std::uint32_t)p[1] << 8) | ((std::uint32_t)p[2] << 16) | ((std::uint32_t)p[3] << 24);
  }
  void refill() {
    for (std::size_t b = 0; b < kBlocks; ++b) {
      chacha20_block(state_, buf_ + 64 * b);
      // 32-bit block counter (RFC 8439); on wrap-around (after 256 GiB) carry into the
      // first nonce word so the stream never repeats.
      if (++state_[12] == 0) ++state_[13];
    }
    pos_ = 0;
    avail_ = 64 * kBlocks;
  }
  std::uint32_t state_[16];
  std::uint8_t buf_[64 * kBlocks];
  std::size_t pos_ = 0, avail_ = 0;
};

}  // namespace wavis

using wavis::Prng;
using wavis::u64;

namespace {
const char* kPrngDoc = R"doc(Prng(seed: bytes, nonce: bytes = b'\0' * 12)

Cryptographically secure PRNG: the ChaCha20 keystream of RFC 8439 (key = seed, 32 bytes exactly;
nonce 12 bytes, default zero; block counter from 0; the 32-bit counter carries into the first
nonce word after 2^32 blocks). random_bytes(n) returns exactly that keystream.
Construct through wavis.backend.cpu.Prng(seed=None) to seed from the OS (secrets.token_bytes);
a fixed seed is for tests and reproducible runs only. Samplers draw from the keystream in
order, so the same seed gives the same outputs. Thread-safe (an internal lock); the GIL is
released while sampling.)doc";

py::array_t<std::int64_t> new_i64(std::size_t n) { return py::array_t<std::int64_t>((py::ssize_t)n); }
}  // namespace

static void bind_prng(py::module_& m) {
  py::class_<Prng>(m, "Prng", kPrngDoc)
      .def(py::init([](py::bytes seed, py::bytes nonce) {
             std::string s = seed, nn = nonce;
             if (s.size() != 32) throw py::value_error("seed must be exactly 32 bytes, got " + std::to_string(s.size()));
             if (nn.size() != 12) throw py::value_error("nonce must be exactly 12 bytes, got " + std::to_string(nn.size()));
             return std::make_unique<Prng>(reinterpret_cast<const std::uint8_t*>(s.data()),
                                           reinterpret_cast<const std::uint8_t*>(nn.data()));
           }),
           py::arg("seed"), py::arg("nonce") = py::bytes(std::string(12, '\0')))
      .def("random_bytes", [](Prng& p, std::size_t n) {
        std::string out(n, '\0');
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lk(p.mu);
          p.bytes(reinterpret_cast<std::uint8_t*>(out.data()), n);
        }
        return py::bytes(out);
      }, py::arg("n"), "The next n keystream bytes.")
      .def("uniform_u64", [](Prng& p, std::size_t n) {
        py::array_t<std::uint64_t> out((py::ssize_t)n);
        u64* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        for (std::size_t i = 0; i < n; ++i) o[i] = p.next_u64();
        return out;
      }, py::arg("n"), "(n,) uint64, uniform over [0, 2^64) (keystream as little-endian words).")
      .def("uniform_below", [](Prng& p, std::size_t n, u64 bound) {
        if (bound == 0) throw py::value_error("bound must be >= 1");
        py::array_t<std::uint64_t> out((py::ssize_t)n);
        u64* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        for (std::size_t i = 0; i < n; ++i) o[i] = p.below(bound);
        return out;
      }, py::arg("n"), py::arg("bound"), "(n,) uint64 uniform in [0, bound) (masked rejection sampling, unbiased).")
      .def("uniform_mod", [](Prng& p, const wavis::RnsContext& ctx, std::vector<std::int64_t> idx) {
        for (auto i : idx)
          if (i < 0 || (std::size_t)i >= ctx.moduli.size())
            throw py::value_error("idx entry " + std::to_string(i) + " out of range");
        const std::size_t N = ctx.N, L = idx.size();
        py::array_t<std::uint64_t> out({(py::ssize_t)L, (py::ssize_t)N});
        u64* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        for (std::size_t r = 0; r < L; ++r) {
          const u64 q = ctx.moduli[(std::size_t)idx[r]];
          for (std::size_t n = 0; n < N; ++n) o[r * N + n] = p.below(q);
        }
        return out;
      }, py::arg("ctx"), py::arg("idx"),
      "(limbs, N) uint64, row r uniform mod moduli[idx[r]] (rejection sampling), rows independent;\n"
      "by the CRT this is a uniform polynomial mod Q = ∏ q. Valid in either domain (the NTT is a\n"
      "bijection).")
      .def("ternary", [](Prng& p, std::size_t N) {
        auto out = new_i64(N);
        std::int64_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        for (std::size_t i = 0; i < N; ++i) {
          std::uint8_t b;
          do b = p.next_byte(); while (b == 255);  // 255 = 3·85: unbiased mod 3
          o[i] = (std::int64_t)(b % 3) - 1;
        }
        return out;
      }, py::arg("N"), "(N,) int64 uniform in {-1, 0, 1}.")
      .def("ternary_hw", [](Prng& p, std::size_t N, std::size_t h) {
        if (h > N) throw py::value_error("h must be <= N");
        auto out = new_i64(N);
        std::int64_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        std::vector<std::uint32_t> pos(N);
        for (std::size_t i = 0; i < N; ++i) pos[i] = (std::uint32_t)i;
        for (std::size_t i = 0; i < h; ++i) {  // partial Fisher–Yates
          std::size_t j = i + (std::size_t)p.below(N - i);
          std::swap(pos[i], pos[j]);
        }
        std::fill(o, o + N, 0);
        u64 bits = 0;
        for (std::size_t i = 0; i < h; ++i) {
          if (i % 64 == 0) bits = p.next_u64();
          o[pos[i]] = (bits >> (i % 64)) & 1 ? 1 : -1;
        }
        return out;
      }, py::arg("N"), py::arg("h"),
      "(N,) int64 in {-1, 0, 1} with exactly h nonzeros: positions by a partial Fisher–Yates\n"
      "shuffle with unbiased (rejection) indices, signs uniform.")
      .def("gaussian", [](Prng& p, std::size_t N, double sigma) {
        if (!(sigma > 0) || !(sigma < 1e9)) throw py::value_error("sigma must be in (0, 1e9)");
        auto out = new_i64(N);
        std::int64_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        const double bound = std::floor(6.0 * sigma);
        const double two_pi = 6.283185307179586476925;
        std::size_t i = 0;
        while (i < N) {
          const double u1 = 1.0 - p.unit();  // (0, 1]
          const double u2 = p.unit();
          const double r = std::sqrt(-2.0 * std::log(u1));
          const double z[2] = {r * std::cos(two_pi * u2), r * std::sin(two_pi * u2)};
          for (int k = 0; k < 2 && i < N; ++k) {
            double x = std::nearbyint(sigma * z[k]);
            if (std::fabs(x) <= bound) o[i++] = (std::int64_t)x;
          }
        }
        return out;
      }, py::arg("N"), py::arg("sigma") = 3.2,
      "(N,) int64 rounded Gaussian with standard deviation sigma (default 3.2), truncated at 6σ\n"
      "(samples beyond are redrawn). Box–Muller over 53-bit uniforms, rounded to nearest — the\n"
      "usual 'rounded continuous Gaussian' of RLWE libraries, not an exact discrete Gaussian.");
}
WAVIS_REGISTER_BINDINGS(11, bind_prng);
