"""`python -m xablate.log_wandb`: runs trained with `logger.mode=disabled` become W&B runs afterwards.

Real runs, trained here by the CLI, and real offline W&B runs, read back from their transaction logs
(`wandb_log.read_run`): the logged history must hold every `metrics.csv` row and the summary every
`summary.json` value, and the run must be the one the same training logs live with `logger.mode=offline`.
W&B points at a closed local port with throw-away folders (`conftest.isolated_env`).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xablate.log_wandb import main

from .conftest import isolated_env
from .wandb_log import read_run

TINY = [
    "data=synthetic", "model.width=0.5", "model.middle_blocks=1", "trainer.threads=1", "data.holdout=64",
    "trainer.max_steps=6", "trainer.evals=2", "trainer.log_every=2",
]  # fmt: skip
"""Training rows at steps 2, 4 and 6, evaluations at 3 and 6, a test at 6: rows alone and rows sharing a step."""

HISTORY_META = {"_step", "_runtime", "_timestamp"}


def log_wandb(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m xablate.log_wandb ARGS` in `cwd`, with W&B sandboxed."""
    env = isolated_env(cwd / "wandb_home")
    command = [sys.executable, "-m", "xablate.log_wandb", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def only(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))
    return found


def offline_runs(run: Path) -> list[Path]:
    return sorted((run / "wandb").glob("offline-run-*"))


def expected_history(run: Path) -> dict[int, dict[str, float]]:
    """What W&B should hold per step, read from `metrics.csv` by hand: `<split>/<column>` for each filled cell,
    no `lr` on evaluation rows, and `trainer/step`."""
    history: dict[int, dict[str, float]] = {}
    with (run / "metrics.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            step, split = int(row.pop("step")), row.pop("split")
            values = history.setdefault(step, {"trainer/step": step})
            values.update(
                {f"{split}/{k}": float(v) for k, v in row.items() if v and not (k == "lr" and split != "train")}
            )
    return history


@dataclass(frozen=True)
class Trained:
    """The folders of the module's runs, and what logging the `disabled` ones printed."""

    root: Path
    run: Path  # trained with W&B disabled, then logged
    copy: Path  # the same cell reused in study `other`, then logged
    live: Path  # the same cell trained with W&B offline
    stdout: str
    summary_before: bytes  # run's summary.json before it was logged


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, xablate_cli: Callable[..., Any]) -> Trained:
    """One cell trained without W&B in study `default`, copied into study `other` by reuse, then logged; and the
    same cell trained with W&B offline, live, elsewhere."""
    root = tmp_path_factory.mktemp("log_wandb")
    for where, mode in (("disabled", "disabled"), ("live", "offline")):
        proc = xablate_cli(root / where, *TINY, f"logger.mode={mode}")
        assert proc.returncode == 0, proc.stderr
    proc = xablate_cli(root / "disabled", *TINY, "logger.mode=disabled", "study=other")
    assert proc.returncode == 0 and "not trained again" in proc.stdout, proc.stdout + proc.stderr
    runs = root / "disabled" / "runs"
    run = only(runs / "default", "segdw-*")
    before = (run / "summary.json").read_bytes()
    proc = log_wandb(root, runs)
    assert proc.returncode == 0, proc.stderr
    live = only(root / "live" / "runs" / "default", "segdw-*")
    return Trained(root, run, only(runs / "other", "segdw-*"), live, proc.stdout, before)


def test_a_run_trained_without_wandb_becomes_the_run_it_would_have_logged(trained: Trained) -> None:
    run, live = trained.run, trained.live
    summary = json.loads((run / "summary.json").read_text())
    run_id = f"{summary['run_key']}-1"
    assert f"{run}: logged as W&B run {run_id} (offline: wandb/offline-run-" in trained.stdout
    assert summary["wandb_id"] == run_id
    assert {**json.loads(trained.summary_before), "wandb_id": run_id} == summary  # only the id changes on disk

    (logged_dir,) = offline_runs(run)
    (live_dir,) = offline_runs(live)
    logged, reference = read_run(logged_dir), read_run(live_dir)
    for field in ("run_id", "display_name", "project", "run_group", "job_type"):
        assert getattr(logged["run"], field) == getattr(reference["run"], field), field
    assert sorted(logged["run"].tags) == sorted(reference["run"].tags)
    assert logged["metrics"] == reference["metrics"]  # trainer/step is the x-axis of train/*, val/*, test/*
    assert logged["exit_code"] == 0

    def settings(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in ("_wandb", "hydra")}

    assert settings(logged["config"]) == settings(reference["config"])
    assert logged["config"]["hydra"]["choices"] == reference["config"]["hydra"]["choices"]
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert [f"- {o}" for o in logged["config"]["hydra"]["overrides"]] == overrides.splitlines()

    history = {row["_step"]: {k: v for k, v in row.items() if k not in HISTORY_META} for row in logged["history"]}
    assert history == expected_history(run)
    assert sorted(history) == [2, 3, 4, 6]
    live_keys = {row["_step"]: set(row) - HISTORY_META for row in reference["history"]}
    assert {step: set(row) for step, row in history.items()} == live_keys

    assert {k: logged["summary"].get(k) for k in summary} == summary
    live_summary = json.loads((live / "summary.json").read_text())
    assert set(summary) == set(live_summary) and live_summary["wandb_id"] == run_id


