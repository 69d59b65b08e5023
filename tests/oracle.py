"""Brute-force reference for the local-entropy kernel: every window counted from scratch.

Deliberately naive (a Python loop over voxels, ``np.unique`` per window) so that it is
obviously right; use it on small volumes only.
"""

from __future__ import annotations

import numpy as np


def entropy_of_values(values: np.ndarray, base: float = np.e) -> float:
    """Shannon entropy of the empirical distribution of ``values`` (float64)."""
    if values.size == 0:
        return float("nan")
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(base))


def local_entropy_bruteforce(
    levels: np.ndarray,
    footprint: np.ndarray,
    mask: np.ndarray | None = None,
    masked_kernel: bool = False,
    base: float = np.e,
) -> np.ndarray:
    """Local entropy with in-volume-only borders, NaN outside ``mask``."""
    levels = np.asarray(levels)
    fp = np.asarray(footprint, dtype=bool)
    centre = np.array(fp.shape) // 2
    offsets = np.argwhere(fp) - centre
    shape = np.array(levels.shape)
    out = np.full(levels.shape, np.nan)
    for idx in np.ndindex(*levels.shape):
        if mask is not None and not mask[idx]:
            continue
        pos = offsets + np.array(idx)
        inside = np.all((pos >= 0) & (pos < shape), axis=1)
        pos = pos[inside]
        if masked_kernel:
            pos = pos[mask[tuple(pos.T)]]
        out[idx] = entropy_of_values(levels[tuple(pos.T)], base)
    return out
