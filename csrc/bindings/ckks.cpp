// Fused CKKS methods of wavis._core.RnsContext (key_switch_ext, ks_mod_up, ks_inner,
// mod_down_ntt): argument checks and array allocation only; the kernels are src/ckks.cpp.
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "py_util.hpp"
#include "registry.hpp"
#include "wavis/ckks.hpp"

namespace py = pybind11;

namespace wavis {
namespace {

// ---------------------------------------------------------------------------- bindings ----
using namespace pyh;

Digits parse_digits(py::handle obj, std::size_t Lq) {
  Digits d;
  std::vector<std::pair<std::int64_t, std::int64_t>> v;
  try {
    v = py::cast<std::vector<std::pair<std::int64_t, std::int64_t>>>(obj);
  } catch (py::cast_error&) {
    shape_error("digits must be a sequence of (start, end) pairs");
  }
  if (v.empty()) shape_error("digits must not be empty");
  std::int64_t pos = 0;
  for (auto& [s, e] : v) {
    if (s != pos || e <= s || e > (std::int64_t)Lq)
      shape_error("digits must be consecutive non-empty (start, end) ranges covering 0..len(idx_q)");
    d.start.push_back((std::size_t)s);
    d.end.push_back((std::size_t)e);
    pos = e;
  }
  if (pos != (std::int64_t)Lq) shape_error("digits must cover every row of idx_q");
  return d;
}

void check_disjoint(const std::vector<std::size_t>& iq, const std::vector<std::size_t>& ip) {
  std::vector<std::size_t> all = iq;
  all.insert(all.end(), ip.begin(), ip.end());
  for (std::size_t k = 0; k < all.size(); ++k)
    for (std::size_t l = 0; l < k; ++l)
      if (all[k] == all[l]) shape_error("idx_q and idx_p must be distinct primes");
}

// key: (D', 2, len(moduli), N) uint64 C-contiguous with D' >= D. Returns its pointer.
const u64* check_key(const RnsContext& c, py::handle key, std::size_t D) {
  if (!py::isinstance<py::array_t<std::uint64_t>>(key)) shape_error("key must be a numpy uint64 array");
  py::array k = py::reinterpret_borrow<py::array>(key);
  if (!(k.flags() & py::array::c_style)) shape_error("key must be C-contiguous");
  if (k.ndim() != 4 || (std::size_t)k.shape(0) < D || k.shape(1) != 2 || (std::size_t)k.shape(2) != c.moduli.size() ||
      (std::size_t)k.shape(3) != c.N)
    shape_error("key must have shape (digits >= " + std::to_string(D) + ", 2, " + std::to_string(c.moduli.size()) +
                ", " + std::to_string(c.N) + ") (rows indexed by prime index)");
  return static_cast<const u64*>(k.data());
}

// add: None or (m, Lq, N) with m in {1, 2}
const u64* check_add(const RnsContext& c, py::handle add, std::size_t Lq, std::size_t& m) {
  m = 0;
  if (add.is_none()) return nullptr;
  Arr A = check_arr(add, "add", c.N, Lq, true, false);
  if (A.ndim != 3 || A.batch < 1 || A.batch > 2) shape_error("add must have shape (1 or 2, len(idx_q), N)");
  m = A.batch;
  return A.ptr;
}

const char* kKsDoc =
    "Fused hybrid key switching (NTT domain in and out), without ModDown: returns acc (2, len(idx_q)+len(idx_p), N)\n"
    "over the basis idx_q ∪ idx_p with acc[c] = aut_g(Σ_d ModUp_d(a) ⊙ key[d, c] (+ P·add[c] on the idx_q rows)).\n"
    "a: (len(idx_q), N); key: (≥D, 2, len(moduli), N), row r of key[d, c] belonging to prime index r;\n"
    "digits: consecutive (start, end) ranges of positions in idx_q, digit d paired with key[d];\n"
    "add: None or (1|2, len(idx_q), N). ModUp_d converts the digit's coefficients to every other prime\n"
    "(fast basis conversion) and NTTs them. aut_g: the NTT-domain automorphism X → X^galois_elt applied to\n"
    "the sums on their way out (1 = none; a Galois key is passed pre-permuted, aut_g^{-1} of its rows).\n"
    "Rows are spread over the thread pool; the GIL is released.";

// galois_elt normalised mod 2N; odd or ShapeError; the permutation (null for 1)
std::shared_ptr<const std::vector<std::uint32_t>> galois_perm(const RnsContext& c, std::int64_t galois_elt) {
  const std::int64_t twoN = 2 * (std::int64_t)c.N;
  const std::int64_t g = ((galois_elt % twoN) + twoN) % twoN;
  if ((g & 1) == 0) shape_error("galois_elt must be odd, got " + std::to_string(galois_elt));
  if (g == 1) return nullptr;
  return c.ntt_perm((u64)g);
}

}  // namespace
}  // namespace wavis

