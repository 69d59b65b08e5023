"""The local-entropy kernel: input validation, thread policy, and the call into C++.

This is the only module that imports the compiled ``_core``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = [
    "MAX_LEVELS",
    "KernelCall",
    "prepare",
    "available_cores",
    "local_entropy",
    "make_footprint",
    "normalize_kernel",
    "openmp_enabled",
    "resolve_threads",
    "vector_isa",
]

log = logging.getLogger(__name__)

#: Largest number of distinct levels (max - min + 1) the kernel accepts: the
#: full range of a 16-bit image, so raw integer HU always fits.
MAX_LEVELS = 65536

KernelSize = Union[int, Sequence[int]]

#: Largest window size per axis (voxels); also keeps the window's voxel count in range.
MAX_KERNEL = 255

# Dtypes with a compiled kernel; anything else is refused, never cast.
_SUPPORTED = tuple(
    np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64)
)
_BASES = {"e": 1.0, 2: 1.0 / math.log(2.0), 10: 1.0 / math.log(10.0)}


def available_cores() -> int:
    """Number of CPU cores this process may run on (its affinity, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_threads(n_threads: int | None) -> int:
    """Apply the package's thread convention: ``None`` means every available core.

    Parameters
    ----------
    n_threads : int or None
        Requested number of threads, >= 1, or None.

    Returns
    -------
    int
        The number of threads to use.
    """
    if n_threads is None:
        return available_cores()
    if (isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1
            or n_threads > 4096):
        raise ValueError(f"n_threads must be None or an integer from 1 to 4096, got {n_threads!r}")
    return int(n_threads)


def openmp_enabled() -> bool:
    """Whether the compiled core was built with OpenMP (else it runs on one thread)."""
    return bool(_core.openmp_enabled())


def vector_isa() -> str:
    """The vector instruction set the kernel uses on this CPU, or ``""`` when none.

    With ``"avx512vbmi"`` (AMD Zen 4, Intel Ice Lake and later), box windows of at most
    255 voxels over at most 256 levels take a vector step; it gives the same bits as the
    portable code, only faster.
    """
    return str(_core.vector_isa())


def normalize_kernel(kernel: KernelSize) -> tuple[int, int, int]:
    """Return the kernel size as a (kz, ky, kx) tuple of odd positive ints.

    Parameters
    ----------
    kernel : int or sequence of 3 ints
        One odd size for all axes, or one per axis in array order (z, y, x).

    Raises
    ------
    ValueError
        If a size is not an odd integer >= 1, or the sequence is not of length 3.
    """
    if isinstance(kernel, (int, np.integer)) and not isinstance(kernel, bool):
        sizes: tuple = (kernel, kernel, kernel)
    else:
        try:
            sizes = tuple(kernel)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError(
                f"kernel must be an odd int or a (kz, ky, kx) tuple of odd ints, got {kernel!r}"
            ) from None
        if len(sizes) != 3:
            raise ValueError(f"kernel must have 3 sizes (kz, ky, kx), got {len(sizes)}: {kernel!r}")
    for k in sizes:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd integers >= 1 (the window is centred on the voxel), "
                f"got {kernel!r}"
            )
        if k > MAX_KERNEL:
            raise ValueError(f"kernel size {int(k)} exceeds {MAX_KERNEL} voxels per axis; "
                             "a window that large is the whole image: use the global histogram entropy")
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def make_footprint(kernel: KernelSize = 5, shape: str = "cube") -> npt.NDArray[np.bool_]:
    """The window as a boolean array of shape (kz, ky, kx).

    Parameters
    ----------
    kernel : int or (kz, ky, kx)
        Odd window size in voxels.
    shape : {"cube", "ball"}
        ``"cube"`` is the whole box. ``"ball"`` is the ellipsoid inscribed in it with
        semi-axes ``r = (k - 1) / 2``: ``(dz/rz)^2 + (dy/ry)^2 + (dx/rx)^2 <= 1``
        (an axis with ``k = 1`` allows only offset 0); for a cube of size ``2r + 1``
        it equals ``skimage.morphology.ball(r)``.
    """
    kz, ky, kx = normalize_kernel(kernel)
    if shape not in ("cube", "ball"):
        raise ValueError(f"shape must be 'cube' or 'ball', got {shape!r}")
    return _core.footprint(shape, kz, ky, kx).astype(bool)


