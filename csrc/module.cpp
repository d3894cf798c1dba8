// wavis._core: the C++ CPU core. Bindings come from every csrc/*.cpp via registry.hpp.
#include <algorithm>
#include "registry.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "WAVIS C++ core: RNS ring arithmetic, NTT, samplers, CKKS and TFHE kernels (CPU)";
  auto& b = wavis::binders();
  std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first < y.first; });
  for (auto& [order, fn] : b) fn(m);
}
