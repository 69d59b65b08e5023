"""Many cases from a manifest: the main job on each, resumable, and one feature table.

A *manifest* is a CSV file with one row per case. Its columns:

=================  ==========================================================
``id``             required; the case's name and output folder (letters, digits, ``.``,
                   ``_``, ``-``; unique)
``image``          required; the CT (file or DICOM folder)
``tumor``          tumour mask (Tumor-VOI); ``tumor_label`` its label (default: non-zero)
``reference``      reference-region mask (Liver-VOI); ``reference_label``
``liver``          liver mask, reference = liver minus the dilated tumour; ``liver_label``
``series``         DICOM SeriesInstanceUID, for a folder holding several
anything else      a clinical variable (e.g. ``TRG``), carried to the feature table
=================  ==========================================================

Relative paths are relative to the manifest's folder. A column that looks like a
misspelled reserved one (``tumour``, ``Image``, ``liver_lable``) or holds image paths
without being a path column is an error, so a typo never turns a mask into a
"clinical variable".

:func:`run_cohort` runs :func:`entropymap.pipeline.run_case` on every case through
:func:`entropymap.executors.map_jobs` (a local process pool, or a Dask scheduler), one
output folder per case under ``OUT/cases/``. A failing case is recorded with its reason
and the others go on. A rerun skips every case whose ``run.json`` was made with the
same parameters and inputs (compared by a hash, :func:`case_key`) and recomputes failed
or changed ones. Each case's features (:func:`case_features`) are kept beside its
``run.json`` in ``features.json``; the cohort's table is ``OUT/features.csv`` (and
``features.parquet`` when pyarrow is installed), one row per case that succeeded.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from .executors import Outcome, map_jobs
from .kernel import available_cores
from .pipeline import OUTPUT_NAMES, CaseInputs, MapParams, run_case
from .stats import GLOBAL_ENTROPY_PRESETS, STATISTICS, HistogramBins, class_fractions
from .tiling import worker_threads

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FEATURE_COLUMNS",
    "RESERVED_COLUMNS",
    "Case",
    "CohortResult",
    "Manifest",
    "case_features",
    "case_key",
    "read_manifest",
    "run_cohort",
]

log = logging.getLogger(__name__)

#: Manifest columns with a meaning; every other column is clinical.
RESERVED_COLUMNS = ("id", "image", "tumor", "tumor_label", "reference", "reference_label",
                    "liver", "liver_label", "series")
_PATH_COLUMNS = ("image", "tumor", "reference", "liver")
_LABEL_COLUMNS = {"tumor_label": "tumor", "reference_label": "reference", "liver_label": "liver"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Suffixes that betray an image path in a clinical column (DICOM folders have none).
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")

#: Statistics of a region taken into the feature table (the counts are kept once).
REGION_STATISTICS = tuple(s for s in STATISTICS if s not in ("n_voxels", "n_nan", "volume_ml"))
#: Columns of the feature table after ``id`` and the clinical columns, in order.
FEATURE_COLUMNS = (
    "tumor_voxels", "tumor_volume_ml",
    *(f"entropy_{s}" for s in REGION_STATISTICS),
    *(f"hu_{s}" for s in REGION_STATISTICS),
    "reference_voxels", "reference_entropy_mean", "reference_hu_mean", "reference_smoothed_entropy_mean",
    "hypo_fraction", "iso_fraction", "hyper_fraction",
    "tumor_global_entropy", "reference_global_entropy",
    "lesions_analysed", "largest_hyper_fraction", "largest_rim_coverage", "largest_core_hyper_fraction",
    "extension_mm", "extension_ml", "extension_flag",
)
#: Per-case feature file, beside run.json.
FEATURES_FILE = "features.json"
_FEATURES_VERSION = 2
# Parameters that do not change any output (maps are identical for any thread count).
_NOT_HASHED = ("n_threads",)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True, eq=False)
class Case:
    """One manifest row: its id, the inputs of the main job, its clinical values."""

    id: str
    inputs: CaseInputs
    clinical: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Manifest:
    """A validated manifest (:func:`read_manifest`).

    Attributes
    ----------
    path : Path
        The CSV file, absolute.
    cases : tuple of Case
        In file order; paths absolute.
    clinical_columns : tuple of str
        The non-reserved columns, in file order.
    """

    path: Path
    cases: tuple[Case, ...]
    clinical_columns: tuple[str, ...]


def _typed(values: list[str]) -> list[Any]:
    """A clinical column as ints, else floats, else strings; empty cells become None."""
    present = [v for v in values if v != ""]
    for kind in (int, float):
        try:
            converted = [kind(v) for v in present]
        except ValueError:
            continue
        it = iter(converted)
        return [next(it) if v != "" else None for v in values]
    return [v if v != "" else None for v in values]


def _label(text: str) -> Optional[int]:
    if text == "":
        return None
    value = float(text)  # ValueError names the text
    if not value.is_integer():
        raise ValueError(f"could not convert string to an integer label: {text!r}")
    return int(value)


def read_manifest(path: Union[str, os.PathLike]) -> Manifest:
    """Read and check a cohort manifest (see the module docstring for its columns).

    Every problem found is reported at once, each with its line number.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        No ``id`` or ``image`` column; a misspelled reserved column or a clinical column
        holding image paths; a duplicated column; a row with a missing, duplicated or
        unusable id, no image, a label that is not an integer or without its mask, or
        both a reference and a liver mask; no rows.
    """
    path = Path(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark
        rows = [[cell.strip() for cell in row] for row in csv.reader(fh)]
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        raise ValueError(f"manifest {path} is empty; it needs a header line with at least the columns id,image")
    header, body = rows[0], rows[1:]
    problems: list[str] = []
    if len(header) == 1 and ";" in header[0]:
        raise ValueError(f"manifest {path} has one column {header[0]!r}: columns must be separated by commas")
    seen: set[str] = set()
    for name in header:
        if name == "":
            problems.append("line 1: a column has no name")
        elif name in seen:
            problems.append(f"line 1: column {name!r} appears twice")
        seen.add(name)
    for required in ("id", "image"):
        if required not in header:
            problems.append(f"line 1: no {required!r} column (the header is: {', '.join(header)})")
    clinical = [c for c in header if c not in RESERVED_COLUMNS and c != ""]
    for c in clinical:
        close = difflib.get_close_matches(c.lower(), RESERVED_COLUMNS, n=1, cutoff=0.8)
        if close:
            problems.append(
                f"line 1: column {c!r} is not a manifest column; did you mean {close[0]!r}? (manifest columns: "
                f"{', '.join(RESERVED_COLUMNS)}; rename a clinical column that looks like one)")
        elif c in FEATURE_COLUMNS:
            problems.append(f"line 1: clinical column {c!r} has the name of a feature column; rename it")
    if problems:
        raise ValueError(f"manifest {path}:\n  " + "\n  ".join(problems))

    base = path.parent
    cells: list[dict[str, str]] = []
    for lineno, row in enumerate(body, start=2):
        if not any(row):
            continue
        if len(row) != len(header):
            problems.append(f"line {lineno}: {len(row)} fields, the header has {len(header)}")
            continue
        cells.append({"_line": str(lineno), **dict(zip(header, row))})
    if not cells and not problems:
        problems.append("no cases: the manifest has a header but no rows")
    for c in clinical:
        sample = next((r[c] for r in cells if r[c].lower().endswith(_IMAGE_SUFFIXES)), None)
        if sample is not None:
            problems.append(
                f"column {c!r} holds image paths (e.g. {sample!r}) but is not a path column; image paths go in "
                f"{', '.join(_PATH_COLUMNS)}")

    cases: list[Case] = []
    ids: dict[str, str] = {}
    typed = {c: _typed([r[c] for r in cells]) for c in clinical}
    for i, r in enumerate(cells):
        where = f"line {r['_line']}"
        cid = r.get("id", "")
        if cid == "":
            problems.append(f"{where}: the id is empty")
        elif not _ID.match(cid):
            problems.append(f"{where}: id {cid!r} cannot name a folder; use letters, digits, '.', '_' and '-' "
                            "(not first)")
        elif cid in ids:
            problems.append(f"{where}: id {cid!r} is already used on {ids[cid]}")
        else:
            ids[cid] = where
        if r.get("image", "") == "":
            problems.append(f"{where}: no image")
        labels: dict[str, Optional[int]] = {}
        for lab, mask in _LABEL_COLUMNS.items():
            text = r.get(lab, "")
            try:
                labels[lab] = _label(text)
            except ValueError:
                problems.append(f"{where}: {lab} {text!r} is not an integer label")
                continue
            if labels[lab] is not None and r.get(mask, "") == "":
                problems.append(f"{where}: {lab} is given but there is no {mask} mask")
        if r.get("reference", "") and r.get("liver", ""):
            problems.append(f"{where}: give a reference mask or a liver mask, not both")
        paths = {c: (base / Path(r[c]).expanduser()) if r.get(c, "") else None for c in _PATH_COLUMNS}
        cases.append(Case(
            id=cid,
            inputs=CaseInputs(image=paths["image"], tumor=paths["tumor"], reference=paths["reference"],
                              liver=paths["liver"], series=r.get("series") or None, **labels),
            clinical={c: typed[c][i] for c in clinical},
        ))
    if problems:
        raise ValueError(f"manifest {path}:\n  " + "\n  ".join(problems))
    return Manifest(path=path, cases=tuple(cases), clinical_columns=tuple(clinical))


# --------------------------------------------------------------------------- one case


def _key(parameters: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in parameters.items() if k not in _NOT_HASHED}
    blob = json.dumps({"parameters": kept, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _path_text(p: Optional[os.PathLike]) -> Optional[str]:
    return str(Path(p).resolve()) if p is not None else None  # as run.json records it


def case_key(params: MapParams, inputs: CaseInputs) -> str:
    """Hash of everything that decides a case's outputs: the parameters (all but the
    thread count) and the inputs (paths, labels, series, reading options).

    The same value is computed from a finished case's ``run.json``, which is how a rerun
    knows a case is done. Input *contents* are not hashed: a file replaced
    under the same name is not noticed (rerun with ``force=True``).
    """
    return _key(params.to_dict(), {
        "image": _path_text(inputs.image), "tumor": _path_text(inputs.tumor),
        "reference": _path_text(inputs.reference), "liver": _path_text(inputs.liver),
        "vessels": _path_text(inputs.vessels),
        "labels": {"tumor": inputs.tumor_label, "reference": inputs.reference_label, "liver": inputs.liver_label,
                   "vessels": inputs.vessels_label},
        "sphere": list(inputs.sphere) if inputs.sphere is not None else None,
        "series": inputs.series, "resample_masks": inputs.resample_masks,
        "allow_uneven_spacing": inputs.allow_uneven_spacing,
    })


def _record_key(record: Mapping[str, Any]) -> str:
    """:func:`case_key` of the run a ``run.json`` record describes."""
    given = record["inputs"]
    return _key(record["parameters"], {
        **{name: (given[name]["path"] if given.get(name) else None) for name in _PATH_COLUMNS},
        "vessels": given["vessels"]["path"] if given.get("vessels") else None,
        "labels": {"vessels": None, **record["labels"]},
        "sphere": record["reference_region"].get("sphere_xyz_r_mm"),
        "series": record["series"], "resample_masks": record["resample_masks"],
        "allow_uneven_spacing": record["allow_uneven_spacing"],
    })


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def case_features(folder: Union[str, os.PathLike], histogram: HistogramBins = GLOBAL_ENTROPY_PRESETS["lifex"]
                  ) -> dict[str, float]:
    """The feature-table values of one finished case (an output folder of the main job).

    Parameters
    ----------
    folder : path
        Holds ``run.json``, ``statistics.csv`` and the maps; the CT and masks are read
        from the paths ``run.json`` records.
    histogram : HistogramBins
        Bins and log base of the global (whole-region) entropy of the HU.

    Returns
    -------
    dict
        :data:`FEATURE_COLUMNS` -> value (NaN where the case has no tumour or no
        reference region): the tumour's voxel count and volume; the statistics of the
        raw local-entropy map (``entropy_*``) and of the HU (``hu_*``) in the tumour;
        the reference region's voxel count, mean raw entropy, mean HU and mean smoothed
        entropy (the normaliser); the fractions of hypo/iso/hyper-entropic tumour voxels;
        the global entropy of the HU in the tumour and in the reference region.
    """
    from . import io, render

    folder = Path(folder)
    histogram.validate()
    case, record, table = render.load_case(folder)
    if table is None:
        raise FileNotFoundError(f"{folder} has no {OUTPUT_NAMES['table']}")
    for name, got in (("tumor", case.tumor), ("liver", case.liver)):
        if record["inputs"].get(name) and got is None:
            raise FileNotFoundError(f"the {name} mask of {folder} is no longer at {record['inputs'][name]['path']}")
    out: dict[str, float] = {c: float("nan") for c in FEATURE_COLUMNS}
    rows = {(r["region"], r["quantity"]): r for r in table.to_dict("records")}
    if ("tumor", "entropy") in rows:
        tumor = rows[("tumor", "entropy")]
        out["tumor_voxels"], out["tumor_volume_ml"] = tumor["n_voxels"], tumor["volume_ml"]
        for quantity in ("entropy", "hu"):
            out.update({f"{quantity}_{s}": rows[("tumor", quantity)][s] for s in REGION_STATISTICS})
        out["tumor_global_entropy"] = histogram.entropy(case.ct, case.tumor)
    if ("reference", "entropy") in rows:
        out["reference_voxels"] = rows[("reference", "entropy")]["n_voxels"]
        out["reference_entropy_mean"] = rows[("reference", "entropy")]["mean"]
        out["reference_hu_mean"] = rows[("reference", "hu")]["mean"]
        out["reference_smoothed_entropy_mean"] = case.reference_mean
        out["reference_global_entropy"] = histogram.entropy(case.ct, case.reference)
        if case.tumor is not None and "classes" in record["outputs"]:
            classes = io.read_image(folder / record["outputs"]["classes"]).array
            out.update(class_fractions(classes, case.tumor))
    if "patterns" in record["outputs"]:
        import pandas as pd

        # Pattern numbers of the largest lesion ("1") and margin numbers of the whole mask ("all").
        pat = pd.read_csv(folder / record["outputs"]["patterns"], dtype={"lesion": str})
        rows_by = {r["lesion"]: r for r in pat.to_dict("records")}
        out["lesions_analysed"] = int((pat["lesion"] != "all").sum() - (pat["pattern"] == "skipped").sum())
        largest = rows_by.get("1")
        if largest is not None and largest["pattern"] != "skipped":
            out["largest_hyper_fraction"] = largest["hyper_fraction"]
            out["largest_rim_coverage"] = largest["rim_coverage"]
            out["largest_core_hyper_fraction"] = largest["core_hyper_fraction"]
        whole = rows_by.get("all")
        if whole is not None:
            out["extension_mm"], out["extension_ml"] = whole["extension_mm"], whole["extension_ml"]
            out["extension_flag"] = float(bool(whole["extension_flag"]))
    return {k: (float(v) if v is not None else float("nan")) for k, v in out.items()}


def _case_job(inputs: CaseInputs, folder: Path, params: MapParams, histogram: HistogramBins, key: str,
              compute: bool) -> dict[str, float]:
    """What a worker does for one case: the main job (unless done), then its features."""
    if compute:
        run_case(inputs, folder, params, overwrite=True)
    features = case_features(folder, histogram)
    record = {"entropymap_features": _FEATURES_VERSION, "key": key, "histogram": dataclasses.asdict(histogram),
              "features": features}
    _write_atomic(folder / FEATURES_FILE, lambda p: p.write_text(json.dumps(record, indent=1)))
    return features


# --------------------------------------------------------------------------- the cohort


@dataclass(frozen=True, eq=False)
class CohortResult:
    """What :func:`run_cohort` did.

    Attributes
    ----------
    table : DataFrame
        One row per case that has features: ``id``, the clinical columns,
        :data:`FEATURE_COLUMNS`; manifest order.
    computed : tuple of str
        Ids whose maps were computed by this run.
    reused : tuple of str
        Ids skipped because an earlier run made them with the same parameters.
    failures : dict
        Id -> the reason the case failed, in manifest order.
    files : dict
        What was written: ``"csv"``, ``"parquet"`` (with pyarrow), ``"failures"`` (when
        a case failed), ``"record"``.
    """

    table: "pd.DataFrame"
    computed: tuple[str, ...]
    reused: tuple[str, ...]
    failures: dict[str, str]
    files: dict[str, Path]

    @property
    def ok(self) -> bool:
        return not self.failures


def _parquet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def run_cohort(
    manifest: Manifest,
    out_dir: Union[str, os.PathLike],
    params: MapParams = MapParams(),
    *,
    histogram: HistogramBins = GLOBAL_ENTROPY_PRESETS["lifex"],
    scheduler: Optional[str] = None,
    n_workers: Optional[int] = None,
    force: bool = False,
    progress: Optional[Callable[[Outcome, int, int], None]] = None,
) -> CohortResult:
    """Run the main job on every case of a manifest and write the feature table.

    Parameters
    ----------
    manifest : Manifest
        From :func:`read_manifest`.
    out_dir : path
        Cohort folder (created, or reused to resume): ``cases/<id>/`` per case,
        ``features.csv`` (+ ``features.parquet`` with pyarrow), ``failures.csv`` when a
        case failed, ``cohort.json`` (parameters and what happened).
    params : MapParams
        The main job's parameters, the same for every case.
    histogram : HistogramBins
        Global-entropy bins (default :data:`GLOBAL_ENTROPY_PRESETS` ``["lifex"]``).
    scheduler : str, optional
        A ``dask.distributed`` scheduler address; None runs a local process pool.
    n_workers : int, optional
        Local worker processes (default: one per core, at most one per case). Each
        worker's kernel gets ``params.n_threads`` threads, by default its share of the
        cores; on a Dask cluster ``params.n_threads`` or else 1.
    force : bool
        Recompute every case, even those done with the same parameters.
    progress : callable(Outcome, done, total), optional
        Called in this process as each case finishes.

    Returns
    -------
    CohortResult
        It never raises for a failing case: see ``failures``.
    """
    import pandas as pd

    params.validate()
    histogram.validate()
    out = Path(out_dir).absolute()
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)

    features: dict[str, dict] = {}
    jobs, computed = [], []
    for case in manifest.cases:
        folder = cases_dir / case.id
        key = case_key(params, case.inputs)
        record = None if force else _read_json(folder / OUTPUT_NAMES["record"])
        done = record is not None and _safe_record_key(record) == key
        kept = _read_json(folder / FEATURES_FILE) if done else None
        if (kept is not None and kept.get("key") == key and kept.get("entropymap_features") == _FEATURES_VERSION
                and kept.get("histogram") == dataclasses.asdict(histogram)):
            features[case.id] = kept["features"]
            continue
        if not done:
            computed.append(case.id)
        jobs.append((case.id, (case.inputs, folder, params, histogram, key, not done), {}))
    log.info("%d cases: %d to compute, %d done before", len(manifest.cases), len(computed),
             len(manifest.cases) - len(computed))

    if jobs:
        if scheduler is None:
            workers, threads = worker_threads(min(n_workers or available_cores(), len(jobs)), params.n_threads)
        else:
            workers, threads = None, params.n_threads or 1
        run_params = dataclasses.replace(params, n_threads=threads)
        jobs = [(k, (a[0], a[1], run_params, *a[3:]), kw) for k, a, kw in jobs]
        done_count = [0]

        def report(outcome: Outcome) -> None:
            done_count[0] += 1
            if not outcome.ok:
                log.info("case %s failed: %s", outcome.key, outcome.error)  # the caller reports it
            if progress is not None:
                progress(outcome, done_count[0], len(jobs))

        outcomes = map_jobs(_case_job, jobs, scheduler=scheduler, n_workers=workers, progress=report)
    else:
        outcomes = []
    failures_by_id = {o.key: o.error or "failed" for o in outcomes if not o.ok}
    features.update({o.key: o.value for o in outcomes if o.ok})

    rows = []
    for case in manifest.cases:
        if case.id in features:
            f = features[case.id]
            rows.append({"id": case.id, **case.clinical, **{c: f.get(c, math.nan) for c in FEATURE_COLUMNS}})
    table = pd.DataFrame(rows, columns=["id", *manifest.clinical_columns, *FEATURE_COLUMNS])
    failures = {c.id: failures_by_id[c.id] for c in manifest.cases if c.id in failures_by_id}
    computed = [c for c in computed if c not in failures]
    reused = tuple(c.id for c in manifest.cases if c.id not in computed and c.id not in failures)

    files: dict[str, Path] = {"csv": out / "features.csv"}
    _write_atomic(files["csv"], lambda p: table.to_csv(p, index=False))
    parquet = out / "features.parquet"
    if _parquet_available():
        _write_atomic(parquet, lambda p: table.to_parquet(p, index=False))
        files["parquet"] = parquet
    else:
        parquet.unlink(missing_ok=True)  # never leave a stale table beside the new one
        log.info("pyarrow is not installed: features.parquet not written")
    fail_path = out / "failures.csv"
    if failures:
        fail_table = pd.DataFrame({"id": list(failures), "error": list(failures.values())})
        _write_atomic(fail_path, lambda p: fail_table.to_csv(p, index=False))
        files["failures"] = fail_path
    else:
        fail_path.unlink(missing_ok=True)
    files["record"] = out / "cohort.json"
    summary = {
        "entropymap_cohort": 1,
        "manifest": str(manifest.path),
        "parameters": {k: v for k, v in params.to_dict().items() if k not in _NOT_HASHED},
        "global_entropy": dataclasses.asdict(histogram),
        "scheduler": scheduler,
        "cases": len(manifest.cases),
        "succeeded": int(len(table)),
        "computed": computed,
        "reused": list(reused),
        "failed": failures,
    }
    _write_atomic(files["record"], lambda p: p.write_text(json.dumps(summary, indent=2, default=str)))
    return CohortResult(table=table, computed=tuple(computed), reused=reused,
                        failures=failures, files=files)


def _safe_record_key(record: Mapping[str, Any]) -> Optional[str]:
    """The key of a run.json record, or None for a record of another shape (rerun it)."""
    try:
        return _record_key(record)
    except (KeyError, TypeError, AttributeError):
        return None