def _check_levels(levels: npt.ArrayLike) -> np.ndarray:
    if isinstance(levels, np.ma.MaskedArray):
        raise TypeError("levels is a masked array, whose mask would be lost; pass levels.data and "
                        "mask=~np.ma.getmaskarray(levels)")
    arr = np.asarray(levels)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind in "fc":
        n_nan = int(np.count_nonzero(np.isnan(arr))) if arr.size else 0
        nan_note = f" It also holds {n_nan} NaN value(s), which have no level." if n_nan else ""
        raise TypeError(
            f"levels has dtype {arr.dtype}; local_entropy needs integer levels and never casts "
            f"silently.{nan_note} Discretise first, e.g. entropymap.discretize(image, bin_width=1) "
            f"or np.rint(image).astype(np.int16)."
        )
    if arr.dtype.newbyteorder("=") not in _SUPPORTED:
        names = ", ".join(str(d) for d in _SUPPORTED)
        raise TypeError(f"levels has unsupported dtype {arr.dtype}; supported: {names}")
    if arr.ndim != 3:
        hint = " For one slice use levels[np.newaxis]." if arr.ndim == 2 else ""
        raise ValueError(f"levels must be a 3-D array (z, y, x), got {arr.ndim}-D shape {arr.shape}.{hint}")
    if arr.size == 0:
        raise ValueError(f"levels is empty (shape {arr.shape})")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # lossless byte swap
    if not arr.flags.c_contiguous:
        log.debug("levels is not C-contiguous; copying it once")
        arr = np.ascontiguousarray(arr)
    return arr


def _check_mask(mask: npt.ArrayLike, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"{name} shape {m.shape} does not match levels shape {shape}")
    if m.dtype.kind in "fc":
        raise TypeError(
            f"{name} has dtype {m.dtype}; give a boolean mask, e.g. {name} > 0.5 or {name} == label"
        )
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iu":
            raise TypeError(f"{name} has unsupported dtype {m.dtype}; give a boolean array")
        m = m != 0
    if not m.any():
        raise ValueError(f"{name} is empty (no voxel is set), so no entropy can be computed")
    return np.ascontiguousarray(m).view(np.uint8)


def local_entropy(
    levels: npt.ArrayLike,
    *,
    kernel: KernelSize = 5,
    shape: str = "cube",
    footprint: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    masked_kernel: bool = False,
    count_mask: npt.ArrayLike | None = None,
    base: str | int = "e",
    n_threads: int | None = None,
) -> npt.NDArray[np.float32]:
    r"""Shannon entropy of the levels in a window centred on every voxel.

    For each voxel the histogram of the levels in its window is taken and

    .. math:: H = -\sum_i p_i \log p_i = \ln n - \frac{1}{n}\sum_i c_i \ln c_i

    where :math:`c_i` are the counts, :math:`n = \sum_i c_i` and :math:`p_i = c_i / n`
    (natural log by default, so H is in nats). The window slides with a stride of one
    voxel, so the map has the input's grid.

    Borders: only voxels inside the volume are counted; the window shrinks at the
    faces, edges and corners (no padding). This is the rule of
    ``skimage.filters.rank.entropy`` and of PyRadiomics' voxel-based extraction.

    Parameters
    ----------
    levels : (Z, Y, X) integer array
        Already discretised intensities: int8, uint8, int16, uint16, int32, uint32 or
        int64 (bool is taken as uint8). Raw integer HU is valid. ``max - min + 1`` must
        not exceed 65,536 levels. Float input is refused: discretise first.
        Non-contiguous arrays are copied once.
    kernel : int or (kz, ky, kx)
        Window size in voxels, odd on every axis, in array order. ``1`` gives 0.
    shape : {"cube", "ball"}
        Window shape; see :func:`make_footprint`.
    footprint : (kz, ky, kx) bool array, optional
        Any window with odd sizes, centred; replaces ``kernel`` and ``shape``.
    mask : (Z, Y, X) bool array, optional
        Entropy is computed only where the mask is set; other voxels are NaN.
        Integer masks count non-zero voxels. An empty mask is an error.
    masked_kernel : bool
        Count only mask voxels in each window (PyRadiomics ``maskedKernel``).
        Needs ``mask``.
    count_mask : (Z, Y, X) bool array, optional
        Only these voxels enter any histogram, wherever the output is computed (e.g.
        the ``included`` voxels of a re-segmentation range). Combined with
        ``masked_kernel`` a voxel must be in both. A window with no counted voxel
        gives NaN.
    base : {"e", 2, 10}
        Logarithm base: nats (default), bits or hartleys.
    n_threads : int, optional
        OpenMP threads; None uses every available core. The result is
        identical for any value.

    Returns
    -------
    (Z, Y, X) float32 array
        The local entropy map, NaN outside ``mask``.

    Notes
    -----
    The histogram slides along x: a step removes the voxels leaving and adds those
    entering the window (one per footprint row), and the sum of :math:`c \ln c` is
    kept current from a table in fixed point. The cost per voxel grows with the
    window's face (:math:`k^2`), not its volume, and does not depend on the number of
    levels. For box windows over few levels a second driver keeps column histograms
    (one per x of the window's z-y face, updated row to row) and adds and removes
    whole columns: where the CPU has AVX-512 VBMI (see :func:`vector_isa`) every bin
    of a window of at most 255 voxels over at most 256 levels is re-summed by vector
    table lookups, otherwise only the bins that change are touched. The choice is
    made per call from the footprint and the level count (:attr:`KernelCall.driver`).
    The fixed-point sum is exact, so a constant window gives exactly 0, every driver
    gives the same bits, and the map does not depend on the thread count.

    References
    ----------
    .. [1] Costa G. et al., "Mapping Tumor Heterogeneity via Local Entropy Assessment:
       Making Biomarkers Visible", J Digit Imaging 36 (2023), doi:10.1007/s10278-023-00799-9.

    Examples
    --------
    >>> import numpy as np, entropymap
    >>> levels = np.indices((6, 6, 6)).sum(axis=0) % 2      # a 3-D checkerboard
    >>> h = entropymap.local_entropy(levels.astype(np.uint8), kernel=1)
    >>> float(h.max())
    0.0
    """
    call = prepare(levels, kernel=kernel, shape=shape, footprint=footprint, mask=mask,
                   masked_kernel=masked_kernel, count_mask=count_mask, base=base)
    return call.run(n_threads=n_threads)



