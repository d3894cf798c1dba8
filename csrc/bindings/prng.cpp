// Python class wavis._core.Prng over wavis::Prng (include/wavis/prng.hpp): argument checks and
// array allocation only.
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "registry.hpp"
#include "wavis/prng.hpp"
#include "wavis/ring.hpp"

namespace py = pybind11;

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

void bind_prng(py::module_& m) {
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
        p.uniform_below(o, n, bound);
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
        for (std::size_t r = 0; r < L; ++r) p.uniform_below(o + r * N, N, ctx.moduli[(std::size_t)idx[r]]);
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
        p.ternary(o, N);
        return out;
      }, py::arg("N"), "(N,) int64 uniform in {-1, 0, 1}.")
      .def("ternary_hw", [](Prng& p, std::size_t N, std::size_t h) {
        if (h > N) throw py::value_error("h must be <= N");
        auto out = new_i64(N);
        std::int64_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lk(p.mu);
        p.ternary_hw(o, N, h);
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
        p.gaussian(o, N, sigma);
        return out;
      }, py::arg("N"), py::arg("sigma") = 3.2,
      "(N,) int64 rounded Gaussian with standard deviation sigma (default 3.2), truncated at 6σ\n"
      "(samples beyond are redrawn). Box–Muller over 53-bit uniforms, rounded to nearest — the\n"
      "usual 'rounded continuous Gaussian' of RLWE libraries, not an exact discrete Gaussian.");
}
}  // namespace

WAVIS_REGISTER_BINDINGS(11, bind_prng);
