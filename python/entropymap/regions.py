"""Regions built from geometry: the reference sphere, the derived liver reference,
kernel sizes in millimetres, and the bounding box used to compute only near a region."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .io import Geometry

__all__ = [
    "bounding_box",
    "derived_reference",
    "kernel_from_mm",
    "sphere_region",
]

Spacing = Sequence[float]


def kernel_from_mm(size_mm: Union[float, Sequence[float]], spacing: Spacing) -> tuple[int, int, int]:
    """Odd kernel sizes in voxels from a physical size in mm, per axis (z, y, x).

    Each axis gets the odd number of voxels closest to ``size_mm / spacing``:
    ``k = 2 * round((size_mm / spacing - 1) / 2) + 1``, at least 1. So 5 mm at
    0.7 mm spacing is 7 voxels (4.9 mm) and at 5 mm spacing 1 voxel.

    Parameters
    ----------
    size_mm : float or (z, y, x) floats
        Window extent in mm (one value for all axes, or one per axis in array order).
    spacing : (z, y, x) floats
        Voxel spacing in mm, array order.
    """
    sizes = np.broadcast_to(np.asarray(size_mm, dtype=float), (3,))
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    if np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"kernel size in mm must be positive, got {size_mm!r}")
    half = np.floor((sizes / sp - 1.0) / 2.0 + 0.5)  # round half up, never banker's rounding
    k = 2 * np.maximum(half, 0).astype(int) + 1
    return int(k[0]), int(k[1]), int(k[2])


def sphere_region(geometry: "Geometry", center_xyz_mm: Sequence[float], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of a physical point.

    Parameters
    ----------
    geometry : Geometry
        The image grid.
    center_xyz_mm : (x, y, z)
        Physical centre in the image's world coordinates (ITK/LPS, mm), as a viewer
        such as 3D Slicer (RAS: negate x and y) or ITK-SNAP shows it.
    radius_mm : float
        Radius in mm.
    """
    c = np.asarray(center_xyz_mm, dtype=float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"sphere centre must be three numbers (x, y, z) in mm, got {center_xyz_mm!r}")
    if not (np.isfinite(radius_mm) and radius_mm > 0):
        raise ValueError(f"sphere radius must be a positive number of mm, got {radius_mm!r}")
    # Only the voxels of the bounding box of the sphere are tested.
    corners = np.array([[dx, dy, dz] for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)]) * radius_mm + c
    idx = geometry.physical_to_index(corners)
    shape = np.array(geometry.shape)
    lo = np.clip(np.floor(idx.min(axis=0)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 2, 0, shape)
    out = np.zeros(geometry.shape, dtype=bool)
    if np.any(hi <= lo):
        return out
    zz, yy, xx = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
    pts = geometry.index_to_physical(np.stack([zz, yy, xx], axis=-1))
    inside = np.sum((pts - c) ** 2, axis=-1) <= radius_mm**2
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = inside
    return out


def derived_reference(
    liver: np.ndarray, tumor: np.ndarray | None, spacing: Spacing, margin_mm: float = 10.0
) -> np.ndarray:
    """Liver voxels farther than ``margin_mm`` from the tumor (a "virtual biopsy" of
    healthy parenchyma).

    The distance is the Euclidean distance in mm (anisotropic spacing respected) from
    each voxel centre to the nearest tumor voxel centre; voxels at a distance
    ``<= margin_mm`` are removed, as are the tumor voxels themselves.
    """
    from scipy import ndimage

    if margin_mm < 0:
        raise ValueError(f"reference margin must be >= 0 mm, got {margin_mm}")
    ref = liver.copy()
    if tumor is not None and tumor.any():
        dist = ndimage.distance_transform_edt(~tumor, sampling=tuple(float(s) for s in spacing))
        ref &= dist > margin_mm
    return ref


def bounding_box(mask: np.ndarray, margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, slice, slice]:
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels per axis, clipped."""
    nz = np.nonzero(mask.any(axis=(1, 2)))[0]
    ny = np.nonzero(mask.any(axis=(0, 2)))[0]
    nx = np.nonzero(mask.any(axis=(0, 1)))[0]
    if nz.size == 0:
        raise ValueError("cannot take the bounding box of an empty region")
    out = []
    for idx, m, n in zip((nz, ny, nx), margin, shape):
        out.append(slice(max(int(idx[0]) - int(m), 0), min(int(idx[-1]) + int(m) + 1, int(n))))
    return out[0], out[1], out[2]
