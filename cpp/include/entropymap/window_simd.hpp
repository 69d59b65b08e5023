// The column driver's step along x with AVX-512 (VBMI), chosen at run time.
//
// The window histogram of up to 64*NG levels lives in NG vector registers as
// bytes (a window holds at most 255 voxels here). A step adds the entering
// column and subtracts the leaving one (two byte-wise vector operations), then
// recomputes S = sum_b T[W[b]] over every bin: T, the fixed-point c ln c
// table, is split into byte planes, each plane is looked up for 64 counts at
// once with a 128-byte permute (two and a blend on the top bit for windows
// of 128..255 voxels), and the looked-up bytes are summed with
// vpsadbw. The sum of the planes shifted into place is exactly the integer S
// the scalar drivers keep, so the map has the same bits on every path; there
// is no branch on the data and the cost does not depend on how many bins
// changed. Compiled only by GCC >= 8 or Clang >= 7 on x86-64; elsewhere, or on a CPU
// without AVX-512 VBMI, pick_slide() returns nullptr and the portable loop runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "entropymap/histogram.hpp"

// GCC 8 and Clang 7 know the avx512vbmi target and __builtin_cpu_supports name.
#if (defined(__clang__) ? __clang_major__ >= 7 : (defined(__GNUC__) && __GNUC__ >= 8)) && defined(__x86_64__)
#include <immintrin.h>
#define ENTROPYMAP_AVX512_DISPATCH 1
#define ENTROPYMAP_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vbmi")))
#endif

namespace entropymap {
namespace simd {

constexpr int kPlanes = 7;                // bytes of T[c]: T < 2^52 is required below
constexpr std::int64_t kMaxWindow = 255;  // counts are bytes
constexpr int kMaxGroups = 4;             // up to 256 levels, 64 per register

// Byte plane p of T[c] for c = 0..255 (zero beyond the table's largest count).
struct CountTable {
  alignas(64) std::uint8_t plane[kPlanes][256];
};

// The step for one row: columns at col0 + x*stride (x from -rx-1 to nx-1+rx,
// zero outside the row), output orow[0..nx).
using SlideRow = void (*)(const std::uint8_t* col0, std::ptrdiff_t stride, std::int64_t nx, int rx,
                          const CountTable& ct, const EntropyTable& table, const std::uint8_t* omask,
                          float* orow);

#ifdef ENTROPYMAP_AVX512_DISPATCH

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12's AVX-512 intrinsics start from a deliberately undefined vector and warn
// about it once inlined (GCC bug 105593); nothing here reads an undefined value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

inline bool avx512_vbmi_available() {
  // Checks the CPU and that the OS saves the 512-bit registers.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vbmi");
}

// T[c] byte plane p for the 64 counts in w: one permute over 128 entries, or
// two and a blend on bit 7 when counts may reach 128..255.
template <bool kWide>
ENTROPYMAP_TARGET_AVX512 inline __m512i lookup(const __m512i* t, __m512i w) {
  const __m512i low = _mm512_permutex2var_epi8(t[0], w, t[1]);
  if (!kWide) return low;
  const __m512i high = _mm512_permutex2var_epi8(t[2], w, t[3]);
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(w), low, high);
}

template <int NG, bool kWide>
ENTROPYMAP_TARGET_AVX512 void slide_row_avx512(const std::uint8_t* col0, std::ptrdiff_t stride,
                                               std::int64_t nx, int rx, const CountTable& ct,
                                               const EntropyTable& table, const std::uint8_t* omask,
                                               float* orow) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr int kQuarters = kWide ? 4 : 2;  // 64-entry quarters of each plane in use
  __m512i tab[kPlanes][4];
  for (int p = 0; p < kPlanes; ++p)
    for (int q = 0; q < kQuarters; ++q) tab[p][q] = _mm512_load_si512(ct.plane[p] + 64 * q);
  const __m512i zero = _mm512_setzero_si512();
  // The window before x = 0 holds columns 0..rx-1.
  __m512i w[NG];
  for (int g = 0; g < NG; ++g) w[g] = zero;
  for (int c = 0; c < rx; ++c)
    for (int g = 0; g < NG; ++g)
      w[g] = _mm512_add_epi8(w[g], _mm512_loadu_si512(col0 + c * stride + 64 * g));
  const std::uint8_t* cin = col0 + static_cast<std::ptrdiff_t>(rx) * stride;
  const std::uint8_t* cout = col0 - static_cast<std::ptrdiff_t>(rx + 1) * stride;
  for (std::int64_t x = 0; x < nx; ++x, cin += stride, cout += stride) {
    // Byte arithmetic wraps, but every count is back in 0..255 once both columns
    // are applied, so the wrapped intermediate is harmless.
    __m512i acc = zero;
    for (int g = 0; g < NG; ++g) {
      w[g] = _mm512_sub_epi8(_mm512_add_epi8(w[g], _mm512_loadu_si512(cin + 64 * g)),
                             _mm512_loadu_si512(cout + 64 * g));
      // n (<= 255) rides in bits 52.. of the same sum: S < 2^52 never reaches them.
      acc = _mm512_add_epi64(acc, _mm512_slli_epi64(_mm512_sad_epu8(w[g], zero), 52));
    }
    for (int p = 0; p < kPlanes; ++p) {
      __m512i sp = zero;
      for (int g = 0; g < NG; ++g)
        sp = _mm512_add_epi64(sp, _mm512_sad_epu8(lookup<kWide>(tab[p], w[g]), zero));
      acc = _mm512_add_epi64(acc, _mm512_slli_epi64(sp, 8 * p));
    }
    // Lanes may wrap past 2^64; the true total is < 2^64, so the modular sum is exact.
    const std::uint64_t total = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc));
    const std::int64_t s = static_cast<std::int64_t>(total & ((std::uint64_t{1} << 52) - 1));
    const std::int64_t n = static_cast<std::int64_t>(total >> 52);
    orow[x] = (omask && !omask[x]) ? nan : static_cast<float>(table.entropy(n, s));
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else

