"""Pictures a clinician reads: the CT in grey with an entropy map fused over it.

Every picture is drawn from one copy of the case turned onto the patient's axes
(:class:`Orientation`), so axial, coronal and sagittal views follow the radiological
convention whatever the scanner's direction cosines: patient right on the viewer's left
(axial, coronal), anterior up (axial), superior up (coronal, sagittal), anterior on the
viewer's left (sagittal). Panels are drawn in millimetres, so pixel proportions follow
the spacing. The fusion is computed here, in numpy (:meth:`Scene.image`), so a voxel
without a map value shows exactly the CT pixel.

Matplotlib is imported lazily and used through its object API with the Agg canvas, so
rendering never changes the user's global backend or pyplot state.

Examples
--------
>>> from entropymap import render                                      # doctest: +SKIP
>>> case, record, table = render.load_case("case01")                   # doctest: +SKIP
>>> scene = render.Scene(case, render.RenderOptions(view="coronal"))   # doctest: +SKIP
>>> render.save_figure(render.triptych_figure(scene), "triptych.pdf")  # doctest: +SKIP
"""

from __future__ import annotations

import io as _bytes_io
import itertools
import json
import logging
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

    from .io import Geometry

__all__ = [
    "FIGURES",
    "FORMATS",
    "VIEWS",
    "WINDOWS",
    "EDGE_LETTERS",
    "INK_COLOURS",
    "OUTLINE_COLOURS",
    "CaseImages",
    "MapStyle",
    "Orientation",
    "RenderOptions",
    "Scene",
    "figure_png",
    "fusion_figure",
    "histogram_figure",
    "load_case",
    "montage_figure",
    "orthogonal_figure",
    "parse_window",
    "save_figure",
    "slice_image",
    "triptych_figure",
    "window",
    "write_pictures",
    "write_slice_png",
]

log = logging.getLogger(__name__)

