"""Display processing of an entropy map: NaN-aware Gaussian smoothing, normalisation
by the mean of a reference region, and the hypo / iso / hyper-entropic label map."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

__all__ = ["HYPO", "ISO", "HYPER", "classify", "normalize", "reference_mean", "smooth"]

#: Label values of :func:`classify` (0 = no value).
HYPO, ISO, HYPER = 1, 2, 3


def smooth(
    values: np.ndarray,
    *,
    sigma: float = 1.0,
    mode: str = "2d",
    unit: str = "voxel",
    spacing: Optional[Sequence[float]] = None,
    truncate: float = 4.0,
) -> np.ndarray:
    r"""Gaussian smoothing that ignores NaN (normalised convolution).

    .. math:: s = \frac{G * (v\,w)}{G * w}

    with :math:`w = 1` where :math:`v` is finite and 0 elsewhere. So a NaN region does
    not spread (voxels that were NaN stay NaN) and values beside it are not pulled
    towards 0; at the volume's faces only voxels inside the volume are averaged.

    Parameters
    ----------
    values : (Z, Y, X) float array
    sigma : float
        Standard deviation, in voxels or mm (``unit``). 0 returns a float32 copy.
    mode : {"2d", "3d"}
        ``"2d"`` smooths each axial slice in-plane (the paper), ``"3d"`` all axes.
    unit : {"voxel", "mm"}
        With ``"mm"`` the sigma per axis is ``sigma / spacing`` (needs ``spacing``).
    spacing : (z, y, x) floats, optional
        Voxel spacing in mm, array order.
    truncate : float
        Kernel half-width in sigmas (scipy's ``truncate``).
    """
    from scipy import ndimage

    if mode not in ("2d", "3d"):
        raise ValueError(f"smoothing mode must be '2d' or '3d', got {mode!r}")
    if unit not in ("voxel", "mm"):
        raise ValueError(f"smoothing unit must be 'voxel' or 'mm', got {unit!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"smoothing sigma must be >= 0, got {sigma!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"values must be 3-D, got shape {v.shape}")
    if sigma == 0:
        return v.astype(np.float32)
    sig = np.full(3, float(sigma))
    if unit == "mm":
        if spacing is None:
            raise ValueError("sigma in mm needs the voxel spacing")
        sig = sig / np.asarray(spacing, dtype=float)
    if mode == "2d":
        sig[0] = 0.0
    finite = np.isfinite(v)
    w = finite.astype(np.float64)
    num = ndimage.gaussian_filter(np.where(finite, v, 0.0), sig, mode="constant", cval=0.0, truncate=truncate)
    den = ndimage.gaussian_filter(w, sig, mode="constant", cval=0.0, truncate=truncate)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~finite] = np.nan
    return out.astype(np.float32)


def reference_mean(values: np.ndarray, region: np.ndarray, *, name: str = "reference region") -> float:
    """Mean of ``values`` over ``region`` (NaN voxels ignored), checked for use as a divisor."""
    region = np.asarray(region, dtype=bool)
    if region.shape != values.shape:
        raise ValueError(f"{name} shape {region.shape} does not match the map shape {values.shape}")
    if not region.any():
        raise ValueError(f"{name} is empty: no voxel to take the reference mean from")
    sel = values[region]
    sel = sel[np.isfinite(sel)]
    if sel.size == 0:
        raise ValueError(f"{name} has no voxel with a computed entropy value")
    mean = float(sel.mean(dtype=np.float64))
    if not mean > 0:
        raise ValueError(
            f"mean entropy of the {name} is {mean:g}; cannot normalise by it (a constant "
            "region has zero entropy: check the region and the bin width)"
        )
    return mean


def normalize(values: np.ndarray, ref_mean: float) -> np.ndarray:
    """``values / ref_mean`` as float32: 1.0 is "as disordered as the reference"."""
    return (np.asarray(values, dtype=np.float64) / ref_mean).astype(np.float32)


def classify(normalized: np.ndarray, *, hypo_below: float = 0.9, hyper_above: float = 1.1) -> np.ndarray:
    """Label map: 1 hypo-entropic (``< hypo_below``), 2 iso, 3 hyper-entropic
    (``> hyper_above``), 0 where the map has no value.

    The default band 0.9-1.1 (±10 % of the healthy-liver mean) is our choice: the paper
    reads the map by eye; both limits are options.
    """
    if not hypo_below <= hyper_above:
        raise ValueError(f"thresholds must satisfy hypo_below <= hyper_above, got {hypo_below}, {hyper_above}")
    v = np.asarray(normalized)
    out = np.zeros(v.shape, dtype=np.uint8)
    finite = np.isfinite(v)
    out[finite] = ISO
    out[finite & (v < hypo_below)] = HYPO
    out[finite & (v > hyper_above)] = HYPER
    return out
