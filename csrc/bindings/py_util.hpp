// pybind11 argument checking shared by the binding files (bindings/ring.cpp, bindings/ckks.cpp): array shape and
// dtype checks raising wavis.errors.ShapeError, prime-index parsing, array allocation.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "wavis/ring.hpp"

namespace wavis {
namespace pyh {
namespace py = pybind11;

[[noreturn]] inline void shape_error(const std::string& msg) {
  // wavis.errors.ShapeError (a ValueError subclass) when importable, else ValueError.
  static PyObject* cls = nullptr;
  if (!cls) {
    try {
      py::object o = py::module_::import("wavis.errors").attr("ShapeError");
      cls = o.release().ptr();
    } catch (py::error_already_set&) {
      cls = PyExc_ValueError;
    }
  }
  PyErr_SetString(cls, msg.c_str());
  throw py::error_already_set();
}

struct Arr {
  u64* ptr = nullptr;
  std::size_t batch = 1, rows = 0;  // total rows = batch * rows
  int ndim = 2;
};

// Validate a uint64 C-contiguous array of shape (rows, N) or, when allow3, (batch, rows, N).
// rows == SIZE_MAX: any number of rows.
inline Arr check_arr(py::handle obj, const char* name, std::size_t N, std::size_t rows, bool allow3, bool writable) {
  if (!py::isinstance<py::array>(obj)) shape_error(std::string(name) + " must be a numpy.ndarray of uint64");
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<std::uint64_t>>(obj))
    shape_error(std::string(name) + " must have dtype uint64, got " + std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style)) shape_error(std::string(name) + " must be C-contiguous");
  if (writable && !arr.writeable()) shape_error(std::string(name) + " must be writeable");
  Arr r;
  r.ndim = (int)arr.ndim();
  if (!(r.ndim == 2 || (allow3 && r.ndim == 3)))
    shape_error(std::string(name) + " must be " + (allow3 ? "2-D (limbs, N) or 3-D (batch, limbs, N)" : "2-D (limbs, N)") +
                ", got ndim=" + std::to_string(r.ndim));
  if ((std::size_t)arr.shape(r.ndim - 1) != N)
    shape_error(std::string(name) + ": last dimension must be N=" + std::to_string(N) + ", got " +
                std::to_string(arr.shape(r.ndim - 1)));
  r.rows = (std::size_t)arr.shape(r.ndim - 2);
  r.batch = r.ndim == 3 ? (std::size_t)arr.shape(0) : 1;
  if (rows != SIZE_MAX && r.rows != rows)
    shape_error(std::string(name) + " has " + std::to_string(r.rows) + " limbs, expected " + std::to_string(rows));
  r.ptr = static_cast<u64*>(const_cast<void*>(arr.data()));
  return r;
}

inline void same_shape(const Arr& a, const Arr& b, const char* na, const char* nb) {
  if (a.ndim != b.ndim || a.batch != b.batch || a.rows != b.rows)
    shape_error(std::string(na) + " and " + nb + " must have the same shape");
}

inline std::vector<std::size_t> parse_idx(py::handle idx, std::size_t nmods, const char* name = "idx") {
  std::vector<std::int64_t> v;
  try {
    if (py::isinstance<py::array>(idx)) {
      py::array a = py::reinterpret_borrow<py::array>(idx);
      char kind = a.dtype().kind();
      if (kind != 'i' && kind != 'u') shape_error(std::string(name) + " must hold integers");
      if (a.ndim() != 1) shape_error(std::string(name) + " must be 1-D");
      auto c = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
      v.assign(c.data(), c.data() + c.size());
    } else {
      v = py::cast<std::vector<std::int64_t>>(idx);
    }
  } catch (py::cast_error&) {
    shape_error(std::string(name) + " must be a sequence of ints");
  }
  std::vector<std::size_t> out(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    if (v[k] < 0 || (std::size_t)v[k] >= nmods)
      shape_error(std::string(name) + "[" + std::to_string(k) + "]=" + std::to_string(v[k]) +
                  " out of range [0, " + std::to_string(nmods) + ")");
    out[k] = (std::size_t)v[k];
  }
  return out;
}

inline py::array_t<std::uint64_t> new_u64(std::vector<py::ssize_t> shape) {
  return py::array_t<std::uint64_t>(shape);
}

// idx repeated over the batch: idx for every one of batch*rows rows.
inline std::vector<std::size_t> tile(const std::vector<std::size_t>& idx, std::size_t batch) {
  std::vector<std::size_t> t;
  t.reserve(idx.size() * batch);
  for (std::size_t b = 0; b < batch; ++b) t.insert(t.end(), idx.begin(), idx.end());
  return t;
}


}  // namespace pyh
}  // namespace wavis