#: CT display windows as (width, level) in HU. "liver" is narrow and high, for the
#: enhanced parenchyma of a portal-venous phase (about 100 HU, lesions darker);
#: "abdomen" is the usual soft-tissue reading window; "soft_tissue" a slightly narrower one.
WINDOWS = {
    "liver": (150.0, 90.0),
    "abdomen": (400.0, 40.0),
    "soft_tissue": (350.0, 50.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
}
VIEWS = ("axial", "coronal", "sagittal")
#: The pictures :func:`write_pictures` can draw; the file name is the key plus the format.
FIGURES = ("fusion", "triptych", "orthogonal", "montage", "histogram")
#: Picture formats, chosen by the file suffix.
FORMATS = ("png", "svg", "pdf")
#: Default colour range of the normalised map: the same for every case, so pictures of
#: different patients compare, and wide enough for the usual 0.9 / 1.1 thresholds.
NORMALIZED_RANGE = (0.75, 1.25)
#: Outline colours: both stand out from grey and from a red/white/blue palette.
OUTLINE_COLOURS = {"tumor": "#39ff14", "reference": "#ffd400"}
#: Darker versions of the outline colours, legible as lines and text on white.
INK_COLOURS = {"tumor": "#1f9e0a", "reference": "#b08400"}
UNITS = {"e": "nats", 2: "bits", 10: "hartleys"}

# Display axis of each view's slices.
_VIEW_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
#: Patient directions at the (top, bottom, left, right) edges of each view.
EDGE_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
# LPS coordinate that each display axis runs along (z, y, x) and its letter.
_AXIS_COORD = ((2, "z"), (1, "y"), (0, "x"))


def window(values: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map intensities to [0, 1] grey levels with a display window (width, level) in HU."""
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = level - width / 2.0
    return np.clip((np.asarray(values, dtype=np.float64) - lo) / width, 0.0, 1.0)


def parse_window(spec: str) -> tuple[float, float]:
    """A window from a preset name (``"liver"``) or ``"WIDTH,LEVEL"`` in HU (``"400,40"``)."""
    if spec in WINDOWS:
        return WINDOWS[spec]
    parts = spec.replace("/", ",").split(",")
    try:
        width, level = (float(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"window {spec!r} is neither a preset ({', '.join(WINDOWS)}) nor WIDTH,LEVEL in HU (e.g. 400,40)"
        ) from None
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width:g} in {spec!r}")
    return width, level


def _window_name(w: tuple[float, float]) -> str:
    name = next((n for n, v in WINDOWS.items() if tuple(v) == tuple(w)), None)
    text = f"W {w[0]:g} L {w[1]:g}"
    return f"{name.replace('_', ' ')} window, {text}" if name else f"window {text}"


# --------------------------------------------------------------------------- orientation


@dataclass(frozen=True)
class Orientation:
    """How an array (z, y, x) is turned onto the patient's axes for display.

    The display grid's axes run inferior to superior, anterior to posterior and right to
    left (LPS z, y, x), so views are plain slices of it (:meth:`panel`). Each display
    axis is the array axis closest to that patient axis, flipped when it runs the other
    way. Voxels are never resampled: an oblique volume is shown in its own planes nearest
    to the patient's, ``obliquity_deg`` off at most.

    Attributes
    ----------
    axes : (int, int, int)
        The array axis shown along display axis 0, 1, 2.
    flips : (bool, bool, bool)
        Whether that array axis runs against its display axis.
    shape, spacing : triples
        Of the display grid (voxels, mm).
    obliquity_deg : float
        The largest angle between an array axis and its display axis.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    obliquity_deg: float

    @classmethod
    def from_geometry(cls, geometry: "Geometry") -> "Orientation":
        d = np.asarray(geometry.direction, dtype=float)
        # cos[k, a]: cosine between array axis a (ITK axis 2 - a, a column of d) and
        # display axis k (LPS component 2 - k).
        cos = (d / np.linalg.norm(d, axis=0))[::-1, ::-1]
        perm = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cos[k, p[k]]) for k in range(3)))
        c = [float(cos[k, perm[k]]) for k in range(3)]
        return cls(
            axes=(perm[0], perm[1], perm[2]),
            flips=(c[0] < 0, c[1] < 0, c[2] < 0),
            shape=tuple(int(geometry.shape[a]) for a in perm),  # type: ignore[arg-type]
            spacing=tuple(float(geometry.spacing[a]) for a in perm),  # type: ignore[arg-type]
            obliquity_deg=max(math.degrees(math.acos(min(1.0, abs(v)))) for v in c),
        )

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The array on the display grid (a view, no copy)."""
        source = tuple(self.shape[self.axes.index(a)] for a in range(3))
        if array.shape != source:
            raise ValueError(f"array shape {array.shape} does not match the image shape {source}")
        out = np.transpose(array, self.axes)
        flipped = tuple(k for k in range(3) if self.flips[k])
        return np.flip(out, axis=flipped) if flipped else out

    def display_index(self, zyx: Sequence[int]) -> tuple[int, int, int]:
        """Display-grid index of an array index (z, y, x)."""
        return tuple(self._along(k, int(zyx[self.axes[k]])) for k in range(3))  # type: ignore[return-value]

    def array_index(self, display: Sequence[int]) -> tuple[int, int, int]:
        """Array index (z, y, x) of a display-grid index."""
        out = [0, 0, 0]
        for k in range(3):
            out[self.axes[k]] = self._along(k, int(display[k]))
        return out[0], out[1], out[2]

    def _along(self, k: int, i: int) -> int:
        # the same map both ways: a flip is its own inverse
        return self.shape[k] - 1 - i if self.flips[k] else i

    def slice_number(self, view: str, k: int) -> int:
        """The array index (along the array axis cut by ``view``) of display slice ``k``."""
        return self._along(_VIEW_AXIS[view], k)

    def display_slice(self, view: str, number: int) -> int:
        """The display slice of array index ``number`` along the axis ``view`` cuts."""
        n = self.n_slices(view)
        if not 0 <= number < n:
            name = "zyx"[self.axes[_VIEW_AXIS[view]]]
            raise ValueError(f"{view} slice {number} is outside the volume: array axis {name} has slices 0 .. {n - 1}")
        return self._along(_VIEW_AXIS[view], number)

    def n_slices(self, view: str) -> int:
        return self.shape[_VIEW_AXIS[view]]

    @staticmethod
    def panel(display: np.ndarray, view: str, k: int) -> np.ndarray:
        """Slice ``k`` of a display-grid array as shown: rows top to bottom, columns left to right."""
        if view == "axial":
            return display[k]
        if view == "coronal":
            return display[::-1, k, :]  # superior up
        if view == "sagittal":
            return display[::-1, :, k]
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")

    def panel_spacing(self, view: str) -> tuple[float, float]:
        """Pixel (height, width) in mm of a ``view`` panel."""
        s = self.spacing
        return {"axial": (s[1], s[2]), "coronal": (s[0], s[2]), "sagittal": (s[0], s[1])}[view]


# --------------------------------------------------------------------------- palette


@dataclass(frozen=True)
class MapStyle:
    """How map values become colours.

    Attributes
    ----------
    cmap : str
        A matplotlib colormap name.
    vmin, vmax : float
        Values shown with the palette's end colours (values beyond are clipped to them).
    center : float, optional
        Value shown with the palette's centre colour (1.0 for a normalised map), with
        each side scaled on its own; None for a linear scale from vmin to vmax.
    label : str
        Colour bar label with the unit.
    thresholds : tuple of float
        Class limits marked on the colour bar (hypo below the first, hyper above the last).
    """

    cmap: str
    vmin: float
    vmax: float
    center: Optional[float] = None
    label: str = ""
    thresholds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _colormap(self.cmap)  # an unknown name fails here, with the choices
        if not self.vmin < self.vmax:
            raise ValueError(f"colour range must have low < high, got ({self.vmin:g}, {self.vmax:g})")
        if self.center is not None and not self.vmin < self.center < self.vmax:
            raise ValueError(
                f"colour range ({self.vmin:g}, {self.vmax:g}) must contain {self.center:g}: the palette "
                f"of the normalised map is centred on {self.center:g}"
            )

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Palette position in [0, 1] of each value; NaN stays NaN. ``center`` maps to exactly 0.5."""
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.center is None:
                t = (v - self.vmin) / (self.vmax - self.vmin)
            else:
                c = self.center
                t = np.where(v >= c, 0.5 + 0.5 * (v - c) / (self.vmax - c), 0.5 - 0.5 * (c - v) / (c - self.vmin))
            return np.clip(t, 0.0, 1.0)

    def rgba(self, values: np.ndarray) -> np.ndarray:
        """RGBA floats in [0, 1]; NaN is fully transparent (0, 0, 0, 0)."""
        t = self.scaled(values)
        out = self.colormap()(np.nan_to_num(t, nan=0.0))
        out[~np.isfinite(t)] = 0.0
        return out

    def colormap(self) -> "Colormap":
        return _colormap(self.cmap).with_extremes(bad=(0.0, 0.0, 0.0, 0.0))

    def norm(self) -> "Normalize":
        """The matplotlib norm with the same scale as :meth:`scaled` (for colour bars)."""
        from matplotlib.colors import Normalize, TwoSlopeNorm

        if self.center is None:
            return Normalize(self.vmin, self.vmax)
        return TwoSlopeNorm(vcenter=self.center, vmin=self.vmin, vmax=self.vmax)

    def lut(self, n: int = 255) -> np.ndarray:
        """``n`` RGB bytes sampling the palette evenly; with odd ``n`` the middle one is the centre colour."""
        return np.rint(self.colormap()(np.linspace(0.0, 1.0, n))[:, :3] * 255).astype(np.uint8)


def _colormap(name: str) -> "Colormap":
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; use a matplotlib colormap name, e.g. RdBu_r, coolwarm, PuOr_r "
            "(diverging, for the normalised map) or viridis, magma, inferno (for the raw map)"
        ) from None


