"""The analysis package (Figures 9-11, the summary table) on run folders made by a real, short sweep.

One session-scoped fixture runs `python -m xablate -m` over segments=1,depthwise x residual=true,false x seed=0,1
on synthetic data (8 tiny cells, ~15 s); the tests read its folders, or copies of them that they damage.
W&B is pointed at a closed local port with throw-away config folders and no API key: nothing here can reach
the network; the analysis' own W&B run is written offline inside its output folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.image
import pandas as pd
import pytest
import wandb
import yaml

from analysis import wandb_source
from analysis.__main__ import main
from analysis.figures import draw
from analysis.frames import Runs
from analysis.load import load_local
from analysis.panels import CE_LABEL
from analysis.plan import plan_figures
from analysis.stats import mean_interval, steps_to_fraction, t_quantile, welch_interval
from analysis.tables import cell_table
from analysis.wandb_source import load_wandb
from xablate.__main__ import MALLOC_ENV

from .wandb_log import read_run as read_wandb_run

CLOSED_PORT_URL = "http://127.0.0.1:9"
SWEEP = [
    "-m", "segments=1,depthwise", "residual=true,false", "seed=0,1",
    "data=synthetic", "data.train_subset=128", "data.val_subset=64", "data.batch_size=32",
    "model.width=0.25", "model.middle_blocks=1", "optim.warmup_steps=2",
    "trainer.epochs=2", "trainer.eval_every=2", "trainer.log_every=1", "trainer.threads=1", "trainer.progress=false",
    "logger.mode=disabled", "study=fx",
]  # fmt: skip
EVALS_PER_RUN = 4  # 128 images / 32 per batch x 2 epochs = 8 steps, evaluated every 2


# Fixtures ---------------------------------------------------------------------------------------------------------


def sandbox_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "HYDRA_FULL_ERROR"}
    env.update(MALLOC_ENV)
    env.update(
        WANDB_BASE_URL=CLOSED_PORT_URL,
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        NETRC=str(home / "netrc"),
    )
    return env


@pytest.fixture(scope="module")
def wandb_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """W&B in this process and in its children: a closed port, throw-away folders, no API key."""
    home = tmp_path_factory.mktemp("wandb_home")
    wandb.teardown()
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WANDB_")]:
            mp.delenv(name)
        for key, value in sandbox_env(home).items():
            if key.startswith(("WANDB_", "NETRC")):
                mp.setenv(key, value)
        yield home
        wandb.teardown()


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study folder of one real 8-cell multirun (read-only: tests that damage runs copy it first)."""
    root = tmp_path_factory.mktemp("analysis_sweep")
    proc = subprocess.run(
        [sys.executable, "-m", "xablate", *SWEEP, f"out_dir={root / 'runs'}"],
        cwd=root,
        env=sandbox_env(root / "wandb_home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = root / "runs" / "fx"
    assert len(list(study.glob("*/summary.json"))) == 8
    return study


def copy_sweep(sweep: Path, dest: Path) -> Path:
    shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns("checkpoint.pt", "analysis"))
    return dest


def run_dirs(study: Path) -> dict[str, Path]:
    """Run folders by run name (`seg1-none-res-s0`)."""
    return {
        json.loads((d / "summary.json").read_text())["name"]: d
        for d in sorted(study.glob("*/"))
        if (d / "summary.json").is_file()
    }


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """`python -m analysis ARGS` in this process: exit status, stdout, stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_not_blank(png: Path) -> None:
    image = matplotlib.image.imread(png)[..., :3]
    non_white = (image < 0.95).any(axis=-1).mean()
    assert image.std() > 0.05, f"{png} is nearly uniform"
    assert 0.03 < non_white < 0.8, f"{png}: {non_white:.1%} of pixels are not white"


# Statistics -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_published_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)


def test_t_quantile_closed_forms_and_the_normal_limit() -> None:
    for p in (0.6, 0.9, 0.975, 0.995):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-4)
    assert t_quantile(0.5, 3) == 0.0
    assert 2.571 < t_quantile(0.975, 4.96) < 2.776  # fractional df (Welch) lies between its neighbours


def test_mean_interval_of_a_known_case() -> None:
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.estimate == 2.0 and interval.n == 3
    assert interval.half_width == pytest.approx(4.302653 * 1.0 / math.sqrt(3), abs=1e-5)  # = 2.484
    assert interval.half_width == pytest.approx(2.484, abs=1e-3)
    one = mean_interval([0.7])
    assert one.estimate == 0.7 and math.isnan(one.half_width)
    assert math.isnan(mean_interval([]).estimate)


def test_welch_interval_of_a_known_case() -> None:
    diff = welch_interval([4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert diff.estimate == pytest.approx(3.5)
    # var 5/3 over 4 and 1 over 3: se^2 = 0.75; Welch-Satterthwaite df = 0.5625 / (0.41667^2/3 + 0.33333^2/2)
    assert diff.df == pytest.approx(4.9592, abs=1e-3)
    assert diff.half_width == pytest.approx(t_quantile(0.975, diff.df) * math.sqrt(0.75), rel=1e-9)
    assert 2.571 * math.sqrt(0.75) < diff.half_width < 2.776 * math.sqrt(0.75)
    assert math.isnan(welch_interval([0.5], [0.4, 0.6]).half_width)  # one seed: no interval, not zero


def test_steps_to_fraction_is_the_first_step_reaching_it() -> None:
    assert steps_to_fraction([2, 4, 6, 8], [0.1, 0.5, 0.96, 0.9], final=0.9) == 6  # 0.95 * 0.9 = 0.855
    assert steps_to_fraction([2, 4], [0.2, 0.4], final=0.4, fraction=0.5) == 2
    assert math.isnan(steps_to_fraction([2], [0.2], final=math.nan))


# Figure plan ------------------------------------------------------------------------------------------------------


def grid(*cells: dict[str, Any]) -> pd.DataFrame:
    base = {
        "segments": "depthwise", "activation": "none", "residual": True, "order": "depthwise_first",
        "mid_norm": False, "budget": "none", "model": "xception_mini", "data": "synthetic",
    }  # fmt: skip
    return pd.DataFrame([{**base, **cell} for cell in cells]).astype(object)


def test_one_factor_at_a_time_design_suggests_the_baseline_slices() -> None:
    runs = grid({}, {"residual": False}, {"activation": "relu"}, {"activation": "elu"})
    plans = {p.name: p for p in plan_figures(runs)}
    assert set(plans) == {"fig9_residual", "fig10_activation"}
    assert not plans["fig9_residual"].drawable
    assert plans["fig9_residual"].selections == [{"activation": "none"}]  # residual varies only there
    assert plans["fig10_activation"].selections == [{"residual": True}]
    only = plan_figures(grid({}, {"segments": 1}, {"segments": 4}))
    assert [(p.name, p.drawable, p.values) for p in only] == [("fig11_segments", True, [1, 4, "depthwise"])]


# Loading real runs ------------------------------------------------------------------------------------------------


def test_frames_from_a_real_sweep(sweep: Path) -> None:
    data = load_local([sweep])
    assert data.problems == []
    runs, curves = data.runs, data.curves
    assert len(runs) == 8 and runs["run_id"].is_unique
    assert sorted(runs["segments"].map(str).unique()) == ["1", "depthwise"]
    assert set(runs["residual"]) == {True, False} and set(runs["seed"]) == {0, 1}
    assert all(type(s) is int for s in runs["segments"] if s != "depthwise")
    for name, run_dir in run_dirs(sweep).items():
        summary = json.loads((run_dir / "summary.json").read_text())
        row = runs[runs["name"] == name].iloc[0]
        assert row["val_top1"] == summary["val_top1"] and row["params"] == summary["params"]
        assert row["source"] == str(run_dir)
        metrics = pd.read_csv(run_dir / "metrics.csv")
        mine = curves[curves["run_id"] == row["run_id"]]
        for split in ("train", "val"):
            expected = metrics[metrics["split"] == split].sort_values("step")
            got = mine[mine["split"] == split]
            assert got["step"].tolist() == expected["step"].tolist()
            assert got["top1"].tolist() == pytest.approx(expected["top1"].tolist())
        assert (mine["split"] == "val").sum() == EVALS_PER_RUN
        assert set(mine["segments"]) == {summary["segments"]}
    assert list(curves.columns[:11]) == ["run_id", "study", "segments", "activation", "residual", "order",
                                         "mid_norm", "budget", "model", "data", "seed"]  # fmt: skip


def test_archived_attempts_reports_and_duplicates_are_not_runs(sweep: Path, tmp_path: Path) -> None:
    study = copy_sweep(sweep, tmp_path / "fx")
    run = run_dirs(study)["seg1-none-res-s0"]
    archived = run / "archive" / "20260101T000000000000Z"
    archived.mkdir(parents=True)
    shutil.copy(run / "summary.json", archived / "summary.json")
    shutil.copy(run / "metrics.csv", archived / "metrics.csv")
    (study / "sweeps").mkdir(exist_ok=True)
    (study / "sweeps" / "report.md").write_text("| cell |\n")
    data = load_local([study])
    assert len(data) == 8 and data.problems == []
    twin = shutil.copytree(run, tmp_path / "elsewhere" / run.name, ignore=shutil.ignore_patterns("archive"))
    data = load_local([study, tmp_path / "elsewhere", study])  # the same folder twice counts once
    assert len(data) == 8
    assert [(p.path, p.reason) for p in data.problems] == [
        (str(twin), f"duplicate of {run} (same cell and seed: counted once)")
    ]


def test_malformed_failed_and_unfinished_runs_are_listed_in_one_warning(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = copy_sweep(sweep, tmp_path / "fx")
    dirs = run_dirs(study)
    corrupt, no_metrics, failed, unfinished = (
        dirs[n] for n in ("seg1-none-res-s0", "seg1-none-nores-s1", "segdw-none-res-s1", "segdw-none-nores-s0")
    )
    (corrupt / "summary.json").write_text('{"status": "completed", "segm')
    (no_metrics / "metrics.csv").unlink()
    summary = json.loads((failed / "summary.json").read_text())
    summary.update(status="failed", error="training loss became nan by step 6")
    (failed / "summary.json").write_text(json.dumps(summary))
    (unfinished / "summary.json").unlink()

    out = tmp_path / "out"
    code, stdout, stderr = cli(capsys, study, "--out", out, "--wandb-mode", "disabled")
    assert code == 0, stderr
    assert stderr.count("analysis: warning:") == 1
    header, *listed = stderr.strip().splitlines()
    assert header == "analysis: warning: 4 run(s) left out:"
    reasons = dict(line.strip().split(": ", 1) for line in listed)
    assert set(reasons) == {str(p) for p in (corrupt, no_metrics, failed, unfinished)}
    assert reasons[str(corrupt)].startswith("malformed summary.json")
    assert reasons[str(no_metrics)] == "malformed: summary.json but no metrics.csv"
    assert reasons[str(failed)] == "failed: training loss became nan by step 6"
    assert reasons[str(unfinished)].startswith("unfinished: metrics.csv but no summary.json")
    assert "analysis: 4 run(s)" in stdout
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["name"]) == [
        "seg1-none-nores-s0",
        "seg1-none-res-s1",
        "segdw-none-nores-s1",
        "segdw-none-res-s0",
    ]
    assert json.loads((out / "analysis.json").read_text())["n_runs"] == 4


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("interrupted", "interrupted at step 8/8 (run it again to resume)"),
        ("dry_run", "dry run: never trained"),
        ("running", "malformed summary.json (status 'running')"),
    ],
)
def test_runs_that_did_not_complete_are_left_out(sweep: Path, tmp_path: Path, status: str, reason: str) -> None:
    run = shutil.copytree(run_dirs(sweep)["seg1-none-res-s0"], tmp_path / "run", ignore=shutil.ignore_patterns("*.pt"))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": status}))
    data = load_local([tmp_path])
    assert len(data) == 0 and [(p.path, p.reason) for p in data.problems] == [(str(run), reason)]


def test_missing_columns_are_malformed(sweep: Path, tmp_path: Path) -> None:
    study = copy_sweep(sweep, tmp_path / "fx")
    run = run_dirs(study)["seg1-none-res-s0"]
    metrics = pd.read_csv(run / "metrics.csv").drop(columns=["top1"])
    metrics.to_csv(run / "metrics.csv", index=False)
    data = load_local([study])
    assert len(data) == 7
    assert [(p.path, p.reason) for p in data.problems] == [(str(run), "malformed metrics.csv (missing columns top1)")]


# The command line -------------------------------------------------------------------------------------------------


def test_runs_varying_along_two_axes_get_a_message_not_a_mixed_figure(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = cli(capsys, sweep, "--out", out, "--wandb-mode", "disabled")
    assert code == 0 and stderr == ""
    assert "runs vary in segments (1, depthwise); residual (true, false)" in stdout
    assert (
        "fig9_residual: not drawn: the runs also vary in segments; "
        "select one with: --where segments=1 | --where segments=depthwise"
    ) in stdout
    assert (
        "fig11_segments: not drawn: the runs also vary in residual; "
        "select one with: --where residual=true | --where residual=false"
    ) in stdout
    assert not list(out.glob("fig*"))
    table = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert len(table) == 4 and set(table["n_seeds"]) == {2}


def test_where_selects_the_runs_of_one_figure(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spectrum"
    code, stdout, _ = cli(capsys, sweep, "--out", out, "--where", "residual=true", "--wandb-mode", "disabled")
    assert code == 0 and "fig11_segments: drawn" in stdout
    assert sorted(p.name for p in out.glob("fig*")) == ["fig11_segments.pdf", "fig11_segments.png"]
    assert_not_blank(out / "fig11_segments.png")
    assert (out / "fig11_segments.pdf").read_bytes().startswith(b"%PDF")
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and set(runs["residual"]) == {True}

    out = tmp_path / "residual"
    code, stdout, _ = cli(capsys, sweep, "--out", out, "--where", "segments=depthwise", "--wandb-mode", "disabled")
    assert code == 0 and "fig9_residual: drawn" in stdout
    assert_not_blank(out / "fig9_residual.png")
    # Repeating an axis keeps either value (OR); a second axis narrows (AND): one seed, plain lines.
    out = tmp_path / "one_seed"
    args = ["--where", "segments=1", "--where", "segments=dw", "--where", "seed=0", "--where", "residual=false"]
    code, stdout, _ = cli(capsys, sweep, "--out", out, *args, "--wandb-mode", "disabled")
    assert code == 0 and "fig11_segments: drawn" in stdout and "analysis: 2 run(s)" in stdout
    assert_not_blank(out / "fig11_segments.png")


def test_summary_table_from_a_real_sweep(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli(capsys, sweep, "--out", out, "--wandb-mode", "disabled")[0] == 0
    text = (out / "summary.csv").read_text()
    table = pd.read_csv(out / "summary.csv", keep_default_na=False, dtype=str)
    assert list(table["segments"]) == ["1", "depthwise", "1", "depthwise"]
    assert list(table["residual"]) == ["true", "true", "false", "false"]
    base = table[table["baseline"] == "true"]
    assert list(base["segments"]) == ["depthwise"] and list(base["residual"]) == ["true"]
    assert base["diff_final_top1"].item() == "" and base["diff_final_top1_ci95"].item() == ""

    data = load_local([sweep])
    runs = data.runs
    for _, row in table.iterrows():
        cell = runs[
            (runs["segments"].map(str) == row["segments"]) & (runs["residual"].map(str).str.lower() == row["residual"])
        ]
        values = cell["val_top1"].tolist()
        mean = sum(values) / 2
        half = 12.706 * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)  # t_{.975,1} * s / sqrt(n)
        assert float(row["final_top1"]) == pytest.approx(mean, abs=1e-6)
        assert float(row["final_top1_ci95"]) == pytest.approx(half, abs=1e-3)
        assert float(row["params"]) == cell["params"].iloc[0]
    # Convergence: the first evaluation reaching 95% of the run's final top-1, by hand for one cell.
    cells = cell_table(runs, data.curves)
    first = []
    for run_dir in (d for n, d in run_dirs(sweep).items() if n.startswith("seg1-none-res-")):
        metrics = pd.read_csv(run_dir / "metrics.csv")
        val = metrics[metrics["split"] == "val"]
        final = json.loads((run_dir / "summary.json").read_text())["val_top1"]
        first.append(val[val["top1"] >= 0.95 * final]["step"].iloc[0])
    row = cells[(cells["segments"] == 1) & (cells["residual"] == True)]  # noqa: E712
    assert row["steps_to_95"].item() == pytest.approx(sum(first) / 2)
    # Halfway: validation top-1 at the evaluation nearest half the run's steps, by hand for the same cell.
    halfway = []
    for run_dir in (d for n, d in run_dirs(sweep).items() if n.startswith("seg1-none-res-")):
        val = pd.read_csv(run_dir / "metrics.csv").query("split == 'val'")
        total = json.loads((run_dir / "summary.json").read_text())["total_steps"]
        halfway.append(val.loc[(val["step"] - total / 2).abs().idxmin(), "top1"])
    assert row["halfway_top1"].item() == pytest.approx(sum(halfway) / 2)
    assert row["diff_halfway_top1"].notna().item()

    md = (out / "summary.md").read_text()
    assert md.startswith("# Summary: study fx")
    assert "| segments | residual | seeds | final top-1 (%) | best top-1 (%) | halfway top-1 (%) |" in md
    assert "| baseline |" in md
    tex = (out / "summary.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"$\pm$" in tex
    assert ",," in text  # the baseline's empty difference columns

    out = tmp_path / "one_seed"
    assert cli(capsys, sweep, "--out", out, "--where", "seed=0", "--wandb-mode", "disabled")[0] == 0
    single = pd.read_csv(out / "summary.csv", keep_default_na=False, dtype=str)
    assert set(single["n_seeds"]) == {"1"}
    for column in ("final_top1_ci95", "best_top1_ci95", "diff_final_top1_ci95"):
        assert set(single[column]) == {""}, column  # empty, not zero
    assert all(v != "" for v in single["final_top1"])


BAD_INPUT = {
    "missing path": (["{missing}"], "does not exist"),
    "unknown axis": (["{sweep}", "--where", "colour=red"], "unknown axis 'colour'; allowed: segments, activation"),
    "bad segments": (["{sweep}", "--where", "segments=three"], "allowed: a positive integer or depthwise"),
    "bad residual": (
        ["{sweep}", "--where", "residual=maybe"],
        "'maybe' is not a value of residual; allowed: true, false",
    ),
    "bad activation": (["{sweep}", "--where", "activation=tanh"], "allowed: none, relu, elu"),
    "no equals": (["{sweep}", "--where", "segments"], "expected AXIS=VALUE"),
    "no runs": (["{empty}"], "no completed runs found"),
    "no match": (
        ["{sweep}", "--where", "activation=elu"],
        "matches none of the 8 runs; values present: activation: none",
    ),
    "group alone": (["{sweep}", "--group", "fx"], "--group selects W&B runs"),
    "bad project": (["--wandb", "project-only"], "expected ENTITY/PROJECT"),
    "user folder": (["{sweep}", "--out", "{user}"], "holds files that analysis did not write"),
    "unwritable out": (["{sweep}", "--out", "/proc/forbidden"], "--out /proc/forbidden cannot be created or written"),
    "out under a file": (["{sweep}", "--out", "{user}/summary.csv/figs"], "summary.csv is not a folder"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2_before_any_work(
    case: str, sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, message = BAD_INPUT[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "summary.csv").write_text("mine\n")
    values = {"missing": tmp_path / "nope", "sweep": sweep, "empty": tmp_path / "empty", "user": tmp_path / "user"}
    argv = [a.format(**values) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, _, stderr = cli(capsys, *argv, "--wandb-mode", "disabled")
    assert code == 2
    assert len(stderr.splitlines()) == 1 and stderr.startswith("analysis: error: "), stderr
    assert message in stderr
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "user" / "summary.csv").read_text() == "mine\n"


# W&B --------------------------------------------------------------------------------------------------------------


class StandInRun:
    """What the analysis reads of a `wandb.apis.public.Run`, built from a real run folder the way the trainer
    logs it: the resolved config, summary.json as the summary, and one history row per step."""

    def __init__(self, run_dir: Path, *, job_type: str = "train", state: str = "finished") -> None:
        summary = json.loads((run_dir / "summary.json").read_text())
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        self.id, self.name, self.group = summary["run_key"], summary["name"], summary["study"]
        self.path = ["ent", "proj", self.id]
        self.job_type, self.state, self.tags = job_type, state, [f"study:{self.group}"]
        self.config = {k: {"value": v, "desc": None} if k == "segments" else v for k, v in config.items()}
        self.history: dict[int, dict[str, Any]] = {}
        metrics = pd.read_csv(run_dir / "metrics.csv")
        for _, row in metrics.iterrows():
            record = self.history.setdefault(int(row["step"]), {"_step": int(row["step"]), "_runtime": 1.0})
            if row["split"] == "val":
                record.update({f"val/{k}": row[k] for k in ("loss", "top1", "top5", "epoch", "wall_s")})
            else:
                logged = ("loss", "top1", "top5", "lr", "img_per_s", "epoch", "wall_s")
                record.update({f"train/{k}": row[k] for k in logged})
        last = self.history[max(self.history)]
        self.summary_metrics = {**{k: v for k, v in last.items() if "/" in k}, "_step": last["_step"], **summary}

    def scan_history(self) -> Iterator[dict[str, Any]]:
        return iter(sorted(self.history.values(), key=lambda r: r["_step"]))


def test_wandb_runs_convert_to_the_same_frames(sweep: Path, tmp_path: Path) -> None:
    local = load_local([sweep])
    dirs = run_dirs(sweep)
    stand_ins = [StandInRun(d) for d in dirs.values()]
    partial = stand_ins[0]  # an older run whose summary lacks the axes: they come from the config
    for key in ("segments", "model", "data", "residual"):
        del partial.summary_metrics[key]
    running = StandInRun(dirs["seg1-none-res-s0"], state="running")
    del running.summary_metrics["status"]
    analysis_run = StandInRun(dirs["seg1-none-res-s1"], job_type="analysis")
    reused = stand_ins[1]  # trained in fig9, reused in fx: found through its tag, a run of fx here
    reused.group, reused.tags, reused.summary_metrics["study"] = "fig9", ["study:fig9", "study:fx"], "fig9"
    data = load_wandb("ent/proj", "fx", api_runs=[*stand_ins, running, analysis_run])
    assert set(data.runs["study"]) == {"fx"}
    assert sorted(data.runs["wandb_id"]) == sorted(run.id for run in stand_ins)
    assert [(p.path, p.reason) for p in data.problems] == [
        (f"wandb:ent/proj/{running.id}", "unfinished: still running in W&B (no status in its summary)")
    ]
    assert len(data) == 8
    key = ["name", *("segments", "activation", "residual", "order", "mid_norm", "budget", "model", "data", "seed")]
    columns = [*key, "val_top1", "best_val_top1", "params", "macs", "train_img_per_s"]
    mine = data.runs[columns].sort_values("name").reset_index(drop=True)
    theirs = local.runs[columns].sort_values("name").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.astype(str), theirs.astype(str))
    assert data.runs["source"].str.startswith("wandb:ent/proj/").all()
    for name in dirs:
        got = data.curves[data.curves["run_id"] == data.runs.set_index("name").loc[name, "run_id"]]
        want = local.curves[local.curves["run_id"] == local.runs.set_index("name").loc[name, "run_id"]]
        for split, columns in (
            ("val", ["step", "epoch", "top1", "top5", "loss", "wall_s"]),
            ("train", ["step", "epoch", "loss", "top1", "top5", "lr", "img_per_s", "wall_s"]),
        ):
            pd.testing.assert_frame_equal(
                got[got["split"] == split][columns].reset_index(drop=True),
                want[want["split"] == split][columns].reset_index(drop=True),
            )


def test_wandb_source_through_the_cli(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def api_runs(path: str, group: str | None) -> Iterator[StandInRun]:
        asked.append((path, group))
        return iter([StandInRun(d) for d in run_dirs(sweep).values()])

    monkeypatch.setattr(wandb_source, "wandb_runs", api_runs)
    out = tmp_path / "out"
    args = ["--wandb", "ent/proj", "--group", "fx", "--where", "segments=depthwise", "--out", out]
    code, stdout, stderr = cli(capsys, *args, "--wandb-mode", "disabled")
    assert code == 0, stderr
    assert asked == [("ent/proj", "fx")]
    assert "fig9_residual: drawn" in stdout and (out / "fig9_residual.png").is_file()
    # Both sources at once: the same runs twice are one set, each duplicate listed.
    code, stdout, stderr = cli(capsys, sweep, *args[:4], "--out", tmp_path / "both", "--wandb-mode", "disabled")
    assert code == 0 and "analysis: 8 run(s)" in stdout
    assert "analysis: warning: 8 run(s) left out:" in stderr and stderr.count("(same cell and seed: counted once)") == 8


def test_wandb_api_without_credentials_fails_with_one_line(
    wandb_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = cli(capsys, "--wandb", "ent/proj", "--out", tmp_path / "out", "--wandb-mode", "disabled")
    assert code == 1
    assert stderr == "analysis: error: no W&B API key: run `wandb login` or set WANDB_API_KEY\n"
    assert not (tmp_path / "out").exists()


def test_online_without_an_api_key_logs_offline_with_one_warning(
    sweep: Path, tmp_path: Path, wandb_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = copy_sweep(sweep, tmp_path / "fx")
    for path in study.glob("*/summary.json"):  # as if trained with W&B on
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "wandb_id": f"{summary['run_key']}-1"}))
    out = tmp_path / "out"
    code, stdout, stderr = cli(capsys, study, "--where", "segments=depthwise", "--out", out, "--wandb-mode", "online")
    assert code == 0
    assert stderr == (
        "analysis: warning: W&B online: no API key (run `wandb login` or set WANDB_API_KEY); logged offline\n"
    )
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert list((run_dir / "files" / "media" / "images").glob("fig9_residual_*.png"))
    assert "upload with `wandb sync" in stdout
    logged = read_wandb_run(run_dir)
    summaries = [json.loads(p.read_text()) for p in study.glob("*/summary.json")]
    read = sorted(s["wandb_id"] for s in summaries if s["segments"] == "depthwise")
    assert len(read) == 4 and logged["config"]["wandb_runs"] == logged["summary"]["wandb_runs"] == read
    (artifact,) = [a for a in logged["artifacts"] if a.type == "analysis"]  # W&B adds one for the table
    assert artifact.name == "analysis-fx"
    files = {entry.path for entry in artifact.manifest.contents}
    assert {"fig9_residual.png", "fig9_residual.pdf", "summary.md", "summary.csv"} <= files


def test_cli_end_to_end_logs_an_offline_analysis_run(sweep: Path, tmp_path: Path, wandb_home: Path) -> None:
    """The user's command in a subprocess: default output folder, figures and tables, the offline W&B run."""
    study = copy_sweep(sweep, tmp_path / "fx")
    env = sandbox_env(wandb_home)
    command = [sys.executable, "-m", "analysis", str(study), "--where", "residual=true"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = study / "analysis" / "residual=true"
    assert f"wrote {out}:" in proc.stdout
    for name in ("summary.csv", "summary.md", "summary.tex", "runs.csv", "curves.csv", "fig11_segments.png"):
        assert (out / name).is_file(), name
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert f"upload with `wandb sync {run_dir}`" in proc.stdout
    (log,) = run_dir.glob("run-*.wandb")
    blob = log.read_bytes()
    assert b"analysis" in blob and b"fig11_segments" in blob and b"summary_table" in blob and b"fx" in blob
    images = list((run_dir / "files" / "media" / "images").glob("fig11_segments_*.png"))
    assert len(images) == 1 and images[0].read_bytes() == (out / "fig11_segments.png").read_bytes()
    for name in ("fig11_segments.pdf", "summary.md", "summary.csv", "summary.tex"):
        assert (run_dir / "files" / name).is_file(), name
    assert list((run_dir / "files" / "media" / "table").glob("summary_table_*.table.json"))
    # The same command again replaces the derived files and adds a second offline run, nothing else.
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "wandb").glob("offline-run-*"))) == 2
    # All runs, into the default folder that holds the selection's folder: that folder is left alone.
    assert main([str(study), "--wandb-mode", "disabled"]) == 0
    assert (study / "analysis" / "summary.md").is_file() and (out / "fig11_segments.png").is_file()


