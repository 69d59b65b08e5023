// Kernel shape as a list of runs along x: each run is (dz, dy, x0, x1), the
// contiguous offsets dx in [x0, x1] at plane offset dz and row offset dy.
// Sliding one voxel along x, each run loses the voxel at x-1+x0 and gains the
// voxel at x+x1, so a step costs one remove and one add per run (<= ky*kz for
// a convex shape): the cost grows with the window's face, not its volume.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace entropymap {

struct Run {
  int dz, dy, x0, x1;
};

class Footprint {
 public:
  // From a C-ordered boolean array of shape (kz, ky, kx), all odd, centred.
  static Footprint from_mask(const std::uint8_t* fp, int kz, int ky, int kx) {
    if (kz < 1 || ky < 1 || kx < 1 || kz % 2 == 0 || ky % 2 == 0 || kx % 2 == 0)
      throw std::invalid_argument("footprint sizes must be odd and >= 1");
    Footprint f;
    f.rz_ = kz / 2;
    f.ry_ = ky / 2;
    f.rx_ = kx / 2;
    for (int z = 0; z < kz; ++z) {
      for (int y = 0; y < ky; ++y) {
        const std::uint8_t* row = fp + (static_cast<std::size_t>(z) * ky + y) * kx;
        int x = 0;
        while (x < kx) {
          if (!row[x]) { ++x; continue; }
          int e = x;
          while (e + 1 < kx && row[e + 1]) ++e;
          f.runs_.push_back({z - f.rz_, y - f.ry_, x - f.rx_, e - f.rx_});
          f.size_ += e - x + 1;
          x = e + 1;
        }
      }
    }
    return f;
  }

  // The full box.
  static Footprint cube(int kz, int ky, int kx) {
    std::vector<std::uint8_t> m(static_cast<std::size_t>(kz) * ky * kx, 1);
    return from_mask(m.data(), kz, ky, kx);
  }

  // The ellipsoid inscribed in the box, with semi-axes r = (k - 1) / 2 voxels:
  // (dz/rz)^2 + (dy/ry)^2 + (dx/rx)^2 <= 1, an axis with r = 0 allowing only 0.
  // For a cube this is skimage.morphology.ball(r).
  static Footprint ball(int kz, int ky, int kx) {
    const std::int64_t rz = kz / 2, ry = ky / 2, rx = kx / 2;
    // Integer test: multiply through by the product of the non-zero r^2.
    const std::int64_t az = rz ? rz * rz : 1, ay = ry ? ry * ry : 1, ax = rx ? rx * rx : 1;
    const std::int64_t lim = az * ay * ax;
    std::vector<std::uint8_t> m(static_cast<std::size_t>(kz) * ky * kx, 0);
    for (int z = 0; z < kz; ++z)
      for (int y = 0; y < ky; ++y)
        for (int x = 0; x < kx; ++x) {
          const std::int64_t dz = z - rz, dy = y - ry, dx = x - rx;
          const std::int64_t v = dz * dz * ay * ax + dy * dy * az * ax + dx * dx * az * ay;
          m[(static_cast<std::size_t>(z) * ky + y) * kx + x] = v <= lim ? 1 : 0;
        }
    return from_mask(m.data(), kz, ky, kx);
  }

  // The footprint back as a C-ordered 0/1 array of shape (kz, ky, kx).
  std::vector<std::uint8_t> mask() const {
    const int kz = 2 * rz_ + 1, ky = 2 * ry_ + 1, kx = 2 * rx_ + 1;
    std::vector<std::uint8_t> m(static_cast<std::size_t>(kz) * ky * kx, 0);
    for (const Run& r : runs_)
      for (int x = r.x0; x <= r.x1; ++x)
        m[(static_cast<std::size_t>(r.dz + rz_) * ky + (r.dy + ry_)) * kx + (x + rx_)] = 1;
    return m;
  }

  // True when the footprint is the whole (kz, ky, kx) box.
  bool is_box() const {
    return size_ == static_cast<std::int64_t>(2 * rz_ + 1) * (2 * ry_ + 1) * (2 * rx_ + 1);
  }

  const std::vector<Run>& runs() const { return runs_; }
  std::int64_t size() const { return size_; }
  int rz() const { return rz_; }
  int ry() const { return ry_; }
  int rx() const { return rx_; }

 private:
  std::vector<Run> runs_;
  std::int64_t size_ = 0;
  int rz_ = 0, ry_ = 0, rx_ = 0;
};

}  // namespace entropymap
