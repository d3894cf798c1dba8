// Bit packing (include/wavis/pack.hpp).
#include "wavis/pack.hpp"

namespace wavis {

void pack_bits(const std::uint64_t* v, std::size_t m, int bits, std::uint8_t* o) {
  const std::uint64_t mask = bits == 64 ? ~0ULL : ((1ULL << bits) - 1);
  unsigned __int128 acc = 0;
  int held = 0;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < m; ++i) {
    acc |= (unsigned __int128)(v[i] & mask) << held;
    held += bits;
    while (held >= 8) {
      o[pos++] = (std::uint8_t)acc;
      acc >>= 8;
      held -= 8;
    }
  }
  if (held > 0) o[pos++] = (std::uint8_t)acc;
}

void unpack_bits(const std::uint8_t* in, std::size_t count, int bits, std::uint64_t* o) {
  const std::uint64_t mask = bits == 64 ? ~0ULL : ((1ULL << bits) - 1);
  unsigned __int128 acc = 0;
  int held = 0;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < count; ++i) {
    while (held < bits) {
      acc |= (unsigned __int128)in[pos++] << held;
      held += 8;
    }
    o[i] = (std::uint64_t)acc & mask;
    acc >>= bits;
    held -= bits;
  }
}

}  // namespace wavis
