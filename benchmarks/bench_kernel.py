"""Kernel speed against scikit-image's rank.entropy, measured in the same run.

    python -m pytest benchmarks/bench_kernel.py

Throughputs and ratios are printed at the end of the run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import entropymap as em
from entropymap import _core
from conftest import MEMORY_PROBE, record

FP5 = np.ones((5, 5, 5), np.uint8)


def _as_uint16(levels: np.ndarray) -> np.ndarray:
    return (levels.astype(np.int32) - int(levels.min())).astype(np.uint16)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_volume_a(benchmark, volume_a, threads):
    benchmark.pedantic(em.local_entropy, args=(volume_a,), kwargs={"n_threads": threads}, rounds=5, warmup_rounds=1)
    record(benchmark, f"a: entropymap {threads} thread{'s' if threads > 1 else ''}", volume_a.size)
    benchmark.extra_info["driver"] = em.kernel.prepare(volume_a).driver


# The same call with each driver forced, so the vector step's share is visible next to the
# portable code it replaces (all three give the same bits; tests/test_kernel.py checks it).
@pytest.mark.parametrize("driver,code", [("runs", 1), ("portable columns", 3)])
def test_kernel_volume_a_other_drivers(benchmark, volume_a, driver, code):
    call = em.kernel.prepare(volume_a)
    args = (call.levels, call.footprint, call.vmin, call.nlevels, call.scale, None, None, 2, code)
    benchmark.pedantic(_core.local_entropy, args=args, rounds=5, warmup_rounds=1)
    record(benchmark, f"a: {driver}, 2 threads", volume_a.size)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_volume_b(benchmark, volume_b, threads):
    benchmark.pedantic(em.local_entropy, args=(volume_b,), kwargs={"n_threads": threads}, rounds=5, warmup_rounds=1)
    record(benchmark, f"b: entropymap {threads} thread{'s' if threads > 1 else ''}", volume_b.size)
    benchmark.extra_info["driver"] = em.kernel.prepare(volume_b).driver


@pytest.mark.filterwarnings("ignore:Bad rank filter performance:UserWarning")
@pytest.mark.parametrize("which", ["a", "b"])
def test_skimage(benchmark, request, which):
    rank = pytest.importorskip("skimage.filters.rank")
    vol = _as_uint16(request.getfixturevalue(f"volume_{which}"))
    if which == "a":
        vol = vol[:32]  # skimage is slow; its throughput does not depend on depth
    benchmark.pedantic(rank.entropy, args=(vol, FP5), rounds=1, iterations=1)
    record(benchmark, f"{which}: skimage rank.entropy", vol.size)


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_kernel_size_growth(benchmark, volume_a, k):
    benchmark.pedantic(em.local_entropy, args=(volume_a,), kwargs={"kernel": k, "n_threads": 2}, rounds=3, warmup_rounds=1)
    record(benchmark, f"a: kernel {k}^3, 2 threads", volume_a.size)


def test_peak_memory():
    """Peak resident memory added by one 128 x 256 x 256 call, beyond the input it was given.

    Linux only: the peak (VmHWM) is reset through /proc/self/clear_refs after the input
    exists, so temporaries made while building the input do not count.
    """
    code = textwrap.dedent(
        """
        import numpy as np, entropymap as em
        rng = np.random.default_rng(0)
        levels = rng.integers(0, 60, size=(128, 256, 256), dtype=np.int16)
        em.local_entropy(levels[:2, :8, :8])  # load everything once
        before = status("VmRSS:")
        reset_peak()
        out = em.local_entropy(levels, n_threads=2)
        print(status("VmHWM:") - before, out.nbytes, levels.nbytes)
        """
    )
    res = subprocess.run([sys.executable, "-c", MEMORY_PROBE + code], check=True, capture_output=True, text=True)
    extra, out_bytes, in_bytes = (int(v) for v in res.stdout.split())
    overhead = extra - out_bytes
    print(f"\npeak growth {extra / 2**20:.1f} MiB for a {out_bytes / 2**20:.1f} MiB output "
          f"(input {in_bytes / 2**20:.1f} MiB already held): overhead {overhead / 2**20:.1f} MiB")
    assert overhead <= 64 * 2**20
