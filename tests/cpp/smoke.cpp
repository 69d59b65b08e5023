// The header-only kernel without Python: a 3:2 pattern along x has 0.673012 nats inside,
// a constant volume 0, and every driver (runs, columns with the vector step where the CPU
// has it, portable columns) gives the same bits. Built with and without OpenMP by
// tests/test_cpp_smoke.py.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "entropymap/local_entropy.hpp"

using namespace entropymap;

int main() {
  const std::int64_t nz = 9, ny = 9, nx = 30;
  std::vector<std::int16_t> v(static_cast<std::size_t>(nz * ny * nx));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i % nx) % 5 < 3 ? 7 : 2;
  const Footprint fp = Footprint::cube(5, 5, 5);
  const EntropyTable table(fp.size(), 1.0);
  std::vector<float> runs(v.size()), cols(v.size()), portable(v.size());
  local_entropy<std::int16_t>(v.data(), nullptr, nullptr, {nz, ny, nx}, fp, 2, 6, table, runs.data(), 2,
                              Algorithm::kRuns);
  local_entropy<std::int16_t>(v.data(), nullptr, nullptr, {nz, ny, nx}, fp, 2, 6, table, cols.data(), 2,
                              Algorithm::kColumns);
  local_entropy<std::int16_t>(v.data(), nullptr, nullptr, {nz, ny, nx}, fp, 2, 6, table, portable.data(), 2,
                              Algorithm::kColumnsPortable);
  if (std::memcmp(runs.data(), cols.data(), runs.size() * sizeof(float)) != 0 ||
      std::memcmp(runs.data(), portable.data(), runs.size() * sizeof(float)) != 0) {
    std::puts("drivers differ");
    return 1;
  }
  const float inner = runs[(4 * ny + 4) * nx + 10];
  if (std::fabs(inner - 0.673012f) > 1e-6f) {
    std::printf("interior value %f, expected 0.673012\n", inner);
    return 1;
  }
  std::vector<std::int16_t> c(v.size(), -1000);
  local_entropy<std::int16_t>(c.data(), nullptr, nullptr, {nz, ny, nx}, fp, -1000, 1, table, runs.data(), 1);
  for (float h : runs)
    if (h != 0.0f) {
      std::puts("constant volume is not exactly 0");
      return 1;
    }
  std::printf("ok (openmp %d)\n", openmp_enabled() ? 1 : 0);
  std::fprintf(stderr, "vector step: %s\n", simd::vector_isa()[0] ? simd::vector_isa() : "none");
  return 0;
}