def test_a_study_trained_on_two_kinds_of_machine_says_so_in_its_verdicts(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every run records the hardware it ran on; one run moved to another machine's record is named."""
    here = {json.loads(p.read_text())["hardware"] for p in sweep.glob("*/summary.json")}
    assert len(here) == 1 and "(" in next(iter(here))
    study = copy_sweep(sweep, tmp_path / "fx")
    assert cli(capsys, study, "--out", tmp_path / "same", "--wandb-mode", "disabled")[0] == 0
    assert "Warning" not in (tmp_path / "same" / "verdicts.md").read_text()
    assert set(pd.read_csv(tmp_path / "same" / "runs.csv")["hardware"]) == here

    moved = run_dirs(study)["seg1-none-res-s0"] / "summary.json"
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "hardware": "Other CPU (AVX2)"}))
    code, out, _ = cli(capsys, study, "--out", tmp_path / "mixed", "--wandb-mode", "disabled")
    assert code == 0
    warning = f"fx: its runs differ in hardware: {next(iter(here))} (7 runs), Other CPU (AVX2) (1 runs)"
    assert f"warning: {warning}" in out
    assert f"Warning: {warning}" in (tmp_path / "mixed" / "verdicts.md").read_text()
    assert json.loads((tmp_path / "mixed" / "analysis.json").read_text())["mixed_settings"][0].startswith(warning)