inline bool avx512_vbmi_available() { return false; }

#endif

// Whether the vector step can run windows of `window` voxels over `nbins`
// levels on this machine.
inline bool usable(std::int64_t window, std::int64_t nbins, const EntropyTable& table) {
  return window >= 1 && window <= kMaxWindow && window <= table.max_count() && nbins >= 1 &&
         nbins <= 64 * kMaxGroups && table.clnc(window) < (std::int64_t{1} << 52) && avx512_vbmi_available();
}

// The vector step for windows of `window` voxels over `nb` (a multiple of 64)
// bins, with its table filled into `ct`; nullptr when it is not usable().
inline SlideRow pick_slide(std::int64_t window, std::size_t nb, const EntropyTable& table, CountTable& ct) {
  if (nb % 64 != 0 || !usable(window, static_cast<std::int64_t>(nb), table)) return nullptr;
  for (int c = 0; c < 256; ++c) {
    const std::uint64_t t = c <= window ? static_cast<std::uint64_t>(table.clnc(c)) : 0;
    for (int p = 0; p < kPlanes; ++p) ct.plane[p][c] = static_cast<std::uint8_t>(t >> (8 * p));
  }
#ifdef ENTROPYMAP_AVX512_DISPATCH
  const bool wide = window > 127;
  switch (nb / 64) {
    case 1: return wide ? &slide_row_avx512<1, true> : &slide_row_avx512<1, false>;
    case 2: return wide ? &slide_row_avx512<2, true> : &slide_row_avx512<2, false>;
    case 3: return wide ? &slide_row_avx512<3, true> : &slide_row_avx512<3, false>;
    case 4: return wide ? &slide_row_avx512<4, true> : &slide_row_avx512<4, false>;
  }
#endif
  return nullptr;
}

// The instruction set pick_slide() can use on this machine ("" when none).
inline const char* vector_isa() { return avx512_vbmi_available() ? "avx512vbmi" : ""; }

}  // namespace simd
}  // namespace entropymap
