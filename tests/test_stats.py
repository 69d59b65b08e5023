"""Region statistics: hand-computed values, crossings and the IBSI phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import itk_array
from entropymap.normalize import HYPER, HYPO, ISO
from entropymap.stats import (
    GLOBAL_ENTROPY_PRESETS,
    STATISTICS,
    HistogramBins,
    class_fractions,
    crossings,
    global_entropy,
    region_statistics,
    statistics_table,
)


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
    assert s["p10"] == 1 and s["p90"] == 4
    assert s["max"] - s["min"] == 5
    assert round(s["rms"], 2) == 2.77
    assert round(global_entropy(img, roi, bin_width=1, base=2), 2) == 1.27
    assert round(GLOBAL_ENTROPY_PRESETS["ibsi"].entropy(img, roi), 2) == 1.27


def test_statistics_table_is_tidy():
    v = np.arange(8.0).reshape(2, 2, 2)
    r = v > 3
    t = statistics_table({"entropy": v, "hu": -v}, {"tumor": r, "reference": ~r})
    assert list(t["region"]) == ["tumor", "tumor", "reference", "reference"]
    assert t.loc[0, "mean"] == 5.5 and t.loc[1, "mean"] == -5.5


def test_percentiles_ten_and_ninety_interpolate_linearly():
    v = np.arange(11.0).reshape(1, 1, 11)  # 0..10: the k-th percentile is k / 10
    s = region_statistics(v, np.ones(v.shape, bool))
    assert s["p10"] == pytest.approx(1.0) and s["p90"] == pytest.approx(9.0) and s["p5"] == pytest.approx(0.5)
    assert list(STATISTICS).index("p10") < list(STATISTICS).index("p90")


def test_crossings_on_a_tiny_region_in_raster_order():
    # 2 slices x 2 rows x 3 columns; the region skips two voxels. Raster order (x fastest):
    # 1, -1, 2, | 0, -3, | 4, -5  ->  signs + - + (0) - + -  ->  5 zero crossings.
    v = np.array([[[1.0, -1.0, 2.0], [0.0, 9.0, -3.0]], [[4.0, 9.0, -5.0], [7.0, 7.0, 7.0]]])
    region = np.array([[[1, 1, 1], [1, 0, 1]], [[1, 0, 1], [0, 0, 0]]], bool)
    s = region_statistics(v, region)
    assert s["zero_crossings"] == 5
    # mean -2/7: centred values -> signs + - + + - + -  -> 5 mean crossings
    assert s["mean_crossings"] == 5


def test_class_fractions_count_only_classified_voxels():
    classes = np.array([[[HYPO, ISO, HYPER, HYPER, 0, HYPER]]], np.uint8)
    region = np.array([[[1, 1, 1, 1, 1, 0]]], bool)
    f = class_fractions(classes, region)
    assert f == {"hypo_fraction": 0.25, "iso_fraction": 0.25, "hyper_fraction": 0.5}
    none = class_fractions(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1, 3), bool))
    assert all(math.isnan(x) for x in none.values())
    with pytest.raises(ValueError, match="does not match"):
        class_fractions(classes, np.ones((1, 1, 5), bool))


def test_global_entropy_lifex_preset_uses_10_hu_bins_and_log10():
    hu = np.array([0.0, 6.0, 12.0, 18.0]).reshape(1, 1, 4)
    region = np.ones(hu.shape, bool)
    # edges at -1000 + 10 k: bins [0, 10), [10, 20) hold two values each
    assert GLOBAL_ENTROPY_PRESETS["lifex"].entropy(hu, region) == pytest.approx(math.log10(2))
    # edges at -995 + 10 k: bins [-5, 5), [5, 15), [15, 25) hold 1, 2, 1 values
    shifted = HistogramBins(bin_width=10, anchor=-995, base=10).entropy(hu, region)
    assert shifted == pytest.approx(-(0.5 * math.log10(0.5) + 2 * 0.25 * math.log10(0.25)))
    assert HistogramBins(bin_width=100, anchor=-1000, base=10).entropy(hu, region) == 0.0
    assert math.isnan(global_entropy(hu, np.zeros(hu.shape, bool)))


@pytest.mark.parametrize(
    "bins, words",
    [(HistogramBins(bin_width=0), "bin width"), (HistogramBins(base=1.0), "log base"),
     (HistogramBins(anchor=math.inf), "anchor")],
)
def test_histogram_bins_are_validated(bins, words):
    with pytest.raises(ValueError, match=words):
        bins.validate()
    with pytest.raises(ValueError, match=words):
        global_entropy(np.ones((1, 1, 2)), np.ones((1, 1, 2), bool), bin_width=bins.bin_width, anchor=bins.anchor,
                       base=bins.base)
