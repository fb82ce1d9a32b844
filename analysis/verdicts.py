"""The comparisons as files: `comparisons.csv` (every column, machine-readable), `comparisons.md` and
`comparisons.tex` (readable, one table per family), `verdicts.md` (one generated sentence per comparison, for
READMEs to quote rather than paraphrase) and, with `--plan`, `plan.csv`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .axes import BASELINE, short_label, text
from .compare import TEST_TOP1
from .design import Design, baseline_text
from .looks import ALPHA
from .tables import _tex

Write = Callable[[Path, str], None]
HEADERS: tuple[str, ...] = (
    "cell", "vs", "metric", "n", "Δ", "95% CI", "p", "Holm p", "TOST Holm p", "detectable", "look", "verdict",
)  # fmt: skip


def p_text(p: float) -> str:
    """Two decimals; three below 0.01 and near 0.05, where two would read as the threshold itself."""
    if not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.01 or 0.045 <= p < 0.055 else f"{p:.2f}"


def number(value: float, points: bool, signed: bool = False) -> str:
    """Points with two decimals, losses with four."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:{'+' if signed else ''}.{2 if points else 4}f}"


def _p_is(p: float) -> str:
    """`p = 0.03`, or `p < 0.001`."""
    shown = p_text(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def look_label(row: pd.Series) -> str:
    """`final (19 of 19 seeds)`, `interim (8 of 32 seeds)`, `unplanned (5 of 32 seeds)`, `unregistered (3 seeds)`."""
    return f"{row['stage']} ({row['look']} seeds)"


def sentence(row: pd.Series) -> str:
    """One comparison in words, e.g. `ReLU vs none, final val top-1: -1.03 points [-1.87, -0.19],
    inconclusive (Holm p = 0.09); detectable: 1.2; interim (8 of 19 seeds)`."""
    points = math.isfinite(row["margin"]) or "top-1" in str(row["metric"])
    unit = " points" if points else ""
    head = f"{short_label(row['axis'], row['cell'])} vs {short_label(row['axis'], row['baseline'])}, {row['metric']}"
    estimate = (
        f"{number(row['diff'], points, signed=True)}{unit} "
        f"[{number(row['low'], points, signed=True)}, {number(row['high'], points, signed=True)}]"
    )
    level = "" if math.isclose(row["level"], ALPHA) else f", level {row['level']:.2g}"
    if row["verdict"] == "equivalent":
        why = f"equivalent within ±{row['margin']:g} (TOST Holm {_p_is(row['p_tost_holm'])}{level})"
    else:
        why = f"{row['verdict']} (Holm {_p_is(row['p_holm'])}{level})"
    detectable = f"{row['mde']:.1f}" if points and math.isfinite(row["mde"]) else number(row["mde"], points)
    return f"{head}: {estimate}, {why}; detectable: {detectable}; {look_label(row)}"


def _points(row: pd.Series) -> bool:
    return "top-1" in str(row["metric"])


def readable_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in table.iterrows():
        pts = _points(r)
        rows.append(
            [
                short_label(r["axis"], r["cell"]),
                short_label(r["axis"], r["baseline"]),
                str(r["metric"]),
                f"{r['n']}/{r['n_baseline']}",
                number(r["diff"], pts, signed=True),
                f"[{number(r['low'], pts, signed=True)}, {number(r['high'], pts, signed=True)}]",
                p_text(r["p"]),
                p_text(r["p_holm"]),
                p_text(r["p_tost_holm"]) if math.isfinite(r["margin"]) else "",
                number(r["mde"], pts),
                look_label(r),
                str(r["verdict"]),
            ]
        )
    return rows


SCOPES = {
    None: "each cell against the baseline (Fig. 10: every pair too)",
    "baseline": "each cell against the baseline (design.comparisons)",
    "pairwise": "each cell against the baseline and every pair (design.comparisons)",
}


def notes(design: Design, table: pd.DataFrame) -> str:
    """What every table of the comparisons assumes, in words: the variance model, the family, the margin, the
    looks and the verdict rule."""
    looks = (
        f"registered looks {', '.join(map(str, design.looks))} seeds ({design.looks_source}); each read tests at "
        "the level its look spends (O'Brien-Fleming-type alpha spending over the looks), and only the final "
        "look gives findings"
        if design.looks
        else "none registered: every read tests at 0.05 and none is a finding"
    )
    return (
        f"Variance model: {design.model} ({design.model_source}). Comparisons: {SCOPES[design.scope]}. Δ: cell "
        "minus the reference, accuracies in percentage points, losses as logged; 95% CI under that model. Holm p: "
        f"adjusted over the family's comparisons of the same metric. TOST p: two one-sided tests against "
        f"±{design.margin:g} points ({design.margin_source}; accuracies only), Holm-adjusted over the family "
        f"likewise. Looks: {looks}. Detectable: the difference these seeds detect with 80% power at the 5% "
        "family-wise level, from the family's pooled seed SD. Verdict: better/worse if Holm p < level, else "
        "equivalent if the TOST Holm p < level, else inconclusive."
    )


def design_sentences(design: Design, table: pd.DataFrame) -> list[str]:
    """What the notes add about the primary endpoint and the baseline: only where the study declared more
    than one, a declared test top-1 fell back to val top-1, or the baseline is not the paper's Xception."""
    out = []
    fallback = [
        str(family)
        for family, rows in table.groupby("family", sort=False)
        if design.primary == "test_top1" and rows["metric"].iloc[0] != TEST_TOP1.name
    ]
    if fallback or "; also " in design.primary_source:
        said = f"Primary endpoint: {design.primary} ({design.primary_source})"
        if fallback:
            said += f"; the final val top-1 in {', '.join(fallback)}, where a run has no test top-1"
        out.append(said + ".")
    if design.baseline != BASELINE or "; also " in design.baseline_source:
        out.append(f"Baseline: {baseline_text(design.baseline)} ({design.baseline_source}).")
    return out


def to_markdown(table: pd.DataFrame, note: str) -> str:
    lines = ["# Comparisons", ""]
    for family, rows in table.groupby("family", sort=False):
        lines += [f"## {family}", "", "| " + " | ".join(HEADERS) + " |"]
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(HEADERS) - 5) + ["---", "---"]) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in readable_rows(rows)]
        lines.append("")
    return "\n".join([*lines, note, ""])


