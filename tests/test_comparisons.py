"""The comparisons table, the seed plan and the figures' new panels, on constructed runs with known answers
(no training: the frames are built in memory, or written as the published runs.csv and curves.csv)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from scipy import stats

import analysis.figures as figures_module
from analysis.__main__ import main
from analysis.compare import comparisons, mde
from analysis.design import study_design, study_margin, study_scope, study_variance
from analysis.figures import draw
from analysis.frames import METRIC_COLUMNS, Runs, build, clean_metrics, design_margin, design_values, run_row
from analysis.load import load_local
from analysis.panels import budget_line
from analysis.plan import plan_figures
from analysis.power import pair_plan_rows, plan_rows, upper_sd
from analysis.spectrum import spectrum_positions
from analysis.stats import holm
from analysis.verdicts import design_sentences
from xablate.design import parse_baseline
from xablate.errors import ConfigError

BASE = {"activation": "none", "residual": True, "order": "depthwise_first", "mid_norm": False}
STEPS = (50, 100, 150, 200)
SEEDS = 8
RNG = np.random.default_rng(0)
NOISE = {name: stats.zscore(RNG.standard_normal(SEEDS), ddof=1) for name in ("dw", 1, 2, 4, 8)}
"""Mean 0 and SD 1 exactly, so that each cell's mean and SD are the designed ones."""
# Final val top-1 in points per segments cell: baseline depthwise; 1 clearly better, 2 clearly worse,
# 4 within 0.5 points and tight, 8 a larger difference buried in noise.
DESIGN: dict[Any, tuple[float, float]] = {"depthwise": (90.0, 0.1), 1: (92.0, 0.1), 2: (88.0, 0.1), 4: (90.02, 0.1)}
DESIGN[8] = (90.8, 2.0)
EXPECTED = {1: "better", 2: "worse", 4: "equivalent", 8: "inconclusive"}
REPO = Path(__file__).resolve().parents[1]


def top1_points(segments: Any) -> np.ndarray:
    mean, sd = DESIGN[segments]
    return mean + sd * NOISE["dw" if segments == "depthwise" else segments]


def summary(segments: Any, seed: int, top1: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"seg{segments}-s{seed}", "run_key": f"k{segments}{seed}", "study": "constructed",
        "status": "completed", "segments": segments, **BASE, "budget": "none", "model": "xception_mini",
        "data": "fashion_mnist", "seed": seed, "val_top1": top1 / 100, "best_val_top1": top1 / 100,
        "val_loss": 0.3 - top1 / 1000, "params": 5.5e5, "macs": 1e7, "train_img_per_s": 400.0,
        "total_steps": STEPS[-1], "device": "cpu", "threads": 2, **extra,
    }  # fmt: skip


def metrics(final: float, evaluations: tuple[int, ...] = STEPS, ce: float | None = None) -> pd.DataFrame:
    rows = []
    for i, step in enumerate(evaluations):
        top1 = final * (0.9 + 0.1 * (i + 1) / len(evaluations))
        rows.append({"step": step, "split": "val", "top1": top1, "loss": 1 - top1, "top5": 1.0})
        rows.append({"step": step, "split": "train", "top1": top1, "loss": 1.2 - top1, "top5": 1.0, "ce": ce})
    frame = pd.DataFrame(rows).reindex(columns=list(METRIC_COLUMNS))
    frame["epoch"] = frame["step"] / 100
    return frame


def constructed(cells: dict[Any, np.ndarray] | None = None, **extra: Any) -> Runs:
    cells = cells or {s: top1_points(s) for s in DESIGN}
    records = []
    for segments, values in cells.items():
        for seed, value in enumerate(values):
            row = run_row(summary(segments, seed, float(value), **extra), source=f"mem/{segments}/{seed}")
            row["run_id"] = f"constructed/{segments}-{seed}"
            records.append((row, metrics(float(value) / 100)))
    return build(records, [])


