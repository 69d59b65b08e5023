"""The cohort: manifest checks, the runner end to end (failure, resume, Dask), the CLI."""

from __future__ import annotations

import re
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropymap.cohort import (
    FEATURE_COLUMNS,
    FEATURES_FILE,
    _record_key,
    case_key,
    read_manifest,
    run_cohort,
)
from entropymap.phantom import make_phantom
from entropymap.pipeline import CaseInputs, MapParams
from entropymap.stats import GLOBAL_ENTROPY_PRESETS

# The parameters the runner tests use (small kernel; a thin phantom liver needs a small margin).
ARGS = ["--kernel", "3", "--reference-margin", "2", "--workers", "2"]
PARAMS = MapParams(kernel=3, reference_margin_mm=2.0)


def cli(argv: list[str]) -> int:
    """The real command line, in-process."""
    from entropymap.cli import main

    return main(argv)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the manifest ------------------------------------------------------------------------


def test_manifest_paths_labels_and_clinical_types(tmp_path):
    (tmp_path / "sub").mkdir()
    m = read_manifest(_write(tmp_path / "sub" / "m.csv", (
        "id,image,tumor,tumor_label,liver,TRG,sex,weight\n"
        "p01,ct/p01.nii.gz,seg/p01.nii.gz,2.0,liver/p01.nii.gz,3,F,71.5\n"
        "p02,/data/p02.nrrd,,,,5,,80\n")))
    a, b = m.cases
    assert (a.id, b.id) == ("p01", "p02")
    assert a.inputs.image == tmp_path / "sub" / "ct" / "p01.nii.gz" and b.inputs.image == Path("/data/p02.nrrd")
    assert a.inputs.tumor_label == 2 and a.inputs.liver == tmp_path / "sub" / "liver" / "p01.nii.gz"
    assert b.inputs.tumor is None and b.inputs.tumor_label is None
    assert m.clinical_columns == ("TRG", "sex", "weight")
    assert a.clinical == {"TRG": 3, "sex": "F", "weight": 71.5} and b.clinical["sex"] is None
    assert isinstance(a.clinical["TRG"], int)


