"""Command line: ``python -m entropymap <command> ...`` (also the ``entropymap`` script).

The parser builders and :func:`main` are separate so tests call ``main([...])``
in-process. Only this module talks to the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .render import RenderOptions

__all__ = ["build_parser", "main"]

log = logging.getLogger("entropymap")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text states its own or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def _odd_sizes(values: list[int]) -> object:
    return values[0] if len(values) == 1 else tuple(values)


def _add_map_parser(sub) -> None:
    p = sub.add_parser(
        "map",
        help="compute the local entropy map of a CT and its outputs",
        description=(
            "Compute the voxel-wise local entropy map of IMAGE (Costa et al. 2023), smooth it, "
            "normalise it by a reference region, classify it into hypo/iso/hyper-entropic "
            "areas, and write the maps, a statistics table, pictures, a self-contained report.html "
            "and run.json into the output folder. Lengths are in mm, kernel sizes in voxels (z y x order) "
            "unless stated."
        ),
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("inputs")
    g.add_argument("image", nargs="?", type=Path,
                   help="CT image file (.nii, .nii.gz, .nrrd, .mha, .mhd) or DICOM folder")
    g.add_argument("--sample", action="store_true",
                   help="use the bundled sample (LiTS 117 liver CT crop; tumor = label 2, liver = labels 1+2)")
    g.add_argument("--series", metavar="UID", help="DICOM series to read when the folder holds several")
    g.add_argument("--tumor", type=Path, metavar="FILE", help="tumor mask (Tumor-VOI)")
    g.add_argument("--tumor-label", type=int, metavar="N", help="tumor label value (default: all non-zero)")
    g.add_argument("--allow-uneven-spacing", action="store_true",
                   help="accept a DICOM series with missing slices or uneven slice spacing (read with the "
                        "mean spacing) instead of refusing it")
    g.add_argument("--resample-masks", action="store_true",
                   help="resample masks on another grid onto the CT grid by physical position "
                        "(nearest neighbour) instead of refusing them")
    r = p.add_argument_group("reference region (one of; enables normalisation and classes)")
    r.add_argument("--reference", type=Path, metavar="FILE", help="reference (healthy liver, Liver-VOI) mask")
    r.add_argument("--reference-label", type=int, metavar="N", help="reference label value (default: non-zero)")
    r.add_argument("--reference-sphere", type=float, nargs=4, metavar=("X", "Y", "Z", "R"),
                   help="sphere of radius R mm centred at physical (X, Y, Z) mm, ITK/LPS coordinates")
    r.add_argument("--liver", type=Path, metavar="FILE",
                   help="liver mask: reference = liver minus the tumor dilated by --reference-margin")
    r.add_argument("--liver-label", type=int, metavar="N", help="liver label value (default: all non-zero)")
    r.add_argument("--reference-margin", type=float, metavar="MM",
                   help="tumor dilation for the liver-derived reference, mm (default: 10)")
    k = p.add_argument_group("local entropy")
    k.add_argument("--kernel", type=int, nargs="+", metavar="K",
                   help="window size in voxels: one odd K, or KZ KY KX (default: 5, the paper's 5 x 5 x 5)")
    k.add_argument("--kernel-mm", type=float, nargs="+", metavar="MM",
                   help="window size in mm (one value or Z Y X), rounded per axis to the nearest odd voxel count")
    k.add_argument("--shape", choices=("cube", "ball"), default="cube", help="window shape")
    k.add_argument("--bin-width", type=float, metavar="W",
                   help="fixed bin width in intensity units (default 1 = integer HU, unless --bin-count)")
    k.add_argument("--bin-count", type=int, metavar="N", help="fixed number of bins over the intensity range")
    k.add_argument("--bin-anchor", type=float, metavar="A",
                   help="an edge of the fixed-width bins lies here (IBSI: the range minimum) (default: 0)")
    k.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), dest="value_range",
                   help="intensities outside [LO, HI] are left out of every histogram")
    k.add_argument("--crop-margin", type=float, metavar="MM",
                   help="compute only in the box around tumor and reference grown by MM (faster; same values there)")
    k.add_argument("--base", choices=("e", "2", "10"), default="e",
                   help="logarithm base: e (nats), 2 (bits) or 10 (hartleys)")
    k.add_argument("--threads", type=int, metavar="N", help="kernel threads (default: all available cores)")
    d = p.add_argument_group("display map")
    d.add_argument("--smooth-sigma", type=float, default=1.0, metavar="S", help="Gaussian sigma (0: no smoothing)")
    d.add_argument("--smooth-mode", choices=("2d", "3d"), default="2d", help="in-plane per slice (paper) or 3-D")
    d.add_argument("--smooth-unit", choices=("voxel", "mm"), default="voxel", help="unit of --smooth-sigma")
    d.add_argument("--hypo-below", type=float, default=0.9, metavar="T",
                   help="normalised value below which a voxel is hypo-entropic")
    d.add_argument("--hyper-above", type=float, default=1.1, metavar="T",
                   help="normalised value above which a voxel is hyper-entropic")
    a = p.add_argument_group("entropic patterns and tumor margin (with a tumor and a reference)")
    a.add_argument("--rim-depth", type=float, default=3.0, metavar="MM",
                   help="depth of the lesion's rim shell, mm (capped at a third of the inscribed radius)")
    a.add_argument("--rim-coverage", type=float, default=0.75, metavar="F",
                   help="share of the lesion's surface sectors that makes a rim (the paper's 75 %%)")
    a.add_argument("--sectors", choices=("3d", "slice"), default="3d",
                   help="rim coverage over 3-D sectors of the surface, or per axial slice")
    a.add_argument("--shell", type=float, default=10.0, metavar="MM",
                   help="peritumoral shell searched for hyper-entropic tissue connected to the lesion, mm")
    a.add_argument("--extension-flag", type=float, default=3.0, metavar="MM",
                   help="flag an extension beyond the drawn margin longer than this, mm")
    a.add_argument("--vessels", type=Path, metavar="FILE",
                   help="vessel mask: left out of the reference region and of the margin analysis")
    a.add_argument("--vessels-label", type=int, metavar="N", help="vessel label value (default: all non-zero)")
    a.add_argument("--vessel-hu", type=float, metavar="HU",
                   help="voxels above this HU (inside the liver when given) are vessels too")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="output folder (must not exist)")
    o.add_argument("--format", choices=("nii.gz", "nii", "nrrd", "mha"), default="nii.gz", help="map file format")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_picture_options(p)
    p.set_defaults(func=_run_map)


def _add_render_parser(sub) -> None:
    p = sub.add_parser(
        "render",
        help="draw the pictures and the report again from a finished output folder",
        description=(
            "Draw the pictures and report.html of an output folder of 'entropymap map' again, with other "
            "windows, palettes, views or slices, without recomputing the map. The maps, reference region "
            "and statistics come from FOLDER, the CT and the tumor and liver masks from the paths in its "
            "run.json."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("folder", type=Path, metavar="FOLDER", help="an output folder of entropymap map")
    p.add_argument("--image", type=Path, metavar="FILE", help="the CT, when it is no longer where run.json says")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="folder for the pictures (default: FOLDER itself, replacing its pictures and report)")
    _add_picture_options(p)
    p.set_defaults(func=_run_render)


def _add_picture_options(p: argparse.ArgumentParser) -> None:
    from .render import FIGURES, FORMATS, NORMALIZED_RANGE, VIEWS, WINDOWS

    g = p.add_argument_group("pictures")
    presets = ", ".join(f"{name} (W {w:g} L {lv:g})" for name, (w, lv) in WINDOWS.items())
    g.add_argument("--window", default="abdomen", metavar="NAME|W,L",
                   help=f"CT window: a preset, {presets}, or WIDTH,LEVEL in HU")
    g.add_argument("--show-map", choices=("auto", "normalized", "raw"), default="auto",
                   help="map drawn over the CT; auto: the normalised one when there is a reference region")
    g.add_argument("--cmap", metavar="NAME",
                   help="matplotlib colormap (default: RdBu_r, centred on 1.0, for the normalised map; viridis for the raw)")
    g.add_argument("--color-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help=f"map colour range (default: {NORMALIZED_RANGE[0]:g} {NORMALIZED_RANGE[1]:g} for the normalised "
                        "map, the 1st to 99th percentile for the raw)")
    g.add_argument("--opacity", type=float, default=0.6, metavar="A", help="map opacity over the CT, 0 to 1")
    g.add_argument("--overlay-region", choices=("liver", "all"), default="liver",
                   help="draw the map only in the liver (when a liver mask is known) or wherever it has a value")
    g.add_argument("--view", choices=VIEWS, default="axial", help="view of the fusion picture, triptych and montage")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--slice", type=int, metavar="N",
                       help="array index of the slice to draw, along the axis the view cuts "
                            "(default: through the centre of the largest tumor component)")
    where.add_argument("--at", type=float, nargs=3, metavar=("X", "Y", "Z"),
                       help="draw through this physical point, mm (ITK/LPS coordinates)")
    g.add_argument("--montage", type=int, default=12, metavar="N", help="slices in the montage")
    g.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES), metavar="NAME",
                   help=f"pictures to draw, of {', '.join(FIGURES)} (default: all)")
    g.add_argument("--picture-format", nargs="+", choices=FORMATS, default=["png"], metavar="FMT",
                   help=f"picture formats, of {', '.join(FORMATS)} (default: png)")
    g.add_argument("--dpi", type=int, default=150, help="resolution of the pictures, dots per inch")
    g.add_argument("--interpolation", choices=("nearest", "bilinear"), default="nearest",
                   help="enlarge voxels as blocks (nearest) or smoothly")
    g.add_argument("--no-report", action="store_true", help="do not write report.html")


def _render_options(args: argparse.Namespace) -> "RenderOptions":
    from .render import RenderOptions, parse_window

    return RenderOptions(
        window=parse_window(args.window), map=args.show_map, cmap=args.cmap,
        value_range=tuple(args.color_range) if args.color_range else None, opacity=args.opacity,
        overlay_region=args.overlay_region, view=args.view, slice_index=args.slice,
        point_mm=tuple(args.at) if args.at else None, montage=args.montage, figures=tuple(args.figures),
        formats=tuple(args.picture_format), dpi=args.dpi, interpolation=args.interpolation,
        report=not args.no_report,
    ).validate()


def build_parser() -> argparse.ArgumentParser:
    """The ``entropymap`` argument parser with its subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="entropymap",
        description="Voxel-wise local entropy maps of 3-D medical images (Costa et al., J Digit Imaging 2023).",
    )
    parser.add_argument("--version", action="version", version=f"entropymap {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_map_parser(sub)
    _add_render_parser(sub)
    from .cli_cohort import add_parsers  # imports this module's helpers: import it here

    add_parsers(sub)
    # -q and --debug work after the subcommand too; SUPPRESS keeps the subparser from
    # resetting a value given before it.
    for name, p in sub.choices.items():
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bar and no summary")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
    return parser


def _check_map_options(args: argparse.Namespace) -> None:
    """Refuse options that would be silently ignored, or that conflict."""
    if args.kernel and len(args.kernel) not in (1, 3):
        raise ValueError(f"--kernel takes one size or three (KZ KY KX), got {len(args.kernel)}")
    if args.kernel_mm and len(args.kernel_mm) not in (1, 3):
        raise ValueError(f"--kernel-mm takes one size or three (Z Y X), got {len(args.kernel_mm)}")
    if args.kernel and args.kernel_mm:
        raise ValueError("give the window in voxels (--kernel) or in mm (--kernel-mm), not both")
    if args.bin_count is not None and args.bin_anchor is not None:
        raise ValueError("--bin-anchor places fixed-width bins; it has no effect with --bin-count")
    for label, mask in (("--tumor-label", "--tumor"), ("--reference-label", "--reference"),
                        ("--liver-label", "--liver"), ("--vessels-label", "--vessels")):
        value = getattr(args, label[2:].replace("-", "_"))
        if value is not None and value == 0:
            raise ValueError(f"{label} 0 is the background; give the label of the region")
        if value is not None and getattr(args, mask[2:]) is None and not (args.sample and mask != "--reference"):
            raise ValueError(f"{label} has no effect without {mask} FILE")
    if args.reference_margin is not None and (args.reference or args.reference_sphere):
        raise ValueError("--reference-margin applies to a reference derived from --liver; it has no effect here")


def _run_map(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .pipeline import CaseInputs, MapParams, run_case
    from .sample import sample_case

    _check_map_options(args)
    if args.sample:
        if args.image is not None:
            raise ValueError("give either IMAGE or --sample, not both")
        case = sample_case()
        image = case.image
        tumor = args.tumor or case.labels
        tumor_label = args.tumor_label if (args.tumor or args.tumor_label is not None) else case.tumor_label
        has_ref = args.reference or args.reference_sphere or args.liver
        liver = args.liver if has_ref else case.labels
    else:
        if args.image is None:
            raise ValueError("give the CT IMAGE (a file or DICOM folder), or --sample for the bundled sample")
        image, tumor, tumor_label, liver = args.image, args.tumor, args.tumor_label, args.liver
    inputs = CaseInputs(
        image=image, tumor=tumor, tumor_label=tumor_label,
        reference=args.reference, reference_label=args.reference_label,
        liver=liver, liver_label=args.liver_label,
        sphere=tuple(args.reference_sphere) if args.reference_sphere else None,
        series=args.series, resample_masks=args.resample_masks,
        allow_uneven_spacing=args.allow_uneven_spacing,
        vessels=args.vessels, vessels_label=args.vessels_label,
    )
    params = MapParams(
        kernel=_odd_sizes(args.kernel) if args.kernel else 5,
        kernel_mm=_odd_sizes(args.kernel_mm) if args.kernel_mm else None,
        shape=args.shape, bin_width=args.bin_width, bin_count=args.bin_count,
        anchor=0.0 if args.bin_anchor is None else args.bin_anchor,
        value_range=tuple(args.value_range) if args.value_range else None,
        crop_margin_mm=args.crop_margin, smooth_sigma=args.smooth_sigma, smooth_mode=args.smooth_mode,
        smooth_unit=args.smooth_unit,
        reference_margin_mm=10.0 if args.reference_margin is None else args.reference_margin,
        hypo_below=args.hypo_below, hyper_above=args.hyper_above,
        base="e" if args.base == "e" else int(args.base), n_threads=args.threads, format=args.format,
    )
    params.validate()
    pictures = _render_options(args)
    from .patterns import PatternParams

    patterns = PatternParams(
        hyper_above=args.hyper_above, rim_depth_mm=args.rim_depth, rim_coverage_min=args.rim_coverage,
        rim_complete_min=max(0.95, args.rim_coverage), sectors=args.sectors, shell_mm=args.shell,
        extension_flag_mm=args.extension_flag, vessel_hu=args.vessel_hu,
    ).validate()

    show = not args.quiet and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=11, desc="entropymap", unit="step", file=sys.stderr, leave=False)

    def progress(step: str) -> None:
        if bar is not None:
            bar.set_postfix_str(step)
            bar.update(1)

    try:
        record = run_case(inputs, args.output, params, overwrite=args.overwrite, progress=progress,
                          command=["entropymap", *argv], pictures=pictures, patterns=patterns)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        _print_summary(args.output, record)
    return 0


def _print_summary(out: Path, record: dict) -> None:
    p = record["parameters"]
    kz, ky, kx = record["kernel_voxels_zyx"]
    disc = record["discretization"]
    unit = {"e": "nats", 2: "bits", 10: "hartleys"}[p["base"]]
    files = record["outputs"]
    lines = [f"entropymap: wrote {out}/ in {record['timings_s']['total']:.1f} s"]
    desc = {
        **_PICTURES,
        "raw": f"local entropy, {unit} ({kz}x{ky}x{kx} voxels, {disc['method'].replace('_', ' ')} "
               f"{disc['bin_width']:g}, {disc['n_levels']} levels)",
        "normalized": "smoothed map / reference mean (1.0 = as disordered as the reference)",
        "classes": f"1 hypo (< {p['hypo_below']:g}), 2 iso, 3 hyper-entropic (> {p['hyper_above']:g})",
        "reference": "the reference region used (1 = in), to check it in a viewer",
        "table": "statistics of the map and of HU in the tumor and reference regions",
        "patterns": "entropic pattern and margin numbers of each tumor component (and all)",
        "figure": f"{record['figure_view']} slice {record['figure_slice']}: CT with the map fused over it",
    }
    for key, name in files.items():
        lines.append(f"  {name:<28s} {desc.get(key.split('.')[0], '')}")
    lines.append(f"  {'run.json':<28s} parameters, input checksums, versions, timings")
    ref = record["reference_region"]
    if ref["mean_smoothed_entropy"] is not None:
        lines.append(f"reference ({ref['kind']}, {ref['voxels']} voxels): mean smoothed entropy "
                     f"{ref['mean_smoothed_entropy']:.3f} {unit}")
    pat = record.get("patterns")
    if pat:
        counts: dict = {}
        for lesion in pat["lesions"]:
            if lesion["lesion"] != "all":
                counts[lesion["pattern"]] = counts.get(lesion["pattern"], 0) + 1
        flagged = sum(1 for lesion in pat["lesions"] if lesion["lesion"] != "all" and lesion["extension_flag"])
        shown = ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"
        lines.append(f"patterns of {sum(counts.values())} lesions ({pat['skipped_below_min_diameter']} smaller "
                     f"skipped): {shown}; {flagged} with hyper-entropic tissue beyond the margin")
    print("\n".join(lines))


_PICTURES = {
    "figure": "the map fused over the CT",
    "triptych": "CT | map | fusion of the same slice",
    "orthogonal": "axial, coronal and sagittal slices through the same point",
    "montage": "slices spread over the largest tumor component",
    "histogram": "local entropy in the tumor vs the reference region",
    "patterns_figure": "rim and core of the largest lesion; band profile across the tumor boundary",
    "report": "one self-contained page: parameters, statistics, figures, slice viewer",
}


def _run_render(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .render import Scene, load_case, write_pictures

    options = _render_options(args)
    case, record, table = load_case(args.folder, image=args.image)
    out = args.output or args.folder
    out.mkdir(parents=True, exist_ok=True)
    files = write_pictures(out, Scene(case, options), record=record, table=table)
    if not args.quiet:
        lines = [f"entropymap: drew {len(files)} files into {out}/ from {args.folder}/"]
        for key, name in files.items():
            lines.append(f"  {name:<28s} {_PICTURES.get(key.split('.')[0], '')}")
        print("\n".join(lines))
    return 0


def _terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(143)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 error, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="entropymap: %(levelname)s: %(message)s")
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM cleans up like Ctrl-C does (only the main thread may set handlers)
        previous_term = signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args, argv)
    except KeyboardInterrupt:
        print("entropymap: interrupted; no output was written", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code == 143:
            print("entropymap: terminated; no output was written", file=sys.stderr)
        raise
    except BrokenPipeError:
        # Whoever read our output went away (e.g. `| head`): not a failure of the run.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # one clear line, unless --debug
        if args.debug:
            raise
        msg = str(exc).strip() or type(exc).__name__
        kind = "" if isinstance(exc, (ValueError, TypeError, OSError)) else f"{type(exc).__name__}: "
        print(f"entropymap: error: {kind}{msg}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous_term)
