// Sliding-window local entropy over a 3-D volume of integer levels.
//
// Two drivers, chosen per call (choose_algorithm): runs, below, for any
// footprint and level count; columns, further down, for boxes over few levels
// (with the AVX-512 step of window_simd.hpp where the CPU has it). All keep the
// same exact fixed-point sum, so they give the same bits.
//
// Runs: each (z, y) row is an independent unit of work that owns a histogram: the
// window is built once at the row's first output voxel, then slid along x,
// where a step removes and adds one voxel per footprint run. At the end of the
// row the voxels still in the window are removed again, so the counts are back
// to zero without touching the other bins (cost independent of the bin count).
// Rows are distributed over OpenMP threads; since each row is computed the
// same way whichever thread runs it, the map is identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define ENTROPYMAP_SSE2 1
#endif

#include "entropymap/footprint.hpp"
#include "entropymap/histogram.hpp"
#include "entropymap/window_simd.hpp"

namespace entropymap {

struct Volume3 {
  std::int64_t nz, ny, nx;
};

// The rows (z, y) to compute, z in [z0, z1), y in [y0, y1); all x. Rows outside
// are neither read as output nor written (a tile of a larger computation).
struct Rows {
  std::int64_t z0, z1, y0, y1;
  static Rows all(Volume3 v) { return {0, v.nz, 0, v.ny}; }
};

inline bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

namespace detail {

// Threads to start for `units` independent units of work (1 without OpenMP).
inline int thread_count(int n_threads, std::int64_t units) {
#ifdef _OPENMP
  if (n_threads < 1) n_threads = 1;
  if (n_threads > units) n_threads = static_cast<int>(std::max<std::int64_t>(1, units));
  return n_threads;
#else
  (void)n_threads;
  (void)units;
  return 1;
#endif
}

// This thread's index inside a parallel region (0 without OpenMP).
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Bit k set where a[k] != b[k], for 64 bytes.
inline std::uint64_t differing_bytes64(const std::uint8_t* a, const std::uint8_t* b) {
#ifdef ENTROPYMAP_SSE2
  std::uint64_t m = 0;
  for (int k = 0; k < 64; k += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + k));
    const unsigned eq = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(va, vb)));
    m |= static_cast<std::uint64_t>(~eq & 0xFFFFu) << k;
  }
  return m;
#else
  std::uint64_t m = 0;
  for (int k = 0; k < 64; ++k) m |= static_cast<std::uint64_t>(a[k] != b[k]) << k;
  return m;
#endif
}

inline int lowest_bit(std::uint64_t m) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(m);
#else
  int k = 0;
  while (!(m & 1u)) { m >>= 1; ++k; }
  return k;
#endif
}

// The runs driver's bin of a level. 8- and 16-bit levels index a histogram
// spanning the whole type by their unsigned bit pattern, which saves the
// subtraction in the hot loop (the same counts under other names, so the same
// entropy); wider types use v - vmin over nbins bins.
template <typename T>
constexpr bool kWholeTypeBins = sizeof(T) <= 2;

template <typename T>
inline std::uint32_t bin_of(T v, std::int64_t vmin) {
  if constexpr (kWholeTypeBins<T>) {
    (void)vmin;
    return static_cast<std::make_unsigned_t<T>>(v);
  } else {
    return static_cast<std::uint32_t>(static_cast<std::int64_t>(v) - vmin);
  }
}

template <typename T>
struct ActiveRun {
  const T* row;               // data row at (z + dz, y + dy)
  const std::uint8_t* crow;   // counting-mask row, or nullptr
  int x0, x1;
};

// For a box, the active runs are the rows of a (planes x rows) grid in the
// order dz, then dy, all with the same x0 and x1: the hot loop then walks
// them by stride instead of loading a pointer per run. planes == 0: no grid.
struct RunGrid {
  int planes = 0, rows = 0;
  std::ptrdiff_t plane_stride = 0, row_stride = 0;
};

