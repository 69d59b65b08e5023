"""Synthetic liver CT phantoms with lesions of known texture heterogeneity.

Users validate their set-up with them (a heterogeneous lesion must come out
hyper-entropic against the parenchyma, a homogeneous one must not), and the tests build
cohorts from them. A phantom is a volume of soft tissue holding an ellipsoidal liver of
enhanced parenchyma with CT-like noise, and one or more ellipsoidal lesions, each with a
mean contrast against the liver and an internal texture whose strength is the
*heterogeneity* (standard deviation of the texture, HU).

Everything is in millimetres and (z, y, x) array order, so anisotropic voxels give the
same physical objects; everything is drawn from one seed, so a phantom is reproducible.
Each random field has its own stream (:class:`numpy.random.SeedSequence` children), so
two phantoms with the same seed and different lesion parameters share their noise.

Examples
--------
>>> from entropymap.phantom import make_phantom
>>> ph = make_phantom(shape=(24, 32, 32), spacing=(2.0, 1.0, 1.0), lesion_radius_mm=6.0,
...                   heterogeneity=20.0, seed=1)
>>> ph.image.dtype, ph.tumor.sum() > 0, bool((ph.tumor <= ph.liver).all())
(dtype('int16'), True, True)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .io import Geometry

__all__ = ["PATTERN_FAMILIES", "Lesion", "Phantom", "PhantomFiles", "make_phantom", "pattern_phantom",
           "phantom_from_lesions"]

Triple = tuple[float, float, float]


def _triple(value: Union[float, Sequence[float]], name: str) -> Triple:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(3, float(arr))
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be one number or three (z, y, x), got {value!r}")
    return float(arr[0]), float(arr[1]), float(arr[2])


@dataclass(frozen=True)
class Lesion:
    """One lesion of a phantom.

    Attributes
    ----------
    radius_mm : float or (z, y, x)
        Semi-axes of the ellipsoid, mm (one value: a sphere).
    center_mm : (z, y, x), optional
        Centre in mm from the centre of voxel (0, 0, 0), array order. Default: the
        centre of the volume.
    contrast_hu : float
        Mean lesion HU minus the liver's (negative: hypodense, as most colorectal
        metastases in the portal-venous phase).
    heterogeneity : float
        Standard deviation (HU) of the lesion's internal texture: a Gaussian random field
        of correlation length ``texture_scale_mm`` added on top of the noise. 0 gives a
        homogeneous lesion (noise only).
    texture_scale_mm : float
        Sigma (mm) of the Gaussian that smooths white noise into the texture field.
    texture_margin_mm : float
        The texture extends this far beyond the lesion's surface (the mask does not):
        a lesion whose heterogeneous zone reaches past the drawn margin.
    """

    radius_mm: Union[float, Triple] = 10.0
    center_mm: Optional[Triple] = None
    contrast_hu: float = -30.0
    heterogeneity: float = 0.0
    texture_scale_mm: float = 2.0
    texture_margin_mm: float = 0.0

    def validate(self) -> "Lesion":
        """Check every value; raise ValueError naming the bad one. Returns self."""
        r = _triple(self.radius_mm, "lesion radius_mm")
        if min(r) <= 0:
            raise ValueError(f"lesion radius_mm must be positive, got {self.radius_mm!r}")
        if self.center_mm is not None:
            _triple(self.center_mm, "lesion center_mm")
        for name in ("contrast_hu", "heterogeneity", "texture_scale_mm", "texture_margin_mm"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"lesion {name} must be a finite number, got {getattr(self, name)!r}")
        if self.heterogeneity < 0:
            raise ValueError(f"lesion heterogeneity is a standard deviation in HU (>= 0), got {self.heterogeneity}")
        if self.texture_scale_mm <= 0:
            raise ValueError(f"lesion texture_scale_mm must be positive, got {self.texture_scale_mm}")
        if self.texture_margin_mm < 0:
            raise ValueError(f"lesion texture_margin_mm must be >= 0, got {self.texture_margin_mm}")
        return self


@dataclass(frozen=True)
class PhantomFiles:
    """Where :meth:`Phantom.save` wrote a phantom."""

    image: Path
    tumor: Path
    liver: Path


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic case: the CT, its masks and its grid.

    Attributes
    ----------
    image : (Z, Y, X) int16 array
        HU, rounded to integers as a scanner stores them.
    tumor : (Z, Y, X) bool array
        Union of the lesions (the Tumor-VOI a reader would draw).
    liver : (Z, Y, X) bool array
        The whole liver, lesions included (as a liver segmentation is).
    geometry : Geometry
        Grid of all three (origin 0, identity direction).
    lesions : tuple of Lesion
        The lesions drawn, in order.
    textured : (Z, Y, X) bool array
        Where lesion texture was added (the lesions grown by their texture margins).
    """

    image: np.ndarray
    tumor: np.ndarray
    liver: np.ndarray
    geometry: Geometry
    lesions: tuple[Lesion, ...]
    textured: np.ndarray

    def save(self, folder: Union[str, os.PathLike], *, stem: str = "phantom", suffix: str = ".nii.gz",
             overwrite: bool = False) -> PhantomFiles:
        """Write the image and both masks (uint8) into ``folder`` (created if needed).

        The files are ``{stem}{suffix}``, ``{stem}_tumor{suffix}`` and
        ``{stem}_liver{suffix}``; ``suffix`` is one of :data:`entropymap.io.WRITE_SUFFIXES`.
        """
        from . import io

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = PhantomFiles(out / f"{stem}{suffix}", out / f"{stem}_tumor{suffix}", out / f"{stem}_liver{suffix}")
        io.write_image(paths.image, self.image, self.geometry, overwrite=overwrite)
        io.write_image(paths.tumor, self.tumor.astype(np.uint8), self.geometry, overwrite=overwrite)
        io.write_image(paths.liver, self.liver.astype(np.uint8), self.geometry, overwrite=overwrite)
        return paths


