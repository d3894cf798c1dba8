// Fused CKKS key-switching kernels on RnsContext (plain C++; Python methods of
// wavis._core.RnsContext in csrc/bindings/ckks.cpp):
//
//  * key_switch_ext: hybrid key switching of one NTT-domain polynomial without materialising
//    the ModUp digits: for every output prime t of Q_l ∪ P, each digit is converted to t
//    (fast basis conversion, coefficient domain), NTT'd and multiplied into the key row with
//    lazy 128-bit accumulation; output rows are independent, so they are spread over the pool.
//  * ks_mod_up / ks_inner: the same split in two for hoisting (one ModUp shared by many
//    rotations).
//  * Rotations (both kernels): the Galois key is held pre-permuted, K'_d = aut_g^{-1}(K_d), so
//    Σ_d aut_g(x_d)·K_d = aut_g(Σ_d x_d·K'_d) (exact: the NTT-domain automorphism permutes each
//    row) is computed over the digits as they are and the automorphism applied once, to the two
//    sums of each output row, on their way out (perm; null for none).
//  * mod_down_ntt: ModDown by P (any sub-basis) in the NTT domain, with rounding; with P = q_l
//    it is the CKKS rescale, with P = q_l·P_special it fuses relinearization and rescale.
//
// Sources: Han–Ki, "Better bootstrapping for approximate HE", CT-RSA 2020 (hybrid key switching,
// Alg. 1–2); Halevi–Shoup, CRYPTO 2018 §5 (hoisting); Kim–Jung–Park–Ahn, "Over 100x faster
// bootstrapping", 2021 §3 (NTT-domain ModDown, fused rescale); Bajard–Eynard–Hasan–Zucca SAC
// 2016 (fast basis conversion). Arrays are raw row-major pointers; callers validate shapes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "wavis/ring.hpp"

namespace wavis {

// Digits of the hybrid key-switching gadget: consecutive position ranges of idx_q.
struct Digits {
  std::vector<std::size_t> start, end;  // positions in idx_q
  std::size_t count() const { return start.size(); }
  // digit holding position i (< Lq)
  std::size_t of(std::size_t i) const {
    for (std::size_t d = 0; d < start.size(); ++d)
      if (i < end[d]) return d;
    return start.size() - 1;
  }
};

// Everything a key switch over (idx_q, idx_p) needs; built per call (tables are cached).
struct KsPlan {
  const RnsContext* c;
  std::size_t N, Lq, Lp, R;
  std::vector<std::size_t> full;  // prime index of output row t: idx_q then idx_p
  Digits dg;
  std::vector<std::shared_ptr<const BConvTable>> tabs;  // digit primes -> full
  std::vector<u64> p_mod;                               // P mod prime of row t (t < Lq)

  KsPlan(const RnsContext& ctx, const std::vector<std::size_t>& iq, const std::vector<std::size_t>& ip,
         const Digits& d)
      : c(&ctx), N(ctx.N), Lq(iq.size()), Lp(ip.size()), dg(d) {
    full = iq;
    full.insert(full.end(), ip.begin(), ip.end());
    R = full.size();
    for (std::size_t j = 0; j < dg.count(); ++j) {
      std::vector<std::size_t> in(iq.begin() + dg.start[j], iq.begin() + dg.end[j]);
      tabs.push_back(ctx.bconv_table(in, full));
    }
    p_mod = ctx.mod_down_table(iq, ip)->p_mod;
  }
  bool in_digit(std::size_t d, std::size_t t) const { return t < Lq && t >= dg.start[d] && t < dg.end[d]; }
};


// out (2, Lq+Lp, N) = aut(Σ_d ModUp_d(a) ⊙ key[d] (+ P·add on the idx_q rows)), NTT domain.
// a (Lq, N); key (≥D, 2, key_rows, N), row = prime index; add null or (add_m, Lq, N);
// perm: the NTT-domain automorphism as out[n] = x[perm[n]] (RnsContext::ntt_perm) or null.
void key_switch_ext(const KsPlan& P, const u64* a, const u64* key, std::size_t key_rows, const u64* add,
                    std::size_t add_m, const std::uint32_t* perm, u64* out);
// exts (D, Lq+Lp, N): the ModUp of every digit, NTT domain.
void ks_mod_up(const KsPlan& P, const u64* a, u64* exts);
// out (2, Lq+Lp, N) = aut(Σ_d exts[d] ⊙ key[d] (+ P·add)); perm as key_switch_ext's.
void ks_inner(const KsPlan& P, const u64* exts, std::size_t D, const u64* key, std::size_t key_rows,
              const std::uint32_t* perm, const u64* add, std::size_t add_m, u64* out);
// Plaintext-diagonal inner sums of a BSGS linear transform (double hoisting, Bossuat et al.,
// EUROCRYPT 2021, §3), every giant step in one pass: out (G, m, L, N) with
// out[g] = Σ_{j in group g} pts[j] ⊙ rots[sel[j]] mod q_idx[row] (groups: counts[g] consecutive
// terms), products summed in 128 bits and reduced once. rots (B, m, L, N), pts (J, L, N >> shift)
// with pts value n >> shift used at coefficient n (a plaintext in X^(2^shift): its NTT is its small
// NTT repeated), sel[j] < B; all values < q.
void diag_mac(const RnsContext& c, const u64* rots, std::size_t m, const u64* pts, const std::vector<std::size_t>& sel,
              const std::vector<std::size_t>& counts, const std::vector<std::size_t>& idx, unsigned shift, u64* out);
// ModDown by P' = ∏ ip, NTT domain in/out, rounded: for each of `batch` polynomials
// a (Lq+Lp, N) -> out (Lq, N) = round(a / P').
void mod_down_ntt(const RnsContext& c, const u64* a, u64* out, std::size_t batch, const std::vector<std::size_t>& iq,
                  const std::vector<std::size_t>& ip);

}  // namespace wavis
