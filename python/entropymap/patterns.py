r"""Entropic patterns of a lesion and the entropy at and beyond its drawn margin.

The paper's readers classified each lesion by eye into four patterns and saw
hyper-entropic tissue reaching past the drawn margin in 4 of 20 cases (Costa et al.
2023; ``docs/METHOD.md``). This module makes both quantitative, from the *normalised*
map (1.0 = the reference mean) and the tumor mask, with every threshold an option of
:class:`PatternParams` and every decision returned with the numbers behind it.

Pattern of one lesion (:func:`classify_lesion`)
-----------------------------------------------
* **hyper-entropic voxel**: normalised value ``> hyper_above`` (the threshold of the
  hypo / iso / hyper label map, 1.1 by default).
* **signed distance** ``d`` to the lesion boundary, mm, inside negative
  (:func:`signed_distance`).
* **rim**: lesion voxels with ``-rim_depth <= d < 0``. Default depth 3 mm, capped at a
  third of the lesion's inscribed radius so a small lesion keeps a core. Why 3 mm: the
  map cannot resolve anything thinner than its window (5 voxels, a half-width of
  2 voxels, about 1.5-2 mm at 0.7-1 mm in-plane spacing) spread further by the display
  smoothing (sigma 1 voxel); a thinner shell would only sample the blur of the edge,
  a thicker one would eat the core of the paper's smallest lesions (10 mm).
* **core**: the lesion voxels deeper than the rim plus a transition band of
  ``core_gap_mm`` (2 mm; the window spills the rim's entropy that far into the core).
* **rim coverage**: the rim is cut into angular sectors around the lesion's centroid
  (mm); a sector is hyper-entropic when at least ``sector_hyper_min`` (half) of its
  rim voxels are; coverage = hyper sectors / sectors holding rim voxels. Default
  ``sectors="3d"``: ``n_azimuth x n_polar`` (8 x 4) equal-area sectors of the sphere of
  directions (azimuth in the axial plane, cosine of the polar angle from the z axis),
  so every rim voxel counts once, whatever the slice orientation and thickness.
  ``sectors="slice"``: ``n_azimuth`` in-plane sectors per axial slice (the reader's
  "circumference"), coverage averaged over slices weighted by their rim voxels; it
  degrades on thick slices, where few slices cross a lesion and the end slices are all
  rim, which is why it is not the default.
* **rim present** when coverage ``>= rim_coverage_min`` (0.75, the paper's 75 % of the
  circumference); **complete** when coverage ``>= rim_complete_min`` (0.95), else
  incomplete.
* **core uniformity**: the share of the core's majority class (hyper vs not), and the
  core's hyper fraction; the core is "homogeneous iso/hypo" when its hyper fraction is
  ``<= 1 - core_uniform_min`` (0.25).

Decision, in this order: hyper fraction of the lesion ``>= hyper_fraction_min``
(0.75) and a uniformly hyper core (core hyper fraction ``>= core_uniform_min``) ->
**homogeneous**; rim present and homogeneous iso/hypo core -> **peripheral rim**; rim
present otherwise -> **mixed**; no rim and hyper fraction
``>= scattered_min`` (0.10) -> **inhomogeneous**; no rim and almost no hyper voxel ->
**non-hyper** (iso/hypo-entropic: not one of the paper's four, whose lesions were all
hyper-entropic against the liver; named so that it is not forced into one).

Margin (:func:`margin_analysis`)
--------------------------------
* the profile of the mean normalised entropy in bands of ``band_mm`` (1 mm) from
  ``profile_mm[0]`` to ``profile_mm[1]`` (-10 to +15 mm) of signed distance;
* **extension**: voxels outside the whole tumor mask, with ``0 < d <= shell_mm``
  (10 mm), hyper-entropic, not vessel, inside ``within`` (the liver when known), and
  connected (face connectivity) to the lesion through such voxels. Its volume (mL) and
  maximal distance (mm) are reported, and ``extension_flag`` is raised when the
  maximal distance exceeds ``extension_flag_mm`` (default 3 mm, see
  :class:`PatternParams` for why).
* vessels (a mask, or voxels of HU above ``vessel_hu``) are left out of the profile and
  of the extension; the pipeline also leaves them out of the reference region.

Examples
--------
>>> import numpy as np
>>> mask = np.zeros((1, 9, 9), bool); mask[0, 3:6, 3:6] = True
>>> signed_distance(mask, (1.0, 1.0, 1.0))[0, 4, 2:7].tolist()
[0.5, -0.5, -1.5, -0.5, 0.5]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "PATTERNS",
    "LesionPattern",
    "MarginResult",
    "PatternParams",
    "analyze_lesions",
    "classify_lesion",
    "margin_analysis",
    "signed_distance",
    "vessel_mask",
]

#: The possible patterns (the paper's four, then ours for a lesion without hyper tissue).
PATTERNS = ("homogeneous", "peripheral rim", "inhomogeneous", "mixed", "non-hyper")


@dataclass(frozen=True)
class PatternParams:
    """Thresholds of the pattern classification and of the margin analysis.

    Attributes
    ----------
    hyper_above : float
        Normalised value above which a voxel is hyper-entropic (as the label map).
    hyper_fraction_min : float
        Hyper fraction of the lesion from which it is homogeneous (paper: 75 %).
    rim_depth_mm : float
        Depth of the rim shell, mm (3 mm, see the module docstring); capped at a third
        of the lesion's inscribed radius.
    core_gap_mm : float
        Transition band between rim and core, left out of both (2 mm: the half-width of
        the 5-voxel window at 0.7-1 mm in-plane spacing, over which the rim's entropy
        spills into the core); capped, as the rim, at a third of the inscribed radius.
    sectors : {"3d", "slice"}
        Angular sectors over the 3-D sphere of directions (default) or per axial slice.
    n_azimuth, n_polar : int
        Sectors in the axial plane, and bands of the polar angle (``"3d"`` only).
    sector_hyper_min : float
        Share of hyper rim voxels that makes a sector hyper-entropic.
    rim_coverage_min, rim_complete_min : float
        Coverage from which a rim is present (paper: 75 % of the circumference), and
        from which it is complete.
    core_uniform_min : float
        Majority share from which the core counts as uniform; an iso/hypo core is
        homogeneous when its hyper fraction is at most ``1 - core_uniform_min``.
    scattered_min : float
        Hyper fraction below which a lesion without rim is "non-hyper" rather than
        inhomogeneous.
    min_diameter_mm : float
        Components whose equivalent-sphere diameter is below this are skipped (10 mm,
        the paper's smallest lesion; below it the rim and core are a few voxels each).
    shell_mm : float
        Peritumoral shell of the extension analysis, mm.
    extension_flag_mm : float
        Maximal extension (mm, corrected for the window's reach, see
        :func:`margin_analysis`) above which ``extension_flag`` is raised. 3 mm: after
        the correction a lesion without extension measures about 0-1 voxel (the display
        smoothing and the voxel grid), and the paper's readers could not have seen less
        than a few mm on the map; 3 mm is over a voxel of any portal-venous CT in-plane.
    band_mm : float
        Width of the profile bands, mm.
    profile_mm : (float, float)
        Signed-distance range of the profile, mm.
    vessel_hu : float, optional
        Voxels with HU above this are vessels (portal-venous vessels enhance more than
        parenchyma); None: no HU rule.
    """

    hyper_above: float = 1.1
    hyper_fraction_min: float = 0.75
    rim_depth_mm: float = 3.0
    core_gap_mm: float = 2.0
    sectors: str = "3d"
    n_azimuth: int = 8
    n_polar: int = 4
    sector_hyper_min: float = 0.6
    rim_coverage_min: float = 0.75
    rim_complete_min: float = 0.95
    core_uniform_min: float = 0.75
    scattered_min: float = 0.10
    min_diameter_mm: float = 10.0
    shell_mm: float = 10.0
    extension_flag_mm: float = 3.0
    band_mm: float = 1.0
    profile_mm: tuple[float, float] = (-10.0, 15.0)
    vessel_hu: Optional[float] = None

    def validate(self) -> "PatternParams":
        """Check every value; raise ValueError naming the bad one. Returns self."""
        for name in ("hyper_above", "rim_depth_mm", "core_gap_mm", "shell_mm", "extension_flag_mm", "band_mm",
                     "min_diameter_mm", "hyper_fraction_min", "sector_hyper_min", "rim_coverage_min",
                     "rim_complete_min", "core_uniform_min", "scattered_min"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        for name in ("rim_depth_mm", "shell_mm", "band_mm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("extension_flag_mm", "min_diameter_mm", "core_gap_mm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("hyper_fraction_min", "sector_hyper_min", "rim_coverage_min", "rim_complete_min",
                     "core_uniform_min", "scattered_min"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a fraction (0 to 1), got {getattr(self, name)}")
        if self.rim_complete_min < self.rim_coverage_min:
            raise ValueError(f"rim_complete_min {self.rim_complete_min} must not be below rim_coverage_min "
                             f"{self.rim_coverage_min}")
        if self.sectors not in ("3d", "slice"):
            raise ValueError(f"sectors must be '3d' or 'slice', got {self.sectors!r}")
        if int(self.n_azimuth) != self.n_azimuth or self.n_azimuth < 2:
            raise ValueError(f"n_azimuth must be an integer >= 2, got {self.n_azimuth}")
        if int(self.n_polar) != self.n_polar or self.n_polar < 1:
            raise ValueError(f"n_polar must be an integer >= 1, got {self.n_polar}")
        lo, hi = self.profile_mm
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < 0 < hi):
            raise ValueError(f"profile_mm must be (negative, positive) mm, got {self.profile_mm!r}")
        if self.vessel_hu is not None and not math.isfinite(self.vessel_hu):
            raise ValueError(f"vessel_hu must be a finite number of HU, got {self.vessel_hu!r}")
        return self


@dataclass
class LesionPattern:
    """The pattern of one lesion and the numbers it was decided from."""

    pattern: str
    n_voxels: int
    volume_ml: float
    diameter_mm: float
    hyper_fraction: float
    mean_normalized: float
    rim_depth_mm: float
    rim_voxels: int
    rim_hyper_fraction: float
    rim_coverage: float
    rim_sectors: int
    rim_present: bool
    rim_complete: bool
    core_voxels: int
    core_hyper_fraction: float
    core_uniformity: float
    core_std: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MarginResult:
    """Margin analysis of one lesion (distances in mm, volume in mL)."""

    extension_ml: float
    extension_mm: float
    extension_voxels: int
    extension_flag: bool
    band_edges_mm: np.ndarray = field(repr=False)
    band_mean: np.ndarray = field(repr=False)
    band_voxels: np.ndarray = field(repr=False)
    extension_map_mm: float = 0.0

    def summary(self) -> dict:
        """The scalar numbers (for a table row)."""
        return {"extension_ml": self.extension_ml, "extension_mm": self.extension_mm,
                "extension_map_mm": self.extension_map_mm,
                "extension_voxels": self.extension_voxels, "extension_flag": self.extension_flag}

    def profile_table(self):
        """The band profile as a DataFrame: band start, end, centre (mm), voxels, mean."""
        import pandas as pd

        e = self.band_edges_mm
        return pd.DataFrame({"from_mm": e[:-1], "to_mm": e[1:], "centre_mm": (e[:-1] + e[1:]) / 2,
                             "n_voxels": self.band_voxels, "mean_normalized": self.band_mean})


def _spacing(spacing: Sequence[float]) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    return sp


def signed_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) of every voxel centre to the boundary of ``mask``, inside negative.

    The Euclidean distance transform with the voxel spacing (anisotropic voxels
    respected) gives, for a voxel inside, the distance to the nearest voxel centre
    outside, and for a voxel outside the distance to the nearest mask voxel centre. The
    boundary lies between the two centres, so half of the smallest spacing is taken off
    both: the voxels either side of an in-plane face are at -s/2 and +s/2. Across a
    face between slices thicker than the in-plane spacing the distance is then too
    large by at most half their difference.
    """
    from scipy import ndimage

    sp = _spacing(spacing)
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {m.shape}")
    if not m.any():
        raise ValueError("the mask is empty: no boundary to measure a distance to")
    half = 0.5 * float(sp.min())
    samp = tuple(float(s) for s in sp)
    if m.all():
        return -ndimage.distance_transform_edt(np.pad(m, 1, constant_values=False), sampling=samp)[1:-1, 1:-1, 1:-1] + half
    outside = ndimage.distance_transform_edt(~m, sampling=samp)
    inside = ndimage.distance_transform_edt(m, sampling=samp)
    return np.where(m, -(inside - half), outside - half).astype(np.float32)


def vessel_mask(image: Optional[np.ndarray], *, vessel_hu: Optional[float] = None,
                vessels: Optional[np.ndarray] = None, within: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Vessel voxels: a given mask, or voxels of ``image`` above ``vessel_hu`` (within
    ``within``, e.g. the liver), or their union; None when neither is given."""
    out = None
    if vessels is not None:
        out = np.asarray(vessels, dtype=bool).copy()
    if vessel_hu is not None:
        if image is None:
            raise ValueError("a vessel HU threshold needs the image")
        hu = np.asarray(image) > vessel_hu
        if within is not None:
            hu &= within
        out = hu if out is None else (out | hu)
    return out


def _finite_hyper(values: np.ndarray, hyper_above: float) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        return finite, finite & (values > hyper_above)


def _sector_ids(points_mm: np.ndarray, centre_mm: np.ndarray, params: PatternParams, slices: np.ndarray):
    """Sector index of each point (3-D) or (slice, in-plane sector) pairs flattened."""
    v = points_mm - centre_mm
    az = np.arctan2(v[:, 1], v[:, 2])  # y, x: the axial plane
    a = np.minimum(((az + np.pi) / (2 * np.pi) * params.n_azimuth).astype(int), params.n_azimuth - 1)
    if params.sectors == "slice":
        return slices.astype(np.int64) * params.n_azimuth + a
    norm = np.linalg.norm(v, axis=1)
    cos_t = np.divide(v[:, 0], norm, out=np.zeros(len(v)), where=norm > 0)
    p = np.minimum(((cos_t + 1.0) / 2.0 * params.n_polar).astype(int), params.n_polar - 1)
    return p * params.n_azimuth + a


def rim_core_masks(lesion: np.ndarray, spacing: Sequence[float], params: PatternParams = PatternParams(), *,
                   distance: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The rim shell and the core of a lesion, and the rim depth used (mm).

    The rim is the lesion within ``rim_depth_mm`` of its boundary, the core lies deeper than
    the rim plus ``core_gap_mm``; both depths are capped at a third of the lesion's
    inscribed radius, so a small lesion keeps a core.
    """
    sp = _spacing(spacing)
    lesion = np.asarray(lesion, dtype=bool)
    d = signed_distance(lesion, sp) if distance is None else distance
    inscribed = float(-d[lesion].min()) + 0.5 * float(sp.min())
    depth = min(params.rim_depth_mm, inscribed / 3.0)
    gap = min(params.core_gap_mm, inscribed / 3.0)
    return lesion & (d >= -depth), lesion & (d < -(depth + gap)), depth


def classify_lesion(normalized: np.ndarray, lesion: np.ndarray, spacing: Sequence[float],
                    params: PatternParams = PatternParams(), *,
                    distance: Optional[np.ndarray] = None) -> LesionPattern:
    """The entropic pattern of one lesion (see the module docstring for the rules).

    Parameters
    ----------
    normalized : (Z, Y, X) float array
        The normalised map (1.0 = the reference mean). NaN voxels are left out.
    lesion : (Z, Y, X) bool array
        The lesion (one connected component, or the whole tumor mask).
    spacing : (z, y, x)
        Voxel spacing, mm, array order.
    distance : array, optional
        :func:`signed_distance` of ``lesion``, if already computed.
    """
    params.validate()
    sp = _spacing(spacing)
    lesion = np.asarray(lesion, dtype=bool)
    if lesion.shape != np.shape(normalized):
        raise ValueError(f"lesion shape {lesion.shape} does not match the map shape {np.shape(normalized)}")
    d = signed_distance(lesion, sp) if distance is None else distance
    values = np.asarray(normalized, dtype=np.float64)
    finite, hyper = _finite_hyper(values, params.hyper_above)
    inside = lesion & finite
    n = int(lesion.sum())
    volume_ml = n * float(np.prod(sp)) / 1000.0
    diameter = 2.0 * (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    n_in = int(inside.sum())
    hyper_fraction = float(hyper[inside].sum() / n_in) if n_in else float("nan")
    mean_norm = float(values[inside].mean()) if n_in else float("nan")

    rim, core, depth = rim_core_masks(lesion, sp, params, distance=d)
    rim &= inside
    core &= inside
    rim_idx = np.nonzero(rim)
    pts = np.stack(rim_idx, axis=1) * sp
    centre = np.stack(np.nonzero(lesion), axis=1).mean(axis=0) * sp
    coverage = float("nan")
    n_sectors = 0
    rim_hyper = float("nan")
    if len(pts):
        sec = _sector_ids(pts, centre, params, rim_idx[0])
        h = hyper[rim_idx].astype(float)
        rim_hyper = float(h.mean())
        uniq, inv = np.unique(sec, return_inverse=True)
        counts = np.bincount(inv)
        hyper_share = np.bincount(inv, weights=h) / counts
        is_hyper = hyper_share >= params.sector_hyper_min
        n_sectors = int(len(uniq))
        if params.sectors == "slice":
            # per slice: share of hyper sectors, weighted by the slice's rim voxels
            sl = uniq // params.n_azimuth
            sl_u, sl_inv = np.unique(sl, return_inverse=True)
            per_slice = np.bincount(sl_inv, weights=is_hyper) / np.bincount(sl_inv)
            weight = np.bincount(sl_inv, weights=counts)
            coverage = float(np.sum(per_slice * weight) / np.sum(weight))
        else:
            coverage = float(is_hyper.mean())
    rim_present = bool(np.isfinite(coverage) and coverage >= params.rim_coverage_min)
    rim_complete = bool(np.isfinite(coverage) and coverage >= params.rim_complete_min)
    n_core = int(core.sum())
    core_hyper = float(hyper[core].sum() / n_core) if n_core else float("nan")
    core_uniformity = max(core_hyper, 1.0 - core_hyper) if n_core else float("nan")
    core_std = float(values[core].std()) if n_core else float("nan")
    core_iso = bool(n_core and core_hyper <= 1.0 - params.core_uniform_min)

    pct = lambda x: f"{100 * x:.0f} %"  # noqa: E731
    core_hyper_uniform = bool(n_core == 0 or core_hyper >= params.core_uniform_min)
    rim_word = "complete" if rim_complete else "incomplete"
    core_txt = f"core hyper {pct(core_hyper)}" if n_core else "no core"
    if n_in and hyper_fraction >= params.hyper_fraction_min and core_hyper_uniform:
        pattern = "homogeneous"
        reason = (f"hyper {pct(hyper_fraction)} >= {pct(params.hyper_fraction_min)} of the lesion, {core_txt} "
                  f"(uniformly hyper)")
    elif rim_present and core_iso:
        pattern = "peripheral rim"
        reason = (f"hyper {pct(hyper_fraction)}; {rim_word} rim over {pct(coverage)} of {n_sectors} sectors; "
                  f"{core_txt} <= {pct(1 - params.core_uniform_min)} (uniform iso/hypo)")
    elif rim_present:
        pattern = "mixed"
        reason = (f"hyper {pct(hyper_fraction)}; {rim_word} rim over {pct(coverage)} of {n_sectors} sectors; "
                  f"{core_txt} (neither uniformly iso/hypo nor uniformly hyper)")
    elif n_in and hyper_fraction >= params.scattered_min:
        pattern = "inhomogeneous"
        reason = (f"hyper {pct(hyper_fraction)} < {pct(params.hyper_fraction_min)}; rim coverage "
                  f"{pct(coverage) if np.isfinite(coverage) else 'n/a'} < {pct(params.rim_coverage_min)}")
    else:
        pattern = "non-hyper"
        reason = (f"hyper {pct(hyper_fraction) if n_in else 'n/a'} < {pct(params.scattered_min)} and no rim")
    return LesionPattern(pattern, n, volume_ml, diameter, hyper_fraction, mean_norm, depth, int(rim.sum()),
                         rim_hyper, coverage, n_sectors, rim_present, rim_complete, n_core, core_hyper,
                         core_uniformity, core_std, reason)


def margin_analysis(normalized: np.ndarray, lesion: np.ndarray, spacing: Sequence[float],
                    params: PatternParams = PatternParams(), *, tumor: Optional[np.ndarray] = None,
                    within: Optional[np.ndarray] = None, vessels: Optional[np.ndarray] = None,
                    distance: Optional[np.ndarray] = None,
                    window_mm: Optional[Sequence[float]] = None) -> MarginResult:
    """Band profile and hyper-entropic extension beyond the margin of one lesion.

    Parameters
    ----------
    normalized : (Z, Y, X) float array
    lesion : (Z, Y, X) bool array
        The lesion whose margin is measured.
    spacing : (z, y, x) mm
    tumor : bool array, optional
        The whole tumor mask (other lesions are not "outside"); default ``lesion``.
    within : bool array, optional
        Outside voxels count only here (the liver: fat and other organs have their own
        entropy). Voxels inside the lesion always count.
    vessels : bool array, optional
        Left out of the profile and of the extension.
    distance : array, optional
        :func:`signed_distance` of ``lesion``, if already computed.
    window_mm : (z, y, x), optional
        Half-widths of the entropy window, mm (``(k // 2) * spacing``). A voxel's entropy
        describes the tissue within its window, so hyper-entropic *values* reach that far
        past hyper-entropic *tissue*: a plain lesion shows a halo of the window's
        half-width outside its margin. With ``window_mm`` the extension of each voxel is
        its distance less the window's reach along the direction to the nearest lesion
        voxel (the distance from the window's centre to its box face in that
        direction), which is what ``extension_mm`` reports and the flag tests;
        ``extension_map_mm`` keeps the uncorrected maximal distance. None: no correction.
    """
    from scipy import ndimage

    params.validate()
    sp = _spacing(spacing)
    lesion = np.asarray(lesion, dtype=bool)
    tumor = lesion if tumor is None else np.asarray(tumor, dtype=bool)
    for name, arr in (("tumor", tumor), ("within", within), ("vessels", vessels)):
        if arr is not None and np.shape(arr) != lesion.shape:
            raise ValueError(f"{name} mask shape {np.shape(arr)} does not match the lesion shape {lesion.shape}")
    d = signed_distance(lesion, sp) if distance is None else distance
    values = np.asarray(normalized, dtype=np.float64)
    finite, hyper = _finite_hyper(values, params.hyper_above)
    usable = finite & ~(tumor & ~lesion)
    if within is not None:
        usable &= within | lesion
    if vessels is not None:
        usable &= ~vessels

    lo, hi = params.profile_mm
    n_bands = int(math.ceil((hi - lo) / params.band_mm - 1e-9))
    edges = lo + params.band_mm * np.arange(n_bands + 1)
    sel = usable & (d >= lo) & (d < edges[-1])
    band = np.floor((d[sel] - lo) / params.band_mm).astype(int).clip(0, n_bands - 1)
    counts = np.bincount(band, minlength=n_bands)
    sums = np.bincount(band, weights=values[sel], minlength=n_bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    candidate = usable & hyper & ~tumor & (d > 0) & (d <= params.shell_mm)
    lab, _ = ndimage.label(candidate | lesion)
    touching = np.unique(lab[lesion])
    ext = candidate & np.isin(lab, touching[touching > 0])
    n_ext = int(ext.sum())
    map_mm = float(d[ext].max()) if n_ext else 0.0
    tissue_mm = map_mm
    if n_ext and window_mm is not None:
        half = np.asarray(window_mm, dtype=float)
        _, nearest = ndimage.distance_transform_edt(~lesion, sampling=tuple(sp), return_indices=True)
        where = np.nonzero(ext)
        vec = np.stack([(nearest[a][where] - where[a]) * sp[a] for a in range(3)], axis=1)
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        u = np.abs(vec) / np.maximum(norm, 1e-12)
        with np.errstate(divide="ignore"):
            reach = np.min(np.where(u > 1e-9, half / np.maximum(u, 1e-12), np.inf), axis=1)
        tissue_mm = float(max(np.max(d[where] - reach), 0.0))
    ext_ml = n_ext * float(np.prod(sp)) / 1000.0
    return MarginResult(ext_ml, tissue_mm, n_ext, bool(tissue_mm > params.extension_flag_mm), edges, means,
                        counts, map_mm)


def analyze_lesions(normalized: np.ndarray, tumor: np.ndarray, spacing: Sequence[float],
                    params: PatternParams = PatternParams(), *, within: Optional[np.ndarray] = None,
                    vessels: Optional[np.ndarray] = None, window_mm: Optional[Sequence[float]] = None):
    """Pattern and margin of every tumor component large enough, and of the whole mask.

    Components are face-connected (as :func:`scipy.ndimage.label` by default), numbered
    from 1 by decreasing size; those with an equivalent-sphere diameter below
    ``params.min_diameter_mm`` are skipped (listed with ``pattern = "skipped"``). Each
    component is analysed in its bounding box grown by the profile and shell reach, so
    a run stays fast with many small lesions.

    Returns
    -------
    table : DataFrame
        One row per component (``lesion`` 1, 2, ...) and a last row ``lesion = "all"``
        for the whole mask: the numbers of :class:`LesionPattern` and
        :meth:`MarginResult.summary`, the centroid (array index, z y x).
    profiles : dict
        ``lesion -> MarginResult`` for every analysed row.
    """
    import pandas as pd
    from scipy import ndimage

    from .regions import bounding_box

    params.validate()
    sp = _spacing(spacing)
    tumor = np.asarray(tumor, dtype=bool)
    if tumor.shape != np.shape(normalized):
        raise ValueError(f"tumor mask shape {tumor.shape} does not match the map shape {np.shape(normalized)}")
    if not tumor.any():
        raise ValueError("the tumor mask is empty: no lesion to classify")
    lab, n = ndimage.label(tumor)
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    reach = max(params.shell_mm, params.profile_mm[1], -params.profile_mm[0]) + float(sp.max())
    margin = tuple(int(math.ceil(reach / s)) for s in sp)
    voxel_ml = float(np.prod(sp)) / 1000.0
    rows, profiles = [], {}
    objects = ndimage.find_objects(lab)

    def one(name, mask_box, box):
        sub = lambda a: None if a is None else a[box]  # noqa: E731
        dist = signed_distance(mask_box, sp)
        pat = classify_lesion(normalized[box], mask_box, sp, params, distance=dist)
        mar = margin_analysis(normalized[box], mask_box, sp, params, tumor=tumor[box], within=sub(within),
                              vessels=sub(vessels), distance=dist, window_mm=window_mm)
        centroid = np.stack(np.nonzero(mask_box), axis=1).mean(axis=0) + [s.start for s in box]
        rows.append({"lesion": name, **pat.to_dict(), **mar.summary(),
                     "centroid_z": centroid[0], "centroid_y": centroid[1], "centroid_x": centroid[2]})
        profiles[name] = mar

    for rank, comp in enumerate(order, start=1):
        count = int(sizes[comp - 1])
        diameter = 2.0 * (3.0 * count * voxel_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        if diameter < params.min_diameter_mm:
            sl = objects[comp - 1]
            centroid = np.stack(np.nonzero(lab[sl] == comp), axis=1).mean(axis=0) + [s.start for s in sl]
            rows.append({"lesion": str(rank), "pattern": "skipped", "n_voxels": count,
                         "volume_ml": count * voxel_ml, "diameter_mm": diameter,
                         "reason": f"equivalent diameter {diameter:.1f} mm < {params.min_diameter_mm:g} mm",
                         "centroid_z": centroid[0], "centroid_y": centroid[1], "centroid_x": centroid[2]})
            continue
        box = bounding_box(lab == comp, margin, tumor.shape)
        one(str(rank), lab[box] == comp, box)
    box = bounding_box(tumor, margin, tumor.shape)
    one("all", tumor[box], box)
    table = pd.DataFrame(rows)
    return table, profiles
