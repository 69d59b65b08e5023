"""The pictures and the self-contained report that ``map`` writes, ``render``, and the report
opened in a real headless browser (Debian's chromium; .ci/run installs it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from entropymap import io, render
from entropymap.cli import main

PICTURES = [f"{name}.png" for name in render.FIGURES]


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sample"
    assert main(["map", "--sample", "-q", "-o", str(out)]) == 0
    return out


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


def test_map_writes_the_default_pictures_and_the_report(sample_out):
    record = json.loads((sample_out / "run.json").read_text())
    for name in PICTURES + ["report.html"]:
        assert (sample_out / name).is_file(), name
        assert name in record["outputs"].values()
    for name in PICTURES:
        img = imread(sample_out / name)
        assert img.shape[0] > 300 and img.shape[1] > 300 and img[..., :3].std() > 0.1, name
    assert record["figure_view"] == "axial" and 0 <= record["figure_slice"] < 128


def test_report_embeds_every_image_and_refers_to_no_network(sample_out):
    text = (sample_out / "report.html").read_text(encoding="utf-8")
    assert len(text) < 6_000_000  # a few MB for 128^3
    tags = _tags(text)
    images = [a for t, a in tags if t == "img"]
    assert len(images) >= len(PICTURES) + 2  # the figures, and the viewer's CT and map
    for attrs in images:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    for tag, attrs in tags:
        assert tag not in ("link", "iframe", "object", "embed"), tag
        assert not (tag == "script" and "src" in attrs)
        for key in ("src", "href", "srcset", "action", "poster", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, key, value[:80])
    lowered = text.lower()
    for needle in ("http://", "https://", "//cdn", "@import", "url("):
        assert needle not in lowered, needle


def test_report_lists_parameters_and_statistics(sample_out):
    text = (sample_out / "report.html").read_text(encoding="utf-8")
    table = pd.read_csv(sample_out / "statistics.csv")
    tumor = table[(table.region == "tumor") & (table.quantity == "entropy")].iloc[0]
    assert f"<td>{tumor['mean']:.4g}</td>" in text and f"<td>{int(tumor.n_voxels)}</td>" in text
    for words in ("kernel voxels (z, y, x)", "5 x 5 x 5", "img_117.nii.gz", "liver minus dilated tumor",
                  "abdomen window, W 400 L 40", "RdBu_r"):
        assert words in text, words


def test_render_draws_again_without_recomputing(sample_out, tmp_path, monkeypatch, capsys):
    from entropymap import kernel, pipeline

    def no(*args, **kwargs):
        raise AssertionError("render must not recompute the map")

    monkeypatch.setattr(kernel, "local_entropy", no)
    monkeypatch.setattr(pipeline, "compute_maps", no)
    before = {p.name: p.stat().st_mtime_ns for p in sample_out.iterdir()}
    out = tmp_path / "coronal"
    args = ["render", str(sample_out), "--view", "coronal", "--window", "liver", "--cmap", "PuOr_r", "--slice", "40",
            "--opacity", "0.8", "--picture-format", "png", "svg", "-o", str(out)]
    assert main(args) == 0
    assert "fusion.svg" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in sample_out.iterdir()} == before
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{n}.{f}" for n in render.FIGURES for f in ("png", "svg")] + ["report.html"])
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "liver window, W 150 L 90" in report and "PuOr_r" in report
    assert "coronal 40," in report  # the caption of the fusion figure
    # the default run drew another slice, so the picture differs
    assert not np.array_equal(imread(out / "fusion.png"), imread(sample_out / "fusion.png"))


def test_render_errors_say_what_to_do(sample_out, tmp_path, capsys):
    assert main(["render", str(tmp_path)]) == 1
    assert "no run.json" in capsys.readouterr().err
    assert main(["render", str(sample_out), "--window", "livr", "-o", str(tmp_path / "x")]) == 1
    assert "preset" in capsys.readouterr().err
    assert main(["render", str(sample_out), "--image", str(tmp_path / "gone.nii.gz"), "-o", str(tmp_path / "y")]) == 1
    assert "--image" in capsys.readouterr().err


def test_load_case_restores_no_value_outside_the_computed_box(tmp_path, rng):
    """NIfTI readers turn NaN into 0; a cropped run's maps must come back with no value there."""
    from entropymap.pipeline import CaseInputs, MapParams, run_case

    geo = io.Geometry((12, 40, 40), spacing=(2.0, 1.0, 1.0))
    io.write_image(tmp_path / "ct.nii.gz", rng.normal(80, 20, geo.shape).astype(np.float32), geo)
    tumor = np.zeros(geo.shape, np.uint8)
    tumor[5:8, 10:16, 10:16] = 1
    liver = np.zeros(geo.shape, np.uint8)
    liver[3:9, 6:24, 6:26] = 1
    io.write_image(tmp_path / "tumor.nii.gz", tumor, geo)
    io.write_image(tmp_path / "liver.nii.gz", liver, geo)
    inputs = CaseInputs(image=tmp_path / "ct.nii.gz", tumor=tmp_path / "tumor.nii.gz", liver=tmp_path / "liver.nii.gz")
    record = run_case(inputs, tmp_path / "out", MapParams(kernel=3, crop_margin_mm=4.0, reference_margin_mm=3.0),
                      pictures=render.RenderOptions(figures=("fusion",), report=False))
    case, _, _ = render.load_case(tmp_path / "out")
    inside = tuple(slice(a, b) for a, b in record["computed_region_zyx"])
    outside = np.ones(geo.shape, bool)
    outside[inside] = False
    assert outside.any() and np.isnan(case.raw[outside]).all() and np.isnan(case.normalized[outside]).all()
    assert np.isfinite(case.raw[inside]).all()
    assert case.reference_name == "liver" and case.tumor.sum() == tumor.sum()


