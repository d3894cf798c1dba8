// Binding registry: each translation unit of csrc/ registers a function that adds its
// classes and functions to the wavis._core module, so files can be added independently.
#pragma once
#include <functional>
#include <vector>
#include <pybind11/pybind11.h>

namespace wavis {
using Binder = void (*)(pybind11::module_&);
inline std::vector<std::pair<int, Binder>>& binders() {
  static std::vector<std::pair<int, Binder>> b;
  return b;
}
struct RegisterBindings {
  // order: lower runs first (base types such as RnsContext before users of them)
  RegisterBindings(int order, Binder f) { binders().emplace_back(order, f); }
};
}  // namespace wavis

#define WAVIS_CONCAT_(a, b) a##b
#define WAVIS_CONCAT(a, b) WAVIS_CONCAT_(a, b)
#define WAVIS_REGISTER_BINDINGS(order, fn) \
  static ::wavis::RegisterBindings WAVIS_CONCAT(wavis_reg_, __LINE__)(order, fn)
