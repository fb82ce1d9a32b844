"""The W&B tracker against real offline W&B runs, read back from their transaction logs.

wandb 0.31 writes an offline run only as `run-<id>.wandb` (no `files/config.yaml` or `files/wandb-summary.json`
until it is synced), so `read_run` below decodes that log: the LevelDB-style record framing W&B uses, each
record one `wandb.proto.wandb_internal_pb2.Record`.

Every test runs with W&B pointed at a closed local port and with its config, cache and netrc in a temporary
folder, so nothing here can reach the internet or read a real API key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from xablate.engine.tracking import Tracker
from xablate.spec.cell import Cell, run_key
from xablate.spec.resolvers import register_resolvers
from xablate.spec.schema import register_configs

from .wandb_log import BLOCK_LEN, read_run

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once
FAKE_API_KEY = "x" * 40


@pytest.fixture(scope="module", autouse=True)
def wandb_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point W&B at a closed local port and at throw-away config folders, for every test in this module.

    The environment is read once per process by W&B's singleton, so the service is torn down on both sides
    to make sure it starts with (and does not outlive) this environment."""
    home = tmp_path_factory.mktemp("wandb_home")
    wandb.teardown()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("API_KEY", "IDENTITY_TOKEN_FILE", "MODE", "DIR", "RUN_ID", "RESUME", "INIT_TIMEOUT", "SERVICE"):
            mp.delenv(f"WANDB_{name}", raising=False)
        mp.setenv("WANDB_BASE_URL", CLOSED_PORT_URL)
        mp.setenv("WANDB_CONFIG_DIR", str(home / "config"))
        mp.setenv("WANDB_CACHE_DIR", str(home / "cache"))
        mp.setenv("WANDB_DATA_DIR", str(home / "data"))
        mp.setenv("NETRC", str(home / "netrc"))
        yield
        wandb.teardown()


def make_cfg(*overrides: str) -> DictConfig:
    """A config composed as the CLI composes it, `hydra` node included (the tracker must leave it out)."""
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["segments=4", "activation=relu", *overrides], return_hydra_config=True)


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    return make_cfg("logger.mode=offline")


def tracker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("xablate.") and r.levelno >= logging.WARNING]


# Tests ------------------------------------------------------------------------------------------------------------


