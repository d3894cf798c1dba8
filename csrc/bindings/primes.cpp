// Python functions is_prime, generate_ntt_primes, minimal_primitive_root (src/primes.cpp).
#include <stdexcept>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "registry.hpp"
#include "wavis/ring.hpp"

namespace py = pybind11;

static void bind_primes(py::module_& m) {
  m.def("is_prime", &wavis::is_prime, py::arg("q"),
        "Deterministic Miller–Rabin primality test for 64-bit integers (bases 2..37).");
  m.def(
      "generate_ntt_primes",
      [](int bits, std::size_t count, std::size_t N, std::vector<wavis::u64> exclude, bool descending) {
        try {
          py::gil_scoped_release nogil;
          return wavis::generate_ntt_primes(bits, count, N, exclude, descending);
        } catch (const std::exception& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("bits"), py::arg("count"), py::arg("N"), py::arg("exclude") = std::vector<wavis::u64>{},
      py::arg("descending") = true,
      "generate_ntt_primes(bits, count, N, exclude=[], descending=True) -> list[int]\n\n"
      "`count` primes q ≡ 1 (mod 2N) with exactly `bits` bits (2^(bits-1) < q < 2^bits, 20 <= bits\n"
      "<= 61), skipping those in `exclude`. descending=True searches downward from 2^bits (largest\n"
      "first); descending=False upward from 2^(bits-1) (smallest first). Raises ValueError if the\n"
      "arguments are invalid or not enough such primes exist.");
  m.def(
      "minimal_primitive_root",
      [](wavis::u64 m_, wavis::u64 q) {
        try {
          return wavis::minimal_primitive_root(m_, q);
        } catch (const std::exception& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("m"), py::arg("q"),
      "The smallest primitive m-th root of unity mod the prime q (m a power of two dividing\n"
      "q - 1). With m = 2N this is the ψ of the negacyclic NTT tables (deterministic, so CPU and\n"
      "GPU tables agree).");
}
WAVIS_REGISTER_BINDINGS(10, bind_primes);
