// TFHE core, the part every SIMD path shares: parameters, key-generation output, the server-key
// interface, and the per-path kernel table (runtime dispatch, include/wavis/simd.hpp).
//
// The algorithms (tfhe.hpp, fft.hpp) are compiled once per path (src/tfhe/kernels.cpp with
// per-file target flags, each copy in its own namespace wavis::tfhe::isa_<path>); kernels(path)
// returns that copy's entry points. Every path computes bit-identical results.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "wavis/simd.hpp"

namespace wavis {
namespace tfhe {

// TFHE sizes (TFHE-rs names): what crosses from Python.
struct Params {
  int n = 0;   // LweDimension
  int k = 0;   // GlweDimension
  int N = 0;   // PolynomialSize
  int bg = 0;  // PBS DecompositionBaseLog
  int l = 0;   // PBS DecompositionLevelCount
  int bks = 0; // KS DecompositionBaseLog
  int t = 0;   // KS DecompositionLevelCount
  double lwe_std = 0, glwe_std = 0;

  // k·N: the LWE dimension after sample extraction (not "big_n", which names N in the API)
  int extracted_lwe_dimension() const { return k * N; }
  // Throws std::invalid_argument naming the first size out of range.
  void validate() const;  // src/tfhe/params.cpp
};

struct KeygenResult {
  std::vector<uint8_t> lwe_key;     // n bits
  std::vector<uint8_t> glwe_key;    // k*N bits
  uint8_t mask_seed[32];
  std::vector<uint32_t> bsk_bodies; // [n][(k+1)*l][N]
  std::vector<uint32_t> ksk_bodies; // [kN][t]
  // Zero-filled vectors of P's sizes (src/tfhe/params.cpp: the kernels only write through them).
  void size_for(const Params& P);
};

// The evaluation side of a server key (bootstrapping key in the Fourier domain, key-switching
// key expanded), built by one SIMD path's kernels and evaluated by them. The gates themselves
// (table, linear combinations, the MUX sum) live in wavis/tfhe/gates.py; these are the batched
// primitives they are built from. threads <= 0: the pool's size.
class ServerKey {
 public:
  virtual ~ServerKey() = default;
  virtual const Params& params() const = 0;
  virtual std::size_t memory_bytes() const = 0;
  // Blind rotation of J small-key LWE ciphertexts lwe[J][n+1] with the test vector
  // mu·(1 + X + ... + X^{N-1}); extract: sample extraction to out[J][kN+1], else the GLWE
  // accumulators out[J][k+1][N].
  virtual void bootstrap(const uint32_t* lwe, std::size_t J, uint32_t mu, bool extract, uint32_t* out,
                         int threads) const = 0;
  // LWE key switching of J big-key ciphertexts big[J][kN+1] to out[J][n+1].
  virtual void key_switch(const uint32_t* big, std::size_t J, uint32_t* out, int threads) const = 0;
  // The SIMD path whose kernels this key runs.
  virtual SimdPath path() const = 0;
};

// One SIMD path's entry points.
struct Kernels {
  SimdPath path;
  void (*keygen)(const Params& P, const uint8_t* seed32, KeygenResult& out);
  void (*lwe_encrypt)(const Params& P, const uint8_t* lwe_key, const uint32_t* mus, std::size_t m,
                      const uint8_t* seed32, uint32_t* out);
  void (*lwe_phase)(int n, const uint8_t* lwe_key, const uint32_t* cts, std::size_t m, uint32_t* out);
  std::unique_ptr<ServerKey> (*make_server_key)(const Params& P, const uint8_t* mask_seed, const uint32_t* bsk_bodies,
                                                const uint32_t* ksk_bodies);
  // out = a * b mod (X^N + 1, 2^32) through the FFT (a torus, b small signed); for tests.
  void (*negacyclic_mul)(const uint32_t* a, const int32_t* b, uint32_t* out, int N);
};

// The kernels of path p (avx512 and ifma share the AVX-512 copy); kernels() = current path.
const Kernels& kernels(SimdPath p);
inline const Kernels& kernels() { return kernels(simd_path()); }

}  // namespace tfhe
}  // namespace wavis
