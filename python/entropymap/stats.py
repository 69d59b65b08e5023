r"""Statistics of a map (or of the HU) inside a region.

Conventions, following the IBSI reference manual where it defines them:

* variance and standard deviation without Bessel's correction
  (:math:`\sigma^2 = \frac1N\sum (x-\mu)^2`), skewness :math:`m_3/\sigma^3` and excess
  kurtosis :math:`m_4/\sigma^4 - 3` from the same moments;
* percentiles with linear interpolation between order statistics (numpy's default);
  IQR = P75 - P25; RMS = :math:`\sqrt{\frac1N\sum x^2}`;
* crossings: the region's voxel values are read in C (raster) order, x fastest, then y,
  then z, i.e. along image rows as a scanner stores them. *Zero crossings* count the sign
  changes between consecutive non-zero values of that sequence (a zero neither starts nor
  ends a crossing); *mean crossings* are the zero crossings of the values minus their mean.
  Entropy is never negative, so its zero crossings are always 0: the paper lists the
  variable, we keep it for comparability. The paper does not state its voxel order; raster
  order is what flattening a masked array gives in Python and C.
* NaN voxels of the map inside the region are left out (and counted in ``n_nan``).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = ["STATISTICS", "crossings", "global_entropy", "region_statistics", "statistics_table"]

#: Column order of :func:`region_statistics`.
STATISTICS = (
    "n_voxels", "n_nan", "volume_ml", "mean", "median", "std", "variance", "rms",
    "p5", "p25", "p75", "p95", "min", "max", "iqr", "skewness", "kurtosis",
    "zero_crossings", "mean_crossings",
)


def crossings(sequence: np.ndarray) -> int:
    """Number of sign changes between consecutive non-zero values of a 1-D sequence.

    Examples
    --------
    >>> crossings(np.array([1.0, -2.0, 0.0, -1.0, 3.0]))
    2
    """
    s = np.sign(np.asarray(sequence, dtype=np.float64).ravel())
    s = s[s != 0]
    return int(np.count_nonzero(s[1:] != s[:-1]))


def region_statistics(
    values: np.ndarray, region: np.ndarray, *, spacing: Optional[Sequence[float]] = None
) -> dict:
    """The statistics of :data:`STATISTICS` for ``values`` inside ``region``.

    Parameters
    ----------
    values : (Z, Y, X) array
        A map or the image.
    region : (Z, Y, X) bool array
    spacing : (z, y, x) floats, optional
        Voxel spacing in mm, for ``volume_ml`` (NaN without it).
    """
    region = np.asarray(region, dtype=bool)
    if region.shape != np.shape(values):
        raise ValueError(f"region shape {region.shape} does not match values shape {np.shape(values)}")
    raw = np.asarray(values)[region].astype(np.float64)  # raster order
    finite = np.isfinite(raw)
    x = raw[finite]
    n = int(region.sum())
    vox_ml = float(np.prod(spacing)) / 1000.0 if spacing is not None else float("nan")
    out: dict = {"n_voxels": n, "n_nan": int(n - x.size), "volume_ml": n * vox_ml}
    if x.size == 0:
        out.update({k: float("nan") for k in STATISTICS if k not in out})
        return out
    mean = float(x.mean())
    d = x - mean
    var = float(np.mean(d**2))
    std = math.sqrt(var)
    p5, p25, p50, p75, p95 = (float(v) for v in np.percentile(x, [5, 25, 50, 75, 95]))
    out.update(
        mean=mean,
        median=p50,
        std=std,
        variance=var,
        rms=float(math.sqrt(np.mean(x**2))),
        p5=p5,
        p25=p25,
        p75=p75,
        p95=p95,
        min=float(x.min()),
        max=float(x.max()),
        iqr=p75 - p25,
        skewness=float(np.mean(d**3) / std**3) if std > 0 else float("nan"),
        kurtosis=float(np.mean(d**4) / var**2 - 3.0) if var > 0 else float("nan"),
        zero_crossings=crossings(x),
        mean_crossings=crossings(d),
    )
    return out


def global_entropy(
    values: np.ndarray, region: np.ndarray, *, bin_width: float = 1.0, anchor: float = 0.0, base: float = 2.0
) -> float:
    """Entropy of the histogram of the whole region (one histogram, not a map).

    Bins of width ``bin_width`` with an edge at ``anchor`` (level
    ``floor((x - anchor) / bin_width)``); ``base`` 2 gives bits (IBSI), 10 the unit of
    LIFEx's histogram entropy, ``math.e`` nats.
    """
    x = np.asarray(values)[np.asarray(region, dtype=bool)].astype(np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    levels = np.floor((x - anchor) / bin_width)
    _, counts = np.unique(levels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(base))


def statistics_table(
    quantities: Mapping[str, np.ndarray],
    regions: Mapping[str, np.ndarray],
    *,
    spacing: Optional[Sequence[float]] = None,
):
    """A tidy pandas table: one row per (region, quantity), columns :data:`STATISTICS`.

    Parameters
    ----------
    quantities : mapping name -> (Z, Y, X) array
        E.g. ``{"entropy": raw_map, "hu": image}``.
    regions : mapping name -> (Z, Y, X) bool array
        E.g. ``{"tumor": tumor_mask, "reference": reference_mask}``.
    """
    import pandas as pd

    rows = []
    for rname, region in regions.items():
        for qname, values in quantities.items():
            row = {"region": rname, "quantity": qname}
            row.update(region_statistics(values, region, spacing=spacing))
            rows.append(row)
    return pd.DataFrame(rows, columns=["region", "quantity", *STATISTICS])