def test_viewer_crops_and_subsamples_large_cases_and_numbers_slices_as_the_array(rng):
    from entropymap.report import _viewer_payload, viewer_volumes

    geo = io.Geometry((20, 120, 110), spacing=(3.0, 0.8, 0.8), direction=np.diag([-1.0, -1.0, 1.0]))
    liver = np.zeros(geo.shape, bool)
    liver[8:12, 50:70, 40:60] = True
    case = render.CaseImages(ct=rng.normal(60, 30, geo.shape), geometry=geo,
                             raw=rng.uniform(3, 4, geo.shape).astype(np.float32), liver=liver)
    scene = render.Scene(case, render.RenderOptions(map="raw", viewer_max_voxels=20_000))
    volumes, info = viewer_volumes(scene)
    assert volumes["ct"].size <= 20_000 and volumes["map"].shape == volumes["ct"].shape
    # display grid (y and x flipped): the liver at 8:12, 50:70, 50:70, and 20 mm around it (7 slices of
    # 3 mm, 25 pixels of 0.8 mm); then the finest axes are thinned until it fits
    assert [(b.start, b.stop) for b in info["box"]] == [(1, 19), (25, 95), (25, 95)]
    assert info["stride"] == [1, 2, 3]
    assert info["note"] == ("cropped to the liver with 20 mm around; every 2nd voxel along y; every 3rd voxel "
                            "along x: 18 x 35 x 24 voxels")
    payload, images = _viewer_payload(scene)
    assert set(images) == {"ct", "map"} and payload["shape"] == list(volumes["ct"].shape)
    for k, view in enumerate(render.VIEWS):
        box, stride, meta = info["box"][k], info["stride"][k], payload["slices"][view]
        for i in range(payload["shape"][k]):  # what the viewer labels slice i: the array index shown
            assert meta["first"] + meta["step"] * i == scene.orientation.slice_number(view, box.start + i * stride)


# --------------------------------------------------------------------------- in a real browser


def _chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium before the tests")
        pytest.skip("no headless browser: install Debian's chromium (apt-get install chromium) to open the report")
    return exe


