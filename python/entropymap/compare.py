r"""Two groups of a cohort compared variable by variable, as in the paper's Table 2 and Fig. 6.

The steps, each a choice written down:

* **Groups** from a rule on one column (:func:`parse_groups`): ``"TRG 1-3 vs 4-5"``,
  ``"group A vs B"``, ``"TRG 1,2,3 vs 4,5"``, ``'arm "drug X" vs placebo'``. Ranges
  ``a-b`` are numeric and inclusive; other items match a cell equal to them as numbers
  (``1`` matches ``1.0``) or else as exact text. Rows in neither group are left out; a row
  in both is an error.
* **z-scores**: each variable is centred on its mean over the cases of both groups and
  divided by its standard deviation without Bessel's correction (as
  ``scipy.stats.zscore``); a constant variable is 0. They are what the figure shows. The
  test uses ranks, so z-scoring changes no p-value.
* **Mann-Whitney U**, two-sided (``scipy.stats.mannwhitneyu``): the exact distribution
  when no value is tied and both groups have at most :data:`EXACT_MAX_N` values (it is
  cheap there and the normal approximation is poorest); otherwise the normal
  approximation with tie correction and continuity correction. The method used is in
  each row. NaN values are left out per variable.
* **Effect sizes**: AUC :math:`= U_A / (n_A n_B)`, the probability that a value of group
  A exceeds one of group B (ties count half), and the rank-biserial correlation
  :math:`r = 2\,\mathrm{AUC} - 1` (positive: A tends to be larger).
* **Multiple testing**: Benjamini-Hochberg adjusted p-values over the variables
  compared; the paper did not adjust, so both are reported.
* **Descriptive columns**: mean and standard deviation (with Bessel's correction, the
  clinical convention) of the raw values for the whole series and each group.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "EXACT_MAX_N",
    "PAPER_STATISTICS",
    "Comparison",
    "GroupRule",
    "MannWhitney",
    "compare_groups",
    "comparison_figure",
    "default_variables",
    "mann_whitney",
    "parse_groups",
    "table2",
    "write_comparison",
    "zscore",
]

#: Largest group size for which the exact test is used (when nothing is tied).
EXACT_MAX_N = 50
#: The 11 statistics of the paper's Table 2, taken of the local-entropy map and of HU.
PAPER_STATISTICS = ("mean", "median", "std", "variance", "rms", "p5", "p25", "p75", "p95",
                    "zero_crossings", "mean_crossings")

_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)$")
_VS = re.compile(r"\s+vs\.?\s+", re.IGNORECASE)


# --------------------------------------------------------------------------- groups


def _number(value: Any) -> Optional[float]:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class _Item:
    """One item of a group: an inclusive numeric range, or a value."""

    text: str
    low: Optional[float] = None
    high: Optional[float] = None

    def matches(self, value: Any) -> bool:
        x = _number(value)
        if self.low is not None:
            return x is not None and self.low <= x <= self.high
        mine = _number(self.text)
        if mine is not None and x is not None:
            return mine == x
        return value is not None and str(value).strip() == self.text


def _items(spec: str, rule: str) -> tuple[_Item, ...]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"group rule {rule!r}: empty item in {spec!r}")
        m = _RANGE.match(part)
        if m:
            low, high = float(m.group(1)), float(m.group(2))
            if low > high:
                raise ValueError(f"group rule {rule!r}: range {part!r} runs backwards; write {m.group(2)}-{m.group(1)}")
            out.append(_Item(part, low, high))
        else:
            out.append(_Item(part))
    return tuple(out)


@dataclass(frozen=True)
class GroupRule:
    """A binary grouping on one column (:func:`parse_groups`).

    Attributes
    ----------
    column : str
    a, b : str
        The value specifications of group A and group B as written (``"1-3"``).
    names : (str, str)
        Display names of the groups (default ``"COLUMN A"``, ``"COLUMN B"``).
    """

    column: str
    a: str
    b: str
    names: tuple[str, str]

    def assign(self, values: Sequence[Any]) -> np.ndarray:
        """Group of each value: ``"A"``, ``"B"`` or ``""`` (neither).

        Raises
        ------
        ValueError
            A value matches both groups.
        """
        rule = f"{self.column} {self.a} vs {self.b}"
        a_items, b_items = _items(self.a, rule), _items(self.b, rule)
        out = []
        for v in values:
            in_a = any(i.matches(v) for i in a_items)
            in_b = any(i.matches(v) for i in b_items)
            if in_a and in_b:
                raise ValueError(f"group rule {rule!r}: value {v!r} of column {self.column!r} is in both groups")
            out.append("A" if in_a else "B" if in_b else "")
        return np.array(out, dtype=object)


def parse_groups(rule: str, *, names: Optional[Sequence[str]] = None) -> GroupRule:
    """Parse ``"COLUMN A vs B"``, e.g. ``"TRG 1-3 vs 4-5"`` or ``"group A vs B"``.

    ``A`` and ``B`` are comma-separated items: inclusive numeric ranges ``lo-hi`` or
    single values. Quote a column or value with spaces (``'arm "drug X" vs placebo'``).

    Examples
    --------
    >>> r = parse_groups("TRG 1-3 vs 4-5")
    >>> r.column, r.names, list(r.assign([1, 3, 4, 5, 2.0, None]))
    ('TRG', ('TRG 1-3', 'TRG 4-5'), ['A', 'A', 'B', 'B', 'A', ''])
    """
    usage = "a group rule is 'COLUMN A vs B', e.g. 'TRG 1-3 vs 4-5' or 'group A vs B'"
    parts = _VS.split(rule.strip())
    if len(parts) != 2:
        raise ValueError(f"{usage}; got {rule!r}")
    try:
        left, right = shlex.split(parts[0]), shlex.split(parts[1])
    except ValueError as exc:
        raise ValueError(f"{usage}; got {rule!r} ({exc})") from None
    if len(left) < 2 or len(right) != 1:
        raise ValueError(f"{usage}; got {rule!r}")
    column, a, b = " ".join(left[:-1]), left[-1], right[0]
    for spec in (a, b):
        _items(spec, rule)  # check now, not at the first row
    if names is None:
        names = (f"{column} {a}", f"{column} {b}")
    if len(names) != 2 or not all(str(n).strip() for n in names):
        raise ValueError(f"give two group names, got {names!r}")
    return GroupRule(column, a, b, (str(names[0]), str(names[1])))


# --------------------------------------------------------------------------- the test


@dataclass(frozen=True)
class MannWhitney:
    """One two-sided Mann-Whitney U test.

    Attributes
    ----------
    u : float
        U of the first sample: pairs (a, b) with a > b, plus half the ties.
    p : float
    method : str
        ``"exact"`` or ``"asymptotic"`` (normal approximation, continuity-corrected)
        with ``" (ties corrected)"`` when values are tied.
    auc : float
        ``u / (n_a n_b)``.
    rank_biserial : float
        ``2 auc - 1``.
    """

    u: float
    p: float
    method: str
    auc: float
    rank_biserial: float


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of ``a`` vs ``b`` (NaN values left out).

    Exact when no value is tied and both samples have at most :data:`EXACT_MAX_N`
    values; otherwise asymptotic with tie and continuity corrections. With an empty
    sample the result is NaN and the method says why.

    Examples
    --------
    >>> r = mann_whitney([1, 2, 3], [4, 5, 6])
    >>> r.method, round(r.p, 6), r.auc
    ('exact', 0.1, 0.0)
    """
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        nan = float("nan")
        return MannWhitney(nan, nan, f"not tested (no values in group {'A' if x.size == 0 else 'B'})", nan, nan)
    pooled = np.concatenate([x, y])
    tied = np.unique(pooled).size < pooled.size
    if not tied and max(x.size, y.size) <= EXACT_MAX_N:
        method = "exact"
    else:
        method = "asymptotic (ties corrected)" if tied else "asymptotic"
    res = stats.mannwhitneyu(x, y, alternative="two-sided", method=method.split()[0], use_continuity=True)
    auc = float(res.statistic) / (x.size * y.size)
    return MannWhitney(float(res.statistic), float(res.pvalue), method, auc, 2.0 * auc - 1.0)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of the finite entries (NaN stays NaN)."""
    from scipy import stats

    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def zscore(values: Sequence[float]) -> np.ndarray:
    """``(x - mean) / sd`` over the finite values, sd without Bessel's correction (as
    ``scipy.stats.zscore``); a constant variable gives 0, NaN stays NaN."""
    x = np.asarray(values, dtype=float)
    ok = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if ok.any():
        sd = x[ok].std()
        out[ok] = (x[ok] - x[ok].mean()) / sd if sd > 0 else 0.0
    return out


# --------------------------------------------------------------------------- the table


def default_variables(table: "pd.DataFrame") -> list[str]:
    """The paper's 22 variables (:data:`PAPER_STATISTICS` of ``entropy_`` and ``hu_``)
    that ``table`` has, in that order."""
    wanted = [f"{q}_{s}" for q in ("entropy", "hu") for s in PAPER_STATISTICS]
    return [v for v in wanted if v in table.columns]


@dataclass(frozen=True, eq=False)
class Comparison:
    """The result of :func:`compare_groups`.

    Attributes
    ----------
    table : DataFrame
        One row per variable: ``variable``, ``n_a``, ``n_b``, ``whole_mean``,
        ``whole_sd``, ``a_mean``, ``a_sd``, ``b_mean``, ``b_sd``, ``u``, ``p``,
        ``p_adjusted``, ``method``, ``auc``, ``rank_biserial``.
    zscores : DataFrame
        The cases compared: ``id`` (when the table has one), ``group`` (the group's
        name) and the z-score of each variable.
    rule : GroupRule
    n_excluded : int
        Rows of the input in neither group.
    """

    table: "pd.DataFrame"
    zscores: "pd.DataFrame"
    rule: GroupRule
    n_excluded: int

    @property
    def names(self) -> tuple[str, str]:
        return self.rule.names


def compare_groups(
    table: "pd.DataFrame",
    rule: Union[str, GroupRule],
    *,
    variables: Optional[Sequence[str]] = None,
) -> Comparison:
    """Compare the two groups of ``rule`` on each variable (see the module docstring).

    Parameters
    ----------
    table : DataFrame
        One row per case, e.g. a cohort's ``features.csv``.
    rule : str or GroupRule
        ``"TRG 1-3 vs 4-5"`` or a parsed rule.
    variables : sequence of str, optional
        Numeric columns to compare (default :func:`default_variables`, the paper's 22).
        Benjamini-Hochberg adjusts over exactly these.
    """
    import pandas as pd

    rule = parse_groups(rule) if isinstance(rule, str) else rule
    if rule.column not in table.columns:
        raise ValueError(f"the table has no column {rule.column!r} to group by; its columns are: "
                         f"{', '.join(map(str, table.columns))}")
    variables = list(default_variables(table) if variables is None else variables)
    if not variables:
        raise ValueError("no variables to compare: the table has none of the paper's (entropy_mean, hu_mean, ...); "
                         "name them")
    missing = [v for v in variables if v not in table.columns]
    if missing:
        raise ValueError(f"the table has no column {', '.join(map(repr, missing))}")
    non_numeric = [v for v in variables if not pd.api.types.is_numeric_dtype(table[v])]
    if non_numeric:
        raise ValueError(f"variables must be numeric; not numeric: {', '.join(non_numeric)}")
    group = rule.assign(table[rule.column].tolist())
    for g, name in (("A", rule.names[0]), ("B", rule.names[1])):
        if not (group == g).any():
            raise ValueError(f"group {name!r} is empty: no value of column {rule.column!r} matches "
                             f"{rule.a if g == 'A' else rule.b!r}; the column holds "
                             f"{', '.join(map(str, sorted(set(map(str, table[rule.column])))))}")
    keep = group != ""
    sub = table.loc[keep].reset_index(drop=True)
    is_a = group[keep] == "A"

    rows, z = [], {}
    for v in variables:
        values = sub[v].to_numpy(dtype=float)
        z[v] = zscore(values)
        a, b = z[v][is_a], z[v][~is_a]
        test = mann_whitney(a, b)
        raw_a, raw_b = values[is_a], values[~is_a]
        rows.append({
            "variable": v, "n_a": int(np.isfinite(raw_a).sum()), "n_b": int(np.isfinite(raw_b).sum()),
            "whole_mean": _mean(values), "whole_sd": _sd(values),
            "a_mean": _mean(raw_a), "a_sd": _sd(raw_a), "b_mean": _mean(raw_b), "b_sd": _sd(raw_b),
            "u": test.u, "p": test.p, "p_adjusted": math.nan, "method": test.method,
            "auc": test.auc, "rank_biserial": test.rank_biserial,
        })
    result = pd.DataFrame(rows)
    result["p_adjusted"] = _bh(result["p"].to_numpy(dtype=float))
    zs = pd.DataFrame({"group": np.where(is_a, rule.names[0], rule.names[1]), **z})
    if "id" in sub.columns:
        zs.insert(0, "id", sub["id"].to_numpy())
    return Comparison(result, zs, rule, int((~keep).sum()))


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _sd(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1)) if x.size > 1 else math.nan


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_mean_sd(m: float, s: float) -> str:
    if not math.isfinite(m):
        return ""
    return f"{m:.3g} ± {s:.2g}" if math.isfinite(s) else f"{m:.3g}"


def table2(comparison: Comparison) -> "pd.DataFrame":
    """The comparison as the paper's Table 2: mean ± SD of the whole series and of each
    group, p and adjusted p, as text (one row per variable)."""
    import pandas as pd

    t = comparison.table
    n_a, n_b = int(t["n_a"].max()), int(t["n_b"].max())
    a_name, b_name = comparison.names
    return pd.DataFrame({
        "variable": t["variable"],
        f"whole series (n={n_a + n_b})": [_fmt_mean_sd(m, s) for m, s in zip(t["whole_mean"], t["whole_sd"])],
        f"{a_name} (n={n_a})": [_fmt_mean_sd(m, s) for m, s in zip(t["a_mean"], t["a_sd"])],
        f"{b_name} (n={n_b})": [_fmt_mean_sd(m, s) for m, s in zip(t["b_mean"], t["b_sd"])],
        "p": [_fmt_p(p) for p in t["p"]],
        "adjusted p": [_fmt_p(p) for p in t["p_adjusted"]],
        "test": t["method"],
    })


# --------------------------------------------------------------------------- the figure


def comparison_figure(comparison: Comparison, *, alpha: float = 0.05, dpi: int = 150) -> "Figure":
    """Box plots of the z-scored variables, group A beside group B (as the paper's Fig. 6).

    Each variable gets a pair of boxes with the cases drawn over them; above it the
    p-value and the adjusted p-value, bold when the adjusted one is below ``alpha``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t, zs = comparison.table, comparison.zscores
    names = comparison.names
    variables = list(t["variable"])
    colours = ("#1b6ca8", "#d1495b")
    fig = Figure(figsize=(max(6.0, 0.8 * len(variables) + 1.5), 4.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # the same jitter every time: the same picture
    top = 0.0
    for i, v in enumerate(variables):
        for j, (name, colour) in enumerate(zip(names, colours)):
            x = zs.loc[zs["group"] == name, v].to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            pos = i + (j - 0.5) * 0.36
            if x.size:
                ax.boxplot([x], positions=[pos], widths=0.3, showfliers=False, patch_artist=True,
                           boxprops={"facecolor": colour, "alpha": 0.35, "edgecolor": colour},
                           medianprops={"color": colour}, whiskerprops={"color": colour},
                           capprops={"color": colour})
                ax.plot(pos + rng.uniform(-0.07, 0.07, x.size), x, "o", ms=2.5, color=colour, alpha=0.8)
                top = max(top, float(x.max()))
    for i, (p, q) in enumerate(zip(t["p"], t["p_adjusted"])):
        if math.isfinite(p):
            bold = math.isfinite(q) and q < alpha
            ax.text(i, top + 0.35, f"p {_fmt_p(p)}\nadj. {_fmt_p(q)}".replace("< ", "<"), ha="center", va="bottom",
                    fontsize=6.5,
                    fontweight="bold" if bold else "normal")
    ax.set_xticks(range(len(variables)), variables, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.7, len(variables) - 0.3)
    ax.set_ylim(top=top + 1.4)
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_ylabel("z-score")
    for name, colour in zip(names, colours):
        ax.plot([], [], "s", color=colour, alpha=0.6, label=f"{name} (n={int((zs['group'] == name).sum())})")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(f"{names[0]} vs {names[1]}: two-sided Mann-Whitney U; bold: Benjamini-Hochberg adjusted "
                 f"p < {alpha:g}", fontsize=9)
    return fig


def write_comparison(comparison: Comparison, out_dir: Union[str, os.PathLike], *, alpha: float = 0.05,
                     formats: Sequence[str] = ("png",)) -> dict[str, Path]:
    """Write ``comparison.csv`` (numeric), ``table2.csv`` (as printed), ``zscores.csv``
    and the figure ``comparison.<format>`` into ``out_dir`` (created if needed)."""
    from .render import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"comparison": out / "comparison.csv", "table2": out / "table2.csv", "zscores": out / "zscores.csv"}
    comparison.table.to_csv(files["comparison"], index=False)
    table2(comparison).to_csv(files["table2"], index=False)
    comparison.zscores.to_csv(files["zscores"], index=False)
    fig = comparison_figure(comparison, alpha=alpha)
    for fmt in formats:
        files[f"figure.{fmt}"] = save_figure(fig, out / f"comparison.{fmt}")
    return files
