"""Command line of the cohort work: ``entropymap cohort`` and ``entropymap compare``.

:func:`add_parsers` adds both subcommands to the ``entropymap`` parser (``cli.py`` calls
it); each sets ``func`` to its runner, called as ``func(args, argv)`` and returning the
exit code. ``-q`` is read from ``args`` if the main parser gave it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .executors import Outcome
    from .pipeline import MapParams

__all__ = ["add_parsers", "run_cohort_command", "run_compare_command"]


def add_parsers(subparsers: Any) -> None:
    """Add the ``cohort`` and ``compare`` subcommands to an argparse subparsers object."""
    from .cli import _HelpFormatter
    from .stats import GLOBAL_ENTROPY_PRESETS

    p = subparsers.add_parser(
        "cohort",
        help="run the main job on every case of a manifest and collect one feature table",
        description=(
            "Run 'entropymap map' on every case of MANIFEST (a CSV file: id, image, and optionally tumor, "
            "tumor_label, reference, reference_label, liver, liver_label, series; any other column is clinical "
            "and goes into the table). Each case gets OUTPUT/cases/ID/; the table is OUTPUT/features.csv "
            "(and .parquet with pyarrow). A failing case is listed and the others go on; the exit code is 1 "
            "if any failed. Rerunning skips the cases already done with the same parameters."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help="cohort manifest, CSV")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="cohort folder (created, or reused to resume)")
    m = p.add_argument_group("map parameters (the same for every case)")
    m.add_argument("--params", type=Path, metavar="FILE",
                   help="JSON object of map parameters (the fields of MapParams, e.g. the \"parameters\" of a "
                        "run.json); the options below override it")
    m.add_argument("--kernel", type=int, nargs="+", metavar="K",
                   help="window size in voxels: one odd K, or KZ KY KX (default: 5)")
    m.add_argument("--bin-width", type=float, metavar="W", help="fixed bin width (default 1 = integer HU)")
    m.add_argument("--bin-count", type=int, metavar="N", help="fixed number of bins instead of a width")
    m.add_argument("--reference-margin", type=float, metavar="MM",
                   help="tumour dilation for a liver-derived reference, mm (default: 10)")
    m.add_argument("--threads", type=int, metavar="N",
                   help="kernel threads per case (default: each worker's share of the cores; 1 on Dask)")
    g = p.add_argument_group("features")
    g.add_argument("--global-entropy", choices=sorted(GLOBAL_ENTROPY_PRESETS), default="lifex",
                   help="bins and log base of the whole-region HU entropy: lifex (10 HU bins, log10), "
                        "ibsi (width 1, log2)")
    g.add_argument("--global-bin-width", type=float, metavar="W", help="override the preset's bin width")
    g.add_argument("--global-base", type=float, metavar="B", help="override the preset's log base")
    r = p.add_argument_group("running")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="send the cases to this dask.distributed scheduler (e.g. tcp://10.0.0.5:8786) "
                        "instead of local processes")
    r.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    r.add_argument("--force", action="store_true", help="recompute every case, even those already done")
    p.set_defaults(func=run_cohort_command)

    c = subparsers.add_parser(
        "compare",
        help="compare two groups of a feature table (the paper's Table 2 and Fig. 6)",
        description=(
            "Split the cases of FEATURES (a cohort's features.csv) into two groups by a rule such as "
            "'TRG 1-3 vs 4-5', z-score each variable, and test each with a two-sided Mann-Whitney U "
            "(exact without ties for groups up to 50, else tie-corrected asymptotic); report AUC, "
            "rank-biserial r, p and Benjamini-Hochberg adjusted p. Writes comparison.csv, table2.csv, "
            "zscores.csv and the figure into OUTPUT, and prints the table."
        ),
        formatter_class=_HelpFormatter,
    )
    c.add_argument("features", type=Path, metavar="FEATURES", help="feature table (.csv or .parquet)")
    c.add_argument("--groups", required=True, metavar="RULE",
                   help="'COLUMN A vs B': ranges lo-hi (inclusive) or comma-separated values, e.g. "
                        "'TRG 1-3 vs 4-5' or 'group A vs B'")
    c.add_argument("--names", nargs=2, metavar=("A", "B"), help="names of the groups (default: from the rule)")
    c.add_argument("--variables", nargs="+", default=["paper"], metavar="NAME",
                   help="columns to compare, or 'paper' (the paper's 11 statistics of the entropy map and of HU) "
                        "or 'features' (every feature column of a cohort table) (default: paper)")
    c.add_argument("--alpha", type=float, default=0.05, help="significance level marked in the figure")
    c.add_argument("--figure-format", nargs="+", choices=("png", "svg", "pdf"), default=["png"], metavar="FMT",
                   help="figure formats, of png, svg, pdf (default: png)")
    c.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder for the results")
    c.set_defaults(func=run_compare_command)


def _map_params(args: argparse.Namespace) -> "MapParams":
    from .cli import _odd_sizes
    from .pipeline import MapParams

    fields: dict[str, Any] = {}
    if args.params is not None:
        try:
            fields = json.loads(args.params.read_text())
        except ValueError as exc:
            raise ValueError(f"--params {args.params} is not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"--params {args.params} must hold a JSON object of map parameters")
        known = set(MapParams.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"--params {args.params}: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        for name in ("kernel", "kernel_mm", "value_range"):  # JSON lists -> the tuples MapParams holds
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
    if args.kernel is not None:
        if len(args.kernel) not in (1, 3):
            raise ValueError(f"--kernel takes one size or three (KZ KY KX), got {len(args.kernel)}")
        fields["kernel"] = _odd_sizes(args.kernel)
    for flag, name in (("bin_width", "bin_width"), ("bin_count", "bin_count"),
                       ("reference_margin", "reference_margin_mm"), ("threads", "n_threads")):
        if getattr(args, flag) is not None:
            fields[name] = getattr(args, flag)
    # A width or count given here replaces the other one from the file.
    if args.bin_count is not None and args.bin_width is None:
        fields["bin_width"] = None
    if args.bin_width is not None and args.bin_count is None:
        fields["bin_count"] = None
    return MapParams(**fields).validate()


def _progress(quiet: bool):
    """A callback printing each finished case (a bar on a terminal), and its closer."""
    if quiet:
        return None, lambda: None
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="entropymap cohort", unit="case", file=sys.stderr, leave=False)

    def show(outcome: "Outcome", done: int, total: int) -> None:
        state = f"done in {outcome.seconds:.1f} s" if outcome.ok else f"FAILED: {outcome.error}"
        if bar is not None:
            bar.total = total
            bar.update(1)
            if not outcome.ok:
                bar.write(f"{outcome.key}: {state}", file=sys.stderr)
        else:
            print(f"[{done}/{total}] {outcome.key}: {state}", file=sys.stderr, flush=True)

    return show, (bar.close if bar is not None else lambda: None)


def run_cohort_command(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> int:
    """``entropymap cohort``: 0 when every case succeeded, 1 when any failed."""
    import dataclasses

    from .cohort import read_manifest, run_cohort
    from .stats import GLOBAL_ENTROPY_PRESETS

    quiet = bool(getattr(args, "quiet", False))
    manifest = read_manifest(args.manifest)
    params = _map_params(args)
    histogram = GLOBAL_ENTROPY_PRESETS[args.global_entropy]
    if args.global_bin_width is not None:
        histogram = dataclasses.replace(histogram, bin_width=args.global_bin_width)
    if args.global_base is not None:
        histogram = dataclasses.replace(histogram, base=args.global_base)
    histogram.validate()
    show, close = _progress(quiet)
    try:
        result = run_cohort(manifest, args.output, params, histogram=histogram, scheduler=args.scheduler,
                            n_workers=args.workers, force=args.force, progress=show)
    finally:
        close()
    n = len(manifest.cases)
    if not quiet:
        written = ", ".join(str(p) for k, p in result.files.items() if k in ("csv", "parquet"))
        print(f"entropymap cohort: {len(result.table)} of {n} cases in {written} "
              f"({len(result.computed)} computed, {len(result.reused)} done before)")
    if result.failures:
        lines = [f"entropymap cohort: {len(result.failures)} of {n} cases failed "
                 f"(listed in {result.files['failures']}; rerun the same command to retry them):"]
        lines += [f"  {cid}: {reason}" for cid, reason in result.failures.items()]
        print("\n".join(lines), file=sys.stderr)
        return 1
    return 0


def _read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"feature table not found: {path}")
    name = path.name.lower()
    if name.endswith(".csv"):
        return pd.read_csv(path)
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(f"cannot read {path.name}: the feature table must be .csv or .parquet")


def run_compare_command(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> int:
    """``entropymap compare``: writes the comparison and prints the Table-2 layout."""
    from .cohort import FEATURE_COLUMNS
    from .compare import compare_groups, parse_groups, table2, write_comparison

    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {args.alpha}")
    table = _read_table(args.features)
    rule = parse_groups(args.groups, names=args.names)
    if args.variables == ["paper"]:
        variables = None
    elif args.variables == ["features"]:
        variables = [c for c in FEATURE_COLUMNS if c in table.columns]
    else:
        variables = args.variables
    comparison = compare_groups(table, rule, variables=variables)
    files = write_comparison(comparison, args.output, alpha=args.alpha, formats=tuple(args.figure_format))
    if not getattr(args, "quiet", False):
        excluded = f"; {comparison.n_excluded} cases in neither group left out" if comparison.n_excluded else ""
        print(table2(comparison).to_string(index=False))
        print(f"entropymap compare: {rule.names[0]} vs {rule.names[1]}{excluded}; wrote "
              f"{', '.join(p.name for p in files.values())} into {args.output}/")
    return 0
