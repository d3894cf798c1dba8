// Runs the registered C++ unit tests (check.hpp); see CMakeLists.txt (ctest).
#include <cstring>
#include <exception>

#include "check.hpp"
#include "wavis/simd.hpp"

int main(int argc, char** argv) {
  std::printf("SIMD paths on this CPU:");
  for (auto p : wavis::supported_paths()) std::printf(" %s", wavis::simd_path_name(p));
  std::printf("\n");
  int run = 0, failed_cases = 0;
  for (auto& c : wavis_test::cases()) {
    bool selected = argc < 2;
    for (int i = 1; i < argc; ++i) selected |= std::strstr(c.name, argv[i]) != nullptr;
    if (!selected) continue;
    const int before = wavis_test::failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  FAILED: uncaught exception: %s\n", e.what());
      ++wavis_test::failures();
    }
    const bool ok = wavis_test::failures() == before;
    failed_cases += !ok;
    ++run;
    std::printf("%s %s\n", ok ? "ok    " : "FAILED", c.name);
  }
  std::printf("%d tests, %d failed\n", run, failed_cases);
  return failed_cases ? 1 : 0;
}
