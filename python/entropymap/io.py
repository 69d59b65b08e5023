"""Images in and out: ITK reading and writing with exact geometry, masks, DICOM series.

This is the only module that imports ``itk``, and only inside functions, so importing
entropymap stays light. Everything past it sees a numpy array in (z, y, x) order plus a
:class:`Geometry`; ITK's (x, y, z) spacing and size are converted once, here.

Conventions
-----------
* ``Geometry.shape`` and ``Geometry.spacing`` are in array order (z, y, x).
* ``Geometry.origin`` is the physical (x, y, z) position in mm of voxel index 0 and
  ``Geometry.direction`` the 3 x 3 direction matrix, both exactly as ITK reports them
  (LPS). Column j of ``direction`` is the physical direction of ITK axis j, and ITK axis
  0 is array axis x (the last one).
* Physical point of array index (z, y, x):
  ``origin + direction @ (spacing_xyz * (x, y, z))``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Tuple, TypeVar, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    import itk

__all__ = [
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "Geometry",
    "SeriesInfo",
    "Volume",
    "from_itk",
    "list_dicom_series",
    "read_image",
    "read_mask",
    "to_itk",
    "write_image",
]

log = logging.getLogger(__name__)

#: File suffixes read_image accepts (besides DICOM folders and suffix-less DICOM files).
READ_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
#: File suffixes write_image writes; each is one self-contained file, so it can be
#: written atomically (.nhdr and .mhd would leave a separate data file).
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")

#: Two slice steps differing by less than this fraction of the mean step are "even".
SLICE_SPACING_RTOL = 1e-4
#: Slices of one series whose direction cosines differ by less than this share an orientation.
ORIENTATION_ATOL = 1e-4
#: A series is tilted when a slice lies off the line through the first slice along the
#: slice normal by more than this angle (radians, about 0.06 degrees) ...
TILT_MAX_ANGLE = 1e-3
#: ... and by more than this fraction of the in-plane pixel size. The second bound keeps
#: positions rounded to 0.01 mm in the DICOM header from counting as a tilt.
TILT_MAX_PIXEL_FRACTION = 0.02

Triple = Tuple[float, float, float]
_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
T = TypeVar("T")


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume: size, spacing, origin and direction.

    Build one for a numpy array with ``Geometry(array.shape, spacing=(sz, sy, sx),
    origin=(x0, y0, z0), direction=D)``; spacing defaults to 1 mm, origin to 0 and
    direction to the identity. Lists and arrays are accepted and stored as tuples.

    Attributes
    ----------
    shape : (int, int, int)
        Array shape, (z, y, x).
    spacing : (float, float, float)
        Voxel size in mm, in array order (z, y, x); ITK's ``GetSpacing()`` reversed.
    origin : (float, float, float)
        Physical (x, y, z) position in mm of the centre of voxel index 0 (ITK, LPS).
    direction : 3 x 3 tuple
        ITK's direction matrix, rows as ITK gives them; column j is the physical
        direction of ITK axis j (j = 0 is array axis x).
    """

    shape: Tuple[int, int, int]
    spacing: Triple = (1.0, 1.0, 1.0)
    origin: Triple = (0.0, 0.0, 0.0)
    direction: Tuple[Triple, Triple, Triple] = _IDENTITY

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if len(shape) != 3 or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(f"shape must be 3 positive integers (z, y, x), got {self.shape!r}")
        spacing = _floats(self.spacing, "spacing")
        if not all(s > 0 for s in spacing):
            raise ValueError(f"spacing must be positive (mm, order z, y, x), got {self.spacing!r}")
        origin = _floats(self.origin, "origin")
        d = np.asarray(self.direction, dtype=float)
        if d.shape != (3, 3) or not np.isfinite(d).all():
            raise ValueError(f"direction must be a finite 3 x 3 matrix, got {self.direction!r}")
        if abs(np.linalg.det(d)) < 1e-6:
            raise ValueError(f"direction must be invertible, got {d.tolist()}")
        # frozen: normalise through object.__setattr__ so equality compares plain tuples
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in d))

    def _index_matrix(self) -> np.ndarray:
        """Columns: the physical step of one voxel along ITK axes x, y, z."""
        return np.asarray(self.direction) * np.asarray(self.spacing[::-1])

    def index_to_physical(self, zyx: npt.ArrayLike) -> np.ndarray:
        """Physical (x, y, z) mm of array indices (z, y, x), continuous or integer.

        Parameters
        ----------
        zyx : (..., 3) array_like
            Indices in array order.

        Returns
        -------
        (..., 3) float64 array
            Physical points (x, y, z), as ITK's ``TransformIndexToPhysicalPoint``.
        """
        idx = _last_axis3(zyx, "zyx")
        return np.asarray(self.origin) + idx[..., ::-1] @ self._index_matrix().T

    def physical_to_index(self, xyz: npt.ArrayLike) -> np.ndarray:
        """Continuous array indices (z, y, x) of physical points (x, y, z) mm.

        The inverse of :meth:`index_to_physical`; round to get the nearest voxel.
        """
        p = _last_axis3(xyz, "xyz")
        ijk = (p - np.asarray(self.origin)) @ np.linalg.inv(self._index_matrix()).T
        return ijk[..., ::-1]

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(abs(np.linalg.det(self._index_matrix())))

    def matches(self, other: Geometry, *, rtol: float = 1e-4, atol: float = 1e-3) -> bool:
        """Whether ``other`` is the same grid within tolerance.

        Same shape; spacing equal within ``rtol`` (relative); origin within ``atol`` mm;
        direction cosines within ``rtol`` (they are unitless, at most 1 in size). The
        defaults absorb the float32 rounding of NIfTI headers and decimal DICOM strings,
        but not a spacing 1% off or a flipped axis.
        """
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=rtol, atol=0.0)
            and np.allclose(self.origin, other.origin, rtol=0.0, atol=atol)
            and np.allclose(self.direction, other.direction, rtol=0.0, atol=rtol)
        )

    def describe(self) -> str:
        """One-line summary for messages, each triple labelled with its axis order."""
        d = np.asarray(self.direction)
        if np.count_nonzero(d - np.diag(np.diag(d))) == 0:
            dtext = "diag(" + ", ".join(f"{v:.6g}" for v in np.diag(d)) + ")"
        else:
            dtext = "[" + ", ".join("[" + ", ".join(f"{v:.6g}" for v in row) + "]" for row in d) + "]"
        return (
            f"shape (z, y, x) {self.shape}, spacing (z, y, x) ({_g(self.spacing)}) mm, "
            f"origin (x, y, z) ({_g(self.origin)}) mm, direction {dtext}"
        )

    def to_dict(self) -> dict:
        """JSON-ready record; ``Geometry(**g.to_dict()) == g``.

        ``shape`` and ``spacing`` are in array order (z, y, x); ``origin`` and
        ``direction`` in ITK's physical (x, y, z).
        """
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(row) for row in self.direction],
        }


