"""Which of Figures 9, 10 and 11 a set of runs supports, and how to select the runs for the others.

A figure varies one axis (Fig. 9 residual, Fig. 10 activation, Fig. 11 segments) and holds every other axis
fixed, as the paper's figures do. When the runs also vary along another axis, drawing them together would mix
cells; instead the figure is not drawn and the message names the `--where` selections under which it can be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any

import pandas as pd

from .axes import AXES, FIGURES, ordered, text

VERSIONS = "budget"
"""The axis whose values are versions of one figure (Fig. 11 at equal width and at equal parameters): a figure
blocked by it alone is drawn once per value, the versions sharing their accuracy axes so that they compare."""


@dataclass(frozen=True)
class FigurePlan:
    name: str
    axis: str
    values: list[Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    """The value of every other axis (when drawable)."""
    blockers: dict[str, list[Any]] = field(default_factory=dict)
    """The other axes that vary, with their values: the figure is drawable only without any."""
    selections: list[dict[str, Any]] = field(default_factory=list)
    """Values of the blocking axes under which `axis` still varies: each is one `--where` choice."""

    @property
    def drawable(self) -> bool:
        return not self.blockers


def axis_values(runs: pd.DataFrame) -> dict[str, list[Any]]:
    """Every axis with its distinct values, in spectrum order."""
    return {axis: ordered(axis, runs[axis].tolist()) for axis in AXES}


def varying(runs: pd.DataFrame) -> dict[str, list[Any]]:
    """The axes with more than one value among `runs`."""
    return {axis: values for axis, values in axis_values(runs).items() if len(values) > 1}


def plan_figures(runs: pd.DataFrame) -> list[FigurePlan]:
    """One plan per figure whose axis varies among `runs`, in paper order (Fig. 9, 10, 11)."""
    values = axis_values(runs)
    plans = []
    for axis, name in FIGURES.items():
        if len(values[axis]) < 2:
            continue
        blockers = {a: v for a, v in values.items() if a != axis and len(v) > 1}
        fixed = {a: v[0] for a, v in values.items() if a != axis and len(v) == 1}
        plans.append(FigurePlan(name, axis, values[axis], fixed, blockers, _selections(runs, axis, blockers)))
    return plans


def _selections(runs: pd.DataFrame, axis: str, blockers: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The combinations of blocking values present in `runs` under which `axis` has two or more values."""
    out = []
    for combo in product(*blockers.values()):
        selection = dict(zip(blockers, combo, strict=True))
        mask = pd.Series(True, index=runs.index)
        for a, v in selection.items():
            mask &= runs[a].map(lambda x, v=v: type(x) is type(v) and x == v)
        if len(set(runs.loc[mask, axis].map(repr))) > 1:
            out.append(selection)
    return out


def where_flags(selection: dict[str, Any]) -> str:
    return " ".join(f"--where {axis}={text(value)}" for axis, value in selection.items())


def describe(plans: list[FigurePlan], runs: pd.DataFrame, limit: int = 6) -> list[str]:
    """What can be drawn and, for each figure that cannot, the `--where` flags that would select it."""
    vary = varying(runs)
    if not vary:
        return ["the runs vary along no axis (one cell): no figure, tables only"]
    lines = ["runs vary in " + "; ".join(f"{a} ({', '.join(text(v) for v in vs)})" for a, vs in vary.items())]
    for plan in plans:
        if plan.drawable:
            lines.append(f"{plan.name}: drawn")
            continue
        also = ", ".join(plan.blockers)
        if set(plan.blockers) == {VERSIONS} and plan.selections:
            versions = ", ".join(text(s[VERSIONS]) for s in plan.selections)
            lines.append(f"{plan.name}: drawn once per {VERSIONS} ({versions}), sharing the accuracy axes")
            continue
        if not plan.selections:
            lines.append(
                f"{plan.name}: not drawn: the runs also vary in {also}, and no selection of them varies {plan.axis}"
            )
            continue
        choices = [where_flags(s) for s in plan.selections[:limit]]
        more = f" (and {len(plan.selections) - limit} more)" if len(plan.selections) > limit else ""
        lines.append(
            f"{plan.name}: not drawn: the runs also vary in {also}; select one with: " + " | ".join(choices) + more
        )
    missing = [f"{name} ({axis})" for axis, name in FIGURES.items() if axis not in vary]
    if missing:
        lines.append("no run varies the axis of " + ", ".join(missing))
    return lines
