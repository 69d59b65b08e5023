"""Many cases on the local process pool and on a Dask cluster; failures are recorded."""

from __future__ import annotations

import numpy as np
import pytest

from entropymap.executors import map_jobs
from entropymap.pipeline import CaseInputs, MapParams, run_case
from entropymap.sample import sample_case


def _jobs(tmp_path, tag):
    case = sample_case()
    params = MapParams(kernel=3, smooth_sigma=0)
    return [
        ("good", (CaseInputs(image=case.image, tumor=case.labels, tumor_label=2),
                  tmp_path / f"{tag}-good", params), {}),
        ("missing", (CaseInputs(image=tmp_path / "nope.nii.gz"), tmp_path / f"{tag}-missing", params), {}),
    ]


def _read(path):
    from entropymap import io

    return io.read_image(path).array


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("jobs")
    seen = []
    outcomes = map_jobs(run_case, _jobs(tmp_path, "local"), n_workers=2, progress=seen.append)
    return tmp_path, outcomes, seen


def test_local_pool_records_failures_and_finishes_the_rest(local_run):
    tmp_path, outcomes, seen = local_run
    assert [o.key for o in outcomes] == ["good", "missing"]
    good, missing = outcomes
    assert good.ok and good.value["outputs"]["raw"] == "entropy.nii.gz"
    assert not missing.ok and "nope.nii.gz" in missing.error and missing.value is None
    assert len(seen) == 2
    assert (tmp_path / "local-good" / "entropy.nii.gz").exists()
    assert not (tmp_path / "local-missing").exists()


def test_dask_cluster_gives_the_same_results(local_run):
    distributed = pytest.importorskip("dask.distributed")
    tmp_path, local, _ = local_run
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = map_jobs(run_case, _jobs(tmp_path, "dask"), scheduler=cluster.scheduler_address)
    assert [(o.key, o.ok) for o in remote] == [(o.key, o.ok) for o in local] == [("good", True), ("missing", False)]
    assert np.array_equal(_read(tmp_path / "dask-good" / "entropy.nii.gz"),
                          _read(tmp_path / "local-good" / "entropy.nii.gz"))
    assert "nope.nii.gz" in remote[1].error


def test_job_keys_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        map_jobs(print, [("a", (), {}), ("a", (), {})])
