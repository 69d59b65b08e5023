// Histogram with a running sum of c*ln(c), so entropy is O(1) per query and
// adding or removing one voxel is O(1). No I/O, no Python.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace entropymap {

// Table of round(c * ln(c) * 2^K) for c = 0..max_count, in fixed point.
//
// Why fixed point: an integer running sum S = sum_i T[c_i] is exact, so it does
// not drift along a row, does not depend on the order of updates (which makes
// the result identical for any traversal or thread count), and a constant
// window gives S == T[n] and therefore an entropy of exactly 0.
class EntropyTable {
 public:
  // `scale` converts nats to the output unit (1 for nats, 1/ln 2 for bits).
  EntropyTable(std::int64_t max_count, double scale) : scale_(scale) {
    if (max_count < 1) max_count = 1;
    // Choose K so that T[max_count] stays below 2^61: sums of at most
    // max_count entries are bounded by T[max_count] (c ln c is superadditive).
    const double top = static_cast<double>(max_count) * std::log(static_cast<double>(max_count)) + 2.0;
    int k = 61 - static_cast<int>(std::ceil(std::log2(top)));
    if (k > 40) k = 40;
    if (k < 8) k = 8;
    const double one = std::ldexp(1.0, k);
    clnc_.resize(static_cast<std::size_t>(max_count) + 1);
    step_.resize(static_cast<std::size_t>(max_count) + 1, 0);
    inv_.resize(static_cast<std::size_t>(max_count) + 1);
    clnc_[0] = 0;
    inv_[0] = 0.0;
    for (std::int64_t c = 1; c <= max_count; ++c) {
      const double v = static_cast<double>(c) * std::log(static_cast<double>(c));
      clnc_[c] = static_cast<std::int64_t>(std::llround(v * one));
      inv_[c] = scale / (static_cast<double>(c) * one);
    }
    for (std::int64_t c = 0; c < max_count; ++c) step_[c] = clnc_[c + 1] - clnc_[c];
  }

  std::int64_t clnc(std::int64_t c) const { return clnc_[c]; }
  // T[c + 1] - T[c]: the change of S when a count goes from c to c + 1.
  const std::int64_t* steps() const { return step_.data(); }

  // H = ln n - S/n = (T[n] - S) / n, in the table's unit.
  double entropy(std::int64_t n, std::int64_t s) const {
    if (n <= 0) return std::nan("");
    return static_cast<double>(clnc_[n] - s) * inv_[n];
  }

  std::int64_t max_count() const { return static_cast<std::int64_t>(clnc_.size()) - 1; }
  double scale() const { return scale_; }

 private:
  std::vector<std::int64_t> clnc_;
  std::vector<std::int64_t> step_;
  std::vector<double> inv_;
  double scale_;
};

// Counts of bin indices in a window plus the running fixed-point sum S.
// The caller owns the counts buffer (nbins entries, all zero when idle).
class Histogram {
 public:
  Histogram(std::uint32_t* counts, const EntropyTable& table)
      : counts_(counts), step_(table.steps()), clnc_(&table), s_(0), n_(0) {}

  void add(std::uint32_t bin) {
    s_ += step_[counts_[bin]++];
    ++n_;
  }

  void remove(std::uint32_t bin) {
    s_ -= step_[--counts_[bin]];
    --n_;
  }

  // One voxel of level `out` leaves and one of level `in` enters: n is unchanged.
  void replace(std::uint32_t out, std::uint32_t in) {
    s_ -= step_[--counts_[out]];
    s_ += step_[counts_[in]++];
  }

  double entropy() const { return clnc_->entropy(n_, s_); }

  // Raw access for the hot loop, which keeps S in a register and writes it back.
  std::uint32_t* counts() { return counts_; }
  const std::int64_t* steps() const { return step_; }
  std::int64_t sum() const { return s_; }
  void set_sum(std::int64_t s) { s_ = s; }
  const EntropyTable& table() const { return *clnc_; }
  std::int64_t count() const { return n_; }

 private:
  std::uint32_t* counts_;
  const std::int64_t* step_;
  const EntropyTable* clnc_;
  std::int64_t s_;
  std::int64_t n_;
};

}  // namespace entropymap
