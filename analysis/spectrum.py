"""The spectrum view of the project's Fig. 11: final and best top-1, parameters, multiply-adds and measured
images/s against segments on a log2 axis from 1 (a regular conv) to depthwise, set apart across a break."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from .axes import DEPTHWISE, text
from .panels import draw_curves, draw_differences, loss_column, styles, titles, value_runs
from .plan import FigurePlan
from .stats import mean_interval

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
        group = runs[value_runs(runs, plan.axis, value)]
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
    titles(fig, plan, runs, width=170, curves=curves)
    return fig


