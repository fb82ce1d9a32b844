"""Each comparison within each execution setting, beside the pooled one, when a setting varies within a study.

Runs of one study trained on two kinds of CPU (or devices) are two samples: where every seed ran whole on one
kind, the arms stay balanced and the pooled difference is fair, but the setting may change the effect itself.
So for the primary endpoint, each cell's difference from its reference is estimated within every stratum of
every setting that varies (`settings.SETTINGS`), and the strata's differences are tested against each other,
pairwise: the difference of two differences over its standard error, on Student's t with the
Welch-Satterthwaite degrees of freedom of the two (a stratum of two seeds has one or two degrees of freedom, so
a normal approximation such as Cochran's Q would call its chance agreement a disagreement), Bonferroni over the
pairs. A p-value under 0.05 is a disagreement beyond seed noise, said in one line under the verdicts.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd
from scipy import stats

from .axes import short_label
from .compare import Family, by_seed, families, metrics_of, pairs, with_endpoints
from .settings import SETTINGS, setting_value
from .stats import Test, welch_test

COLUMNS: tuple[str, ...] = ("family", "axis", "cell", "baseline", "metric", "setting", "stratum", "n", "n_baseline",
                            "diff", "low", "high", "p_strata")  # fmt: skip


def _within(family: Family, setting: str, stratum: str) -> Family:
    keep = family.runs[setting].map(setting_value) == stratum
    return Family(family.name, family.axis, family.values, family.baseline, family.runs[keep])


def strata_p(tests: list[Test]) -> float:
    """Whether the strata's differences disagree: the smallest pairwise p-value, Bonferroni over the pairs;
    NaN with fewer than two strata that have a standard error."""
    usable = [t for t in tests if math.isfinite(t.se) and t.se > 0 and t.df > 0]
    pairs_of = list(itertools.combinations(usable, 2))
    if not pairs_of:
        return math.nan
    ps = []
    for one, two in pairs_of:
        se = math.hypot(one.se, two.se)
        df = se**4 / (one.se**4 / one.df + two.se**4 / two.df)
        ps.append(2.0 * float(stats.t.sf(abs(one.diff - two.diff) / se, df)))
    return min(1.0, min(ps) * len(ps))


def stratum_rows(runs: pd.DataFrame, curves: pd.DataFrame, primary: str | None = None) -> pd.DataFrame:
    """One row per family, comparison, varying setting and stratum, for the primary endpoint (Welch)."""
    rows: list[dict[str, Any]] = []
    for family in families(with_endpoints(runs, curves)):
        metric = metrics_of(family.runs, primary)[0]
        for setting in (s for s in SETTINGS if s in family.runs):
            strata = sorted(set(family.runs[setting].map(setting_value)))
            if len(strata) < 2:
                continue
            for cell, reference in pairs(family, "baseline"):
                found, tests = [], []
                for stratum in strata:
                    part = _within(family, setting, stratum)
                    a, b = by_seed(part, cell, metric.column), by_seed(part, reference, metric.column)
                    test = welch_test(a.tolist(), b.tolist())
                    tests.append(test)
                    low, high = test.interval(0.95)
                    found.append({"family": family.name, "axis": family.axis, "cell": cell, "baseline": reference,
                                  "metric": metric.name, "setting": setting, "stratum": stratum, "n": len(a),
                                  "n_baseline": len(b), "diff": test.diff, "low": low, "high": high})  # fmt: skip
                rows += [{**f, "p_strata": strata_p(tests)} for f in found]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def disagreements(table: pd.DataFrame) -> list[str]:
    """A sentence per comparison whose strata disagree beyond noise (p < 0.05)."""
    out = []
    keys = table[["family", "cell", "baseline", "setting"]].astype(str).agg("|".join, axis=1)
    for key in dict.fromkeys(keys):
        rows = table[keys == key]
        first = rows.iloc[0]
        if not first["p_strata"] < 0.05:
            continue
        effects = "; ".join(
            f"{r['stratum']} {r['diff']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] (n {r['n']}/{r['n_baseline']})"
            for _, r in rows.iterrows()
        )
        head = f"{short_label(first['axis'], first['cell'])} vs {short_label(first['axis'], first['baseline'])}"
        out.append(
            f"{first['family']}: {head}, {first['metric']}, differs by {first['setting']} beyond noise: {effects} "
            f"(strata p = {first['p_strata']:.3f})"
        )
    return out