def welch_reference(a: np.ndarray, b: np.ndarray, margin: float) -> dict[str, float]:
    """The expected row, straight from scipy.stats.ttest_ind (the table computes it another way)."""
    result = stats.ttest_ind(a, b, equal_var=False)
    ci, ci90 = result.confidence_interval(0.95), result.confidence_interval(0.90)
    above = stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    below = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    return {"p": result.pvalue, "low": ci.low, "high": ci.high, "low90": ci90.low, "high90": ci90.high,
            "p_tost": max(above, below)}  # fmt: skip


def primary(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["metric"] == "final val top-1"].set_index("cell")


# The table against scipy ------------------------------------------------------------------------------------------


def test_the_four_verdicts_match_scipy_on_constructed_data() -> None:
    data = constructed()
    table = primary(comparisons(data.runs, data.curves, "welch", 0.5))
    base = top1_points("depthwise")
    raw = {s: welch_reference(top1_points(s), base, 0.5) for s in EXPECTED}
    adjusted = dict(zip(EXPECTED, holm([raw[s]["p"] for s in EXPECTED]), strict=True))
    for segments, verdict in EXPECTED.items():
        row, want = table.loc[segments], raw[segments]
        assert row["verdict"] == verdict, (segments, row.to_dict())
        assert row["diff"] == pytest.approx(top1_points(segments).mean() - base.mean())
        for key in ("p", "low", "high", "low90", "high90", "p_tost"):
            assert row[key] == pytest.approx(want[key], rel=1e-6), key
        assert row["p_holm"] == pytest.approx(adjusted[segments], rel=1e-9)
        assert (row["model"], row["n"], row["n_baseline"], row["baseline"]) == ("welch", SEEDS, SEEDS, "depthwise")


def test_holm_against_a_hand_worked_example() -> None:
    # sorted 0.01, 0.011, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.011), max(0.03, 0.04); NaN does not count
    assert holm([0.04, 0.01, math.nan, 0.011]) == pytest.approx([0.04, 0.03, math.nan, 0.03], nan_ok=True)
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_mde_and_the_plan_from_the_pooled_sd() -> None:
    data = constructed()
    table = primary(comparisons(data.runs, data.curves))
    variances = [np.var(top1_points(s), ddof=1) for s in DESIGN]
    sd = math.sqrt(np.mean(variances))  # equal seeds per cell: the pooled variance is their mean
    factor = stats.t.ppf(1 - 0.05 / 4 / 2, 2 * SEEDS - 2) + stats.t.ppf(0.8, 2 * SEEDS - 2)
    assert table.loc[1, "sd_pooled"] == pytest.approx(sd)
    assert table.loc[1, "mde"] == pytest.approx(factor * sd * math.sqrt(2 / SEEDS))
    (plan,) = plan_rows(data.runs, data.curves, 0.5).to_dict("records")
    n = int(plan["seeds_per_cell"])
    assert mde(sd, n, n, 4) <= 0.5 < mde(sd, n - 1, n - 1, 4)
    df = len(DESIGN) * (SEEDS - 1)
    assert plan["sd_upper80"] == pytest.approx(sd * math.sqrt(df / stats.chi2.ppf(0.2, df)))
    assert plan["seeds_per_cell_upper80"] > plan["seeds_per_cell"]
    assert upper_sd(sd, df) > sd


