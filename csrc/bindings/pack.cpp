// Python functions pack_bits / unpack_bits (src/pack.cpp).
#include <cstdint>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "registry.hpp"
#include "wavis/pack.hpp"

namespace py = pybind11;

namespace {

py::bytes pack_bits(py::array_t<std::uint64_t, py::array::c_style> values, int bits) {
  if (bits < 1 || bits > 64) throw py::value_error("bits must be in 1..64");
  const std::size_t m = (std::size_t)values.size();
  std::string out(wavis::packed_size(m, bits), '\0');
  const std::uint64_t* v = values.data();
  {
    py::gil_scoped_release nogil;
    wavis::pack_bits(v, m, bits, reinterpret_cast<std::uint8_t*>(out.data()));
  }
  return py::bytes(out);
}

py::array_t<std::uint64_t> unpack_bits(py::bytes data, std::size_t count, int bits) {
  if (bits < 1 || bits > 64) throw py::value_error("bits must be in 1..64");
  std::string_view buf(data);
  if (buf.size() < wavis::packed_size(count, bits)) throw py::value_error("packed data is truncated");
  py::array_t<std::uint64_t> out((py::ssize_t)count);
  std::uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    wavis::unpack_bits(reinterpret_cast<const std::uint8_t*>(buf.data()), count, bits, o);
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
