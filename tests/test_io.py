"""entropymap.io and entropymap.itk_filter on the real images and on images built here,
checked against what ITK itself reports and against hand computations."""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import entropymap as em
from conftest import itk_array
from entropymap.discretization import discretize
from entropymap.io import Geometry, Volume

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # SWIG import warnings
    import itk

TOTALSEG_DICOM = "totalsegmentator/example_ct_dicom"
DCMQI_DICOM = "dcmqi_ct3slice/ct-3slice"


# ----------------------------------------------------------------------------- helpers


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation matrix from three angles in degrees (z @ y @ x)."""
    cx, sx = math.cos(math.radians(ax)), math.sin(math.radians(ax))
    cy, sy = math.cos(math.radians(ay)), math.sin(math.radians(ay))
    cz, sz = math.cos(math.radians(az)), math.sin(math.radians(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


OBLIQUE = Geometry(
    (6, 7, 8), spacing=(5.0, 0.8, 0.7), origin=(-12.3, 45.6, -789.01), direction=rotation(20, -35, 10)
)


def assert_matches_itk(vol: Volume, image) -> None:
    """Size, spacing, origin, direction and voxels exactly as ITK reports them."""
    size = tuple(int(n) for n in image.GetLargestPossibleRegion().GetSize())
    assert vol.array.shape == size[::-1]
    assert vol.geometry.spacing == tuple(image.GetSpacing())[::-1]
    assert vol.geometry.origin == tuple(image.GetOrigin())
    direction = itk.array_from_matrix(image.GetDirection())
    np.testing.assert_array_equal(np.array(vol.geometry.direction), direction)
    want = itk.array_from_image(image)
    assert vol.array.dtype == want.dtype
    np.testing.assert_array_equal(vol.array, want)


def dicom_slices(folder: Path) -> list[tuple[float, Path]]:
    """(z position as ITK reads it from the file, file) for each slice, sorted by z."""
    return sorted((float(itk.imread(str(f)).GetOrigin()[2]), f) for f in folder.iterdir())


def dicom_tag(path: Path, key: str) -> str:
    image = itk.imread(str(path))  # keep the image alive while its dictionary is read
    return str(image.GetMetaDataDictionary()[key]).strip(" \x00")


def link_folder(dst: Path, files) -> Path:
    dst.mkdir()
    for f in files:
        (dst / f.name).symlink_to(f)
    return dst


def patch_element(data: bytes, group: int, element: int, value: str) -> bytes:
    """Replace one top-level element of an implicit-VR little-endian DICOM file."""
    assert b"1.2.840.10008.1.2\x00" in data[:512], "helper needs Implicit VR Little Endian"
    start = data.index(struct.pack("<HH", group, element), 132)
    assert start < data.index(struct.pack("<HH", 0x7FE0, 0x0010))
    (length,) = struct.unpack_from("<I", data, start + 4)
    raw = value.encode()
    raw += b" " * (len(raw) % 2)
    return data[: start + 4] + struct.pack("<I", len(raw)) + raw + data[start + 8 + length :]


def patched_dcmqi(data_dir: Path, dst: Path, edit) -> Path:
    """A copy of the 3-slice series; ``edit(position, data)`` may rewrite each file."""
    dst.mkdir()
    for f in sorted((data_dir / DCMQI_DICOM).iterdir()):
        origin = np.array(itk.imread(str(f)).GetOrigin())
        (dst / f.name).write_bytes(edit(origin, f.read_bytes()))
    return dst


def set_position(data: bytes, xyz) -> bytes:
    return patch_element(data, 0x0020, 0x0032, "\\".join(f"{v:.6f}" for v in xyz))


def write_nrrd(path: Path, sizes, nrrd_type: str, data: np.ndarray, extra: str = "") -> Path:
    header = (
        f"NRRD0004\ntype: {nrrd_type}\ndimension: {len(sizes)}\nsizes: {' '.join(map(str, sizes))}\n"
        f"encoding: raw\nendian: little\n{extra}\n"
    )
    path.write_bytes(header.encode() + data.tobytes())
    return path


def nifti_raw(path: Path) -> tuple[np.ndarray, float, float]:
    """The float32 voxels of a NIfTI-1 file as stored, with scl_slope and scl_inter."""
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    (datatype,) = struct.unpack_from("<h", data, 70)
    assert datatype == 16  # NIFTI_TYPE_FLOAT32
    (offset,) = struct.unpack_from("<f", data, 108)
    slope, inter = struct.unpack_from("<ff", data, 112)
    return np.frombuffer(data[int(offset) :], dtype="<f4"), slope, inter


# ----------------------------------------------------------------------------- geometry


def test_import_does_not_load_itk():
    code = "import sys, entropymap; print('itk' in sys.modules)"
    cmd = [sys.executable, "-W", "error", "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_itk_runs_under_warnings_as_errors(tmp_path):
    # ITK loads its SWIG modules lazily, at first use; outside pytest's warning filter a
    # load under -W error would crash the interpreter, so run a fresh one.
    code = f"""