# --------------------------------------------------------------------------- case and options


@dataclass(frozen=True, eq=False)
class CaseImages:
    """Everything a picture of one case shows; arrays on the CT grid, (z, y, x).

    Attributes
    ----------
    ct : array
        The CT in HU.
    geometry : Geometry
    raw : array
        Local entropy (``unit``); NaN where not computed.
    normalized : array, optional
        The smoothed map divided by the reference mean.
    tumor, reference, liver : bool arrays, optional
        Outlined (tumor, reference); the liver limits where the map is drawn.
    thresholds : (float, float)
        Hypo- and hyper-entropic limits of the normalised map.
    unit : str
        Unit of ``raw``: nats, bits or hartleys.
    reference_name : str
        What the normalised map is relative to, for labels: "liver" or "reference".
    reference_mean : float, optional
        Mean smoothed entropy of the reference region (``unit``).
    rim, core : bool arrays, optional
        The rim shell and core of the largest lesion (:func:`entropymap.patterns.rim_core_masks`).
    profile : DataFrame, optional
        The band profile of the whole tumor mask (:meth:`MarginResult.profile_table`).
    pattern_note : str
        The pattern of the largest lesion and its numbers, for the picture's title.
    """

    ct: np.ndarray
    geometry: "Geometry"
    raw: np.ndarray
    normalized: Optional[np.ndarray] = None
    tumor: Optional[np.ndarray] = None
    reference: Optional[np.ndarray] = None
    liver: Optional[np.ndarray] = None
    thresholds: tuple[float, float] = (0.9, 1.1)
    unit: str = "nats"
    reference_name: str = "reference"
    reference_mean: Optional[float] = None
    rim: Optional[np.ndarray] = None
    core: Optional[np.ndarray] = None
    profile: Optional[Any] = None
    pattern_note: str = ""

    def __post_init__(self) -> None:
        for name in ("ct", "raw", "normalized", "tumor", "reference", "liver", "rim", "core"):
            a = getattr(self, name)
            if a is not None and a.shape != self.geometry.shape:
                raise ValueError(f"{name} shape {a.shape} does not match the image shape {self.geometry.shape}")
        for name in ("tumor", "reference", "liver"):
            a = getattr(self, name)
            if a is not None and a.dtype != np.bool_:
                raise TypeError(f"{name} must be a bool mask, got dtype {a.dtype}; use mask != 0")


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a case; every field has a sensible default.

    Attributes
    ----------
    window : (width, level)
        CT display window in HU (:data:`WINDOWS` has presets; default abdomen, W 400 L 40).
    map : {"auto", "normalized", "raw"}
        The map shown; "auto" is the normalised one when the case has it.
    cmap : str, optional
        Matplotlib colormap name. Default: RdBu_r (diverging, blue hypo / white iso / red
        hyper, centred on 1.0) for the normalised map, viridis for the raw one.
    value_range : (low, high), optional
        Colour range. Default: :data:`NORMALIZED_RANGE` for the normalised map, the 1st to
        99th percentile inside the drawn region for the raw one.
    opacity : float
        Opacity of the map over the CT, 0 (CT only) to 1 (map only).
    overlay_region : {"liver", "all"}
        Draw the map only inside the liver (and tumor) when the case has a liver mask,
        or wherever it has a value.
    view : {"axial", "coronal", "sagittal"}
        View of the fusion picture, the triptych and the montage.
    slice_index : int, optional
        Array index of the slice to show, along the axis ``view`` cuts.
    point_mm : (x, y, z), optional
        Physical point (mm, LPS) the pictures go through. Default: the centre of the
        largest tumor component (else of the reference, else of the volume).
    montage : int
        Number of slices of the montage, spread over the largest tumor component.
    figures : tuple of str
        Which of :data:`FIGURES` :func:`write_pictures` draws.
    formats : tuple of str
        Picture formats (:data:`FORMATS`).
    dpi : int
        Resolution of PNG pictures and of the images inside SVG / PDF ones.
    interpolation : {"nearest", "bilinear"}
        How pictures enlarge voxels: as blocks (each voxel visible) or smoothly.
    report : bool
        Also write the self-contained ``report.html``.
    viewer_max_voxels : int
        The report's slice viewer holds at most this many voxels per volume; larger
        cases are cropped to the liver (or tumor and reference) and then subsampled.
    """

    window: tuple[float, float] = WINDOWS["abdomen"]
    map: str = "auto"
    cmap: Optional[str] = None
    value_range: Optional[tuple[float, float]] = None
    opacity: float = 0.6
    overlay_region: str = "liver"
    view: str = "axial"
    slice_index: Optional[int] = None
    point_mm: Optional[tuple[float, float, float]] = None
    montage: int = 12
    figures: tuple[str, ...] = FIGURES
    formats: tuple[str, ...] = ("png",)
    dpi: int = 150
    interpolation: str = "nearest"
    report: bool = True
    viewer_max_voxels: int = 2_200_000

    def validate(self) -> "RenderOptions":
        """Check every value; raise ValueError naming the option. Returns self."""
        if len(self.window) != 2 or not self.window[0] > 0:
            raise ValueError(f"window must be (width > 0, level) in HU, got {self.window!r}")
        _choice("map", self.map, ("auto", "normalized", "raw"))
        if self.cmap is not None:
            _colormap(self.cmap)
        vr = self.value_range
        if vr is not None and not (len(vr) == 2 and vr[0] < vr[1]):
            raise ValueError(f"colour range must be (low, high) with low < high, got {self.value_range!r}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be between 0 and 1, got {self.opacity}")
        _choice("overlay region", self.overlay_region, ("liver", "all"))
        _choice("view", self.view, VIEWS)
        if self.slice_index is not None and self.point_mm is not None:
            raise ValueError("give a slice index or a point, not both")
        if self.point_mm is not None and len(self.point_mm) != 3:
            raise ValueError(f"the point is three numbers x y z (mm), got {self.point_mm!r}")
        if self.montage < 1:
            raise ValueError(f"the montage needs at least 1 slice, got {self.montage}")
        for f in self.figures:
            _choice("figure", f, FIGURES)
        if not self.formats:
            raise ValueError(f"give at least one picture format ({', '.join(FORMATS)})")
        for f in self.formats:
            _choice("picture format", f, FORMATS)
        if not 10 <= self.dpi <= 1200:
            raise ValueError(f"dpi must be between 10 and 1200, got {self.dpi}")
        _choice("interpolation", self.interpolation, ("nearest", "bilinear"))
        if self.viewer_max_voxels < 1000:
            raise ValueError(f"viewer_max_voxels must be at least 1000, got {self.viewer_max_voxels}")
        return self


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == int(np.argmax(sizes)) + 1


class Scene:
    """A case made ready to draw: oriented, with its palette and the point pictures go through.

    Parameters
    ----------
    case : CaseImages
    options : RenderOptions

    Attributes
    ----------
    orientation : Orientation
    style : MapStyle
    normalized : bool
        Whether the map shown is the normalised one.
    focus : (int, int, int)
        Display-grid index of the point the pictures go through.
    focus_note : str
        How it was chosen, for titles.
    ct, values, region : display-grid arrays
        The CT, the map shown and where it is drawn (None: wherever it has a value).
    outlines : list of (display-grid mask, colour, name)
        The tumor and reference regions, outlined.
    lesion : bool display-grid array, optional
        The largest tumor component (or the reference region): the montage spans it.
    lesion_name, region_note : str
        For titles.
    """

    def __init__(self, case: CaseImages, options: RenderOptions = RenderOptions()) -> None:
        self.case = case
        self.options = options.validate()
        o = self.orientation = Orientation.from_geometry(case.geometry)
        if o.obliquity_deg > 1.0:
            log.info("the image is oblique (%.1f degrees); views show its own nearest planes", o.obliquity_deg)
        self.normalized = options.map == "normalized" or (options.map == "auto" and case.normalized is not None)
        if self.normalized and case.normalized is None:
            raise ValueError("this case has no normalised map (it has no reference region); show the raw map "
                             "(map='raw', CLI --show-map raw)")
        values = case.normalized if self.normalized else case.raw
        region = None
        if options.overlay_region == "liver" and case.liver is not None:
            region = case.liver if case.tumor is None else case.liver | case.tumor
        self.region_note = "in the liver" if region is not None else "wherever computed"
        self.ct = o.apply(case.ct)
        self.values = o.apply(values)
        self.region = o.apply(region) if region is not None else None
        self.style = self._style(values, region)
        self.outlines = [(o.apply(m), OUTLINE_COLOURS[name], name)
                         for name, m in (("tumor", case.tumor), ("reference", case.reference)) if m is not None]
        has_tumor = case.tumor is not None and case.tumor.any()
        target = case.tumor if has_tumor else case.reference
        self.lesion = o.apply(_largest_component(target)) if target is not None and target.any() else None
        self.lesion_name = None if self.lesion is None else (
            "the largest tumor component" if has_tumor else "the reference region")
        self.focus, self.focus_note = self._focus()

    def _style(self, values: np.ndarray, region: Optional[np.ndarray]) -> MapStyle:
        opt, case = self.options, self.case
        if self.normalized:
            lo, hi = opt.value_range or NORMALIZED_RANGE
            return MapStyle(opt.cmap or "RdBu_r", lo, hi, center=1.0,
                            label=f"local entropy (\u00d7 {case.reference_name} mean)", thresholds=case.thresholds)
        if opt.value_range is not None:
            lo, hi = opt.value_range
        else:
            # percentiles of a subsample: the same colours in practice, at a fraction of the cost
            step = max(1, round((values.size / 2e6) ** (1 / 3)))
            v = values[::step, ::step, ::step]
            if region is not None:
                v = v[region[::step, ::step, ::step]]
            v = v[np.isfinite(v)]
            lo, hi = (float(np.percentile(v, 1)), float(np.percentile(v, 99))) if v.size else (0.0, 1.0)
            if not hi > lo:
                hi = lo + 1e-6
        return MapStyle(opt.cmap or "viridis", lo, hi, label=f"local entropy ({case.unit})")

    def _focus(self) -> tuple[tuple[int, int, int], str]:
        opt, o, geo = self.options, self.orientation, self.case.geometry
        if opt.point_mm is not None:
            idx = np.rint(geo.physical_to_index(opt.point_mm)).astype(int)
            if np.any(idx < 0) or np.any(idx >= np.asarray(geo.shape)):
                corners = geo.index_to_physical(np.array(list(itertools.product(*[(0, n - 1) for n in geo.shape]))))
                lo, hi = corners.min(axis=0), corners.max(axis=0)
                raise ValueError(
                    f"point ({', '.join(f'{v:g}' for v in opt.point_mm)}) mm is outside the image, which spans "
                    f"x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f}, z {lo[2]:.1f}..{hi[2]:.1f} mm (LPS)"
                )
            return o.display_index(idx), "at the point asked for"
        if self.lesion is not None:
            from scipy import ndimage

            centre = tuple(int(math.floor(c + 0.5)) for c in ndimage.center_of_mass(self.lesion))  # halves up
            note = f"through the centre of {self.lesion_name}"
        else:
            centre = tuple(n // 2 for n in o.shape)
            note = "through the middle of the volume"
        focus = list(centre)
        if opt.slice_index is not None:
            focus[_VIEW_AXIS[opt.view]] = o.display_slice(opt.view, opt.slice_index)
            note = "the slice asked for"
        return (focus[0], focus[1], focus[2]), note

    # -- pixels

    def layers(self, view: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Grey levels in [0, 1] (H, W) and map colours RGBA (H, W, 4) of one panel."""
        grey = window(Orientation.panel(self.ct, view, k), *self.options.window)
        rgba = self.style.rgba(Orientation.panel(self.values, view, k))
        if self.region is not None:
            rgba[~Orientation.panel(self.region, view, k)] = 0.0
        return grey, rgba

    def image(self, view: str, k: int, *, ct: bool = True, overlay: bool = True,
              opacity: Optional[float] = None) -> np.ndarray:
        """The fused panel, RGB floats in [0, 1], shape (H, W, 3).

        Each pixel is ``grey (1 - a) + colour a`` with ``a = opacity x alpha``, and alpha
        is 0 where the map has no value or lies outside the drawn region, so there the
        pixel is the CT's exactly. Without ``ct`` the map lies on black.
        """
        grey, rgba = self.layers(view, k)
        if not ct:
            grey = np.zeros_like(grey)
        a = (self.options.opacity if opacity is None else opacity) * rgba[..., 3:] if overlay else 0.0
        return grey[..., None] * (1.0 - a) + rgba[..., :3] * a

    def extent(self, view: str, k: int = 0) -> tuple[float, float, float, float]:
        """Panel extent in mm for ``imshow`` (left, right, bottom, top), origin top left."""
        h, w = self.orientation.panel_spacing(view)
        rows, cols = Orientation.panel(self.ct, view, k).shape
        return 0.0, cols * w, rows * h, 0.0

    def slice_of(self, view: str) -> int:
        """Display slice of ``view`` through the focus."""
        return self.focus[_VIEW_AXIS[view]]

    def slice_label(self, view: str, k: int) -> str:
        """E.g. ``axial 33, z 12.5 mm``: the array index and the LPS position of the slice."""
        o = self.orientation
        focus = list(self.focus)
        focus[_VIEW_AXIS[view]] = k
        coord, name = _AXIS_COORD[_VIEW_AXIS[view]]
        pos = self.case.geometry.index_to_physical(o.array_index(focus))[coord]
        return f"{view} {o.slice_number(view, k)}, {name} {pos:.1f} mm"

    def montage_slices(self, view: str) -> list[int]:
        """Display slices of ``view`` evenly spread over the lesion (the middle of equal slabs)."""
        axis = _VIEW_AXIS[view]
        if self.lesion is not None:
            present = np.nonzero(self.lesion.any(axis=tuple(a for a in range(3) if a != axis)))[0]
            lo, hi = int(present[0]), int(present[-1])
        else:
            lo, hi = 0, self.orientation.shape[axis] - 1
        n = min(self.options.montage, hi - lo + 1)
        return sorted({int(lo + (i + 0.5) * (hi - lo + 1) / n) for i in range(n)})


