"""One volume in tiles: rows of the map computed by a pool of workers.

A tile is a block of rows, ``z0 <= z < z1`` and ``y0 <= y < y1`` (always every x).
Each tile's windows read their halo (up to the kernel radius beyond the tile, on every
side that has a neighbour) straight from the shared input, and the tile writes only its
own rows of the shared output. The volume's outer faces keep the in-volume-only rule, the
halo is real data, never padding, and all tiles use the bins of one validated
:class:`~entropymap.kernel.KernelCall`; so the map is identical, byte for byte, for every
tile size, worker count and executor.

Executors
---------
``"threads"`` (default)
    A thread pool. The C++ kernel releases the GIL, so threads run in parallel and
    share the input and output arrays with no copy at all: peak memory is the input,
    the output and a few MB of histograms.
``"processes"``
    Worker processes (``spawn``: forking a process whose OpenMP runtime has started
    can hang the child). Input, masks and output live in POSIX shared memory that
    the workers attach to by name; they are unlinked on success, failure and Ctrl-C.
    Use it to isolate the computation; it costs one shared copy of the input.

Either way ``n_workers * threads_per_worker`` never exceeds the available cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from .kernel import KernelCall, KernelSize, available_cores, prepare

__all__ = ["Tile", "dask_local_entropy", "plan_tiles", "tiled_local_entropy", "worker_threads"]

log = logging.getLogger(__name__)

TileProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Tile:
    """A block of rows of the map: z in [z0, z1), y in [y0, y1), every x."""

    index: int
    z0: int
    z1: int
    y0: int
    y1: int

    @property
    def rows(self) -> tuple[int, int, int, int]:
        return self.z0, self.z1, self.y0, self.y1

    def describe(self) -> str:
        return f"tile {self.index} (z {self.z0}:{self.z1}, y {self.y0}:{self.y1})"


def worker_threads(n_workers: Optional[int], n_threads: Optional[int]) -> tuple[int, int]:
    """The package's convention for workers x threads.

    ``n_workers=None`` uses one worker per available core; ``n_threads`` is the
    number of kernel threads *per worker*, by default the cores left to each worker.
    The product may not exceed the available cores.
    """
    cores = available_cores()
    workers = cores if n_workers is None else int(n_workers)
    if isinstance(n_workers, bool) or workers < 1:
        raise ValueError(f"n_workers must be None or an integer >= 1, got {n_workers!r}")
    threads = max(1, cores // workers) if n_threads is None else int(n_threads)
    if isinstance(n_threads, bool) or threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
    if workers * threads > cores:
        raise ValueError(
            f"{workers} workers x {threads} threads = {workers * threads} exceeds the {cores} available "
            "cores; lower n_workers or n_threads"
        )
    return workers, threads


def plan_tiles(
    shape: Sequence[int],
    *,
    n_workers: int = 1,
    tile_shape: Optional[tuple[int, int]] = None,
    bytes_per_row: int = 0,
    max_tile_bytes: Optional[int] = None,
) -> list[Tile]:
    """Cut the rows of a (Z, Y, X) volume into tiles, along z first, then along y.

    Parameters
    ----------
    shape : (Z, Y, X)
    n_workers : int
        Without ``tile_shape``, aim for at least 4 tiles per worker (load balance and
        progress), with whole-slab tiles when there are planes enough.
    tile_shape : (tz, ty), optional
        Rows per tile along z and y (clipped to the volume).
    bytes_per_row, max_tile_bytes : int, optional
        A tile's working set per row and its budget; tiles are made no larger.
    """
    nz, ny = int(shape[0]), int(shape[1])
    if tile_shape is not None:
        tz, ty = (int(v) for v in tile_shape)
        if tz < 1 or ty < 1:
            raise ValueError(f"tile_shape must be two integers >= 1 (rows along z, y), got {tile_shape!r}")
    else:
        want = max(1, 4 * n_workers)
        tz = max(1, math.ceil(nz / want))
        ty = ny
        if nz < want:  # too few planes: split along y as well
            ty = max(1, math.ceil(ny / math.ceil(want / nz)))
    if max_tile_bytes is not None and bytes_per_row > 0:
        max_rows = max(1, max_tile_bytes // bytes_per_row)
        while tz * ty > max_rows and tz > 1:
            tz = max(1, tz // 2)
        while tz * ty > max_rows and ty > 1:
            ty = max(1, ty // 2)
    tz, ty = min(tz, nz), min(ty, ny)
    tiles = []
    for z0 in range(0, nz, tz):
        for y0 in range(0, ny, ty):
            tiles.append(Tile(len(tiles), z0, min(z0 + tz, nz), y0, min(y0 + ty, ny)))
    return tiles


# --- the process executor's worker side -------------------------------------------

_WORKER: dict = {}


def _attach(spec: Optional[tuple[str, tuple, str]]):
    """Attach to a shared-memory array described by (name, shape, dtype)."""
    if spec is None:
        return None, None
    from multiprocessing import shared_memory

    name, shape, dtype = spec
    # Spawned workers share the parent's resource tracker, so attaching registers the
    # same name again, and the parent's unlink() unregisters it once for all.
    shm = shared_memory.SharedMemory(name=name)
    return shm, np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)


@contextlib.contextmanager
def workers_ignore_ctrl_c():
    """Start worker processes with SIGINT ignored (the disposition survives exec).

    Ctrl-C reaches the whole process group; the parent alone should handle it (stop
    the workers, clean up, report "interrupted"), not workers that die mid-import.
    Only the main thread may change signal handling; elsewhere this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _init_worker(specs: dict, small: dict) -> None:
    for key, spec in specs.items():
        shm, arr = _attach(spec)
        _WORKER[key] = arr
        _WORKER[key + "_shm"] = shm
    _WORKER.update(small)


