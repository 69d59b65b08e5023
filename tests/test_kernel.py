"""The local-entropy kernel against a brute-force oracle, analytic values,
scikit-image and the IBSI digital phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import entropymap as em
from conftest import itk_array
from oracle import entropy_of_values, local_entropy_bruteforce

DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64]
KERNELS = [1, 3, 5, 7, (3, 5, 5), (1, 3, 5)]
TOL = 1e-5
RUNS, COLUMNS, PORTABLE = 1, 2, 3  # _core's driver codes (COLUMNS is vectorised where the CPU can)


def random_levels(rng, shape, dtype, nlevels=6):
    """Random levels of `dtype` near the type's edge of range, so offsets are exercised."""
    info = np.iinfo(dtype)
    start = info.min if info.min < 0 else max(info.max - 40, 0)
    vals = rng.integers(0, nlevels, size=shape) * 7 + start
    return vals.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", ["cube", "ball"])
def test_matches_oracle(rng, dtype, kernel, shape):
    levels = random_levels(rng, (6, 7, 9), dtype)
    fp = em.make_footprint(kernel, shape)
    got = em.local_entropy(levels, kernel=kernel, shape=shape)
    assert got.dtype == np.float32 and got.shape == levels.shape
    np.testing.assert_allclose(got, local_entropy_bruteforce(levels, fp), rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32])
@pytest.mark.parametrize("kernel", [3, 5, (3, 5, 5)])
@pytest.mark.parametrize("shape", ["cube", "ball"])
@pytest.mark.parametrize("masked_kernel", [False, True])
def test_mask_matches_oracle(rng, dtype, kernel, shape, masked_kernel):
    levels = random_levels(rng, (7, 8, 9), dtype)
    mask = rng.random(levels.shape) < 0.4
    fp = em.make_footprint(kernel, shape)
    got = em.local_entropy(levels, kernel=kernel, shape=shape, mask=mask, masked_kernel=masked_kernel)
    want = local_entropy_bruteforce(levels, fp, mask=mask, masked_kernel=masked_kernel)
    assert np.array_equal(np.isnan(got), ~mask)
    np.testing.assert_allclose(got[mask], want[mask], rtol=0, atol=TOL)


@pytest.mark.parametrize("vol_shape", [(1, 1, 13), (2, 3, 4), (1, 1, 1), (13, 1, 1), (3, 1, 2)])
@pytest.mark.parametrize("kernel", [5, 7, (3, 5, 5)])
def test_volume_smaller_than_kernel(rng, vol_shape, kernel):
    levels = random_levels(rng, vol_shape, np.int16)
    got = em.local_entropy(levels, kernel=kernel)
    want = local_entropy_bruteforce(levels, em.make_footprint(kernel))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_custom_footprint_matches_oracle(rng):
    levels = random_levels(rng, (6, 6, 8), np.int16)
    fp = rng.random((3, 5, 5)) < 0.5  # holes, runs that do not include the centre
    fp[1, 2, 2] = True
    got = em.local_entropy(levels, footprint=fp)
    np.testing.assert_allclose(got, local_entropy_bruteforce(levels, fp), rtol=0, atol=TOL)


@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 1, 7)])
def test_constant_volume_is_exactly_zero(kernel):
    levels = np.full((5, 6, 7), -1000, np.int16)
    got = em.local_entropy(levels, kernel=kernel)
    assert np.all(got == 0.0)


def test_kernel_one_is_zero(rng):
    levels = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(np.int16)
    assert np.all(em.local_entropy(levels, kernel=1) == 0.0)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_equally_frequent_levels_give_m_ln2(m):
    # A row of 2^m distinct levels; a kernel twice as long covers all of it from every voxel.
    n = 2**m
    levels = np.arange(n, dtype=np.int16).reshape(1, 1, n)
    got = em.local_entropy(levels, kernel=(1, 1, 2 * n + 1))
    np.testing.assert_allclose(got, m * math.log(2), rtol=0, atol=1e-6)
    # Each level twice: still m ln 2.
    levels2 = np.repeat(levels, 2, axis=1)
    got2 = em.local_entropy(levels2, kernel=(1, 3, 2 * n + 1))
    np.testing.assert_allclose(got2, m * math.log(2), rtol=0, atol=1e-6)
    bits = em.local_entropy(levels, kernel=(1, 1, 2 * n + 1), base=2)
    np.testing.assert_allclose(bits, m, rtol=0, atol=1e-6)


