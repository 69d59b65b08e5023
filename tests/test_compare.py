"""Group comparison: Mann-Whitney by hand and against scipy, group rules, z-scores,
Benjamini-Hochberg, the Table-2 layout, the figure, and synthetic cohorts of phantoms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymap.compare import (
    EXACT_MAX_N,
    compare_groups,
    default_variables,
    mann_whitney,
    parse_groups,
    table2,
    write_comparison,
    zscore,
)
from entropymap.phantom import make_phantom
from entropymap.pipeline import MapParams, compute_maps
from entropymap.regions import derived_reference
from entropymap.stats import region_statistics

# --- Mann-Whitney -----------------------------------------------------------------------


def test_mann_whitney_hand_case_exact():
    r = mann_whitney([1, 2, 3], [4, 5, 6])
    # U = 0: the most extreme of the C(6, 3) = 20 equally likely splits, on either side
    assert r.method == "exact" and r.u == 0 and r.p == pytest.approx(2 / 20)
    assert r.auc == 0 and r.rank_biserial == -1
    flipped = mann_whitney([4, 5, 6], [1, 2, 3])
    assert flipped.u == 9 and flipped.auc == 1 and flipped.rank_biserial == 1 and flipped.p == pytest.approx(0.1)


def test_mann_whitney_hand_case_with_ties():
    a, b = [1, 2, 2, 3], [2, 4, 5]
    r = mann_whitney(a, b)
    # U_a: 1 -> 0; each 2 -> one tie with 2 (0.5); 3 -> beats 2 (1)  => U = 2
    assert r.u == 2 and r.method == "asymptotic (ties corrected)"
    n1, n2, n = 4, 3, 7
    ties = 3**3 - 3  # the value 2 three times
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (abs(2 - n1 * n2 / 2) - 0.5) / math.sqrt(var)  # continuity-corrected
    assert r.p == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
    assert r.auc == pytest.approx(2 / 12) and r.rank_biserial == pytest.approx(2 * 2 / 12 - 1)


def test_mann_whitney_all_values_tied_gives_p_one():
    r = mann_whitney([3.0, 3.0, 3.0], [3.0, 3.0])
    assert r.p == 1.0 and r.auc == 0.5 and r.rank_biserial == 0.0


@pytest.mark.parametrize(
    "n1, n2, ties, method",
    [(8, 9, False, "exact"), (12, 10, True, "asymptotic"), (EXACT_MAX_N + 5, 20, False, "asymptotic"),
     (30, 31, False, "exact")],
)
def test_mann_whitney_agrees_with_scipy(rng, n1, n2, ties, method):
    a, b = rng.normal(0, 1, n1), rng.normal(0.7, 1, n2)
    if ties:
        a, b = np.round(a), np.round(b)
    r = mann_whitney(a, b)
    assert r.method.split()[0] == method
    direct = stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
    assert r.u == direct.statistic and r.p == pytest.approx(direct.pvalue, rel=1e-12)


def test_mann_whitney_leaves_nan_out_and_names_an_empty_group():
    r = mann_whitney([1, np.nan, 2, 3], [4, 5, np.nan, 6])
    assert r.p == pytest.approx(0.1)
    empty = mann_whitney([np.nan], [1.0, 2.0])
    assert math.isnan(empty.p) and "group A" in empty.method


# --- groups, z-scores, the table ----------------------------------------------------------


@pytest.mark.parametrize(
    "rule, values, expected",
    [
        ("TRG 1-3 vs 4-5", [1, 3, 4, 5, 2.0, None, 6], ["A", "A", "B", "B", "A", "", ""]),
        ("TRG 1,2,3 vs 4,5", ["1", "4", 5.0, "x"], ["A", "B", "B", ""]),
        ("group A vs B", ["A", "B", "a", "C"], ["A", "B", "", ""]),
        ('arm "drug X" vs placebo', ["drug X", "placebo", "drug"], ["A", "B", ""]),
        ("tumor grade 1 vs 2-3", [1, 2, 3, 2.5], ["A", "B", "B", "B"]),
        ("score -2--1 VS 0-1.5", [-1.5, 0.5, 2], ["A", "B", ""]),
    ],
)
def test_group_rules(rule, values, expected):
    r = parse_groups(rule)
    assert list(r.assign(values)) == expected


def test_group_rule_names_and_column():
    r = parse_groups("tumor grade 1 vs 2-3", names=["low", "high"])
    assert r.column == "tumor grade" and r.names == ("low", "high")
    assert parse_groups("TRG 1-3 vs 4-5").names == ("TRG 1-3", "TRG 4-5")


@pytest.mark.parametrize(
    "rule, words",
    [("TRG 1-3", "COLUMN A vs B"), ("1-3 vs 4-5", "COLUMN A vs B"), ("TRG 3-1 vs 4", "backwards"),
     ("TRG 1,,2 vs 4", "empty item"), ("TRG 1 vs 2 vs 3", "COLUMN A vs B"), ('TRG "1 vs 2', "COLUMN A vs B")],
)
def test_bad_group_rules_say_how_to_write_one(rule, words):
    with pytest.raises(ValueError, match=words):
        parse_groups(rule)


def test_a_value_in_both_groups_is_an_error():
    with pytest.raises(ValueError, match="both groups"):
        parse_groups("TRG 1-3 vs 3-5").assign([1, 3])


def test_zscore_without_bessel_and_constant_is_zero():
    z = zscore([1.0, 2.0, 3.0, np.nan])
    assert np.allclose(z[:3], stats.zscore([1.0, 2.0, 3.0])) and math.isnan(z[3])
    assert np.array_equal(zscore([4.0, 4.0]), [0.0, 0.0])


def _table():
    return pd.DataFrame({
        "id": [f"c{i}" for i in range(8)],
        "TRG": [1, 2, 3, 1, 4, 5, 4, 9],
        "entropy_mean": [3.8, 3.7, 3.9, 3.75, 3.5, 3.6, 3.55, 0.0],
        "hu_mean": [60.0, 62, 61, 63, 64, 60.5, 59, 0],
        "flat": [1.0] * 8,
    })


def test_compare_groups_table(tmp_path):
    c = compare_groups(_table(), "TRG 1-3 vs 4-5", variables=["entropy_mean", "hu_mean", "flat"])
    t = c.table.set_index("variable")
    assert c.n_excluded == 1 and c.names == ("TRG 1-3", "TRG 4-5")
    e = t.loc["entropy_mean"]
    assert (e.n_a, e.n_b) == (4, 3) and e.method == "exact"
    assert e.a_mean == pytest.approx(3.7875) and e.a_sd == pytest.approx(np.std([3.8, 3.7, 3.9, 3.75], ddof=1))
    assert e.whole_mean == pytest.approx(np.mean([3.8, 3.7, 3.9, 3.75, 3.5, 3.6, 3.55]))
    assert e.auc == 1.0 and e.rank_biserial == 1.0 and e.p == pytest.approx(2 / math.comb(7, 3))
    assert t.loc["flat", "p"] == 1.0
    # Benjamini-Hochberg by hand: p sorted ascending, p_(k) m / k, then the running minimum from the top
    p = t["p"].to_numpy()
    order = np.argsort(p)
    adj = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    expected = np.empty_like(adj)
    expected[order] = np.minimum(adj, 1)
    assert np.allclose(t["p_adjusted"], expected)
    # z-scores of the compared cases only
    assert list(c.zscores.columns) == ["id", "group", "entropy_mean", "hu_mean", "flat"]
    assert len(c.zscores) == 7 and c.zscores["entropy_mean"].mean() == pytest.approx(0, abs=1e-12)

    shown = table2(c)
    assert list(shown.columns) == ["variable", "whole series (n=7)", "TRG 1-3 (n=4)", "TRG 4-5 (n=3)", "p",
                                   "adjusted p", "test"]
    assert shown.loc[0, "TRG 1-3 (n=4)"].startswith("3.79 ± ")
    files = write_comparison(c, tmp_path / "cmp", formats=("png", "svg"))
    assert files["figure.png"].read_bytes()[:4] == b"\x89PNG" and files["figure.svg"].exists()
    assert pd.read_csv(files["comparison"]).shape == (3, 15)


def test_compare_groups_errors_name_the_problem():
    t = _table()
    with pytest.raises(ValueError, match="no column 'response'"):
        compare_groups(t, "response 1 vs 2", variables=["hu_mean"])
    with pytest.raises(ValueError, match="group 'TRG 6-8' is empty"):
        compare_groups(t, "TRG 1-3 vs 6-8", variables=["hu_mean"])
    with pytest.raises(ValueError, match="no column 'entropy_p5'"):
        compare_groups(t, "TRG 1-3 vs 4-5", variables=["entropy_p5"])
    with pytest.raises(ValueError, match="not numeric: id"):
        compare_groups(t, "TRG 1-3 vs 4-5", variables=["id"])
    with pytest.raises(ValueError, match="no variables"):
        compare_groups(t[["id", "TRG"]], "TRG 1-3 vs 4-5")
    assert default_variables(t) == ["entropy_mean", "hu_mean"]


# --- synthetic cohorts -------------------------------------------------------------------

_PARAMS = MapParams(kernel=5, n_threads=1)


def _features(heterogeneity: float, radius: float, seed: int) -> dict:
    """The tumour statistics of one phantom, named as in a cohort's feature table."""
    ph = make_phantom(shape=(24, 36, 36), spacing=(1.5, 1.0, 1.0), lesion_radius_mm=radius,
                      heterogeneity=heterogeneity, seed=seed)
    ref = derived_reference(ph.liver, ph.tumor, ph.geometry.spacing, 3.0)
    res = compute_maps(ph.image, ph.geometry.spacing, _PARAMS, tumor=ph.tumor, reference=ref)
    row = {}
    for quantity, values in (("entropy", res.raw), ("hu", ph.image)):
        row.update({f"{quantity}_{k}": v for k, v in region_statistics(values, ph.tumor).items()})
    return row