def _floats(values: Any, name: str) -> Triple:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be 3 finite numbers, got {values!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _g(values: Any) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def _last_axis3(points: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 coordinates on its last axis, got shape {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Volume:
    """An image as a numpy array in (z, y, x) order with its geometry.

    Attributes
    ----------
    array : ndarray
        The voxels, shape ``geometry.shape``.
    geometry : Geometry
        Where the voxels are.
    source : str or None
        The path it was read from, for messages.
    """

    array: np.ndarray
    geometry: Geometry
    source: Optional[str] = None

    def __post_init__(self) -> None:
        if self.array.shape != self.geometry.shape:
            raise ValueError(
                f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}"
            )


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series in a folder.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID; may be ``""`` when it was anonymised away.
    description : str
        SeriesDescription (0008,103E), ``""`` when absent.
    n_slices : int
        Number of files.
    files : tuple of str
        The files, in GDCM's order (read_image re-sorts them by position).
    """

    uid: str
    description: str
    n_slices: int
    files: Tuple[str, ...]

    def describe(self) -> str:
        desc = repr(self.description) if self.description else "no description"
        return f"series={self.uid!r} ({desc}, {self.n_slices} slices)"


# --------------------------------------------------------------------------- ITK access


@contextlib.contextmanager
def _itk_api() -> Iterator[Any]:
    """Yield the ``itk`` module with the warnings its SWIG modules emit silenced.

    ITK loads a SWIG module at the first use of a class, not at ``import itk``, and each
    load emits a DeprecationWarning; under ``-W error`` that becomes an exception inside
    SWIG's type setup and the interpreter segfaults. So every ITK call runs in this
    block, not just the import. Only that one message is ignored.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"builtin type .* has no __module__ attribute", category=DeprecationWarning
        )
        import itk

        yield itk


_ITK_LOCATION = re.compile(r"^\S+\.(cxx|hxx|h|cpp):\d+:?$")
_ITK_PREFIX = re.compile(r"^(itk::ERROR|ITK ERROR|itk::ExceptionObject)[:\s]*(\w+\(0x[0-9a-fA-F]+\):\s*)?")


def _itk_cause(exc: BaseException) -> str:
    """The last informative line of an ITK exception, without source paths and addresses."""
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not _ITK_LOCATION.match(line):
            lines.append(_ITK_PREFIX.sub("", line))
    return lines[-1] if lines else type(exc).__name__


def _run(step: Callable[[], T], what: str) -> T:
    """Run an ITK step; its RuntimeError becomes an OSError with a one-line cause."""
    try:
        return step()
    except RuntimeError as exc:
        raise OSError(f"{what}: {_itk_cause(exc)}") from None


# ITK component type -> (wrapped ITK pixel type, numpy dtype to restore or None).
# Types ITK Python does not wrap are read through a wider type, losslessly.
_PIXEL = {
    "unsigned_char": ("UC", None),
    "char": ("SS", np.int8),
    "unsigned_short": ("US", None),
    "short": ("SS", None),
    "unsigned_int": ("UI", None),
    "int": ("SI", None),
    "unsigned_long": ("ULL", None),
    "unsigned_long_long": ("ULL", None),
    "long": ("D", np.int64),
    "long_long": ("D", np.int64),
    "float": ("F", None),
    "double": ("D", None),
}
# numpy dtypes without an ITK Python image type, widened losslessly on the way in
_WIDEN = {np.dtype(np.bool_): np.uint8, np.dtype(np.int8): np.int16, np.dtype(np.float16): np.float32}


def to_itk(array: npt.ArrayLike, geometry: Geometry) -> "itk.Image":
    """A new ``itk.Image`` holding a copy of ``array`` with ``geometry``.

    Parameters
    ----------
    array : (Z, Y, X) array
        uint8, uint16, int16, uint32, int32, uint64, float32 or float64; bool, int8 and
        float16 are widened, int64 is stored as int32 when its values fit.
    geometry : Geometry
        Its ``shape`` must equal ``array.shape``.
    """
    arr = np.asarray(array)
    if arr.shape != geometry.shape:
        raise ValueError(f"array shape {arr.shape} does not match geometry shape {geometry.shape}")
    if arr.dtype in _WIDEN:
        arr = arr.astype(_WIDEN[arr.dtype])
    elif arr.dtype == np.int64:
        info = np.iinfo(np.int32)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise TypeError(
                "array is int64 with values outside the int32 range, and ITK Python has no "
                "64-bit signed image type; convert it explicitly (e.g. to float64)"
            )
        arr = arr.astype(np.int32)
    with _itk_api() as itk:
        try:
            image = itk.image_from_array(np.ascontiguousarray(arr))
        except (KeyError, TypeError):  # no wrapped ITK type for this dtype
            raise TypeError(f"array dtype {arr.dtype} has no ITK image type") from None
        image.SetSpacing(list(geometry.spacing[::-1]))
        image.SetOrigin(list(geometry.origin))
        image.SetDirection(itk.matrix_from_array(np.array(geometry.direction)))
    return image


def from_itk(image: "itk.Image") -> Volume:
    """A :class:`Volume` holding a copy of an ``itk.Image``'s voxels and its geometry.

    A 2-D image becomes one slice, shape (1, y, x), with z spacing 1 mm; 4-D images
    and images with several components per voxel are refused.
    """
    if not (hasattr(image, "GetSpacing") and hasattr(image, "GetImageDimension")):
        raise TypeError(f"expected an itk.Image, got {type(image).__name__}")
    with _itk_api() as itk:
        return _volume_from_itk(itk, image, None)


def _volume_from_itk(itk: Any, image: Any, source: Optional[str]) -> Volume:
    name = source or "itk.Image"
    ndim = image.GetImageDimension()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "entropymap needs a scalar (grey-level) image: extract one channel first"
        )
    if ndim not in (2, 3):
        raise ValueError(f"{name} is a {ndim}-D image; entropymap needs a 3-D volume")
    array = itk.array_from_image(image)  # a copy, (z, y, x)
    spacing = [float(v) for v in image.GetSpacing()]
    d = itk.array_from_matrix(image.GetDirection())
    index = list(image.GetBufferedRegion().GetIndex())
    # The buffer may start at a non-zero index (ITK crops keep their index); our index 0
    # is the first buffered voxel, so move the origin there.
    first = image.TransformIndexToPhysicalPoint(index) if any(index) else image.GetOrigin()
    origin = [float(v) for v in first]
    if ndim == 2:
        array = array[np.newaxis]
        spacing, origin = spacing + [1.0], origin + [0.0]
        d = np.block([[d, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]])
        log.info("%s is 2-D; read as one slice, shape %s", name, array.shape)
    geometry = Geometry(array.shape, spacing=spacing[::-1], origin=origin, direction=d)
    return Volume(array, geometry, source)


