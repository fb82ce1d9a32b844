"""Sweeps through the real CLI: Hydra multiruns, W&B offline runs, skipping, failures, studies, launchers."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from analysis.load import load_local
from xablate.axes import parse_segments
from xablate.convergence import still_rising

from .wandb_log import read_run

TINY = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "trainer.epochs=2", "trainer.log_every=4"]


def test_multirun_logs_each_cell_to_its_own_offline_wandb_run_and_a_rerun_skips_them(
    tmp_path: Path, xablate_cli: Any, summaries: Any
) -> None:
    args = ["-m", "segments=1,4,depthwise", *TINY, "trainer.threads=1", "study=demo", "data.holdout=64"]
    args.append("logger.log_model=true")
    first = xablate_cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "sweep: 3 cells: 3 to run" in first.stdout
    assert "budget: " in first.stdout and " steps of " in first.stdout
    assert re.search(r"^estimate: 3 of 3 cells to train; about [\d hms]+ in all, one at a time", first.stdout, re.M)
    progress = re.findall(r"^sweep: (\S+) completed in [\d hms]+; (\d) of 3 done, 0 running, (\d) left, 0 failed(.*)$",
                          first.stdout, re.M)  # fmt: skip
    assert [(done, left) for _, done, left, _ in progress] == [("1", "2"), ("2", "1"), ("3", "0")]
    assert all(re.fullmatch(r"; about [\d hms]+ left \(ETA \d\d:\d\d\), from \d measured cells? .*", eta)
               for _, _, _, eta in progress[:2])  # fmt: skip
    assert progress[2][3] == ""  # nothing left: no ETA
    finished = re.search(r"^sweep: 3 of 3 done, 0 running, 0 left, 0 failed; took [\d hms]+ \(estimate [\d hms]+\)$",
                         first.stdout, re.M)  # fmt: skip
    assert finished is not None
    study = tmp_path / "runs" / "demo"
    cells = summaries(study)
    assert sorted(str(s["segments"]) for s in cells.values()) == ["1", "4", "depthwise"]
    assert {s["status"] for s in cells.values()} == {"completed"}

    for folder, summary in cells.items():
        (offline,) = (study / folder / "wandb").glob("offline-run-*")
        run = read_run(offline)
        assert (run["run"].run_group, run["run"].job_type) == ("demo", "train")
        assert run["run"].run_id == summary["wandb_id"] == f"{summary['run_key']}-1"
        assert run["run"].display_name == summary["name"]
        assert "study:demo" in run["run"].tags
        (model,) = run["artifacts"]
        assert (model.name, model.type) == (f"model-{summary['wandb_id']}", "model")
        assert [entry.path for entry in model.manifest.contents] == ["checkpoint.pt"]
        assert parse_segments(run["config"]["segments"]) == summary["segments"]
        assert run["config"]["model"]["name"] == "xception_mini"
        assert run["metrics"]["train/*"] == run["metrics"]["val/*"] == run["metrics"]["test/*"] == "trainer/step"
        assert all(row["trainer/step"] == row["_step"] for row in run["history"])
        val_steps = [row["_step"] for row in run["history"] if "val/top1" in row]
        assert val_steps == [8, 16]
        assert [row["val/epoch"] for row in run["history"] if "val/top1" in row] == [1.0, 2.0]
        wall = [row["train/wall_s"] for row in run["history"] if "train/wall_s" in row]
        assert wall == sorted(wall) and wall[0] > 0
        last_val = [row["val/top1"] for row in run["history"] if "val/top1" in row][-1]
        assert last_val == pytest.approx(summary["val_top1"])
        (test,) = [row for row in run["history"] if "test/top1" in row]
        assert test["_step"] == 16 and test["test/top1"] == pytest.approx(summary["test_top1"])
        assert all("train/ce" in row for row in run["history"] if "train/loss" in row)
        assert run["summary"]["status"] == "completed"
        assert run["exit_code"] == 0

    (report,) = (study / "sweeps").glob("*.md")
    assert all(name in report.read_text() for name in cells)
    assert finished.group(0) in report.read_text()
    (table,) = (study / "sweeps").glob("*.csv")
    assert all(float(row["estimate_s"]) > 0 for row in pd.read_csv(table).to_dict("records"))
    assert "wandb sync" in first.stdout

    kept = [*study.glob("*/summary.json"), *study.glob("*/.hydra/*.yaml")]
    assert len(kept) == 3 * 4
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept}
    second = xablate_cli(tmp_path, *args, "trainer.log_every=8")  # another override: not in the key
    assert second.returncode == 0, second.stderr
    assert "3 completed earlier (skipped), 0 to run" in second.stdout
    assert second.stdout.count("already completed") == 3
    assert "estimate: 0 of 3 cells to train (3 cost nothing: completed, copied or running elsewhere)" in second.stdout
    assert " completed in " not in second.stdout  # no line for a cell skipped
    assert second.stdout.count("| 0 (completed) |") == 3
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept} == before  # .hydra/ of the run that made it


def test_a_failing_cell_does_not_stop_the_others_and_the_sweep_exits_non_zero(
    tmp_path: Path, xablate_cli: Any, summaries: Any
) -> None:
    result = xablate_cli(tmp_path, "-m", "optim.lr=0.1,1e30,0.05", *TINY, "trainer.threads=1", "logger.mode=disabled")
    assert result.returncode == 1
    cells = summaries(tmp_path / "runs" / "default")
    assert sorted(s["status"] for s in cells.values()) == ["completed", "completed", "failed"]
    (failed,) = [name for name, s in cells.items() if s["status"] == "failed"]
    assert f"| {failed} | failed |" in result.stdout and "loss became" in result.stdout
    assert "1 of 3 cells did not complete" in result.stdout
    assert re.search(rf"^sweep: {failed} failed in [\d hms]+; 1 of 3 done, 0 running, 1 left, 1 failed; about ",
                     result.stdout, re.M)  # fmt: skip
    assert "sweep: 2 of 3 done, 0 running, 0 left, 1 failed; took " in result.stdout


@pytest.mark.parametrize(
    ("study", "axis", "values", "seed_override"),
    [
        pytest.param("fig9", "residual", {True, False}, None, marks=pytest.mark.slow),  # fig11 covers the mechanism
        pytest.param("fig10", "activation", {"none", "elu", "relu", "gelu", "silu"}, None, marks=pytest.mark.slow),
        pytest.param("fig11", "segments", {1, 2, 4, 8, 16, "depthwise"}, None, marks=pytest.mark.slow),
        pytest.param("fig11", "segments", {1, 2, 4, 8, 16, "depthwise"}, "0,1", marks=pytest.mark.slow),
        ("fig9", "residual", {True, False}, "1"),  # a sweep value on the command line wins
    ],
)
def test_each_study_runs_as_a_multirun_and_its_dry_run_lists_cells_and_costs(
    tmp_path: Path, study: str, axis: str, values: set, seed_override: str | None, xablate_cli: Any, summaries: Any
) -> None:
    overrides = [f"seed={seed_override}"] if seed_override else []
    result = xablate_cli(tmp_path, f"experiment={study}", "dry_run=true", *overrides)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((Path(__file__).parents[1] / "conf" / "experiment" / f"{study}.yaml").read_text())
    seeds = {int(s) for s in (seed_override or str(config["hydra"]["sweeper"]["params"]["seed"])).split(",")}
    cells = summaries(tmp_path / "runs" / study)
    assert len(cells) == len(values) * len(seeds)
    assert {s[axis] for s in cells.values()} == values
    assert {s["seed"] for s in cells.values()} == seeds
    assert {s["status"] for s in cells.values()} == {"dry_run"}
    for name, summary in cells.items():
        assert f"| {name} | dry_run | {summary['params']:,} |" in result.stdout


@pytest.mark.slow
def test_joblib_runs_two_workers_with_a_thread_share_each(tmp_path: Path, xablate_cli: Any, summaries: Any) -> None:
    result = xablate_cli(
        tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "segments=1,depthwise", *TINY,
        "logger.mode=disabled",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Joblib" in result.stdout + result.stderr
    cells = summaries(tmp_path / "runs" / "default")
    assert [s["status"] for s in cells.values()] == ["completed", "completed"]
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert {s["threads"] for s in cells.values()} == {expected}


@pytest.mark.slow
def test_a_cell_completed_in_another_study_is_copied_not_trained_again(tmp_path: Path, xablate_cli: Any) -> None:
    first = xablate_cli(tmp_path, "segments=depthwise", *TINY, "trainer.threads=1", "study=fig9")
    assert first.returncode == 0, first.stderr
    (original,) = (tmp_path / "runs" / "fig9").glob("segdw-*")

    second = xablate_cli(tmp_path, "-m", "segments=4,depthwise", *TINY, "trainer.threads=1", "study=fig11")
    assert second.returncode == 0, second.stderr
    assert "1 completed in another study (copied, not trained again), 1 to run" in second.stdout
    copy = tmp_path / "runs" / "fig11" / original.name
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["reused_from"] == str(original)
    assert summary["study"] == "fig11"
    assert summary["val_top1"] == json.loads((original / "summary.json").read_text())["val_top1"]
    assert (copy / "metrics.csv").read_bytes() == (original / "metrics.csv").read_bytes()
    (trained_run,) = (original / "wandb").glob("offline-run-*")
    (retag,) = (copy / "wandb").glob("offline-run-*")  # only updates the tags of the run trained in fig9
    trained, tags = read_run(trained_run)["run"], read_run(retag)["run"]
    assert tags.run_id == trained.run_id == summary["wandb_id"] and tags.run_group == "fig9"
    assert {"study:fig9", "study:fig11"} <= set(tags.tags) and "study:fig11" not in trained.tags
    assert read_run(retag)["history"] == []
    (trained,) = (tmp_path / "runs" / "fig11").glob("seg4-*")
    assert "reused_from" not in json.loads((trained / "summary.json").read_text())

    third = xablate_cli(tmp_path, "segments=depthwise", *TINY, "trainer.threads=1", "study=fig10", "reuse=false")
    assert third.returncode == 0, third.stderr
    retrained = tmp_path / "runs" / "fig10" / original.name
    assert "reused_from" not in json.loads((retrained / "summary.json").read_text())
    assert (retrained / "wandb").is_dir()


@pytest.mark.slow
def test_a_cell_trained_with_another_thread_count_is_trained_again(
    tmp_path: Path, xablate_cli: Any, summaries: Any
) -> None:
    first = xablate_cli(
        tmp_path, "segments=depthwise", *TINY, "trainer.threads=1", "study=fig9", "logger.mode=disabled"
    )
    assert first.returncode == 0, first.stderr
    args = ["-m", "segments=depthwise", *TINY, "trainer.threads=2", "study=fig10", "logger.mode=disabled"]
    second = xablate_cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "1 not reused: trained with 1 threads there, 2 here" in second.stdout
    (cell,) = summaries(tmp_path / "runs" / "fig10").values()
    assert "reused_from" not in cell and cell["threads"] == 2


def test_a_short_sweep_says_its_budget_and_that_it_had_not_converged() -> None:
    assert still_rising([(10, 0.60), (30, 0.70), (40, 0.80)])
    assert not still_rising([(10, 0.60), (30, 0.899), (40, 0.90)])
    assert not still_rising([(40, 0.90)])


@pytest.mark.slow
def test_each_rerun_attempt_is_its_own_wandb_run_and_the_earlier_one_is_kept(tmp_path: Path, xablate_cli: Any) -> None:
    args = ["segments=4", *TINY, "trainer.threads=1", "trainer.epochs=1"]
    assert xablate_cli(tmp_path, *args).returncode == 0
    (cell,) = (tmp_path / "runs" / "default").iterdir()
    (first,) = (cell / "wandb").glob("offline-run-*/run-*.wandb")
    first_bytes = first.read_bytes()
    rerun = xablate_cli(tmp_path, *args, "rerun=true")
    assert rerun.returncode == 0, rerun.stderr

    (archived,) = cell.glob("archive/*/wandb/offline-run-*/run-*.wandb")
    assert archived.read_bytes() == first_bytes  # moved aside whole, never resumed
    (second,) = (cell / "wandb").glob("offline-run-*/run-*.wandb")
    key = json.loads((cell / "summary.json").read_text())["run_key"]
    assert [read_run(log.parent)["run"].run_id for log in (archived, second)] == [f"{key}-1", f"{key}-2"]
    assert [len(read_run(log.parent)["history"]) for log in (archived, second)] == [2, 2]
    summary = json.loads((cell / "summary.json").read_text())
    assert (summary["attempt"], summary["wandb_id"]) == (2, f"{key}-2")


@pytest.mark.slow
def test_an_optuna_search_maximises_the_returned_objective(tmp_path: Path, xablate_cli: Any, summaries: Any) -> None:
    result = xablate_cli(
        tmp_path, "hparams_search=lr", "hydra.sweeper.n_trials=3", *TINY, "trainer.epochs=1", "trainer.threads=1",
        "logger.mode=disabled",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "search: OptunaSweeper" in result.stdout
    study = tmp_path / "runs" / "lr_search"
    trials = summaries(study)
    assert len(trials) == 3 and {s["status"] for s in trials.values()} == {"completed"}
    assert len({s["run_key"] for s in trials.values()}) == 3
    best = yaml.safe_load((study / "optimization_results.yaml").read_text())
    top = max(trials.values(), key=lambda s: s["val_top1"])
    assert best["best_value"] == pytest.approx(top["val_top1"])
    (folder,) = [name for name, s in trials.items() if s is top]
    overrides = yaml.safe_load((study / folder / ".hydra" / "overrides.yaml").read_text())
    assert f"optim.lr={best['best_params']['optim.lr']}" in overrides


@pytest.mark.slow
def test_tune_picks_each_cells_lr_from_kept_trials_and_trains_the_seeds_with_it(
    tmp_path: Path, xablate_cli: Any, summaries: Any
) -> None:
    args = [
        "-m",
        "seed=0,1",
        "tune=lr",
        "tune.values=[0.05,0.4]",
        "segments=4",
        *TINY,
        "trainer.epochs=1",
        "data.holdout=64",
    ]
    result = xablate_cli(tmp_path, *args, "trainer.threads=1", "logger.mode=disabled")
    assert result.returncode == 0, result.stderr
    study = tmp_path / "runs" / "default"
    trials = summaries(study / "tuning")
    assert len(trials) == 2 and all(s["tuning"] and s["seed"] == 0 for s in trials.values())
    top = max(s["val_top1"] for s in trials.values())
    lrs = {name: pd.read_csv(study / "tuning" / name / "metrics.csv")["lr"].tolist() for name in trials}
    cells = summaries(study)
    assert sorted(s["seed"] for s in cells.values()) == [0, 1]
    for name, summary in cells.items():
        tuned = summary["tuned"]
        assert (tuned["param"], tuned["objective"]) == ("optim.lr", "val_top1")
        assert sorted(t["value"] for t in tuned["trials"]) == [0.05, 0.4]
        assert all(t["objective"] == trials[t["run"]]["val_top1"] for t in tuned["trials"])
        (chosen,) = [t for t in tuned["trials"] if t["value"] == tuned["value"]]
        assert chosen["objective"] == top  # the first best in the order of tune.values, on ties
        assert pd.read_csv(study / name / "metrics.csv")["lr"].tolist() == lrs[chosen["run"]]  # trained with it
    assert len(load_local([study])) == 2  # the analysis never reads the trials