# --------------------------------------------------------------------------- bare images


def slice_image(scene: Scene, view: Optional[str] = None, k: Optional[int] = None, *,
                opacity: Optional[float] = None) -> np.ndarray:
    """The fused panel as RGB bytes at physical proportions: one pixel per finest spacing.

    No axes, labels or margins: pixel (row, column) is a known place of the panel, so
    this is the picture to check orientation on, or to paste into slides. The panel is
    enlarged along its coarser axis by nearest neighbour (0.7 x 5 mm voxels become 1 x 7
    pixels, about).
    """
    view = view or scene.options.view
    k = scene.slice_of(view) if k is None else k
    rgb = scene.image(view, k, opacity=opacity)
    h, w = scene.orientation.panel_spacing(view)
    px = min(h, w)
    rows = max(1, round(rgb.shape[0] * h / px))
    cols = max(1, round(rgb.shape[1] * w / px))
    r = ((np.arange(rows) + 0.5) * rgb.shape[0] / rows).astype(int)
    c = ((np.arange(cols) + 0.5) * rgb.shape[1] / cols).astype(int)
    return np.rint(rgb[r][:, c] * 255).astype(np.uint8)


def write_slice_png(path: Union[str, os.PathLike], scene: Scene, view: Optional[str] = None,
                    k: Optional[int] = None, *, opacity: Optional[float] = None) -> Path:
    """Save :func:`slice_image` as a PNG, pixel for pixel."""
    from PIL import Image  # Pillow comes with matplotlib

    img = Image.fromarray(slice_image(scene, view, k, opacity=opacity))
    return _write_atomic(Path(path), lambda f: img.save(f, format="PNG"))