@dataclass(frozen=True)
class KernelCall:
    """A validated kernel call: the arrays as the C++ core takes them and the global
    level range. Tiles of one volume share one call, so every tile sees the same bins.
    """

    levels: np.ndarray
    footprint: np.ndarray
    vmin: int
    nlevels: int
    scale: float
    out_mask: Optional[np.ndarray]
    count_mask: Optional[np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.levels.shape  # type: ignore[return-value]

    @property
    def driver(self) -> str:
        """The driver this call runs: ``"runs"``, ``"columns"`` or ``"columns+<isa>"``."""
        return str(_core.driver(self.footprint, self.nlevels))

    @property
    def radius(self) -> tuple[int, int, int]:
        """Half the window size per axis (z, y, x): the halo a tile needs."""
        kz, ky, kx = self.footprint.shape
        return kz // 2, ky // 2, kx // 2

    def run(
        self,
        *,
        n_threads: Optional[int] = None,
        out: Optional[np.ndarray] = None,
        rows: Optional[tuple[int, int, int, int]] = None,
    ) -> np.ndarray:
        """Compute the map, or only ``rows`` = (z0, z1, y0, y1) of it into ``out``."""
        return _core.local_entropy(
            self.levels, self.footprint, self.vmin, self.nlevels, self.scale, self.out_mask,
            self.count_mask, resolve_threads(n_threads), 0, out, rows,
        )


def prepare(
    levels: npt.ArrayLike,
    *,
    kernel: KernelSize = 5,
    shape: str = "cube",
    footprint: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    masked_kernel: bool = False,
    count_mask: npt.ArrayLike | None = None,
    base: str | int = "e",
) -> KernelCall:
    """Validate the arguments of :func:`local_entropy` once; see there for their meaning."""
    arr = _check_levels(levels)
    if footprint is not None:
        if kernel != 5 or shape != "cube":
            raise ValueError("give either kernel/shape or footprint, not both")
        fp = np.asarray(footprint)
        if fp.ndim != 3:
            raise ValueError(f"footprint must be a 3-D boolean array, got shape {fp.shape}")
        normalize_kernel(fp.shape)
        fp = np.ascontiguousarray(fp != 0).view(np.uint8)
        if not fp.any():
            raise ValueError("footprint is empty")
    else:
        fp = make_footprint(kernel, shape).view(np.uint8)
    if base not in _BASES:
        raise ValueError(f"base must be 'e', 2 or 10, got {base!r}")

    out_mask = None
    if mask is not None:
        out_mask = _check_mask(mask, arr.shape)
    elif masked_kernel:
        raise ValueError("masked_kernel=True needs a mask")
    counted = out_mask if masked_kernel else None
    if count_mask is not None:
        cm = _check_mask(count_mask, arr.shape, "count_mask")
        counted = cm if counted is None else np.logical_and(cm, counted).view(np.uint8)

    vmin, vmax = int(arr.min()), int(arr.max())
    nlevels = vmax - vmin + 1
    if nlevels > MAX_LEVELS:
        raise ValueError(
            f"levels span {nlevels} distinct values ({vmin} .. {vmax}); the kernel takes at most "
            f"{MAX_LEVELS}. Use coarser bins: a larger bin width or at most {MAX_LEVELS} bins "
            "(--bin-width / --bin-count; entropymap.discretize in Python)."
        )
    return KernelCall(arr, fp, vmin, nlevels, _BASES[base], out_mask, counted)