def _run_tile_in_worker(tile: Tile, threads: int) -> int:
    w = _WORKER
    w["status"][tile.index] = 1  # running: named in the error if this process dies
    call = KernelCall(w["levels"], w["footprint"], w["vmin"], w["nlevels"], w["scale"],
                      w["out_mask"], w["count_mask"])
    call.run(n_threads=threads, out=w["out"], rows=tile.rows)
    w["status"][tile.index] = 2
    return tile.index


# --- the parent side ----------------------------------------------------------------


def _output_array(shape: tuple, out: Union[None, str, os.PathLike, np.ndarray]):
    """The array to fill, and the temporary file to rename on success (file outputs)."""
    if out is None:
        return np.empty(shape, np.float32), None
    if isinstance(out, np.ndarray):
        if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {tuple(shape)}")
        return out, None
    path = Path(out)
    if path.suffix != ".npy":
        raise ValueError(f"out file must end in .npy (a memory-mapped numpy file), got {path.name}")
    if path.exists():
        raise FileExistsError(f"{path} already exists; choose another file or remove it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=".npy", dir=path.parent)
    os.close(fd)
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(shape))
    return arr, Path(tmp)


def tiled_local_entropy(
    levels: npt.ArrayLike,
    *,
    kernel: KernelSize = 5,
    shape: str = "cube",
    footprint: Optional[npt.ArrayLike] = None,
    mask: Optional[npt.ArrayLike] = None,
    masked_kernel: bool = False,
    count_mask: Optional[npt.ArrayLike] = None,
    base: Union[str, int] = "e",
    n_workers: Optional[int] = None,
    n_threads: Optional[int] = None,
    tile_shape: Optional[tuple[int, int]] = None,
    max_memory: Optional[int] = None,
    executor: str = "threads",
    out: Union[None, str, os.PathLike, np.ndarray] = None,
    progress: Optional[TileProgress] = None,
) -> np.ndarray:
    """:func:`entropymap.local_entropy` computed tile by tile by a pool of workers.

    The result equals the untiled map byte for byte. Parameters as in
    :func:`entropymap.local_entropy`, plus:

    Parameters
    ----------
    n_workers : int, optional
        Workers (threads or processes); None: one per available core.
    n_threads : int, optional
        Kernel threads per worker; None: the cores left per worker.
    tile_shape : (tz, ty), optional
        Rows per tile along z and y; default from the worker count and ``max_memory``.
    max_memory : int, optional
        Memory budget in bytes for the input, the output and the workers' tiles
        together. Tiles are sized to fit what is left after the input and an output
        held in memory; when input and output alone exceed it, the error says to write
        the output to a file (``out="map.npy"``).
    executor : {"threads", "processes"}
        See the module docstring.
    out : ndarray, path to a ``.npy`` file, or None
        Where to write the map. A ``.npy`` path is written as a memory-mapped file
        (for maps larger than memory), built under a temporary name and renamed when
        complete; it is never overwritten.
    progress : callable(done, total), optional
        Called after each finished tile.

    Raises
    ------
    RuntimeError
        Naming the tile(s) that failed, when a worker raises or dies. Nothing partial
        is left behind (no output file, no shared-memory segment).
    """
    if executor not in ("threads", "processes"):
        raise ValueError(f"executor must be 'threads' or 'processes', got {executor!r}")
    call = prepare(levels, kernel=kernel, shape=shape, footprint=footprint, mask=mask,
                   masked_kernel=masked_kernel, count_mask=count_mask, base=base)
    workers, threads = worker_threads(n_workers, n_threads)
    vol_shape = call.shape
    out_bytes = int(np.prod(vol_shape)) * 4
    in_bytes = call.levels.nbytes
    file_out = out is not None and not isinstance(out, np.ndarray)
    max_tile_bytes = None
    ry = call.radius[1]
    # A tile's working set: its histograms are tiny, but each of its rows makes the
    # kernel touch (1 + 2 r_y) input rows and one output row.
    bytes_per_row = vol_shape[2] * (call.levels.itemsize * (1 + 2 * ry) + 4)
    if max_memory is not None:
        held = in_bytes + (0 if file_out else out_bytes)
        if executor == "processes":
            held += in_bytes + out_bytes  # shared copies
        left = int(max_memory) - held
        if left <= 0:
            raise MemoryError(
                f"max_memory {max_memory / 2**20:.0f} MiB is below what the input "
                f"({in_bytes / 2**20:.0f} MiB) and the output ({out_bytes / 2**20:.0f} MiB) need; "
                "write the output to a file (out='map.npy') or raise max_memory"
            )
        max_tile_bytes = max(bytes_per_row, left // workers)
    tiles = plan_tiles(vol_shape, n_workers=workers, tile_shape=tile_shape,
                       bytes_per_row=bytes_per_row, max_tile_bytes=max_tile_bytes)
    result, tmp_file = _output_array(vol_shape, out)
    try:
        if executor == "threads":
            _run_threads(call, tiles, workers, threads, result, progress)
        else:
            _run_processes(call, tiles, workers, threads, result, progress)
        if tmp_file is not None:
            result.flush()
            os.replace(tmp_file, Path(out))  # type: ignore[arg-type]
            tmp_file = None
            result = np.load(Path(out), mmap_mode="r+")  # type: ignore[arg-type]
    finally:
        if tmp_file is not None:
            del result
            tmp_file.unlink(missing_ok=True)
    return result


def _collect(futures: dict, tiles_total: int, progress: Optional[TileProgress], on_broken) -> None:
    """Wait for every tile; on the first failure cancel the rest and raise naming it."""
    done = 0
    try:
        for fut in cf.as_completed(futures):
            tile = futures[fut]
            try:
                fut.result()
            except cf.process.BrokenProcessPool as exc:
                raise RuntimeError(on_broken(tile, exc)) from None
            except Exception as exc:
                raise RuntimeError(f"{tile.describe()} failed: {type(exc).__name__}: {exc}") from exc
            done += 1
            if progress is not None:
                progress(done, tiles_total)
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _run_threads(call: KernelCall, tiles: list, workers: int, threads: int, out: np.ndarray,
                 progress: Optional[TileProgress]) -> None:
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="entropymap-tile") as pool:
        futures = {pool.submit(call.run, n_threads=threads, out=out, rows=t.rows): t for t in tiles}
        try:
            _collect(futures, len(tiles), progress, lambda t, e: f"{t.describe()} failed: {e}")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running tiles finish in C++; nothing leaks
            raise


