// Run a body under every SIMD path this CPU supports and compare what it returns.
#pragma once
#include <functional>
#include <vector>

#include "wavis/simd.hpp"

namespace wavis_test {

// f() under each supported path (the path restored afterwards); returns the results in path order.
template <class T>
std::vector<T> under_each_path(const std::function<T()>& f) {
  const wavis::SimdPath saved = wavis::simd_path();
  std::vector<T> out;
  for (wavis::SimdPath p : wavis::supported_paths()) {
    wavis::set_simd_path(p);
    out.push_back(f());
  }
  wavis::set_simd_path(saved);
  return out;
}

template <class T>
bool all_equal(const std::vector<T>& v) {
  for (const T& x : v)
    if (!(x == v.front())) return false;
  return true;
}

}  // namespace wavis_test
