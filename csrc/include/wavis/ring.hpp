// RNS ring core: NTT-friendly primes, negacyclic NTT tables, RnsContext with its ring
// algorithms (NTT, element-wise ops, fast basis conversion, ModDown, rescale, exact CRT,
// automorphisms). Plain C++ on raw pointers (no bounds checks: callers validate); the Python
// class wavis._core.RnsContext (csrc/bindings/ring.cpp) only converts arguments.
// Sources: src/primes.cpp, src/ntt.cpp, src/ring.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "wavis/arith.hpp"
#include "wavis/simd.hpp"
#include "wavis/threads.hpp"

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
// a = NTT(src) (src == a allowed): the same values as copying src to a and ntt_forward(a); the
// AVX-512/IFMA kernels read src in their first pass instead of copying.
void ntt_forward_from(const u64* src, u64* a, const NttTable& t, std::size_t N);
// Inverse (Gentleman–Sande, input bit-reversed), includes N^{-1}; inputs below 2q (every kernel's
// lazy bounds assume it); output fully reduced.
void ntt_inverse(u64* a, const NttTable& t, std::size_t N);
// a = INTT(src) (src == a allowed), as copying then ntt_inverse(a); no copy on AVX-512/IFMA.
void ntt_inverse_from(const u64* src, u64* a, const NttTable& t, std::size_t N);
// a = INTT(src)·w mod q (w < q), fully reduced: w is folded into the last stage's N^-1, so the
// values equal ntt_inverse then a Shoup multiplication by w, without that extra pass.
void ntt_inverse_scaled(const u64* src, u64* a, const NttTable& t, std::size_t N, u64 w);

// Fast basis conversion constants for (in, out) prime-index lists (RnsContext::bconv_table).
struct BConvTable {
  std::vector<std::size_t> in, out;
  std::vector<u64> qhat_inv, qhat_inv_shoup;  // [(Q/q_i)^{-1}]_{q_i}
  std::vector<u64> qhat_mod_p;                // (Q/q_i) mod p_j at [j * L_in + i]
  std::vector<u64> qhat_mod_p_shoup;          // their Shoup companions (mod p_j)
};
// Constants of a ModDown by P = ∏_{j in ip} p_j onto the primes iq (RnsContext::mod_down_table):
// the ModDown / rescale / fused key-switching kernels of every backend read these (the CUDA
// backend uploads them), so they are derived once, here.
struct ModDownTable {
  std::vector<std::size_t> iq, ip;
  std::vector<u64> p_mod;               // P mod q_i
  std::vector<u64> half_p;              // (P - 1)/2 mod q_i (the rounding offset; P odd)
  std::vector<u64> p_inv, p_inv_shoup;  // P^-1 mod q_i and its Shoup companion
  std::vector<double> p_recip;          // 1/p_j in double (the conversion-overshoot estimate)
};
struct CrtTable;    // exact CRT constants (src/ring.cpp)

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
  // ModDown constants for (iq, ip) (cached); rescale is ip = {last prime}.
  std::shared_ptr<const ModDownTable> mod_down_table(const std::vector<std::size_t>& iq,
                                                     const std::vector<std::size_t>& ip) const;
  // out (len(out_idx), N) = FastBConv(a (len(in_idx), N)).
  void base_convert(const u64* a, u64* out, const std::vector<std::size_t>& in_idx,
                    const std::vector<std::size_t>& out_idx) const;
  // NTT-domain automorphism permutation for galois element g (cached).
  std::shared_ptr<const std::vector<std::uint32_t>> ntt_perm(u64 g) const;

  // ---- element-wise, on `rows` rows of N values; row r is reduced mod moduli[idx[r % L]]
  // (rows = batch * L). Inputs in [0, q); out may alias a or b.
  void add(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L, std::size_t rows) const;
  void sub(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L, std::size_t rows) const;
  void neg(const u64* a, u64* out, const std::size_t* idx, std::size_t L, std::size_t rows) const;
  // out = a·b, or out += a·b with accumulate (Barrett; IFMA rows on the ifma path for q < 2^50).
  void mul(const u64* a, const u64* b, u64* out, const std::size_t* idx, std::size_t L, std::size_t rows,
           bool accumulate) const;
  // out[r] = a[r]·scalars[r % L] (scalars reduced mod their primes; Shoup).
  void mul_scalar(const u64* a, const u64* scalars, u64* out, const std::size_t* idx, std::size_t L,
                  std::size_t rows) const;
  // Signed coefficients coeffs (batch, N) -> out (batch, len(idx), N) reduced mod each prime.
  void from_signed(const std::int64_t* coeffs, std::size_t batch, u64* out, const std::vector<std::size_t>& idx) const;
  // X -> X^g on every row, g odd in [1, 2N): coefficient domain with the negacyclic sign, or the
  // NTT-domain permutation (ntt_domain). out must not alias a.
  void automorphism(const u64* a, u64* out, u64 g, const std::size_t* idx, std::size_t L, std::size_t rows,
                    bool ntt_domain) const;

  // ---- RNS (coefficient domain unless stated; idx lists distinct primes)
  // ModDown (Han–Ki CT-RSA 2020 Alg. 2): a over Q∪P (len(iq)+len(ip) rows: iq then ip) ->
  // out (len(iq), N) = round(a / P) - u mod Q, 0 <= u < len(ip) (rounding via a + floor(P/2)).
  void mod_down(const u64* a, u64* out, const std::vector<std::size_t>& iq, const std::vector<std::size_t>& ip) const;
  // Rescale, NTT domain in/out: a (len(idx), N) -> out (len(idx)-1, N) = floor((x + floor(q_l/2)) / q_l)
  // for x the CRT value, q_l = moduli[idx.back()].
  void rescale(const u64* a, u64* out, const std::vector<std::size_t>& idx) const;
  // Exact centred CRT: a (len(idx), N) -> out[n] = the integer in (-Q/2, Q/2] congruent to the
  // rows, correctly rounded to float64 (round half to even; ±inf beyond 2^1024).
  void crt_compose(const u64* a, double* out, const std::vector<std::size_t>& idx) const;

 private:
  mutable std::mutex cache_mu_;
  mutable std::map<std::pair<std::vector<std::size_t>, std::vector<std::size_t>>,
                   std::shared_ptr<const BConvTable>> bconv_cache_;
  mutable std::map<std::vector<std::size_t>, std::shared_ptr<const CrtTable>> crt_cache_;
  mutable std::map<std::pair<std::vector<std::size_t>, std::vector<std::size_t>>,
                   std::shared_ptr<const ModDownTable>> moddown_cache_;
  mutable std::map<u64, std::shared_ptr<const std::vector<std::uint32_t>>> perm_cache_;
};

}  // namespace wavis