def test_three_two_alternation():
    # Along x: a a a b b a a a b b ... any 5 consecutive voxels hold 3 a and 2 b.
    pattern = np.array([7, 7, 7, 2, 2], np.uint8)
    levels = np.broadcast_to(np.tile(pattern, 6), (9, 9, 30)).copy()
    got = em.local_entropy(levels, kernel=5)
    interior = got[2:-2, 2:-2, 2:-2]
    np.testing.assert_allclose(interior, 0.673012, atol=1e-6)
    bits = em.local_entropy(levels, kernel=5, base=2)[2:-2, 2:-2, 2:-2]
    np.testing.assert_allclose(bits, 0.970951, atol=1e-6)
    hartley = em.local_entropy(levels, kernel=5, base=10)[2:-2, 2:-2, 2:-2]
    np.testing.assert_allclose(hartley, 0.673012 / math.log(10), atol=1e-6)


# --- scikit-image ---------------------------------------------------------------------


def _skimage_entropy_nats(img, footprint, mask=None):
    rank = pytest.importorskip("skimage.filters.rank")
    return rank.entropy(img, footprint, mask=mask) * math.log(2)


@pytest.mark.filterwarnings("ignore:Bad rank filter performance:UserWarning")
def test_matches_skimage_cube(rng):
    img = rng.integers(0, 3000, size=(12, 20, 24)).astype(np.uint16)
    img[:, :, :6] = img[:, :, :6] // 500  # a region with few levels
    fp = np.ones((5, 5, 5), np.uint8)
    got = em.local_entropy(img, kernel=5)
    np.testing.assert_allclose(got, _skimage_entropy_nats(img, fp), rtol=0, atol=TOL)


def test_matches_skimage_ball(rng):
    morphology = pytest.importorskip("skimage.morphology")
    img = rng.integers(0, 40, size=(10, 14, 16)).astype(np.uint16)
    ball = morphology.ball(2).astype(np.uint8)
    assert np.array_equal(em.make_footprint(5, "ball"), ball.astype(bool))
    got = em.local_entropy(img, kernel=5, shape="ball")
    np.testing.assert_allclose(got, _skimage_entropy_nats(img, ball), rtol=0, atol=TOL)


def test_matches_skimage_with_mask(rng):
    img = rng.integers(0, 50, size=(10, 16, 18)).astype(np.uint16)
    mask = np.zeros(img.shape, bool)
    mask[2:9, 3:12, 4:15] = rng.random((7, 9, 11)) < 0.7
    fp = np.ones((5, 5, 5), np.uint8)
    # skimage's mask restricts the histogram and still writes every voxel: compare on the mask.
    want = _skimage_entropy_nats(img, fp, mask=mask.astype(np.uint8))
    got = em.local_entropy(img, kernel=5, mask=mask, masked_kernel=True)
    np.testing.assert_allclose(got[mask], want[mask], rtol=0, atol=TOL)


# --- IBSI digital phantom -------------------------------------------------------------


@pytest.fixture(scope="module")
def ibsi(data_dir):
    folder = data_dir / "ibsi" / "ibsi_1_digital_phantom" / "nifti"
    image = itk_array(folder / "image" / "phantom.nii.gz")
    mask = itk_array(folder / "mask" / "mask.nii.gz") > 0
    return image, mask