using namespace wavis;

static void bind_ckks(py::module_& m) {
  auto cls = py::reinterpret_borrow<py::class_<RnsContext>>(m.attr("RnsContext"));
  cls.def("key_switch_ext", [](const RnsContext& c, py::handle a, py::handle key, py::handle idx_q, py::handle idx_p,
                               py::handle digits, py::handle add, std::int64_t galois_elt) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        check_disjoint(iq, ip);
        Digits dg = parse_digits(digits, iq.size());
        Arr A = check_arr(a, "a", c.N, iq.size(), false, false);
        const u64* K = check_key(c, key, dg.count());
        std::size_t am;
        const u64* ad = check_add(c, add, iq.size(), am);
        auto perm = galois_perm(c, galois_elt);
        const std::size_t R = iq.size() + ip.size();
        auto out = new_u64({2, (py::ssize_t)R, (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          KsPlan P(c, iq, ip, dg);
          key_switch_ext(P, A.ptr, K, c.moduli.size(), ad, am, perm ? perm->data() : nullptr, o);
        }
        return out;
      }, py::arg("a"), py::arg("key"), py::arg("idx_q"), py::arg("idx_p"), py::arg("digits"),
      py::arg("add") = py::none(), py::arg("galois_elt") = 1, kKsDoc);
  cls.def("ks_mod_up", [](const RnsContext& c, py::handle a, py::handle idx_q, py::handle idx_p, py::handle digits) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        check_disjoint(iq, ip);
        Digits dg = parse_digits(digits, iq.size());
        Arr A = check_arr(a, "a", c.N, iq.size(), false, false);
        const std::size_t R = iq.size() + ip.size();
        auto out = new_u64({(py::ssize_t)dg.count(), (py::ssize_t)R, (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          KsPlan P(c, iq, ip, dg);
          ks_mod_up(P, A.ptr, o);
        }
        return out;
      }, py::arg("a"), py::arg("idx_q"), py::arg("idx_p"), py::arg("digits"),
      "ModUp of every digit (NTT domain): a (len(idx_q), N) → (D, len(idx_q)+len(idx_p), N) over idx_q ∪ idx_p;\n"
      "rows of digit d inside the digit are copied from a, the others are fast basis conversions of the\n"
      "digit's coefficients, NTT'd. Shared by hoisted rotations (see ks_inner).");
  cls.def("ks_inner", [](const RnsContext& c, py::handle exts, py::handle key, py::handle idx_q, py::handle idx_p,
                         std::int64_t galois_elt, py::handle add) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        check_disjoint(iq, ip);
        const std::size_t R = iq.size() + ip.size();
        Arr E = check_arr(exts, "exts", c.N, R, true, false);
        if (E.ndim != 3) shape_error("exts must be 3-D (digits, len(idx_q)+len(idx_p), N)");
        const std::size_t D = E.batch;
        const u64* K = check_key(c, key, D);
        std::size_t am;
        const u64* ad = check_add(c, add, iq.size(), am);
        auto perm = galois_perm(c, galois_elt);
        auto out = new_u64({2, (py::ssize_t)R, (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          Digits dg;  // unused by ks_inner except for sizes
          dg.start.assign(1, 0);
          dg.end.assign(1, iq.size());
          KsPlan P(c, iq, ip, dg);
          ks_inner(P, E.ptr, D, K, c.moduli.size(), perm ? perm->data() : nullptr, ad, am, o);
        }
        return out;
      }, py::arg("exts"), py::arg("key"), py::arg("idx_q"), py::arg("idx_p"), py::arg("galois_elt") = 1,
      py::arg("add") = py::none(),
      "Key-switching inner product of ModUp digits (from ks_mod_up) with key, NTT domain, no ModDown:\n"
      "acc[c] = aut_g(Σ_d exts[d] ⊙ key[d, c] (+ P·add[c] on the idx_q rows)), (2, len(idx_q)+len(idx_p), N).\n"
      "aut_g is the NTT-domain automorphism X → X^galois_elt (a permutation; 1 = none), applied to the sums on\n"
      "their way out; for a hoisted rotation pass the Galois key pre-permuted (aut_g^{-1} of its rows) and the\n"
      "unrotated c_0 as add: the result equals Σ_d aut_g(exts[d]) ⊙ K[d, c] + P·aut_g(c_0) exactly.");
  cls.def("diag_mac", [](const RnsContext& c, py::handle rots, py::handle pts, py::handle sel, py::handle counts,
                         py::handle idx, std::int64_t repeat) {
        auto ix = parse_idx(idx, c.moduli.size(), "idx");
        if (ix.empty()) shape_error("idx must not be empty");
        const std::size_t L = ix.size(), N = c.N;
        if (!py::isinstance<py::array_t<std::uint64_t>>(rots)) shape_error("rots must be a numpy uint64 array");
        py::array r = py::reinterpret_borrow<py::array>(rots);
        if (!(r.flags() & py::array::c_style)) shape_error("rots must be C-contiguous");
        if (r.ndim() != 4 || (std::size_t)r.shape(2) != L || (std::size_t)r.shape(3) != N || r.shape(1) < 1)
          shape_error("rots must have shape (B, m, " + std::to_string(L) + ", " + std::to_string(N) + ")");
        const std::size_t B = (std::size_t)r.shape(0), m = (std::size_t)r.shape(1);
        if (repeat < 1 || (repeat & (repeat - 1)) || (std::size_t)repeat > N)
          shape_error("repeat must be a power of two in [1, N], got " + std::to_string(repeat));
        unsigned shift = 0;
        while (((std::int64_t)1 << shift) < repeat) ++shift;
        Arr P = check_arr(pts, "pts", N >> shift, L, true, false);
        if (P.ndim != 3) shape_error("pts must be 3-D (J, len(idx), N / repeat)");
        std::vector<std::int64_t> sv;
        try {
          sv = py::cast<std::vector<std::int64_t>>(sel);
        } catch (py::cast_error&) {
          shape_error("sel must be a sequence of ints");
        }
        if (sv.size() != P.batch)
          shape_error("sel must hold one index per plaintext (" + std::to_string(P.batch) + "), got " +
                      std::to_string(sv.size()));
        std::vector<std::size_t> sl(sv.size());
        for (std::size_t j = 0; j < sv.size(); ++j) {
          if (sv[j] < 0 || (std::size_t)sv[j] >= B) shape_error("sel[" + std::to_string(j) + "] out of range [0, " + std::to_string(B) + ")");
          sl[j] = (std::size_t)sv[j];
        }
        std::vector<std::int64_t> cv;
        try {
          cv = py::cast<std::vector<std::int64_t>>(counts);
        } catch (py::cast_error&) {
          shape_error("counts must be a sequence of ints");
        }
        std::vector<std::size_t> cn(cv.size());
        std::int64_t total = 0;
        for (std::size_t g = 0; g < cv.size(); ++g) {
          if (cv[g] < 0) shape_error("counts must not be negative");
          cn[g] = (std::size_t)cv[g];
          total += cv[g];
        }
        if (cv.empty() || total != (std::int64_t)sl.size())
          shape_error("counts must be non-empty and sum to the number of plaintexts (" + std::to_string(sl.size()) + ")");
        auto out = new_u64({(py::ssize_t)cn.size(), (py::ssize_t)m, (py::ssize_t)L, (py::ssize_t)N});
        u64* o = out.mutable_data();
        const u64* rp = static_cast<const u64*>(r.data());
        {
          py::gil_scoped_release nogil;
          diag_mac(c, rp, m, P.ptr, sl, cn, ix, shift, o);
        }
        return out;
      }, py::arg("rots"), py::arg("pts"), py::arg("sel"), py::arg("counts"), py::arg("idx"), py::arg("repeat") = 1,
      "Plaintext-diagonal inner sums of every giant step (double-hoisted BSGS, Bossuat et al. EUROCRYPT 2021 §3):\n"
      "out[g, c] = Σ_{j in group g} pts[j] ⊙ rots[sel[j], c] mod q (groups: counts[g] consecutive terms),\n"
      "(G, m, len(idx), N); rots (B, m, len(idx), N), pts (J, len(idx), N / repeat)\n"
      "(value n // repeat at coefficient n: the NTT of a plaintext in X^repeat is its small NTT repeated),\n"
      "NTT domain, values reduced. 128-bit lazy accumulation, one reduction; rows over the thread pool, GIL released.");
  cls.def("mod_down_ntt", [](const RnsContext& c, py::handle a, py::handle idx_q, py::handle idx_p) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        check_disjoint(iq, ip);
        Arr A = check_arr(a, "a", c.N, iq.size() + ip.size(), true, false);
        std::vector<py::ssize_t> shape;
        if (A.ndim == 3) shape.push_back((py::ssize_t)A.batch);
        shape.push_back((py::ssize_t)iq.size());
        shape.push_back((py::ssize_t)c.N);
        auto out = new_u64(shape);
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          mod_down_ntt(c, A.ptr, o, A.batch, iq, ip);
        }
        return out;
      }, py::arg("a"), py::arg("idx_q"), py::arg("idx_p"),
      "ModDown in the NTT domain with rounding: a (len(idx_q)+len(idx_p), N) or (batch, ..., N) over\n"
      "idx_q then idx_p → round(a / P) - u over idx_q (P = ∏ idx_p). Only the idx_p\n"
      "rows are inverse-transformed; the conversion overshoot u is estimated in floating point and removed,\n"
      "so u = 0 except when a/P is within ~2^-50 of a half-integer. With idx_p = [q_l] this is exactly `rescale`.");
}
WAVIS_REGISTER_BINDINGS(20, bind_ckks);
