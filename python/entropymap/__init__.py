"""entropymap: voxel-wise local entropy maps of 3-D medical images.

Importing the package loads only numpy and the compiled kernel; ITK, pandas,
matplotlib and Dask are imported by the functions that need them.
"""

from importlib.metadata import PackageNotFoundError, version

from .kernel import available_cores, local_entropy, make_footprint, openmp_enabled

try:
    __version__ = version("entropymap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "available_cores",
    "local_entropy",
    "make_footprint",
    "openmp_enabled",
]