# --------------------------------------------------------------------------- reading


def read_image(
    path: Union[str, os.PathLike],
    *,
    series: Optional[str] = None,
    allow_uneven_spacing: bool = False,
) -> Volume:
    """Read a 3-D image file or a DICOM series folder with ITK.

    Parameters
    ----------
    path : str or Path
        A file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, or a single DICOM file, with
        or without the .dcm suffix) or a folder holding one DICOM series.
    series : str, optional
        For a folder with several series: the SeriesInstanceUID to read, exactly as
        :func:`list_dicom_series` lists it. An anonymised, empty UID is chosen with
        ``series=""``.
    allow_uneven_spacing : bool
        Read a DICOM series whose slice spacing is uneven (a missing slice, for
        example) with the mean spacing instead of refusing it.

    Returns
    -------
    Volume
        The voxels as stored, with rescale slope and intercept applied (NIfTI
        ``scl_slope``, DICOM RescaleSlope): float32 where a slope or intercept is
        fractional, otherwise the smallest type ITK chooses. Spacing, origin and
        direction are ITK's, unchanged.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        An unsupported suffix, a 4-D image or a vector image; a DICOM folder with no
        series or several (and no ``series``); a DICOM series with uneven spacing,
        a gantry tilt, or slices that do not stack.
    OSError
        ITK cannot read the file (the message holds ITK's one-line cause).

    Notes
    -----
    A 2-D image is read as one slice, shape (1, y, x), with z spacing 1 mm. A 4-D
    file whose extra axes have size 1 is read as 3-D.

    DICOM slices are sorted by their position along the slice normal (never by file
    name) and checked: same size, orientation and pixel spacing; no two at one position;
    every slice on the line along the normal through the first (else: a gantry tilt,
    refused); even steps within a relative 1e-4 (else refused, unless
    ``allow_uneven_spacing``).

    ITK 5's NIfTI reader (nifticlib) turns NaN and infinite voxels into 0; NRRD and
    MetaImage keep them.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image not found: {p}")
    with _itk_api() as itk:
        if p.is_dir():
            return _read_dicom_folder(itk, p, series, allow_uneven_spacing)
        if series is not None:
            raise ValueError(f"series= applies to DICOM folders, but {p} is a file")
        if _suffix(p, READ_SUFFIXES) is None and not _is_dicom(p):
            raise ValueError(
                f"unsupported image format: {p}. entropymap reads {', '.join(READ_SUFFIXES)} "
                "files and folders of DICOM files"
            )
        return _read_file(itk, p)


def _suffix(path: Path, suffixes: Tuple[str, ...]) -> Optional[str]:
    name = path.name.lower()
    return next((s for s in suffixes if name.endswith(s)), None)


def _is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble, whatever their name."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _check_nifti_complete(path: Path, what: str) -> None:
    """Raise OSError unless a NIfTI-1/2 file holds its whole voxel block.

    ITK's NIfTI reader fills a truncated file's missing voxels with 0 and its writer
    reports a short write only on stderr, so both would pass silently.
    """
    import gzip
    import struct
    import zlib

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(544)
            if len(head) >= 348 and struct.unpack("<i", head[:4])[0] in (348, 540):
                endian = "<"
            elif len(head) >= 348 and struct.unpack(">i", head[:4])[0] in (348, 540):
                endian = ">"
            else:
                raise OSError(f"{what}: not a complete NIfTI header")
            if struct.unpack(endian + "i", head[:4])[0] == 348:
                dims = struct.unpack(endian + "8h", head[40:56])
                bitpix = struct.unpack(endian + "h", head[72:74])[0]
                offset = int(struct.unpack(endian + "f", head[108:112])[0])
            else:  # NIfTI-2
                dims = struct.unpack(endian + "8q", head[16:80])
                bitpix = struct.unpack(endian + "h", head[14:16])[0]
                offset = int(struct.unpack(endian + "q", head[168:176])[0])
            n = 1
            for d in dims[1 : 1 + max(1, min(int(dims[0]), 7))]:
                n *= max(int(d), 1)
            need = offset + n * bitpix // 8
            have = len(head)
            while True:  # reading to the end also checks a gzip file's CRC and length
                chunk = fh.read(1 << 22)
                if not chunk:
                    break
                have += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise OSError(f"{what}: the file is truncated or damaged ({exc})") from None
    if have < need:
        raise OSError(f"{what}: the file is truncated ({have} of {need} bytes)")


def _read_file(itk: Any, path: Path) -> Volume:
    io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise OSError(f"cannot read image {path}: no ITK reader recognises its content (damaged file?)")
    io.SetFileName(str(path))
    _run(io.ReadImageInformation, f"cannot read image {path}")
    if path.name.endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path, f"cannot read image {path}")
    size = [io.GetDimensions(i) for i in range(io.GetNumberOfDimensions())]
    while len(size) > 3 and size[-1] == 1:
        size.pop()  # a 3-D volume stored with trailing axes of size 1
    if len(size) not in (2, 3):
        raise ValueError(
            f"{path} is a {len(size)}-D image (size {' x '.join(map(str, size))}, ITK order x, y, ...); "
            "entropymap needs a 3-D volume: extract one 3-D volume first"
        )
    if io.GetNumberOfComponents() != 1:
        raise ValueError(
            f"{path} has {io.GetNumberOfComponents()} components per voxel; entropymap needs a "
            "scalar (grey-level) image: extract one channel first"
        )
    component = io.GetComponentTypeAsString(io.GetComponentType())
    if component not in _PIXEL:
        raise ValueError(f"{path} has voxel type {component!r}, which entropymap cannot read")
    pixel, restore = _PIXEL[component]
    image_type = itk.Image[getattr(itk, pixel), len(size)]
    reader = itk.ImageFileReader[image_type].New(FileName=str(path), ImageIO=io)
    _run(reader.Update, f"cannot read image {path}")
    vol = _volume_from_itk(itk, reader.GetOutput(), str(path))
    if restore is not None:
        vol = Volume(vol.array.astype(restore), vol.geometry, vol.source)
    log.info("read %s: %s, %s", path, vol.array.dtype, vol.geometry.describe())
    return vol


# --------------------------------------------------------------------------- DICOM


def list_dicom_series(folder: Union[str, os.PathLike]) -> list[SeriesInfo]:
    """The DICOM series in a folder (not its subfolders), as GDCM groups them.

    Files are grouped by SeriesInstanceUID only, so the UIDs are the ones a PACS or
    viewer shows; an anonymised, empty UID is listed as ``""``.
    """
    p = Path(folder)
    if not p.is_dir():
        raise (NotADirectoryError if p.exists() else FileNotFoundError)(f"DICOM folder not found: {p}")
    with _itk_api() as itk:
        return _list_series(itk, p)


def _list_series(itk: Any, folder: Path) -> list[SeriesInfo]:
    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(False)  # group by UID alone; read_image checks the rest
    names.SetDirectory(str(folder))
    out = []
    for uid in names.GetSeriesUIDs():
        files = tuple(names.GetFileNames(uid))
        io = _dicom_io(itk, files[0])
        out.append(SeriesInfo(uid, _tag(io, "0008|103e"), len(files), files))
    return out


def _dicom_io(itk: Any, path: str) -> Any:
    io = itk.GDCMImageIO.New()
    io.SetFileName(path)
    _run(io.ReadImageInformation, f"cannot read DICOM file {path}")
    return io


def _tag(io: Any, key: str) -> str:
    md = io.GetMetaDataDictionary()
    return str(md[key]).strip(" \x00") if md.HasKey(key) else ""


def _read_dicom_folder(itk: Any, folder: Path, series: Optional[str], allow_uneven: bool) -> Volume:
    infos = _list_series(itk, folder)
    if not infos:
        raise ValueError(f"no DICOM series found in folder {folder} (files are not read from subfolders)")
    listing = "\n".join("  " + i.describe() for i in infos)
    if series is None:
        if len(infos) > 1:
            raise ValueError(
                f"DICOM folder {folder} holds {len(infos)} series; choose one with series=<UID> "
                f"(CLI --series <UID>; an empty UID is series='' / --series ''):\n{listing}"
            )
        info = infos[0]
    else:
        matching = [i for i in infos if i.uid == series]
        if not matching:
            raise ValueError(f"DICOM folder {folder} has no series with UID {series!r}; it holds:\n{listing}")
        info = matching[0]
    if info.n_slices == 1:
        return _read_file(itk, Path(info.files[0]))  # one file, possibly multi-frame
    return _read_series(itk, folder, info, allow_uneven)


def _read_series(itk: Any, folder: Path, info: SeriesInfo, allow_uneven: bool) -> Volume:
    what = f"DICOM series {info.uid!r} in {folder}"
    ios = [_dicom_io(itk, f) for f in info.files]
    if any(io.GetDimensions(2) > 1 for io in ios):
        raise ValueError(f"{what} mixes multi-frame files with other files; read each file on its own")
    size = {(io.GetDimensions(0), io.GetDimensions(1)) for io in ios}
    axes = np.array([[[io.GetDirection(j)[i] for i in range(3)] for j in (0, 1)] for io in ios])
    pixel = np.array([[io.GetSpacing(0), io.GetSpacing(1)] for io in ios])
    if (
        len(size) > 1
        or np.abs(axes - axes[0]).max() > ORIENTATION_ATOL
        or not np.allclose(pixel, pixel[0], rtol=SLICE_SPACING_RTOL)
    ):
        raise ValueError(
            f"{what}: its slices differ in size, orientation or pixel spacing, so they are not one "
            "volume (e.g. a localizer among the axial slices). Move the slices of one volume into "
            "a folder of their own."
        )
    positions = np.array([[io.GetOrigin(i) for i in range(3)] for io in ios])
    order = _stack_order(what, positions, axes[0], pixel[0].min(), allow_uneven)
    files = [info.files[i] for i in order]

    slopes = np.array([[io.GetRescaleSlope(), io.GetRescaleIntercept()] for io in ios])
    kinds = {io.GetComponentTypeAsString(io.GetComponentType()) for io in ios}
    if not np.all(slopes == np.round(slopes)):
        pixel_type = "F"  # a fractional slope or intercept on any slice
    elif len(kinds) > 1 or np.any(slopes != slopes[0]):
        pixel_type = "SI"  # integer rescale that differs per slice: int32 holds them all
    else:
        pixel_type = _PIXEL[kinds.pop()][0]
    reader = itk.ImageSeriesReader[itk.Image[getattr(itk, pixel_type), 3]].New(
        FileNames=files, ImageIO=itk.GDCMImageIO.New()
    )
    # ITK prints its own "non uniform sampling" warning to stderr; _stack_order has
    # already refused or logged that case, so silence the duplicate while reading.
    shown = itk.Object.GetGlobalWarningDisplay()
    itk.Object.SetGlobalWarningDisplay(False)
    try:
        _run(reader.Update, f"cannot read {what}")
    finally:
        itk.Object.SetGlobalWarningDisplay(shown)
    vol = _volume_from_itk(itk, reader.GetOutput(), str(folder))
    log.info("read %s: %d slices, %s, %s", what, len(files), vol.array.dtype, vol.geometry.describe())
    return vol


def _stack_order(
    what: str, positions: np.ndarray, axes: np.ndarray, pixel: float, allow_uneven: bool
) -> np.ndarray:
    """Sort slices along the normal and check that they stack into a regular grid.

    ``positions`` are the ImagePositionPatient of each file, ``axes`` the row and
    column directions; returns the indices of the files in stacking order.
    """
    normal = np.cross(axes[0], axes[1])
    normal /= np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    s, p = along[order], positions[order]
    extent = s[-1] - s[0]
    steps = np.diff(s)
    mean = extent / (len(s) - 1)
    if extent <= 0 or steps.min() < SLICE_SPACING_RTOL * mean:
        at = s[int(np.argmin(steps))]
        raise ValueError(
            f"{what}: several slices lie at the same position ({at:.6g} mm along the normal), so "
            "the series holds more than one stack (repeated acquisition, echoes or time points). "
            "Put the files of each stack in their own folder."
        )
    off_line = np.linalg.norm((p - p[0]) - np.outer(s - s[0], normal), axis=1).max()
    if off_line > max(TILT_MAX_ANGLE * extent, TILT_MAX_PIXEL_FRACTION * pixel):
        angle = np.degrees(np.arctan2(np.linalg.norm((p[-1] - p[0]) - extent * normal), extent))
        raise ValueError(
            f"{what} has a gantry tilt: its slices are not stacked along their normal (about "
            f"{angle:.3g} degrees off; a slice lies {off_line:.3g} mm off the line). Read as is it "
            "would be a sheared volume. Convert it with a tool that corrects the tilt (e.g. "
            "dcm2niix, or 3D Slicer with acquisition geometry regularization) and read the result."
        )
    deviation = np.abs(steps - mean).max()
    if deviation > SLICE_SPACING_RTOL * mean:
        gaps = [i for i in range(len(steps)) if steps[i] > 1.5 * steps.min()]
        if gaps:
            i = gaps[0]
            missing = int(round(steps[i] / steps.min())) - 1
            cause = (
                f"{len(gaps)} gap(s), the first between slices at {s[i]:.6g} and {s[i + 1]:.6g} mm "
                f"along the normal (about {missing} missing slice(s) of {steps.min():.6g} mm)"
            )
        else:
            cause = f"steps range from {steps.min():.6g} to {steps.max():.6g} mm"
        misplaced = np.abs(s - (s[0] + mean * np.arange(len(s)))).max()
        problem = f"{what} has uneven slice spacing: {cause}"
        effect = f"with the mean spacing {mean:.6g} mm, slices are up to {misplaced:.3g} mm off their position"
        if not allow_uneven:
            raise ValueError(
                f"{problem}. Pass allow_uneven_spacing=True (CLI --allow-uneven-spacing) to read it "
                f"anyway: {effect}."
            )
        log.warning("%s; reading it as asked: %s", problem, effect)
    return order


# --------------------------------------------------------------------------- masks


def read_mask(
    path_or_array: Union[str, os.PathLike, npt.ArrayLike, Volume],
    reference: Geometry,
    *,
    label: Optional[int] = None,
    resample: bool = False,
) -> np.ndarray:
    """A boolean mask on the reference grid from a label image.

    Parameters
    ----------
    path_or_array : path, Volume or (Z, Y, X) array
        Any integer or float label image (0/1, 0/255, 0.0/1.0, multi-label). A numpy
        array carries no geometry, so it must already have ``reference.shape``.
    reference : Geometry
        The image grid the mask must lie on.
    label : int, optional
        Keep the voxels equal to this value; default: every non-zero voxel.
    resample : bool
        If the mask is on another grid, resample it onto the reference grid by
        physical position, nearest neighbour (ITK ``ResampleImageFilter``); voxels
        outside the mask's extent become False. Without it such a mask is refused.

    Returns
    -------
    (Z, Y, X) bool array
        On ``reference``'s grid.

    Raises
    ------
    ValueError
        The mask is on another grid (and ``resample`` is False), an array mask has the
        wrong shape, the mask holds NaN, or the selection is empty; the message names
        the source and lists the labels it does contain.

    Notes
    -----
    "Same grid" is :meth:`Geometry.matches` with its default tolerances: same shape,
    spacing within a relative 1e-4, origin within 1e-3 mm, direction cosines within
    1e-4. Within those, the mask is taken as lying on the reference grid as it is.
    """
    if not isinstance(reference, Geometry):
        raise TypeError(f"reference must be the image's Geometry (e.g. read_image(...).geometry), "
                        f"got {type(reference).__name__}")
    if isinstance(path_or_array, Volume):
        vol = path_or_array
    elif isinstance(path_or_array, (str, os.PathLike)):
        vol = read_image(path_or_array)
    else:
        arr = np.asarray(path_or_array)
        if arr.shape != reference.shape:
            raise ValueError(
                f"mask shape {arr.shape} does not match image shape {reference.shape}; a mask given "
                "as an array has no geometry, so it must be on the image grid (give a file or a "
                "Volume to have it checked and resampled)"
            )
        vol = Volume(arr, reference, None)
    name = f"mask {vol.source}" if vol.source else "mask"
    selected = _select(vol.array, label, name)
    if vol.geometry.matches(reference):
        return selected
    if not resample:
        raise ValueError(
            f"{name} is not on the image grid:\n  image: {reference.describe()}\n  mask:  "
            f"{vol.geometry.describe()}\nResample it onto the image grid by physical position "
            "(nearest neighbour) with read_mask(..., resample=True) or the CLI option --resample-masks."
        )
    out = _resample_nearest(selected, vol.geometry, reference)
    if not out.any():
        raise ValueError(
            f"{name} selects no voxel of the image after resampling: it does not overlap the image\n"
            f"  image: {reference.describe()}\n  mask:  {vol.geometry.describe()}"
        )
    log.info("%s resampled onto the image grid: %d -> %d voxels", name, selected.sum(), out.sum())
    return out


def _select(values: np.ndarray, label: Optional[int], name: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {values.dtype}; a mask must hold numbers")
    if values.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(values)))
        if n_nan:
            raise ValueError(f"{name} holds {n_nan} NaN voxel(s); a mask holds labels: replace NaN with 0")
    if label is None:
        selected = values != 0
        if not selected.any():
            raise ValueError(f"{name} is empty: every voxel is 0")
        return selected
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"label must be an integer, got {label!r}")
    selected = values == label
    if not selected.any():
        present = np.unique(values)
        present = present[present != 0]
        shown = ", ".join(f"{v:g}" for v in present[:20]) + (", ..." if present.size > 20 else "")
        contains = f"its non-zero labels are {shown}" if present.size else "every voxel is 0"
        raise ValueError(f"{name} has no voxel with label {label}; {contains}")
    return selected


def _resample_nearest(mask: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    with _itk_api() as itk:
        image = to_itk(mask.view(np.uint8), source)
        image_type = type(image)
        f = itk.ResampleImageFilter[image_type, image_type].New(Input=image)
        f.SetInterpolator(itk.NearestNeighborInterpolateImageFunction[image_type, itk.D].New())
        f.SetDefaultPixelValue(0)
        f.SetSize([int(n) for n in target.shape[::-1]])
        f.SetOutputSpacing(list(target.spacing[::-1]))
        f.SetOutputOrigin(list(target.origin))
        f.SetOutputDirection(itk.matrix_from_array(np.array(target.direction)))
        f.Update()
        return itk.array_from_image(f.GetOutput()) != 0


# --------------------------------------------------------------------------- writing


def write_image(
    path: Union[str, os.PathLike],
    array: npt.ArrayLike,
    geometry: Geometry,
    *,
    overwrite: bool = False,
) -> Path:
    """Write an array with its geometry, atomically, in the format its suffix names.

    Parameters
    ----------
    path : str or Path
        Ends in .nii.gz, .nii, .nrrd or .mha. The folder must exist.
    array : (Z, Y, X) array
        Float arrays (maps) are written as float32, with no integer scaling, so NaN
        stays NaN in the file. uint8 and int16 (label maps) are kept, bool becomes
        uint8; other dtypes are refused rather than cast.
    geometry : Geometry
        Written exactly (NIfTI stores it in float32, so it comes back rounded to
        about 1e-7 relative there).
    overwrite : bool
        Replace an existing file; without it an existing file is an error.

    Returns
    -------
    Path
        The path written.

    Notes
    -----
    The image is written to a hidden temporary file in the same folder and renamed
    over ``path`` with ``os.replace``, so a reader never sees a half-written file.
    The array is not modified. NaN is written to NIfTI files too, but ITK 5's NIfTI
    reader (and viewers built on it) reads it as 0; NRRD and MetaImage keep it.
    """
    p = Path(path)
    if not isinstance(geometry, Geometry):
        raise TypeError(f"cannot write {p}: geometry must be a Geometry (e.g. the CT's read_image(...).geometry), "
                        f"got {type(geometry).__name__}")
    suffix = _suffix(p, WRITE_SUFFIXES)
    if suffix is None:
        raise ValueError(f"cannot write {p}: the suffix must be one of {', '.join(WRITE_SUFFIXES)}")
    arr = np.asarray(array)
    if arr.shape != geometry.shape:
        raise ValueError(f"array shape {arr.shape} does not match geometry shape {geometry.shape}")
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype not in (np.dtype(np.uint8), np.dtype(np.int16)):
        raise TypeError(
            f"cannot write an array of dtype {arr.dtype}: maps are written as float32 and label "
            "maps as uint8 or int16; convert it explicitly, e.g. array.astype(np.float32) or "
            "array.astype(np.int16) if its values fit"
        )
    if not p.parent.is_dir():
        raise FileNotFoundError(f"cannot write {p}: folder {p.parent} does not exist")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} already exists; pass overwrite=True (CLI --overwrite) to replace it")
    image = to_itk(arr, geometry)
    # Same folder, so the rename is atomic; same suffix, so ITK picks the same format.
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp{suffix}")
    try:
        with _itk_api() as itk:
            _run(lambda: itk.imwrite(image, str(tmp), compression=suffix != ".nii"), f"cannot write {p}")
        if suffix in (".nii", ".nii.gz"):
            # ITK's NIfTI writer reports a short write (full disk, quota) only on stderr.
            _check_nifti_complete(tmp, f"cannot write {p}")
        if p.exists() and not overwrite:  # created while we wrote
            raise FileExistsError(f"{p} already exists; pass overwrite=True (CLI --overwrite) to replace it")
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("wrote %s: %s, %s", p, arr.dtype, geometry.describe())
    return p