def _browse(exe: str, page: Path, fragment: str, profile: Path, *args: str) -> str:
    # --no-sandbox: chromium refuses to run as root otherwise (CI runs as root);
    # --virtual-time-budget: wait for the page's load handlers before dumping
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args, page.as_uri() + fragment]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _viewer_state(dom: str) -> dict:
    viewer = next(a for t, a in _tags(dom) if t == "div" and a.get("id") == "viewer")
    label = re.search(r'<output id="slice-label">([^<]*)</output>', dom)
    return {**{k[5:]: v for k, v in viewer.items() if k.startswith("data-")}, "label": label and label.group(1)}


def _expected_hash(scene: render.Scene, view: str, number: int, opacity: float) -> str:
    """FNV-1a of the pixels the viewer must show, composed here from the same 8-bit volumes."""
    from entropymap.report import viewer_volumes

    volumes, _ = viewer_volumes(scene)  # the sample needs no crop or stride: display slice = number
    panel = {name: render.Orientation.panel(v, view, number) for name, v in volumes.items()}
    grey = panel["ct"].astype(np.float64)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    a = round(opacity * 100) / 100
    coloured = panel["map"] > 0
    rgb[coloured] = grey[coloured, None] * (1 - a) + scene.style.lut(255)[panel["map"][coloured] - 1] * a
    for bit, (_, colour, _) in zip((1, 2), scene.outlines):
        inside = np.pad((panel["masks"] & bit) > 0, 1, constant_values=True)
        core = inside[1:-1, 1:-1]
        edge = core & ~(inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:])
        rgb[edge] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    rgba = np.concatenate([np.rint(rgb), np.full(grey.shape + (1,), 255.0)], axis=-1).astype(np.uint8)
    h = 0x811C9DC5
    for byte in rgba.tobytes():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"


def test_report_viewer_in_a_headless_browser(sample_out, tmp_path):
    exe = _chromium()
    page = sample_out / "report.html"
    record = json.loads((sample_out / "run.json").read_text())
    start = _viewer_state(_browse(exe, page, "", tmp_path / "profile", "--dump-dom"))
    assert start["rendered"], "the viewer drew nothing"
    assert start["view"] == "axial" and start["slice"] == str(record["figure_slice"])
    assert start["opacity"] == "0.6"

    # the address moves the slider (an input event, as a hand would); the slice shown changes
    moved = _viewer_state(_browse(exe, page, "#slice=40", tmp_path / "profile", "--dump-dom"))
    assert moved["view"] == "axial" and moved["slice"] == "40" and moved["label"].startswith("axial 40 ")
    assert moved["rendered"] != start["rendered"]

    coronal = _viewer_state(_browse(exe, page, "#view=coronal&slice=40&opacity=0.3", tmp_path / "profile", "--dump-dom"))
    assert coronal["view"] == "coronal" and coronal["slice"] == "40" and coronal["opacity"] == "0.3"
    assert len({start["rendered"], moved["rendered"], coronal["rendered"]}) == 3
    # and each is, pixel for pixel, the slice asked for, the right way up
    case, _, _ = render.load_case(sample_out)
    scene = render.Scene(case, render.RenderOptions())
    assert start["rendered"] == _expected_hash(scene, "axial", record["figure_slice"], 0.6)
    assert moved["rendered"] == _expected_hash(scene, "axial", 40, 0.6)
    assert coronal["rendered"] == _expected_hash(scene, "coronal", 40, 0.3)
    sagittal = _viewer_state(_browse(exe, page, "#view=sagittal&slice=90", tmp_path / "profile", "--dump-dom"))
    assert sagittal["rendered"] == _expected_hash(scene, "sagittal", 90, 0.6)

    shot = tmp_path / "report-coronal.png"
    _browse(exe, page, "#view=coronal&slice=40", tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900")
    print(f"\nscreenshot of the report: {shot}")
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (900, 1280) and img.std() > 0.05
    # the viewer's stage (black, with the slice in it) is on the page
    assert (img.max(axis=-1) < 0.02).sum() > 20_000
