"""Figures in the paper's form: validation top-1 against gradient steps, one curve per value of one axis.

- `fig9_residual`: paper Fig. 9, training profile with and without residual connections (validation top-1 as in
  the paper, beside the training loss of each logging interval, logged more often than runs evaluate);
- `fig10_activation`: paper Fig. 10, no activation, ReLU or ELU between the depthwise and pointwise steps;
- `fig11_segments`: the project's Fig. 11, the spectrum the paper left open (§5): the same two profiles per
  number of segments, beside final (and best) validation top-1, parameters, multiply-adds and measured training
  images/s against the number of segments on a log2 axis from 1 (a regular conv) to depthwise ("dw").

With several seeds a curve is the mean across seeds with a 95% t-interval band at each evaluation step (the
steps align: evaluation steps are deterministic); with one seed it is a plain line. Colours are the Okabe-Ito
colour-blind-safe palette, with the paper's Xception value of each axis always in black, and line styles
differ too, so that the figures also read in grey scale.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from xablate.convergence import NOT_CONVERGED, still_rising
from xablate.files import write_atomic

from .axes import DEPTHWISE, is_baseline, legend_label, short_label, text
from .plan import VERSIONS, FigurePlan
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


def _value_runs(frame: pd.DataFrame, axis: str, value: Any) -> pd.Series:
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
        seeds = int(_value_runs(runs, plan.axis, value).sum())
        band = curve_band(rows_of[_value_runs(rows_of, plan.axis, value)], column=column)
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


def profile_figure(
    plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame, diffs: pd.DataFrame | None = None
) -> Figure:
    """Paper Fig. 9 or 10 (or any axis): the training profile, validation top-1 as in the paper, beside the
    training loss, which runs log far more often than they evaluate and so shows the speed of convergence
    in finer steps, and (given `diffs`, the family's primary comparisons) the differences themselves."""
    with_diffs = diffs is not None and len(diffs) > 0
    fig = Figure(figsize=(16.5 if with_diffs else 11.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 3 if with_diffs else 2, width_ratios=(1.0, 1.0, 0.9) if with_diffs else None)
    draw_curves(axes[0], plan, runs, curves)
    draw_curves(axes[1], plan, runs, curves, split="train", column=loss_column(curves))
    if with_diffs:
        draw_differences(axes[2], diffs)
    _titles(fig, plan, runs, width=140, curves=curves)
    return fig


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


def _titles(fig: Figure, plan: FigurePlan, runs: pd.DataFrame, width: int, curves: pd.DataFrame) -> None:
    context = textwrap.fill(_context(plan, runs), width=width)
    budget = budget_line(runs, curves)
    budget = "\n" + textwrap.fill(budget, width=width) if budget else ""
    fig.suptitle(TITLES.get(plan.axis, plan.axis) + "\n" + context + budget, fontsize=9.5)


NEAR_CONSTANT = 0.03
"""A cost that varies by at most ±3% of its mean (parameters at equal parameters) is drawn relative to its mean."""
DW_GAP = 1.5
"""Doublings between the largest count and depthwise: not the next power of two, with an axis break between."""


def spectrum_positions(values: list[Any]) -> dict[str, float]:
    """x positions on a log2 axis: an integer count at itself; depthwise (one segment per channel, more than
    any count tried, but a category rather than a count) 1.5 doublings right of the largest count, across an
    axis break, labelled "dw"."""
    counts = [int(v) for v in values if v != DEPTHWISE]
    right = 2.0**DW_GAP * max(counts) if counts else 2.0
    return {repr(v): right if v == DEPTHWISE else float(v) for v in values}


def _tick_label(value: Any) -> str:
    return "dw" if value == DEPTHWISE else str(value)


MEASURES: tuple[tuple[str, str, float], ...] = (
    ("final", "val_top1", 100.0), ("best", "best_val_top1", 100.0), ("params", "params", 1e-6),
    ("macs", "macs", 1e-6),
)  # fmt: skip


def spectrum_table(plan: FigurePlan, runs: pd.DataFrame, measures: tuple[tuple[str, str, float], ...]) -> pd.DataFrame:
    """Per value of the axis: x position, colour, depthwise or not, and each measure's mean and half-width."""
    x = spectrum_positions(plan.values)
    style = styles(plan.axis, plan.values)
    rows: list[dict[str, Any]] = []
    for value in plan.values:
        group = runs[_value_runs(runs, plan.axis, value)]
        if group.empty:
            continue
        row = {"x": x[repr(value)], "color": style[repr(value)]["color"], "dw": value == DEPTHWISE}
        for name, column, scale in measures:
            interval = mean_interval((group[column].astype(float) * scale).tolist())
            row[name], row[f"{name}_half"] = interval.estimate, interval.half_width
        rows.append(row)
    return pd.DataFrame(rows)


def _points(
    ax: Axes,
    table: pd.DataFrame,
    name: str,
    marker: str,
    label: str | None = None,
    *,
    filled: bool = True,
    line: str = "-",
    shift: float = 1.0,
) -> None:
    """Mean per value (coloured as in the curves) with its 95% interval, the counts joined by a thin line and
    depthwise not (it lies across the axis break); `shift` offsets overlapping series."""
    counts = table[~table["dw"]]
    ax.plot(counts["x"] * shift, counts[name], color="0.55", linestyle=line, linewidth=1.0, zorder=1)
    for _, r in table.iterrows():
        err = r[f"{name}_half"] if math.isfinite(r[f"{name}_half"]) else None
        ax.errorbar(
            r["x"] * shift, r[name], yerr=err, fmt=marker, color=r["color"], markersize=6, capsize=3,
            markerfacecolor=r["color"] if filled else "white", zorder=2,
        )  # fmt: skip
    if label:
        ax.plot([], [], marker=marker, color="0.3", linestyle=line, markerfacecolor="0.3" if filled else "white",
                label=label)  # fmt: skip


def _cost_panel(ax: Axes, table: pd.DataFrame, name: str, marker: str, label: str) -> None:
    """A cost in millions, or, when it is near-constant, in % from its mean (else it would read as zigzags)."""
    mean = float(table[name].mean())
    if mean and (table[name] - mean).abs().max() <= NEAR_CONSTANT * abs(mean):
        relative = table.assign(
            **{name: 100.0 * (table[name] / mean - 1.0), f"{name}_half": 100.0 * table[f"{name}_half"] / mean}
        )
        _points(ax, relative, name, marker)
        ax.set_ylim(-100 * NEAR_CONSTANT, 100 * NEAR_CONSTANT)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_ylabel(f"{label.split(' (')[0]}\n(% from the mean, {mean:.3g} M)", fontsize=8.5)
        ax.set_label(f"{name}_relative")
        return
    _points(ax, table, name, marker)
    ax.set_ylabel(label)
    ax.set_label(name)


def settings(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct (device, threads) under which runs measured their throughput."""
    pairs = {(text(d), text(t)) for d, t in zip(runs["device"], runs["threads"], strict=True)}
    return sorted(pairs)


def _throughput_panels(fig: Figure, cell: Any, plan: FigurePlan, runs: pd.DataFrame, share: Axes) -> list[Axes]:
    """Training images/s, one panel per (device, threads): throughput is only comparable within one."""
    chosen = settings(runs)
    grid = cell.subgridspec(1, max(len(chosen), 1))
    panels = []
    for i, (device, threads) in enumerate(chosen):
        ax = fig.add_subplot(grid[0, i], sharex=share)
        keep = (runs["device"].map(text) == device) & (runs["threads"].map(text) == threads)
        table = spectrum_table(plan, runs[keep], (("ips", "train_img_per_s", 1.0),))
        _points(ax, table, "ips", "v")
        ax.set_ylabel("training throughput\n(images/s)" if i == 0 else "")
        ax.set_title(f"measured on {device}, {threads} thread(s)", fontsize=8)
        ax.set_label(f"ips:{device}:{threads}")
        panels.append(ax)
    return panels


def _segments_axis(ax: Axes, plan: FigurePlan) -> None:
    """Log2 ticks at the counts and at "dw", and break marks (//) on the axis between them."""
    x = spectrum_positions(plan.values)
    xs = list(x.values())
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([x[repr(v)] for v in plan.values]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_tick_label(v) for v in plan.values])
    ax.set_xlim(min(xs) / 2**0.5, max(xs) * 2**0.5)
    ax.set_xlabel("segments per separable conv (log2 axis; dw = depthwise, set apart)")


def _axis_break(ax: Axes, plan: FigurePlan) -> None:
    counts = [int(v) for v in plan.values if v != DEPTHWISE]
    if not counts or DEPTHWISE not in plan.values:
        return
    at = max(counts) * 2 ** (DW_GAP / 2)
    ax.axvline(at, color="0.8", linestyle=":", linewidth=1)
    for dx in (-0.06, 0.06):
        ax.text(
            at * 2**dx,
            0.0,
            "/",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="center",
            fontsize=11,
            clip_on=False,
        )


def spectrum_figure(
    plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame, diffs: pd.DataFrame | None = None
) -> Figure:
    """The project's Fig. 11: the training profiles (validation top-1 above the training loss, which is
    logged far more often than runs evaluate), accuracy beside its costs along the spectrum and, given
    `diffs`, the differences from depthwise."""
    with_diffs = diffs is not None and len(diffs) > 0
    fig = Figure(figsize=(18.0 if with_diffs else 13.0, 8.5), layout="constrained")
    grid = fig.add_gridspec(4, 3 if with_diffs else 2, width_ratios=(1.25, 1.0, 0.9) if with_diffs else (1.25, 1.0))
    draw_curves(fig.add_subplot(grid[:2, 0]), plan, runs, curves)
    draw_curves(fig.add_subplot(grid[2:, 0]), plan, runs, curves, split="train", column=loss_column(curves))
    panels = [fig.add_subplot(grid[0, 1])]
    panels += [fig.add_subplot(grid[i, 1], sharex=panels[0]) for i in (1, 2)]
    table = spectrum_table(plan, runs, MEASURES)
    _points(panels[0], table, "final", "o", "final", shift=2**-0.07)
    _points(panels[0], table, "best", "D", "best", filled=False, line="--", shift=2**0.07)
    panels[0].set_ylabel("val. top-1 (%)")
    bottom, top = panels[0].get_ylim()
    panels[0].set_ylim(max(bottom, -1.0), min(top, 101.0))
    panels[0].legend(fontsize=8, loc="best")
    panels[0].set_label("final")
    _cost_panel(panels[1], table, "params", "s", "parameters (M)")
    _cost_panel(panels[2], table, "macs", "^", "multiply-adds\n(M per image)")
    bottom_row = _throughput_panels(fig, grid[3, 1], plan, runs, panels[0])
    _segments_axis(panels[0], plan)
    for panel in [*panels, *bottom_row]:
        panel.grid(True, alpha=0.3)
        _axis_break(panel, plan)
        if panel not in bottom_row:
            panel.tick_params(labelbottom=False)
            panel.set_xlabel("")
        else:
            panel.set_xlabel("segments (log2; dw set apart)" if len(bottom_row) > 1 else panels[0].get_xlabel())
    if with_diffs:
        draw_differences(fig.add_subplot(grid[:, 2]), diffs)
    _titles(fig, plan, runs, width=170, curves=curves)
    return fig


def draw(plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame, diffs: pd.DataFrame | None = None) -> Figure:
    if plan.axis == "segments":
        return spectrum_figure(plan, runs, curves, diffs)
    return profile_figure(plan, runs, curves, diffs)


SHARED: frozenset[str] = frozenset({"val_top1", "train_loss", "train_ce", "final", "forest"})
"""The panels that versions of a figure share limits in: accuracy and loss (costs differ by design)."""


def share_limits(figures: list[Figure]) -> None:
    """Give the accuracy and loss panels of the same name in `figures` common limits (x for forests)."""
    by_name: dict[str, list[Axes]] = {}
    for fig in figures:
        for ax in fig.axes:
            if ax.get_label() in SHARED:
                by_name.setdefault(ax.get_label(), []).append(ax)
    for name, axes in by_name.items():
        if len(axes) < 2:
            continue
        get, put = ("get_xlim", "set_xlim") if name == "forest" else ("get_ylim", "set_ylim")
        limits = [getattr(ax, get)() for ax in axes]
        low, high = min(lim[0] for lim in limits), max(lim[1] for lim in limits)
        for ax in axes:
            getattr(ax, put)(low, high)


def draw_all(
    plans: list[FigurePlan], runs: pd.DataFrame, curves: pd.DataFrame, compared: pd.DataFrame, out: Path
) -> dict[str, list[Path]]:
    """Every figure the runs support, saved as PNG and PDF: the drawable ones, and the versions of a figure
    that only `budget` blocks, with shared y-limits."""
    figures: dict[str, list[Path]] = {}
    for plan in plans:
        if plan.drawable:
            fig = draw(plan, runs, curves, _primary(compared, plan.name))
            figures[plan.name] = save(fig, out, plan.name)
        elif set(plan.blockers) == {VERSIONS} and plan.selections:
            versions = {}
            for selection in plan.selections:
                value = selection[VERSIONS]
                keep = runs[VERSIONS].map(lambda v, value=value: v == value)
                subset, sub_curves = runs[keep], curves[curves["run_id"].isin(set(runs.loc[keep, "run_id"]))]
                family = f"{plan.name}[{VERSIONS}={text(value)}]"
                sub_plan = FigurePlan(plan.name, plan.axis, plan.values, {**plan.fixed, VERSIONS: value})
                versions[f"{plan.name}_{VERSIONS}-{text(value)}"] = draw(
                    sub_plan, subset, sub_curves, _primary(compared, family)
                )
            share_limits(list(versions.values()))
            figures.update({name: save(fig, out, name) for name, fig in versions.items()})
    return figures


def _primary(compared: pd.DataFrame, family: str) -> pd.DataFrame:
    """The family's comparisons of its primary endpoint (the first metric it lists)."""
    rows = compared[compared["family"] == family]
    return rows[rows["metric"] == rows["metric"].iloc[0]] if len(rows) else rows


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """`name.png` (150 dpi) and `name.pdf` in `out`, each written whole or not at all."""
    paths = []
    for suffix, kwargs in ((".png", {"dpi": 150}), (".pdf", {})):
        path = out / f"{name}{suffix}"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], **kwargs)
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths
