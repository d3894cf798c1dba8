// A minimal test harness for the C++ unit tests (ctest runs the one binary; each TEST registers
// itself; CHECK records a failure with file:line and continues). Arguments: substrings of test
// names to run (default all). Exit status 1 if any check failed.
#pragma once
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace wavis_test {

struct Case {
  const char* name;
  void (*fn)();
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* name, void (*fn)()) { cases().push_back({name, fn}); }
};

}  // namespace wavis_test

#define WT_CONCAT_(a, b) a##b
#define WT_CONCAT(a, b) WT_CONCAT_(a, b)
#define TEST(name)                                                                     \
  static void name();                                                                  \
  static ::wavis_test::Register WT_CONCAT(wt_reg_, name)(#name, &name);                \
  static void name()
#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
      ++::wavis_test::failures();                                                      \
    }                                                                                  \
  } while (0)
#define CHECK_THROWS(expr)                                                             \
  do {                                                                                 \
    bool thrown_ = false;                                                              \
    try {                                                                              \
      (void)(expr);                                                                    \
    } catch (...) {                                                                    \
      thrown_ = true;                                                                  \
    }                                                                                  \
    if (!thrown_) {                                                                    \
      std::fprintf(stderr, "  FAILED %s:%d: no exception from %s\n", __FILE__, __LINE__, #expr); \
      ++::wavis_test::failures();                                                      \
    }                                                                                  \
  } while (0)
