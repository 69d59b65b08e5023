"""Tiled against untiled in the same run, 1 against 2 workers, and the peak memory of a
512 x 512 x 1024 volume.

    python -m pytest benchmarks/bench_tiling.py -s
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import entropymap as em
from conftest import MEMORY_PROBE, RESULTS, record
from entropymap.tiling import tiled_local_entropy


def test_untiled(benchmark, volume_a):
    benchmark.pedantic(em.local_entropy, args=(volume_a,), kwargs={"n_threads": 2}, rounds=5, warmup_rounds=1)
    record(benchmark, "tiling: untiled, 2 threads", volume_a.size)


@pytest.mark.parametrize("executor, workers", [("threads", 2), ("threads", 1), ("processes", 2)])
def test_tiled(benchmark, volume_a, executor, workers):
    kwargs = {"n_workers": workers, "n_threads": 1, "executor": executor}
    benchmark.pedantic(tiled_local_entropy, args=(volume_a,), kwargs=kwargs, rounds=3, warmup_rounds=1)
    record(benchmark, f"tiling: {executor}, {workers} worker{'s' if workers > 1 else ''}", volume_a.size)


def test_ratios():
    untiled = RESULTS.get("tiling: untiled, 2 threads")
    tiled = RESULTS.get("tiling: threads, 2 workers")
    one = RESULTS.get("tiling: threads, 1 worker")
    if untiled and tiled and one:
        print(f"\ntiled (threads, 2 workers) time / untiled time = {untiled / tiled:.2f}x; "
              f"2 workers / 1 worker speed = {tiled / one:.2f}x")


def test_peak_memory_512x512x1024():
    """Peak RSS of the whole run (one process with the threads executor) against input + output."""
    code = textwrap.dedent(
        """
        import time, numpy as np
        from entropymap.tiling import tiled_local_entropy
        rng = np.random.default_rng(0)
        levels = np.empty((1024, 512, 512), np.int16)
        for z in range(0, 1024, 64):  # no full-size temporaries
            levels[z:z + 64] = rng.integers(0, 60, size=(64, 512, 512), dtype=np.int16)
        base = status("VmRSS:") - levels.nbytes  # interpreter, numpy, entropymap
        reset_peak()
        t0 = time.perf_counter()
        out = tiled_local_entropy(levels, n_workers=2, n_threads=1)
        seconds = time.perf_counter() - t0
        print(status("VmHWM:") - base, levels.nbytes, out.nbytes, seconds)
        """
    )
    res = subprocess.run([sys.executable, "-c", MEMORY_PROBE + code], check=True, capture_output=True, text=True)
    peak, in_b, out_b, seconds = res.stdout.split()
    peak, in_b, out_b = int(peak), int(in_b), int(out_b)
    ratio = peak / (in_b + out_b)
    print(f"\n512x512x1024 int16: {float(seconds):.1f} s, peak {peak / 2**30:.3f} GiB above the "
          f"interpreter for {in_b / 2**30:.2f} GiB in + {out_b / 2**30:.2f} GiB out = {ratio:.3f} x (in + out)")
    assert ratio <= 1.15
