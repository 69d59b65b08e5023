"""Many independent jobs (cases of a cohort) on a local process pool or a Dask cluster.

One failing job never stops the others: each outcome records its value or its error.
The local pool uses ``spawn`` worker processes (safe with OpenMP) and gives each worker
an equal share of the cores for its kernel threads; a ``dask.distributed`` scheduler
address sends the jobs to that cluster instead (``pip install entropymap[dask]``).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .kernel import available_cores
from .tiling import workers_ignore_ctrl_c

__all__ = ["Outcome", "map_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one job gave: its value, or the one-line error that stopped it."""

    key: str
    ok: bool
    value: Any = None
    error: Optional[str] = None
    seconds: float = 0.0


def _timed_call(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any, float]:
    t0 = time.perf_counter()
    try:
        return True, fn(*args, **kwargs), time.perf_counter() - t0
    except Exception as exc:  # recorded, not raised: the other jobs go on
        log.debug("job failed:\n%s", traceback.format_exc())
        msg = str(exc).strip() or type(exc).__name__
        return False, f"{type(exc).__name__}: {msg}", time.perf_counter() - t0


def map_jobs(
    fn: Callable,
    jobs: Sequence[tuple[str, tuple, dict]],
    *,
    scheduler: Optional[str] = None,
    n_workers: Optional[int] = None,
    progress: Optional[Callable[[Outcome], None]] = None,
) -> list[Outcome]:
    """Run ``fn(*args, **kwargs)`` for every ``(key, args, kwargs)`` job.

    Parameters
    ----------
    fn : callable
        A module-level function (it is sent to other processes).
    jobs : sequence of (key, args, kwargs)
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler (e.g. ``tcp://127.0.0.1:8786``);
        None runs a local process pool.
    n_workers : int, optional
        Local worker processes (None: one per available core, at most one per job).
    progress : callable(Outcome), optional
        Called as each job finishes.

    Returns
    -------
    list of Outcome
        In the order of ``jobs``.
    """
    if not jobs:
        return []
    keys = [k for k, _, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    results: dict[str, Outcome] = {}

    def record(key: str, ok: bool, value: Any, seconds: float) -> None:
        out = Outcome(key, ok, value if ok else None, None if ok else value, round(seconds, 3))
        results[key] = out
        if progress is not None:
            progress(out)

    if scheduler is None:
        import multiprocessing as mp

        workers = min(n_workers or available_cores(), len(jobs))
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            with workers_ignore_ctrl_c():  # the pool starts its processes on the first submit
                futures = {pool.submit(_timed_call, fn, args, kwargs): key for key, args, kwargs in jobs}
            try:
                for fut in cf.as_completed(futures):
                    key = futures[fut]
                    try:
                        ok, value, seconds = fut.result()
                    except cf.process.BrokenProcessPool as exc:
                        ok, value, seconds = False, f"worker process died: {exc}", 0.0
                    record(key, ok, value, seconds)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    else:
        try:
            from dask.distributed import Client, as_completed
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("a Dask scheduler needs the extra: pip install 'entropymap[dask]'") from exc
        with Client(scheduler) as client:
            futures = {client.submit(_timed_call, fn, args, kwargs, key=f"entropymap-{key}", pure=False): key
                       for key, args, kwargs in jobs}
            for fut in as_completed(list(futures)):
                key = futures[fut]
                if fut.status == "error":
                    record(key, False, f"{type(fut.exception()).__name__}: {fut.exception()}", 0.0)
                else:
                    ok, value, seconds = fut.result()
                    record(key, ok, value, seconds)
    return [results[k] for k in keys]