def test_ibsi_phantom_global_entropy(ibsi):
    image, mask = ibsi
    # A window that covers the whole 4x4x5 phantom from every voxel is the ROI histogram.
    got = em.local_entropy(image, kernel=(9, 9, 11), mask=mask, masked_kernel=True, base=2)
    assert np.allclose(got[mask], 1.2656, atol=5e-5)
    assert round(float(got[mask][0]), 2) == 1.27  # the published IBSI value
    assert math.isclose(entropy_of_values(image[mask], 2), float(got[mask][0]), abs_tol=1e-6)


def test_ibsi_phantom_local_values(ibsi):
    image, mask = ibsi
    h = em.local_entropy(image, kernel=5)
    assert math.isclose(h[0, 0, 0], 1.189238, abs_tol=1e-6)
    assert math.isclose(h[3, 3, 4], 0.722498, abs_tol=1e-6)
    hm = em.local_entropy(image, kernel=5, mask=mask, masked_kernel=True)
    assert math.isclose(hm[0, 0, 0], 1.087847, abs_tol=1e-6)


# --- determinism and memory layout ----------------------------------------------------


def test_thread_count_does_not_change_bytes(rng):
    levels = rng.integers(-200, 300, size=(17, 23, 29)).astype(np.int16)
    mask = rng.random(levels.shape) < 0.5
    for kwargs in ({}, {"mask": mask}, {"mask": mask, "masked_kernel": True}, {"shape": "ball"}):
        maps = [em.local_entropy(levels, n_threads=t, **kwargs) for t in (1, 2, 3)]
        assert maps[0].tobytes() == maps[1].tobytes() == maps[2].tobytes()


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.asfortranarray(a),
        lambda a: a[:, ::-1, :],
        lambda a: np.ascontiguousarray(a[:, :, ::2])[:, :, :],
        lambda a: a.astype(a.dtype.newbyteorder(">")),
    ],
    ids=["fortran", "reversed-view", "strided", "big-endian"],
)
def test_layouts_are_accepted(rng, make):
    base = rng.integers(0, 30, size=(6, 8, 10)).astype(np.int16)
    arr = make(base)
    want = em.local_entropy(np.ascontiguousarray(arr).astype(np.int16))
    np.testing.assert_array_equal(em.local_entropy(arr), want)


def test_input_is_not_modified(rng):
    levels = rng.integers(0, 30, size=(6, 8, 10)).astype(np.int16)
    mask = rng.random(levels.shape) < 0.5
    before, mbefore = levels.copy(), mask.copy()
    em.local_entropy(levels, mask=mask, masked_kernel=True)
    assert np.array_equal(levels, before) and np.array_equal(mask, mbefore)


def test_full_uint16_range_is_accepted():
    levels = np.array([0, 65535, 1, 65534] * 5, np.uint16).reshape(1, 4, 5)
    got = em.local_entropy(levels, kernel=(1, 1, 1))
    assert np.all(got == 0)


def test_integer_mask_counts_nonzero(rng):
    levels = rng.integers(0, 9, size=(5, 6, 7)).astype(np.uint8)
    mask = (rng.random(levels.shape) < 0.5).astype(np.uint8) * 255
    a = em.local_entropy(levels, mask=mask, masked_kernel=True)
    b = em.local_entropy(levels, mask=mask > 0, masked_kernel=True)
    np.testing.assert_array_equal(a, b)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    levels=hnp.arrays(np.int16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=7),
                      elements=st.integers(-5, 5)),
    k=st.sampled_from([1, 3, 5, (1, 3, 5), (5, 1, 3)]),
    shape=st.sampled_from(["cube", "ball"]),
)
def test_property_bounds_and_relabelling(levels, k, shape):
    h = em.local_entropy(levels, kernel=k, shape=shape)
    fp = em.make_footprint(k, shape)
    assert np.all(h >= 0)
    assert np.all(h <= math.log(fp.sum()) + 1e-6)
    # Entropy depends only on which voxels share a level, not on the level values.
    relabel = (levels.astype(np.int32) * 37 + 1000).astype(np.int32)
    np.testing.assert_array_equal(em.local_entropy(relabel, kernel=k, shape=shape), h)


