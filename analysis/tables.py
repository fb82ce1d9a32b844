"""The summary table: one row per cell, the numbers behind Figures 9-11 with their error bars. (Over 250
lines because it builds the table and writes it in three formats: CSV, Markdown and LaTeX.)

Per cell (every axis but the seed): the number of seeds; the mean and 95% t-interval across seeds of the final
and the best validation top-1; convergence speed, twice: the validation top-1 at the evaluation nearest half of
the run's steps ("halfway"), and the steps a run takes to first reach 95% of its own final validation top-1;
parameters, multiply-adds and measured training images/s; and the cell's difference from the paper's baseline
(segments=depthwise, activation=none, residual=true, the other axes equal) with Welch's 95% interval, for the
final, best and halfway top-1, so that a reading such as "ELU ends worse than no activation" (paper Fig. 10)
comes with an error bar. Interval columns are empty, never zero, when a side has a single seed.

Written as `summary.csv` (fractions, machine-readable), `summary.md` and `summary.tex` (percent, readable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .axes import AXES, BASELINE, REPLICATE, ordered, sort_key, text
from .plan import varying
from .stats import Interval, mean_interval, steps_to_fraction, welch_interval

FRACTION = 0.95
"""Convergence speed: steps until validation top-1 first reaches this fraction of the run's final value."""

MEASURES: dict[str, str] = {
    "final_top1": "val_top1",
    "best_top1": "best_val_top1",
    "halfway_top1": "halfway_top1",
    "steps_to_95": "steps_to_95",
    "img_per_s": "train_img_per_s",
}
"""Table measure -> runs column, each reported as a mean and a 95% half-width across seeds."""

DIFFS: dict[str, str] = {"final_top1": "val_top1", "best_top1": "best_val_top1", "halfway_top1": "halfway_top1"}
"""Measures also reported as a difference from the baseline cell."""


def _evaluations_by_run(curves: pd.DataFrame) -> dict[Any, pd.DataFrame]:
    """Each run's validation rows, in step order."""
    val = curves[curves["split"] == "val"].sort_values("step", kind="stable")
    return {run_id: group for run_id, group in val.groupby("run_id", sort=False)}


def convergence_steps(runs: pd.DataFrame, curves: pd.DataFrame, fraction: float = FRACTION) -> pd.Series:
    """Per run (aligned with `runs`), the first evaluation step reaching `fraction` of its final top-1."""
    by_run = _evaluations_by_run(curves)
    steps = []
    for run_id, final in zip(runs["run_id"], runs["val_top1"], strict=True):
        group = by_run.get(run_id)
        if group is None:
            steps.append(math.nan)
            continue
        steps.append(steps_to_fraction(group["step"].tolist(), group["top1"].tolist(), float(final), fraction))
    return pd.Series(steps, index=runs.index, dtype=float)


