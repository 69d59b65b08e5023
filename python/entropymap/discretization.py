r"""Intensities -> integer levels (bin indices) for the entropy kernel.

Discretise once for the whole volume, before any tiling, so every window of the map
sees the same bin edges.

Formulas (x is an intensity, :math:`\lfloor\cdot\rfloor` the floor):

* Fixed bin width :math:`w` (default, :math:`w = 1`): edges at :math:`a + k w` for every
  integer :math:`k`, and the level is :math:`\lfloor (x - a) / w \rfloor`. The anchor
  :math:`a` defaults to 0, so with integer HU and :math:`w = 1` every HU value is its own
  level (the paper's "probability of occurrence of each voxel intensity"). Anchored at 0
  the edges are those of PyRadiomics (edges at multiples of ``binWidth``); anchored at the
  lower bound of a re-segmentation range they are IBSI's fixed bin size
  (:math:`\lfloor (x - X_{min})/w \rfloor + 1`, less the 1). Entropy depends only on
  which voxels share a bin, so these conventions differ only through where the edges lie.
* Fixed bin count :math:`N`: :math:`\lfloor N (x - X_{min}) / (X_{max} - X_{min}) \rfloor`,
  with :math:`x = X_{max}` put in the last bin :math:`N - 1` (IBSI fixed bin number, less the
  1). :math:`X_{min}, X_{max}` are the bounds of ``value_range`` if given, else the minimum
  and maximum over ``region`` (the volume by default). PyRadiomics has no fixed bin count.
* ``value_range=(lo, hi)``: voxels outside :math:`[lo, hi]` are *excluded*: they are left
  out of every histogram (IBSI range re-segmentation). They get level 0 and
  ``included == False``; pass ``included`` as the kernel's ``count_mask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

__all__ = ["Discretized", "discretize"]


@dataclass(frozen=True)
class Discretized:
    """Levels and the exact bin edges they came from.

    Attributes
    ----------
    levels : integer ndarray
        Bin index per voxel (int16 where it fits, else int32).
    included : bool ndarray or None
        Voxels inside ``value_range`` (None when no range was given: all are included).
    method : str
        ``"bin_width"`` or ``"bin_count"``.
    first_edge, bin_width : float
        Level ``k`` holds intensities in ``[first_edge + k*bin_width, first_edge + (k+1)*bin_width)``.
    n_levels : int
        ``levels.max() - levels.min() + 1`` over the included voxels.
    """

    levels: np.ndarray
    included: Optional[np.ndarray]
    method: str
    first_edge: float
    bin_width: float
    n_levels: int

    def describe(self) -> dict:
        """A JSON-ready record of the discretisation (without the arrays)."""
        return {
            "method": self.method,
            "first_edge": self.first_edge,
            "bin_width": self.bin_width,
            "n_levels": self.n_levels,
            "excluded_voxels": 0 if self.included is None else int(self.included.size - self.included.sum()),
        }


def _smallest_int(levels: np.ndarray) -> np.ndarray:
    lo, hi = (int(levels.min()), int(levels.max())) if levels.size else (0, 0)
    for dt in (np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return levels.astype(dt, copy=False)
    raise ValueError(
        f"levels {lo} .. {hi} exceed the 64-bit integer range; use a larger bin width or rescale the image"
    )


def discretize(
    image: npt.ArrayLike,
    *,
    bin_width: Optional[float] = None,
    bin_count: Optional[int] = None,
    anchor: float = 0.0,
    value_range: Optional[Tuple[float, float]] = None,
    region: Optional[npt.ArrayLike] = None,
) -> Discretized:
    """Turn intensities into integer levels with a fixed bin width or a fixed bin count.

    Parameters
    ----------
    image : ndarray
        Intensities (any real dtype). NaN is refused.
    bin_width : float, optional
        Fixed bin width in intensity units (default 1 when ``bin_count`` is not given).
    bin_count : int, optional
        Fixed number of bins over ``[X_min, X_max]``; exclusive with ``bin_width``.
    anchor : float
        Where the fixed-width edges start (an edge lies at ``anchor``); default 0. With
        ``value_range`` the IBSI convention is ``anchor=value_range[0]``.
    value_range : (lo, hi), optional
        Intensities outside are excluded from every histogram (see module docstring).
    region : bool ndarray, optional
        For ``bin_count`` without ``value_range``: where to take ``X_min`` and ``X_max``
        (default: the whole image). Voxels outside that range go into the end bins.

    Returns
    -------
    Discretized
        The levels, the included-voxel mask and the edges.

    Examples
    --------
    >>> import numpy as np
    >>> d = discretize(np.array([-3.0, 0.0, 24.9, 25.0]), bin_width=25)
    >>> d.levels.tolist(), d.first_edge
    ([-1, 0, 0, 1], -25.0)
    """
    x = np.asarray(image)
    if x.dtype.kind not in "iufb":
        raise TypeError(f"image has dtype {x.dtype}; discretize needs real numbers")
    if x.size == 0:
        raise ValueError("image is empty")
    if x.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(x)))
        if n_nan:
            raise ValueError(
                f"image holds {n_nan} NaN voxel(s), which have no level; replace them "
                "(e.g. with the background value) or exclude them with value_range"
            )
        if not np.isfinite(x).all():
            raise ValueError("image holds infinite values, which have no level")
    if bin_width is not None and bin_count is not None:
        raise ValueError("give bin_width or bin_count, not both")
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must be two finite numbers lo < hi, got {value_range!r}")
        included = (x >= lo) & (x <= hi)
        if not included.any():
            raise ValueError(f"no voxel lies inside value_range {value_range!r}")
    else:
        included = None

    if bin_count is not None:
        if isinstance(bin_count, bool) or not isinstance(bin_count, (int, np.integer)) or bin_count < 1:
            raise ValueError(f"bin_count must be an integer >= 1, got {bin_count!r}")
        if value_range is not None:
            xmin, xmax = lo, hi
        else:
            sel = x if region is None else x[np.asarray(region, dtype=bool)]
            if sel.size == 0:
                raise ValueError("region is empty, so X_min and X_max are undefined")
            xmin, xmax = float(sel.min()), float(sel.max())
        width = (xmax - xmin) / bin_count if xmax > xmin else 1.0
        lv = np.floor((x.astype(np.float64) - xmin) / width)
        # x == X_max goes to the last bin. Voxels outside [X_min, X_max] are excluded when
        # value_range gave the bounds; when `region` did, they are clipped into the end bins.
        lv = np.clip(lv, 0, bin_count - 1)
        levels, method, first_edge, w = lv.astype(np.int64), "bin_count", xmin, width
    else:
        w = 1.0 if bin_width is None else float(bin_width)
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"bin_width must be a positive number, got {bin_width!r}")
        a = float(anchor)
        if not math.isfinite(a):
            raise ValueError(f"anchor must be a finite number, got {anchor!r}")
        if x.dtype.kind in "iub" and w == 1.0 and a == 0.0:
            levels = x.astype(np.int64, copy=False) if x.dtype.kind == "b" else x  # identity: integers are levels
        elif x.dtype.kind in "iub" and float(w).is_integer() and float(a).is_integer():
            levels = np.floor_divide(x.astype(np.int64) - int(a), int(w))  # exact integer arithmetic
        else:
            lv = np.floor((x.astype(np.float64) - a) / w)
            if not np.all(np.abs(lv) < 2.0**62):
                raise ValueError(
                    f"bin width {w:g} with anchor {a:g} puts levels beyond the integer range; "
                    "use a larger bin width or an anchor within the intensity range"
                )
            levels = lv.astype(np.int64)
        method = "bin_width"
        kmin = int(levels[included].min()) if included is not None else int(levels.min())
        first_edge = a + kmin * w

    if included is not None:
        levels = np.where(included, levels, levels[included].min())
    levels = _smallest_int(np.asarray(levels))
    sel = levels if included is None else levels[included]
    n_levels = int(sel.max()) - int(sel.min()) + 1
    if method == "bin_width":
        first_edge = float(first_edge)
    return Discretized(levels, included, method, float(first_edge), float(w), n_levels)