@settings(max_examples=60, deadline=None)
@given(
    dims=st.tuples(*[st.integers(1, 12)] * 3),
    kernel=st.tuples(*[st.sampled_from([1, 3, 5, 7, 9])] * 3),
    nlevels=st.integers(1, 256),
    masks=st.sampled_from(["none", "out", "count", "both"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_every_driver_gives_the_same_bits(dims, kernel, nlevels, masks, seed):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, nlevels, size=dims).astype(np.uint8 if nlevels <= 128 else np.int16)
    mask = rng.random(dims) < 0.6
    out = mask if masks in ("out", "both") else None
    count = mask if masks in ("count", "both") else None
    maps = [_core_map(levels, kernel, a, out, count, threads=2) for a in (RUNS, COLUMNS, PORTABLE)]
    assert maps[0].tobytes() == maps[1].tobytes() == maps[2].tobytes()


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "levels, kwargs, exc, words",
    [
        (np.zeros((4, 4), np.int16), {}, ValueError, "3-D"),
        (np.zeros((2, 2, 2, 2), np.int16), {}, ValueError, "3-D"),
        (np.zeros((3, 3, 3), np.float32), {}, TypeError, "Discretise"),
        (np.full((3, 3, 3), np.nan), {}, TypeError, "NaN"),
        (np.zeros((0, 3, 3), np.int16), {}, ValueError, "empty"),
        (np.zeros((3, 3, 3), np.uint64), {}, TypeError, "unsupported dtype"),
        (np.zeros((3, 3, 3), np.complex64), {}, TypeError, "Discretise"),
        (np.zeros((3, 3, 3), np.int16), {"kernel": 4}, ValueError, "odd"),
        (np.zeros((3, 3, 3), np.int16), {"kernel": 0}, ValueError, "odd"),
        (np.zeros((3, 3, 3), np.int16), {"kernel": -3}, ValueError, "odd"),
        (np.zeros((3, 3, 3), np.int16), {"kernel": (3, 3)}, ValueError, "3 sizes"),
        (np.zeros((3, 3, 3), np.int16), {"kernel": 2.5}, ValueError, "odd"),
        (np.zeros((3, 3, 3), np.int16), {"shape": "star"}, ValueError, "shape"),
        (np.zeros((3, 3, 3), np.int16), {"base": 3}, ValueError, "base"),
        (np.zeros((3, 3, 3), np.int16), {"n_threads": 0}, ValueError, "n_threads"),
        (np.zeros((3, 3, 3), np.int16), {"mask": np.ones((3, 3, 4), bool)}, ValueError, "does not match"),
        (np.zeros((3, 3, 3), np.int16), {"mask": np.zeros((3, 3, 3), bool)}, ValueError, "empty"),
        (np.zeros((3, 3, 3), np.int16), {"mask": np.ones((3, 3, 3), np.float32)}, TypeError, "boolean"),
        (np.zeros((3, 3, 3), np.int16), {"masked_kernel": True}, ValueError, "needs a mask"),
        (np.array([0, 70000], np.int32).reshape(1, 1, 2), {}, ValueError, "coarser bins"),
        (np.zeros((3, 3, 3), np.int16), {"footprint": np.ones((2, 3, 3), bool)}, ValueError, "odd"),
        (np.zeros((3, 3, 3), np.int16), {"footprint": np.zeros((3, 3, 3), bool)}, ValueError, "empty"),
    ],
)
def test_bad_input_is_refused_clearly(levels, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        em.local_entropy(levels, **kwargs)


def test_openmp_is_reported():
    assert isinstance(em.openmp_enabled(), bool)


def test_count_mask_restricts_histograms_only(rng):
    levels = rng.integers(0, 5, size=(6, 7, 8)).astype(np.int16)
    counted = rng.random(levels.shape) < 0.6
    fp = em.make_footprint(3)
    got = em.local_entropy(levels, kernel=3, count_mask=counted)
    # Oracle: masked kernel over `counted`, but evaluated at every voxel.
    centre = np.array(fp.shape) // 2
    offs = np.argwhere(fp) - centre
    for idx in np.ndindex(*levels.shape):
        pos = offs + np.array(idx)
        pos = pos[np.all((pos >= 0) & (pos < levels.shape), axis=1)]
        pos = pos[counted[tuple(pos.T)]]
        want = entropy_of_values(levels[tuple(pos.T)])
        if np.isnan(want):
            assert np.isnan(got[idx])
        else:
            assert abs(got[idx] - want) <= TOL


# --- the two drivers (runs along x; column histograms for boxes with few levels) -------


def _core_map(levels, kernel, algorithm, mask=None, count=None, threads=1):
    from entropymap import _core

    fp = em.make_footprint(kernel).view(np.uint8)
    vmin = int(levels.min())
    nb = int(levels.max()) - vmin + 1
    m = None if mask is None else np.ascontiguousarray(mask).view(np.uint8)
    c = None if count is None else np.ascontiguousarray(count).view(np.uint8)
    return _core.local_entropy(np.ascontiguousarray(levels), fp, vmin, nb, 1.0, m, c, threads, algorithm)


@pytest.mark.parametrize("vol_shape", [(6, 7, 9), (1, 1, 13), (2, 3, 4), (5, 40, 70), (3, 1, 1)])
@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5, 7), (7, 1, 3)])
@pytest.mark.parametrize("masks", ["none", "out", "count", "both"])
def test_drivers_agree_bitwise_and_with_oracle(rng, vol_shape, kernel, masks):
    levels = rng.integers(-3, 4, size=vol_shape).astype(np.int16)
    mask = rng.random(vol_shape) < 0.5
    mask.flat[0] = True
    out = mask if masks in ("out", "both") else None
    count = mask if masks in ("count", "both") else None
    runs = _core_map(levels, kernel, RUNS, out, count)
    cols = _core_map(levels, kernel, COLUMNS, out, count, threads=2)
    portable = _core_map(levels, kernel, PORTABLE, out, count, threads=2)
    assert runs.tobytes() == cols.tobytes() == portable.tobytes()
    if vol_shape[1] < 40:  # the oracle is slow
        want = local_entropy_bruteforce(levels, em.make_footprint(kernel), mask=out,
                                        masked_kernel=count is not None and out is not None)
        if masks == "count":  # counting restricted, output everywhere
            return
        np.testing.assert_allclose(runs, want, rtol=0, atol=TOL)