def test_a_copy_from_another_study_adds_its_study_to_the_original_runs_tags(trained: Trained) -> None:
    run, copy = trained.run, trained.copy
    run_id = json.loads((run / "summary.json").read_text())["wandb_id"]
    assert json.loads((copy / "summary.json").read_text())["wandb_id"] == run_id
    (retag_dir,) = offline_runs(copy)
    retag = read_run(retag_dir)
    assert (retag["run"].run_id, retag["run"].run_group) == (run_id, "default")
    assert {"study:default", "study:other"} <= set(retag["run"].tags)
    assert retag["history"] == [] and set(retag["config"]) <= {"_wandb"}
    stdout = trained.stdout
    assert stdout.index(f"{run}: logged") < stdout.index(f"{copy}: logged")


def test_a_run_that_has_its_wandb_run_is_not_logged_again(trained: Trained) -> None:
    run, live = trained.run, trained.live
    proc = log_wandb(trained.root, run, live)
    assert proc.returncode == 0, proc.stderr
    for folder in (run, live):
        run_id = json.loads((folder / "summary.json").read_text())["wandb_id"]
        assert f"{folder}: already has W&B run {run_id} (wandb/offline-run-" in proc.stdout
        assert "); not logged again" in proc.stdout
        assert len(offline_runs(folder)) == 1
    assert proc.stdout.splitlines()[-1] == "xablate-log-wandb: 2 logged earlier"


def copy_run(source: Path, dest: Path, **changes: Any) -> Path:
    """`source`'s files without its W&B runs, with `changes` made to its summary."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("wandb"))
    summary = json.loads((dest / "summary.json").read_text())
    (dest / "summary.json").write_text(json.dumps({**summary, "wandb_id": None, **changes}))
    return dest


def test_a_rerun_is_its_own_run_and_earlier_attempts_are_left_alone(trained: Trained, tmp_path: Path) -> None:
    rerun = copy_run(trained.run, tmp_path / "study" / trained.run.name, attempt=2)
    copy_run(trained.run, rerun / "archive" / "20260101T000000Z")
    proc = log_wandb(tmp_path, tmp_path / "study")
    assert proc.returncode == 0, proc.stderr
    run_id = f"{rerun.name.rsplit('-', 1)[1]}-2"
    assert proc.stdout.splitlines()[0].startswith(f"{rerun}: logged as W&B run {run_id} (offline")
    assert read_run(only(rerun / "wandb", "offline-run-*"))["run"].run_id == run_id
    assert not (rerun / "archive" / "20260101T000000Z" / "wandb").exists()


def test_folders_that_are_not_completed_runs_are_named_and_skipped(trained: Trained, tmp_path: Path) -> None:
    study = tmp_path / "study"
    interrupted = copy_run(trained.run, study / "a", status="interrupted")
    no_metrics = copy_run(trained.run, study / "b")
    (no_metrics / "metrics.csv").unlink()
    no_config = copy_run(trained.run, study / "c")
    shutil.rmtree(no_config / ".hydra")
    proc = log_wandb(tmp_path, study)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{interrupted}: skipped: status interrupted: only completed runs are logged",
        f"{no_metrics}: skipped: no metrics.csv",
        f"{no_config}: skipped: no .hydra/config.yaml",
        "xablate-log-wandb: 3 skipped",
    ]
    assert not list(study.glob("*/wandb"))


def test_online_without_a_server_logs_offline_with_one_warning(trained: Trained, tmp_path: Path) -> None:
    run = copy_run(trained.run, tmp_path / "study" / trained.run.name)
    proc = log_wandb(tmp_path, run, "--mode", "online")
    assert proc.returncode == 0, proc.stderr
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("xablate-log-wandb: warning: W&B online failed") and "wandb sync" in warning
    assert "(offline: wandb/offline-run-" in proc.stdout
    assert read_run(only(run / "wandb", "offline-run-*"))["history"]


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    cases = {
        (str(tmp_path / "missing"),): "does not exist",
        (str(tmp_path / "file"),): "is not a folder",
        (str(tmp_path / "empty"),): "no run folders in",
        (str(tmp_path / "empty"), "--mode", "disabled"): "invalid choice: 'disabled'",
        (): "the following arguments are required: RUNS",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        stderr = capsys.readouterr().err
        assert exit_.value.code == 2 and len(stderr.splitlines()) == 1, stderr
        assert stderr.startswith("xablate-log-wandb: error: ") and message in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]


def test_with_log_model_the_checkpoint_becomes_the_model_artifact(trained: Trained, tmp_path: Path) -> None:
    run = copy_run(trained.run, tmp_path / "study" / trained.run.name)
    config = run / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("log_model: false", "log_model: true"))
    proc = log_wandb(tmp_path, run)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads((run / "summary.json").read_text())["wandb_id"]
    (artifact,) = read_run(only(run / "wandb", "offline-run-*"))["artifacts"]
    assert (artifact.name, artifact.type, list(artifact.aliases)) == (f"model-{run_id}", "model", ["latest"])
    assert [entry.path for entry in artifact.manifest.contents] == ["checkpoint.pt"]