def _run_processes(call: KernelCall, tiles: list, workers: int, threads: int, out: np.ndarray,
                   progress: Optional[TileProgress]) -> None:
    import multiprocessing as mp
    from multiprocessing import shared_memory

    segments: list = []
    views: dict = {}  # parent-side views of the segments; cleared before the segments close

    def share(name: str, arr: Optional[np.ndarray], copy: bool = True):
        if arr is None:
            return None
        shm = shared_memory.SharedMemory(create=True, size=max(1, arr.nbytes))
        segments.append(shm)
        views[name] = np.ndarray(arr.shape, dtype=arr.dtype, buffer=shm.buf)
        if copy:
            views[name][...] = arr
        return shm.name, arr.shape, arr.dtype.str

    try:
        specs = {name: share(name, arr) for name, arr in (
            ("levels", call.levels), ("out_mask", call.out_mask), ("count_mask", call.count_mask),
            ("status", np.zeros(len(tiles), np.uint8)))}
        specs["out"] = share("out", out, copy=False)
        small = {"footprint": call.footprint, "vmin": call.vmin, "nlevels": call.nlevels, "scale": call.scale}
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                      initializer=_init_worker, initargs=(specs, small))
        try:
            with workers_ignore_ctrl_c():  # the pool starts its processes on the first submit
                futures = {pool.submit(_run_tile_in_worker, t, threads): t for t in tiles}

            def on_broken(tile: Tile, exc: BaseException) -> str:
                running = [t.describe() for t in tiles if views["status"][t.index] == 1]
                where = ", ".join(running) if running else tile.describe()
                return f"a worker process died while computing {where}: {exc}"

            _collect(futures, len(tiles), progress, on_broken)
        except BaseException:
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        out[...] = views["out"]
    finally:
        views.clear()
        for shm in segments:
            shm.close()
            shm.unlink()