def test_the_pair_plan_keeps_each_cells_sd_and_its_seeds_give_the_power_it_promises() -> None:
    """Per comparison, on validation top-1, with each cell's own SD: the seeds it plans, drawn at the planned
    SDs with no true difference, reach an equivalence verdict (scipy's TOST at Holm's first level) 80% of
    the time."""
    data = constructed()
    plan = pair_plan_rows(data.runs, data.curves, 0.5).set_index("cell")
    noisy, tight = plan.loc["8"], plan.loc["4"]
    assert (noisy["sd_cell"], noisy["sd_reference"]) == pytest.approx((2.0, 0.1))
    assert noisy["split"] == "validation (split not recorded)"  # these runs recorded no data.holdout
    held_out = constructed(holdout=5000)
    assert set(pair_plan_rows(held_out.runs, held_out.curves, 0.5)["split"]) == {"held-out validation"}
    assert noisy["seeds_equal"] > 10 * tight["seeds_equal"] and noisy["seeds_cell"] > noisy["seeds_reference"]
    assert noisy["seeds_cell"] + noisy["seeds_reference"] < 2 * noisy["seeds_equal"]
    assert noisy["seeds_equal_upper80"] > noisy["seeds_equal"]
    rng, level = np.random.default_rng(1), 0.05 / 4
    for row in (noisy, tight):
        a = rng.normal(0, row["sd_cell"], (4000, int(row["seeds_cell"])))
        b = rng.normal(0, row["sd_reference"], (4000, int(row["seeds_reference"])))
        above = stats.ttest_ind(a + 0.5, b, equal_var=False, alternative="greater", axis=1).pvalue
        below = stats.ttest_ind(a - 0.5, b, equal_var=False, alternative="less", axis=1).pvalue
        assert (np.maximum(above, below) < level).mean() >= 0.78, row.name


def test_paired_and_pooled_models_are_declared_and_match_scipy() -> None:
    data = constructed()
    base = top1_points("depthwise")
    paired = primary(comparisons(data.runs, data.curves, "paired"))
    want = stats.ttest_rel(top1_points(8), base)
    assert paired.loc[8, "model"] == "paired"
    assert paired.loc[8, "p"] == pytest.approx(want.pvalue, rel=1e-6)
    assert paired.loc[8, "low"] == pytest.approx(want.confidence_interval().low, rel=1e-6)
    pooled = primary(comparisons(data.runs, data.curves, "pooled"))
    sd, df = pooled.loc[8, "sd_pooled"], len(DESIGN) * (SEEDS - 1)
    t = (top1_points(8).mean() - base.mean()) / (sd * math.sqrt(2 / SEEDS))
    assert pooled.loc[8, "model"] == "pooled"
    assert pooled.loc[8, "p"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-6)


def test_paired_falls_back_to_welch_when_seeds_differ_and_says_so() -> None:
    cells = {"depthwise": top1_points("depthwise"), 1: top1_points(1)[:5]}
    data = constructed(cells)
    data = data.where({})
    keep = ~((data.runs["segments"] == "depthwise") & (data.runs["seed"] == 0))
    runs = data.runs[keep]
    table = primary(comparisons(runs, data.curves, "paired"))
    assert table.loc[1, "model"].startswith("welch (seeds differ")


def test_the_margin_declared_by_the_study_wins_over_the_flag() -> None:
    data = constructed()
    assert study_margin(data.runs, 0.25) == (0.25, "--margin")
    assert study_margin(data.runs, None)[0] == 0.5
    declared = data.runs.assign(design_margin=1.0)
    assert study_margin(declared, 0.25)[0] == 1.0


def test_test_top1_is_the_primary_endpoint_when_every_run_has_it() -> None:
    cells = {s: top1_points(s) for s in ("depthwise", 1)}
    data = constructed(cells)
    table = comparisons(data.runs.assign(test_top1=data.runs["val_top1"] - 0.01), data.curves)
    assert table["metric"].iloc[0] == "final test top-1"
    assert set(table["metric"]) >= {"final test top-1", "final val loss", "val top-1 AUC"}


# Figures ----------------------------------------------------------------------------------------------------------


