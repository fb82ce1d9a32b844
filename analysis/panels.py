"""The panels every figure is drawn from: curves with seed bands, the forest of differences, styles that
keep the paper's Xception in black and read in grey scale, and the titles that state the budget."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xablate.convergence import NOT_CONVERGED, still_rising

from .axes import is_baseline, legend_label, short_label, text
from .plan import FigurePlan
from .stats import mean_interval
from .verdicts import p_text

OKABE_ITO: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}  # fmt: skip
SERIES: tuple[str, ...] = tuple(
    OKABE_ITO[c] for c in ("blue", "vermillion", "bluish_green", "orange", "reddish_purple", "sky_blue", "yellow")
)
"""Colours for the values of an axis in spectrum order; the baseline value (Xception's) is black."""
LINESTYLES: tuple[Any, ...] = ("--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 3)))
BAND_ALPHA = 0.18
VERDICT_COLOURS: dict[str, str] = {
    "better": OKABE_ITO["bluish_green"], "worse": OKABE_ITO["vermillion"], "equivalent": OKABE_ITO["blue"],
    "inconclusive": "0.35",
}  # fmt: skip
TITLES: dict[str, str] = {
    "residual": "Fig. 9: training profile with and without residual connections",
    "activation": "Fig. 10: activation between the depthwise and the pointwise step",
    "segments": "Fig. 11: the segments spectrum, from a regular conv (1) to depthwise",
}
STEPS_LABEL = "gradient descent steps"
TOP1_LABEL = "validation top-1 accuracy (%)"
LABELS = {("val", "top1"): TOP1_LABEL, ("train", "loss"): "training loss (mean over each logging interval)"}


def styles(axis: str, values: list[Any]) -> dict[Any, dict[str, Any]]:
    """Colour and line style per value: black and solid for the baseline value, Okabe-Ito colours otherwise."""
    out: dict[Any, dict[str, Any]] = {}
    others = 0
    for value in values:
        if is_baseline(axis, value):
            out[repr(value)] = {"color": OKABE_ITO["black"], "linestyle": "-"}
        else:
            out[repr(value)] = {
                "color": SERIES[others % len(SERIES)],
                "linestyle": LINESTYLES[others % len(LINESTYLES)],
            }
            others += 1
    return out


def curve_band(rows_of: pd.DataFrame, level: float = 0.95, column: str = "top1") -> pd.DataFrame:
    """Per step: the mean of `column` across runs, the half-width of its t-interval (NaN with one run) and n."""
    rows = []
    for step, group in rows_of.groupby("step", sort=True):
        interval = mean_interval(group[column].tolist(), level)
        rows.append({"step": step, "mean": interval.estimate, "half": interval.half_width, "n": interval.n})
    return pd.DataFrame(rows, columns=["step", "mean", "half", "n"])


def value_runs(frame: pd.DataFrame, axis: str, value: Any) -> pd.Series:
    return frame[axis].map(lambda v: type(v) is type(value) and v == value)


def _context(plan: FigurePlan, runs: pd.DataFrame) -> str:
    fixed = dict(plan.fixed)
    head = f"{fixed.pop('model', '?')} on {fixed.pop('data', '?')}"
    seeds = runs.groupby(plan.axis, sort=False)["seed"].nunique() if len(runs) else pd.Series(dtype=int)
    n_min, n_max = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
    n = f"{n_min}" if n_min == n_max else f"{n_min}-{n_max}"
    spread = f"mean ± 95% t-interval across {n} seeds" if n_max > 1 else "one seed per value"
    return f"{head}; " + ", ".join(f"{a}={text(v)}" for a, v in fixed.items()) + f" · {spread}"


MIN_LINE_POINTS = 4
"""A curve with fewer evaluations is drawn as points with error bars: a line would invent the steps between."""
CE_LABEL = "training cross-entropy (unsmoothed, per logging interval)"


def loss_column(curves: pd.DataFrame) -> str:
    """The unsmoothed training cross-entropy `ce` when the runs log it, else the (smoothed) training loss."""
    if "ce" in curves and curves.loc[curves["split"] == "train", "ce"].astype(float).notna().any():
        return "ce"
    return "loss"


def draw_curves(
    ax: Axes, plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame, *, split: str = "val", column: str = "top1"
) -> None:
    """`column` of `split` against gradient steps (validation top-1 in %, by default), one curve (and band) per
    value of the plan's axis; points with error bars instead when a curve has fewer than 4 evaluations."""
    rows_of = curves[curves["split"] == split]
    style = styles(plan.axis, plan.values)
    scale = 100.0 if column.startswith("top") else 1.0
    dodge = 0.012 * float(rows_of["step"].max()) if len(rows_of) else 0.0
    for i, value in enumerate(plan.values):
        seeds = int(value_runs(runs, plan.axis, value).sum())
        band = curve_band(rows_of[value_runs(rows_of, plan.axis, value)], column=column)
        if band.empty:
            continue
        kwargs = style[repr(value)]
        label = legend_label(plan.axis, value) + (f", {seeds} seeds" if seeds > 1 else "")
        if len(band) < MIN_LINE_POINTS:
            half = scale * band["half"]
            shift = (i - (len(plan.values) - 1) / 2) * dodge  # side by side, not on top of each other
            ax.errorbar(
                band["step"] + shift, scale * band["mean"], yerr=half.fillna(0.0) if half.notna().any() else None,
                fmt="o", capsize=3, markersize=5, label=label, color=kwargs["color"],
            )  # fmt: skip
            continue
        marker = {"marker": "o", "markersize": 3} if len(band) <= 30 else {}  # few evaluations: show where
        ax.plot(band["step"], scale * band["mean"], label=label, linewidth=1.8, **marker, **kwargs)
        has_band = band["half"].notna()
        if has_band.any():
            low = scale * (band["mean"] - band["half"])
            high = scale * (band["mean"] + band["half"])
            if scale == 100.0:
                low, high = low.clip(lower=0), high.clip(upper=100)
            ax.fill_between(
                band["step"], low, high, where=has_band.to_numpy(), color=kwargs["color"], alpha=BAND_ALPHA, linewidth=0
            )
    ax.set_xlabel(STEPS_LABEL)
    ax.set_ylabel(CE_LABEL if (split, column) == ("train", "ce") else LABELS.get((split, column), column))
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_label(f"{split}_{column}")


def _why(row: pd.Series) -> str:
    if row["verdict"] == "equivalent":
        return f"equivalent (TOST p {p_text(row['p_tost'])})"
    return f"{row['verdict']} (Holm p {p_text(row['p_holm'])})"


def draw_differences(ax: Axes, rows: pd.DataFrame) -> None:
    """The forest plot: each comparison's difference with its 95% interval, the ±margin band shaded (what
    counts as no difference), and the verdict beside it; the first comparison on top."""
    rows = rows.reset_index(drop=True)
    ys = list(range(len(rows)))[::-1]
    margin = float(rows["margin"].iloc[0]) if len(rows) else math.nan
    if math.isfinite(margin):
        ax.axvspan(-margin, margin, color=OKABE_ITO["sky_blue"], alpha=0.25, linewidth=0, label=f"±{margin:g} margin")
    ax.axvline(0.0, color="0.4", linewidth=1)
    for y, (_, r) in zip(ys, rows.iterrows(), strict=True):
        colour = VERDICT_COLOURS.get(str(r["verdict"]), "0.3")
        err = [[r["diff"] - r["low"]], [r["high"] - r["diff"]]] if math.isfinite(r["low"]) else None
        ax.errorbar([r["diff"]], [y], xerr=err, fmt="o", color=colour, capsize=3, markersize=5)
        ax.annotate(
            _why(r), (1.0, y), xycoords=("axes fraction", "data"),
            xytext=(4, 0), textcoords="offset points", va="center", fontsize=7.5, color=colour,
        )  # fmt: skip
    ax.set_yticks(ys)
    ax.set_yticklabels(
        [f"{short_label(r['axis'], r['cell'])} vs {short_label(r['axis'], r['baseline'])}" for _, r in rows.iterrows()],
        fontsize=8,
    )
    ax.set_ylim(-0.7, len(rows) - 0.3)
    metric = str(rows["metric"].iloc[0]) if len(rows) else "difference"
    ax.set_xlabel(f"difference in {metric} (points), 95% CI")
    ax.set_title(
        "differences from the reference (" + str(rows["model"].iloc[0] if len(rows) else "") + ")", fontsize=8.5
    )
    ax.grid(True, axis="x", alpha=0.3)
    if math.isfinite(margin):
        ax.legend(fontsize=7.5, loc="lower left")
    ax.set_label("forest")


def budget_line(runs: pd.DataFrame, curves: pd.DataFrame) -> str:
    """The training budget the figure shows and, when most runs were still learning at the end, that the
    differences are in the speed of learning (a short demo must not read as a result)."""
    val = curves[curves["split"] == "val"] if len(curves) else curves
    if not len(val) or "steps" not in runs:
        return ""
    steps = pd.to_numeric(runs["steps"], errors="coerce").median()
    epochs = pd.to_numeric(val["epoch"], errors="coerce").max()
    if not (math.isfinite(steps) and math.isfinite(epochs)):
        return ""
    steps = int(steps)
    line = f"budget: {steps} steps ({epochs:.3g} epochs) per run"
    rising = [
        still_rising(list(zip(group["step"].astype(float), group["top1"].astype(float), strict=True)))
        for _, group in val.sort_values("step").groupby("run_id")
    ]
    if sum(rising) * 2 > len(rising):
        line += f"; validation top-1 still rising at the end in {sum(rising)} of {len(rising)} runs: {NOT_CONVERGED}"
    return line


def titles(fig: Figure, plan: FigurePlan, runs: pd.DataFrame, width: int, curves: pd.DataFrame) -> None:
    context = textwrap.fill(_context(plan, runs), width=width)
    budget = budget_line(runs, curves)
    budget = "\n" + textwrap.fill(budget, width=width) if budget else ""
    fig.suptitle(TITLES.get(plan.axis, plan.axis) + "\n" + context + budget, fontsize=9.5)


