"""entropymap: voxel-wise local entropy maps of 3-D medical images.

Importing the package loads only numpy and the compiled kernel; ITK, pandas,
matplotlib and Dask are imported by the functions that need them.
"""

from importlib.metadata import PackageNotFoundError, version

from .discretization import Discretized, discretize
from .io import Geometry, Volume, list_dicom_series, read_image, read_mask, write_image
from .itk_filter import local_entropy_image
from .kernel import available_cores, local_entropy, make_footprint, openmp_enabled, vector_isa
from .sample import sample_case
from .tiling import dask_local_entropy, tiled_local_entropy

try:
    __version__ = version("entropymap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Discretized",
    "Geometry",
    "Volume",
    "__version__",
    "available_cores",
    "discretize",
    "list_dicom_series",
    "local_entropy",
    "local_entropy_image",
    "make_footprint",
    "openmp_enabled",
    "vector_isa",
    "read_image",
    "read_mask",
    "dask_local_entropy",
    "sample_case",
    "tiled_local_entropy",
    "write_image",
]