// One row. kCountMask: only voxels whose counting-mask entry is set enter
// the histogram (a template flag, so the unmasked loop carries no test).
template <typename T, bool kCountMask>
void entropy_row(const ActiveRun<T>* runs, std::size_t nruns, const RunGrid& grid, const T** leave,
                 const T** enter, std::int64_t nx,
                 std::int64_t xs, std::int64_t xe, const std::uint8_t* omask,
                 std::int64_t vmin, Histogram& h, float* out) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto bin = [vmin](T v) { return bin_of(v, vmin); };
  auto counted = [](const std::uint8_t* crow, std::int64_t x) { return !kCountMask || crow[x]; };

  for (std::size_t r = 0; r < nruns; ++r) {
    const std::int64_t lo = std::max<std::int64_t>(0, xs + runs[r].x0);
    const std::int64_t hi = std::min<std::int64_t>(nx - 1, xs + runs[r].x1);
    for (std::int64_t x = lo; x <= hi; ++x)
      if (counted(runs[r].crow, x)) h.add(bin(runs[r].row[x]));
  }
  // Steps x -> x + 1 for x in [xs, xe); the interior part, where every run's
  // leaving and entering voxel lies inside the row, needs no bound checks.
  std::int64_t lo_x0 = 0, hi_x1 = 0;
  for (std::size_t r = 0; r < nruns; ++r) {
    lo_x0 = std::min<std::int64_t>(lo_x0, runs[r].x0);
    hi_x1 = std::max<std::int64_t>(hi_x1, runs[r].x1);
  }
  const std::int64_t in_lo = std::max(xs, -lo_x0);          // x + x0 >= 0 for all runs
  const std::int64_t in_hi = std::min(xe, nx - 1 - hi_x1);  // x + 1 + x1 < nx while x < in_hi

  auto emit = [&](std::int64_t x) {
    out[x] = (omask && !omask[x]) ? nan : static_cast<float>(h.entropy());
  };
  auto step_checked = [&](std::int64_t x) {
    for (std::size_t r = 0; r < nruns; ++r) {
      const ActiveRun<T>& a = runs[r];
      const std::int64_t xo = x + a.x0;       // leaves
      const std::int64_t xi = x + 1 + a.x1;   // enters
      const bool out_ok = xo >= 0 && xo < nx && counted(a.crow, xo);
      const bool in_ok = xi >= 0 && xi < nx && counted(a.crow, xi);
      if (out_ok && in_ok) {
        const T vo = a.row[xo], vi = a.row[xi];
        if (vo != vi) h.replace(bin(vo), bin(vi));
      } else if (out_ok) {
        h.remove(bin(a.row[xo]));
      } else if (in_ok) {
        h.add(bin(a.row[xi]));
      }
    }
  };
  std::int64_t x = xs;
  for (; x < xe && x < in_lo; ++x) {
    emit(x);
    step_checked(x);
  }
  if (!kCountMask && x < in_hi) {
    // Hot loop: n is constant here, so only S and the counts change, and S lives
    // in two registers (leaving and entering sums, so their updates do not wait on
    // each other). No branch on "same level out and in": with noisy data it
    // mispredicts, and measured slower than the unconditional update.
    std::uint32_t* cnt = h.counts();
    const std::int64_t* step = h.steps();
    const EntropyTable& table = h.table();
    const std::int64_t n = h.count();
    std::int64_t s = h.sum();
    const std::int64_t tn = table.clnc(n);
    const double inv_n = table.entropy(n, tn - 1);  // = scale / (n 2^K)
    if (grid.planes > 0) {
      // A box: its rows are walked by stride. Locals, so the stores to the counts
      // cannot be taken to change them.
      const int planes = grid.planes;
      const std::ptrdiff_t plane_stride = grid.plane_stride, row_stride = grid.row_stride;
      const std::ptrdiff_t span = grid.rows * row_stride;
      const std::ptrdiff_t ahead = runs[0].x1 + 1 - runs[0].x0;  // entering - leaving voxel
      for (; x < in_hi; ++x) {
        out[x] = (omask && !omask[x]) ? nan : static_cast<float>(static_cast<double>(tn - s) * inv_n);
        std::int64_t gone = 0, come = 0;
        const T* pz = runs[0].row + x + runs[0].x0;
        for (int a = 0; a < planes; ++a, pz += plane_stride) {
          for (const T *p = pz, *end = pz + span; p != end; p += row_stride) {
            gone += step[--cnt[bin(p[0])]];
            come += step[cnt[bin(p[ahead])]++];
          }
        }
        s += come - gone;
      }
    } else {
      // Any other footprint: pointers to the leaving and entering column of each
      // run are kept in scratch.
      for (std::size_t r = 0; r < nruns; ++r) {
        leave[r] = runs[r].row + runs[r].x0;
        enter[r] = runs[r].row + 1 + runs[r].x1;
      }
      for (; x < in_hi; ++x) {
        out[x] = (omask && !omask[x]) ? nan : static_cast<float>(static_cast<double>(tn - s) * inv_n);
        std::int64_t gone = 0, come = 0;
        for (std::size_t r = 0; r < nruns; ++r) {
          const std::uint32_t bo = bin(leave[r][x]), bi = bin(enter[r][x]);
          gone += step[--cnt[bo]];
          come += step[cnt[bi]++];
        }
        s += come - gone;
      }
    }
    h.set_sum(s);
  }
  for (; x < xe; ++x) {
    emit(x);
    step_checked(x);
  }
  emit(xe);
  for (std::size_t r = 0; r < nruns; ++r) {
    const std::int64_t lo = std::max<std::int64_t>(0, xe + runs[r].x0);
    const std::int64_t hi = std::min<std::int64_t>(nx - 1, xe + runs[r].x1);
    for (std::int64_t x = lo; x <= hi; ++x)
      if (counted(runs[r].crow, x)) h.remove(bin(runs[r].row[x]));
  }
}

}  // namespace detail

