// Runtime CPU dispatch (include/wavis/simd.hpp).
#include "wavis/simd.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace wavis {

namespace {
constexpr const char* kNames[] = {"portable", "avx2", "avx512", "ifma"};
std::atomic<int> g_path{-1};
std::mutex g_mu;

std::string supported_list() {
  std::string s;
  for (SimdPath p : supported_paths()) s += (s.empty() ? "" : ", ") + std::string(simd_path_name(p));
  return s;
}
}  // namespace

const char* simd_path_name(SimdPath p) { return kNames[(int)p]; }

SimdPath parse_simd_path(const std::string& name) {
  if (name == "0") return SimdPath::portable;
  for (int i = 0; i < 4; ++i)
    if (name == kNames[i]) return (SimdPath)i;
  throw std::invalid_argument("WAVIS_SIMD=" + name + " is not a SIMD path; use one of portable, avx2, avx512, ifma "
                              "(this CPU: " + supported_list() + ")");
}

bool cpu_supports(SimdPath p) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  switch (p) {
    case SimdPath::portable: return true;
    case SimdPath::avx2: return __builtin_cpu_supports("x86-64-v3");
    case SimdPath::avx512: return __builtin_cpu_supports("x86-64-v4");
    case SimdPath::ifma: return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512ifma");
  }
  return false;
#else
  return p == SimdPath::portable;
#endif
}

std::vector<SimdPath> supported_paths() {
  std::vector<SimdPath> v;
  for (int i = 0; i < 4; ++i)
    if (cpu_supports((SimdPath)i)) v.push_back((SimdPath)i);
  return v;
}

SimdPath cpu_best_path() { return supported_paths().back(); }

SimdPath simd_path() {
  int v = g_path.load(std::memory_order_acquire);
  if (v >= 0) return (SimdPath)v;
  std::lock_guard<std::mutex> lk(g_mu);
  v = g_path.load(std::memory_order_relaxed);
  if (v >= 0) return (SimdPath)v;
  SimdPath p = cpu_best_path();
  const char* env = std::getenv("WAVIS_SIMD");
  if (env && *env) {
    p = parse_simd_path(env);
    if (!cpu_supports(p))
      throw std::invalid_argument(std::string("WAVIS_SIMD=") + env + ": this CPU lacks the instructions of the " +
                                  simd_path_name(p) + " path (this CPU: " + supported_list() + ")");
  }
  g_path.store((int)p, std::memory_order_release);
  return p;
}

SimdPath set_simd_path(SimdPath p) {
  if (!cpu_supports(p))
    throw std::invalid_argument(std::string("SIMD path ") + simd_path_name(p) +
                                ": this CPU lacks its instructions (this CPU: " + supported_list() + ")");
  SimdPath prev;
  try {
    prev = simd_path();
  } catch (const std::invalid_argument&) {
    prev = p;  // a bad WAVIS_SIMD is overridden by an explicit choice
  }
  g_path.store((int)p, std::memory_order_release);
  return prev;
}

}  // namespace wavis