# The vector step's cases: 1 to 4 registers of 64 levels (and their edges), windows of
# <= 127 voxels (one permute per byte plane) and of 128..255 (two and a blend).
@pytest.mark.parametrize("nlevels", [1, 2, 63, 64, 65, 128, 129, 200, 256])
@pytest.mark.parametrize("kernel", [3, 5, (5, 5, 7), (1, 15, 15)])
def test_vector_step_matches_portable_and_runs(rng, nlevels, kernel):
    levels = (rng.integers(0, nlevels, size=(9, 21, 40)) - 17).astype(np.int16)
    levels.flat[0], levels.flat[-1] = -17, nlevels - 18  # the full range occurs
    mask = rng.random(levels.shape) < 0.7
    for out, count in [(None, None), (mask, None), (None, mask), (mask, mask)]:
        maps = [_core_map(levels, kernel, a, out, count, threads=2) for a in (RUNS, COLUMNS, PORTABLE)]
        assert maps[0].tobytes() == maps[1].tobytes() == maps[2].tobytes()
    # and against the oracle away from masks, on a slice (the oracle is slow)
    fp = em.make_footprint(kernel)
    want = local_entropy_bruteforce(levels[:, :8, :], fp)
    got = _core_map(levels[:, :8, :], kernel, COLUMNS)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_vector_step_counts_up_to_255_in_one_bin():
    # A constant window of 225 voxels: counts at the top of the byte range, entropy exactly 0,
    # and next to it two levels in a 3:2 ratio inside the window.
    levels = np.zeros((1, 15, 40), np.uint8)
    assert not _core_map(levels, (1, 15, 15), COLUMNS).any()
    levels[:, :, ::5] = 1
    levels[:, :, 1::5] = 1
    got = _core_map(levels, (1, 15, 15), COLUMNS)
    assert got[0, 7, 20] == pytest.approx(0.673012, abs=1e-6)
    assert got.tobytes() == _core_map(levels, (1, 15, 15), RUNS).tobytes()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
