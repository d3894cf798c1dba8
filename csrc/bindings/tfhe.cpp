// Python bindings of the TFHE CPU core (include/wavis/tfhe/api.hpp): TfheParams, keygen, LWE
// encryption/phase, and the server-key object with the batched primitives (bootstrap, key
// switching; GIL released, the core's thread pool). Argument checks only; every call runs the
// kernels of the current SIMD path (tfhe::kernels()). Used through wavis.backend.cpu.
#include <cstring>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "registry.hpp"
#include "wavis/threads.hpp"
#include "wavis/tfhe/api.hpp"

namespace py = pybind11;
using namespace wavis::tfhe;

namespace {

using U32 = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

Params checked(const Params& p) {
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return p;
}

std::string seed32(py::bytes b, const char* what) {
  std::string s = b;
  if (s.size() != 32) throw py::value_error(std::string(what) + " must be exactly 32 bytes");
  return s;
}

void check_lwe_batch(const U32& a, int n, const char* what) {
  if (a.ndim() != 2 || a.shape(1) != n + 1)
    throw py::value_error(std::string(what) + ": expected shape (m, " + std::to_string(n + 1) + ")");
}

const char* kCoreDoc = R"doc(TfheServerKeyCore(params, mask_seed, bsk_bodies, ksk_bodies)

The evaluation side of a TFHE server key, ready to compute: the bootstrapping key expanded
from its seed and bodies and converted to the Fourier domain (doubles), and the key-switching
key expanded likewise. Used through wavis.backend.cpu (the LweOps of the CPU backend).)doc";

const char* kParamsDoc = R"doc(TfheParams(lwe_dimension, glwe_dimension, polynomial_size, pbs_base_log, pbs_level,
ks_base_log, ks_level, lwe_noise_std, glwe_noise_std)

The named sizes of a TFHE parameter set (wavis.tfhe.TfheParameters), keyword arguments only.
Noise standard deviations are fractions of the torus. Raises ValueError when out of range.)doc";

