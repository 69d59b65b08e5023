"""Smoothing, normalisation, classes, and the region helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from entropymap.normalize import HYPER, HYPO, ISO, classify, normalize, reference_mean, smooth
from entropymap.regions import bounding_box, derived_reference, kernel_from_mm


def test_smooth_2d_is_per_slice_gaussian(rng):
    v = rng.random((4, 20, 22))
    got = smooth(v, sigma=1.0)
    for z in range(4):  # in-plane only: each slice on its own
        want = ndimage.gaussian_filter(v[z], 1.0, mode="constant") / ndimage.gaussian_filter(
            np.ones_like(v[z]), 1.0, mode="constant")
        np.testing.assert_allclose(got[z], want, rtol=1e-6, atol=1e-6)


def test_smooth_3d_differs_from_2d(rng):
    v = rng.random((5, 12, 12))
    assert not np.allclose(smooth(v, mode="3d"), smooth(v, mode="2d"))


def test_smooth_constant_stays_constant_even_at_borders_and_nan():
    v = np.full((3, 10, 10), 2.5)
    v[1, 3:6, 3:6] = np.nan
    s = smooth(v, sigma=1.5, mode="3d")
    finite = np.isfinite(v)
    np.testing.assert_allclose(s[finite], 2.5, rtol=1e-6)  # not dragged down by the NaN or the faces
    assert np.array_equal(np.isnan(s), ~finite)  # the NaN area does not spread


def test_smooth_mm_equals_voxel_sigma_over_spacing(rng):
    v = rng.random((6, 16, 18))
    spacing = (5.0, 0.7, 0.8)
    mm = smooth(v, sigma=2.0, mode="3d", unit="mm", spacing=spacing)
    # The voxel path with per-axis sigma = 2 mm / spacing:
    sig = np.array([2.0 / 5.0, 2.0 / 0.7, 2.0 / 0.8])
    num = ndimage.gaussian_filter(v, sig, mode="constant")
    den = ndimage.gaussian_filter(np.ones_like(v), sig, mode="constant")
    np.testing.assert_allclose(mm, num / den, rtol=1e-5, atol=1e-6)


def test_reference_mean_and_normalize():
    v = np.arange(24, dtype=float).reshape(2, 3, 4) + 1
    region = np.zeros(v.shape, bool)
    region[0, 0, :2] = True  # values 1 and 2
    m = reference_mean(v, region)
    assert m == 1.5
    n = normalize(v, m)
    assert math.isclose(float(n[region].mean()), 1.0, rel_tol=1e-7)


@pytest.mark.parametrize(
    "values, region, words",
    [
        (np.ones((2, 2, 2)), np.zeros((2, 2, 2), bool), "empty"),
        (np.zeros((2, 2, 2)), np.ones((2, 2, 2), bool), "cannot normalise"),
        (np.full((2, 2, 2), np.nan), np.ones((2, 2, 2), bool), "no voxel with a computed"),
        (np.ones((2, 2, 2)), np.ones((2, 2, 3), bool), "does not match"),
    ],
)
def test_reference_mean_errors(values, region, words):
    with pytest.raises(ValueError, match=words):
        reference_mean(values, region)


def test_classify_thresholds():
    v = np.array([[[0.5, 0.9, 1.0, 1.1, 1.2, np.nan]]])
    c = classify(v)
    assert c.tolist() == [[[HYPO, ISO, ISO, ISO, HYPER, 0]]]
    assert classify(v, hypo_below=1.0, hyper_above=1.0).tolist() == [[[HYPO, HYPO, ISO, HYPER, HYPER, 0]]]
    with pytest.raises(ValueError):
        classify(v, hypo_below=1.2, hyper_above=1.1)


@pytest.mark.parametrize(
    "mm, spacing, want",
    [(5.0, (1, 1, 1), (5, 5, 5)), (5.0, (5.0, 0.7, 0.7), (1, 7, 7)), ((10, 5, 5), (2.5, 1, 1), (5, 5, 5)),
     (1.0, (3, 3, 3), (1, 1, 1)), (6.0, (2, 2, 2), (3, 3, 3))],
)
def test_kernel_from_mm(mm, spacing, want):
    assert kernel_from_mm(mm, spacing) == want


def test_derived_reference_respects_anisotropic_distance():
    liver = np.ones((5, 1, 30), bool)
    tumor = np.zeros_like(liver)
    tumor[2, 0, 10] = True
    ref = derived_reference(liver, tumor, spacing=(4.0, 1.0, 1.0), margin_mm=5.0)
    # Along x (1 mm): voxels at distance <= 5 mm, i.e. x in 5..15, are removed.
    assert ref[2, 0, :].tolist() == [x < 5 or x > 15 for x in range(30)]
    # Along z (4 mm): z = 1 and 3 are 4 mm away (removed at x = 10), z = 0 and 4 are 8 mm away (kept).
    assert [bool(ref[z, 0, 10]) for z in range(5)] == [True, False, False, False, True]


def test_bounding_box():
    m = np.zeros((10, 10, 10), bool)
    m[4, 5, 6] = True
    assert bounding_box(m, (1, 2, 10), m.shape) == (slice(3, 6), slice(3, 8), slice(0, 10))