def crop_not_blank(png: Path, fig: matplotlib.figure.Figure, label: str) -> None:
    """The region of the panel called `label` in the saved PNG holds a drawing, not a blank rectangle."""
    (ax,) = [a for a in fig.axes if a.get_label() == label]
    image = matplotlib.image.imread(png)[..., :3]
    height, width = image.shape[:2]
    box = ax.get_position()
    region = image[int((1 - box.y1) * height) : int((1 - box.y0) * height), int(box.x0 * width) : int(box.x1 * width)]
    assert region.size and region.std() > 0.05, f"{label} panel of {png} is blank"
    assert (region < 0.9).any(axis=-1).mean() > 0.01


def lines_drawn(pdf: Path) -> int:
    return pdf.read_bytes().count(b" l\n")


def test_forest_panels_exist_in_png_and_pdf_and_are_not_blank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(matplotlib.rcParams, "pdf.compression", 0)
    data = constructed()
    published = tmp_path / "published"
    published.mkdir()
    for name, frame in (("runs.csv", data.runs), ("curves.csv", data.curves)):
        frame.to_csv(published / name, index=False)
    assert main([str(published), "--out", str(tmp_path / "out"), "--wandb-mode", "disabled"]) == 0
    out = tmp_path / "out"
    (plan,) = plan_figures(data.runs)
    diffs = primary(comparisons(data.runs, data.curves)).reset_index()
    fig = draw(plan, data.runs, data.curves, diffs)
    fig.savefig(tmp_path / "again.png", dpi=150)
    crop_not_blank(tmp_path / "again.png", fig, "forest")
    image = matplotlib.image.imread(out / "fig11_segments.png")
    assert image.shape[:2] == matplotlib.image.imread(tmp_path / "again.png").shape[:2]
    crop_not_blank(out / "fig11_segments.png", fig, "forest")
    draw(plan, data.runs, data.curves).savefig(tmp_path / "without.pdf")
    pdf = out / "fig11_segments.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and lines_drawn(pdf) > lines_drawn(tmp_path / "without.pdf") + 10
    verdicts = (out / "verdicts.md").read_text()
    assert "1 segment vs depthwise, final val top-1: +2.0" in verdicts and ", better (Holm p " in verdicts
    for name in ("comparisons.csv", "comparisons.md", "comparisons.tex"):
        assert (out / name).stat().st_size > 200
    written = pd.read_csv(out / "comparisons.csv")
    assert set(written["verdict"]) == set(EXPECTED.values()) and set(written["model"]) == {"welch"}


def test_profile_figure_has_a_forest_panel_with_margin_band_and_verdict_labels() -> None:
    cells = {"depthwise": top1_points("depthwise"), 1: top1_points(1)}
    data = constructed(cells)
    runs = data.runs.assign(activation=["relu" if s == 1 else "none" for s in data.runs["segments"]])
    runs["segments"] = "depthwise"
    curves = data.curves.assign(activation=["relu" if s == 1 else "none" for s in data.curves["segments"]])
    curves["segments"] = "depthwise"
    (plan,) = plan_figures(runs)
    diffs = primary(comparisons(runs, curves)).reset_index()
    fig = draw(plan, runs, curves, diffs)
    (forest,) = [a for a in fig.axes if a.get_label() == "forest"]
    assert [t.get_text() for t in forest.get_yticklabels()] == ["ReLU vs none"]
    assert any(t.get_text().startswith("better (Holm p") for t in forest.texts)
    assert forest.patches, "the ±margin band is missing"


def test_sparse_curves_are_points_with_error_bars_and_ce_is_the_training_loss() -> None:
    records = []
    for segments in ("depthwise", 1):
        for seed in range(3):
            row = run_row(summary(segments, seed, 90.0 + seed), source=f"m/{segments}/{seed}")
            row["run_id"] = f"c/{segments}-{seed}"
            records.append((row, metrics(0.9, evaluations=(100, 200), ce=0.4 + seed / 10)))
    data = build(records, [])
    (plan,) = plan_figures(data.runs)
    fig = draw(plan, data.runs, data.curves)
    val = next(a for a in fig.axes if a.get_label() == "val_top1")
    bands = [c for c in val.collections if isinstance(c, PolyCollection)]
    assert val.containers and not bands, "fewer than 4 evaluations: error bars, no bands"
    train = next(a for a in fig.axes if a.get_label() == "train_ce")
    assert "cross-entropy" in train.get_ylabel()
    assert train.get_lines()[0].get_ydata()[0] == pytest.approx(0.5)


