"""The comparisons table: what the seeds can and cannot tell about each cell of a figure against its baseline.
(Over 250 lines because the families, endpoints and tests of one table are read together.)

A *family* is the set of cells one figure compares (Fig. 9 residual, Fig. 10 activation, Fig. 11 segments),
every other axis held fixed; a figure blocked by a second varying axis gives one family per `--where`
selection. Within a family each cell is compared with the baseline cell (the study's `design.baseline` value of
the figure's axis, by default the paper's Xception's), and for Fig. 10 every pair of activations too, unless
the study's `design.comparisons` says otherwise (`baseline` or `pairwise`). Per family and metric:

- `diff`, `low`, `high`: the cell minus the baseline with its 95% interval, under the declared variance model;
- `p`, `p_holm`: the two-sided p-value and Holm's adjustment over the family's comparisons of that metric;
- `p_tost`, `p_tost_holm`: the two one-sided tests against ±margin (accuracies only; the 90% interval inside
  the margin), and Holm's adjustment of them over the family, so that false equivalences stay within 5% too;
- `look`, `stage`, `level`: the read's seeds of the registered N (`design.looks`), whether it is the `final`
  look, an `interim` one, an `unplanned` read between looks or a study that registered none, and the level
  the look spends (`analysis.looks`: O'Brien-Fleming-type spending; 0.05 without registered looks);
- `mde`: the smallest difference these seed counts detect with 80% power at the 5% family-wise level after
  Holm (the level of its first step, 5% / comparisons), from the family's pooled seed SD, with the t-quantile
  sum `(t_{1-a/2} + t_{power}) * sd * sqrt(1/n + 1/n_baseline)`, df = n + n_baseline - 2;
- `verdict`: `better` / `worse` when Holm's p < level, else `equivalent` when Holm's TOST p < level, else
  `inconclusive`. Only a `final` verdict is a finding.

The primary endpoint is the study's `design.primary`: the final test top-1 (by default) when every run of the
family has one, else the final validation top-1; with `val_top1` the final validation top-1, the final test
top-1 then coming first among the secondary ones. Those are the final validation loss, the final unsmoothed
training cross-entropy (when runs log it) and the area under the validation top-1 curve. Accuracies are in
percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .axes import BASELINE, text
from .design import DEFAULT_MARGIN
from .looks import ALPHA, Look, look_at
from .plan import plan_figures
from .stats import Test, holm, paired_test, pooled_sd, pooled_test, welch_test

POWER = 0.8
PAIRWISE: frozenset[str] = frozenset({"activation"})
"""Figures whose cells are also compared pairwise (Fig. 10: ReLU against ELU as well as each against none)."""
VERDICTS: tuple[str, ...] = ("better", "worse", "equivalent", "inconclusive")
COLUMNS: tuple[str, ...] = (
    "family", "axis", "cell", "baseline", "metric", "model", "n", "n_baseline", "diff", "low", "high",
    "low90", "high90", "p", "p_holm", "margin", "p_tost", "p_tost_holm", "sd_pooled", "mde",
    "look", "stage", "level", "verdict",
)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    name: str
    column: str
    higher_is_better: bool
    points: bool
    """An accuracy in percentage points: the equivalence margin applies."""


@dataclass(frozen=True)
class Family:
    name: str
    axis: str
    values: list[Any]
    baseline: Any
    runs: pd.DataFrame


def _is(value: Any) -> Callable[[Any], bool]:
    return lambda v: type(v) is type(value) and v == value


def families(runs: pd.DataFrame, baseline: Mapping[str, Any] | None = None) -> list[Family]:
    """One family per drawable figure, and per `--where` selection of a figure that another axis blocks. Its
    reference is `baseline`'s value of the figure's axis (the paper's Xception by default), or the first value
    where none of its runs has that one."""
    reference = BASELINE if baseline is None else baseline
    out = []
    for plan in plan_figures(runs):
        selections = [{}] if plan.drawable else plan.selections
        for selection in selections:
            subset = runs
            for axis, value in selection.items():
                subset = subset[subset[axis].map(_is(value))]
            values = [v for v in plan.values if subset[plan.axis].map(_is(v)).any()]
            base = reference.get(plan.axis)
            baseline = base if any(_is(base)(v) for v in values) else values[0]
            suffix = "[" + ",".join(f"{a}={text(v)}" for a, v in selection.items()) + "]" if selection else ""
            out.append(Family(plan.name + suffix, plan.axis, values, baseline, subset.reset_index(drop=True)))
    return out


def with_endpoints(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus per-run endpoint columns: `top1_pp`, `test_top1_pp`, `train_ce_final`, `auc_pp`."""
    out = runs.copy()
    out["top1_pp"] = 100.0 * out["val_top1"].astype(float)
    out["test_top1_pp"] = 100.0 * out["test_top1"].astype(float)
    out["auc_pp"] = [_auc(curves, run_id) for run_id in out["run_id"]]
    out["train_ce_final"] = [
        ce if math.isfinite(ce) else _last_train_ce(curves, run_id)
        for ce, run_id in zip(out["train_ce"].astype(float), out["run_id"], strict=True)
    ]
    return out


def _auc(curves: pd.DataFrame, run_id: Any) -> float:
    """The area under the run's validation top-1 curve over its evaluated steps, divided by their span: the
    mean top-1 (points) during training, which rewards converging early."""
    val = curves[(curves["run_id"] == run_id) & (curves["split"] == "val")].sort_values("step")
    steps, top1 = val["step"].to_numpy(float), 100.0 * val["top1"].to_numpy(float)
    if len(steps) == 0:
        return math.nan
    if len(steps) == 1 or steps[-1] == steps[0]:
        return float(top1[-1])
    return float(np.trapezoid(top1, steps) / (steps[-1] - steps[0]))


def _last_train_ce(curves: pd.DataFrame, run_id: Any) -> float:
    if "ce" not in curves:
        return math.nan
    train = curves[(curves["run_id"] == run_id) & (curves["split"] == "train")].sort_values("step")
    ce = train["ce"].astype(float).dropna()
    return float(ce.iloc[-1]) if len(ce) else math.nan


TEST_TOP1 = Metric("final test top-1", "test_top1_pp", True, True)
VAL_TOP1 = Metric("final val top-1", "top1_pp", True, True)
SECONDARY: tuple[Metric, ...] = (
    Metric("final val loss", "val_loss", False, False),
    Metric("final train CE", "train_ce_final", False, False),
    Metric("val top-1 AUC", "auc_pp", True, True),
)


def metrics_of(runs: pd.DataFrame, primary: str | None = None) -> list[Metric]:
    """The primary endpoint first, then the secondary ones the runs have values for. `primary` is the study's
    `design.primary`: `val_top1`, or `test_top1` (also when None), which falls back to the final val top-1
    when a run has no test top-1."""
    test = runs["test_top1_pp"].astype(float)
    if primary == "val_top1":
        lead, secondary = VAL_TOP1, (TEST_TOP1, *SECONDARY)
    else:
        lead, secondary = (TEST_TOP1 if len(test) and np.isfinite(test).all() else VAL_TOP1), SECONDARY
    return [lead, *(m for m in secondary if np.isfinite(runs[m.column].astype(float)).any())]


def pairs(family: Family, scope: str | None = None) -> list[tuple[Any, Any]]:
    """(cell, reference) pairs: every cell against the baseline, then every pair of the others when `scope` is
    `pairwise` (None: where the figure asks for it)."""
    others = [v for v in family.values if not _is(family.baseline)(v)]
    out = [(v, family.baseline) for v in others]
    if scope == "pairwise" or (scope is None and family.axis in PAIRWISE):
        out += [(b, a) for a, b in combinations(others, 2)]
    return out


def by_seed(family: Family, value: Any, column: str) -> pd.Series:
    rows = family.runs[family.runs[family.axis].map(_is(value))]
    series = pd.Series(rows[column].astype(float).to_numpy(), index=rows["seed"].to_numpy())
    return series.dropna()


def _test(model: str, a: pd.Series, b: pd.Series, sd: float, df: int) -> Test:
    if model == "pooled":
        return pooled_test(a.tolist(), b.tolist(), sd, df)
    if model == "paired":
        if set(a.index) == set(b.index) and len(a) >= 2:
            seeds = sorted(a.index)
            return paired_test(a[seeds].tolist(), b[seeds].tolist())
        test = welch_test(a.tolist(), b.tolist())
        return Test("welch (seeds differ: unpaired)", test.diff, test.se, test.df)
    return welch_test(a.tolist(), b.tolist())


def mde(sd: float, n: int, n_baseline: int, comparisons: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The difference detectable with `power` at level `alpha / comparisons` (Holm's first step)."""
    df = n + n_baseline - 2
    if not (math.isfinite(sd) and df > 0 and comparisons > 0):
        return math.nan
    level = alpha / comparisons
    factor = stats.t.ppf(1 - level / 2, df) + stats.t.ppf(power, df)
    return float(factor * sd * math.sqrt(1 / n + 1 / n_baseline))


def verdict(p_holm: float, p_tost_holm: float, diff: float, higher_is_better: bool, level: float = ALPHA) -> str:
    """`better`/`worse`, `equivalent` or `inconclusive`, from Holm-adjusted p-values tested at the look's level."""
    if math.isfinite(p_holm) and p_holm < level:
        return "better" if (diff > 0) == higher_is_better else "worse"
    if math.isfinite(p_tost_holm) and p_tost_holm < level:
        return "equivalent"
    return "inconclusive"


def read_look(family: Family, looks: Sequence[int] | None) -> Look:
    """The look at which this read sees the family: the seeds every one of its cells has (whole seeds)."""
    seeds = family.runs.groupby(family.runs[family.axis].map(repr))["seed"].nunique()
    return look_at(int(seeds.min()) if len(seeds) else 0, looks)


def compare_family(
    family: Family, metric: Metric, model: str, margin: float, scope: str | None = None, look: Look | None = None
) -> list[dict[str, Any]]:
    """The rows of one family and metric, Holm-adjusted together, read at `look` (None: at 5%, unregistered)."""
    look = look_at(0, None) if look is None else look
    cells = {repr(v): by_seed(family, v, metric.column) for v in family.values}
    sd, df = pooled_sd([s.tolist() for s in cells.values()])
    todo = pairs(family, scope)
    rows = []
    for cell, reference in todo:
        a, b = cells[repr(cell)], cells[repr(reference)]
        test = _test(model, a, b, sd, df)
        low, high = test.interval(0.95)
        low90, high90 = test.interval(0.90)
        row_margin = margin if metric.points else math.nan
        rows.append(
            {
                "family": family.name, "axis": family.axis, "cell": cell, "baseline": reference,
                "metric": metric.name, "model": test.model, "n": len(a), "n_baseline": len(b),
                "diff": test.diff, "low": low, "high": high, "low90": low90, "high90": high90, "p": test.p,
                "margin": row_margin, "p_tost": test.tost(row_margin), "sd_pooled": sd,
                "mde": mde(sd, len(a), len(b), len(todo)),
                "look": f"{look.n} of {look.registered}" if look.registered else str(look.n), "stage": look.stage,
                "level": look.level,
            }
        )  # fmt: skip
    adjusted_tost = holm([r["p_tost"] for r in rows]) if metric.points else [math.nan] * len(rows)
    for row, adjusted, tost in zip(rows, holm([r["p"] for r in rows]), adjusted_tost, strict=True):
        row["p_holm"], row["p_tost_holm"] = adjusted, tost
        row["verdict"] = verdict(adjusted, tost, row["diff"], metric.higher_is_better, look.level)
    return rows


def comparisons(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    model: str = "welch",
    margin: float = DEFAULT_MARGIN,
    scope: str | None = None,
    primary: str | None = None,
    baseline: Mapping[str, Any] | None = None,
    looks: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Every family's comparisons, primary endpoint first within each family; `primary`, `baseline` and
    `looks` are the study's declarations (`analysis.design`), None for the defaults."""
    rows: list[dict[str, Any]] = []
    for family in families(with_endpoints(runs, curves), baseline):
        look = read_look(family, looks)
        for metric in metrics_of(family.runs, primary):
            rows += compare_family(family, metric, model, margin, scope, look)
    return pd.DataFrame(rows, columns=list(COLUMNS))
