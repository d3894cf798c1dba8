// Python class wavis._core.RnsContext and the SIMD-path functions: argument checks (shapes,
// dtypes, prime indices -> wavis.errors.ShapeError), array allocation and GIL release only; the
// algorithms are RnsContext's methods (src/ring.cpp, src/ntt.cpp).
#include <cstring>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "py_util.hpp"
#include "registry.hpp"
#include "wavis/ring.hpp"
#include "wavis/simd.hpp"

namespace py = pybind11;

namespace wavis {
namespace {

using namespace pyh;

// out = op(a, b) on (limbs, N) or (batch, limbs, N) arrays of the same shape.
template <class F>
void binary_op(const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx, F op) {
  auto ix = parse_idx(idx, c.moduli.size());
  Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
  Arr B = check_arr(b, "b", c.N, ix.size(), true, false);
  Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
  same_shape(A, B, "a", "b");
  same_shape(A, O, "a", "out");
  py::gil_scoped_release nogil;
  op(A.ptr, B.ptr, O.ptr, ix.data(), ix.size(), A.batch * A.rows);
}

// idx with no repeated prime (name: for the message)
void check_distinct(const std::vector<std::size_t>& ix, const char* what) {
  for (std::size_t k = 0; k < ix.size(); ++k)
    for (std::size_t l = 0; l < k; ++l)
      if (ix[k] == ix[l]) shape_error(what);
}

const char* kCtxDoc = R"doc(RnsContext(N: int, moduli: list[int])

Precomputed tables for the ring Z[X]/(X^N + 1) in RNS form over a list of NTT-friendly primes
(q ≡ 1 mod 2N, prime, q < 2^62, distinct); implements wavis.backend.protocol.RingContext on
NumPy uint64 arrays.

Arrays: (limbs, N) uint64 C-contiguous, row r reduced mod moduli[idx[r]]; ntt/intt/add/sub/neg/
mul/mul_add also accept (batch, limbs, N). NTT-domain arrays are in bit-reversed order.
Errors: ValueError (wavis.errors.ShapeError) for a wrong dtype/shape/non-contiguous or read-only
output/idx out of range; ValueError for bad N or moduli. Inputs are assumed fully reduced
(unreduced inputs give meaningless results but never touch memory out of bounds).
Heavy calls release the GIL and use WAVIS_THREADS threads over limbs.

Algorithms: negacyclic NTT with Harvey lazy butterflies and Shoup twiddles (Harvey 2014;
Longa–Naehrig 2016), ψ = the minimal primitive 2N-th root of unity; fast basis conversion
(BEHZ 2016, HPS 2019); ModDown (Han–Ki 2020); exact multi-word CRT.)doc";


}  // namespace
}  // namespace wavis

using namespace wavis;

