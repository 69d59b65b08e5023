"""Tiles, worker pools and Dask give the untiled map byte for byte, and fail cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import entropymap as em
from entropymap.kernel import KernelCall
from entropymap.tiling import plan_tiles, tiled_local_entropy, worker_threads


def _shm_segments() -> set:
    return {n for n in os.listdir("/dev/shm") if n.startswith("psm_")} if os.path.isdir("/dev/shm") else set()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 10)),
    kernel=st.one_of(st.sampled_from([1, 3, 5, 7, 9]),
                     st.tuples(*(st.sampled_from([1, 3, 5, 7, 9]),) * 3)),
    tile=st.tuples(st.integers(1, 13), st.integers(1, 13)),
    workers=st.integers(1, 2),
    masked=st.sampled_from(["none", "mask", "masked_kernel"]),
    seed=st.integers(0, 2**16),
)
def test_threads_tiling_is_bit_identical(shape, kernel, tile, workers, masked, seed):
    rng = np.random.default_rng(seed)
    levels = rng.integers(-3, 5, size=shape).astype(np.int16)
    kwargs = {}
    if masked != "none":
        mask = rng.random(shape) < 0.6
        mask.flat[0] = True
        kwargs = {"mask": mask, "masked_kernel": masked == "masked_kernel"}
    want = em.local_entropy(levels, kernel=kernel, **kwargs)
    got = tiled_local_entropy(levels, kernel=kernel, tile_shape=tile, n_workers=workers, n_threads=1, **kwargs)
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("tile", [(1, 1), (2, 5), (40, 40)])
def test_processes_tiling_is_bit_identical(rng, tile):
    levels = rng.integers(0, 300, size=(9, 14, 17)).astype(np.uint16)  # many levels: run driver
    mask = rng.random(levels.shape) < 0.5
    before = _shm_segments()
    for kwargs in ({}, {"mask": mask, "masked_kernel": True}):
        want = em.local_entropy(levels, kernel=(3, 5, 7), **kwargs)
        got = tiled_local_entropy(levels, kernel=(3, 5, 7), tile_shape=tile, n_workers=2, n_threads=1,
                                  executor="processes", **kwargs)
        assert got.tobytes() == want.tobytes()
    assert _shm_segments() == before


def test_plan_tiles_cover_every_row_once():
    tiles = plan_tiles((10, 7, 5), tile_shape=(3, 4))
    seen = np.zeros((10, 7), int)
    for t in tiles:
        seen[t.z0:t.z1, t.y0:t.y1] += 1
    assert np.all(seen == 1)
    # Few planes: tiles split along y too, for load balance.
    assert len(plan_tiles((1, 64, 8), n_workers=2)) >= 8


def test_max_memory_sets_tile_size_and_refuses_too_little(rng):
    levels = rng.integers(0, 9, size=(16, 32, 64)).astype(np.int16)
    in_out = levels.nbytes + levels.size * 4
    row = 64 * (2 * 5 + 4)  # a row's working set with a 5^3 kernel
    got = tiled_local_entropy(levels, n_workers=1, max_memory=in_out + 40 * row)
    assert np.array_equal(got, em.local_entropy(levels))
    tiles = plan_tiles(levels.shape, bytes_per_row=row, max_tile_bytes=40 * row)
    assert all((t.z1 - t.z0) * (t.y1 - t.y0) <= 40 for t in tiles)
    with pytest.raises(MemoryError, match="out='map.npy'"):
        tiled_local_entropy(levels, max_memory=levels.nbytes)


def test_output_to_npy_file(rng, tmp_path):
    levels = rng.integers(0, 9, size=(6, 10, 12)).astype(np.int16)
    path = tmp_path / "map.npy"
    got = tiled_local_entropy(levels, out=path, n_workers=2, n_threads=1)
    assert np.array_equal(np.load(path), em.local_entropy(levels))
    assert isinstance(got, np.memmap)
    with pytest.raises(FileExistsError):
        tiled_local_entropy(levels, out=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npy"]


def test_worker_threads_convention():
    cores = em.available_cores()
    assert worker_threads(None, None) == (cores, 1)
    assert worker_threads(1, None) == (1, cores)
    with pytest.raises(ValueError, match="exceeds"):
        worker_threads(cores, 2)
    with pytest.raises(ValueError, match="n_workers"):
        worker_threads(0, None)


def test_a_failing_tile_is_named_and_leaves_no_file(rng, tmp_path, monkeypatch):
    levels = rng.integers(0, 9, size=(8, 10, 12)).astype(np.int16)
    real_run = KernelCall.run

    def flaky(self, *, n_threads=None, out=None, rows=None):
        if rows == (4, 6, 0, 10):
            raise MemoryError("simulated")
        return real_run(self, n_threads=n_threads, out=out, rows=rows)

    monkeypatch.setattr(KernelCall, "run", flaky)
    with pytest.raises(RuntimeError, match=r"tile 2 \(z 4:6, y 0:10\) failed: MemoryError"):
        tiled_local_entropy(levels, tile_shape=(2, 10), n_workers=2, n_threads=1, out=tmp_path / "m.npy")
    assert list(tmp_path.iterdir()) == []


def test_killed_worker_is_reported_and_cleaned_up(tmp_path):
    import multiprocessing as mp

    levels = np.random.default_rng(0).integers(0, 2000, size=(48, 192, 192)).astype(np.int16)
    before = _shm_segments()
    killed = []

    def kill_one(done, total):
        if not killed:  # after the first finished tile: workers are busy, many tiles remain
            victim = mp.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    with pytest.raises(RuntimeError, match=r"worker process died while computing tile \d+ \(z \d+:\d+"):
        tiled_local_entropy(levels, kernel=9, tile_shape=(1, 192), n_workers=2, n_threads=1,
                            executor="processes", progress=kill_one, out=tmp_path / "m.npy")
    assert killed
    assert _shm_segments() == before
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_workers_and_leaves_nothing(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np
        from entropymap.tiling import tiled_local_entropy

        def ready(done, total):
            if done == 1:  # workers are up and computing; many tiles remain
                print("ready", flush=True)

        if __name__ == "__main__":  # spawned workers import this file
            levels = np.random.default_rng(0).integers(0, 2000, size=(96, 192, 192)).astype(np.int16)
            tiled_local_entropy(levels, kernel=9, tile_shape=(1, 192), n_workers=2, n_threads=1,
                                executor="processes", progress=ready,
                                out={str(tmp_path / "out" / "m.npy")!r})
            print("finished", flush=True)
    """))
    (tmp_path / "out").mkdir()
    before = _shm_segments()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    rest, err = proc.communicate(timeout=60)
    assert "finished" not in rest, "the run ended before the interrupt: make it longer"
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    time.sleep(0.5)
    assert _shm_segments() == before
    assert list((tmp_path / "out").iterdir()) == []


# --- Dask ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [(4, 5, 6), (1, 1, 2), (8, 9, 10), (3, 9, 1)])
@pytest.mark.parametrize("kernel", [3, (5, 7, 3)])
def test_dask_entry_point_equals_in_memory(rng, chunks, kernel):
    da = pytest.importorskip("dask.array")
    from entropymap.tiling import dask_local_entropy

    levels = rng.integers(0, 30, size=(8, 9, 10)).astype(np.int16)  # chunks thinner than the halo included
    lazy = dask_local_entropy(da.from_array(levels, chunks=chunks), kernel=kernel)
    assert lazy.shape == levels.shape and lazy.dtype == np.float32
    assert lazy.compute().tobytes() == em.local_entropy(levels, kernel=kernel).tobytes()
    mask = rng.random(levels.shape) < 0.5
    lazy_m = dask_local_entropy(da.from_array(levels, chunks=chunks), kernel=kernel, mask=mask, masked_kernel=True)
    assert lazy_m.compute().tobytes() == em.local_entropy(levels, kernel=kernel, mask=mask,
                                                          masked_kernel=True).tobytes()