def _cohort(heterogeneities, seed: int) -> pd.DataFrame:
    draw = np.random.default_rng(seed)
    rows = []
    for i, (group, (lo, hi)) in enumerate(heterogeneities):
        rows.append({"id": f"p{i:02d}", "group": group,
                     **_features(draw.uniform(lo, hi), draw.uniform(6.0, 8.0), int(draw.integers(1 << 30)))})
    return pd.DataFrame(rows)


def test_synthetic_cohort_separates_heterogeneous_lesions():
    # group A: nearly homogeneous lesions (texture SD 0-6 HU); group B: heterogeneous (14-22 HU)
    design = [("A", (0.0, 6.0))] * 10 + [("B", (14.0, 22.0))] * 10
    c = compare_groups(_cohort(design, seed=11), "group A vs B")
    t = c.table.set_index("variable")
    print("\nheterogeneity cohort:\n" + t[["p", "p_adjusted", "method", "auc"]].to_string())
    assert t.loc["entropy_mean", "method"] == "exact"
    assert t.loc["entropy_mean", "p_adjusted"] < 0.05
    assert t.loc["entropy_mean", "b_mean"] > t.loc["entropy_mean", "a_mean"]


def test_synthetic_cohort_from_one_generator_finds_nothing():
    design = [("A" if i % 2 else "B", (0.0, 22.0)) for i in range(20)]
    c = compare_groups(_cohort(design, seed=12), "group A vs B")
    t = c.table.set_index("variable")
    print("\nnull cohort:\n" + t[["p", "p_adjusted", "method"]].to_string())
    assert not (t["p_adjusted"] < 0.05).any()