def _write_atomic(path: Path, write: Callable[[Any], None]) -> Path:
    """Write through a hidden temporary file in the same folder, renamed into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- figures


def _figure(options: RenderOptions, width: float, height: float, layout: Optional[str] = None) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=options.dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


# Layout of image figures, inches. Panels are placed by hand at one mm scale: a layout
# engine would cost a second per figure here and could not keep the scale.
_PAD, _GAP, _TITLE, _SUPTITLE, _LEGEND = 0.12, 0.1, 0.3, 0.36, 0.34
_CB_GAP, _CB_NAMES, _CB_WIDTH, _CB_LABELS = 0.25, 0.45, 0.17, 0.85


def _image_figure(scene: Scene, sizes_mm: Sequence[tuple[float, float]], ncols: int, inch_per_mm: float, *,
                  suptitle: bool, legend: bool) -> tuple["Figure", list["Axes"]]:
    """A figure with one titled axes per panel (row-major) and a colour bar on the right.

    Each panel is ``sizes_mm`` (width, height) times ``inch_per_mm``, so all share one
    scale; columns and rows take the size of their largest panel.
    """
    nrows = -(-len(sizes_mm) // ncols)
    cells = [sizes_mm[i] if i < len(sizes_mm) else (0.0, 0.0) for i in range(nrows * ncols)]
    col_w = [inch_per_mm * max(cells[r * ncols + c][0] for r in range(nrows)) for c in range(ncols)]
    row_h = [inch_per_mm * max(cells[r * ncols + c][1] for c in range(ncols)) for r in range(nrows)]
    top = _SUPTITLE if suptitle else _PAD
    bottom = _LEGEND if legend and scene.outlines else _PAD
    bar = _CB_GAP + (_CB_NAMES if scene.style.center is not None else 0.0) + _CB_WIDTH + _CB_LABELS
    width = _PAD + sum(col_w) + _GAP * (ncols - 1) + bar
    height = top + sum(row_h) + nrows * _TITLE + _GAP * (nrows - 1) + bottom
    fig = _figure(scene.options, width, height)
    axes = []
    for i, (w, h) in enumerate(sizes_mm):
        r, c = divmod(i, ncols)
        x = _PAD + sum(col_w[:c]) + _GAP * c + (col_w[c] - w * inch_per_mm) / 2
        y_top = height - top - sum(row_h[:r]) - (r + 1) * _TITLE - _GAP * r
        axes.append(fig.add_axes((x / width, (y_top - h * inch_per_mm) / height,
                                  w * inch_per_mm / width, h * inch_per_mm / height)))
    panel_top, panel_bottom = height - top - _TITLE, bottom
    span = min(panel_top - panel_bottom, 4.5)
    cb_bottom = panel_bottom + (panel_top - panel_bottom - span) / 2
    cax = fig.add_axes(((width - _CB_LABELS - _CB_WIDTH) / width, cb_bottom / height, _CB_WIDTH / width, span / height))
    _colorbar(fig, cax, scene.style)
    if legend:
        _legend(fig, scene)
    return fig, axes


def _panel_mm(scene: Scene, view: str) -> tuple[float, float]:
    _, right, bottom, _ = scene.extent(view)
    return right, bottom


def _draw(ax: "Axes", scene: Scene, view: str, k: int, *, ct: bool = True, overlay: bool = True,
          opacity: Optional[float] = None, marks: bool = True, title: Optional[str] = None) -> None:
    """One panel in mm: the fused image, outlines, orientation letters and a scale bar."""
    import matplotlib.patheffects as pe

    extent = scene.extent(view, k)
    ax.imshow(scene.image(view, k, ct=ct, overlay=overlay, opacity=opacity), extent=extent,
              interpolation=scene.options.interpolation)
    h, w = scene.orientation.panel_spacing(view)
    for mask, colour, _ in scene.outlines:
        m = Orientation.panel(mask, view, k)
        if m.any() and min(m.shape) >= 2:  # a contour needs at least 2 x 2 pixels
            ax.contour((np.arange(m.shape[1]) + 0.5) * w, (np.arange(m.shape[0]) + 0.5) * h, m.astype(np.float32),
                       levels=[0.5], colors=[colour], linewidths=1.0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if not marks:
        return
    outline = [pe.withStroke(linewidth=2, foreground="black")]
    top, bottom, left, right = EDGE_LETTERS[view]
    for text, x, y, ha, va in ((top, 0.5, 0.99, "center", "top"), (bottom, 0.5, 0.01, "center", "bottom"),
                               (left, 0.01, 0.5, "left", "center"), (right, 0.99, 0.5, "right", "center")):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=9,
                fontweight="bold", path_effects=outline)
    _scale_bar(ax, extent[1])


def _scale_bar(ax: "Axes", width_mm: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = max([v for v in (1, 2, 5, 10, 20, 50, 100, 200, 500) if v <= 0.25 * width_mm] or [1])
    bar = AnchoredSizeBar(ax.transData, length, f"{length} mm", "lower left", pad=0.4, color="white",
                          frameon=False, size_vertical=width_mm / 150, fontproperties={"size": 7})
    ax.add_artist(bar)


def _colorbar(fig: "Figure", cax: "Axes", style: MapStyle) -> None:
    """Colour bar with the unit, the class thresholds as dashed lines and the class names."""
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=style.norm(), cmap=style.colormap()), cax=cax)
    cb.set_label(style.label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    for t in style.thresholds:
        if style.vmin < t < style.vmax:
            cb.ax.axhline(t, color="black", linewidth=1.0, linestyle="--")
    if style.center is not None and len(style.thresholds) == 2:
        lo, hi = style.thresholds
        names = cb.ax.secondary_yaxis("left")
        middles = [(style.vmin + max(lo, style.vmin)) / 2, (lo + hi) / 2, (min(hi, style.vmax) + style.vmax) / 2]
        names.set_yticks(middles, labels=["hypo", "iso", "hyper"])
        names.tick_params(length=0, labelsize=7)


def _legend(fig: "Figure", scene: Scene, ax: Optional["Axes"] = None) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=name) for _, c, name in scene.outlines]
    if not handles:
        return
    if ax is not None:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.6)
    else:
        fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8, frameon=False)


def _map_name(scene: Scene) -> str:
    return "normalised local entropy" if scene.normalized else "local entropy"


def fusion_figure(scene: Scene) -> "Figure":
    """One slice (``options.view``) through the focus: the map fused over the CT."""
    view = scene.options.view
    k = scene.slice_of(view)
    size = _panel_mm(scene, view)
    fig, (ax,) = _image_figure(scene, [size], 1, 5.2 / max(size), suptitle=False, legend=False)
    _draw(ax, scene, view, k, title=f"{scene.slice_label(view, k)} ({scene.focus_note})")
    _legend(fig, scene, ax)
    return fig


def triptych_figure(scene: Scene) -> "Figure":
    """CT | map | fusion of one slice, side by side (as in the paper's figures)."""
    opt = scene.options
    view = opt.view
    k = scene.slice_of(view)
    size = _panel_mm(scene, view)
    fig, axes = _image_figure(scene, [size] * 3, 3, 3.2 / max(size), suptitle=True, legend=True)
    _draw(axes[0], scene, view, k, overlay=False, title=f"CT ({_window_name(opt.window)})")
    _draw(axes[1], scene, view, k, ct=False, opacity=1.0, marks=False, title=_map_name(scene))
    _draw(axes[2], scene, view, k, marks=False, title=f"fusion (opacity {opt.opacity:g})")
    fig.suptitle(f"{scene.slice_label(view, k)} ({scene.focus_note})", fontsize=10)
    return fig


def orthogonal_figure(scene: Scene) -> "Figure":
    """Axial, coronal and sagittal slices through the focus, fused, at one mm scale."""
    sizes = [_panel_mm(scene, v) for v in VIEWS]
    fig, axes = _image_figure(scene, sizes, 3, 3.2 / max(max(s) for s in sizes), suptitle=True, legend=True)
    for ax, view in zip(axes, VIEWS):
        _draw(ax, scene, view, scene.slice_of(view), title=scene.slice_label(view, scene.slice_of(view)))
    fig.suptitle(f"{_map_name(scene)} over CT, {scene.focus_note}", fontsize=10)
    return fig


def montage_figure(scene: Scene) -> "Figure":
    """``options.montage`` slices of ``options.view`` spread over the largest tumor component."""
    view = scene.options.view
    ks = scene.montage_slices(view)
    size = _panel_mm(scene, view)
    fig, axes = _image_figure(scene, [size] * len(ks), min(4, len(ks)), 2.2 / max(size), suptitle=True, legend=True)
    for i, (ax, k) in enumerate(zip(axes, ks)):
        _draw(ax, scene, view, k, marks=i == 0, title=scene.slice_label(view, k).split(",")[0])
    fig.suptitle(f"{_map_name(scene)} over CT: {len(ks)} {view} slices through {scene.lesion_name or 'the volume'}",
                 fontsize=10)
    return fig


def histogram_figure(scene: Scene) -> "Figure":
    """Distribution of local entropy in the tumor and the reference region.

    Left: the raw map (the values ``statistics.csv`` summarises). Right, for a normalised
    case: the normalised map with the hypo / iso / hyper bands and each region's share of them.
    """
    case = scene.case
    regions = [(name, m) for name, m in (("tumor", case.tumor), ("reference", case.reference))
               if m is not None and m.any()]
    panels = [(case.raw, f"local entropy ({case.unit})", ())]
    if case.normalized is not None:
        label = f"normalised local entropy (\u00d7 {case.reference_name} mean)"
        panels.append((case.normalized, label, case.thresholds))
    fig = _figure(scene.options, 4.6 * len(panels), 3.4, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (values, label, thresholds) in zip(axes, panels):
        samples = [(name, values[m][np.isfinite(values[m])]) for name, m in regions]
        finite = np.concatenate([v for _, v in samples]) if samples else np.zeros(0)
        if finite.size:
            lo, hi = np.percentile(finite, [0.1, 99.9])
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 61)
            for name, v in samples:
                share = ""
                if thresholds and v.size:
                    parts = (np.mean(v < thresholds[0]), np.mean(v > thresholds[1]))
                    share = f"; hypo {100 * parts[0]:.0f} %, hyper {100 * parts[1]:.0f} %"
                ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.5, color=INK_COLOURS[name],
                        label=f"{name}: {v.size} voxels, mean {v.mean():.3g}{share}")
                ax.axvline(float(v.mean()), color=INK_COLOURS[name], linestyle=":", linewidth=1.2)
        for t in thresholds:
            ax.axvline(t, color="black", linestyle="--", linewidth=1.0)
        if len(thresholds) == 2:
            lo, hi = ax.get_xlim()
            ax.axvspan(min(lo, thresholds[0]), thresholds[0], color="#2166ac", alpha=0.08, linewidth=0)
            ax.axvspan(thresholds[1], max(hi, thresholds[1]), color="#b2182b", alpha=0.08, linewidth=0)
            ax.set_xlim(lo, hi)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the curves
        ax.tick_params(labelsize=7)
        if regions:
            ax.legend(fontsize=6.5, loc="upper right", framealpha=0.9, edgecolor="none")
    fig.suptitle("local entropy in the tumor and the reference region", fontsize=10)
    return fig


