"""What a study declared in its config's `design` node before it ran, and what the analysis makes of it.

Every run carries its study's declaration as the runs frame's `design_*` columns (empty where its config, or an
older published runs.csv, has none: the defaults). A declaration wins over the analysis' flags, which only
choose for studies that declared nothing. When the runs of a study declare different values, the first in
sorted order is used (the smallest margin) and, but for `design.comparisons`, the notes under the verdicts
list the others:

- `design.primary`: the primary endpoint, `test_top1` (the final val top-1 in a family where a run has no test
  top-1, as the notes say) or `val_top1` (the final test top-1 then follows as a secondary metric);
- `design.baseline`: the reference cell, space-separated AXIS=VALUE pairs of the figures' axes; an axis it
  leaves out keeps the paper's Xception value;
- `design.margin`, `design.variance` and `design.comparisons`: the equivalence margin, the variance model and
  which pairs of cells each family compares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from xablate.design import PAPER_AXES, check_looks, parse_baseline
from xablate.errors import ConfigError

from .axes import BASELINE, text

DEFAULT_MARGIN = 0.5
"""Equivalence margin for accuracies, in percentage points, when the study's config declares none."""
PRIMARY_ENDPOINTS: tuple[str, ...] = ("test_top1", "val_top1")


@dataclass(frozen=True)
class Design:
    """The settings the comparisons follow, each with where it came from (`study config (...)`, a flag or
    `default`)."""

    model: str
    model_source: str
    margin: float
    margin_source: str
    scope: str | None
    primary: str | None
    """None: not declared (the final test top-1 where every run of a family has one, as `test_top1`, but
    without a note where a family falls back)."""
    primary_source: str
    baseline: dict[str, Any]
    baseline_source: str
    looks: tuple[int, ...] | None = None
    """The registered looks (seed counts, the last N); None: none registered, every read at 5%."""
    looks_source: str = "default"


def study_design(
    runs: pd.DataFrame, model: str | None = None, margin: float | None = None, looks: Sequence[int] | None = None
) -> Design:
    """The study's declarations, with `--paired`/`--pooled` (`model`), `--margin` and `--looks` as fallbacks; a
    one-line ConfigError for a declaration the analysis cannot follow."""
    margin_used, margin_source = study_margin(runs, margin)
    model_used, model_source = study_variance(runs, model)
    primary, primary_source = study_primary(runs)
    baseline, baseline_source = study_baseline(runs)
    looks_used, looks_source = study_looks(runs, looks)
    return Design(
        model_used, model_source, margin_used, margin_source, study_scope(runs),
        primary, primary_source, baseline, baseline_source, looks_used, looks_source,
    )  # fmt: skip


def study_looks(runs: pd.DataFrame, given: Sequence[int] | None) -> tuple[tuple[int, ...] | None, str]:
    """The registered looks and where they came from: the study's `design.looks` wins over `--looks`, which
    only serves studies that registered none (then every read is at 5% and labelled unregistered)."""
    declared = _declared_words(runs, "design_looks")
    try:
        if declared:
            return check_looks(declared[0].split(",")), _also("looks", declared)
        if given:
            return check_looks(given), "--looks"
    except ConfigError as error:
        raise ConfigError(f"{error} ({'--looks' if not declared else 'the study config'})") from None
    return None, "default"


def ignored_flags(
    design: Design, model: str | None, margin: float | None, looks: Sequence[int] | None = None
) -> list[str]:
    """A line for each flag the study's declaration overrides."""
    lines = []
    if margin is not None and design.margin_source.startswith("study") and margin != design.margin:
        lines.append(f"--margin {margin:g} ignored: the study declared design.margin = {design.margin:g}")
    if model is not None and design.model_source.startswith("study") and model != design.model:
        lines.append(f"--{model} ignored: the study declared design.variance = {design.model}")
    if looks and design.looks_source.startswith("study") and tuple(looks) != design.looks:
        lines.append(f"--looks ignored: the study declared design.looks = {list(design.looks or ())}")
    return lines


def _also(field: str, declared: list[Any]) -> str:
    return f"study config (design.{field})" + (f"; also {declared[1:]}" if len(declared) > 1 else "")


def _declared_words(runs: pd.DataFrame, column: str) -> list[str]:
    return sorted({v for v in runs.get(column, pd.Series(dtype=object)) if isinstance(v, str) and v})


def study_margin(runs: pd.DataFrame, given: float | None) -> tuple[float, str]:
    """The equivalence margin and where it came from: the study's `design.margin` (declared before the
    runs) wins over `--margin`, which is only the fallback for studies that declared none."""
    declared = sorted(
        {float(m) for m in runs.get("design_margin", pd.Series(dtype=float)).astype(float) if math.isfinite(m)}
    )
    if declared:
        return declared[0], _also("margin", declared)
    if given is not None:
        return given, "--margin"
    return DEFAULT_MARGIN, "default"


def study_variance(runs: pd.DataFrame, given: str | None) -> tuple[str, str]:
    """The variance model and where it came from: the study's `design.variance` wins over `--paired` or
    `--pooled`, which only choose for studies that declared none (Welch's then being the default)."""
    declared = _declared_words(runs, "design_variance")
    if declared:
        return declared[0], _also("variance", declared)
    if given is not None:
        return given, f"--{given}"
    return "welch", "default"


def study_scope(runs: pd.DataFrame) -> str | None:
    """The study's `design.comparisons` (`baseline` or `pairwise`), None where it declared none."""
    declared = _declared_words(runs, "design_comparisons")
    return declared[0] if declared else None


def study_primary(runs: pd.DataFrame) -> tuple[str | None, str]:
    """The study's `design.primary` and where it came from; None where it declared none."""
    declared = _declared_words(runs, "design_primary")
    for value in declared:
        if value not in PRIMARY_ENDPOINTS:
            raise ConfigError(f"design.primary={value!r} is not known; allowed: {', '.join(PRIMARY_ENDPOINTS)}")
    return (declared[0], _also("primary", declared)) if declared else (None, "default")


def baseline_text(baseline: Mapping[str, Any]) -> str:
    return " ".join(f"{axis}={text(baseline[axis])}" for axis in PAPER_AXES)


def study_baseline(runs: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """The reference cell the study declared (`design.baseline`) and where it came from; the paper's Xception
    where it declared none. Spellings of one cell (`dw`, `depthwise`) count as one declaration."""
    parsed = {baseline_text(b): b for b in map(parse_baseline, _declared_words(runs, "design_baseline"))}
    if not parsed:
        return dict(BASELINE), "default"
    declared = sorted(parsed)
    return parsed[declared[0]], _also("baseline", declared)
