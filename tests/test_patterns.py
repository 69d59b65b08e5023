"""Entropic patterns and margin analysis: phantoms of known pattern and extension, a
sharp step at the margin, and the bundled multifocal sample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from entropymap.patterns import (PatternParams, analyze_lesions, classify_lesion, margin_analysis,
                                 signed_distance, vessel_mask)
from entropymap.phantom import PATTERN_FAMILIES, make_phantom, pattern_phantom
from entropymap.pipeline import MapParams, compute_maps
from entropymap.regions import derived_reference

# Diameters (mm) per family: a rim of ~3.5 mm is most of the volume of a 10 mm lesion,
# so the rim families start at 14 mm (the map cannot tell a rim from a whole lesion there).
DIAMETERS = {"homogeneous": (10, 12, 16, 20, 24, 30, 36, 42, 48, 54, 60),
             "inhomogeneous": (10, 12, 16, 20, 24, 30, 36, 42, 48, 54, 60),
             "peripheral rim": (14, 16, 20, 24, 28, 32, 36, 42, 48, 54, 60),
             "mixed": (14, 16, 20, 24, 28, 32, 36, 42, 48, 54, 60)}


def _cases():
    """44 phantoms: 4 families x 11 sizes, varying shape, noise, spacing, rim gap."""
    out = []
    for i, (fam, dia) in enumerate(itertools.chain.from_iterable(
            ((f, d) for d in DIAMETERS[f]) for f in PATTERN_FAMILIES)):
        inplane = 0.7 if dia <= 16 else (1.0 if dia <= 32 else 1.5)
        # slices: a 5-slice window of 2 mm slices spans 10 mm, the whole of a small lesion
        z = ((inplane, 1.0, 1.25) if dia <= 20 else (inplane, 2.0, 1.25) if dia <= 32 else (1.5, 2.0, 2.5))[i % 3]
        elong = (1.0, 0.8, 1.25)[(i // 3) % 3]
        r = dia / 2.0
        out.append(dict(pattern=fam, radius_mm=(r * elong, r, r), spacing=(z, inplane, inplane),
                        rim_gap_deg=(0.0, 40.0, 60.0)[i % 3] if fam in ("peripheral rim", "mixed") else 0.0,
                        noise_hu=(5.0, 6.0, 7.0)[(i + 1) % 3], seed=i))
    return out


def _maps(ph, n_threads=1):
    sp = ph.geometry.spacing
    # parenchyma 4 mm away from the lesion and 3 mm inside the liver (the liver / body step
    # is hyper-entropic too, and would inflate the reference in these small volumes)
    ref = derived_reference(ph.liver, ph.tumor, sp, 4.0) & (signed_distance(ph.liver, sp) < -3.0)
    res = compute_maps(ph.image, sp, MapParams(kernel=5, n_threads=n_threads), tumor=ph.tumor, reference=ref)
    return res


# texture 25 HU over noise 5-7 HU; blobs a quarter of the (core of the) lesion (the defaults)
KW = dict(heterogeneity=25.0, blob_fraction=0.25, blob_scale_mm=3.0)


def _phantom(c, **kw):
    kw = {**KW, **kw}
    sp = c["spacing"]
    shape = tuple(int(min(64, np.ceil(2 * max(c["radius_mm"]) / s) + 2 * np.ceil(10.0 / s))) for s in sp)
    # 3.5 mm, at most a third of the smallest semi-axis (as the classifier's rim depth), at
    # least 3 in-plane voxels (a thinner rim is diluted below the threshold by the window)
    rim_mm = max(min(3.5, min(c["radius_mm"]) / 3.0), 3.0 * sp[1])
    return pattern_phantom(c["pattern"], radius_mm=c["radius_mm"], shape=shape, spacing=sp,
                           rim_gap_deg=c["rim_gap_deg"], noise_hu=c["noise_hu"], seed=c["seed"], rim_mm=rim_mm,
                           **kw)


def test_pattern_phantoms_are_classified(capsys):
    cases = _cases()
    assert len(cases) >= 40
    wrong = []
    for c in cases:
        ph = _phantom(c)
        res = _maps(ph)
        p = classify_lesion(res.normalized, ph.tumor, ph.geometry.spacing)
        if p.pattern != c["pattern"]:
            wrong.append((c, p))
    with capsys.disabled():
        for c, p in wrong:
            print(f"\nmisclassified {c['pattern']} d={2 * c['radius_mm'][1]:g} mm radius {c['radius_mm']} "
                  f"spacing {c['spacing']} gap {c['rim_gap_deg']} noise {c['noise_hu']} seed {c['seed']} "
                  f"-> {p.pattern}: {p.reason}; rim hyper {p.rim_hyper_fraction:.2f}, "
                  f"core hyper {p.core_hyper_fraction:.2f}")
        print(f"\npattern phantoms: {len(cases) - len(wrong)} / {len(cases)} correct")
    assert len(cases) - len(wrong) >= 0.95 * len(cases)


def _margin_phantom(margin_mm, spacing):
    shape = tuple(min(72, int(np.ceil(70 / s))) for s in spacing)
    ph = make_phantom(shape=shape, spacing=spacing, lesion_radius_mm=8, heterogeneity=25, texture_margin_mm=margin_mm,
                      noise_hu=6, contrast_hu=-10, texture_scale_mm=1.0, seed=1)
    ref = derived_reference(ph.liver, ph.tumor, spacing, 12.0) & (signed_distance(ph.liver, spacing) < -3.0)
    res = compute_maps(ph.image, spacing, MapParams(kernel=5, n_threads=2), tumor=ph.tumor, reference=ref)
    return ph, margin_analysis(res.normalized, ph.tumor, spacing, within=ph.liver,
                               window_mm=[(k // 2) * s for k, s in zip(res.kernel, spacing)])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.8, 0.8)])
def test_a_zone_5_mm_beyond_the_mask_is_measured_within_a_voxel(spacing, capsys):
    ph, m = _margin_phantom(5.0, spacing)
    with capsys.disabled():
        print(f"\n5 mm extension, spacing {spacing}: measured {m.extension_mm:.2f} mm "
              f"(map {m.extension_map_mm:.2f} mm, {m.extension_ml:.2f} mL)")
    # the textured zone's outermost voxel centre: 5 mm on the grid, less than a voxel either way
    assert abs(m.extension_mm - 5.0) <= max(spacing)
    assert m.extension_flag and m.extension_ml > 0
    ph0, m0 = _margin_phantom(0.0, spacing)
    assert not m0.extension_flag and m0.extension_mm <= 1.0
    assert m0.extension_map_mm < m.extension_map_mm


def test_band_profile_puts_a_sharp_step_in_the_boundary_bands():
    sp = (2.0, 0.8, 0.8)
    z, y, x = np.indices((30, 80, 80))
    lesion = ((z - 15) * 2.0) ** 2 + ((y - 40) * 0.8) ** 2 + ((x - 40) * 0.8) ** 2 <= 15.0**2
    values = np.where(lesion, 1.5, 1.0).astype(np.float32)
    m = margin_analysis(values, lesion, sp)
    prof = m.profile_table()
    inside = prof[(prof.to_mm <= 0) & (prof.n_voxels > 0)]
    outside = prof[(prof.from_mm >= 0) & (prof.n_voxels > 0)]
    assert np.allclose(inside.mean_normalized, 1.5) and np.allclose(outside.mean_normalized, 1.0)
    assert list(prof.from_mm[:2]) == [-10.0, -9.0] and prof.to_mm.iloc[-1] == 15.0 and len(prof) == 25
    # through the entropy map: the largest fall between neighbouring bands is at the boundary
    ph = make_phantom(shape=(30, 64, 64), spacing=(1.0, 1.0, 1.0), lesion_radius_mm=12, heterogeneity=25,
                      noise_hu=6, contrast_hu=-10, texture_scale_mm=1.0, seed=2)
    ref = derived_reference(ph.liver, ph.tumor, (1.0, 1.0, 1.0), 8.0)
    res = compute_maps(ph.image, (1.0, 1.0, 1.0), MapParams(kernel=5, n_threads=2), tumor=ph.tumor, reference=ref)
    prof = margin_analysis(res.normalized, ph.tumor, (1.0, 1.0, 1.0), within=ph.liver).profile_table()
    fall = -np.diff(prof.mean_normalized.to_numpy())
    at = prof.to_mm.iloc[int(np.nanargmax(fall))]  # edge between the two bands of the largest fall
    assert -1.0 <= at <= 1.0, prof
    assert prof.mean_normalized[prof.to_mm <= -4].mean() > 1.1 > prof.mean_normalized[prof.from_mm >= 4].mean()


def test_signed_distance_is_negative_inside_and_respects_spacing():
    mask = np.zeros((9, 9, 9), bool)
    mask[2:7, 2:7, 2:7] = True
    d = signed_distance(mask, (3.0, 1.0, 1.0))
    assert (d[mask] < 0).all() and (d[~mask] > 0).all()
    assert d[4, 4, 0] == pytest.approx(1.5) and d[0, 4, 4] == pytest.approx(5.5)  # 2 slices of 3 mm, less 0.5
    with pytest.raises(ValueError, match="empty"):
        signed_distance(np.zeros((3, 3, 3), bool), (1, 1, 1))


def test_vessels_are_left_out_of_the_extension():
    ph, _ = _margin_phantom(5.0, (1.0, 1.0, 1.0))
    image = ph.image.copy()
    vessels = vessel_mask(image, vessel_hu=10_000)
    assert vessels is not None and not vessels.any()
    everything = vessel_mask(None, vessels=ph.liver & ~ph.tumor)
    values = np.full(ph.tumor.shape, 2.0, np.float32)
    assert margin_analysis(values, ph.tumor, (1, 1, 1), vessels=everything).extension_voxels == 0
    assert 9.0 < margin_analysis(values, ph.tumor, (1, 1, 1)).extension_mm <= 10.0  # up to the 10 mm shell


@pytest.mark.parametrize("kw, word", [(dict(rim_depth_mm=0), "rim_depth_mm"), (dict(sectors="2d"), "sectors"),
                                      (dict(rim_coverage_min=1.5), "rim_coverage_min"),
                                      (dict(profile_mm=(1, 5)), "profile_mm"), (dict(shell_mm=-1), "shell_mm")])
def test_bad_parameters_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        PatternParams(**kw).validate()


def test_slice_sectors_agree_on_a_complete_rim():
    c = dict(pattern="peripheral rim", radius_mm=(12.0, 12.0, 12.0), spacing=(1.0, 1.0, 1.0), rim_gap_deg=0.0,
             noise_hu=6.0, seed=3)
    ph = _phantom(c)
    res = _maps(ph)
    for sectors in ("3d", "slice"):
        p = classify_lesion(res.normalized, ph.tumor, ph.geometry.spacing, PatternParams(sectors=sectors))
        assert p.pattern == "peripheral rim" and p.rim_complete, (sectors, p)


def test_sample_every_component_is_analysed(capsys):
    from entropymap import io
    from entropymap.sample import sample_case

    case = sample_case()
    vol = io.read_image(case.image)
    labels = io.read_image(case.labels).array
    tumor, liver = labels == 2, labels >= 1
    sp = vol.geometry.spacing
    ref = derived_reference(liver, tumor, sp, 10.0)
    res = compute_maps(vol.array, sp, MapParams(kernel=5, crop_margin_mm=20.0), tumor=tumor, reference=ref)
    table, profiles = analyze_lesions(res.normalized, tumor, sp, within=liver,
                                      window_mm=[(k // 2) * s for k, s in zip(res.kernel, sp)])
    assert len(table) == 79 + 1 and table.lesion.iloc[-1] == "all"
    done = table[table.pattern != "skipped"]
    assert (done.diameter_mm >= 10).all() and (table[table.pattern == "skipped"].diameter_mm < 10).all()
    assert set(done.pattern) <= {"homogeneous", "peripheral rim", "inhomogeneous", "mixed", "non-hyper"}
    assert set(profiles) == set(done.lesion)
    with capsys.disabled():
        cols = ["lesion", "pattern", "volume_ml", "diameter_mm", "hyper_fraction", "rim_coverage",
                "core_hyper_fraction", "extension_mm", "extension_ml", "extension_flag"]
        print("\n" + done[cols].round(3).to_string(index=False))


def test_run_case_writes_patterns_csv_and_run_json(tmp_path):
    import json

    import pandas as pd

    from entropymap.pipeline import CaseInputs, run_case

    ph = make_phantom(shape=(24, 48, 48), spacing=(1.5, 1.0, 1.0), lesion_radius_mm=7, heterogeneity=25,
                      noise_hu=6, contrast_hu=-10, texture_scale_mm=1.0, seed=0)
    files = ph.save(tmp_path / "ph")
    out = tmp_path / "out"
    run_case(CaseInputs(image=files.image, tumor=files.tumor, liver=files.liver), out,
             MapParams(kernel=5, reference_margin_mm=4.0, n_threads=1))
    table = pd.read_csv(out / "patterns.csv")
    assert list(table.lesion.astype(str)) == ["1", "all"]
    assert {"pattern", "hyper_fraction", "rim_coverage", "core_uniformity", "extension_mm", "extension_flag"} <= set(table)
    record = json.loads((out / "run.json").read_text())
    assert record["patterns"]["components"] == 1 and record["outputs"]["patterns"] == "patterns.csv"
    assert len(record["patterns"]["band_profile_all"]) == 25


def test_main_job_writes_patterns_and_honours_options(tmp_path):
    import json

    from entropymap import io as emio
    from entropymap.cli import main
    from entropymap.sample import sample_case

    case = sample_case()
    labels = emio.read_image(case.labels)
    vessels = tmp_path / "vessels.nii.gz"
    vessel_mask = np.zeros(labels.array.shape, np.uint8)
    vessel_mask[60:70, 60:70, 60:70] = 1  # a block inside the liver
    emio.write_image(vessels, vessel_mask, labels.geometry)
    out = tmp_path / "o"
    assert main(["map", "--sample", "--kernel", "3", "--rim-depth", "2.5", "--shell", "8", "--sectors", "slice",
                 "--vessels", str(vessels), "-q", "-o", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    pat = record["patterns"]
    assert pat["parameters"]["rim_depth_mm"] == 2.5 and pat["parameters"]["shell_mm"] == 8.0
    assert pat["parameters"]["sectors"] == "slice"
    assert pat["vessel_voxels_excluded"] == int(vessel_mask.sum())
    ref = emio.read_image(out / "reference_region.nii.gz").array > 0
    assert not ref[vessel_mask > 0].any()  # vessels are out of the reference region
    table = __import__("pandas").read_csv(out / "patterns.csv", dtype={"lesion": str})
    assert table["lesion"].iloc[-1] == "all" and len(table) == pat["components"] + 1
    assert (out / "patterns.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "report.html").read_text()
    assert "Entropic patterns and margin" in html and "patterns.png" not in html
