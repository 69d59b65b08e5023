"""Compiled core of entropymap (see cpp/). Use entropymap.kernel, not this module."""

import numpy as np
import numpy.typing as npt

def local_entropy(
    levels: npt.NDArray[np.integer],
    footprint: npt.NDArray[np.uint8],
    vmin: int,
    nbins: int,
    scale: float,
    out_mask: npt.NDArray[np.uint8] | None = None,
    count_mask: npt.NDArray[np.uint8] | None = None,
    n_threads: int = 1,
    algorithm: int = 0,
    out: npt.NDArray[np.float32] | None = None,
    rows: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.float32]: ...
def driver(footprint: npt.NDArray[np.uint8], nbins: int) -> str: ...
def footprint(shape: str, kz: int, ky: int, kx: int) -> npt.NDArray[np.uint8]: ...
def openmp_enabled() -> bool: ...
def vector_isa() -> str: ...
