"""The synthetic phantom: reproducible, physical sizes on any spacing, heterogeneity that
the local-entropy map sees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entropymap.phantom import Lesion, make_phantom, phantom_from_lesions
from entropymap.pipeline import MapParams, compute_maps
from entropymap.regions import derived_reference

SMALL = dict(shape=(24, 40, 40), spacing=(1.5, 1.0, 1.0))


def test_same_seed_same_phantom_other_seed_other_noise():
    a = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=15, seed=4)
    b = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=15, seed=4)
    c = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=15, seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.tumor, b.tumor)
    assert not np.array_equal(a.image, c.image) and np.array_equal(a.tumor, c.tumor)
    assert a.image.dtype == np.int16 and a.tumor.dtype == bool and a.liver.dtype == bool


def test_heterogeneity_changes_only_the_textured_zone():
    plain = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=0, seed=2)
    rough = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=25, seed=2)
    assert np.array_equal(plain.textured, plain.tumor)  # no margin: texture = lesion
    assert np.array_equal(plain.image[~rough.textured], rough.image[~rough.textured])  # the noise is shared
    assert rough.image[rough.tumor].std() > 2 * plain.image[plain.tumor].std()


def test_intensities_and_noise_are_liver_like():
    ph = make_phantom(**SMALL, lesion_radius_mm=8, heterogeneity=0, noise_hu=12, contrast_hu=-30, seed=1)
    parenchyma = derived_reference(ph.liver, ph.tumor, ph.geometry.spacing, 3.0)
    assert ph.image[parenchyma].mean() == pytest.approx(100, abs=1.0)
    assert ph.image[parenchyma].std() == pytest.approx(12, rel=0.1)
    assert ph.image[ph.tumor].mean() == pytest.approx(70, abs=2.0)
    body = ~ph.liver
    assert ph.image[body].mean() == pytest.approx(40, abs=1.0)
    assert ph.tumor.any() and not (ph.tumor & ~ph.liver).any()


def test_anisotropic_spacing_gives_the_same_physical_lesion():
    r = 9.0
    ph = make_phantom(shape=(16, 48, 48), spacing=(2.5, 0.8, 0.8), lesion_radius_mm=r, seed=0)
    assert ph.geometry.spacing == (2.5, 0.8, 0.8)
    volume_mm3 = ph.tumor.sum() * 2.5 * 0.8 * 0.8
    assert volume_mm3 == pytest.approx(4 / 3 * math.pi * r**3, rel=0.08)
    zs, ys, xs = np.nonzero(ph.tumor)
    # extent between outermost voxel centres: the diameter less at most a voxel at each end
    for idx, s in ((zs, 2.5), (ys, 0.8), (xs, 0.8)):
        assert 2 * r - 2 * s <= (idx.max() - idx.min()) * s <= 2 * r


def test_local_entropy_in_the_lesion_rises_with_heterogeneity():
    means = []
    for h in (0.0, 10.0, 25.0):
        ph = make_phantom(**SMALL, lesion_radius_mm=9, heterogeneity=h, seed=3)
        ref = derived_reference(ph.liver, ph.tumor, ph.geometry.spacing, 3.0)
        res = compute_maps(ph.image, ph.geometry.spacing, MapParams(kernel=5, n_threads=1), tumor=ph.tumor,
                           reference=ref)
        means.append(float(res.raw[ph.tumor].mean()))
        assert 3.4 < res.reference_mean < 3.8  # ~10 HU noise in 125 voxels: the paper's liver level
    assert means[0] < means[1] < means[2] and means[2] - means[0] > 0.2


def test_texture_margin_reaches_past_the_mask_by_the_margin():
    ph = make_phantom(**SMALL, lesion_radius_mm=6, heterogeneity=20, texture_margin_mm=4, seed=0)
    centre = (np.array(SMALL["shape"]) - 1) / 2 * np.array(SMALL["spacing"])
    zyx = np.stack(np.nonzero(ph.textured), axis=1) * np.array(SMALL["spacing"])
    radius = np.linalg.norm(zyx - centre, axis=1)
    assert radius.max() <= 6 + 4 and radius.max() > 6 + 4 - 1.0  # out to the margin, no farther
    assert ph.textured[ph.tumor].all()
    assert np.array_equal(ph.tumor, make_phantom(**SMALL, lesion_radius_mm=6, seed=0).tumor)  # the mask stays


def test_several_lesions_and_their_centres():
    lesions = [Lesion(radius_mm=5, center_mm=(18.0, 12.0, 12.0), heterogeneity=20),
               Lesion(radius_mm=4, center_mm=(18.0, 27.0, 27.0), contrast_hu=40)]
    ph = phantom_from_lesions(lesions, shape=(24, 40, 40), spacing=(1.5, 1.0, 1.0), seed=9)
    assert ph.tumor[12, 12, 12] and ph.tumor[12, 27, 27] and not ph.tumor[12, 20, 20]
    assert ph.image[12, 26:29, 26:29].mean() > 120  # the hyperdense one
    assert ph.lesions == tuple(lesions)


@pytest.mark.parametrize(
    "kwargs, words",
    [(dict(heterogeneity=-1), "heterogeneity"), (dict(lesion_radius_mm=0), "radius"),
     (dict(lesion_radius_mm=(1, 2)), "radius"), (dict(noise_hu=-2), "noise_hu"),
     (dict(texture_scale_mm=0), "texture_scale_mm"), (dict(spacing=(1, 0, 1)), "spacing")],
)
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        make_phantom(**{**SMALL, **kwargs})


def test_save_writes_the_grid_and_masks(tmp_path):
    from entropymap import io

    ph = make_phantom(shape=(12, 20, 24), spacing=(2.5, 0.8, 0.7), lesion_radius_mm=4, seed=0)
    files = ph.save(tmp_path / "ph", stem="case")
    vol = io.read_image(files.image)
    assert np.array_equal(vol.array, ph.image)
    assert vol.geometry.matches(ph.geometry)
    assert np.array_equal(io.read_mask(files.tumor, vol.geometry), ph.tumor)
    assert np.array_equal(io.read_mask(files.liver, vol.geometry), ph.liver)
    with pytest.raises(FileExistsError):
        ph.save(tmp_path / "ph", stem="case")


def test_pattern_families_texture_the_right_part():
    from scipy import ndimage

    from entropymap.phantom import PATTERN_FAMILIES, pattern_phantom

    kw = dict(radius_mm=10, shape=(32, 32, 32), spacing=(1.0, 1.0, 1.0), seed=1, rim_mm=3.0)
    ph = {f: pattern_phantom(f, **kw) for f in PATTERN_FAMILIES}
    tumor = ph["homogeneous"].tumor
    depth = ndimage.distance_transform_edt(tumor)
    assert all(np.array_equal(p.tumor, tumor) for p in ph.values())
    assert np.array_equal(ph["homogeneous"].textured, tumor)
    assert np.array_equal(ph["peripheral rim"].textured, tumor & (depth <= 3.0))
    assert 0.2 < ph["inhomogeneous"].textured.sum() / tumor.sum() < 0.3  # blob_fraction 0.25
    gap = pattern_phantom("peripheral rim", rim_gap_deg=90, **kw)
    assert 0.7 < gap.textured.sum() / ph["peripheral rim"].textured.sum() < 0.8
    assert (ph["mixed"].textured >= ph["peripheral rim"].textured).all()
    with pytest.raises(ValueError, match="pattern"):
        pattern_phantom("ring", **kw)