def declare(study: Path, **design: str) -> None:
    """Edit the `design` node of every run's resolved config, as if the study had declared it."""
    for run_dir in run_dirs(study).values():
        path = run_dir / ".hydra" / "config.yaml"
        config = yaml.safe_load(path.read_text())
        config["design"].update(design)
        path.write_text(yaml.safe_dump(config))


def test_the_design_in_the_run_configs_decides_the_primary_endpoint_and_the_reference(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweep's configs declare test top-1 (the default), which synthetic data has none of; then the
    validation top-1 and the cell segments=1 residual=false, then a baseline the analysis cannot use."""
    study = copy_sweep(sweep, tmp_path / "fx")
    assert cli(capsys, study, "--out", tmp_path / "default", "--wandb-mode", "disabled")[0] == 0
    table = pd.read_csv(tmp_path / "default" / "comparisons.csv", dtype=str)
    families = list(dict.fromkeys(table["family"]))
    assert set(table.groupby("family")["metric"].first()) == {"final val top-1"}
    assert set(table["baseline"]) == {"depthwise", "true"}
    assert (
        f"Primary endpoint: test_top1 (study config (design.primary)); the final val top-1 in {', '.join(families)}, "
        "where a run has no test top-1." in (tmp_path / "default" / "verdicts.md").read_text()
    )

    declare(study, primary="val_top1", baseline="segments=1 residual=false")
    assert cli(capsys, study, "--out", tmp_path / "declared", "--wandb-mode", "disabled")[0] == 0
    table = pd.read_csv(tmp_path / "declared" / "comparisons.csv", dtype=str)
    assert set(table.groupby("family")["metric"].first()) == {"final val top-1"}
    assert dict(table.groupby("axis")["baseline"].agg(set)) == {"residual": {"false"}, "segments": {"1"}}
    verdicts = (tmp_path / "declared" / "verdicts.md").read_text()
    assert "Primary endpoint" not in verdicts
    assert "Baseline: segments=1 activation=none residual=false (study config (design.baseline))." in verdicts
    assert set(pd.read_csv(tmp_path / "declared" / "runs.csv")["design_baseline"]) == {"segments=1 residual=false"}

    declare(study, baseline="segments=one")
    code, _, err = cli(capsys, study, "--out", tmp_path / "malformed", "--wandb-mode", "disabled")
    assert code == 2 and not (tmp_path / "malformed").exists()
    assert err.strip() == (
        "analysis: error: design.baseline='segments=one': segments=one is not valid; "
        "allowed: a positive integer or depthwise"
    )


def test_frames_select_by_type_not_by_equality(sweep: Path) -> None:
    data = load_local([sweep])
    assert len(data.where({"segments": [1]})) == 4  # segments=1 is not residual=True (True == 1 in Python)
    assert len(data.where({"residual": [True], "segments": ["depthwise"]})) == 2
    assert isinstance(data.where({}), Runs)


def test_the_spectrum_figure_has_both_profiles_and_a_panel_per_measure(sweep: Path) -> None:
    data = load_local([sweep])
    runs = data.runs[data.runs["residual"].map(bool)]
    curves = data.curves[data.curves["run_id"].isin(set(runs["run_id"]))]
    (plan,) = plan_figures(runs)
    assert plan.axis == "segments"
    top1_ax, loss_ax, *panels = draw(plan, runs, curves).axes
    assert "validation top-1" in top1_ax.get_ylabel() and loss_ax.get_ylabel() == CE_LABEL, "runs log the plain CE"
    assert [p.get_ylabel().split("\n")[0] for p in panels] == [
        "val. top-1 (%)", "parameters (M)", "multiply-adds", "training throughput"
    ]  # fmt: skip
    segment_lines = [line for line in loss_ax.get_lines() if not line.get_label().startswith("_")]
    assert len(segment_lines) == len(plan.values)


def test_the_residual_profile_plots_top1_and_training_loss_means_across_seeds(sweep: Path) -> None:
    data = load_local([sweep])
    runs = data.runs[data.runs["segments"].map(str) == "depthwise"]
    curves = data.curves[data.curves["run_id"].isin(set(runs["run_id"]))]
    (plan,) = plan_figures(runs)
    top1_ax, loss_ax = draw(plan, runs, curves).axes
    assert "validation top-1" in top1_ax.get_ylabel() and loss_ax.get_ylabel() == CE_LABEL, "runs log the plain CE"
    train = pd.concat(
        pd.read_csv(d / "metrics.csv").query("split == 'train'")
        for n, d in run_dirs(sweep).items()
        if n.startswith("segdw-none-res-")
    )
    expected = train.groupby("step")["ce"].mean()
    (line,) = [line for line in loss_ax.get_lines() if line.get_label().startswith("with residual")]
    assert list(line.get_xdata()) == list(expected.index)
    assert list(line.get_ydata()) == pytest.approx(list(expected))
