// Bit packing for the compact wire format: residues mod q stored in ceil(log2 q) bits each
// (API.md "Sizes"), little-endian bit order within a byte stream.
#include <cstdint>
#include <cstring>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "registry.hpp"

namespace py = pybind11;

namespace {

py::bytes pack_bits(py::array_t<std::uint64_t, py::array::c_style> values, int bits) {
  if (bits < 1 || bits > 64) throw py::value_error("bits must be in 1..64");
  const std::size_t m = (std::size_t)values.size();
  const std::size_t nbytes = (m * (std::size_t)bits + 7) / 8;
  std::string out(nbytes, '\0');
  const std::uint64_t* v = values.data();
  {
    py::gil_scoped_release nogil;
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    const std::uint64_t mask = bits == 64 ? ~0ULL : ((1ULL << bits) - 1);
    unsigned __int128 acc = 0;
    int held = 0;
    std::size_t pos = 0;
    for (std::size_t i = 0; i < m; ++i) {
      acc |= (unsigned __int128)(v[i] & mask) << held;
      held += bits;
      while (held >= 8) {
        o[pos++] = (unsigned char)acc;
        acc >>= 8;
        held -= 8;
      }
    }
    if (held > 0) o[pos++] = (unsigned char)acc;
  }
  return py::bytes(out);
}

py::array_t<std::uint64_t> unpack_bits(py::bytes data, std::size_t count, int bits) {
  if (bits < 1 || bits > 64) throw py::value_error("bits must be in 1..64");
  std::string_view buf(data);
  const std::size_t need = (count * (std::size_t)bits + 7) / 8;
  if (buf.size() < need) throw py::value_error("packed data is truncated");
  py::array_t<std::uint64_t> out((py::ssize_t)count);
  std::uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    const auto* in = reinterpret_cast<const unsigned char*>(buf.data());
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
  return out;
}

void bind_pack(py::module_& m) {
  m.def("pack_bits", &pack_bits, py::arg("values"), py::arg("bits"),
        "Pack uint64 values (any shape, C order) into `bits` bits each, little-endian bit order.\n"
        "Bits above `bits` are dropped. Returns ceil(count*bits/8) bytes.");
  m.def("unpack_bits", &unpack_bits, py::arg("data"), py::arg("count"), py::arg("bits"),
        "Inverse of pack_bits: (count,) uint64. ValueError if data is shorter than needed.");
}

}  // namespace

WAVIS_REGISTER_BINDINGS(20, bind_pack);
