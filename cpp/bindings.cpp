// Python bindings: registration, cheap shape checks, GIL release. Arithmetic
// lives in the headers; validation with helpful messages lives in
// entropymap/kernel.py, the only Python importer of this module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "entropymap/footprint.hpp"
#include "entropymap/histogram.hpp"
#include "entropymap/local_entropy.hpp"

namespace py = pybind11;
using entropymap::EntropyTable;
using entropymap::Footprint;

namespace {

using Mask = py::array_t<std::uint8_t, py::array::c_style>;

Footprint footprint_of(const Mask& footprint) {
  if (footprint.ndim() != 3) throw py::value_error("footprint must be 3-D");
  return Footprint::from_mask(footprint.data(), static_cast<int>(footprint.shape(0)),
                              static_cast<int>(footprint.shape(1)), static_cast<int>(footprint.shape(2)));
}

void check_same_shape(const py::array& a, const py::array& b, const char* name) {
  if (b.ndim() != 3 || b.shape(0) != a.shape(0) || b.shape(1) != a.shape(1) || b.shape(2) != a.shape(2))
    throw py::value_error(std::string(name) + " must have the shape of levels");
}

template <typename T>
py::array_t<float> local_entropy(py::array_t<T, py::array::c_style> levels, Mask footprint,
                                 std::int64_t vmin, std::int64_t nbins, double scale,
                                 std::optional<Mask> out_mask, std::optional<Mask> count_mask,
                                 int n_threads, int algorithm,
                                 std::optional<py::array_t<float, py::array::c_style>> out,
                                 std::optional<std::array<std::int64_t, 4>> rows) {
  if (levels.ndim() != 3) throw py::value_error("levels must be 3-D");
  if (nbins < 1 || nbins > (std::int64_t(1) << 24)) throw py::value_error("nbins out of range");
  if (algorithm < 0 || algorithm > 3)
    throw py::value_error("algorithm must be 0 (auto), 1 (runs), 2 (columns) or 3 (columns without vector instructions)");
  if (out_mask) check_same_shape(levels, *out_mask, "out_mask");
  if (count_mask) check_same_shape(levels, *count_mask, "count_mask");

  const Footprint fp = footprint_of(footprint);
  const EntropyTable table(fp.size(), scale);
  const entropymap::Volume3 shape{levels.shape(0), levels.shape(1), levels.shape(2)};
  entropymap::Rows r = entropymap::Rows::all(shape);
  if (rows) {
    r = {(*rows)[0], (*rows)[1], (*rows)[2], (*rows)[3]};
    if (r.z0 < 0 || r.z1 > shape.nz || r.z0 > r.z1 || r.y0 < 0 || r.y1 > shape.ny || r.y0 > r.y1)
      throw py::value_error("rows (z0, z1, y0, y1) must lie within the volume");
  }
  py::array_t<float> result;
  if (out) {
    check_same_shape(levels, *out, "out");
    if (!out->writeable()) throw py::value_error("out must be writeable");
    result = *out;
  } else {
    result = py::array_t<float>({shape.nz, shape.ny, shape.nx});
    if (rows) std::fill(result.mutable_data(), result.mutable_data() + result.size(),
                        std::numeric_limits<float>::quiet_NaN());
  }

  const T* data = levels.data();
  const std::uint8_t* om = out_mask ? out_mask->data() : nullptr;
  const std::uint8_t* cm = count_mask ? count_mask->data() : nullptr;
  float* o = result.mutable_data();
  {
    // Safe: only raw pointers into buffers kept alive by the arguments above.
    py::gil_scoped_release release;
    entropymap::local_entropy<T>(data, om, cm, shape, fp, vmin, static_cast<std::uint32_t>(nbins),
                                 table, o, n_threads, static_cast<entropymap::Algorithm>(algorithm), &r);
  }
  return result;
}

template <typename T>
void def_local_entropy(py::module_& m) {
  m.def("local_entropy", &local_entropy<T>, py::arg("levels").noconvert(), py::arg("footprint"),
        py::arg("vmin"), py::arg("nbins"), py::arg("scale"), py::arg("out_mask") = py::none(),
        py::arg("count_mask") = py::none(), py::arg("n_threads") = 1, py::arg("algorithm") = 0,
        py::arg("out").noconvert() = py::none(), py::arg("rows") = py::none());
}

py::array_t<std::uint8_t> footprint(const std::string& shape, int kz, int ky, int kx) {
  Footprint fp;
  if (shape == "cube")
    fp = Footprint::cube(kz, ky, kx);
  else if (shape == "ball")
    fp = Footprint::ball(kz, ky, kx);
  else
    throw py::value_error("shape must be 'cube' or 'ball'");
  const auto m = fp.mask();
  py::array_t<std::uint8_t> out({kz, ky, kx});
  std::copy(m.begin(), m.end(), out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "entropymap compiled core: sliding-window local entropy";
  def_local_entropy<std::int8_t>(m);
  def_local_entropy<std::uint8_t>(m);
  def_local_entropy<std::int16_t>(m);
  def_local_entropy<std::uint16_t>(m);
  def_local_entropy<std::int32_t>(m);
  def_local_entropy<std::uint32_t>(m);
  def_local_entropy<std::int64_t>(m);
  m.def("footprint", &footprint, py::arg("shape"), py::arg("kz"), py::arg("ky"), py::arg("kx"),
        "The cube or ball footprint of odd sizes (kz, ky, kx) as a uint8 array.");
  m.def("driver", [](Mask footprint, std::int64_t nbins) {
          const Footprint fp = footprint_of(footprint);
          return entropymap::driver_name(fp, static_cast<std::uint32_t>(nbins), EntropyTable(fp.size(), 1.0));
        }, py::arg("footprint"), py::arg("nbins"),
        "The driver 'auto' picks: 'runs', 'columns' or 'columns+<vector instruction set>'.");
  m.def("vector_isa", &entropymap::simd::vector_isa,
        "The vector instruction set the column driver uses on this CPU ('' when none).");
  m.def("openmp_enabled", &entropymap::openmp_enabled, "Whether the core was built with OpenMP.");
}
