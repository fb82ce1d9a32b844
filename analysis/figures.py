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
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xablate.files import write_atomic

from .axes import text
from .panels import draw_curves, draw_differences, loss_column, titles
from .plan import VERSIONS, FigurePlan
from .spectrum import spectrum_figure


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
    titles(fig, plan, runs, width=140, curves=curves)
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