def test_runs_driver_spans_the_whole_type(rng, dtype):
    # 8- and 16-bit levels index the runs driver's histogram by their bit pattern: levels at
    # both ends of the type (which wrap around in that pattern) must still count as distinct.
    info = np.iinfo(dtype)
    choices = np.array([info.min, info.min + 1, -1 if info.min < 0 else 1, 0, info.max - 1, info.max])
    levels = rng.choice(choices, size=(5, 6, 7)).astype(dtype)
    for kernel in (3, (1, 3, 5)):
        got = _core_map(levels, kernel, RUNS)
        np.testing.assert_allclose(got, local_entropy_bruteforce(levels, em.make_footprint(kernel)),
                                   rtol=0, atol=TOL)


def test_tiles_of_rows_match_the_whole_map_on_every_driver(rng):
    from entropymap import _core

    levels = rng.integers(0, 90, size=(7, 23, 31)).astype(np.int16)
    fp = em.make_footprint(5).view(np.uint8)
    for algorithm in (RUNS, COLUMNS, PORTABLE):
        whole = _core.local_entropy(levels, fp, 0, 90, 1.0, None, None, 2, algorithm)
        out = np.full(levels.shape, np.nan, np.float32)
        for rows in [(0, 3, 0, 23), (3, 7, 0, 10), (3, 7, 10, 23)]:
            _core.local_entropy(levels, fp, 0, 90, 1.0, None, None, 1, algorithm, out, rows)
        assert out.tobytes() == whole.tobytes()


def test_auto_driver_choice():
    from entropymap import _core

    cube = em.make_footprint(5).view(np.uint8)
    vector = "columns+" + _core.vector_isa() if _core.vector_isa() else "columns"
    assert _core.driver(cube, 60) == vector
    assert _core.driver(cube, 1000) == "runs"
    assert _core.driver(em.make_footprint(5, "ball").view(np.uint8), 60) == "runs"
    # 3^3 over many levels: updating 18 voxels per step beats re-summing 3 registers of bins
    assert _core.driver(em.make_footprint(3).view(np.uint8), 200) == "runs"
    # 7^3 (343 voxels) is beyond the vector step's byte counts: the portable columns
    assert _core.driver(em.make_footprint(7).view(np.uint8), 60) == "columns"
    call = em.kernel.prepare(np.arange(60, dtype=np.int16).reshape(1, 6, 10))
    assert call.driver == vector


def test_vector_isa_is_reported():
    isa = em.vector_isa()
    assert isa in ("", "avx512vbmi")
    if isa == "" and "avx512vbmi" in _cpu_flags():
        pytest.fail("the CPU has AVX-512 VBMI but the kernel does not use it")


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return ""


def test_api_misuse_is_refused_clearly():
    levels = np.zeros((3, 3, 3), np.int16)
    with pytest.raises(TypeError, match="masked array"):
        em.local_entropy(np.ma.masked_array(levels, mask=np.zeros(levels.shape, bool)))
    with pytest.raises(ValueError, match="exceeds 255"):
        em.local_entropy(levels, kernel=10**9 + 1)
    with pytest.raises(ValueError, match="n_threads"):
        em.local_entropy(levels, n_threads=2**40)