def test_depthwise_stands_apart_and_throughput_is_split_by_setting() -> None:
    positions = spectrum_positions([1, 2, 4, "depthwise"])
    assert math.log2(positions["'depthwise'"]) - math.log2(4) == pytest.approx(1.5)
    data = constructed()
    runs = data.runs.assign(threads=[1 + i % 2 for i in range(len(data.runs))])
    (plan,) = plan_figures(runs)
    labels = [a.get_label() for a in draw(plan, runs, data.curves).axes]
    assert [x for x in labels if x.startswith("ips:")] == ["ips:cpu:1", "ips:cpu:2"]
    assert "params_relative" in labels and "macs_relative" in labels  # equal costs: relative to the mean


def test_fig11_versions_share_their_accuracy_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_local([REPO / "experiments" / "fig11" / v for v in ("results", "results_iso")])  # budget none, params
    figures: dict[str, matplotlib.figure.Figure] = {}
    monkeypatch.setattr(figures_module, "save", lambda fig, out, name: figures.setdefault(name, fig) and [])
    table = comparisons(data.runs, data.curves)
    figures_module.draw_all(plan_figures(data.runs), data.runs, data.curves, table, tmp_path)
    assert set(figures) == {"fig11_segments_budget-none", "fig11_segments_budget-params"}
    for label in ("val_top1", "train_loss", "final", "forest"):
        a, b = (next(ax for ax in f.axes if ax.get_label() == label) for f in figures.values())
        assert (a.get_xlim() if label == "forest" else a.get_ylim()) == (
            b.get_xlim() if label == "forest" else b.get_ylim()
        ), label


# The published v1 results -----------------------------------------------------------------------------------------


def test_published_fig10_reproduces_the_reviewers_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(REPO / "experiments" / "fig10" / "results"), "--margin", "0.5", "--plan", "0.5"]
    assert main([*args, "--out", str(tmp_path), "--wandb-mode", "disabled"]) == 0
    table = pd.read_csv(tmp_path / "comparisons.csv")
    relu = table[(table["cell"] == "relu") & (table["baseline"] == "none") & (table["metric"] == "final val top-1")]
    (row,) = relu.to_dict("records")
    assert row["p"] == pytest.approx(0.031, abs=5e-4) and row["p_holm"] == pytest.approx(0.092, abs=5e-4)
    assert round(row["mde"], 1) == 1.2 and row["verdict"] == "inconclusive"
    assert (
        "ReLU vs none, final val top-1: -1.03 points [-1.87, -0.19], inconclusive (Holm p = 0.09); detectable: 1.2"
        in (tmp_path / "verdicts.md").read_text()
    )
    plan = pd.read_csv(tmp_path / "plan.csv")
    assert list(plan["family"]) == ["fig10_activation"] and plan["seeds_per_cell"].iloc[0] > 3
    assert "plan fig10_activation" in capsys.readouterr().out


# Flags and forward-compatible inputs ------------------------------------------------------------------------------


def publish_constructed(folder: Path) -> Path:
    data = constructed()
    folder.mkdir()
    for name, frame in (("runs.csv", data.runs), ("curves.csv", data.curves)):
        frame.to_csv(folder / name, index=False)
    return folder


