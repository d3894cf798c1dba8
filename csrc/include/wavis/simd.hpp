// Runtime CPU dispatch: which SIMD path the core runs (one switch for ring, CKKS and TFHE).
//
//   portable  baseline x86-64 / any CPU: scalar C++ everywhere
//   avx2      x86-64-v3 (AVX2, FMA, BMI2): the TFHE AVX2 kernels, the ring/CKKS AVX2 kernels
//             (NTT, Shoup row products, basis conversion, add/sub/neg, pointwise product; any
//             q < 2^62; the key-switching inner product for q < 2^50)
//   avx512    x86-64-v4 (AVX-512 F/BW/CD/DQ/VL): the TFHE AVX-512 kernels, the ring/CKKS
//             AVX-512 kernels (NTT, basis conversion, key switching; any q < 2^62)
//   ifma      avx512 + AVX-512 IFMA: as avx512, plus the 52-bit IFMA kernels for primes < 2^50
//
// Kernels are compiled per target (per-file flags for TFHE, target attributes for ring/CKKS:
// simd256.hpp for AVX2, simd512.hpp for AVX-512);
// the library itself is built for the baseline ISA (no -march=native unless WAVIS_NATIVE=ON),
// so one binary runs on every x86-64 CPU. The path is decided once, at first use, from CPUID
// (the best the CPU has) or the environment variable WAVIS_SIMD=portable|avx2|avx512|ifma
// (legacy: "0" = portable); forcing a path the CPU lacks, or an unknown name, is an error
// (std::invalid_argument naming the CPU's paths), never an illegal instruction later.
// All paths compute bit-identical results (tests/test_simd_paths.py).
#pragma once
#include <string>
#include <vector>

namespace wavis {

enum class SimdPath : int { portable = 0, avx2 = 1, avx512 = 2, ifma = 3 };

const char* simd_path_name(SimdPath p);
// Parses "portable", "avx2", "avx512", "ifma" (and "0" = portable); throws std::invalid_argument.
SimdPath parse_simd_path(const std::string& name);
// Whether this CPU (and OS: XSAVE state) can run path p.
bool cpu_supports(SimdPath p);
// The best path this CPU supports.
SimdPath cpu_best_path();
// Every path this CPU supports, portable first.
std::vector<SimdPath> supported_paths();

// The path in use: decided at the first call (WAVIS_SIMD or cpu_best_path()); throws
// std::invalid_argument when WAVIS_SIMD names an unknown path or one the CPU lacks.
SimdPath simd_path();
// Selects the path for kernels started from now on (objects already built keep theirs, e.g. a
// TFHE server key); throws std::invalid_argument when the CPU lacks it. Returns the previous path.
SimdPath set_simd_path(SimdPath p);

// Ring/CKKS switches derived from the path: AVX-512 kernels (avx512, ifma), IFMA kernels (ifma),
// AVX2 kernels (avx2 only: the wider paths run their AVX-512 kernels).
inline bool simd_active() { return simd_path() >= SimdPath::avx512; }
inline bool ifma_active() { return simd_path() == SimdPath::ifma; }
inline bool avx2_active() { return simd_path() == SimdPath::avx2; }

}  // namespace wavis
