"""Pictures: orientation, proportions, transparency, the palette, and the figures written."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from matplotlib.image import imread

from entropymap import render
from entropymap.io import Geometry
from entropymap.render import CaseImages, MapStyle, Orientation, RenderOptions, Scene


def _rotation_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Direction matrices (columns: physical direction of array x, y, z) of the geometries tried.
DIRECTIONS = {
    "identity": np.eye(3),
    # array x toward patient right, array y toward anterior (NIfTI written from RAS, like the sample)
    "flipped": np.diag([-1.0, -1.0, 1.0]),
    # a coronal acquisition: array y runs toward the feet, array z (slices) toward posterior
    "coronal-acquired": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    # flipped and turned 20 degrees about the long axis
    "oblique": _rotation_z(20.0) @ np.diag([-1.0, -1.0, 1.0]),
}


def _geometry(name: str, shape=(9, 11, 13), spacing=(1.0, 1.0, 1.0)) -> Geometry:
    return Geometry(shape, spacing=spacing, origin=(12.0, -40.0, 300.0), direction=DIRECTIONS[name])


def _bright_case(geometry: Geometry, zyx) -> CaseImages:
    ct = np.full(geometry.shape, -1000.0)
    ct[tuple(zyx)] = 1000.0
    return CaseImages(ct=ct, geometry=geometry, raw=np.full(geometry.shape, np.nan, np.float32))


def _expected_pixel(geometry: Geometry, point, view: str) -> tuple[int, int]:
    """Where the radiological convention puts a physical point on a bare panel (row, col).

    Derived from physics alone: along each patient axis (LPS x, y, z) take the grid axis
    closest to it, pointed toward + (left, posterior, superior), and count voxels from
    the grid's lowest corner along it. Axial: anterior up, patient right on the left;
    coronal: superior up, right on the left; sagittal: superior up, anterior on the left.
    """
    d = np.asarray(geometry.direction)
    corners = geometry.index_to_physical(np.array(list(itertools.product(*[(0, n - 1) for n in geometry.shape]))))
    coord, count = [], []
    for c in range(3):
        j = int(np.argmax(np.abs(d[c])))  # ITK axis closest to LPS axis c
        u = d[:, j] * np.sign(d[c, j])
        step = geometry.spacing[2 - j]
        coord.append(int(round((np.dot(point, u) - (corners @ u).min()) / step)))
        count.append(geometry.shape[2 - j])
    x, y, z = coord
    top_down = count[2] - 1 - z
    return {"axial": (y, x), "coronal": (top_down, x), "sagittal": (top_down, y)}[view]


@pytest.mark.parametrize("view", render.VIEWS)
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_bright_voxel_lands_where_the_radiological_convention_puts_it(tmp_path, direction, view):
    geo = _geometry(direction)
    voxel = (2, 3, 9)
    point = geo.index_to_physical(voxel)
    scene = Scene(_bright_case(geo, voxel), RenderOptions(point_mm=tuple(point), window=(400.0, 0.0)))
    path = render.write_slice_png(tmp_path / f"{direction}-{view}.png", scene, view)
    img = imread(path)[..., :3].mean(axis=-1)
    bright = np.argwhere(img > 0.5)
    assert len(bright) == 1, f"expected one bright pixel, found {len(bright)}"
    row, col = bright[0]
    assert (row, col) == _expected_pixel(geo, point, view)
    # and, in words: patient right / anterior / superior of the volume's centre are on the
    # viewer's left / left (sagittal) / top
    centre = geo.index_to_physical((np.asarray(geo.shape) - 1) / 2.0)
    h, w = img.shape
    if view == "axial":
        assert (col < w / 2) == (point[0] < centre[0]) and (row < h / 2) == (point[1] < centre[1])
    else:
        lateral = 0 if view == "coronal" else 1
        assert (col < w / 2) == (point[lateral] < centre[lateral]) and (row < h / 2) == (point[2] > centre[2])


def test_orientation_of_common_directions():
    o = Orientation.from_geometry(_geometry("flipped"))
    assert o.axes == (0, 1, 2) and o.flips == (False, True, True) and o.obliquity_deg == 0.0
    o = Orientation.from_geometry(_geometry("coronal-acquired", spacing=(3.0, 2.0, 1.0)))
    # display (S, P, L) axes come from array y (flipped: it runs to the feet), z and x
    assert o.axes == (1, 0, 2) and o.flips == (True, False, False)
    assert o.shape == (11, 9, 13) and o.spacing == (2.0, 3.0, 1.0)
    a = np.arange(9 * 11 * 13).reshape(9, 11, 13)
    shown = o.apply(a)
    assert shown.shape == o.shape and np.shares_memory(shown, a)
    idx = (4, 7, 2)
    assert shown[o.display_index(idx)] == a[idx] and o.array_index(o.display_index(idx)) == idx
    assert Orientation.from_geometry(_geometry("oblique")).obliquity_deg == pytest.approx(20.0)


def test_figure_puts_the_voxel_where_its_axes_transform_says(tmp_path):
    geo = _geometry("flipped", shape=(6, 20, 30), spacing=(2.0, 0.8, 1.2))
    voxel = (3, 5, 21)
    raw = np.full(geo.shape, np.nan, np.float32)
    raw[voxel] = 1.0
    case = CaseImages(ct=np.full(geo.shape, -1000.0), geometry=geo, raw=raw)
    options = RenderOptions(map="raw", cmap="viridis", value_range=(0.0, 1.0), opacity=1.0, slice_index=3, dpi=100)
    scene = Scene(case, options)
    fig = render.fusion_figure(scene)
    path = render.save_figure(fig, tmp_path / "fusion.png")
    img = imread(path)[..., :3]
    ax = fig.axes[0]
    # the voxel's colour (viridis' top) appears nowhere else: find it inside the image axes
    target = np.asarray(scene.style.colormap()(1.0)[:3])
    hits = np.argwhere(np.abs(img - target).max(axis=-1) < 0.02)
    assert len(hits) > 4
    found_row, found_col = hits.mean(axis=0)
    row, col = _expected_pixel(geo, geo.index_to_physical(voxel), "axial")
    h, w = scene.orientation.panel_spacing("axial")
    x, y = ax.transData.transform(((col + 0.5) * w, (row + 0.5) * h))
    assert found_col == pytest.approx(x - 0.5, abs=1.0)
    assert found_row == pytest.approx(img.shape[0] - y - 0.5, abs=1.0)


def test_coronal_view_of_an_anisotropic_volume_keeps_physical_proportions(tmp_path):
    geo = Geometry((12, 40, 30), spacing=(5.0, 0.7, 0.7))
    case = CaseImages(ct=np.zeros(geo.shape), geometry=geo, raw=np.zeros(geo.shape, np.float32))
    scene = Scene(case, RenderOptions(view="coronal", map="raw"))
    height_mm, width_mm = 12 * 5.0, 30 * 0.7
    img = render.slice_image(scene)
    assert img.shape[1] == 30 and abs(img.shape[0] - img.shape[1] * height_mm / width_mm) <= 1.0
    fig = render.fusion_figure(scene)
    render.save_figure(fig, tmp_path / "coronal.png")  # draws it
    box = fig.axes[0].get_window_extent()
    assert box.height / box.width == pytest.approx(height_mm / width_mm, rel=0.01)
    sagittal = render.slice_image(scene, "sagittal")
    assert abs(sagittal.shape[0] - sagittal.shape[1] * height_mm / (40 * 0.7)) <= 1.0


def test_where_the_map_has_no_value_the_fused_pixel_is_the_ct_pixel(rng):
    geo = Geometry((8, 24, 24), spacing=(2.0, 1.0, 1.0))
    ct = rng.normal(60, 40, geo.shape)
    norm = rng.uniform(0.7, 1.3, geo.shape).astype(np.float32)
    norm[:, 4:12, 4:20] = np.nan  # no value here
    liver = np.ones(geo.shape, bool)
    liver[:, 18:, :] = False  # and the map is not drawn here
    case = CaseImages(ct=ct, geometry=geo, raw=norm * 4, normalized=norm, liver=liver)
    scene = Scene(case, RenderOptions(opacity=0.7))
    k = 4
    fused, ct_only = scene.image("axial", k), scene.image("axial", k, overlay=False)
    no_colour = np.isnan(norm[k]) | ~liver[k]
    np.testing.assert_array_equal(fused[no_colour], ct_only[no_colour])
    assert np.all(np.abs(fused[~no_colour] - ct_only[~no_colour]).max(axis=-1) > 0)
    # the same in the saved bytes, and in the report viewer's map (index 0 = no colour)
    np.testing.assert_array_equal(render.slice_image(scene, "axial", k)[no_colour],
                                  render.slice_image(scene, "axial", k, opacity=0.0)[no_colour])
    from entropymap.report import viewer_volumes

    volumes, _ = viewer_volumes(scene)
    assert np.array_equal(volumes["map"][k] == 0, no_colour)


@pytest.mark.parametrize("cmap, value_range", [(None, None), ("PuOr_r", (0.6, 1.2)), ("coolwarm", (0.95, 1.5))])
def test_normalised_one_gets_the_palettes_centre_colour(cmap, value_range):
    import matplotlib

    geo = Geometry((3, 4, 5))
    norm = np.ones(geo.shape, np.float32)
    case = CaseImages(ct=np.zeros(geo.shape), geometry=geo, raw=norm, normalized=norm)
    scene = Scene(case, RenderOptions(cmap=cmap, value_range=value_range, opacity=1.0))
    centre = matplotlib.colormaps[cmap or "RdBu_r"](0.5)
    assert scene.style.center == 1.0 and scene.style.cmap == (cmap or "RdBu_r")
    np.testing.assert_array_equal(scene.style.rgba(np.array([1.0]))[0], centre)
    assert scene.style.norm()(1.0) == 0.5  # the colour bar's scale agrees
    expected = np.rint(np.asarray(centre[:3]) * 255)
    assert np.all(render.slice_image(scene, "axial", 1) == expected)
    # the report viewer's palette: index 128 of 1..255, and the middle of its table
    from entropymap.report import viewer_volumes

    assert np.all(viewer_volumes(scene)[0]["map"] == 128)
    np.testing.assert_array_equal(scene.style.lut(255)[127], expected)


def test_palette_ends_clip_and_nan_is_transparent():
    style = MapStyle("RdBu_r", 0.75, 1.25, center=1.0)
    rgba = style.rgba(np.array([0.1, 0.75, 1.25, 9.0, np.nan]))
    np.testing.assert_array_equal(rgba[0], rgba[1])
    np.testing.assert_array_equal(rgba[2], rgba[3])
    np.testing.assert_array_equal(rgba[4], [0.0, 0.0, 0.0, 0.0])
    assert np.all(rgba[:4, 3] == 1.0)
    with pytest.raises(ValueError, match="must contain 1"):
        MapStyle("RdBu_r", 1.1, 1.5, center=1.0)
    with pytest.raises(ValueError, match="unknown colormap 'nope'.*viridis"):
        MapStyle("nope", 0.0, 1.0)


def test_windows_and_options():
    assert render.window(np.array([-160.0, 40.0, 240.0, 1000.0]), 400, 40).tolist() == [0.0, 0.5, 1.0, 1.0]
    assert render.parse_window("liver") == render.WINDOWS["liver"] == (150.0, 90.0)
    assert render.parse_window("350,50") == (350.0, 50.0)
    with pytest.raises(ValueError, match="preset.*WIDTH,LEVEL"):
        render.parse_window("livr")
    with pytest.raises(ValueError, match="positive"):
        render.parse_window("0,40")
    for bad, words in [({"opacity": 1.5}, "opacity"), ({"view": "oblique"}, "view must be one of axial"),
                       ({"formats": ("jpg",)}, "picture format"), ({"slice_index": 3, "point_mm": (0, 0, 0)}, "not both")]:
        with pytest.raises(ValueError, match=words):
            RenderOptions(**bad).validate()


def test_slice_and_point_outside_the_volume_are_refused():
    geo = _geometry("flipped")
    case = _bright_case(geo, (0, 0, 0))
    with pytest.raises(ValueError, match=r"axial slice 9 is outside the volume: array axis z has slices 0 \.\. 8"):
        Scene(case, RenderOptions(slice_index=9))
    with pytest.raises(ValueError, match="outside the image, which spans x"):
        Scene(case, RenderOptions(point_mm=(0.0, 0.0, 0.0)))


def test_montage_spans_the_largest_tumour_component():
    geo = Geometry((20, 16, 16))
    tumor = np.zeros(geo.shape, bool)
    tumor[3:9, 4:10, 4:10] = True  # the largest component: axial slices 3 to 8
    tumor[15, 2, 2] = True  # a speck elsewhere
    case = CaseImages(ct=np.zeros(geo.shape), geometry=geo, raw=np.ones(geo.shape, np.float32), tumor=tumor)
    ks = Scene(case, RenderOptions(map="raw", montage=4)).montage_slices("axial")
    assert ks == [3, 5, 6, 8]
    assert Scene(case, RenderOptions(map="raw", montage=30)).montage_slices("axial") == list(range(3, 9))
    scene = Scene(case, RenderOptions(map="raw"))
    assert scene.focus == (6, 7, 7) and "largest tumor component" in scene.focus_note


def test_write_pictures_in_every_format(tmp_path, rng):
    geo = Geometry((10, 24, 20), spacing=(2.5, 0.8, 0.8), direction=DIRECTIONS["flipped"])
    ct = rng.normal(80, 30, geo.shape)
    raw = rng.uniform(3.0, 4.5, geo.shape).astype(np.float32)
    tumor = np.zeros(geo.shape, bool)
    tumor[3:7, 8:14, 6:12] = True
    reference = np.zeros(geo.shape, bool)
    reference[4:6, 16:20, 12:16] = True
    case = CaseImages(ct=ct, geometry=geo, raw=raw, normalized=raw / 3.8, tumor=tumor, reference=reference,
                      liver=np.ones(geo.shape, bool), reference_name="liver")
    options = RenderOptions(formats=("png", "svg", "pdf"), report=False, montage=4, dpi=60)
    files = render.write_pictures(tmp_path, Scene(case, options))
    assert files["figure"] == "fusion.png" and files["montage.pdf"] == "montage.pdf"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.{f}" for n in render.FIGURES for f in options.formats)
    heads = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF"}
    for name in files.values():
        assert (tmp_path / name).read_bytes().startswith(heads[name.rsplit(".", 1)[1]]), name
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        render.save_figure(render.histogram_figure(Scene(case, options)), tmp_path / "x.jpg")


def test_colour_bar_names_the_unit_and_marks_the_thresholds():
    geo = Geometry((4, 8, 8))
    norm = np.ones(geo.shape, np.float32)
    case = CaseImages(ct=np.zeros(geo.shape), geometry=geo, raw=norm, normalized=norm, thresholds=(0.85, 1.2),
                      reference_name="liver")
    fig = render.fusion_figure(Scene(case, RenderOptions()))
    cbar = next(ax for ax in fig.axes if ax.get_ylabel().startswith("local entropy"))
    assert cbar.get_ylabel() == "local entropy (\u00d7 liver mean)"
    dashed = sorted(line.get_ydata()[0] for line in cbar.lines if line.get_linestyle() == "--")
    assert dashed == [0.85, 1.2]
    raw_fig = render.fusion_figure(Scene(case, RenderOptions(map="raw")))
    assert any(ax.get_ylabel() == "local entropy (nats)" for ax in raw_fig.axes)
