"""Region statistics: hand-computed values, crossings and the IBSI phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import itk_array
from entropymap.stats import crossings, global_entropy, region_statistics, statistics_table


@pytest.mark.parametrize(
    "seq, n",
    [([1, 2, 3], 0), ([1, -1, 1, -1], 3), ([1, 0, -1], 1), ([0, 0, 0], 0), ([-2, 0, 0, -1, 5, 0, 3], 1), ([], 0)],
)
def test_crossings_hand_counts(seq, n):
    assert crossings(np.array(seq, dtype=float)) == n


def test_mean_crossings_use_raster_order():
    v = np.array([[[1.0, 3.0], [1.0, 3.0]]])  # raster order 1, 3, 1, 3; mean 2
    s = region_statistics(v, np.ones(v.shape, bool))
    assert s["mean_crossings"] == 3 and s["zero_crossings"] == 0


def test_hand_computed_moments():
    v = np.array([1.0, 2.0, 3.0, 4.0, np.nan]).reshape(1, 1, 5)
    s = region_statistics(v, np.ones(v.shape, bool), spacing=(2.0, 1.0, 0.5))
    assert s["n_voxels"] == 5 and s["n_nan"] == 1
    assert s["volume_ml"] == pytest.approx(5 * 1.0 / 1000)
    assert s["mean"] == 2.5 and s["median"] == 2.5
    assert s["variance"] == pytest.approx(1.25)  # no Bessel correction (IBSI)
    assert s["rms"] == pytest.approx(math.sqrt(7.5))
    assert s["p25"] == pytest.approx(1.75) and s["iqr"] == pytest.approx(1.5)
    assert s["skewness"] == pytest.approx(0.0) and s["kurtosis"] == pytest.approx(-1.36)


def test_ibsi_phantom_intensity_statistics(data_dir):
    folder = data_dir / "ibsi" / "ibsi_1_digital_phantom" / "nifti"
    img = itk_array(folder / "image" / "phantom.nii.gz")
    roi = itk_array(folder / "mask" / "mask.nii.gz") > 0
    s = region_statistics(img, roi)
    # IBSI reference manual, digital phantom, intensity-based statistics.
    assert round(s["mean"], 2) == 2.15
    assert round(s["variance"], 2) == 3.05
    assert round(s["skewness"], 2) == 1.08
    assert round(s["kurtosis"], 3) == -0.355
    assert s["median"] == 1 and s["iqr"] == 3
    assert s["max"] - s["min"] == 5
    assert round(s["rms"], 2) == 2.77
    assert round(global_entropy(img, roi, bin_width=1, base=2), 2) == 1.27


def test_statistics_table_is_tidy():
    v = np.arange(8.0).reshape(2, 2, 2)
    r = v > 3
    t = statistics_table({"entropy": v, "hu": -v}, {"tumor": r, "reference": ~r})
    assert list(t["region"]) == ["tumor", "tumor", "reference", "reference"]
    assert t.loc[0, "mean"] == 5.5 and t.loc[1, "mean"] == -5.5