def to_latex(table: pd.DataFrame, note: str) -> str:
    """One booktabs table per family (needs `\\usepackage{booktabs}`)."""
    lines: list[str] = []
    for family, rows in table.groupby("family", sort=False):
        lines += [
            r"\begin{table}[t]",
            r"\centering\small",
            r"\begin{tabular}{lll" + "r" * (len(HEADERS) - 5) + "ll}",
            r"\toprule",
            " & ".join(_tex(h) for h in HEADERS) + r" \\",
            r"\midrule",
            *(" & ".join(_tex(c) for c in row) + r" \\" for row in readable_rows(rows)),
            r"\bottomrule",
            r"\end{tabular}",
            rf"\caption{{{_tex(str(family))}. {_tex(note)}}}",
            r"\end{table}",
            "",
        ]
    return "\n".join(lines)


def to_verdicts(table: pd.DataFrame, note: str) -> str:
    """One section per family, headed by its look; a family read before its final look says that it gives no
    finding, and every sentence carries the look too, so that a quoted line keeps its label."""
    lines = ["# Verdicts", ""]
    for family, rows in table.groupby("family", sort=False):
        label = look_label(rows.iloc[0])
        finding = "findings" if rows.iloc[0]["stage"] == "final" else "not a finding"
        lines += [f"## {family}: {label}, {finding}", ""]
        lines += [f"- {sentence(r)}" for _, r in rows.iterrows()]
        lines.append("")
    return "\n".join([*lines, note, ""])


def csv_text(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for column in ("cell", "baseline"):
        if column in out:
            out[column] = out[column].map(text)
    return out.to_csv(index=False, na_rep="", float_format="%.6g")


def write_comparisons(table: pd.DataFrame, out: Path, note: str, write: Write) -> list[Path]:
    paths = [out / name for name in ("comparisons.csv", "comparisons.md", "comparisons.tex", "verdicts.md")]
    for path, content in zip(
        paths,
        (csv_text(table), to_markdown(table, note), to_latex(table, note), to_verdicts(table, note)),
        strict=True,
    ):
        write(path, content)
    return paths
