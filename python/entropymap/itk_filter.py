"""The entropy map as a step in an ITK pipeline: ``itk.Image`` in, ``itk.Image`` out.

``itk.imread -> local_entropy_image -> itk.imwrite`` needs no numpy round trip by the
user; the conversion happens here, through :mod:`entropymap.io`, which owns ITK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from .discretization import discretize
from .io import Geometry, Volume, from_itk, read_mask, to_itk
from .kernel import KernelSize, local_entropy

if TYPE_CHECKING:  # pragma: no cover
    import itk

__all__ = ["local_entropy_image"]


def local_entropy_image(
    image: Union["itk.Image", np.ndarray],
    *,
    geometry: Optional[Geometry] = None,
    bin_width: float = 1.0,
    kernel: KernelSize = 5,
    shape: str = "cube",
    mask: Union["itk.Image", np.ndarray, None] = None,
    masked_kernel: bool = False,
    n_threads: Optional[int] = None,
) -> "itk.Image":
    """Local entropy map of an ``itk.Image`` (or a numpy array with its geometry).

    The image is discretised with a fixed bin width
    (:func:`entropymap.discretize`) and passed to
    :func:`entropymap.kernel.local_entropy`; the map is returned as a float32
    ``itk.Image`` with the input's exact spacing, origin and direction.

    Parameters
    ----------
    image : itk.Image or (Z, Y, X) array
        A scalar 3-D image (a 2-D image is taken as one slice and gives a one-slice
        3-D map). A numpy array is in (z, y, x) order and takes its grid from
        ``geometry``.
    geometry : Geometry, optional
        Only with a numpy ``image``: its grid, e.g. ``Geometry(a.shape,
        spacing=(sz, sy, sx), origin=(x0, y0, z0), direction=D)`` (spacing in array
        order). Default: 1 mm voxels, origin 0, identity direction.
    bin_width : float
        Intensity bin width; 1 keeps integer intensities (e.g. HU) as they are.
    kernel : int or (kz, ky, kx)
        Odd window size in voxels, array order.
    shape : {"cube", "ball"}
        Window shape.
    mask : itk.Image or (Z, Y, X) array, optional
        Non-zero voxels are computed, the others are NaN. An ``itk.Image`` mask must be
        on the image grid (see :func:`entropymap.io.read_mask`, which can resample).
    masked_kernel : bool
        Count only mask voxels in each window.
    n_threads : int, optional
        Threads for the kernel; None uses every available core.

    Returns
    -------
    itk.Image
        float32 entropy map in nats, same size, spacing, origin and direction.

    Examples
    --------
    >>> import itk, entropymap                                    # doctest: +SKIP
    >>> ct = itk.imread("ct.nrrd")                                # doctest: +SKIP
    >>> emap = entropymap.local_entropy_image(ct, kernel=5)       # doctest: +SKIP
    >>> itk.imwrite(emap, "entropy.nrrd")                         # doctest: +SKIP
    """
    if isinstance(image, np.ndarray):
        arr = image
        vol = Volume(arr, geometry if geometry is not None else Geometry(arr.shape), None)
    elif geometry is not None:
        raise ValueError("geometry= is only for a numpy image; an itk.Image carries its own geometry")
    else:
        vol = from_itk(image)
    in_mask = None
    if mask is not None:
        in_mask = read_mask(mask if isinstance(mask, np.ndarray) else from_itk(mask), vol.geometry)
    levels = discretize(vol.array, bin_width=bin_width).levels
    emap = local_entropy(
        levels, kernel=kernel, shape=shape, mask=in_mask, masked_kernel=masked_kernel, n_threads=n_threads
    )
    return to_itk(emap, vol.geometry)