def test_variance_model_flags_reach_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    published = publish_constructed(tmp_path / "published")
    assert main([str(published), "--pooled", "--out", str(tmp_path / "pooled"), "--wandb-mode", "disabled"]) == 0
    assert set(pd.read_csv(tmp_path / "pooled" / "comparisons.csv")["model"]) == {"pooled"}
    assert "Variance model: pooled" in (tmp_path / "pooled" / "verdicts.md").read_text()
    with pytest.raises(SystemExit) as exit_:
        main([str(published), "--paired", "--pooled"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_the_design_margin_is_read_from_the_config_and_optional() -> None:
    assert design_margin({"design": {"margin": 1.0, "primary": "test_top1"}}) == 1.0
    assert math.isnan(design_margin({"design": {"primary": "test_top1"}}))
    assert math.isnan(design_margin({}))
    declared = design_values({"design": {"variance": "paired", "comparisons": "baseline"}})
    assert declared["design_variance"] == "paired" and declared["design_comparisons"] == "baseline"
    assert design_values({})["design_variance"] is None
    declared = design_values({"design": {"primary": "val_top1", "baseline": "activation=relu"}})
    assert (declared["design_primary"], declared["design_baseline"]) == ("val_top1", "activation=relu")
    assert design_values({})["design_primary"] is None and design_values({})["design_baseline"] is None


def test_the_variance_model_declared_by_the_study_wins_over_the_flag() -> None:
    data = constructed()
    assert study_variance(data.runs, None) == ("welch", "default")
    assert study_variance(data.runs, "pooled") == ("pooled", "--pooled")
    declared = data.runs.assign(design_variance="paired")
    assert study_variance(declared, "pooled")[0] == "paired"
    assert set(comparisons(declared, data.curves, study_variance(declared, None)[0])["model"]) == {"paired"}


def test_the_declared_comparisons_decide_the_family_and_its_holm_adjustment() -> None:
    data = constructed()
    figure = primary(comparisons(data.runs, data.curves))
    assert len(figure) == len(DESIGN) - 1 and set(figure["baseline"]) == {"depthwise"}
    declared = data.runs.assign(design_comparisons="pairwise")
    scope = study_scope(declared)
    everything = primary(comparisons(declared, data.curves, scope=scope))
    assert scope == "pairwise" and len(everything) == math.comb(len(DESIGN), 2)
    vs_baseline = everything[everything["baseline"] == "depthwise"]
    # More comparisons, larger Holm adjustment and detectable difference for the same cells.
    assert (vs_baseline["p_holm"] >= figure.loc[vs_baseline.index, "p_holm"]).all()
    assert (vs_baseline["mde"] > figure.loc[vs_baseline.index, "mde"]).all()
    assert len(plan_rows(declared, data.curves, 0.5, scope)) == 1
    assert plan_rows(declared, data.curves, 0.5, scope)["comparisons"].iloc[0] == len(everything)


def test_the_declared_design_reaches_the_published_notes(tmp_path: Path) -> None:
    data = constructed()
    folder = tmp_path / "published"
    folder.mkdir()
    runs = data.runs.assign(design_variance="pooled", design_comparisons="pairwise")
    runs.to_csv(folder / "runs.csv", index=False)
    data.curves.to_csv(folder / "curves.csv", index=False)
    out = tmp_path / "out"
    assert main([str(folder), "--paired", "--out", str(out), "--wandb-mode", "disabled"]) == 0
    assert set(pd.read_csv(out / "comparisons.csv")["model"]) == {"pooled"}
    notes = (out / "verdicts.md").read_text()
    assert "Variance model: pooled (study config (design.variance))" in notes
    assert "every pair (design.comparisons)" in notes


# The declared primary endpoint and baseline -----------------------------------------------------------------------


def activation_study(**design: str | None) -> Runs:
    """A Fig. 10 family: four seeds each of none, ReLU (a point lower) and ELU (two lower), the test top-1 a point
    below the val top-1; `design` holds the runs' `design_*` columns."""
    records = []
    for offset, activation in enumerate(("none", "relu", "elu")):
        for seed, value in enumerate(top1_points("depthwise")[:4] - offset):
            test = (float(value) - 1) / 100
            row = run_row(
                summary("depthwise", seed, float(value), activation=activation, test_top1=test), source=f"mem/{seed}"
            )
            row.update(design)
            row["run_id"] = f"constructed/{activation}-{seed}"
            records.append((row, metrics(float(value) / 100)))
    return build(records, [])


def analysed(runs: pd.DataFrame, curves: pd.DataFrame, folder: Path, *flags: str) -> Path:
    """`python -m analysis` of `runs` and `curves` published in `folder`: its output folder."""
    folder.mkdir()
    runs.to_csv(folder / "runs.csv", index=False)
    curves.to_csv(folder / "curves.csv", index=False)
    assert main([str(folder), "--out", str(folder / "out"), "--wandb-mode", "disabled", *flags]) == 0
    return folder / "out"


def test_a_declared_val_top1_leads_each_family_and_test_top1_follows(tmp_path: Path) -> None:
    data = activation_study(design_primary="val_top1", design_comparisons="baseline")
    out = analysed(data.runs, data.curves, tmp_path / "declared", "--plan", "0.5")
    metrics_listed = list(dict.fromkeys(pd.read_csv(out / "comparisons.csv")["metric"]))
    assert metrics_listed[:2] == ["final val top-1", "final test top-1"]
    assert pd.read_csv(out / "plan.csv")["metric"].tolist() == ["final val top-1"]
    verdicts = (out / "verdicts.md").read_text()
    assert "- ReLU vs none, final val top-1: -1.00 points" in verdicts.splitlines()[4]
    # An older runs.csv without the column: the default, test top-1 first when every run has one.
    older = data.runs.drop(columns=["design_primary", "design_baseline"])
    out = analysed(older, data.curves, tmp_path / "older")
    assert pd.read_csv(out / "comparisons.csv")["metric"].iloc[0] == "final test top-1"
    assert "Primary endpoint" not in (out / "verdicts.md").read_text()


def test_a_declared_test_top1_falls_back_to_val_top1_and_the_notes_say_so(tmp_path: Path) -> None:
    data = activation_study(design_primary="test_top1", design_comparisons="baseline")
    runs = data.runs.assign(test_top1=data.runs["test_top1"].where(data.runs["seed"] != 3))
    out = analysed(runs, data.curves, tmp_path / "declared")
    assert pd.read_csv(out / "comparisons.csv")["metric"].iloc[0] == "final val top-1"
    assert (
        "Primary endpoint: test_top1 (study config (design.primary)); the final val top-1 in fig10_activation, "
        "where a run has no test top-1." in (out / "verdicts.md").read_text()
    )
    undeclared = analysed(runs.assign(design_primary=None), data.curves, tmp_path / "undeclared")
    assert "Primary endpoint" not in (undeclared / "verdicts.md").read_text()


def test_a_declared_baseline_is_the_reference_of_its_family(tmp_path: Path) -> None:
    data = activation_study(design_baseline="activation=relu", design_comparisons="baseline")
    out = analysed(data.runs, data.curves, tmp_path / "declared")
    table = pd.read_csv(out / "comparisons.csv", dtype=str)
    assert set(table["baseline"]) == {"relu"} and list(dict.fromkeys(table["cell"])) == ["none", "elu"]
    verdicts = (out / "verdicts.md").read_text()
    assert "- none vs ReLU, final test top-1: +1.00 points" in verdicts
    assert "Baseline: segments=depthwise activation=relu residual=true (study config (design.baseline))." in verdicts
    default = comparisons(data.runs.assign(design_baseline=None), data.curves, scope="baseline")
    assert set(default["baseline"]) == {"none"}
    spelt = data.runs.assign(design_baseline="segments=dw activation=none residual=true")
    assert study_design(spelt).baseline_source == "study config (design.baseline)"
    assert design_sentences(study_design(spelt), default) == []


def test_a_study_whose_runs_declare_different_designs_says_so() -> None:
    data = activation_study()
    runs = data.runs.assign(
        design_baseline=["activation=elu", "segments=depthwise activation=relu"] * (len(data.runs) // 2),
        design_primary=["val_top1", "test_top1"] * (len(data.runs) // 2),
    )
    design = study_design(runs)
    assert (design.primary, design.baseline["activation"]) == ("test_top1", "elu")
    table = comparisons(runs, data.curves, primary=design.primary, baseline=design.baseline)
    assert table["metric"].iloc[0] == "final test top-1" and set(table["baseline"]) >= {"elu"}
    assert design_sentences(design, table) == [
        "Primary endpoint: test_top1 (study config (design.primary); also ['val_top1']).",
        "Baseline: segments=depthwise activation=elu residual=true (study config (design.baseline); "
        "also ['segments=depthwise activation=relu residual=true']).",
    ]


@pytest.mark.parametrize(
    ("declared", "says"),
    [
        ("activation=tanh", "activation=tanh is not valid; allowed: none, relu, elu, gelu, silu"),
        ("segments=0 residual=true", "segments=0 is not valid; allowed: a positive integer or depthwise"),
        ("activation:relu", "cannot use 'activation:relu'; allowed: space-separated AXIS=VALUE pairs"),
        ("budget=params", "cannot use 'budget=params'; allowed: "),
        ("activation=relu activation=elu", "cannot use 'activation=elu'; allowed: "),
        ("  ", "names no cell; allowed: space-separated AXIS=VALUE pairs"),
    ],
)
def test_a_malformed_baseline_is_one_line_naming_it_and_what_is_allowed(declared: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_baseline(declared)
    assert str(error.value).startswith(f"design.baseline={declared!r}") and says in str(error.value)
    assert "\n" not in str(error.value)


def test_a_malformed_design_stops_the_cli_with_one_line_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = activation_study(design_baseline="segments=depthwise activation=tanh")
    folder = tmp_path / "published"
    folder.mkdir()
    data.runs.to_csv(folder / "runs.csv", index=False)
    data.curves.to_csv(folder / "curves.csv", index=False)
    for column, value, says in (
        ("design_baseline", "segments=depthwise activation=tanh", "activation=tanh is not valid; allowed: none"),
        ("design_primary", "val_top5", "design.primary='val_top5' is not known; allowed: test_top1, val_top1"),
    ):
        data.runs.assign(**{column: value}).to_csv(folder / "runs.csv", index=False)
        with pytest.raises(SystemExit) as exit_:
            main([str(folder), "--out", str(tmp_path / "out"), "--wandb-mode", "disabled"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("analysis: error: design.")
        assert says in err[0] and not (tmp_path / "out").exists()


def test_test_rows_and_the_ce_column_are_kept_when_present_and_optional() -> None:
    table = metrics(0.9).drop(columns=["ce"])
    table = pd.concat([table, pd.DataFrame([{"step": 200, "split": "test", "top1": 0.89, "loss": 0.3}])])
    clean = clean_metrics(table, "metrics.csv")
    assert "ce" in clean and clean["ce"].isna().all()
    assert list(clean.loc[clean["split"] == "test", "top1"]) == [0.89]


def test_figure_subtitle_gives_the_budget_and_says_when_runs_had_not_converged() -> None:
    runs = pd.DataFrame({"run_id": ["a", "b"], "steps": [40, 40]})

    def curves(gain: float) -> pd.DataFrame:
        rows = [(run, step, step / 20, "val", 0.6 + gain * step / 40) for run in "ab" for step in (10, 20, 30, 40)]
        return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "split", "top1"])

    assert budget_line(runs, curves(0.2)) == (
        "budget: 40 steps (2 epochs) per run; validation top-1 still rising at the end in 2 of 2 runs: "
        "not converged, so differences reflect the speed of learning at this budget"
    )
    assert budget_line(runs, curves(0.0)) == "budget: 40 steps (2 epochs) per run"