def patterns_figure(scene: Scene) -> "Figure":
    """The rim/core split of the largest lesion over the fused slice through its centre, and
    the band profile of the normalised map across the tumor boundary."""
    case = scene.case
    view = scene.options.view
    k = scene.slice_of(view)
    size = _panel_mm(scene, view)
    fig, axes = _image_figure(scene, [size, size], 2, 3.6 / max(size), suptitle=True, legend=False)
    _draw(axes[0], scene, view, k, title=f"rim (orange) and core (violet), {scene.slice_label(view, k).split(',')[0]}")
    h, w = scene.orientation.panel_spacing(view)
    for mask, colour in ((case.rim, "#ff8c00"), (case.core, "#b15cff")):
        m = Orientation.panel(mask, view, k)
        if m.any() and min(m.shape) >= 2:
            axes[0].contour((np.arange(m.shape[1]) + 0.5) * w, (np.arange(m.shape[0]) + 0.5) * h,
                            m.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.2)
    ax = axes[1]
    ax.set_axis_on()
    pos = ax.get_position()  # the panel was sized for an image: leave room for the tick labels
    ax.set_position([pos.x0 + 0.2 * pos.width, pos.y0 + 0.16 * pos.height, 0.78 * pos.width, 0.76 * pos.height])
    prof = case.profile
    x = 0.5 * (prof["from_mm"].to_numpy() + prof["to_mm"].to_numpy())
    ax.plot(x, prof["mean_normalized"].to_numpy(), marker="o", markersize=3, color="black")
    ax.axvline(0.0, color="grey", linewidth=1)
    for t in case.thresholds:
        ax.axhline(t, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("signed distance to the tumor boundary, mm (inside < 0)", fontsize=8)
    ax.set_ylabel(f"mean local entropy (x {case.reference_name} mean)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_aspect("auto")
    ax.set_title("band profile, whole tumor mask", fontsize=9)
    fig.suptitle(case.pattern_note, fontsize=9)
    return fig


def save_figure(fig: "Figure", path: Union[str, os.PathLike]) -> Path:
    """Save a figure in the format its suffix names (.png, .svg, .pdf), atomically.

    The canvas is saved whole (no tight bounding box), so a PNG pixel is where the
    figure's transforms say; the dates SVG and PDF would embed are left out, so the same
    picture gives the same file.
    """
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot save a picture as {p.name}: the suffix must be one of .{', .'.join(FORMATS)}")
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    return _write_atomic(p, lambda fh: fig.savefig(fh, format=fmt, dpi=fig.dpi, metadata=metadata))


def figure_png(fig: "Figure") -> bytes:
    """A figure as PNG bytes (for embedding)."""
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def write_pictures(
    folder: Union[str, os.PathLike],
    scene: Scene,
    *,
    record: Optional[Mapping[str, Any]] = None,
    table: Optional["pd.DataFrame"] = None,
) -> dict[str, str]:
    """Draw ``options.figures`` in each of ``options.formats``, and the report, into ``folder``.

    Parameters
    ----------
    folder : path
        An existing folder; files there with the same names are replaced.
    scene : Scene
    record : mapping, optional
        The ``run.json`` record, for the report's parameters.
    table : DataFrame, optional
        The statistics table, for the report.

    Returns
    -------
    dict
        Output key -> file name: the figure name (``"figure"`` for the fusion picture, as
        in ``run.json``), suffixed by the format after the first (``"montage.pdf"``);
        ``"report"`` for report.html.
    """
    folder = Path(folder)
    opt = scene.options
    builders = {"fusion": fusion_figure, "triptych": triptych_figure, "orthogonal": orthogonal_figure,
                "montage": montage_figure, "histogram": histogram_figure, "patterns": patterns_figure}
    outputs: dict[str, str] = {}
    pngs: dict[str, bytes] = {}
    names = list(opt.figures)
    if scene.case.profile is not None and scene.case.rim is not None and "patterns" not in names:
        names.append("patterns")  # drawn whenever the pattern analysis ran
    for name in names:
        fig = builders[name](scene)
        for i, fmt in enumerate(opt.formats):
            path = save_figure(fig, folder / f"{name}.{fmt}")
            key = {"fusion": "figure", "patterns": "patterns_figure"}.get(name, name) + ("" if i == 0 else f".{fmt}")
            outputs[key] = path.name
        if opt.report:
            pngs[name] = (folder / f"{name}.png").read_bytes() if "png" in opt.formats else figure_png(fig)
    if opt.report:
        from . import report

        outputs["report"] = report.write_report(folder / report.REPORT_NAME, scene, figures=pngs,
                                                record=record, table=table).name
    return outputs


# --------------------------------------------------------------------------- a finished output folder


def load_case(folder: Union[str, os.PathLike], *, image: Optional[Union[str, os.PathLike]] = None
              ) -> tuple[CaseImages, dict, Optional["pd.DataFrame"]]:
    """Read back what pictures need from an output folder of ``entropymap map``.

    The maps, the reference region and ``statistics.csv`` come from the folder; the CT
    and the tumor and liver masks from the paths ``run.json`` records (the CT from
    ``image`` instead, when it has moved). Nothing is recomputed.

    Returns
    -------
    (CaseImages, dict, DataFrame or None)
        The case, the ``run.json`` record and the statistics table.
    """
    import pandas as pd

    from . import io

    folder = Path(folder)
    path = folder / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an entropymap output folder: it has no run.json "
                                "(make one with: entropymap map IMAGE ... -o FOLDER)")
    record = json.loads(path.read_text())
    outputs, inputs, labels = record["outputs"], record["inputs"], record["labels"]
    ct_path = Path(image) if image is not None else Path(inputs["image"]["path"])
    if not ct_path.exists():
        raise FileNotFoundError(f"the CT of this run is no longer at {ct_path}; give its new place with --image")
    ct = io.read_image(ct_path, series=record.get("series"),
                       allow_uneven_spacing=record.get("allow_uneven_spacing", False))
    raw = io.read_image(folder / outputs["raw"])
    if not ct.geometry.matches(raw.geometry):
        raise ValueError(f"the CT {ct_path} is not on the grid of the maps in {folder}: {ct.geometry.describe()} "
                         f"vs {raw.geometry.describe()}; give the CT that was mapped with --image")
    geo = ct.geometry

    def mask(name: str) -> Optional[np.ndarray]:
        given = inputs.get(name)
        if given is None:
            return None
        if not Path(given["path"]).exists():
            log.warning("the %s mask of this run is no longer at %s; drawing without it", name, given["path"])
            return None
        return io.read_mask(given["path"], geo, label=labels.get(name), resample=record.get("resample_masks", False))

    normalized = reference = None
    if "normalized" in outputs:
        normalized = io.read_image(folder / outputs["normalized"]).array.astype(np.float32, copy=False)
    box = record.get("computed_region_zyx")
    if isinstance(box, list):
        # NIfTI readers turn NaN into 0: outside the computed box there is no value
        outside = np.ones(geo.shape, bool)
        outside[tuple(slice(a, b) for a, b in box)] = False
        for m in (raw.array, normalized):
            if m is not None:
                m[outside] = np.nan
    if "reference" in outputs:
        reference = io.read_mask(folder / outputs["reference"], geo)
    params, ref = record["parameters"], record["reference_region"]
    case = CaseImages(
        ct=ct.array, geometry=geo, raw=raw.array.astype(np.float32, copy=False), normalized=normalized,
        tumor=mask("tumor"), reference=reference, liver=mask("liver"),
        thresholds=(params["hypo_below"], params["hyper_above"]), unit=UNITS[params["base"]],
        reference_name="liver" if ref.get("kind") == "liver minus dilated tumor" else "reference",
        reference_mean=ref.get("mean_smoothed_entropy"),
    )
    table_path = folder / outputs.get("table", "statistics.csv")
    table = pd.read_csv(table_path) if table_path.is_file() else None
    return case, record, table
