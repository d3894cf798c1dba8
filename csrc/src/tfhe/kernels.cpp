// The TFHE algorithms (include/wavis/tfhe/tfhe.hpp, fft.hpp) for one SIMD path. This file is
// compiled once per path with that path's target flags (CMakeLists.txt: portable = baseline
// x86-64, avx2 = -march=x86-64-v3, avx512 = -march=x86-64-v4) and WAVIS_TFHE_ISA naming the
// namespace (isa_portable, isa_avx2, isa_avx512), so the copies never mix; the preprocessor
// picks each copy's kernels (__AVX512F__, __AVX2__ + __FMA__) exactly as a -march=native build
// of that CPU did. Runtime selection: wavis::tfhe::kernels(path) (src/tfhe/params.cpp).
#ifndef WAVIS_TFHE_ISA
#error "WAVIS_TFHE_ISA must name this copy's namespace (isa_portable, isa_avx2, isa_avx512)"
#endif
#include "wavis/tfhe/tfhe.hpp"

namespace wavis {
namespace tfhe {
namespace WAVIS_TFHE_ISA {

namespace {

#if defined(__AVX512F__)
constexpr SimdPath kPath = SimdPath::avx512;
#elif defined(WAVIS_TFHE_AVX2)
constexpr SimdPath kPath = SimdPath::avx2;
#else
constexpr SimdPath kPath = SimdPath::portable;
#endif

class ServerKeyImpl final : public ServerKey {
 public:
  ServerKeyImpl(const Params& P, const uint8_t* mask_seed, const uint32_t* bsk, const uint32_t* ksk)
      : core_(P, mask_seed, bsk, ksk) {}
  const Params& params() const override { return core_.P; }
  std::size_t memory_bytes() const override { return core_.memory_bytes(); }
  void bootstrap(const uint32_t* lwe, std::size_t J, uint32_t mu, bool extract, uint32_t* out,
                 int threads) const override {
    core_.bootstrap(lwe, J, mu, extract, out, threads);
  }
  void key_switch(const uint32_t* big, std::size_t J, uint32_t* out, int threads) const override {
    core_.key_switch(big, J, out, threads);
  }
  SimdPath path() const override { return kPath; }

 private:
  ServerKeyCore core_;
};

std::unique_ptr<ServerKey> make_server_key(const Params& P, const uint8_t* mask_seed, const uint32_t* bsk,
                                           const uint32_t* ksk) {
  return std::make_unique<ServerKeyImpl>(P, mask_seed, bsk, ksk);
}

void negacyclic_mul(const uint32_t* a, const int32_t* b, uint32_t* out, int N) {
  NegacyclicFFT fft(N);
  avec<double> ar(N / 2), ai(N / 2), br(N / 2), bi(N / 2);
  fft.forward_torus(a, ar.data(), ai.data());
  fft.forward_i32(b, br.data(), bi.data());
  for (int j = 0; j < N / 2; ++j) {
    double r = ar[j] * br[j] - ai[j] * bi[j];
    double i = ar[j] * bi[j] + ai[j] * br[j];
    ar[j] = r;
    ai[j] = i;
  }
  std::memset(out, 0, 4 * (size_t)N);
  fft.inverse_add_torus(ar.data(), ai.data(), out);
}

void keygen_entry(const Params& P, const uint8_t* seed32, KeygenResult& out) { keygen(P, seed32, out); }
void encrypt_entry(const Params& P, const uint8_t* key, const uint32_t* mus, std::size_t m, const uint8_t* seed32,
                   uint32_t* out) {
  lwe_encrypt(P, key, mus, m, seed32, out);
}
void phase_entry(int n, const uint8_t* key, const uint32_t* cts, std::size_t m, uint32_t* out) {
  lwe_phase(n, key, cts, m, out);
}

const Kernels kTable = {kPath, &keygen_entry, &encrypt_entry, &phase_entry, &make_server_key, &negacyclic_mul};

}  // namespace

const Kernels& kernel_table() { return kTable; }

}  // namespace WAVIS_TFHE_ISA
}  // namespace tfhe
}  // namespace wavis
