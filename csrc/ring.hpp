// RNS ring core: NTT-friendly primes, negacyclic NTT tables, RnsContext (C++ side).
// Other translation units (TFHE, CKKS kernels) may include this header and use the raw-pointer
// API; the Python bindings live in ring.cpp / primes.cpp.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "arith.hpp"

namespace wavis {

// ---- primes (primes.cpp) ---------------------------------------------------------------
// Deterministic Miller–Rabin for 64-bit n (bases 2..37 suffice for n < 3.3e24).
bool is_prime(u64 n);
// `count` primes q ≡ 1 (mod 2N) with exactly `bits` bits (20 <= bits <= 61), skipping `exclude`.
// descending: search downward from 2^bits; otherwise upward from 2^(bits-1).
// Throws std::invalid_argument on bad arguments, std::range_error if not enough primes exist.
std::vector<u64> generate_ntt_primes(int bits, std::size_t count, std::size_t N,
                                     const std::vector<u64>& exclude, bool descending);
// The minimal primitive m-th root of unity mod prime q (m a power of two dividing q - 1).
u64 minimal_primitive_root(u64 m, u64 q);

// ---- thread pool (ring.cpp) -------------------------------------------------------------
// parallel_for(n, f): calls f(i) for i in [0, n) on a small persistent pool (WAVIS_THREADS,
// default hardware_concurrency; 1 disables). Runs inline when n <= 1 or the pool is off.
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& f);
std::size_t thread_count();

// Run f(r) for r < rows, in parallel when the work (rows * N words) is large enough.
template <class F>
inline void for_rows(std::size_t rows, std::size_t N, F&& f, std::size_t min_words = 1 << 14) {
  if (rows > 1 && rows * N >= min_words) {
    std::function<void(std::size_t)> fn = f;
    parallel_for(rows, fn);
  } else {
    for (std::size_t r = 0; r < rows; ++r) f(r);
  }
}

// ---- NTT tables -------------------------------------------------------------------------
struct NttTable {
  Modulus mod;
  u64 psi = 0;                       // minimal primitive 2N-th root of unity
  std::vector<u64> psi_rev, psi_rev_shoup;    // psi^{bitrev(k)}, k < N
  std::vector<u64> ipsi_rev, ipsi_rev_shoup;  // psi^{-bitrev(k)}, k < N
  u64 n_inv = 0, n_inv_shoup = 0;
  u64 wn_inv = 0, wn_inv_shoup = 0;  // ψ^{-bitrev(1)}·N^{-1} (last inverse stage)
  // q < 2^50 only (else empty / 0): floor(w·2^52/q) companions for the IFMA kernels
  std::vector<u64> psi_rev_shoup52, ipsi_rev_shoup52;
  u64 n_inv_shoup52 = 0, wn_inv_shoup52 = 0;
};

// Forward negacyclic NTT (Cooley–Tukey, Harvey lazy butterflies, output bit-reversed),
// in place on N values in [0, q); output fully reduced.
void ntt_forward(u64* a, const NttTable& t, std::size_t N);
// Inverse (Gentleman–Sande, input bit-reversed), includes N^{-1}; output fully reduced.
void ntt_inverse(u64* a, const NttTable& t, std::size_t N);

// Enable/disable the AVX-512 NTT kernels (runtime-dispatched); returns the previous state.
bool set_simd(bool on);
// Enable/disable the IFMA (52-bit) NTT kernels used for primes < 2^50; returns the previous state.
bool set_ifma(bool on);
// Whether the AVX-512 kernels are in use (CPU support and not disabled); other kernels that
// have vector paths (csrc/ckks.cpp) follow the same switch.
bool simd_active();
// Whether the IFMA (52-bit) kernels are enabled (CPU support, WAVIS_IFMA / _set_ifma).
bool ifma_active();

// Fast basis conversion constants for (in, out) prime-index lists (RnsContext::bconv_table).
struct BConvTable {
  std::vector<std::size_t> in, out;
  std::vector<u64> qhat_inv, qhat_inv_shoup;  // [(Q/q_i)^{-1}]_{q_i}
  std::vector<u64> qhat_mod_p;                // (Q/q_i) mod p_j at [j * L_in + i]
  std::vector<u64> qhat_mod_p_shoup;          // their Shoup companions (mod p_j)
};
struct CrtTable;    // exact CRT constants (ring.cpp)

class RnsContext {
 public:
  RnsContext(std::size_t N, const std::vector<u64>& moduli);
  ~RnsContext();

  std::size_t N;
  int logN;
  std::vector<u64> moduli;
  std::vector<NttTable> tables;
  std::vector<std::uint32_t> bitrev;  // bit reversal over logN bits

  const Modulus& mod(std::size_t i) const { return tables[i].mod; }

  // Raw-pointer kernels on rows; idx[r] is the prime index of row r (no bounds checks here).
  void ntt(u64* a, const std::size_t* idx, std::size_t rows) const;
  void intt(u64* a, const std::size_t* idx, std::size_t rows) const;

  std::shared_ptr<const BConvTable> bconv_table(const std::vector<std::size_t>& in,
                                                const std::vector<std::size_t>& out) const;
  std::shared_ptr<const CrtTable> crt_table(const std::vector<std::size_t>& idx) const;
  // out (len(out_idx), N) = FastBConv(a (len(in_idx), N)).
  void base_convert(const u64* a, u64* out, const std::vector<std::size_t>& in_idx,
                    const std::vector<std::size_t>& out_idx) const;
  // NTT-domain automorphism permutation for galois element g (cached).
  std::shared_ptr<const std::vector<std::uint32_t>> ntt_perm(u64 g) const;

 private:
  mutable std::mutex cache_mu_;
  mutable std::map<std::pair<std::vector<std::size_t>, std::vector<std::size_t>>,
                   std::shared_ptr<const BConvTable>> bconv_cache_;
  mutable std::map<std::vector<std::size_t>, std::shared_ptr<const CrtTable>> crt_cache_;
  mutable std::map<u64, std::shared_ptr<const std::vector<std::uint32_t>>> perm_cache_;
};

}  // namespace wavis