def dask_local_entropy(
    levels,
    *,
    kernel: KernelSize = 5,
    shape: str = "cube",
    mask=None,
    masked_kernel: bool = False,
    base: Union[str, int] = "e",
    n_threads: Optional[int] = 1,
):
    """A lazy local entropy map of a ``dask.array`` (e.g. a zarr or HDF5 volume).

    Each chunk is computed with a halo of the kernel radius taken from its neighbours
    (``map_overlap`` with ``boundary="none"``: no padding at the volume's outer faces,
    where the in-volume-only rule applies), so the result equals the in-memory map
    byte for byte. Chunks thinner than the halo are merged first. The global level range
    is checked eagerly (one pass over the data), as the in-memory kernel does.

    Parameters
    ----------
    levels : dask.array.Array or array-like, (Z, Y, X) integer levels
    kernel, shape, mask, masked_kernel, base
        As in :func:`entropymap.local_entropy`; ``mask`` may be a dask array.
    n_threads : int, optional
        Kernel threads per chunk task (default 1: dask runs chunks in parallel).

    Returns
    -------
    dask.array.Array
        float32, same shape, lazy.
    """
    import dask.array as da

    from .kernel import MAX_LEVELS, _check_levels, make_footprint, normalize_kernel

    arr = levels if isinstance(levels, da.Array) else da.from_array(levels)
    if arr.ndim != 3:
        raise ValueError(f"levels must be a 3-D array (z, y, x), got {arr.ndim}-D shape {arr.shape}")
    _check_levels(np.zeros((1, 1, 1), dtype=arr.dtype))  # dtype check without computing
    k = normalize_kernel(kernel)
    make_footprint(k, shape)
    depth = tuple(v // 2 for v in k)
    lo, hi = (int(v) for v in da.compute(arr.min(), arr.max()))
    if hi - lo + 1 > MAX_LEVELS:
        raise ValueError(
            f"levels span {hi - lo + 1} distinct values ({lo} .. {hi}); the kernel takes at most "
            f"{MAX_LEVELS}. Discretise first."
        )
    # map_overlap needs every chunk at least as thick as the halo.
    from dask.array.overlap import ensure_minimum_chunksize

    arr = arr.rechunk(tuple(ensure_minimum_chunksize(max(d, 1), c) for d, c in zip(depth, arr.chunks)))
    arrays = [arr]
    if mask is not None:
        m = mask if isinstance(mask, da.Array) else da.from_array(np.asarray(mask))
        if m.shape != arr.shape:
            raise ValueError(f"mask shape {m.shape} does not match levels shape {arr.shape}")
        arrays.append((m != 0).rechunk(arr.chunks))
    elif masked_kernel:
        raise ValueError("masked_kernel=True needs a mask")

    def block(lv: np.ndarray, m: Optional[np.ndarray] = None) -> np.ndarray:
        if m is not None and not m.any():
            return np.full(lv.shape, np.nan, np.float32)
        call = prepare(lv, kernel=k, shape=shape, mask=m, masked_kernel=masked_kernel, base=base)
        return call.run(n_threads=n_threads)

    return da.map_overlap(block, *arrays, depth=depth, boundary="none", trim=True,
                          dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
