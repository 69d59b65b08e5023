"""The main job end to end, on the bundled sample and on a real DICOM series."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

import entropymap as em
from entropymap.pipeline import CaseInputs, MapParams, compute_maps, run_case
from entropymap.sample import sample_case


def _itk():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import itk
    return itk


def _read(path):
    itk = _itk()
    img = itk.imread(str(path))
    return np.asarray(itk.array_from_image(img)), img


def _same_geometry(a, b):
    return (np.allclose(np.asarray(a.GetSpacing()), np.asarray(b.GetSpacing()))
            and np.allclose(np.asarray(a.GetOrigin()), np.asarray(b.GetOrigin()))
            and np.allclose(np.asarray(a.GetDirection()), np.asarray(b.GetDirection())))


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    case = sample_case()
    out = tmp_path_factory.mktemp("run") / "out"
    record = run_case(CaseInputs(image=case.image, tumor=case.labels, tumor_label=2, liver=case.labels), out)
    return case, out, record


def test_sample_outputs_exist_on_the_ct_grid(sample_run):
    case, out, record = sample_run
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["entropy.nii.gz", "entropy_normalized.nii.gz", "entropy_classes.nii.gz",
                            "reference_region.nii.gz", "statistics.csv", "patterns.csv", "fusion.png", "triptych.png",
                            "orthogonal.png", "montage.png", "histogram.png", "patterns.png", "report.html", "run.json"])
    _, ct = _read(case.image)
    for name in ("entropy.nii.gz", "entropy_normalized.nii.gz", "entropy_classes.nii.gz"):
        arr, img = _read(out / name)
        assert arr.shape == (128, 128, 128)
        assert _same_geometry(img, ct), name
    assert not list(out.parent.glob(".*partial*"))


def test_sample_raw_map_equals_the_kernel(sample_run):
    case, out, _ = sample_run
    ct, _ = _read(case.image)
    raw, _ = _read(out / "entropy.nii.gz")
    assert raw.dtype == np.float32
    # Bin width 1 anchored at 0: the level is floor(HU); computed here independently.
    levels = np.floor(ct.astype(np.float64)).astype(np.int16)
    np.testing.assert_array_equal(raw, em.local_entropy(levels, kernel=5))


def test_sample_table_tumor_row_matches_numpy(sample_run):
    import pandas as pd

    case, out, _ = sample_run
    labels, _ = _read(case.labels)
    raw, _ = _read(out / "entropy.nii.gz")
    table = pd.read_csv(out / "statistics.csv")
    row = table[(table.region == "tumor") & (table.quantity == "entropy")].iloc[0]
    x = raw[labels == 2].astype(np.float64)
    assert row.n_voxels == x.size == 130083
    assert row["mean"] == pytest.approx(x.mean(), rel=1e-9)
    assert row["median"] == pytest.approx(np.median(x), rel=1e-9)
    assert row["std"] == pytest.approx(x.std(), rel=1e-9)
    assert row["variance"] == pytest.approx(x.var(), rel=1e-9)
    assert row["rms"] == pytest.approx(math.sqrt(np.mean(x**2)), rel=1e-9)
    for q in (5, 25, 75, 95):
        assert row[f"p{q}"] == pytest.approx(np.percentile(x, q), rel=1e-9)
    assert row.zero_crossings == 0
    s = np.sign(x - x.mean())
    s = s[s != 0]
    assert row.mean_crossings == np.count_nonzero(s[1:] != s[:-1])
    hu = table[(table.region == "tumor") & (table.quantity == "hu")].iloc[0]
    ct, _ = _read(case.image)
    assert hu["mean"] == pytest.approx(ct[labels == 2].mean(dtype=np.float64), rel=1e-9)


def test_sample_normalised_mean_over_reference_is_one(sample_run):
    case, out, record = sample_run
    labels, _ = _read(case.labels)
    norm, _ = _read(out / "entropy_normalized.nii.gz")
    ref, _ = _read(out / "reference_region.nii.gz")
    # Independent check of the derived reference: liver voxels > 10 mm from the tumour (1 mm voxels).
    dist = ndimage.distance_transform_edt(labels != 2)
    assert np.array_equal(ref > 0, (labels > 0) & (dist > 10.0))
    assert abs(float(norm[ref > 0].astype(np.float64).mean()) - 1.0) <= 1e-6
    assert record["reference_region"]["voxels"] == int((ref > 0).sum())


def test_sample_classes_follow_thresholds(sample_run):
    _, out, _ = sample_run
    norm, _ = _read(out / "entropy_normalized.nii.gz")
    cls, _ = _read(out / "entropy_classes.nii.gz")
    assert np.array_equal(cls == 3, norm > 1.1) and np.array_equal(cls == 1, norm < 0.9)


def test_sample_run_json_is_complete(sample_run):
    case, out, record = sample_run
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk["parameters"]["kernel"] == 5
    import hashlib

    assert on_disk["inputs"]["image"]["sha256"] == hashlib.sha256(case.image.read_bytes()).hexdigest()
    assert on_disk["versions"]["numpy"] == np.__version__
    assert on_disk["versions"]["openmp"] == em.openmp_enabled()
    assert on_disk["versions"]["vector_isa"] == em.vector_isa()
    assert set(on_disk["timings_s"]) >= {"read", "local entropy", "smooth", "statistics", "render", "total"}
    assert on_disk["discretization"]["bin_width"] == 1.0


def test_fusion_png_is_an_image(sample_run):
    _, out, _ = sample_run
    head = (out / "fusion.png").read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"


def test_crop_margin_gives_identical_values_there(rng):
    ct = rng.normal(100, 15, size=(20, 40, 44)).round()
    tumor = np.zeros(ct.shape, bool)
    tumor[8:12, 15:22, 18:25] = True
    ref = np.zeros(ct.shape, bool)
    ref[9:11, 28:33, 5:10] = True
    full = compute_maps(ct, (2.0, 1.0, 1.0), MapParams(), tumor=tumor, reference=ref)
    crop = compute_maps(ct, (2.0, 1.0, 1.0), MapParams(crop_margin_mm=3.0), tumor=tumor, reference=ref)
    box = crop.computed_region
    assert box is not None
    np.testing.assert_array_equal(crop.raw[box], full.raw[box])
    np.testing.assert_array_equal(crop.smoothed[box], full.smoothed[box])
    outside = np.ones(ct.shape, bool)
    outside[box] = False
    assert np.all(np.isnan(crop.raw[outside]))
    assert crop.reference_mean == full.reference_mean


@pytest.fixture(scope="module")
def dicom_case(data_dir):
    ts = data_dir / "totalsegmentator"
    return ts / "example_ct_dicom", ts / "example_seg_dicom.nii.gz"


def test_dicom_series_with_resampled_liver_and_sphere(dicom_case, tmp_path):
    from entropymap import io

    series, seg = dicom_case
    vol = io.read_image(series)
    # A sphere of 6 mm around the centre voxel; count by hand over integer offsets.
    centre_idx = np.array(vol.array.shape) // 2
    centre = vol.geometry.index_to_physical(centre_idx)
    out = tmp_path / "dcm"
    record = run_case(
        CaseInputs(image=series, tumor=None, reference=None,
                   sphere=(float(centre[0]), float(centre[1]), float(centre[2]), 6.0)),
        out, MapParams(kernel=(3, 5, 5)),
    )
    sz, sy, sx = vol.geometry.spacing
    want = {(int(centre_idx[0] + i), int(centre_idx[1] + j), int(centre_idx[2] + k))
            for i in range(-4, 5) for j in range(-8, 9) for k in range(-8, 9)
            if (i * sz) ** 2 + (j * sy) ** 2 + (k * sx) ** 2 <= 36.0}
    ref, _ = _read(out / "reference_region.nii.gz")
    assert {tuple(map(int, p)) for p in np.argwhere(ref > 0)} == want
    assert record["reference_region"]["voxels"] == len(want)
    # The liver label (5) of the NIfTI segmentation, resampled onto the DICOM grid.
    out2 = tmp_path / "liver"
    record2 = run_case(CaseInputs(image=series, liver=seg, liver_label=5, resample_masks=True), out2)
    assert record2["reference_region"]["voxels"] > 100000
    ref2, _ = _read(out2 / "reference_region.nii.gz")
    assert 60 <= float(vol.array[ref2 > 0].mean()) <= 120  # liver HU, so the mask landed on the liver


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    case = sample_case()
    out = tmp_path / "o"
    inputs = CaseInputs(image=case.image)
    run_case(inputs, out, MapParams(kernel=3))
    first = (out / "run.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_case(inputs, out, MapParams(kernel=3))
    assert (out / "run.json").read_text() == first
    run_case(inputs, out, MapParams(kernel=5), overwrite=True)
    assert json.loads((out / "run.json").read_text())["parameters"]["kernel"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_never_replaces_inputs_or_foreign_folders(tmp_path):
    import shutil

    case = sample_case()
    folder = tmp_path / "case"
    folder.mkdir()
    ct = folder / "ct.nii.gz"
    shutil.copy(case.image, ct)
    with pytest.raises(ValueError, match="holds the input"):
        run_case(CaseInputs(image=ct), folder, overwrite=True)
    assert ct.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an entropymap output"):
        run_case(CaseInputs(image=case.image), mine, MapParams(kernel=3), overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep"


def test_failed_run_removes_the_parents_it_created(tmp_path, monkeypatch):
    from entropymap import render

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(render, "write_pictures", broken)
    with pytest.raises(RuntimeError):
        run_case(CaseInputs(image=sample_case().image), tmp_path / "a" / "b" / "out", MapParams(kernel=3))
    assert list(tmp_path.iterdir()) == []


def test_failure_leaves_no_output(tmp_path):
    case = sample_case()
    out = tmp_path / "o"
    empty_ref = (0.0, 0.0, 1e6, 1.0)  # a sphere far outside the image
    with pytest.raises(ValueError, match="sphere"):
        run_case(CaseInputs(image=case.image, sphere=empty_ref), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_failure_late_in_the_run_leaves_no_output(tmp_path, monkeypatch):
    from entropymap import render

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(render, "fusion_figure", broken)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="disk full"):
        run_case(CaseInputs(image=sample_case().image), out, MapParams(kernel=3))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_compute_maps_refuses_non_boolean_regions_and_bad_params():
    image = np.zeros((4, 5, 6))
    with pytest.raises(TypeError, match="bool mask"):
        compute_maps(image, (1, 1, 1), MapParams(), tumor=np.ones((4, 5, 6)))
    with pytest.raises(TypeError, match="MapParams"):
        compute_maps(image, (1, 1, 1), {"kernel": 3})
