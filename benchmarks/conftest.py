"""Benchmark support: shared volumes, and a closing table of throughputs and ratios.

Run with ``python -m pytest benchmarks`` (not part of the default test run).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

RESULTS: dict[str, float] = {}  # name -> million voxels per second (best round)

#: Prepended to the memory benchmarks' subprocess code (Linux): status("VmRSS:") and
#: status("VmHWM:") in bytes, and reset_peak(), which sets the peak to the current RSS.
MEMORY_PROBE = """
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
"""

_DATA = Path(os.environ.get("ENTROPYMAP_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def ct_like_volume(shape=(128, 256, 256), seed=0) -> np.ndarray:
    """Smooth CT-like structures (liver, vessels, lesions, in HU) plus ~15 HU noise,
    discretised with a bin width of 5 HU: about 60 levels, as int16."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    hu = np.full(shape, 110.0, np.float32)  # parenchyma
    hu += (25 * np.sin(x / 23.0) * np.cos(y / 31.0) * np.cos(z / 17.0)).astype(np.float32)
    for cz, cy, cx, r, v in [(64, 90, 100, 25, 60.0), (40, 180, 170, 15, 40.0), (90, 150, 60, 10, 180.0)]:
        hu[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r] = v
    hu[((y - 128) ** 2 + (x - 128) ** 2 < 36) & (z >= 0)] = 200.0  # a vessel along z
    hu += rng.normal(0.0, 15.0, shape).astype(np.float32)
    return np.floor(hu / 5.0).astype(np.int16)


@pytest.fixture(scope="session")
def volume_a() -> np.ndarray:
    return ct_like_volume()


@pytest.fixture(scope="session")
def volume_b() -> np.ndarray:
    """The real LiTS crop rounded to integer HU (raw, ~1,000+ levels)."""
    path = _DATA / "lits_117" / "img_117.nii.gz"
    if not path.exists():
        pytest.skip(f"real CT not found at {path}; set ENTROPYMAP_TEST_DATA")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import itk
    arr = np.asarray(itk.array_from_image(itk.imread(str(path))))
    return np.rint(arr).astype(np.int16)


def record(benchmark, name: str, nvoxels: int) -> None:
    """Store the best-round throughput of a finished benchmark under `name`."""
    best = benchmark.stats.stats.min
    RESULTS[name] = nvoxels / best / 1e6
    benchmark.extra_info["Mvoxels_per_s"] = round(RESULTS[name], 2)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    import entropymap as em

    tr.section("entropymap throughput (best round, million voxels/s)")
    tr.write_line(f"vector instruction set: {em.vector_isa() or 'none'}; OpenMP: {em.openmp_enabled()}")
    for name, v in RESULTS.items():
        tr.write_line(f"{name:<40s} {v:8.2f}")
    for vol in ("a", "b"):
        ours, sk = RESULTS.get(f"{vol}: entropymap 2 threads"), RESULTS.get(f"{vol}: skimage rank.entropy")
        if ours and sk:
            tr.write_line(f"ratio {vol}: entropymap (2 threads) / skimage = {ours / sk:.1f}x")
    a, b = RESULTS.get("a: entropymap 2 threads"), RESULTS.get("b: entropymap 2 threads")
    if a and b:
        tr.write_line(f"per-voxel time raw HU (b) / 60 levels (a) = {a / b:.2f}x")
    for driver in ("runs", "portable columns"):
        other = RESULTS.get(f"a: {driver}, 2 threads")
        if other and b:
            tr.write_line(f"per-voxel time raw HU (b) / 60 levels (a) with {driver} = {other / b:.2f}x")
    one, two = RESULTS.get("a: entropymap 1 thread"), RESULTS.get("a: entropymap 2 threads")
    if one and two:
        tr.write_line(f"2 threads / 1 thread on (a) = {two / one:.2f}x")
