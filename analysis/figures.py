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

from xablate.files import write_atomic

from .axes import DEPTHWISE, is_baseline, legend_label, text
from .plan import FigurePlan
from .stats import mean_interval

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


def draw_curves(
    ax: Axes, plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame, *, split: str = "val", column: str = "top1"
) -> None:
    """`column` of `split` against gradient steps (validation top-1 in %, by default), one curve (and band) per
    value of the plan's axis."""
    rows_of = curves[curves["split"] == split]
    style = styles(plan.axis, plan.values)
    scale = 100.0 if column.startswith("top") else 1.0
    for value in plan.values:
        seeds = int(_value_runs(runs, plan.axis, value).sum())
        band = curve_band(rows_of[_value_runs(rows_of, plan.axis, value)], column=column)
        if band.empty:
            continue
        kwargs = style[repr(value)]
        label = legend_label(plan.axis, value) + (f", {seeds} seeds" if seeds > 1 else "")
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
    ax.set_ylabel(LABELS.get((split, column), column))
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def profile_figure(plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Paper Fig. 9 or 10 (or any axis): the training profile, validation top-1 as in the paper, beside the
    training loss, which runs log far more often than they evaluate and so shows the speed of convergence
    in finer steps."""
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    top1, loss = fig.subplots(1, 2)
    draw_curves(top1, plan, runs, curves)
    draw_curves(loss, plan, runs, curves, split="train", column="loss")
    _titles(fig, plan, runs, width=140)
    return fig


def _titles(fig: Figure, plan: FigurePlan, runs: pd.DataFrame, width: int) -> None:
    context = textwrap.fill(_context(plan, runs), width=width)
    fig.suptitle(TITLES.get(plan.axis, plan.axis) + "\n" + context, fontsize=9.5)


def spectrum_positions(values: list[Any]) -> dict[str, float]:
    """x positions on a log2 axis: an integer count at itself; depthwise one doubling right of the largest
    count (it has one segment per channel, more than any count tried), labelled "dw"."""
    counts = [int(v) for v in values if v != DEPTHWISE]
    right = 2.0 * max(counts) if counts else 2.0
    return {repr(v): right if v == DEPTHWISE else float(v) for v in values}


def _tick_label(value: Any) -> str:
    return "dw" if value == DEPTHWISE else str(value)


def spectrum_figure(plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """The project's Fig. 11: the training profiles (validation top-1 above the training loss, which is
    logged far more often than runs evaluate), and accuracy beside its costs along the spectrum."""
    fig = Figure(figsize=(13.0, 8.5), layout="constrained")
    grid = fig.add_gridspec(4, 2, width_ratios=(1.25, 1.0))
    draw_curves(fig.add_subplot(grid[:2, 0]), plan, runs, curves)
    draw_curves(fig.add_subplot(grid[2:, 0]), plan, runs, curves, split="train", column="loss")
    panels = [fig.add_subplot(grid[0, 1])]
    panels += [fig.add_subplot(grid[i, 1], sharex=panels[0]) for i in (1, 2, 3)]
    x = spectrum_positions(plan.values)
    style = styles(plan.axis, plan.values)
    stats: list[dict[str, Any]] = []
    for value in plan.values:
        group = runs[_value_runs(runs, plan.axis, value)]
        row = {"x": x[repr(value)], "color": style[repr(value)]["color"]}
        for name, column, scale in (
            ("final", "val_top1", 100.0), ("best", "best_val_top1", 100.0), ("params", "params", 1e-6),
            ("macs", "macs", 1e-6), ("ips", "train_img_per_s", 1.0),
        ):  # fmt: skip
            interval = mean_interval((group[column].astype(float) * scale).tolist())
            row[name], row[f"{name}_half"] = interval.estimate, interval.half_width
        stats.append(row)
    table = pd.DataFrame(stats)
    xs = table["x"].to_numpy()

    def plot(
        ax: Axes, name: str, marker: str, label: str | None, filled: bool = True, line: str = "-", shift: float = 1.0
    ) -> None:
        """Mean per value (coloured as in the curves) with its 95% interval; `shift` offsets overlapping series."""
        ax.plot(xs * shift, table[name], color="0.55", linestyle=line, linewidth=1.0, zorder=1)
        for _, r in table.iterrows():
            err = r[f"{name}_half"] if math.isfinite(r[f"{name}_half"]) else None
            ax.errorbar(
                r["x"] * shift, r[name], yerr=err, fmt=marker, color=r["color"], markersize=6, capsize=3,
                markerfacecolor=r["color"] if filled else "white", zorder=2,
            )  # fmt: skip
        if label:
            ax.plot([], [], marker=marker, color="0.3", linestyle=line, markerfacecolor="0.3" if filled else "white",
                    label=label)  # fmt: skip

    plot(panels[0], "final", "o", "final", shift=2**-0.07)
    plot(panels[0], "best", "D", "best", filled=False, line="--", shift=2**0.07)
    panels[0].set_ylabel("val. top-1 (%)")
    bottom, top = panels[0].get_ylim()
    panels[0].set_ylim(max(bottom, -1.0), min(top, 101.0))
    panels[0].legend(fontsize=8, loc="best")
    plot(panels[1], "params", "s", None)
    panels[1].set_ylabel("parameters (M)")
    plot(panels[2], "macs", "^", None)
    panels[2].set_ylabel("multiply-adds\n(M per image)")
    plot(panels[3], "ips", "v", None)
    devices = sorted({f"{d}, {t} thread(s)" for d, t in zip(runs["device"], runs["threads"], strict=True)})
    panels[3].set_ylabel("training throughput\n(images/s)")
    panels[3].set_title("measured on " + "; ".join(text(d) for d in devices), fontsize=8)
    counts = [v for v in plan.values if v != DEPTHWISE]
    ax = panels[-1]
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([x[repr(v)] for v in plan.values]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_tick_label(v) for v in plan.values])
    low, high = min(xs), max(xs)
    ax.set_xlim(low / 2**0.5, high * 2**0.5)
    ax.set_xlabel("segments per separable conv (log2 axis; dw = depthwise)")
    for panel in panels:
        panel.grid(True, alpha=0.3)
        if counts and DEPTHWISE in plan.values:  # dw is a category, not a measured count: mark the gap
            panel.axvline(max(int(c) for c in counts) * 2**0.5, color="0.7", linestyle=":", linewidth=1)
        if panel is not ax:
            panel.tick_params(labelbottom=False)
    _titles(fig, plan, runs, width=170)
    return fig


def draw(plan: FigurePlan, runs: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    if plan.axis == "segments":
        return spectrum_figure(plan, runs, curves)
    return profile_figure(plan, runs, curves)


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