import numpy as np, entropymap as em
g = em.Geometry((3, 4, 5), spacing=(2, 1, 1))
p = em.write_image({str(tmp_path / "a.nrrd")!r}, np.arange(60.0).reshape(g.shape), g)
v = em.read_image(p)
m = em.read_mask(em.Volume(v.array[:2] > 0, em.Geometry((2, 4, 5), spacing=(2, 1, 1))), g, resample=True)
em.local_entropy_image(em.io.to_itk(v.array, g), kernel=3, mask=em.io.to_itk(m, g))
assert em.list_dicom_series({str(tmp_path)!r}) == []
print("ok")
"""
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_geometry_index_physical_agrees_with_itk(rng):
    image = em.io.to_itk(np.zeros(OBLIQUE.shape, np.float32), OBLIQUE)
    assert tuple(image.GetSpacing()) == (0.7, 0.8, 5.0)  # ITK order x, y, z
    zyx = np.column_stack([rng.integers(0, n, 20) for n in OBLIQUE.shape])
    got = OBLIQUE.index_to_physical(zyx)
    for (z, y, x), p in zip(zyx, got):
        itk_point = image.TransformIndexToPhysicalPoint([int(x), int(y), int(z)])
        np.testing.assert_allclose(p, itk_point, atol=1e-9)
        cont = image.TransformPhysicalPointToContinuousIndex(itk.Point[itk.D, 3](p.tolist()))
        np.testing.assert_allclose(OBLIQUE.physical_to_index(p), [cont[2], cont[1], cont[0]], atol=1e-9)
    np.testing.assert_allclose(OBLIQUE.physical_to_index(got), zyx, atol=1e-9)
    assert OBLIQUE.voxel_volume_mm3 == pytest.approx(0.7 * 0.8 * 5.0)


def test_from_itk_keeps_a_cropped_buffer_in_place(rng):
    arr = rng.normal(size=OBLIQUE.shape).astype(np.float32)
    image = em.io.to_itk(arr, OBLIQUE)
    region = itk.ImageRegion[3]([2, 1, 1], [5, 4, 3])  # index and size, ITK order x, y, z
    crop = itk.ExtractImageFilter[type(image), type(image)].New(Input=image, ExtractionRegion=region)
    crop.Update()
    out = crop.GetOutput()
    assert list(out.GetBufferedRegion().GetIndex()) == [2, 1, 1]  # ITK keeps the index
    vol = em.io.from_itk(out)
    np.testing.assert_array_equal(vol.array, arr[1:4, 1:5, 2:7])
    np.testing.assert_allclose(vol.geometry.index_to_physical((0, 0, 0)), image.TransformIndexToPhysicalPoint([2, 1, 1]))


def test_geometry_defaults_dict_and_tolerances():
    g = Geometry([3, 4, 5], spacing=[2, 1, 1])
    assert g.origin == (0.0, 0.0, 0.0) and g.direction == ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0))
    assert Geometry(**json.loads(json.dumps(OBLIQUE.to_dict()))) == OBLIQUE
    d = OBLIQUE.to_dict()
    near = Geometry(**{**d, "origin": [v + 5e-4 for v in d["origin"]]})
    far = Geometry(**{**d, "origin": [v + 5e-3 for v in d["origin"]]})
    assert OBLIQUE.matches(near) and not OBLIQUE.matches(far)
    assert not OBLIQUE.matches(Geometry(**{**d, "spacing": [5.0, 0.8, 0.707]}))  # 1 % off
    assert not g.matches(Geometry((3, 4, 5), spacing=(2, 1, 1), direction=np.diag([1, -1, 1])))
    assert "(z, y, x) (3, 4, 5)" in g.describe() and "diag(1, 1, 1)" in g.describe()
    for bad in (
        dict(shape=(3, 4)),
        dict(shape=(3, 4, 5), spacing=(1, 0, 1)),
        dict(shape=(3, 4, 5), direction=np.zeros((3, 3))),
    ):
        with pytest.raises(ValueError):
            Geometry(**bad)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "name",
    [
        "lits_117/img_117.nii.gz",
        "lits_117/lab_117.nii.gz",
        "totalsegmentator/example_ct_sm.nii.gz",
        "totalsegmentator/example_seg_dicom.nii.gz",
        "pyradiomics/brain1_image.nrrd",
        "pyradiomics/lung1_label_crop.nrrd",
        "dcmqi_ct3slice/liver_seg.nrrd",
    ],
)
def test_reads_files_as_itk_does(data_dir, name):
    vol = em.read_image(data_dir / name)
    assert_matches_itk(vol, itk.imread(str(data_dir / name)))
    assert vol.source == str(data_dir / name)


@pytest.mark.parametrize("name", [TOTALSEG_DICOM, DCMQI_DICOM])
def test_reads_dicom_series_as_itk_does(data_dir, name):
    folder = data_dir / name
    vol = em.read_image(folder)
    assert_matches_itk(vol, itk.imread(str(folder)))  # ITK's own GDCM series reader
    # every slice where its file says: its voxels, and ImagePositionPatient = index (k, 0, 0)
    for k, (z, f) in enumerate(dicom_slices(folder)):
        one = itk.imread(str(f))
        np.testing.assert_array_equal(vol.array[k], itk.array_from_image(one)[0])
        np.testing.assert_allclose(vol.geometry.index_to_physical((k, 0, 0)), one.GetOrigin(), atol=1e-6)


def test_dicom_rescale_and_jpeg2000(data_dir):
    # JPEG 2000 lossless, stored unsigned 12 bit with intercept -1024: air must be -1024 HU
    ts = em.read_image(data_dir / TOTALSEG_DICOM)
    assert ts.array.dtype == np.int16 and ts.array.min() == -1024
    dq = em.read_image(data_dir / DCMQI_DICOM)
    assert dq.array.min() == -3024  # outside the field of view, after the -1024 intercept
    one = sorted((data_dir / TOTALSEG_DICOM).iterdir())[0]  # no .dcm suffix: found by its DICM tag
    assert_matches_itk(em.read_image(one), itk.imread(str(one)))


def test_dicom_sorted_by_position_not_name(data_dir):
    slices = dicom_slices(data_dir / DCMQI_DICOM)
    names = [f.name for _, f in slices]
    assert names != sorted(names)  # the files are stored in descending z
    vol = em.read_image(data_dir / DCMQI_DICOM)
    assert vol.geometry.origin[2] == slices[0][0]
    assert vol.geometry.spacing[0] == pytest.approx(slices[1][0] - slices[0][0])


def test_dicom_folder_with_two_series(data_dir, tmp_path):
    files = list((data_dir / TOTALSEG_DICOM).iterdir()) + list((data_dir / DCMQI_DICOM).iterdir())
    folder = link_folder(tmp_path / "two", files)
    dcmqi_uid = dicom_tag(data_dir / DCMQI_DICOM / "01.dcm", "0020|000e")
    ts_description = dicom_tag(files[0], "0008|103e")

    infos = {i.uid: i for i in em.list_dicom_series(folder)}
    assert set(infos) == {"", dcmqi_uid}
    assert (infos[""].n_slices, infos[dcmqi_uid].n_slices) == (20, 3)
    assert infos[""].description == ts_description

    with pytest.raises(ValueError) as err:
        em.read_image(folder)
    msg = str(err.value)
    assert "2 series" in msg and "series=" in msg and "--series" in msg
    assert f"series={dcmqi_uid!r}" in msg and "series=''" in msg
    assert "20 slices" in msg and "3 slices" in msg and ts_description in msg

    for uid, name in (("", TOTALSEG_DICOM), (dcmqi_uid, DCMQI_DICOM)):
        np.testing.assert_array_equal(em.read_image(folder, series=uid).array, itk_array(data_dir / name))
    with pytest.raises(ValueError, match="no series with UID '1.2.3'"):
        em.read_image(folder, series="1.2.3")


def test_dicom_missing_slice(data_dir, tmp_path):
    slices = dicom_slices(data_dir / TOTALSEG_DICOM)
    kept = slices[:7] + slices[8:]
    folder = link_folder(tmp_path / "gap", [f for _, f in kept])
    with pytest.raises(ValueError, match="uneven slice spacing.*1 missing slice.*allow_uneven_spacing=True"):
        em.read_image(folder)
    vol = em.read_image(folder, allow_uneven_spacing=True)
    assert vol.array.shape[0] == 19
    assert vol.geometry.spacing[0] == pytest.approx((kept[-1][0] - kept[0][0]) / 18)
    np.testing.assert_array_equal(vol.array[8], itk.array_from_image(itk.imread(str(kept[8][1])))[0])


def test_dicom_spacing_tolerance(data_dir, tmp_path):
    def shift_middle(dz):
        def edit(origin, data):
            return set_position(data, origin + [0, 0, dz]) if abs(origin[2] + 127.69) < 0.01 else data

        return edit

    # 5e-5 mm on 1 mm steps is below the relative 1e-4: not uneven
    assert em.read_image(patched_dcmqi(data_dir, tmp_path / "tiny", shift_middle(5e-5))).array.shape[0] == 3
    with pytest.raises(ValueError, match="uneven slice spacing: steps range from 0.91 to 1.09"):
        em.read_image(patched_dcmqi(data_dir, tmp_path / "uneven", shift_middle(-0.09)))


def test_dicom_gantry_tilt_refused(data_dir, tmp_path):
    z0 = -128.69  # lowest slice of the dcmqi series
    tilt = math.tan(math.radians(10))

    def edit(origin, data):
        return set_position(data, origin + [0, tilt * (origin[2] - z0), 0])  # y shifts with z

    folder = patched_dcmqi(data_dir, tmp_path / "tilt", edit)
    with pytest.raises(ValueError, match=r"gantry tilt.*about 10 degrees") as err:
        em.read_image(folder)
    assert "sheared" in str(err.value)
    # the same rewrite without the shift reads fine, so the refusal is the tilt's
    plain = patched_dcmqi(data_dir, tmp_path / "plain", lambda o, d: set_position(d, o))
    np.testing.assert_array_equal(em.read_image(plain).array, itk_array(data_dir / DCMQI_DICOM))


def test_dicom_fractional_slope_on_one_slice(data_dir, tmp_path):
    def edit(origin, data):
        return patch_element(data, 0x0028, 0x1053, "0.5") if origin[2] > -127 else data

    folder = patched_dcmqi(data_dir, tmp_path / "slope", edit)
    vol = em.read_image(folder)
    assert vol.array.dtype == np.float32
    original = itk_array(data_dir / DCMQI_DICOM)  # slices by ascending z; the patched one is last
    np.testing.assert_array_equal(vol.array[:2], original[:2])
    stored = original[2].astype(np.float64) + 1024  # undo intercept -1024, slope 1
    np.testing.assert_array_equal(vol.array[2], 0.5 * stored - 1024)
    assert np.any(vol.array[2] % 1 == 0.5)


def test_read_errors(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        em.read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image" * 10)
    with pytest.raises(OSError, match="junk.nii.gz"):
        em.read_image(tmp_path / "junk.nii.gz")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"unsupported image format.*\.nii\.gz.*\.nrrd.*\.mha"):
        em.read_image(tmp_path / "picture.png")
    truncated = write_nrrd(tmp_path / "cut.nrrd", [4, 3, 2], "float", np.zeros(20, "<f4"))
    with pytest.raises(OSError) as err:
        em.read_image(truncated)
    msg = str(err.value)
    assert "cut.nrrd" in msg and "\n" not in msg and ".cxx" not in msg and "0x" not in msg
    four = write_nrrd(tmp_path / "t.nrrd", [4, 3, 2, 2], "float", np.zeros(48, "<f4"))
    with pytest.raises(ValueError, match="4-D image"):
        em.read_image(four)
    kinds = "kinds: vector domain domain domain\n"
    vector = write_nrrd(tmp_path / "v.nrrd", [3, 4, 3, 2], "float", np.zeros(72, "<f4"), kinds)
    with pytest.raises(ValueError, match="3 components per voxel"):
        em.read_image(vector)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no DICOM series found in folder"):
        em.read_image(tmp_path / "none")
    with pytest.raises(ValueError, match="series= applies to DICOM folders"):
        em.read_image(data_dir / "dcmqi_ct3slice/liver_seg.nrrd", series="")


def test_read_2d_int8_and_trailing_axis(tmp_path):
    flat = write_nrrd(
        tmp_path / "flat.nrrd", [4, 3], "float", np.arange(12, dtype="<f4"),
        "space dimension: 2\nspace directions: (0.5,0) (0,0.7)\nspace origin: (1,2)\n",
    )
    vol = em.read_image(flat)
    assert vol.array.shape == (1, 3, 4) and vol.geometry.spacing == (1.0, 0.7, 0.5)
    assert vol.geometry.origin == (1.0, 2.0, 0.0)
    np.testing.assert_array_equal(vol.array[0], np.arange(12).reshape(3, 4))
    small = write_nrrd(tmp_path / "i8.nrrd", [4, 3, 2], "int8", np.arange(-12, 12, dtype="i1"))
    vol = em.read_image(small)  # ITK Python has no int8 image: read wider, given back as int8
    assert vol.array.dtype == np.int8
    np.testing.assert_array_equal(vol.array.ravel(), np.arange(-12, 12))
    single = write_nrrd(tmp_path / "t1.nrrd", [4, 3, 2, 1], "float", np.arange(24, dtype="<f4"))
    assert em.read_image(single).array.shape == (2, 3, 4)


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz", ".nii"])
def test_write_read_round_trip_oblique(tmp_path, rng, suffix):
    arr = rng.normal(size=OBLIQUE.shape).astype(np.float32)
    arr[0, 1, 2] = np.nan
    before = arr.copy()
    path = em.write_image(tmp_path / f"map{suffix}", arr, OBLIQUE)
    assert os.listdir(tmp_path) == [path.name]  # the temporary file is gone
    np.testing.assert_array_equal(arr, before)  # input untouched
    back = em.read_image(path)
    image = itk.imread(str(path))
    assert_matches_itk(back, image)
    assert back.array.dtype == np.float32
    zyx = (5, 6, 7)
    p_itk = image.TransformIndexToPhysicalPoint([7, 6, 5])
    if suffix in (".nrrd", ".mha"):
        # MetaImage keeps every bit; NRRD stores direction x spacing, so the last bit may move
        exact = back.geometry == OBLIQUE
        assert exact if suffix == ".mha" else back.geometry.matches(OBLIQUE, rtol=1e-14, atol=1e-12)
        np.testing.assert_array_equal(back.array, arr)  # NaN included
        np.testing.assert_array_equal(back.geometry.index_to_physical(zyx), OBLIQUE.index_to_physical(zyx))
    else:
        # NIfTI stores the geometry in float32; the file holds NaN, but ITK 5 reads it as 0
        assert back.geometry.matches(OBLIQUE, rtol=1e-6, atol=1e-4)
        stored, slope, inter = nifti_raw(path)
        assert (slope, inter) in ((1.0, 0.0), (0.0, 0.0))  # no integer scaling
        np.testing.assert_array_equal(stored, arr.ravel())
        assert back.array[0, 1, 2] == 0
    np.testing.assert_allclose(OBLIQUE.index_to_physical(zyx), tuple(p_itk), atol=1e-4)
    np.testing.assert_allclose(back.geometry.index_to_physical(zyx), tuple(p_itk), atol=1e-9)


def test_write_dtypes_and_refusals(tmp_path):
    g = Geometry((2, 3, 4), spacing=(3, 1, 1))
    labels = np.arange(24, dtype=np.uint8).reshape(g.shape)
    for arr, want in [
        (labels, np.uint8),
        (labels.astype(np.int16) - 5, np.int16),
        (labels > 3, np.uint8),
        (labels / 7, np.float32),
    ]:
        path = em.write_image(tmp_path / f"x{np.dtype(want).name}{arr.dtype}.nrrd", arr, g)
        back = itk_array(path)
        assert back.dtype == want
        np.testing.assert_array_equal(back, arr.astype(want))
    with pytest.raises(TypeError, match="int32.*astype"):
        em.write_image(tmp_path / "i32.nrrd", labels.astype(np.int32), g)
    for bad in ("map.png", "map.nhdr", "map.mhd", "map"):
        with pytest.raises(ValueError, match=r"\.nii\.gz, \.nii, \.nrrd, \.mha"):
            em.write_image(tmp_path / bad, labels, g)
    with pytest.raises(ValueError, match=r"shape \(3, 3, 4\) does not match geometry shape \(2, 3, 4\)"):
        em.write_image(tmp_path / "s.nrrd", np.zeros((3, 3, 4), np.float32), g)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        em.write_image(tmp_path / "no" / "m.nrrd", labels, g)


def test_write_never_overwrites_unless_asked(tmp_path):
    g = Geometry((2, 3, 4))
    path = em.write_image(tmp_path / "m.nii.gz", np.zeros(g.shape, np.float32), g)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        em.write_image(path, np.ones(g.shape, np.float32), g)
    assert path.read_bytes() == before
    em.write_image(path, np.ones(g.shape, np.float32), g, overwrite=True)
    assert (itk_array(path) == 1).all()
    assert os.listdir(tmp_path) == ["m.nii.gz"]


# ----------------------------------------------------------------------------- masks


REF = Geometry((4, 5, 6), spacing=(2.0, 0.5, 0.5), origin=(1.0, 2.0, 3.0))


@pytest.fixture
def blob(rng):
    m = rng.random(REF.shape) < 0.3
    m[0, 0, 0] = True
    return m


@pytest.mark.parametrize(
    "stored, label",
    [
        (lambda m: m.astype(np.uint8), None),
        (lambda m: m.astype(np.uint8) * 255, None),
        (lambda m: m.astype(np.float32), None),  # float 0.0 / 1.0
        (lambda m: np.where(m, 2, 1).astype(np.int16), 2),  # label 2 among 1 and 2
    ],
)
def test_mask_values(tmp_path, blob, stored, label):
    path = em.write_image(tmp_path / "mask.nrrd", stored(blob), REF)
    np.testing.assert_array_equal(em.read_mask(path, REF, label=label), blob)


def test_mask_all_ones_and_array(tmp_path, blob):
    path = em.write_image(tmp_path / "ones.nii.gz", np.ones(REF.shape, np.uint8), REF)
    assert em.read_mask(path, REF).all()
    np.testing.assert_array_equal(em.read_mask(blob.astype(np.int16), REF), blob)
    with pytest.raises(ValueError, match=r"mask shape \(3, 5, 6\) does not match image shape \(4, 5, 6\)"):
        em.read_mask(blob[:3], REF)


def test_mask_empty_absent_label_nan(tmp_path, blob):
    empty = em.write_image(tmp_path / "empty.nrrd", np.zeros(REF.shape, np.uint8), REF)
    with pytest.raises(ValueError, match=r"empty.nrrd is empty: every voxel is 0"):
        em.read_mask(empty, REF)
    two = em.write_image(tmp_path / "two.nrrd", np.where(blob, 2, 1).astype(np.uint8), REF)
    with pytest.raises(ValueError, match=r"two.nrrd has no voxel with label 3; its non-zero labels are 1, 2"):
        em.read_mask(two, REF, label=3)
    holes = np.where(blob, np.nan, 0).astype(np.float32)
    with pytest.raises(ValueError, match="NaN"):
        em.read_mask(Volume(holes, REF, "holes"), REF)


def test_mask_one_slice_short(tmp_path, blob):
    short = Geometry((3, 5, 6), spacing=REF.spacing, origin=REF.origin)
    path = em.write_image(tmp_path / "short.nrrd", blob[:3].astype(np.uint8), short)
    with pytest.raises(ValueError) as err:
        em.read_mask(path, REF)
    msg = str(err.value)
    assert "short.nrrd is not on the image grid" in msg
    assert "resample=True" in msg and "--resample-masks" in msg
    assert REF.describe() in msg and short.describe() in msg
    got = em.read_mask(path, REF, resample=True)
    np.testing.assert_array_equal(got[:3], blob[:3])
    assert not got[3].any()  # beyond the mask's extent


def test_mask_spacing_one_percent_off(tmp_path, blob):
    off = Geometry(REF.shape, spacing=(2.02, 0.5, 0.5), origin=REF.origin)
    path = em.write_image(tmp_path / "off.nii.gz", blob.astype(np.uint8), off)
    with pytest.raises(ValueError, match="not on the image grid"):
        em.read_mask(path, REF)
    # voxel k at z = 2k mm lies at index 2k / 2.02 of the mask, nearest k for k < 50
    np.testing.assert_array_equal(em.read_mask(path, REF, resample=True), blob)
    far = Geometry(REF.shape, spacing=REF.spacing, origin=(1.0, 2.0, 500.0))
    with pytest.raises(ValueError, match="does not overlap"):
        em.read_mask(Volume(blob, far, "far"), REF, resample=True)


def test_real_masks_on_their_images(data_dir):
    img = em.read_image(data_dir / "lits_117/img_117.nii.gz")
    labels = itk_array(data_dir / "lits_117/lab_117.nii.gz")
    tumour = em.read_mask(data_dir / "lits_117/lab_117.nii.gz", img.geometry, label=2)
    np.testing.assert_array_equal(tumour, labels == 2)
    everything = em.read_mask(data_dir / "lits_117/lab_117.nii.gz", img.geometry)
    np.testing.assert_array_equal(everything, labels != 0)
    ct = em.read_image(data_dir / DCMQI_DICOM)  # DICOM grid, NRRD mask: equal within tolerance
    liver = em.read_mask(data_dir / "dcmqi_ct3slice/liver_seg.nrrd", ct.geometry)
    np.testing.assert_array_equal(liver, itk_array(data_dir / "dcmqi_ct3slice/liver_seg.nrrd") == 1)


def test_totalsegmentator_mask_on_dicom_grid(data_dir, rng):
    ct = em.read_image(data_dir / TOTALSEG_DICOM)
    seg_path = data_dir / "totalsegmentator/example_seg_dicom.nii.gz"
    with pytest.raises(ValueError) as err:
        em.read_mask(seg_path, ct.geometry, label=5)
    assert "not on the image grid" in str(err.value) and "diag(1, -1, 1)" in str(err.value)
    liver = em.read_mask(seg_path, ct.geometry, label=5, resample=True)
    assert 60 < ct.array[liver].mean() < 120
    # oracle: ITK's own index <-> physical mapping, voxel by voxel, on a sample
    ct_image, seg_image = itk.imread(str(data_dir / TOTALSEG_DICOM)), itk.imread(str(seg_path))
    seg = itk.array_from_image(seg_image)
    for z, y, x in np.column_stack([rng.integers(0, n, 3000) for n in ct.array.shape]):
        point = ct_image.TransformIndexToPhysicalPoint([int(x), int(y), int(z)])
        i, j, k = seg_image.TransformPhysicalPointToIndex(point)
        assert liver[z, y, x] == (seg[k, j, i] == 5)


# ----------------------------------------------------------------------------- ITK pipeline


def test_itk_image_in_itk_image_out(data_dir):
    image = itk.imread(str(data_dir / "pyradiomics/breast1_image.nrrd"))
    label = itk.imread(str(data_dir / "pyradiomics/breast1_label.nrrd"))
    out = em.local_entropy_image(image, bin_width=25, kernel=3, mask=label)
    assert isinstance(out, itk.Image[itk.F, 3])
    assert itk.size(out) == itk.size(image)
    assert tuple(out.GetSpacing()) == tuple(image.GetSpacing())
    assert tuple(out.GetOrigin()) == tuple(image.GetOrigin())
    direction = itk.array_from_matrix(image.GetDirection())
    np.testing.assert_array_equal(itk.array_from_matrix(out.GetDirection()), direction)
    levels = discretize(itk.array_from_image(image), bin_width=25).levels
    want = em.local_entropy(levels, kernel=3, mask=itk.array_from_image(label) != 0)
    np.testing.assert_array_equal(itk.array_from_image(out), want)


def test_numpy_with_geometry_to_itk_image(rng):
    arr = rng.integers(-50, 50, OBLIQUE.shape).astype(np.int16)
    out = em.local_entropy_image(arr, geometry=OBLIQUE, kernel=(1, 3, 3))
    assert tuple(out.GetSpacing()) == OBLIQUE.spacing[::-1] and tuple(out.GetOrigin()) == OBLIQUE.origin
    np.testing.assert_array_equal(itk.array_from_image(out), em.local_entropy(arr, kernel=(1, 3, 3)))
    default = em.local_entropy_image(arr)
    assert tuple(default.GetSpacing()) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="only for a numpy image"):
        em.local_entropy_image(out, geometry=OBLIQUE)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_refused(tmp_path, suffix):
    from entropymap import io as emio

    geo = emio.Geometry((6, 8, 10), spacing=(2.0, 1.0, 1.0))
    arr = np.random.default_rng(0).normal(size=(6, 8, 10)).astype(np.float32)
    good = emio.write_image(tmp_path / f"a{suffix}", arr, geo)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated"):
        emio.read_image(cut)


def test_short_nifti_write_is_an_error_and_leaves_nothing(tmp_path):
    import subprocess
    import sys

    code = ("import numpy as np, entropymap as em; "
            "em.write_image('w.nii.gz', np.random.default_rng(0).normal(size=(64, 64, 64)).astype(np.float32), "
            "em.Geometry((64, 64, 64)))")
    res = subprocess.run(["bash", "-c", f"ulimit -f 200; exec {sys.executable} -c \"{code}\""],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "cannot write w.nii.gz" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_geometry_arguments_must_be_geometries(tmp_path):
    from entropymap import io as emio

    with pytest.raises(TypeError, match="Geometry"):
        emio.write_image(tmp_path / "x.nii.gz", np.zeros((2, 2, 2), np.float32), None)
    with pytest.raises(TypeError, match="Geometry"):
        emio.read_mask(np.zeros((2, 2, 2)), None)
    assert list(tmp_path.iterdir()) == []
