"""One case end to end: read, discretise, map, smooth, normalise, classify, summarise,
render, and write everything into one output folder atomically.

:func:`compute_maps` is the numpy core (no files); :func:`run_case` adds the I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np

from . import kernel as _kernel
from .discretization import Discretized, discretize
from .normalize import classify, normalize, reference_mean, smooth
from .regions import bounding_box, derived_reference, kernel_from_mm, sphere_region

if TYPE_CHECKING:  # pragma: no cover
    from .patterns import PatternParams
    from .render import RenderOptions

__all__ = ["CaseInputs", "MapParams", "MapResult", "compute_maps", "run_case", "OUTPUT_NAMES"]

log = logging.getLogger(__name__)

#: File names in the output folder (maps take the suffix of ``MapParams.format``).
OUTPUT_NAMES = {
    "raw": "entropy",
    "normalized": "entropy_normalized",
    "classes": "entropy_classes",
    "reference": "reference_region",
    "table": "statistics.csv",
    "patterns": "patterns.csv",
    "figure": "fusion.png",
    "record": "run.json",
}
_FORMATS = ("nii.gz", "nii", "nrrd", "mha")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MapParams:
    """Every parameter of the main job, validated once (see :meth:`validate`).

    Attributes
    ----------
    kernel : int or (kz, ky, kx)
        Window size in voxels (odd). Default 5, the paper's 5 x 5 x 5.
    kernel_mm : float or (z, y, x), optional
        Window size in mm instead; converted per axis to the nearest odd voxel count.
    shape : {"cube", "ball"}
    bin_width, bin_count, anchor, value_range
        Discretisation (see :func:`entropymap.discretize`); default bin width 1.
    crop_margin_mm : float, optional
        Compute only inside the bounding box of the tumor and reference regions grown by
        this margin (values there equal the full map; NaN elsewhere). None: whole volume.
    smooth_sigma, smooth_mode, smooth_unit
        Display smoothing: sigma 1 voxel, in-plane ("2d") by default, as in the paper.
    reference_margin_mm : float
        For a reference derived from a liver mask: tumor dilation margin (default 10 mm).
    hypo_below, hyper_above : float
        Thresholds of the hypo / iso / hyper-entropic label map (normalised units).
    base : {"e", 2, 10}
        Entropy unit: nats (default), bits, hartleys.
    n_threads : int, optional
        Threads for the kernel (None: all available cores).
    format : {"nii.gz", "nii", "nrrd", "mha"}
        File format of the maps written.
    """

    kernel: Union[int, tuple[int, int, int]] = 5
    kernel_mm: Optional[Union[float, tuple[float, float, float]]] = None
    shape: str = "cube"
    bin_width: Optional[float] = None
    bin_count: Optional[int] = None
    anchor: float = 0.0
    value_range: Optional[tuple[float, float]] = None
    crop_margin_mm: Optional[float] = None
    smooth_sigma: float = 1.0
    smooth_mode: str = "2d"
    smooth_unit: str = "voxel"
    reference_margin_mm: float = 10.0
    hypo_below: float = 0.9
    hyper_above: float = 1.1
    base: Union[str, int] = "e"
    n_threads: Optional[int] = None
    format: str = "nii.gz"

    def validate(self) -> "MapParams":
        """Check every value; raise ValueError naming the parameter. Returns self."""
        if self.kernel_mm is None:
            _kernel.normalize_kernel(self.kernel)
        for name in ("anchor", "smooth_sigma", "reference_margin_mm", "hypo_below", "hyper_above",
                     "bin_width", "crop_margin_mm"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name.replace('_mm', '')} must be a finite number, got {value}")
        if self.shape not in ("cube", "ball"):
            raise ValueError(f"shape must be 'cube' or 'ball', got {self.shape!r}")
        if self.bin_width is not None and self.bin_count is not None:
            raise ValueError("give a bin width or a bin count, not both")
        if self.bin_width is not None and not self.bin_width > 0:
            raise ValueError(f"bin width must be positive, got {self.bin_width}")
        if self.bin_count is not None and self.bin_count < 1:
            raise ValueError(f"bin count must be >= 1, got {self.bin_count}")
        if self.crop_margin_mm is not None and self.crop_margin_mm < 0:
            raise ValueError(f"crop margin must be >= 0 mm, got {self.crop_margin_mm}")
        if self.smooth_sigma < 0:
            raise ValueError(f"smoothing sigma must be >= 0, got {self.smooth_sigma}")
        if self.smooth_mode not in ("2d", "3d"):
            raise ValueError(f"smoothing mode must be '2d' or '3d', got {self.smooth_mode!r}")
        if self.smooth_unit not in ("voxel", "mm"):
            raise ValueError(f"smoothing unit must be 'voxel' or 'mm', got {self.smooth_unit!r}")
        if self.reference_margin_mm < 0:
            raise ValueError(f"reference margin must be >= 0 mm, got {self.reference_margin_mm}")
        if not self.hypo_below <= self.hyper_above:
            raise ValueError(
                f"hypo threshold {self.hypo_below} must not exceed hyper threshold {self.hyper_above}"
            )
        if self.base not in ("e", 2, 10):
            raise ValueError(f"base must be 'e', 2 or 10, got {self.base!r}")
        _kernel.resolve_threads(self.n_threads)
        if self.format not in _FORMATS:
            raise ValueError(f"format must be one of {', '.join(_FORMATS)}, got {self.format!r}")
        return self

    def kernel_voxels(self, spacing: Sequence[float]) -> tuple[int, int, int]:
        """The kernel in voxels (z, y, x) for this spacing."""
        if self.kernel_mm is not None:
            return kernel_from_mm(self.kernel_mm, spacing)
        return _kernel.normalize_kernel(self.kernel)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class MapResult:
    """Arrays and numbers of one computed case (all maps on the CT grid, float32)."""

    raw: np.ndarray
    smoothed: np.ndarray
    normalized: Optional[np.ndarray]
    classes: Optional[np.ndarray]
    reference_mean: Optional[float]
    discretization: Discretized
    kernel: tuple[int, int, int]
    computed_region: Optional[tuple[slice, slice, slice]]
    timings: dict = field(default_factory=dict)


def _margin_voxels(margin_mm: float, spacing: Sequence[float]) -> tuple[int, int, int]:
    m = np.ceil(margin_mm / np.asarray(spacing, dtype=float)).astype(int)
    return int(m[0]), int(m[1]), int(m[2])


def compute_maps(
    image: np.ndarray,
    spacing: Sequence[float],
    params: MapParams,
    *,
    tumor: Optional[np.ndarray] = None,
    reference: Optional[np.ndarray] = None,
    progress: Optional[Progress] = None,
) -> MapResult:
    """The numeric part of the main job on arrays (no I/O).

    Parameters
    ----------
    image : (Z, Y, X) array
        Intensities (HU for CT).
    spacing : (z, y, x)
        Voxel spacing in mm, array order.
    params : MapParams
    tumor, reference : (Z, Y, X) bool arrays, optional
        The tumor VOI and the reference region; with a reference the map is
        normalised and classified.
    progress : callable, optional
        Called with the name of each step as it starts.
    """
    if not isinstance(params, MapParams):
        raise TypeError(f"params must be a MapParams, got {type(params).__name__}")
    params.validate()
    for name, region in (("tumor", tumor), ("reference", reference)):
        if region is not None and (np.shape(region) != np.shape(image) or np.asarray(region).dtype != np.bool_):
            raise TypeError(f"{name} must be a bool mask of the image's shape {np.shape(image)}, got "
                            f"{np.asarray(region).dtype} {np.shape(region)}; use mask != 0 or io.read_mask")
    say = progress or (lambda step: None)
    timings: dict = {}

    @contextlib.contextmanager
    def timed(name: str):
        say(name)
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 4)

    k = params.kernel_voxels(spacing)
    with timed("discretise"):
        # A fixed bin count spans the whole image's range unless value_range is given.
        disc = discretize(image, bin_width=params.bin_width, bin_count=params.bin_count,
                          anchor=params.anchor, value_range=params.value_range)

    computed = None
    with timed("local entropy"):
        if params.crop_margin_mm is None:
            raw = _kernel.local_entropy(disc.levels, kernel=k, shape=params.shape, count_mask=disc.included,
                                        base=params.base, n_threads=params.n_threads)
        else:
            regions = [r for r in (tumor, reference) if r is not None]
            if not regions:
                raise ValueError("crop_margin_mm needs a tumor or a reference region to crop around")
            union = np.logical_or.reduce(regions)
            # The box that must hold exact values, plus the smoothing support, plus the
            # kernel radius of data for those windows; the volume's faces still clip.
            smooth_halo = int(np.ceil(4.0 * params.smooth_sigma / (min(spacing) if params.smooth_unit == "mm" else 1.0)))
            keep = _margin_voxels(params.crop_margin_mm, spacing)
            computed = bounding_box(union, keep, image.shape)
            outer = bounding_box(union, tuple(m + smooth_halo for m in keep), image.shape)
            data_box = bounding_box(union, tuple(m + smooth_halo + r // 2 for m, r in zip(keep, k)), image.shape)
            sub = disc.levels[data_box]
            out_mask = np.zeros(sub.shape, bool)
            rel = tuple(slice(o.start - d.start, o.stop - d.start) for o, d in zip(outer, data_box))
            out_mask[rel] = True
            inc = None if disc.included is None else disc.included[data_box]
            sub_map = _kernel.local_entropy(sub, kernel=k, shape=params.shape, mask=out_mask, count_mask=inc,
                                            base=params.base, n_threads=params.n_threads)
            raw = np.full(image.shape, np.nan, np.float32)
            raw[outer] = sub_map[rel]

    with timed("smooth"):
        smoothed = smooth(raw, sigma=params.smooth_sigma, mode=params.smooth_mode, unit=params.smooth_unit,
                          spacing=spacing)
        if computed is not None:
            # Outside the exact box the smoothing saw the NaN beyond the crop: drop it.
            keep_mask = np.zeros(image.shape, bool)
            keep_mask[computed] = True
            raw[~keep_mask] = np.nan
            smoothed[~keep_mask] = np.nan

    normalized = classes = None
    ref_mean = None
    if reference is not None:
        with timed("normalise"):
            ref_mean = reference_mean(smoothed, reference)
            normalized = normalize(smoothed, ref_mean)
            classes = classify(normalized, hypo_below=params.hypo_below, hyper_above=params.hyper_above)
    return MapResult(raw, smoothed, normalized, classes, ref_mean, disc, k, computed, timings)


def _patterns(res: MapResult, tumor: np.ndarray, liver: Optional[np.ndarray], spacing: Sequence[float],
              pp: "PatternParams", vessels: Optional[np.ndarray]) -> dict:
    """Pattern and margin analysis of every tumor component (:mod:`entropymap.patterns`):
    the table (key ``"table"``, written as patterns.csv), the pictures' inputs (keys
    ``"rim"``, ``"core"``, ``"profile"``, ``"note"``) and a summary for run.json."""
    from scipy import ndimage

    from .patterns import analyze_lesions, rim_core_masks

    window = [(k // 2) * float(s) for k, s in zip(res.kernel, spacing)]
    table, profiles = analyze_lesions(res.normalized, tumor, spacing, pp, within=liver, vessels=vessels,
                                      window_mm=window)
    done = table[table["pattern"] != "skipped"]
    keep = ["lesion", "pattern", "volume_ml", "hyper_fraction", "rim_coverage", "core_hyper_fraction",
            "extension_mm", "extension_ml", "extension_flag", "reason"]
    # The rim and core of the largest component, for the picture (in its bounding box: fast).
    lab, n = ndimage.label(tumor)
    largest = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    box = bounding_box(largest, (2, 2, 2), tumor.shape)
    rim = np.zeros(tumor.shape, bool)
    core = np.zeros(tumor.shape, bool)
    rim[box], core[box], _ = rim_core_masks(largest[box], spacing, pp)
    first = done[done["lesion"].astype(str) == "1"]
    note = (f"largest lesion: {first.iloc[0]['pattern']} (hyper {first.iloc[0]['hyper_fraction']:.0%}, rim coverage "
            f"{first.iloc[0]['rim_coverage']:.0%}, core hyper {first.iloc[0]['core_hyper_fraction']:.0%})"
            if len(first) else "largest lesion below the minimum diameter: not classified")
    return {
        "table": table,
        "rim": rim,
        "core": core,
        "profile": profiles["all"].profile_table(),
        "note": note,
        "summary": {
            "parameters": dataclasses.asdict(pp),
            "window_half_width_mm_zyx": window,
            "components": int(len(table) - 1),
            "skipped_below_min_diameter": int((table["pattern"] == "skipped").sum()),
            "vessel_voxels_excluded": int(vessels.sum()) if vessels is not None else 0,
            "lesions": json.loads(done[keep].to_json(orient="records")),
            "band_profile_all": json.loads(profiles["all"].profile_table().to_json(orient="records")),
        },
    }


@dataclass(frozen=True)
class CaseInputs:
    """Where one case's files are and which labels to use.

    The reference region is given by exactly one of ``reference`` (a mask file),
    ``sphere`` ((x, y, z, radius) in mm, physical) or ``liver`` (a liver mask: the
    reference is the liver minus the tumor dilated by ``MapParams.reference_margin_mm``).
    """

    image: Path
    tumor: Optional[Path] = None
    tumor_label: Optional[int] = None
    reference: Optional[Path] = None
    reference_label: Optional[int] = None
    liver: Optional[Path] = None
    liver_label: Optional[int] = None
    sphere: Optional[tuple[float, float, float, float]] = None
    series: Optional[str] = None
    resample_masks: bool = False
    allow_uneven_spacing: bool = False
    vessels: Optional[Path] = None
    vessels_label: Optional[int] = None

    def validate(self) -> "CaseInputs":
        given = [n for n, v in (("reference", self.reference), ("sphere", self.sphere), ("liver", self.liver)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one reference region, not several: {', '.join(given)}")
        if self.sphere is not None and len(self.sphere) != 4:
            raise ValueError("the reference sphere is four numbers: x y z (mm) and radius (mm)")
        return self


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("entropymap", "numpy", "scipy", "itk-io", "itk-core", "pandas", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    out["openmp"] = _kernel.openmp_enabled()
    out["vector_isa"] = _kernel.vector_isa()
    return out


def _prepare_output(out_dir: Path, overwrite: bool, inputs: Sequence[Optional[Path]] = ()) -> tuple[Path, list]:
    """Check the output folder may be written and make the hidden temporary one beside it.

    Returns the temporary folder and the parent folders this call created (removed
    again if the run fails). Refuses, even with ``overwrite``: a folder that holds an
    input or the working directory, and an existing folder that is neither empty nor
    an entropymap output (it has no ``run.json``).
    """
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    for p in inputs:
        if p is not None and (Path(p).resolve() == resolved or resolved in Path(p).resolve().parents):
            raise ValueError(f"the output folder {out_dir} holds the input {p}; choose another output folder")
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ValueError(f"the output folder {out_dir} is the working folder or holds it; choose a new folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"output path {out_dir} exists and is not a folder")
        if not overwrite:
            raise FileExistsError(f"output folder {out_dir} already exists; choose another or pass --overwrite")
        if any(out_dir.iterdir()) and not (out_dir / OUTPUT_NAMES["record"]).is_file():
            raise FileExistsError(
                f"{out_dir} is not an entropymap output folder (it has no run.json); --overwrite replaces "
                "only earlier outputs: choose another folder"
            )
    created = []
    parent = out_dir.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot create the output folder {out_dir}: {parent} is a file")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as exc:
        _remove_created(created)
        raise OSError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    # mkdtemp makes the folder private (0700); the finished folder gets the usual
    # permissions of a new folder (0777 less the umask), like `mkdir` would give it.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    return tmp, created


def _remove_created(created: list) -> None:
    """Remove the (empty) parent folders a failed run created, deepest first."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished temporary folder into place (replacing an old one when allowed)."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "x")
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def run_case(
    inputs: CaseInputs,
    out_dir: Union[str, Path],
    params: MapParams = MapParams(),
    *,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
    command: Optional[Sequence[str]] = None,
    pictures: Optional["RenderOptions"] = None,
    patterns: Optional["PatternParams"] = None,
) -> dict:
    """Run the main job on one case and write its output folder.

    The folder holds the raw map (nats), the normalised map and the class map (when a
    reference region is given), ``statistics.csv``, ``fusion.png`` and ``run.json``. It
    appears only when everything succeeded (built in a temporary sibling folder, then
    renamed); an existing folder is replaced only with ``overwrite=True``.

    ``pictures`` sets what is drawn and how (default :class:`~entropymap.render.RenderOptions`:
    ``fusion.png``, the triptych, orthogonal views, montage, histogram and ``report.html``).

    Returns
    -------
    dict
        The ``run.json`` record.
    """
    from . import io, render, stats

    params.validate()
    inputs.validate()
    from .patterns import PatternParams, vessel_mask

    pictures = (pictures or render.RenderOptions()).validate()
    patterns = (patterns or PatternParams(hyper_above=params.hyper_above)).validate()
    say = progress or (lambda step: None)
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    timings: dict = {}

    say("read")
    t0 = time.perf_counter()
    vol = io.read_image(inputs.image, series=inputs.series, allow_uneven_spacing=inputs.allow_uneven_spacing)
    geo = vol.geometry
    label_images: dict = {}  # one label image often holds the tumor and the liver: read it once

    def read_mask(role: str, path: Path, label: Optional[int]) -> np.ndarray:
        try:
            key = Path(path).resolve()
            if key not in label_images:
                label_images[key] = io.read_image(path)
            return io.read_mask(label_images[key], geo, label=label, resample=inputs.resample_masks)
        except (OSError, ValueError, TypeError) as exc:
            raise type(exc)(f"{role} mask: {exc}") from None

    tumor = read_mask("tumor", inputs.tumor, inputs.tumor_label) if inputs.tumor is not None else None
    reference = liver = None
    ref_kind = None
    if inputs.reference is not None:
        reference = read_mask("reference", inputs.reference, inputs.reference_label)
        ref_kind = "mask"
    elif inputs.sphere is not None:
        x, y, z, r = inputs.sphere
        reference = sphere_region(geo, (x, y, z), r)
        if not reference.any():
            corners = geo.index_to_physical(
                np.array([[i, j, k] for i in (0, geo.shape[0] - 1) for j in (0, geo.shape[1] - 1)
                          for k in (0, geo.shape[2] - 1)]))
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            extent = ", ".join(f"{a} {lo[n]:.1f} .. {hi[n]:.1f}" for n, a in enumerate("xyz"))
            raise ValueError(
                f"the reference sphere at ({x}, {y}, {z}) mm with radius {r} mm holds no voxel of the image; "
                f"the image's voxel centres span {extent} mm (ITK/LPS)"
            )
        ref_kind = "sphere"
    elif inputs.liver is not None:
        liver = read_mask("liver", inputs.liver, inputs.liver_label)
        reference = derived_reference(liver, tumor, geo.spacing, params.reference_margin_mm)
        if not reference.any():
            hint = "lower --reference-margin or give a reference mask"
            if tumor is not None and np.all(tumor[liver]):
                hint = ("the tumor mask covers the whole liver: choose the tumor's label with --tumor-label "
                        "(a label image holds both)")
            raise ValueError(
                f"the derived reference (liver minus the tumor dilated by {params.reference_margin_mm} mm) "
                f"is empty; {hint}"
            )
        ref_kind = "liver minus dilated tumor" if tumor is not None else "liver (no tumor given)"
    vessels = None
    if inputs.vessels is not None or patterns.vessel_hu is not None:
        given = read_mask("vessel", inputs.vessels, inputs.vessels_label) if inputs.vessels is not None else None
        vessels = vessel_mask(vol.array, vessel_hu=patterns.vessel_hu, vessels=given, within=liver)
        if reference is not None:
            # The paper saw vessels as hyper-entropic: keep them out of the "healthy" mean.
            reference = reference & ~vessels
            if not reference.any():
                raise ValueError("the reference region holds only vessel voxels; check --vessels / --vessel-hu")
    timings["read"] = round(time.perf_counter() - t0, 4)

    tmp, created = _prepare_output(out_dir, overwrite,
                                   (inputs.image, inputs.tumor, inputs.reference, inputs.liver, inputs.vessels))
    try:
        res = compute_maps(vol.array, geo.spacing, params, tumor=tumor, reference=reference, progress=say)
        timings.update(res.timings)

        say("write maps")
        t0 = time.perf_counter()
        suffix = "." + params.format
        outputs = {"raw": io.write_image(tmp / (OUTPUT_NAMES["raw"] + suffix), res.raw, geo).name}
        if res.normalized is not None:
            outputs["normalized"] = io.write_image(tmp / (OUTPUT_NAMES["normalized"] + suffix), res.normalized, geo).name
            outputs["classes"] = io.write_image(tmp / (OUTPUT_NAMES["classes"] + suffix), res.classes, geo).name
            outputs["reference"] = io.write_image(
                tmp / (OUTPUT_NAMES["reference"] + suffix), reference.astype(np.uint8), geo).name
        timings["write maps"] = round(time.perf_counter() - t0, 4)

        say("statistics")
        t0 = time.perf_counter()
        regions = {name: m for name, m in (("tumor", tumor), ("reference", reference)) if m is not None}
        if not regions:  # no region given: summarise the whole volume
            regions = {"volume": np.ones(vol.array.shape, bool)}
        table = stats.statistics_table({"entropy": res.raw, "hu": vol.array}, regions, spacing=geo.spacing)
        table.to_csv(tmp / OUTPUT_NAMES["table"], index=False)
        outputs["table"] = OUTPUT_NAMES["table"]
        timings["statistics"] = round(time.perf_counter() - t0, 4)

        pattern_summary = pattern_data = None
        if tumor is not None and tumor.any() and res.normalized is not None:
            say("patterns")
            t0 = time.perf_counter()
            pattern_data = _patterns(res, tumor, liver, geo.spacing, patterns, vessels)
            pattern_summary = pattern_data["summary"]
            pattern_data["table"].to_csv(tmp / OUTPUT_NAMES["patterns"], index=False)
            outputs["patterns"] = OUTPUT_NAMES["patterns"]
            timings["patterns"] = round(time.perf_counter() - t0, 4)

        say("render")
        t0 = time.perf_counter()
        case = render.CaseImages(
            ct=vol.array, geometry=geo, raw=res.raw, normalized=res.normalized, tumor=tumor, reference=reference,
            liver=liver, thresholds=(params.hypo_below, params.hyper_above),
            unit=render.UNITS[params.base], reference_name="liver" if inputs.liver is not None else "reference",
            reference_mean=res.reference_mean,
            **({"rim": pattern_data["rim"], "core": pattern_data["core"], "profile": pattern_data["profile"],
                "pattern_note": pattern_data["note"]} if pattern_data is not None else {}))
        scene = render.Scene(case, pictures)
        record = {
            "entropymap_run": 1,
            "command": list(command) if command is not None else None,
            "inputs": {
                name: ({"path": str(Path(p).resolve()), "sha256": _sha256(Path(p))} if p is not None else None)
                for name, p in (("image", inputs.image), ("tumor", inputs.tumor),
                                ("reference", inputs.reference), ("liver", inputs.liver),
                                ("vessels", inputs.vessels))
            },
            "labels": {"tumor": inputs.tumor_label, "reference": inputs.reference_label, "liver": inputs.liver_label,
                       "vessels": inputs.vessels_label},
            "series": inputs.series,
            "resample_masks": inputs.resample_masks,
            "allow_uneven_spacing": inputs.allow_uneven_spacing,
            "reference_region": {
                "kind": ref_kind,
                "sphere_xyz_r_mm": list(inputs.sphere) if inputs.sphere is not None else None,
                "voxels": int(reference.sum()) if reference is not None else 0,
                "mean_smoothed_entropy": res.reference_mean,
            },
            "parameters": params.to_dict(),
            "kernel_voxels_zyx": list(res.kernel),
            "discretization": res.discretization.describe(),
            "computed_region_zyx": ([[s.start, s.stop] for s in res.computed_region]
                                    if res.computed_region is not None else "whole volume"),
            "figure_view": pictures.view,
            "figure_slice": scene.orientation.slice_number(pictures.view, scene.slice_of(pictures.view)),
            "geometry": {**geo.to_dict(),
                         "axes": "shape and spacing in array order (z, y, x); origin and direction in "
                                 "physical LPS (x, y, z), as ITK reports them"},
            "patterns": pattern_summary,
            "threads": _kernel.resolve_threads(params.n_threads),
            "versions": _versions(),
            "timings_s": timings,
            "outputs": outputs,
        }
        outputs.update(render.write_pictures(tmp, scene, record=record, table=table))
        timings["render"] = round(time.perf_counter() - t0, 4)
        timings["total"] = round(time.perf_counter() - t_start, 4)
        with open(tmp / OUTPUT_NAMES["record"], "w") as fh:
            json.dump(record, fh, indent=2, default=str)
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        raise
    log.info("wrote %s", out_dir)
    return record