void bind_tfhe(py::module_& m) {
  py::class_<Params>(m, "TfheParams", kParamsDoc)
      .def(py::init([](int lwe_dimension, int glwe_dimension, int polynomial_size, int pbs_base_log, int pbs_level,
                       int ks_base_log, int ks_level, double lwe_noise_std, double glwe_noise_std) {
             Params P;
             P.n = lwe_dimension;
             P.k = glwe_dimension;
             P.N = polynomial_size;
             P.bg = pbs_base_log;
             P.l = pbs_level;
             P.bks = ks_base_log;
             P.t = ks_level;
             P.lwe_std = lwe_noise_std;
             P.glwe_std = glwe_noise_std;
             return checked(P);
           }),
           py::kw_only(), py::arg("lwe_dimension"), py::arg("glwe_dimension"), py::arg("polynomial_size"),
           py::arg("pbs_base_log"), py::arg("pbs_level"), py::arg("ks_base_log"), py::arg("ks_level"),
           py::arg("lwe_noise_std"), py::arg("glwe_noise_std"))
      .def_readonly("lwe_dimension", &Params::n)
      .def_readonly("glwe_dimension", &Params::k)
      .def_readonly("polynomial_size", &Params::N)
      .def_readonly("pbs_base_log", &Params::bg)
      .def_readonly("pbs_level", &Params::l)
      .def_readonly("ks_base_log", &Params::bks)
      .def_readonly("ks_level", &Params::t)
      .def_readonly("lwe_noise_std", &Params::lwe_std)
      .def_readonly("glwe_noise_std", &Params::glwe_std)
      .def_property_readonly("extracted_lwe_dimension", &Params::extracted_lwe_dimension);

  m.def(
      "tfhe_keygen",
      [](const Params& params, py::bytes seed) {
        Params P = checked(params);
        std::string s = seed32(seed, "seed");
        KeygenResult r;
        {
          py::gil_scoped_release nogil;
          kernels().keygen(P, reinterpret_cast<const uint8_t*>(s.data()), r);
        }
        const int rows = (P.k + 1) * P.l;
        U8 lk(P.n), gk(P.k * P.N);
        std::memcpy(lk.mutable_data(), r.lwe_key.data(), r.lwe_key.size());
        std::memcpy(gk.mutable_data(), r.glwe_key.data(), r.glwe_key.size());
        U32 bsk({(py::ssize_t)P.n, (py::ssize_t)rows, (py::ssize_t)P.N});
        std::memcpy(bsk.mutable_data(), r.bsk_bodies.data(), r.bsk_bodies.size() * 4);
        U32 ksk({(py::ssize_t)(P.k * P.N), (py::ssize_t)P.t});
        std::memcpy(ksk.mutable_data(), r.ksk_bodies.data(), r.ksk_bodies.size() * 4);
        return py::make_tuple(lk, gk, py::bytes(reinterpret_cast<const char*>(r.mask_seed), 32), bsk, ksk);
      },
      py::arg("params"), py::arg("seed"),
      "TFHE key generation from a 32-byte seed -> (lwe_key u8[n], glwe_key u8[k*N], mask_seed, "
      "bsk_bodies u32[n, (k+1)*l, N], ksk_bodies u32[k*N, t]).");

  m.def(
      "tfhe_encrypt",
      [](const Params& params, U8 lwe_key, U32 mus, py::bytes seed) {
        Params P = checked(params);
        std::string s = seed32(seed, "seed");
        if (lwe_key.ndim() != 1 || lwe_key.shape(0) != P.n) throw py::value_error("lwe_key has the wrong length");
        if (mus.ndim() != 1) throw py::value_error("messages must be 1-D");
        size_t m = (size_t)mus.shape(0);
        U32 out({(py::ssize_t)m, (py::ssize_t)(P.n + 1)});
        const uint8_t* k = lwe_key.data();
        const uint32_t* mu = mus.data();
        uint32_t* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          kernels().lwe_encrypt(P, k, mu, m, reinterpret_cast<const uint8_t*>(s.data()), o);
        }
        return out;
      },
      py::arg("params"), py::arg("lwe_key"), py::arg("messages"), py::arg("seed"),
      "LWE-encrypt torus messages (uint32) under the small key -> u32[m, n+1].");

  m.def(
      "tfhe_phase",
      [](U8 lwe_key, U32 cts) {
        int n = (int)lwe_key.shape(0);
        check_lwe_batch(cts, n, "ciphertexts");
        size_t m = (size_t)cts.shape(0);
        U32 out((py::ssize_t)m);
        const uint8_t* k = lwe_key.data();
        const uint32_t* c = cts.data();
        uint32_t* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          kernels().lwe_phase(n, k, c, m, o);
        }
        return out;
      },
      py::arg("lwe_key"), py::arg("ciphertexts"), "Phases b - <a, s> (uint32) of LWE ciphertexts u32[m, n+1].");

  m.def(
      "tfhe_negacyclic_mul",
      [](U32 a, I32 b) {
        if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != b.shape(0)) throw py::value_error("a, b: same length N");
        int N = (int)a.shape(0);
        if (N < 4 || (N & (N - 1))) throw py::value_error("N must be a power of two >= 4");
        U32 out(N);
        kernels().negacyclic_mul(a.data(), b.data(), out.mutable_data(), N);
        return out;
      },
      py::arg("a"), py::arg("b"),
      "Negacyclic product a * b mod (X^N + 1, 2^32) through the TFHE FFT (a: torus u32, b: small int32). For tests.");

  m.def("tfhe_default_threads", [] { return (int)wavis::thread_count(); },
        "Threads a batched TFHE call uses by default: the core's pool (WAVIS_THREADS, else all cores).");

  py::class_<ServerKey>(m, "TfheServerKeyCore", kCoreDoc)
      .def(py::init([](const Params& params, py::bytes mask_seed, U32 bsk, U32 ksk) {
             Params P = checked(params);
             std::string s = seed32(mask_seed, "mask_seed");
             const size_t rows = (size_t)(P.k + 1) * P.l;
             if ((size_t)bsk.size() != (size_t)P.n * rows * P.N) throw py::value_error("bootstrapping-key bodies have the wrong size");
             if ((size_t)ksk.size() != (size_t)P.k * P.N * P.t) throw py::value_error("key-switching-key bodies have the wrong size");
             const uint32_t* b = bsk.data();
             const uint32_t* k = ksk.data();
             py::gil_scoped_release nogil;
             return kernels().make_server_key(P, reinterpret_cast<const uint8_t*>(s.data()), b, k);
           }),
           py::arg("params"), py::arg("mask_seed"), py::arg("bsk_bodies"), py::arg("ksk_bodies"))
      .def(
          "bootstrap",
          [](const ServerKey& self, U32 lwe, uint32_t mu, bool extract, int threads) {
            check_lwe_batch(lwe, self.params().n, "lwe");
            const size_t J = (size_t)lwe.shape(0);
            if (threads <= 0) threads = (int)wavis::thread_count();
            std::vector<py::ssize_t> shape{(py::ssize_t)J};
            if (extract) {
              shape.push_back((py::ssize_t)(self.params().extracted_lwe_dimension() + 1));
            } else {
              shape.push_back((py::ssize_t)(self.params().k + 1));
              shape.push_back((py::ssize_t)self.params().N);
            }
            U32 out(shape);
            const uint32_t* in = lwe.data();
            uint32_t* o = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.bootstrap(in, J, mu, extract, o, threads);
            }
            return out;
          },
          py::arg("lwe"), py::arg("mu"), py::arg("extract") = true, py::arg("threads") = 0,
          "Blind rotation of u32[J, n+1] with the test vector mu·(1 + X + ... + X^{N-1}); extract=True:\n"
          "sample extraction -> u32[J, k*N+1]; extract=False: the GLWE accumulators u32[J, k+1, N]. GIL released.")
      .def(
          "key_switch",
          [](const ServerKey& self, U32 big, int threads) {
            if (big.ndim() != 2 || big.shape(1) != (self.params().extracted_lwe_dimension() + 1))
              throw py::value_error("big: expected shape (J, " + std::to_string((self.params().extracted_lwe_dimension() + 1)) + ")");
            const size_t J = (size_t)big.shape(0);
            if (threads <= 0) threads = (int)wavis::thread_count();
            U32 out({(py::ssize_t)J, (py::ssize_t)(self.params().n + 1)});
            const uint32_t* in = big.data();
            uint32_t* o = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.key_switch(in, J, o, threads);
            }
            return out;
          },
          py::arg("big"), py::arg("threads") = 0,
          "LWE key switching u32[J, k*N+1] -> u32[J, n+1] under the small key. GIL released.")
      .def_property_readonly("memory_bytes", &ServerKey::memory_bytes)
      .def_property_readonly("simd_path", [](const ServerKey& self) { return std::string(wavis::simd_path_name(self.path())); },
                             "The SIMD path whose kernels this key was built with and runs.");
}

}  // namespace

WAVIS_REGISTER_BINDINGS(50, bind_tfhe);
