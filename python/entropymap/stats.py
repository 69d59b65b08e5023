r"""Statistics of a map (or of the HU) inside a region.

Conventions, following the IBSI reference manual where it defines them:

* variance and standard deviation without Bessel's correction
  (:math:`\sigma^2 = \frac1N\sum (x-\mu)^2`), skewness :math:`m_3/\sigma^3` and excess
  kurtosis :math:`m_4/\sigma^4 - 3` from the same moments;
* percentiles with linear interpolation between order statistics (numpy's default);
  IQR = P75 - P25; RMS = :math:`\sqrt{\frac1N\sum x^2}`. The paper's 5/25/75/95th
  percentiles are there, and IBSI's 10th and 90th;
* crossings: the region's voxel values are read in C (raster) order, x fastest, then y,
  then z, i.e. along image rows as a scanner stores them. *Zero crossings* count the sign
  changes between consecutive non-zero values of that sequence (a zero neither starts nor
  ends a crossing); *mean crossings* are the zero crossings of the values minus their mean.
  Entropy is never negative, so its zero crossings are always 0: the paper lists the
  variable, we keep it for comparability. The paper does not state its voxel order; raster
  order is what flattening a masked array gives in Python and C.
* NaN voxels of the map inside the region are left out (and counted in ``n_nan``).

Two more region summaries sit beside :func:`region_statistics`: the share of hypo-, iso-
and hyper-entropic voxels of a class map (:func:`class_fractions`), and the entropy of
the region's whole histogram (:func:`global_entropy`, with :data:`GLOBAL_ENTROPY_PRESETS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from .normalize import HYPER, HYPO, ISO

__all__ = [
    "CLASS_FRACTIONS",
    "GLOBAL_ENTROPY_PRESETS",
    "STATISTICS",
    "HistogramBins",
    "class_fractions",
    "crossings",
    "global_entropy",
    "region_statistics",
    "statistics_table",
]

#: Column order of :func:`region_statistics`.
STATISTICS = (
    "n_voxels", "n_nan", "volume_ml", "mean", "median", "std", "variance", "rms",
    "p5", "p10", "p25", "p75", "p90", "p95", "min", "max", "iqr", "skewness", "kurtosis",
    "zero_crossings", "mean_crossings",
)
_PERCENTILES = (5, 10, 25, 50, 75, 90, 95)

#: Keys of :func:`class_fractions`.
CLASS_FRACTIONS = ("hypo_fraction", "iso_fraction", "hyper_fraction")


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
    p5, p10, p25, p50, p75, p90, p95 = (float(v) for v in np.percentile(x, _PERCENTILES))
    out.update(
        mean=mean,
        median=p50,
        std=std,
        variance=var,
        rms=float(math.sqrt(np.mean(x**2))),
        p5=p5,
        p10=p10,
        p25=p25,
        p75=p75,
        p90=p90,
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


def class_fractions(classes: np.ndarray, region: np.ndarray) -> dict:
    """Shares of hypo-, iso- and hyper-entropic voxels of a class map inside a region.

    Parameters
    ----------
    classes : (Z, Y, X) integer array
        A label map of :func:`entropymap.normalize.classify`: 1 hypo, 2 iso, 3 hyper,
        0 no value.
    region : (Z, Y, X) bool array

    Returns
    -------
    dict
        :data:`CLASS_FRACTIONS` -> fraction in [0, 1]. The denominator is the region's
        voxels that have a class (label 0 is left out, like NaN in
        :func:`region_statistics`), so the three fractions sum to 1; all are NaN when no
        voxel of the region has a class.

    Examples
    --------
    >>> class_fractions(np.array([[[1, 3, 3, 0]]]), np.ones((1, 1, 4), bool))
    {'hypo_fraction': 0.3333333333333333, 'iso_fraction': 0.0, 'hyper_fraction': 0.6666666666666666}
    """
    region = np.asarray(region, dtype=bool)
    if region.shape != np.shape(classes):
        raise ValueError(f"region shape {region.shape} does not match class map shape {np.shape(classes)}")
    labels = np.asarray(classes)[region]
    counts = {name: int(np.count_nonzero(labels == value))
              for name, value in zip(CLASS_FRACTIONS, (HYPO, ISO, HYPER))}
    total = sum(counts.values())
    return {name: (c / total if total else float("nan")) for name, c in counts.items()}


@dataclass(frozen=True)
class HistogramBins:
    """How :func:`global_entropy` bins a region's values and which logarithm it takes.

    Attributes
    ----------
    bin_width : float
        Width of every bin, in the values' unit (HU for CT).
    anchor : float
        A bin edge: value ``x`` falls in bin ``floor((x - anchor) / bin_width)``.
    base : float
        Logarithm base: 2 bits, 10 hartleys (LIFEx), ``math.e`` nats.
    """

    bin_width: float = 1.0
    anchor: float = 0.0
    base: float = 2.0

    def validate(self) -> "HistogramBins":
        """Check the values; raise ValueError naming the bad one. Returns self."""
        if not (math.isfinite(self.bin_width) and self.bin_width > 0):
            raise ValueError(f"global-entropy bin width must be a positive number, got {self.bin_width!r}")
        if not math.isfinite(self.anchor):
            raise ValueError(f"global-entropy bin anchor must be a finite number, got {self.anchor!r}")
        if not (math.isfinite(self.base) and self.base > 1):
            raise ValueError(f"global-entropy log base must be a number > 1 (2, 10 or e), got {self.base!r}")
        return self

    def entropy(self, values: np.ndarray, region: np.ndarray) -> float:
        """:func:`global_entropy` of ``values`` in ``region`` with these bins."""
        return global_entropy(values, region, bin_width=self.bin_width, anchor=self.anchor, base=self.base)


#: Named settings for :func:`global_entropy`.
#:
#: ``"ibsi"``: bins of width 1 from 0, bits. On already discretised values (integer grey
#: levels, as in the IBSI digital phantom) each level is its own bin, which is IBSI's
#: intensity-histogram entropy; it reproduces the published 1.27 bits of the phantom.
#:
#: ``"lifex"``: bins 10 HU wide with edges at -1000 + 10 k HU, log base 10. What is known
#: about the "global" entropy of the paper: LIFEx computed it (its histogram entropy,
#: ``-sum p log10 p`` with an epsilon of 2e-16 inside the log, which changes nothing at our
#: precision) on intensities resampled to fixed-width bins ("absolute" resampling: bin
#: width = (max - min) / number of grey levels of its resampling menu). What is *not*
#: known: the paper does not report the min, max or number of grey levels used. The preset
#: takes 400 grey levels over -1000 to 3000 HU, i.e. 10 HU bins, a usual CT setting of
#: LIFEx; it is our assumption, not a documented value of the paper. It gives values of
#: the paper's order (a Gaussian of SD 25 HU in 10 HU bins has about 1.0 hartley, of SD
#: 15 HU about 0.8; the paper: tumour 0.91, parenchyma 0.75).
GLOBAL_ENTROPY_PRESETS = {
    "ibsi": HistogramBins(bin_width=1.0, anchor=0.0, base=2.0),
    "lifex": HistogramBins(bin_width=10.0, anchor=-1000.0, base=10.0),
}


def global_entropy(
    values: np.ndarray, region: np.ndarray, *, bin_width: float = 1.0, anchor: float = 0.0, base: float = 2.0
) -> float:
    r"""Entropy of the histogram of the whole region (one histogram, not a map).

    .. math:: H = -\sum_i p_i \log_b p_i

    over the non-empty bins ``i`` of width ``bin_width`` with an edge at ``anchor``
    (level ``floor((x - anchor) / bin_width)``); ``base`` 2 gives bits (IBSI), 10 the
    unit of LIFEx's histogram entropy, ``math.e`` nats. NaN values are left out; an
    empty region gives NaN. Named settings: :data:`GLOBAL_ENTROPY_PRESETS`, e.g.
    ``GLOBAL_ENTROPY_PRESETS["lifex"].entropy(hu, tumor)``.
    """
    HistogramBins(bin_width, anchor, base).validate()
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