def halfway_top1(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    """Per run (aligned with `runs`), validation top-1 at the evaluation nearest half its total steps (the
    earlier one on a tie): how far a run has got halfway, the speed the paper's Fig. 9 and 10 show as curves."""
    by_run = _evaluations_by_run(curves)
    values = []
    for run_id, total in zip(runs["run_id"], runs["total_steps"], strict=True):
        group = by_run.get(run_id)
        if group is None:
            values.append(math.nan)
            continue
        half = (float(total) if pd.notna(total) else float(group["step"].max())) / 2
        distance = (group["step"] - half).abs()
        nearest = group.assign(distance=distance).sort_values(["distance", "step"], kind="stable").iloc[0]
        values.append(float(nearest["top1"]))
    return pd.Series(values, index=runs.index, dtype=float)


def cell_of(row: Any) -> tuple[Any, ...]:
    return tuple(row[axis] for axis in AXES)


def _cell_sort_key(cell: tuple[Any, ...]) -> tuple[Any, ...]:
    order = ("model", "data", "budget", "order", "mid_norm", "residual", "activation", "segments")
    values = dict(zip(AXES, cell, strict=True))
    return tuple(sort_key(axis, values[axis]) for axis in order)


def cell_table(runs: pd.DataFrame, curves: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per cell: axes, seeds, means and half-widths, costs and the difference from the baseline."""
    runs = runs.assign(steps_to_95=convergence_steps(runs, curves), halfway_top1=halfway_top1(runs, curves))
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for index, row in runs.iterrows():
        groups.setdefault(_hashable(cell_of(row)), []).append(index)
    frames = {cell: runs.loc[indices] for cell, indices in groups.items()}
    rows = []
    for cell in sorted(frames, key=lambda c: _cell_sort_key(_values(c))):
        group = frames[cell]
        values = dict(zip(AXES, _values(cell), strict=True))
        row: dict[str, Any] = {**values, "n_seeds": len(group)}
        row["seeds"] = ",".join(str(s) for s in sorted(group[REPLICATE].tolist()))
        for measure, column in MEASURES.items():
            interval = mean_interval(group[column].tolist(), level)
            row[measure], row[f"{measure}_ci95"] = interval.estimate, interval.half_width
        row["params"] = float(group["params"].median())  # equal across seeds
        row["macs"] = float(group["macs"].median())
        baseline_cell = _hashable(tuple({**values, **BASELINE}[axis] for axis in AXES))
        row["baseline"] = baseline_cell == cell
        base = frames.get(baseline_cell)
        for measure, column in DIFFS.items():
            diff = Interval(math.nan, math.nan, 0)
            if base is not None and not row["baseline"]:
                diff = welch_interval(group[column].tolist(), base[column].tolist(), level)
            row[f"diff_{measure}"], row[f"diff_{measure}_ci95"] = diff.estimate, diff.half_width
        rows.append(row)
    table = pd.DataFrame(rows, columns=table_columns())
    for column in ("params", "macs"):  # exact counts in the CSV, not 6 significant digits
        table[column] = table[column].round().astype("Int64")
    return table


def table_columns() -> list[str]:
    measures = [c for m in MEASURES for c in (m, f"{m}_ci95")]
    diffs = [c for m in DIFFS for c in (f"diff_{m}", f"diff_{m}_ci95")]
    return [*AXES, "n_seeds", "seeds", *measures, "params", "macs", "baseline", *diffs]


def _hashable(cell: tuple[Any, ...]) -> tuple[Any, ...]:
    # Tag each value with its type: True == 1 in Python, and residual=True must never meet segments=1.
    return tuple((type(v).__name__, v) for v in cell)


def _values(cell: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v for _, v in cell)


# Readable renderings ----------------------------------------------------------------------------------------------


def _pct(mean: float, half: float, signed: bool = False) -> str:
    if not math.isfinite(mean):
        return ""
    value = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    value = value.replace("-", "−")
    return f"{value} ± {100 * half:.2f}" if math.isfinite(half) else value


def _plain(mean: float, half: float, digits: int = 0) -> str:
    if not math.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


def _millions(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value) / 1e6:.3g}"


NUMERIC = 10
"""The right-aligned columns at the end of `readable`'s headers, from the seed count on."""


def readable(table: pd.DataFrame, runs: pd.DataFrame) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    """Headers, rows of text, and the axes held constant (left out of the columns)."""
    vary = list(varying(runs)) or ["segments", "activation", "residual"]
    constant = {axis: ordered(axis, runs[axis].tolist())[0] for axis in AXES if axis not in vary}
    headers = [
        *vary, "seeds", "final top-1 (%)", "best top-1 (%)", "halfway top-1 (%)", "steps to 95%",
        "params (M)", "MACs (M)", "train img/s", "Δ final vs baseline (pp)", "Δ halfway (pp)",
    ]  # fmt: skip
    rows = []
    for _, r in table.iterrows():
        diff = "baseline" if r["baseline"] else _pct(r["diff_final_top1"], r["diff_final_top1_ci95"], signed=True)
        diff_halfway = "" if r["baseline"] else _pct(r["diff_halfway_top1"], r["diff_halfway_top1_ci95"], signed=True)
        rows.append(
            [
                *(text(r[axis]) for axis in vary),
                str(r["n_seeds"]),
                _pct(r["final_top1"], r["final_top1_ci95"]),
                _pct(r["best_top1"], r["best_top1_ci95"]),
                _pct(r["halfway_top1"], r["halfway_top1_ci95"]),
                _plain(r["steps_to_95"], r["steps_to_95_ci95"]),
                _millions(r["params"]),
                _millions(r["macs"]),
                _plain(r["img_per_s"], r["img_per_s_ci95"]),
                diff or "no baseline run",
                diff_halfway,
            ]
        )
    return headers, rows, constant


NOTES = (
    "Validation top-1 in %: mean over seeds ± half-width of the 95% t-interval across seeds (none with one "
    "seed). Halfway: at the evaluation nearest half of the run's steps. Steps to 95%: gradient steps until a "
    "run's validation top-1 first reaches 95% of its final value, mean over seeds. MACs: multiply-adds per "
    "image. Train img/s: measured training throughput. Δ: difference of the final (and halfway) top-1 from "
    "the baseline cell (segments=depthwise, activation=none, residual=true, other axes equal), in percentage "
    "points, ± Welch's 95% interval (unpaired seeds)."
)


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame, title: str) -> str:
    headers, rows, constant = readable(table, runs)
    lines = [f"# {title}", ""]
    if constant:
        lines += ["All cells: " + ", ".join(f"{a}={text(v)}" for a, v in constant.items()) + ".", ""]
    right = [False] * (len(headers) - NUMERIC) + [True] * NUMERIC
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", NOTES, ""]
    return "\n".join(lines)


def _tex(value: str) -> str:
    out = value.replace("\\", r"\textbackslash{}")
    for char in "&%$#_{}":
        out = out.replace(char, "\\" + char)
    return out.replace("±", r"$\pm$").replace("−", "$-$").replace("Δ", r"$\Delta$")


def to_latex(table: pd.DataFrame, runs: pd.DataFrame, title: str) -> str:
    """A booktabs table (needs `\\usepackage{booktabs}`)."""
    headers, rows, constant = readable(table, runs)
    caption = title + ". " + NOTES
    if constant:
        caption += " All cells: " + ", ".join(f"{a}={text(v)}" for a, v in constant.items()) + "."
    spec = "l" * (len(headers) - NUMERIC) + "r" * NUMERIC
    lines = [
        r"\begin{table}[t]",
        r"\centering\small",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_tex(h) for h in headers) + r" \\",
        r"\midrule",
        *(" & ".join(_tex(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_tex(caption)}}}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def write_tables(
    table: pd.DataFrame, runs: pd.DataFrame, out: Path, title: str, write: Callable[[Path, str], None]
) -> list[Path]:
    """`summary.csv`, `summary.md` and `summary.tex` in `out`, each through `write(path, text)`."""
    csv_table = table.copy()
    for axis in AXES:
        csv_table[axis] = csv_table[axis].map(text)
    csv_table["baseline"] = csv_table["baseline"].map(text)
    paths = [out / "summary.csv", out / "summary.md", out / "summary.tex"]
    write(paths[0], csv_table.to_csv(index=False, na_rep="", float_format="%.6g"))
    write(paths[1], to_markdown(table, runs, title))
    write(paths[2], to_latex(table, runs, title))
    return paths
