// wavis._core: the Python module over the C++ core (csrc/src, csrc/include/wavis). Bindings come
// from every csrc/bindings/*.cpp via registry.hpp.
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "registry.hpp"
#include "wavis/simd.hpp"

namespace {
// RNS polynomials are large (N × limbs × 8 bytes, often > 128 KiB). glibc serves such blocks
// with fresh mmap()s and returns them on free, so every temporary pays page faults again.
// Keeping them on the heap (higher mmap/trim thresholds) makes reuse free; ~10–25 % faster
// CKKS key switching here. Opt out with WAVIS_NO_MALLOC_TUNING=1.
void tune_malloc() {
#if defined(__GLIBC__)
  const char* off = std::getenv("WAVIS_NO_MALLOC_TUNING");
  if (off && *off && *off != '0') return;
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}
}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "WAVIS C++ core: RNS ring arithmetic, NTT, samplers, CKKS and TFHE kernels (CPU)";
  tune_malloc();
  try {
    wavis::simd_path();  // decide the SIMD path now: a bad WAVIS_SIMD fails the import, clearly
  } catch (const std::invalid_argument& e) {
    throw pybind11::import_error(std::string("wavis._core: ") + e.what());
  }
  auto& b = wavis::binders();
  std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first < y.first; });
  for (auto& [order, fn] : b) fn(m);
}
