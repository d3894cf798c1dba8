// Bit packing for the compact wire format: residues mod q stored in `bits` bits each (API.md
// "Sizes"), little-endian bit order within a byte stream.
#pragma once
#include <cstddef>
#include <cstdint>

namespace wavis {

// Bytes needed for count values of `bits` bits.
inline std::size_t packed_size(std::size_t count, int bits) { return (count * (std::size_t)bits + 7) / 8; }
// out[packed_size(m, bits)] = the low `bits` bits (1..64) of each v[i], in order.
void pack_bits(const std::uint64_t* v, std::size_t m, int bits, std::uint8_t* out);
// Inverse: out[count] from in[packed_size(count, bits)].
void unpack_bits(const std::uint8_t* in, std::size_t count, int bits, std::uint64_t* out);

}  // namespace wavis
