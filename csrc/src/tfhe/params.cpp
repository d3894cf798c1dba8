// TFHE parameters and the per-path kernel table (include/wavis/tfhe/api.hpp). Portable code.
#include <stdexcept>
#include <string>

#include "wavis/tfhe/api.hpp"

namespace wavis {
namespace tfhe {

namespace isa_portable { const Kernels& kernel_table(); }
#if defined(WAVIS_TFHE_DISPATCH)
namespace isa_avx2 { const Kernels& kernel_table(); }
namespace isa_avx512 { const Kernels& kernel_table(); }
#endif

void Params::validate() const {
  if (n < 1 || n > 4096) throw std::invalid_argument("LweDimension out of range");
  if (k < 1 || k > 8) throw std::invalid_argument("GlweDimension out of range");
  if (N < 16 || N > 16384 || (N & (N - 1))) throw std::invalid_argument("PolynomialSize must be a power of two");
  if (bg < 1 || l < 1 || bg * l > 32) throw std::invalid_argument("PBS decomposition: base_log * levels must be <= 32");
  if (bks < 1 || t < 1 || bks * t > 32) throw std::invalid_argument("KS decomposition: base_log * levels must be <= 32");
  if (!(lwe_std > 0 && lwe_std < 0.1 && glwe_std > 0 && glwe_std < 0.1)) throw std::invalid_argument("noise std dev out of range");
}

void KeygenResult::size_for(const Params& P) {
  lwe_key.assign((std::size_t)P.n, 0);
  glwe_key.assign((std::size_t)P.k * P.N, 0);
  bsk_bodies.assign((std::size_t)P.n * (P.k + 1) * P.l * P.N, 0u);
  ksk_bodies.assign((std::size_t)P.k * P.N * P.t, 0u);
}

const Kernels& kernels(SimdPath p) {
  if (!cpu_supports(p))
    throw std::invalid_argument(std::string("TFHE kernels: this CPU cannot run the ") + simd_path_name(p) + " path");
#if defined(WAVIS_TFHE_DISPATCH)
  if (p >= SimdPath::avx512) return isa_avx512::kernel_table();
  if (p == SimdPath::avx2) return isa_avx2::kernel_table();
#endif
  return isa_portable::kernel_table();
}

}  // namespace tfhe
}  // namespace wavis