namespace {
SimdPath path_arg(const std::string& name) {
  try {
    return parse_simd_path(name);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}
}  // namespace

static void bind_ring(py::module_& m) {
  m.def("simd_path", [] { return std::string(simd_path_name(simd_path())); },
        "The SIMD path the core runs: 'portable', 'avx2', 'avx512' or 'ifma' (env WAVIS_SIMD, else the\n"
        "best this CPU supports; docs/ring.md). One switch for ring, CKKS and TFHE kernels.");
  m.def("simd_paths", [] {
        std::vector<std::string> v;
        for (SimdPath p : supported_paths()) v.push_back(simd_path_name(p));
        return v;
      }, "The SIMD paths this CPU can run, portable first (the last is the default).");
  m.def("_set_simd_path", [](const std::string& name) {
        try {
          return std::string(simd_path_name(set_simd_path(path_arg(name))));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      }, py::arg("path"),
      "Select the SIMD path for kernels started from now on; returns the previous one. ValueError for\n"
      "an unknown path or one this CPU lacks. TFHE server keys keep the path they were built with.\n"
      "For tests and benchmarks (a process picks its path with WAVIS_SIMD).");
  m.def("_set_simd", [](bool on) {
        const bool prev = simd_active();
        if (!on) set_simd_path(SimdPath::portable);
        else if (!prev && cpu_supports(SimdPath::avx512)) set_simd_path(SimdPath::avx512);
        return prev;
      }, py::arg("enabled"),
      "Legacy switch: False selects the portable path, True the avx512 path when the CPU has it and the\n"
      "path is below it; returns whether the AVX-512 kernels were on. Prefer _set_simd_path.");
  m.def("_set_ifma", [](bool on) {
        const bool prev = ifma_active();
        if (on && simd_active() && cpu_supports(SimdPath::ifma)) set_simd_path(SimdPath::ifma);
        if (!on && prev) set_simd_path(SimdPath::avx512);
        return prev;
      }, py::arg("enabled"),
      "Legacy switch between the ifma and avx512 paths (no effect below avx512); returns whether the\n"
      "IFMA kernels were on. Prefer _set_simd_path.");
  m.def("thread_count", &wavis::thread_count, "Threads of the C++ pool (env WAVIS_THREADS, default: all cores).");

  py::class_<RnsContext>(m, "RnsContext", kCtxDoc)
      .def(py::init([](std::size_t N, std::vector<u64> moduli) {
             try {
               py::gil_scoped_release nogil;
               return std::make_unique<RnsContext>(N, moduli);
             } catch (const std::exception& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("N"), py::arg("moduli"))
      .def_property_readonly("N", [](const RnsContext& c) { return c.N; })
      .def_property_readonly("moduli", [](const RnsContext& c) {
        py::tuple t(c.moduli.size());
        for (std::size_t i = 0; i < c.moduli.size(); ++i) t[i] = py::int_(c.moduli[i]);
        return t;
      })
      .def("__repr__", [](const RnsContext& c) {
        return "RnsContext(N=" + std::to_string(c.N) + ", limbs=" + std::to_string(c.moduli.size()) + ")";
      })
      .def("psi", [](const RnsContext& c, std::size_t i) {
        if (i >= c.moduli.size()) shape_error("prime index out of range");
        return c.tables[i].psi;
      }, py::arg("i"), "The ψ (minimal primitive 2N-th root of unity) used for prime i.")
      .def("twiddles", [](const RnsContext& c, std::size_t i) {
        if (i >= c.moduli.size()) shape_error("prime index out of range");
        const NttTable& t = c.tables[i];
        auto mk = [&](const std::vector<u64>& v) {
          py::array_t<std::uint64_t> a((py::ssize_t)v.size());
          std::memcpy(a.mutable_data(), v.data(), v.size() * 8);
          return a;
        };
        py::dict d;
        d["psi_rev"] = mk(t.psi_rev);
        d["psi_rev_shoup"] = mk(t.psi_rev_shoup);
        d["ipsi_rev"] = mk(t.ipsi_rev);
        d["ipsi_rev_shoup"] = mk(t.ipsi_rev_shoup);
        d["n_inv"] = t.n_inv;
        d["n_inv_shoup"] = t.n_inv_shoup;
        d["wn_inv"] = t.wn_inv;
        d["wn_inv_shoup"] = t.wn_inv_shoup;
        d["barrett_hi"] = t.mod.ratio_hi;
        d["barrett_lo"] = t.mod.ratio_lo;
        d["psi"] = t.psi;
        return d;
      }, py::arg("i"),
      "NTT and modulus constants of prime i (for other backends): psi_rev[k] = ψ^bitrev(k),\n"
      "ipsi_rev[k] = ψ^-bitrev(k), their Shoup companions floor(w·2^64/q), n_inv = N^-1 mod q,\n"
      "wn_inv = ψ^-bitrev(1)·N^-1 (the last inverse stage) and their companions, and the Barrett\n"
      "ratio floor(2^128/q) = barrett_hi·2^64 + barrett_lo.")
      // ---- derived constants, exported for other backends (the CUDA backend uploads them)
      .def("bconv_constants", [](const RnsContext& c, py::handle idx_in, py::handle idx_out) {
        auto ii = parse_idx(idx_in, c.moduli.size(), "idx_in");
        auto io = parse_idx(idx_out, c.moduli.size(), "idx_out");
        if (ii.empty()) shape_error("idx_in must not be empty");
        check_distinct(ii, "idx_in must not repeat a prime");
        auto t = c.bconv_table(ii, io);
        auto w = new_u64({(py::ssize_t)ii.size()}), wp = new_u64({(py::ssize_t)ii.size()});
        auto m = new_u64({(py::ssize_t)io.size(), (py::ssize_t)ii.size()});
        std::memcpy(w.mutable_data(), t->qhat_inv.data(), ii.size() * 8);
        std::memcpy(wp.mutable_data(), t->qhat_inv_shoup.data(), ii.size() * 8);
        if (!t->qhat_mod_p.empty()) std::memcpy(m.mutable_data(), t->qhat_mod_p.data(), t->qhat_mod_p.size() * 8);
        py::dict d;
        d["qhat_inv"] = w;
        d["qhat_inv_shoup"] = wp;
        d["qhat_mod_p"] = m;
        return d;
      }, py::arg("idx_in"), py::arg("idx_out"),
      "Fast basis conversion constants (the ones base_convert uses; cached): qhat_inv[i] =\n"
      "[(Q/q_i)^-1]_{q_i} and its Shoup companion, qhat_mod_p[j, i] = (Q/q_i) mod p_j; uint64 arrays.")
      .def("mod_down_constants", [](const RnsContext& c, py::handle idx_q, py::handle idx_p) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        std::vector<std::size_t> all(iq);
        all.insert(all.end(), ip.begin(), ip.end());
        check_distinct(all, "idx_q and idx_p must be distinct primes");
        auto t = c.mod_down_table(iq, ip);
        auto mk = [](const std::vector<u64>& v) {
          auto a = new_u64({(py::ssize_t)v.size()});
          std::memcpy(a.mutable_data(), v.data(), v.size() * 8);
          return a;
        };
        py::array_t<double> recip((py::ssize_t)t->p_recip.size());
        std::memcpy(recip.mutable_data(), t->p_recip.data(), t->p_recip.size() * 8);
        py::dict d;
        d["p_mod"] = mk(t->p_mod);
        d["half_p"] = mk(t->half_p);
        d["p_inv"] = mk(t->p_inv);
        d["p_inv_shoup"] = mk(t->p_inv_shoup);
        d["p_recip"] = recip;
        return d;
      }, py::arg("idx_q"), py::arg("idx_p"),
      "ModDown constants of P = ∏ p_idx_p onto idx_q (the ones mod_down, rescale, mod_down_ntt and\n"
      "the key-switching kernels use; cached): p_mod = P mod q_i, half_p = (P-1)/2 mod q_i, p_inv =\n"
      "P^-1 mod q_i and its Shoup companion (uint64, len(idx_q)); p_recip = 1/p_j (float64, len(idx_p)).")
      .def("ntt_perm", [](const RnsContext& c, std::int64_t g) {
        const std::int64_t twoN = 2 * (std::int64_t)c.N;
        std::int64_t gm = ((g % twoN) + twoN) % twoN;
        if ((gm & 1) == 0) shape_error("galois_elt must be odd, got " + std::to_string(g));
        auto p = c.ntt_perm((u64)gm);
        py::array_t<std::uint32_t> out((py::ssize_t)p->size());
        std::memcpy(out.mutable_data(), p->data(), p->size() * 4);
        return out;
      }, py::arg("galois_elt"),
      "The NTT-domain automorphism X -> X^g as a gather: out[k] = a[perm[k]] (uint32, (N,); cached).")
      .def("shoup", [](const RnsContext& c, std::vector<u64> values, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (values.size() != ix.size()) shape_error("values and idx must have the same length");
        auto out = new_u64({(py::ssize_t)ix.size()});
        u64* o = out.mutable_data();
        for (std::size_t k = 0; k < ix.size(); ++k) {
          if (values[k] >= c.moduli[ix[k]]) shape_error("values must be reduced mod their primes");
          o[k] = shoup_precompute(values[k], c.moduli[ix[k]]);
        }
        return out;
      }, py::arg("values"), py::arg("idx"),
      "Shoup companions floor(w·2^64/q) of values w reduced mod q = moduli[idx[k]] (uint64).")
      // ---- memory
      .def("asarray", [](const RnsContext&, py::handle a) {
        return py::module_::import("numpy").attr("ascontiguousarray")(a, "uint64");
      }, py::arg("a"), "C-contiguous uint64 NumPy array (no copy if already one).")
      .def("to_numpy", [](const RnsContext&, py::handle a) {
        return py::module_::import("numpy").attr("ascontiguousarray")(a, "uint64");
      }, py::arg("a"))
      .def("zeros", [](const RnsContext& c, std::size_t limbs, py::object batch) {
        std::vector<py::ssize_t> shape;
        if (!batch.is_none()) shape.push_back(py::cast<py::ssize_t>(batch));
        shape.push_back((py::ssize_t)limbs);
        shape.push_back((py::ssize_t)c.N);
        auto a = new_u64(shape);
        std::memset(a.mutable_data(), 0, a.size() * 8);
        return a;
      }, py::arg("limbs"), py::arg("batch") = py::none(), "Zero array (limbs, N) or (batch, limbs, N), uint64.")
      // ---- transforms
      .def("ntt", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, true);
        auto t = tile(ix, A.batch);
        py::gil_scoped_release nogil;
        c.ntt(A.ptr, t.data(), t.size());
      }, py::arg("a"), py::arg("idx"),
      "Forward negacyclic NTT of every row in place; a: (limbs, N) or (batch, limbs, N) uint64,\n"
      "coefficients in [0, q) → evaluations a(ψ^(2·bitrev(k)+1)) at position k, in [0, q).")
      .def("intt", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, true);
        auto t = tile(ix, A.batch);
        py::gil_scoped_release nogil;
        c.intt(A.ptr, t.data(), t.size());
      }, py::arg("a"), py::arg("idx"), "Inverse of ntt (includes N^-1), in place.")
      // ---- element-wise
      .def("add", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        binary_op(c, a, b, out, idx, [&](const u64* x, const u64* y, u64* z, const std::size_t* ix, std::size_t L,
                                         std::size_t rows) { c.add(x, y, z, ix, L, rows); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out = a + b mod q (out may alias a or b).")
      .def("sub", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        binary_op(c, a, b, out, idx, [&](const u64* x, const u64* y, u64* z, const std::size_t* ix, std::size_t L,
                                         std::size_t rows) { c.sub(x, y, z, ix, L, rows); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out = a - b mod q.")
      .def("mul", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        binary_op(c, a, b, out, idx, [&](const u64* x, const u64* y, u64* z, const std::size_t* ix, std::size_t L,
                                         std::size_t rows) { c.mul(x, y, z, ix, L, rows, false); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"),
      "out = a * b mod q (Barrett); the polynomial product when a, b are in the NTT domain.")
      .def("mul_add", [](const RnsContext& c, py::handle a, py::handle b, py::handle out, py::handle idx) {
        binary_op(c, a, b, out, idx, [&](const u64* x, const u64* y, u64* z, const std::size_t* ix, std::size_t L,
                                         std::size_t rows) { c.mul(x, y, z, ix, L, rows, true); });
      }, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("idx"), "out += a * b mod q.")
      .def("neg", [](const RnsContext& c, py::handle a, py::handle out, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
        Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
        same_shape(A, O, "a", "out");
        py::gil_scoped_release nogil;
        c.neg(A.ptr, O.ptr, ix.data(), ix.size(), A.batch * A.rows);
      }, py::arg("a"), py::arg("out"), py::arg("idx"), "out = -a mod q.")
      .def("mul_scalar", [](const RnsContext& c, py::handle a, std::vector<u64> scalars, py::handle out, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
        Arr O = check_arr(out, "out", c.N, ix.size(), true, true);
        same_shape(A, O, "a", "out");
        if (scalars.size() != ix.size())
          shape_error("scalars has length " + std::to_string(scalars.size()) + ", expected " + std::to_string(ix.size()));
        for (std::size_t r = 0; r < ix.size(); ++r)
          if (scalars[r] >= c.moduli[ix[r]]) shape_error("scalars[" + std::to_string(r) + "] is not reduced mod its prime");
        py::gil_scoped_release nogil;
        c.mul_scalar(A.ptr, scalars.data(), O.ptr, ix.data(), ix.size(), A.batch * A.rows);
      }, py::arg("a"), py::arg("scalars"), py::arg("out"), py::arg("idx"),
      "out[r] = a[r] * scalars[r] mod q_idx[r] (scalars reduced mod their primes; Shoup).")
      // ---- RNS
      .def("from_signed", [](const RnsContext& c, py::handle coeffs, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (!py::isinstance<py::array_t<std::int64_t>>(coeffs)) shape_error("coeffs must be a numpy int64 array");
        py::array arr = py::reinterpret_borrow<py::array>(coeffs);
        if (!(arr.flags() & py::array::c_style)) shape_error("coeffs must be C-contiguous");
        if (!(arr.ndim() == 1 || arr.ndim() == 2) || (std::size_t)arr.shape(arr.ndim() - 1) != c.N)
          shape_error("coeffs must have shape (N,) or (batch, N) with N=" + std::to_string(c.N));
        const std::size_t batch = arr.ndim() == 2 ? (std::size_t)arr.shape(0) : 1;
        std::vector<py::ssize_t> shape;
        if (arr.ndim() == 2) shape.push_back((py::ssize_t)batch);
        shape.push_back((py::ssize_t)ix.size());
        shape.push_back((py::ssize_t)c.N);
        auto out = new_u64(shape);
        const std::int64_t* src = static_cast<const std::int64_t*>(arr.data());
        u64* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.from_signed(src, batch, dst, ix);
        }
        return out;
      }, py::arg("coeffs"), py::arg("idx"),
      "Signed int64 coefficients (N,) or (batch, N) → RNS rows (limbs, N) or (batch, limbs, N), uint64.")
      .def("base_convert", [](const RnsContext& c, py::handle a, py::handle idx_in, py::handle idx_out) {
        auto ii = parse_idx(idx_in, c.moduli.size(), "idx_in");
        auto io = parse_idx(idx_out, c.moduli.size(), "idx_out");
        if (ii.empty()) shape_error("idx_in must not be empty");
        check_distinct(ii, "idx_in must not repeat a prime");
        Arr A = check_arr(a, "a", c.N, ii.size(), false, false);
        auto out = new_u64({(py::ssize_t)io.size(), (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.base_convert(A.ptr, o, ii, io);
        }
        return out;
      }, py::arg("a"), py::arg("idx_in"), py::arg("idx_out"),
      "Fast basis conversion (coefficient domain): a (len(idx_in), N) over Q = ∏ q_idx_in →\n"
      "(len(idx_out), N) holding Σ_i [a_i·(Q/q_i)^-1]_{q_i}·(Q/q_i) mod p_j, i.e. x + u·Q with\n"
      "0 <= u < len(idx_in) where x in [0, Q) is the CRT value (BEHZ 2016 / HPS 2019).")
      .def("mod_down", [](const RnsContext& c, py::handle a, py::handle idx_q, py::handle idx_p) {
        auto iq = parse_idx(idx_q, c.moduli.size(), "idx_q");
        auto ip = parse_idx(idx_p, c.moduli.size(), "idx_p");
        if (iq.empty() || ip.empty()) shape_error("idx_q and idx_p must not be empty");
        std::vector<std::size_t> all = iq;
        all.insert(all.end(), ip.begin(), ip.end());
        check_distinct(all, "idx_q and idx_p must be distinct primes");
        Arr A = check_arr(a, "a", c.N, all.size(), false, false);
        auto out = new_u64({(py::ssize_t)iq.size(), (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.mod_down(A.ptr, o, iq, ip);
        }
        return out;
      }, py::arg("a"), py::arg("idx_q"), py::arg("idx_p"),
      "ModDown (coefficient domain in/out): a over Q∪P (rows idx_q then idx_p) → (len(idx_q), N)\n"
      "holding round(a / P) - u mod Q with 0 <= u < len(idx_p) (fast basis conversion error;\n"
      "Han–Ki CT-RSA 2020 Alg. 2, Cheon et al. SAC 2018). Rounding via a + floor(P/2).")
      .def("rescale", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (ix.size() < 2) shape_error("rescale needs at least two limbs");
        Arr A = check_arr(a, "a", c.N, ix.size(), false, false);
        auto out = new_u64({(py::ssize_t)(ix.size() - 1), (py::ssize_t)c.N});
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.rescale(A.ptr, o, ix);
        }
        return out;
      }, py::arg("a"), py::arg("idx"),
      "NTT domain in/out: round(a / q_last) over idx[:-1] (a (len(idx), N) → (len(idx)-1, N)).")
      .def("crt_compose", [](const RnsContext& c, py::handle a, py::handle idx) {
        auto ix = parse_idx(idx, c.moduli.size());
        if (ix.empty()) shape_error("idx must not be empty");
        check_distinct(ix, "idx must not repeat a prime");
        Arr A = check_arr(a, "a", c.N, ix.size(), false, false);
        py::array_t<double> out((py::ssize_t)c.N);
        double* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.crt_compose(A.ptr, o, ix);
        }
        return out;
      }, py::arg("a"), py::arg("idx"),
      "Exact centred CRT of coefficient-domain rows (multi-word integers): the integer in\n"
      "(-Q/2, Q/2] congruent to the rows, rounded to the nearest float64; (N,) float64.")
      .def("automorphism", [](const RnsContext& c, py::handle a, std::int64_t g, py::handle idx, bool ntt_domain) {
        auto ix = parse_idx(idx, c.moduli.size());
        Arr A = check_arr(a, "a", c.N, ix.size(), true, false);
        const std::int64_t twoN = 2 * (std::int64_t)c.N;
        std::int64_t gm = ((g % twoN) + twoN) % twoN;
        if ((gm & 1) == 0) shape_error("galois_elt must be odd, got " + std::to_string(g));
        std::vector<py::ssize_t> shape;
        if (A.ndim == 3) shape.push_back((py::ssize_t)A.batch);
        shape.push_back((py::ssize_t)ix.size());
        shape.push_back((py::ssize_t)c.N);
        auto out = new_u64(shape);
        u64* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.automorphism(A.ptr, o, (u64)gm, ix.data(), ix.size(), A.batch * A.rows, ntt_domain);
        }
        return out;
      }, py::arg("a"), py::arg("galois_elt"), py::arg("idx"), py::arg("ntt_domain"),
      "X -> X^g (g odd, taken mod 2N) on every row; a (limbs, N) or (batch, limbs, N); returns a new\n"
      "array. Coefficient domain: a_i X^{ig} with the negacyclic sign; NTT domain: the matching\n"
      "permutation of the bit-reversed evaluation points (ntt∘aut_coeff == aut_ntt∘ntt).");
}
WAVIS_REGISTER_BINDINGS(10, bind_ring);