def test_offline_run_holds_config_tags_history_and_summary(
    cfg: DictConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
        assert tracker.mode == "offline"
        for step in range(0, 3001, 10):  # enough rows for the log to span several 32 KiB blocks
            tracker.log({"train/loss": 1.0 / (step + 1), "train/lr": 0.2}, step=step)
            if step % 1000 == 0 and step:
                tracker.log({"val/acc": step / 10_000, "val/loss": 0.5}, step=step)
        tracker.set_summary({"status": "completed", "best_val_acc": 0.3, "params": 1234})

    key = f"{run_key(cfg)}-1"
    assert tracker.run_id == key
    assert tracker.run_dir is not None and tracker.run_dir.parent == tmp_path / "wandb"
    assert tracker.run_dir.name.startswith("offline-run-") and tracker.run_dir.name.endswith(f"-{key}")
    assert tracker.sync_command == f"wandb sync {tracker.run_dir}"
    assert tracker_warnings(caplog) == []

    run = read_run(tracker.run_dir)
    assert run["run"].run_id == key
    assert run["run"].display_name == "seg4-relu-res-s0"
    assert (run["run"].project, run["run"].run_group, run["run"].job_type) == ("xablate", "default", "train")
    assert {
        "segments=4", "activation=relu", "residual=true", "seed=0", "model=xception_mini", "data=fashion_mnist",
    } <= set(run["run"].tags)  # fmt: skip
    assert "study:default" in run["run"].tags
    config = run["config"]
    assert (config["segments"], config["activation"], config["residual"]) == (4, "relu", True)
    assert config["model"]["name"] == "xception_mini" and config["optim"]["lr"] == 0.2

    assert (tracker.run_dir / f"run-{key}.wandb").stat().st_size > 2 * BLOCK_LEN
    steps = [row["_step"] for row in run["history"]]
    assert steps == list(range(0, 3001, 10))  # one row per step: val merged into train's row, on the same x
    rows = {row["_step"]: row for row in run["history"]}
    assert rows[2000]["val/acc"] == pytest.approx(0.2) and rows[2000]["train/loss"] == pytest.approx(1 / 2001)
    assert [step for step, row in rows.items() if "val/acc" in row] == [1000, 2000, 3000]

    summary = run["summary"]
    assert (summary["status"], summary["best_val_acc"], summary["params"]) == ("completed", 0.3, 1234)
    assert summary["train/loss"] == pytest.approx(1 / 3001) and summary["val/acc"] == pytest.approx(0.3)
    assert summary["_step"] == 3000
    assert run["exit_code"] == 0


def test_the_wandb_config_holds_the_run_and_hydras_choices_not_the_internal_knobs(tmp_path: Path) -> None:
    cfg = make_cfg("logger.mode=offline", "optim=paper_sgd", "rerun=true", "trainer.epochs=3")
    with Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
        tracker.log({"train/loss": 1.0}, step=0)
    assert tracker.run_dir is not None
    config = read_run(tracker.run_dir)["config"]
    assert not {"dry_run", "rerun", "reuse", "out_dir", "logger"} & set(config)
    assert {"segments", "activation", "residual", "seed", "study", "model", "data", "optim", "trainer"} <= set(config)
    assert config["trainer"]["epochs"] == 3
    assert config["hydra"]["choices"]["optim"] == "paper_sgd" and config["hydra"]["choices"]["model"] == "xception_mini"
    assert config["hydra"]["overrides"] == ["segments=4", "activation=relu", "logger.mode=offline", "optim=paper_sgd",
                                            "rerun=true", "trainer.epochs=3"]  # fmt: skip
    assert set(config["hydra"]) == {"choices", "overrides"}


def test_log_model_logs_the_checkpoint_as_a_model_artifact(cfg: DictConfig, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights" * 100)
    with Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
        tracker.log({"train/loss": 1.0}, step=0)
        tracker.log_model(checkpoint, {"steps": 8})
    assert tracker.run_dir is not None
    (artifact,) = read_run(tracker.run_dir)["artifacts"]
    assert (artifact.name, artifact.type, list(artifact.aliases)) == (f"model-{tracker.run_id}", "model", ["latest"])
    assert [entry.path for entry in artifact.manifest.contents] == ["checkpoint.pt"]
    assert json.loads(artifact.metadata) == {"steps": 8}


def test_disabled_writes_nothing_and_every_method_works(tmp_path: Path) -> None:
    cfg = make_cfg("logger.mode=disabled")
    tracker = Tracker(cfg, Cell.of(cfg), tmp_path)
    tracker.log({"train/loss": 1.0}, step=0)
    tracker.set_summary({"status": "completed"})
    tracker.finish()
    tracker.finish()
    assert (tracker.mode, tracker.run_dir, tracker.sync_command) == ("disabled", None, None)
    assert list(tmp_path.iterdir()) == []


def test_reopening_the_same_attempt_continues_its_run_id_and_the_next_attempt_is_a_new_run(
    cfg: DictConfig, tmp_path: Path
) -> None:
    trackers = []
    for attempt, step in ((1, 10), (1, 20), (2, 5)):  # a resume of attempt 1 (a second folder, same id), rerun
        tracker = Tracker(cfg, Cell.of(cfg), tmp_path, attempt=attempt)
        tracker.log({"train/loss": 1.0 / step}, step=step)
        tracker.finish()
        trackers.append(tracker)

    assert len({tracker.run_dir for tracker in trackers}) == 3
    logs = [read_run(tracker.run_dir) for tracker in trackers if tracker.run_dir is not None]
    key = run_key(cfg)
    assert [log["run"].run_id for log in logs] == [f"{key}-1", f"{key}-1", f"{key}-2"]
    assert [[row["_step"] for row in log["history"]] for log in logs] == [[10], [20], [5]]
    assert [log["exit_code"] for log in logs] == [0, 0, 0]


def test_retag_updates_another_runs_tags_only(cfg: DictConfig, tmp_path: Path) -> None:
    cell = Cell.of(cfg)
    tracker = Tracker(cfg, cell, tmp_path, retag=("abc-1", "fig9"), studies=("fig9", "fig11"))
    tracker.finish()
    assert tracker.run_dir is not None
    run = read_run(tracker.run_dir)
    assert (run["run"].run_id, run["run"].run_group) == ("abc-1", "fig9")
    assert {"study:fig9", "study:fig11", "segments=4"} <= set(run["run"].tags)
    assert set(run["config"]) <= {"_wandb"} and run["history"] == []  # no config of its own to overwrite


@pytest.mark.parametrize("api_key", [FAKE_API_KEY, None], ids=["server-unreachable", "no-api-key"])
def test_online_without_network_falls_back_to_offline_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, api_key: str | None
) -> None:
    if api_key is not None:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    wandb.teardown()  # W&B reads the environment once per process: start afresh with the key (or without)
    assert wandb.setup().settings.base_url == CLOSED_PORT_URL  # never the real server
    cfg = make_cfg("logger.mode=online")
    start = time.perf_counter()
    try:
        with Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
            tracker.log({"train/loss": 1.0}, step=0)
        elapsed = time.perf_counter() - start
    finally:
        wandb.teardown()

    assert elapsed < 15
    assert tracker.mode == "offline"
    warnings = tracker_warnings(caplog)
    assert len(warnings) == 1 and "offline" in warnings[0] and "wandb sync" in warnings[0]
    assert tracker.run_dir is not None and tracker.run_dir.name.startswith("offline-run-")
    run = read_run(tracker.run_dir)
    assert run["run"].run_id == f"{run_key(cfg)}-1"
    assert [row["_step"] for row in run["history"]] == [0]
    assert run["exit_code"] == 0


def test_an_exception_in_the_block_fails_the_run_and_propagates(cfg: DictConfig, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="diverged"), Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
        tracker.log({"train/loss": 1.0}, step=0)
        raise RuntimeError("loss diverged")
    tracker.log({"train/loss": 2.0}, step=1)  # after finish: a no-op
    tracker.finish()

    assert tracker.run_dir is not None
    run = read_run(tracker.run_dir)
    assert run["exit_code"] == 1
    assert [row["_step"] for row in run["history"]] == [0]


def test_a_wandb_error_becomes_one_warning_and_turns_tracking_off(
    cfg: DictConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker(cfg, Cell.of(cfg), tmp_path)
    tracker.log({"train/loss": 1.0}, step=0)
    wandb.teardown()  # finishes every run behind the tracker's back: the next W&B call raises
    tracker.log({"train/loss": 0.5}, step=1)
    tracker.log({"train/loss": 0.4}, step=2)
    tracker.set_summary({"status": "completed"})
    tracker.finish()

    warnings = tracker_warnings(caplog)
    assert len(warnings) == 1 and "tracking is off" in warnings[0]
    assert tracker.run_dir is not None
    assert [row["_step"] for row in read_run(tracker.run_dir)["history"]] == [0]


def test_a_decreasing_step_is_dropped_with_one_warning(
    cfg: DictConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Tracker(cfg, Cell.of(cfg), tmp_path) as tracker:
        tracker.log({"train/loss": 1.0}, step=100)
        tracker.log({"val/acc": 0.5}, step=100)
        tracker.log({"train/loss": 2.0}, step=50)
        tracker.log({"train/loss": 3.0}, step=60)
        tracker.log({"train/loss": 0.9}, step=150)

    assert len(tracker_warnings(caplog)) == 1
    assert tracker.run_dir is not None
    assert [row["_step"] for row in read_run(tracker.run_dir)["history"]] == [100, 150]