def _ellipsoid(shape: Sequence[int], spacing: Triple, center: Triple, semi_axes: Triple) -> np.ndarray:
    """Voxels whose centre lies inside an ellipsoid (all lengths mm, array order)."""
    axes = [(np.arange(n) * s - c) / a for n, s, c, a in zip(shape, spacing, center, semi_axes)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return (z**2 + y**2 + x**2) <= 1.0


def _unit_field(rng: np.random.Generator, shape: Sequence[int], sigma_voxels: Sequence[float]) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to zero mean and unit standard deviation."""
    from scipy import ndimage

    field = rng.standard_normal(tuple(shape))
    if any(s > 0 for s in sigma_voxels):
        field = ndimage.gaussian_filter(field, sigma=tuple(sigma_voxels), mode="reflect")
    field -= field.mean()
    sd = field.std()
    return field / sd if sd > 0 else field


def _to_int16(hu: np.ndarray) -> np.ndarray:
    """HU rounded to integers and clipped to int16, as a scanner stores them."""
    info = np.iinfo(np.int16)
    return np.clip(np.rint(hu), info.min, info.max).astype(np.int16)


def phantom_from_lesions(
    lesions: Sequence[Lesion],
    *,
    shape: Sequence[int] = (40, 48, 48),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    noise_hu: float = 10.0,
    noise_grain_voxels: float = 0.7,
    liver_hu: float = 100.0,
    body_hu: float = 40.0,
    seed: int = 0,
) -> Phantom:
    """A phantom with any number of lesions (see :func:`make_phantom` for one).

    Parameters
    ----------
    lesions : sequence of Lesion
        Drawn in order; where lesions overlap the later one sets the mean HU.
    shape : (Z, Y, X)
        Voxels.
    spacing : (z, y, x)
        Voxel size in mm, array order; anisotropic voxels give the same physical objects.
    noise_hu : float
        Standard deviation of the noise, HU (portal-venous liver CT: about 10-20).
    noise_grain_voxels : float
        In-plane Gaussian sigma (voxels) that correlates the noise as CT reconstruction
        does; 0 gives white noise. The noise is rescaled to ``noise_hu`` afterwards.
    liver_hu, body_hu : float
        Mean HU of the liver (enhanced parenchyma) and of the tissue around it.
    seed : int
        Seed of every random field: the same arguments give the same phantom.

    Returns
    -------
    Phantom

    Notes
    -----
    The liver is the ellipsoid inscribed in the volume (semi-axes half the extent along
    each axis, less one voxel). Each lesion adds ``contrast_hu`` to the liver level inside
    its ellipsoid and ``heterogeneity`` x a unit Gaussian random field inside its
    ellipsoid grown by ``texture_margin_mm`` (the field is drawn on that region's
    bounding box plus 4 sigma, then cut). Noise is added everywhere; the sum is rounded
    to int16 HU.
    """
    shape_t = tuple(int(n) for n in shape)
    geometry = Geometry(shape_t, spacing=tuple(spacing))
    sp = geometry.spacing
    lesions = tuple(les.validate() for les in lesions)
    if not (math.isfinite(noise_hu) and noise_hu >= 0):
        raise ValueError(f"noise_hu is a standard deviation in HU (>= 0), got {noise_hu!r}")
    if not (math.isfinite(noise_grain_voxels) and noise_grain_voxels >= 0):
        raise ValueError(f"noise_grain_voxels must be >= 0, got {noise_grain_voxels!r}")
    # One independent stream per field, so changing a lesion never changes the noise.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(1 + len(lesions))]

    extent = [n * s for n, s in zip(shape_t, sp)]
    middle = tuple((n - 1) * s / 2.0 for n, s in zip(shape_t, sp))
    liver = _ellipsoid(shape_t, sp, middle, tuple(max(e / 2.0 - s, s) for e, s in zip(extent, sp)))
    hu = np.where(liver, liver_hu, body_hu).astype(np.float64)

    tumor = np.zeros(shape_t, bool)
    textured = np.zeros(shape_t, bool)
    for lesion, rng in zip(lesions, streams[1:]):
        center = middle if lesion.center_mm is None else _triple(lesion.center_mm, "lesion center_mm")
        semi = _triple(lesion.radius_mm, "lesion radius_mm")
        inside = _ellipsoid(shape_t, sp, center, semi)
        hu[inside] = liver_hu + lesion.contrast_hu
        tumor |= inside
        zone = _ellipsoid(shape_t, sp, center, tuple(a + lesion.texture_margin_mm for a in semi))
        textured |= zone
        if lesion.heterogeneity > 0 and zone.any():
            sigma = [lesion.texture_scale_mm / s for s in sp]
            idx = np.nonzero(zone)
            box = tuple(
                slice(max(int(i.min()) - math.ceil(4 * sg), 0), min(int(i.max()) + math.ceil(4 * sg) + 1, n))
                for i, sg, n in zip(idx, sigma, shape_t)
            )
            field = _unit_field(rng, [b.stop - b.start for b in box], sigma)
            hu[box][zone[box]] += lesion.heterogeneity * field[zone[box]]

    if noise_hu > 0:
        hu += noise_hu * _unit_field(streams[0], shape_t, (0.0, noise_grain_voxels, noise_grain_voxels))
    image = _to_int16(hu)
    return Phantom(image=image, tumor=tumor, liver=liver | tumor, geometry=geometry, lesions=lesions,
                   textured=textured)


def make_phantom(
    *,
    shape: Sequence[int] = (40, 48, 48),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    lesion_radius_mm: Union[float, Triple] = 10.0,
    heterogeneity: float = 0.0,
    noise_hu: float = 10.0,
    seed: int = 0,
    contrast_hu: float = -30.0,
    texture_scale_mm: float = 2.0,
    texture_margin_mm: float = 0.0,
    liver_hu: float = 100.0,
) -> Phantom:
    """A liver phantom with one lesion in the centre.

    Parameters
    ----------
    shape, spacing, noise_hu, seed, liver_hu
        As in :func:`phantom_from_lesions`.
    lesion_radius_mm, contrast_hu, heterogeneity, texture_scale_mm, texture_margin_mm
        The lesion (see :class:`Lesion`): ``heterogeneity`` is the standard deviation in
        HU of its texture, 0 for a homogeneous lesion.

    Examples
    --------
    >>> a = make_phantom(shape=(16, 24, 24), lesion_radius_mm=5, heterogeneity=0, seed=3)
    >>> b = make_phantom(shape=(16, 24, 24), lesion_radius_mm=5, heterogeneity=0, seed=3)
    >>> bool((a.image == b.image).all())
    True
    """
    lesion = Lesion(radius_mm=lesion_radius_mm, contrast_hu=contrast_hu, heterogeneity=heterogeneity,
                    texture_scale_mm=texture_scale_mm, texture_margin_mm=texture_margin_mm)
    return phantom_from_lesions([lesion], shape=shape, spacing=spacing, noise_hu=noise_hu, liver_hu=liver_hu,
                                seed=seed)


#: Lesion families of :func:`pattern_phantom`, named as the paper's entropic patterns.
PATTERN_FAMILIES = ("homogeneous", "peripheral rim", "inhomogeneous", "mixed")


def pattern_phantom(
    pattern: str,
    *,
    radius_mm: Union[float, Triple] = 10.0,
    shape: Sequence[int] = (40, 48, 48),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    heterogeneity: float = 25.0,
    texture_scale_mm: float = 1.0,
    rim_mm: float = 3.0,
    rim_gap_deg: float = 0.0,
    blob_fraction: float = 0.25,
    blob_scale_mm: float = 2.5,
    contrast_hu: float = -10.0,
    noise_hu: float = 6.0,
    seed: int = 0,
) -> Phantom:
    """A phantom whose one lesion (in the centre) has one of the paper's entropic patterns.

    The lesion is drawn plain (``contrast_hu``, noise only), then a texture of
    ``heterogeneity`` HU (a unit Gaussian random field of sigma ``texture_scale_mm``) is
    added in the part of it the pattern makes hyper-entropic:

    * ``"homogeneous"``: the whole lesion;
    * ``"peripheral rim"``: the outer shell of depth ``rim_mm`` (distance to the lesion's
      outside, mm), less a wedge of ``rim_gap_deg`` degrees of azimuth (axial plane,
      centred on +x) for an incomplete rim;
    * ``"inhomogeneous"``: scattered blobs, where a second random field of sigma
      ``blob_scale_mm`` is in its top ``blob_fraction`` over the lesion;
    * ``"mixed"``: the rim (with its gap) plus blobs in the core inside it.

    ``Phantom.textured`` is that part. Other arguments as :func:`phantom_from_lesions`.
    """
    from scipy import ndimage

    if pattern not in PATTERN_FAMILIES:
        raise ValueError(f"pattern must be one of {', '.join(PATTERN_FAMILIES)}, got {pattern!r}")
    for name, v in (("rim_mm", rim_mm), ("blob_scale_mm", blob_scale_mm)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number of mm, got {v!r}")
    if not 0 <= rim_gap_deg < 360:
        raise ValueError(f"rim_gap_deg must be in [0, 360), got {rim_gap_deg!r}")
    if not 0 < blob_fraction < 1:
        raise ValueError(f"blob_fraction must be between 0 and 1, got {blob_fraction!r}")
    base = phantom_from_lesions([Lesion(radius_mm=radius_mm, contrast_hu=contrast_hu)], shape=shape,
                                spacing=spacing, noise_hu=noise_hu, seed=seed)
    sp = base.geometry.spacing
    lesion = base.tumor
    depth = ndimage.distance_transform_edt(lesion, sampling=sp)
    idx = np.indices(lesion.shape, dtype=float)
    middle = [(n - 1) / 2.0 for n in lesion.shape]
    azimuth = np.degrees(np.arctan2((idx[1] - middle[1]) * sp[1], (idx[2] - middle[2]) * sp[2]))
    rim = lesion & (depth <= rim_mm) & ~(np.abs(azimuth) < rim_gap_deg / 2.0)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 8]).spawn(2)]
    blobs_field = _unit_field(streams[1], lesion.shape, [blob_scale_mm / s for s in sp])
    if pattern == "homogeneous":
        region = lesion
    elif pattern == "peripheral rim":
        region = rim
    else:
        pool = lesion if pattern == "inhomogeneous" else lesion & (depth > rim_mm)
        cut = np.quantile(blobs_field[pool], 1.0 - blob_fraction) if pool.any() else np.inf
        region = pool & (blobs_field > cut)
        if pattern == "mixed":
            region = region | rim
    texture = _unit_field(streams[0], lesion.shape, [texture_scale_mm / s for s in sp])
    hu = base.image.astype(np.float64) + np.where(region, heterogeneity * texture, 0.0)
    image = _to_int16(hu)
    return Phantom(image=image, tumor=lesion, liver=base.liver, geometry=base.geometry, lesions=base.lesions,
                   textured=region)