// The general driver: any footprint, any number of levels. One (z, y) row per
// unit of work; the histogram slides along x run by run.
template <typename T>
void local_entropy_runs(const T* data, const std::uint8_t* out_mask, const std::uint8_t* count_mask,
                   Volume3 shape, const Footprint& fp, std::int64_t vmin, std::uint32_t nbins,
                   const EntropyTable& table, float* out, int n_threads, Rows rows) {
  const std::int64_t nz = shape.nz, ny = shape.ny, nx = shape.nx;
  const std::int64_t nyr = rows.y1 - rows.y0;
  const std::int64_t nrows = (rows.z1 - rows.z0) * nyr;
  n_threads = detail::thread_count(n_threads, nrows);
  // Allocate everything before the parallel region: nothing may throw inside it.
  if (detail::kWholeTypeBins<T>) nbins = std::uint32_t{1} << (8 * sizeof(T));
  std::vector<std::uint32_t> counts(static_cast<std::size_t>(n_threads) * nbins, 0);
  const std::size_t maxruns = fp.runs().size();
  std::vector<std::vector<detail::ActiveRun<T>>> scratch(n_threads);
  std::vector<std::vector<const T*>> columns(n_threads);
  for (auto& s : scratch) s.resize(maxruns);
  for (auto& c : columns) c.resize(2 * maxruns + 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool box = fp.is_box();

#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
#endif
  {
    const int tid = detail::thread_id();
    Histogram h(counts.data() + static_cast<std::size_t>(tid) * nbins, table);
    detail::ActiveRun<T>* active = scratch[tid].data();
    const T** leave = columns[tid].data();
    const T** enter = leave + maxruns;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
    for (std::int64_t r = 0; r < nrows; ++r) {
      const std::int64_t z = rows.z0 + r / nyr, y = rows.y0 + r % nyr;
      const std::size_t base = (static_cast<std::size_t>(z) * ny + y) * nx;
      float* orow = out + base;
      const std::uint8_t* omask = out_mask ? out_mask + base : nullptr;
      std::int64_t xs = 0, xe = nx - 1;
      if (omask) {
        while (xs < nx && !omask[xs]) ++xs;
        while (xe >= xs && !omask[xe]) --xe;
      }
      if (xs > xe) {
        std::fill(orow, orow + nx, nan);
        continue;
      }
      std::fill(orow, orow + xs, nan);
      std::fill(orow + xe + 1, orow + nx, nan);
      std::size_t nruns = 0;
      for (const Run& r : fp.runs()) {
        const std::int64_t zz = z + r.dz, yy = y + r.dy;
        if (zz < 0 || zz >= nz || yy < 0 || yy >= ny) continue;
        const std::size_t off = (static_cast<std::size_t>(zz) * ny + yy) * nx;
        active[nruns++] = {data + off, count_mask ? count_mask + off : nullptr, r.x0, r.x1};
      }
      detail::RunGrid grid;
      if (box) {
        grid.planes = static_cast<int>(std::min<std::int64_t>(fp.rz(), nz - 1 - z) - std::max<std::int64_t>(-fp.rz(), -z) + 1);
        grid.rows = static_cast<int>(std::min<std::int64_t>(fp.ry(), ny - 1 - y) - std::max<std::int64_t>(-fp.ry(), -y) + 1);
        grid.plane_stride = static_cast<std::ptrdiff_t>(ny * nx);
        grid.row_stride = static_cast<std::ptrdiff_t>(nx);
      }
      if (count_mask)
        detail::entropy_row<T, true>(active, nruns, grid, leave, enter, nx, xs, xe, omask, vmin, h, orow);
      else
        detail::entropy_row<T, false>(active, nruns, grid, leave, enter, nx, xs, xe, omask, vmin, h, orow);
    }
  }
}

// The driver for box footprints and few levels. Per unit of work (a plane z and
// a block of rows y), it keeps column histograms C[x] of the (kz x ky) voxels
// at each x, updated incrementally from row to row (2*kz voxels per column).
// Sliding along x then adds column x+rx+1 and removes column x-rx; only the bins
// where the two columns differ change the window, and a vector compare finds
// them. With few levels and smooth data most bins do not change, which makes
// this faster than updating 2*kz*ky voxels per step. Where the CPU has AVX-512
// VBMI and the window holds at most 255 voxels over at most 256 levels, the
// step along x is the branch-free vector loop of window_simd.hpp instead
// (`vectorize` = false keeps the portable loop; both give the same bits).
template <typename T>
void local_entropy_columns(const T* data, const std::uint8_t* out_mask, const std::uint8_t* count_mask,
                           Volume3 shape, const Footprint& fp, std::int64_t vmin, std::uint32_t nbins,
                           const EntropyTable& table, float* out, int n_threads, Rows rows,
                           bool vectorize = true) {
  const std::int64_t nz = shape.nz, ny = shape.ny, nx = shape.nx;
  const int rz = fp.rz(), ry = fp.ry(), rx = fp.rx();
  constexpr std::int64_t kBlock = 32;  // rows per unit: amortises the column build
  const std::int64_t nyb = (rows.y1 - rows.y0 + kBlock - 1) / kBlock;
  const std::int64_t units = (rows.z1 - rows.z0) * nyb;
  const std::size_t nb = (static_cast<std::size_t>(nbins) + 63) / 64 * 64;  // whole 64-bin groups
  // Zero columns pad the row: 2*rx+1 on the left so the window can start
  // empty at x = -rx-1 and slide in, rx on the right for the last step.
  const std::int64_t left = 2 * rx + 1;
  const std::size_t ncol = static_cast<std::size_t>(nx + left + rx);
  n_threads = detail::thread_count(n_threads, units);
  simd::CountTable count_table;
  const simd::SlideRow slide = vectorize ? simd::pick_slide(fp.size(), nb, table, count_table) : nullptr;
  std::vector<std::uint8_t> cols(static_cast<std::size_t>(n_threads) * ncol * nb);
  // The portable step's window counts (the vector step keeps them in registers).
  std::vector<std::uint16_t> wins(slide ? 0 : static_cast<std::size_t>(n_threads) * nb);
  const float nan = std::numeric_limits<float>::quiet_NaN();

#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
#endif
  {
    const int tid = detail::thread_id();
    std::uint8_t* C = cols.data() + static_cast<std::size_t>(tid) * ncol * nb;
    std::uint16_t* W = slide ? nullptr : wins.data() + static_cast<std::size_t>(tid) * nb;
    auto column = [&](std::int64_t x) { return C + static_cast<std::size_t>(x + left) * nb; };
    // Adds (+1) or removes (-1) the row (zz, yy) to the column histograms.
    auto update_row = [&](std::int64_t zz, std::int64_t yy, int sign) {
      if (zz < 0 || zz >= nz || yy < 0 || yy >= ny) return;
      const std::size_t off = (static_cast<std::size_t>(zz) * ny + yy) * nx;
      const T* row = data + off;
      const std::uint8_t* crow = count_mask ? count_mask + off : nullptr;
      std::uint8_t* c0 = column(0);
      for (std::int64_t x = 0; x < nx; ++x) {
        if (crow && !crow[x]) continue;
        const std::size_t b = static_cast<std::size_t>(static_cast<std::int64_t>(row[x]) - vmin);
        c0[static_cast<std::size_t>(x) * nb + b] = static_cast<std::uint8_t>(c0[static_cast<std::size_t>(x) * nb + b] + sign);
      }
    };

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (std::int64_t u = 0; u < units; ++u) {
      const std::int64_t z = rows.z0 + u / nyb, y0 = rows.y0 + (u % nyb) * kBlock;
      const std::int64_t y1 = std::min(rows.y1, y0 + kBlock);
      std::fill(C, C + ncol * nb, std::uint8_t{0});
      for (int dz = -rz; dz <= rz; ++dz)
        for (int dy = -ry; dy <= ry; ++dy) update_row(z + dz, y0 + dy, +1);
      for (std::int64_t y = y0; y < y1; ++y) {
        if (y > y0) {
          for (int dz = -rz; dz <= rz; ++dz) {
            update_row(z + dz, y - 1 - ry, -1);
            update_row(z + dz, y + ry, +1);
          }
        }
        const std::size_t base = (static_cast<std::size_t>(z) * ny + y) * nx;
        float* orow = out + base;
        const std::uint8_t* omask = out_mask ? out_mask + base : nullptr;
        if (omask && std::all_of(omask, omask + nx, [](std::uint8_t v) { return v == 0; })) {
          std::fill(orow, orow + nx, nan);
          continue;
        }
        if (slide) {
          slide(column(0), static_cast<std::ptrdiff_t>(nb), nx, rx, count_table, table, omask, orow);
          continue;
        }
        std::fill(W, W + nb, std::uint16_t{0});
        std::int64_t s = 0, n = 0;
        for (std::int64_t x = -rx - 1; x < nx; ++x) {
          if (x >= 0) orow[x] = (omask && !omask[x]) ? nan : static_cast<float>(table.entropy(n, s));
          if (x == nx - 1) break;
          const std::uint8_t* cin = column(x + rx + 1);
          const std::uint8_t* cout = column(x - rx);
          for (std::size_t g = 0; g < nb; g += 64) {
            std::uint64_t m = detail::differing_bytes64(cin + g, cout + g);
            while (m) {
              const std::size_t b = g + static_cast<std::size_t>(detail::lowest_bit(m));
              m &= m - 1;
              const int d = static_cast<int>(cin[b]) - static_cast<int>(cout[b]);
              const int w = W[b];
              s += table.clnc(w + d) - table.clnc(w);
              W[b] = static_cast<std::uint16_t>(w + d);
              n += d;
            }
          }
        }
      }
    }
  }
}

// kColumnsPortable: the column driver without vector instructions (for tests
// and comparison; it gives the same bits as kColumns).
enum class Algorithm { kAuto = 0, kRuns = 1, kColumns = 2, kColumnsPortable = 3 };

// Whether the column driver can run this footprint (and its counts fit its
// 8-bit columns and 16-bit window).
inline bool columns_applicable(const Footprint& fp) {
  const std::int64_t kzy = static_cast<std::int64_t>(2 * fp.rz() + 1) * (2 * fp.ry() + 1);
  return fp.is_box() && kzy <= 255 && fp.size() <= 65535;
}

// Measured on a 2-core x86-64 (2 threads, smooth data plus 15 HU noise, 45 to
// 175 levels, boxes 3^3 to 9^3): runs cost ~2*kz*ky updates per voxel whatever
// the levels; the vector column step costs ~1 per 64 levels, so it wins unless
// the face is small and the levels many (3^3 over 136+ levels: a tie); the
// portable column step scans every bin that changed, so it wins only for few
// levels per voxel of the face (5^3: <= 64 levels; 7^3 and 9^3: <= 175).
inline Algorithm choose_algorithm(const Footprint& fp, std::uint32_t nbins, const EntropyTable& table) {
  if (!columns_applicable(fp)) return Algorithm::kRuns;
  const std::int64_t kzy = static_cast<std::int64_t>(2 * fp.rz() + 1) * (2 * fp.ry() + 1);
  const std::int64_t groups = (static_cast<std::int64_t>(nbins) + 63) / 64;
  if (simd::usable(fp.size(), nbins, table)) return 8 * groups <= 2 * kzy ? Algorithm::kColumns : Algorithm::kRuns;
  const bool few = 25 * static_cast<std::int64_t>(nbins) <= 64 * kzy || (kzy >= 49 && nbins <= 192);
  return few ? Algorithm::kColumns : Algorithm::kRuns;
}

// The driver `auto` runs: "runs", "columns" or "columns+<vector instruction set>".
inline std::string driver_name(const Footprint& fp, std::uint32_t nbins, const EntropyTable& table) {
  if (choose_algorithm(fp, nbins, table) == Algorithm::kRuns) return "runs";
  return simd::usable(fp.size(), nbins, table) ? std::string("columns+") + simd::vector_isa() : "columns";
}

// Computes the local entropy of every voxel into `out` (nz*ny*nx floats).
//
// data        C-ordered levels; every value v must satisfy 0 <= v - vmin < nbins.
// out_mask    optional (nullptr): voxels where it is 0 get NaN.
// count_mask  optional (nullptr): only voxels where it is non-zero are counted.
// table       must cover counts up to fp.size().
// rows        optional: compute only these rows (others in `out` are untouched).
// Only voxels inside the volume are counted (the window shrinks at borders).
// Both drivers keep the same exact fixed-point sum, so they give the same bits.
// Does not throw once it has allocated its per-thread buffers.
template <typename T>
void local_entropy(const T* data, const std::uint8_t* out_mask, const std::uint8_t* count_mask,
                   Volume3 shape, const Footprint& fp, std::int64_t vmin, std::uint32_t nbins,
                   const EntropyTable& table, float* out, int n_threads,
                   Algorithm algorithm = Algorithm::kAuto, const Rows* rows = nullptr) {
  const Rows r = rows ? *rows : Rows::all(shape);
  if (r.z0 >= r.z1 || r.y0 >= r.y1) return;
  if (algorithm == Algorithm::kAuto) algorithm = choose_algorithm(fp, nbins, table);
  if ((algorithm == Algorithm::kColumns || algorithm == Algorithm::kColumnsPortable) && columns_applicable(fp))
    local_entropy_columns<T>(data, out_mask, count_mask, shape, fp, vmin, nbins, table, out, n_threads, r,
                             algorithm == Algorithm::kColumns);
  else
    local_entropy_runs<T>(data, out_mask, count_mask, shape, fp, vmin, nbins, table, out, n_threads, r);
}

}  // namespace entropymap
