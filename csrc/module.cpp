// wavis._core: the C++ CPU core. Bindings come from every csrc/*.cpp via registry.hpp.
#include <algorithm>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "registry.hpp"

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
  auto& b = wavis::binders();
  std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first < y.first; });
  for (auto& [order, fn] : b) fn(m);
}
