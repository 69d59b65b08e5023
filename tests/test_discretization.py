"""Discretisation formulas against hand-computed bins, IBSI and PyRadiomics conventions."""

from __future__ import annotations

import numpy as np
import pytest

from entropymap.discretization import discretize


def test_integer_hu_is_identity():
    hu = np.array([[[-1024, -1, 0, 1, 3071]]], np.int16)
    d = discretize(hu)
    assert d.levels.tolist() == hu.tolist()
    assert d.method == "bin_width" and d.bin_width == 1.0 and d.first_edge == -1024.0
    assert d.n_levels == 3071 + 1024 + 1


def test_fixed_width_anchored_at_zero_is_pyradiomics_edges():
    # PyRadiomics: edges at multiples of binWidth below the minimum; bins of width 25.
    x = np.array([-26.0, -25.0, -0.5, 0.0, 24.99, 25.0, 49.0])
    d = discretize(x, bin_width=25)
    assert d.levels.tolist() == [-2, -1, -1, 0, 0, 1, 1]
    assert d.first_edge == -50.0
    # Same partition as PyRadiomics' np.histogram with edges from floor(min/w)*w.
    edges = np.arange(np.floor(x.min() / 25) * 25, x.max() + 25 + 1e-9, 25)
    assert np.array_equal(np.digitize(x, edges) - 1, d.levels - d.levels.min())


def test_fixed_width_ibsi_anchor_at_range_minimum():
    # IBSI fixed bin size: floor((x - X_min) / w) + 1 with X_min the range minimum.
    x = np.array([-100.0, -99.0, -76.0, -75.0, 0.0, 150.0])
    d = discretize(x, bin_width=25, anchor=-100, value_range=(-100, 150))
    ibsi = np.floor((x + 100) / 25) + 1
    assert np.array_equal(d.levels + 1, ibsi)


def test_fixed_count_ibsi_formula_and_maximum_in_last_bin():
    x = np.array([1.0, 2.0, 3.0, 9.0])
    d = discretize(x, bin_count=4)
    # floor(4 * (x - 1) / 8): 0, 0.5, 1, 4 -> 0, 0, 1, last bin 3
    assert d.levels.tolist() == [0, 0, 1, 3]
    assert d.bin_width == 2.0 and d.first_edge == 1.0 and d.method == "bin_count"


def test_value_range_excludes_voxels():
    x = np.array([-1100.0, -50.0, 40.0, 2000.0])
    d = discretize(x, value_range=(-100, 300))
    assert d.included.tolist() == [False, True, True, False]
    assert d.describe()["excluded_voxels"] == 2


def test_float_fraction_bins_with_bin_width_one():
    # The bundled sample holds multiples of 1/8 HU: bin width 1 floors them.
    x = np.array([117.875, 118.0, 118.125, -0.125])
    assert discretize(x).levels.tolist() == [117, 118, 118, -1]


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"bin_width": 0}, ValueError, "positive"),
        ({"bin_width": -2}, ValueError, "positive"),
        ({"bin_count": 0}, ValueError, ">= 1"),
        ({"bin_width": 1, "bin_count": 4}, ValueError, "not both"),
        ({"value_range": (5, 1)}, ValueError, "lo < hi"),
        ({"value_range": (1e6, 2e6)}, ValueError, "no voxel"),
    ],
)
def test_bad_parameters(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        discretize(np.arange(10.0), **kwargs)


def test_nan_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="NaN"):
        discretize(np.array([1.0, np.nan]))


def test_input_not_modified():
    x = np.array([1.5, 2.5, -3.25])
    before = x.copy()
    discretize(x, bin_width=0.5)
    assert np.array_equal(x, before)


def test_out_of_range_levels_are_refused_clearly():
    with pytest.raises(ValueError, match="64-bit integer range"):
        discretize(np.array([2**64 - 1, 0], np.uint64))
    with pytest.raises(ValueError, match="integer range"):
        discretize(np.array([1.0, 2.0]), bin_width=1e-300)
    with pytest.raises(ValueError, match="finite"):
        discretize(np.array([1.0, 2.0]), anchor=float("nan"))