@pytest.mark.parametrize(
    "text, words",
    [
        ("image,TRG\na.nii,1\n", "no 'id' column"),
        ("id,image,tumour\np1,a.nii,t.nii\n", "'tumour' is not a manifest column; did you mean 'tumor'"),
        ("id,Image\np1,a.nii\n", "did you mean 'image'"),
        ("id,image,liver_lable\np1,a.nii,1\n", "did you mean 'liver_label'"),
        ("id,image,liver_mask\np1,a.nii,l.nii.gz\n", "'liver_mask' holds image paths"),
        ("id,image,TRG,TRG\np1,a.nii,1,1\n", "'TRG' appears twice"),
        ("id,image,entropy_mean\np1,a.nii,1\n", "name of a feature column"),
        ("id;image\np1;a.nii\n", "separated by commas"),
        ("id,image\n", "no cases"),
        ("", "empty"),
        ("id,image\np1,a.nii\np1,b.nii\n", "line 3: id 'p1' is already used on line 2"),
        ("id,image\n,a.nii\n", "line 2: the id is empty"),
        ("id,image\n../x,a.nii\n", "cannot name a folder"),
        ("id,image\np1,\n", "line 2: no image"),
        ("id,image,tumor,tumor_label\np1,a.nii,t.nii,two\n", "tumor_label 'two' is not an integer"),
        ("id,image,tumor,tumor_label\np1,a.nii,t.nii,1.5\n", "not an integer"),
        ("id,image,tumor_label\np1,a.nii,2\n", "tumor_label is given but there is no tumor mask"),
        ("id,image,reference,liver\np1,a.nii,r.nii,l.nii\n", "reference mask or a liver mask, not both"),
        ("id,image\np1,a.nii,extra\n", "line 2: 3 fields, the header has 2"),
    ],
)
def test_manifest_errors_name_the_problem(tmp_path, text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        read_manifest(_write(tmp_path / "m.csv", text))


def test_manifest_reports_every_row_problem_at_once(tmp_path):
    with pytest.raises(ValueError) as exc:
        read_manifest(_write(tmp_path / "m.csv", "id,image\n,a.nii\np2,\n"))
    assert "line 2" in str(exc.value) and "line 3" in str(exc.value)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_case_key_follows_what_changes_outputs(tmp_path):
    inputs = CaseInputs(image=tmp_path / "a.nii.gz", tumor=tmp_path / "t.nii.gz", tumor_label=2)
    key = case_key(PARAMS, inputs)
    assert case_key(MapParams(kernel=3, reference_margin_mm=2.0, n_threads=1), inputs) == key
    assert case_key(MapParams(kernel=5, reference_margin_mm=2.0), inputs) != key
    assert case_key(PARAMS, CaseInputs(image=tmp_path / "a.nii.gz", tumor=tmp_path / "t.nii.gz")) != key


# --- the runner end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two phantoms and an unreadable image, run through the CLI; then the bad one fixed
    and the command run again."""
    root = tmp_path_factory.mktemp("cohort")
    data = root / "data"
    phantoms = {}
    lines = ["id,image,tumor,liver,TRG,sex"]
    for i, (cid, h) in enumerate((("c0", 0.0), ("c1", 25.0))):
        phantoms[cid] = make_phantom(shape=(20, 32, 32), lesion_radius_mm=6, heterogeneity=h, seed=i)
        f = phantoms[cid].save(data, stem=cid)
        lines.append(f"{cid},data/{f.image.name},data/{f.tumor.name},data/{f.liver.name},{i + 1},{'FM'[i]}")
    (data / "bad.nii.gz").write_bytes(b"this is not an image")
    lines.append("bad,data/bad.nii.gz,data/bad_tumor.nii.gz,data/bad_liver.nii.gz,5,")
    manifest = _write(root / "manifest.csv", "\n".join(lines) + "\n")
    out = root / "out"
    return {"root": root, "data": data, "manifest": manifest, "out": out, "phantoms": phantoms}


@pytest.fixture(scope="module")
def first_run(cohort):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli(["cohort", str(cohort["manifest"]), "-o", str(cohort["out"]), *ARGS])
    return code, err.getvalue()


def test_a_failing_case_is_listed_and_the_others_finish(cohort, first_run):
    code, err = first_run
    out = cohort["out"]
    assert code == 1
    assert "1 of 3 cases failed" in err and "bad: OSError" in err and "bad.nii.gz" in err
    table = pd.read_csv(out / "features.csv")
    assert list(table["id"]) == ["c0", "c1"]
    assert list(table.columns) == ["id", "TRG", "sex", *FEATURE_COLUMNS]
    assert list(table["TRG"]) == [1, 2] and list(table["sex"]) == ["F", "M"]
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["id"]) == ["bad"] and "bad.nii.gz" in failures.loc[0, "error"]
    assert not (out / "cases" / "bad").exists()


def test_features_match_the_case_outputs(cohort, first_run):
    out, ph = cohort["out"], cohort["phantoms"]["c1"]
    table = pd.read_csv(out / "features.csv").set_index("id")
    stats = pd.read_csv(out / "cases" / "c1" / "statistics.csv")
    tumor = stats[(stats.region == "tumor") & (stats.quantity == "entropy")].iloc[0]
    row = table.loc["c1"]
    assert row["entropy_mean"] == tumor["mean"] and row["entropy_p90"] == tumor["p90"]
    assert row["tumor_voxels"] == ph.tumor.sum()
    assert row["hu_mean"] == pytest.approx(ph.image[ph.tumor].mean())
    assert row["tumor_global_entropy"] == pytest.approx(GLOBAL_ENTROPY_PRESETS["lifex"].entropy(ph.image, ph.tumor))
    assert row[["hypo_fraction", "iso_fraction", "hyper_fraction"]].sum() == pytest.approx(1.0)
    assert row["hyper_fraction"] > table.loc["c0", "hyper_fraction"]
    assert row["entropy_mean"] > table.loc["c0", "entropy_mean"]
    record = json.loads((out / "cases" / "c1" / "run.json").read_text())
    assert row["reference_smoothed_entropy_mean"] == record["reference_region"]["mean_smoothed_entropy"]
    # a rerun recognises this run.json as made with the same parameters
    case = next(c for c in read_manifest(cohort["manifest"]).cases if c.id == "c1")
    assert _record_key(record) == case_key(PARAMS, case.inputs)


@pytest.fixture(scope="module")
def second_run(cohort, first_run):
    """The bad case fixed, the same command again."""
    ph = make_phantom(shape=(20, 32, 32), lesion_radius_mm=6, heterogeneity=10, seed=7)
    ph.save(cohort["data"], stem="bad", overwrite=True)
    cases = cohort["out"] / "cases"
    mtimes = {c: (cases / c / "run.json").stat().st_mtime_ns for c in ("c0", "c1")}
    code = cli(["cohort", str(cohort["manifest"]), "-o", str(cohort["out"]), *ARGS])
    return code, mtimes


def test_a_rerun_does_only_the_failed_case(cohort, second_run):
    code, mtimes = second_run
    out = cohort["out"]
    assert code == 0
    summary = json.loads((out / "cohort.json").read_text())
    assert summary["computed"] == ["bad"] and summary["reused"] == ["c0", "c1"] and summary["failed"] == {}
    for c, before in mtimes.items():
        assert (out / "cases" / c / "run.json").stat().st_mtime_ns == before  # maps not recomputed
    assert list(pd.read_csv(out / "features.csv")["id"]) == ["c0", "c1", "bad"]
    assert not (out / "failures.csv").exists()


def test_dask_cluster_gives_the_same_table(cohort, second_run):
    distributed = pytest.importorskip("dask.distributed")
    manifest = read_manifest(cohort["manifest"])
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = run_cohort(manifest, cohort["root"] / "dask", PARAMS, scheduler=cluster.scheduler_address)
    assert remote.ok and remote.computed == ("c0", "c1", "bad")
    local = pd.read_csv(cohort["out"] / "features.csv")
    pd.testing.assert_frame_equal(pd.read_csv(remote.files["csv"]), local, check_exact=True)


def test_changed_parameters_rerun_and_force(cohort, second_run, monkeypatch):
    import entropymap.cohort as cohort_module

    submitted = []

    def fake_map_jobs(fn, jobs, **kwargs):  # record what would run, run nothing
        submitted.extend((key, args[-1]) for key, args, _ in jobs)
        return []

    monkeypatch.setattr(cohort_module, "map_jobs", fake_map_jobs)
    manifest = read_manifest(cohort["manifest"])
    scratch = cohort["root"] / "scratch"
    shutil.copytree(cohort["out"], scratch)
    run_cohort(manifest, scratch, PARAMS)
    assert submitted == []  # everything done
    run_cohort(manifest, scratch, PARAMS, histogram=GLOBAL_ENTROPY_PRESETS["ibsi"])
    assert submitted == [("c0", False), ("c1", False), ("bad", False)]  # features only
    submitted.clear()
    run_cohort(manifest, scratch, MapParams(kernel=5, reference_margin_mm=2.0))
    assert submitted == [("c0", True), ("c1", True), ("bad", True)]  # maps again
    submitted.clear()
    run_cohort(manifest, scratch, PARAMS, force=True)
    assert [s[1] for s in submitted] == [True, True, True]


def test_features_alone_are_taken_again_from_a_finished_folder(cohort, second_run, tmp_path):
    from entropymap.cohort import _case_job

    folder = tmp_path / "c1"
    shutil.copytree(cohort["out"] / "cases" / "c1", folder)
    (folder / FEATURES_FILE).unlink()
    before = (folder / "run.json").read_bytes()
    case = next(c for c in read_manifest(cohort["manifest"]).cases if c.id == "c1")
    ibsi = GLOBAL_ENTROPY_PRESETS["ibsi"]
    got = _case_job(case.inputs, folder, PARAMS, ibsi, "k", False)
    assert (folder / "run.json").read_bytes() == before  # the maps were not made again
    kept = json.loads((folder / FEATURES_FILE).read_text())
    assert kept["key"] == "k" and kept["features"] == got
    ph = cohort["phantoms"]["c1"]
    assert got["tumor_global_entropy"] == pytest.approx(ibsi.entropy(ph.image, ph.tumor))
    table = pd.read_csv(cohort["out"] / "features.csv").set_index("id")
    assert got["entropy_mean"] == table.loc["c1", "entropy_mean"]


def test_compare_command_on_the_cohort_table(cohort, second_run, capsys):
    out = cohort["root"] / "compare"
    code = cli(["compare", str(cohort["out"] / "features.csv"), "--groups", "TRG 1 vs 2-5",
                "--names", "homogeneous", "rough", "--variables", "entropy_mean", "hyper_fraction", "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "homogeneous (n=1)" in printed and "rough (n=2)" in printed and "entropy_mean" in printed
    assert {p.name for p in out.iterdir()} == {"comparison.csv", "table2.csv", "zscores.csv", "comparison.png"}
    assert cli(["compare", str(cohort["out"] / "features.csv"), "--groups", "TRG 1 vs 2-5", "--variables",
                "features", "-o", str(out)]) == 0
    assert len(pd.read_csv(out / "comparison.csv")) == len(FEATURE_COLUMNS)


def test_cohort_command_checks_params_file(tmp_path, cohort, capsys):
    bad = _write(tmp_path / "p.json", json.dumps({"kernel": 3, "bin_widht": 2}))
    assert cli(["cohort", str(cohort["manifest"]), "-o", str(tmp_path / "o"), "--params", str(bad)]) == 1
    assert re.search("unknown parameter.*bin_widht", capsys.readouterr().err)
    good = _write(tmp_path / "q.json", json.dumps({"kernel": [3, 3, 3], "bin_width": 2.0}))
    assert cli(["cohort", str(cohort["manifest"]), "-o", str(tmp_path / "o"), "--params", str(good),
                "--bin-count", "16", "--bin-width", "4"]) == 1
    assert "bin width or a bin count, not both" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nan_features_for_a_case_without_tumor(tmp_path):
    from entropymap.cohort import case_features
    from entropymap.pipeline import run_case

    ph = make_phantom(shape=(12, 24, 24), lesion_radius_mm=4, seed=0)
    f = ph.save(tmp_path)
    run_case(CaseInputs(image=f.image, liver=f.liver), tmp_path / "case", PARAMS)
    feats = case_features(tmp_path / "case")
    assert math.isnan(feats["entropy_mean"]) and math.isnan(feats["hyper_fraction"])
    assert feats["reference_voxels"] == ph.liver.sum() and np.isfinite(feats["reference_global_entropy"])


def test_parquet_table_when_pyarrow_is_installed(cohort, second_run):
    pytest.importorskip("pyarrow")
    out = cohort["out"]
    parquet = pd.read_parquet(out / "features.parquet")
    assert list(parquet.columns) == list(pd.read_csv(out / "features.csv").columns)
    pd.testing.assert_frame_equal(parquet, pd.read_csv(out / "features.csv"), check_dtype=False)
