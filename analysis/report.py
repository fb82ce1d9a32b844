"""One analysis, from loaded runs to the files in its output folder (`output.py`): frames, tables,
comparisons, Figures 9-11, a pilot's budget table, W&B."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .axes import text
from .compare import comparisons
from .design import Design, baseline_text, ignored_flags, study_design
from .figures import draw_all
from .frames import Runs
from .output import Output
from .pilot import budget_lines, budget_table
from .pilot import to_markdown as pilot_markdown
from .plan import describe, plan_figures
from .power import pair_plan_lines, pair_plan_rows, plan_lines, plan_rows
from .publish import Published, publish
from .settings import mixed_settings
from .strata import disagreements, stratum_rows
from .tables import cell_table, write_tables
from .verdicts import csv_text, design_sentences, notes, write_comparisons


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    tables: list[Path] = field(default_factory=list)
    published: Published | None = None


def title(runs: Runs, selection: Mapping[str, Sequence[Any]]) -> str:
    studies = sorted(set(runs.runs["study"].astype(str)))
    head = "Summary: study " + ", ".join(studies)
    if selection:
        head += " (" + ", ".join(f"{a}={'|'.join(text(v) for v in vs)}" for a, vs in selection.items()) + ")"
    return head


def run_analysis(
    data: Runs,
    out: Path,
    *,
    selection: Mapping[str, Sequence[Any]],
    sources: Sequence[str],
    wandb_mode: str,
    project: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    model: str | None = None,
    margin: float | None = None,
    looks: Sequence[int] | None = None,
    plan: float | None = None,
    pilot: float | None = None,
) -> Report:
    """Write frames, tables, comparisons (and a seed plan) and figures for `data` (already selected) into
    `out` and log them to W&B. A study design the analysis cannot follow raises a one-line ConfigError before
    any file is written."""
    design = study_design(data.runs, model, margin, looks)
    report = Report(lines=ignored_flags(design, model, margin, looks))
    output = Output(out)
    runs, curves = data.runs, data.curves
    _write_frames(output, data)
    if pilot is not None:
        return _pilot(report, output, data, pilot)
    table = cell_table(runs, curves)
    report.tables = write_tables(table, runs, out, title(data, selection), output.write_text)
    compared, mixed = _compare(report, output, data, design, plan)
    plans = plan_figures(runs)
    report.lines += describe(plans, runs)
    report.figures = draw_all(plans, runs, curves, compared, out)
    for paths in report.figures.values():
        output.add(paths)
    details = {
        "sources": list(sources),
        "where": {a: [text(v) for v in vs] for a, vs in selection.items()},
        "n_runs": len(runs),
        "n_cells": len(table),
        **_design_details(design),
        "left_out": [{"path": p.path, "reason": p.reason} for p in data.problems],
        "mixed_settings": mixed,
    }
    removed = output.finish(details)
    wandb_lines = _publish(
        report, output, data, table, details, mode=wandb_mode, project=project, entity=entity, group=group
    )
    report.lines.append(f"wrote {out}: {', '.join(p.name for p in output.files)}")
    if removed:
        report.lines.append("removed stale outputs of an earlier analysis: " + ", ".join(p.name for p in removed))
    report.lines += wandb_lines
    return report


def _compare(
    report: Report, output: Output, data: Runs, design: Design, plan: float | None
) -> tuple[pd.DataFrame, list[str]]:
    """Write the comparisons (and the seed plan) under the study's design: the table, and the sentences on
    settings that vary within a study."""
    runs, curves, out = data.runs, data.curves, output.out
    compared = comparisons(
        runs, curves, design.model, design.margin, design.scope, design.primary, design.baseline, design.looks
    )
    mixed = mixed_settings(runs)
    report.lines += [f"warning: {sentence}" for sentence in mixed]
    disagree = _strata(report, output, data, design) if mixed else []
    note = notes(design, compared)
    note = " ".join(
        [note, *design_sentences(design, compared), *(f"Warning: {sentence}." for sentence in [*mixed, *disagree])]
    )
    report.tables += write_comparisons(compared, out, note, output.write_text)
    if plan is not None:
        seeds = plan_rows(runs, curves, plan, design.scope, design.primary)
        output.write_text(out / "plan.csv", csv_text(seeds))
        report.tables.append(out / "plan.csv")
        report.lines += plan_lines(seeds)
        by_pair = pair_plan_rows(runs, curves, plan, design.scope)
        output.write_text(out / "plan_pairs.csv", csv_text(by_pair))
        report.tables.append(out / "plan_pairs.csv")
        report.lines += pair_plan_lines(by_pair)
    return compared, mixed


def _write_frames(output: Output, data: Runs) -> None:
    for name, frame in (("runs.csv", data.runs), ("curves.csv", data.curves)):
        frame = frame.copy()
        for column in ("segments", "residual", "mid_norm"):
            frame[column] = frame[column].map(text)
        output.write_text(output.out / name, frame.to_csv(index=False, na_rep=""))


def _pilot(report: Report, output: Output, data: Runs, tolerance: float) -> Report:
    """A pilot's report alone: its frames, `pilot.csv` and `pilot.md` (the budget table on the validation
    split, and the budget the rule picks). No comparisons: its runs differ in budget, not only in seed."""
    table = budget_table(data, tolerance)
    lines = budget_lines(table, tolerance)
    output.write_text(output.out / "pilot.csv", csv_text(table))
    output.write_text(output.out / "pilot.md", pilot_markdown(table, lines))
    report.tables += [output.out / "pilot.csv", output.out / "pilot.md"]
    report.lines += lines
    output.finish({"pilot": True, "tolerance": tolerance, "n_runs": len(data.runs), "split": "validation only"})
    report.lines.append(f"wrote {output.out}: {', '.join(p.name for p in output.files)}")
    return report


def _strata(report: Report, output: Output, data: Runs, design: Design) -> list[str]:
    """`strata.csv`: the primary comparisons within each setting that varies; the sentences on strata that
    disagree beyond noise."""
    table = stratum_rows(data.runs, data.curves, design.primary)
    if table.empty:
        return []
    output.write_text(output.out / "strata.csv", csv_text(table))
    report.tables.append(output.out / "strata.csv")
    return disagreements(table)


def _design_details(design: Design) -> dict[str, Any]:
    return {
        "variance_model": design.model,
        "variance_source": design.model_source,
        "comparisons": design.scope or "figure",
        "margin": design.margin,
        "margin_source": design.margin_source,
        "primary": design.primary or "test_top1",
        "primary_source": design.primary_source,
        "baseline": baseline_text(design.baseline),
        "baseline_source": design.baseline_source,
        "looks": list(design.looks) if design.looks else None,
        "looks_source": design.looks_source,
    }


def _publish(
    report: Report,
    output: Output,
    data: Runs,
    table: pd.DataFrame,
    details: Mapping[str, Any],
    *,
    mode: str,
    project: str | None,
    entity: str | None,
    group: str | None,
) -> list[str]:
    """Log the analysis to W&B (`project` and `entity` by default those of the runs, when they share one);
    the line that says where."""
    runs, out = data.runs, output.out
    studies = sorted(set(runs["study"].astype(str)))
    group = group or ",".join(studies)
    projects = sorted({str(p) for p in runs["project"] if isinstance(p, str) and p})
    entities = sorted({str(e) for e in runs["entity"] if isinstance(e, str) and e})
    project = project or (projects[0] if len(projects) == 1 else "xablate")
    entity = entity or (entities[0] if len(entities) == 1 else None)
    pngs = {name: paths[0] for name, paths in report.figures.items()}
    attachments = [p for paths in report.figures.values() for p in paths if p.suffix == ".pdf"] + report.tables
    report.published = published = publish(
        out,
        pngs,
        attachments,
        table,
        mode=mode,
        project=project,
        entity=entity,
        group=group,
        config={**details, "studies": studies},
        read_runs=sorted({str(i) for i in runs["wandb_id"] if isinstance(i, str) and i}),
    )
    if published.mode == "offline" and published.sync_command:
        return [f"W&B: analysis run saved offline; upload with `{published.sync_command}`"]
    if published.mode == "online":
        return [f"W&B: analysis run logged online to {project}, group {group}"]
    return []
