"""Training runs end to end: real data, the files a run leaves, resume, failure, skip and re-run."""

from __future__ import annotations

import csv
import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from xablate.cell.lifecycle import run
from xablate.data import build_loaders
from xablate.engine.build import evaluate
from xablate.engine.checkpoint import load_checkpoint
from xablate.engine.log import COLUMNS
from xablate.engine.progress import Progress
from xablate.engine.runtime import cpu_model, deterministic
from xablate.engine.schedule import Schedule
from xablate.model.xception import create_model
from xablate.spec.architecture import model_kwargs

TINY = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "logger.mode=disabled", "trainer.threads=1"]
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_short_fashion_mnist_run_beats_chance_and_leaves_its_files(tmp_path: Path, compose_cfg: Any) -> None:
    cfg = compose_cfg(
        "data.train_subset=4096", "data.val_subset=1000", "data.batch_size=128", "trainer.epochs=2",
        "trainer.log_every=8", "model.width=0.5", "logger.mode=disabled", "trainer.threads=1",
        "reuse=false",  # other pytest sessions' folders sit beside tmp_path: never copy one of those
    )  # fmt: skip
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert summary["steps"] == 64
    assert summary["val_top1"] > 0.5, "10 classes: chance is 0.1"
    assert summary["best_val_top1"] >= summary["val_top1"]
    assert summary["train_img_per_s"] > 0 and summary["wall_s"] >= summary["train_s"] > 0
    for key in ("segments", "activation", "residual", "seed", "params", "macs", "val_loss"):
        assert key in summary
    assert json.loads((tmp_path / "summary.json").read_text()) == summary

    rows = read_metrics(tmp_path)
    assert tuple(rows[0]) == COLUMNS
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    assert [int(r["step"]) for r in train] == list(range(8, 65, 8))
    assert [int(r["step"]) for r in val] == [32, 64]
    assert float(val[-1]["top1"]) == pytest.approx(summary["val_top1"], abs=1e-6)
    assert all(float(r["img_per_s"]) > 0 for r in train)

    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["packages"]["torch"] and prov["git"]["commit"]
    assert prov["processor"] == cpu_model()
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert (tmp_path / "checkpoint.pt").stat().st_size > 0


@pytest.mark.parametrize(
    "extra",
    [pytest.param([], id="plain"), pytest.param(["optim.polyak_decay=0.9"], id="polyak", marks=pytest.mark.slow)],
)
def test_interrupted_run_resumes_to_the_same_numbers(
    tmp_path: Path, extra: list[str], xablate_cli: Any, run_dirs: Any
) -> None:
    args = [*TINY, "trainer.epochs=4", "trainer.eval_every=8", "trainer.log_every=2", "data.batch_size=32", *extra]
    straight = xablate_cli(tmp_path / "a", *args)
    assert straight.returncode == 0, straight.stderr
    (reference,) = list(run_dirs(tmp_path / "a" / "runs" / "default").values())

    cmd = [sys.executable, "-m", "xablate", *args, f"out_dir={tmp_path / 'b' / 'runs'}"]
    (tmp_path / "b").mkdir()
    proc = subprocess.Popen(cmd, cwd=tmp_path / "b", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "b" / "runs").glob("*/*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    (resumed_dir,) = list(run_dirs(tmp_path / "b" / "runs" / "default").values())
    interrupted = json.loads((resumed_dir / "summary.json").read_text())
    assert interrupted["status"] == "interrupted", "the signal came too late to test resuming"
    assert proc.returncode != 0
    assert 0 < interrupted["steps"] < interrupted["total_steps"]

    again = xablate_cli(tmp_path / "b", *args)
    assert again.returncode == 0, again.stderr
    assert "resuming from step" in again.stdout + again.stderr
    final = json.loads((resumed_dir / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert final["status"] == "completed"
    for key in ("steps", "val_top1", "val_top5", "val_loss", "best_val_top1"):
        assert final[key] == expected[key], key

    def numbers(rows: list[dict[str, str]]) -> list[tuple]:
        return [(r["step"], r["split"], r["loss"], r["top1"], r["top5"], r["lr"]) for r in rows]

    assert numbers(read_metrics(resumed_dir)) == numbers(read_metrics(reference))


def test_polyak_averaging_is_what_the_evaluations_measure(
    tmp_path: Path, compose_cfg: Any, xablate_cli: Any, run_dirs: Any
) -> None:
    args = [*TINY, "trainer.epochs=2", "optim.polyak_decay=0.9"]
    result = xablate_cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = list(run_dirs(tmp_path / "runs" / "default").values())
    summary = json.loads((run_dir / "summary.json").read_text())
    ckpt = load_checkpoint(run_dir / "checkpoint.pt", torch.device("cpu"))
    assert ckpt is not None and int(ckpt["averaged"]["n_averaged"]) == summary["steps"]
    averaged = {k.removeprefix("module."): v for k, v in ckpt["averaged"].items() if k != "n_averaged"}
    cfg = compose_cfg(*args)
    kwargs = model_kwargs(cfg)
    model = create_model(kwargs.pop("name"), **kwargs).to(memory_format=torch.channels_last)
    _, val_loader, _ = build_loaders(cfg.data, seed=cfg.seed, device=torch.device("cpu"))
    losses = {}
    for name, weights in (("averaged", averaged), ("raw", ckpt["model"])):
        model.load_state_dict(weights)
        losses[name] = evaluate(model, val_loader, torch.device("cpu"), "32")["loss"]
    assert losses["averaged"] == pytest.approx(summary["val_loss"], rel=1e-5)
    assert losses["raw"] != pytest.approx(summary["val_loss"], rel=1e-3)


def test_non_finite_loss_fails_the_run_and_keeps_its_files(tmp_path: Path, xablate_cli: Any, run_dirs: Any) -> None:
    result = xablate_cli(tmp_path, *TINY, "optim.lr=1e30", "optim.warmup_steps=0", "trainer.log_every=1",
                 "trainer.epochs=2", "trainer.eval_every=1")  # fmt: skip
    assert result.returncode == 1
    (run_dir,) = list(run_dirs(tmp_path / "runs" / "default").values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "loss became" in summary["error"] and ("nan" in summary["error"] or "inf" in summary["error"])
    rows = read_metrics(run_dir)
    assert rows and tuple(rows[0]) == COLUMNS
    assert "failed" in result.stdout + result.stderr


def test_completed_run_is_skipped_and_rerun_keeps_the_old_results(
    tmp_path: Path, xablate_cli: Any, run_dirs: Any
) -> None:
    args = [*TINY, "trainer.epochs=1"]
    assert xablate_cli(tmp_path, *args).returncode == 0
    (run_dir,) = list(run_dirs(tmp_path / "runs" / "default").values())
    first = (run_dir / "summary.json").read_text()

    second = xablate_cli(tmp_path, *args)
    assert second.returncode == 0
    assert "already completed" in second.stdout
    assert (run_dir / "summary.json").read_text() == first

    third = xablate_cli(tmp_path, *args, "rerun=true")
    assert third.returncode == 0, third.stderr
    (archived,) = (run_dir / "archive").iterdir()
    assert (archived / "summary.json").read_text() == first
    assert (archived / "metrics.csv").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_missing_fashion_mnist_is_one_line_naming_the_path_and_the_fixes(tmp_path: Path, xablate_cli: Any) -> None:
    result = xablate_cli(tmp_path, "data.root=/nonexistent/fmnist")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "/nonexistent/fmnist" in lines[0]
    assert "apt-get install dataset-fashion-mnist" in lines[0] and "data.root=" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_schedules_are_pure_functions_of_the_step() -> None:
    cosine = Schedule("cosine", 0.2, total_steps=110, warmup_steps=10)
    assert cosine(0) == pytest.approx(0.02)
    assert cosine(9) == pytest.approx(0.2)
    assert cosine(10) == pytest.approx(0.2)
    assert cosine(60) == pytest.approx(0.1)
    assert cosine(110) == pytest.approx(0.0, abs=1e-12)
    shuffled = random.Random(0).sample(range(110), 110)
    called_out_of_order = {s: cosine(s) for s in shuffled}
    fresh = Schedule("cosine", 0.2, total_steps=110, warmup_steps=10)
    assert called_out_of_order == {s: fresh(s) for s in range(110)}, "a resumed run rebuilds the schedule"
    assert all(cosine(s) >= cosine(s + 1) for s in range(10, 110))
    paper = Schedule("step", 0.045, total_steps=10_000, decay_rate=0.94, decay_every=500)
    assert paper(499) == pytest.approx(0.045)
    assert paper(500) == pytest.approx(0.045 * 0.94)
    assert paper(2600) == pytest.approx(0.045 * 0.94**5)
    assert Schedule("constant", 0.1, total_steps=5)(4) == 0.1
    assert all(math.isfinite(cosine(s)) for s in range(200))


def test_paper_recipes_compose(compose_cfg: Any) -> None:
    sgd = compose_cfg("optim=paper_sgd")
    assert (sgd.optim.lr, sgd.optim.momentum, sgd.optim.weight_decay) == (0.045, 0.9, 1e-5)
    assert (sgd.optim.schedule, sgd.optim.decay_rate, sgd.optim.decay_epochs) == ("step", 0.94, 2)
    assert sgd.model.drop_rate == 0.5
    rms = compose_cfg("optim=paper_rmsprop")
    assert (rms.optim.name, rms.optim.lr, rms.optim.decay_rate, rms.optim.decay_samples) == (
        "rmsprop", 0.001, 0.9, 3_000_000,
    )  # fmt: skip
    assert rms.model.drop_rate == 0.0


def test_bf16_precision_trains_on_cpu(tmp_path: Path, xablate_cli: Any, run_dirs: Any) -> None:
    result = xablate_cli(tmp_path, *TINY, "trainer.epochs=1", "trainer.precision=bf16")
    assert result.returncode == 0, result.stderr
    (run_dir,) = list(run_dirs(tmp_path / "runs" / "default").values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["precision"]) == ("completed", "bf16")
    assert math.isfinite(summary["val_loss"])


def test_deterministic_leaves_the_cpu_alone() -> None:
    deterministic(torch.device("cpu"), True)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_seed_same_numbers_on_cuda(tmp_path: Path, xablate_cli: Any, run_dirs: Any) -> None:
    """cuDNN picks nondeterministic kernels by default; `trainer.deterministic` (on by default) must not."""
    summaries = []
    for attempt in ("a", "b"):
        result = xablate_cli(
            tmp_path / attempt, *TINY, "trainer.device=cuda", "trainer.epochs=2", "data.crop_padding=2"
        )
        assert result.returncode == 0, result.stderr
        (run_dir,) = list(run_dirs(tmp_path / attempt / "runs" / "default").values())
        summaries.append(json.loads((run_dir / "summary.json").read_text()))
        assert summaries[-1]["device"] == "cuda"
    for key in ("val_loss", "val_top1", "val_top5"):
        assert summaries[0][key] == summaries[1][key], key


def test_progress_bar_on_a_terminal_and_one_line_per_evaluation_in_a_log(capsys: pytest.CaptureFixture) -> None:
    bar = Progress("seg4-none-res-s0", total_steps=100, interactive=True)
    bar.step(40, img_per_s=512.0, train_s=20.0, steps_done_here=40)
    drawn = capsys.readouterr().err
    assert "40/100" in drawn and "512 img/s" in drawn and "ETA 0m30s" in drawn
    log = Progress("seg4-none-res-s0", total_steps=100, interactive=False)
    log.step(41, img_per_s=512.0, train_s=20.5, steps_done_here=41)
    log.evaluation(50, 1.0, {"loss": 0.5, "img_per_s": 500.0}, {"loss": 0.4, "top1": 0.9}, 30.0, 30.0)
    out = capsys.readouterr()
    assert out.err == ""
    (line,) = out.out.strip().splitlines()
    assert "step 50/100" in line and "top1 90.00%" in line and "500 img/s" in line and "ETA 0m30s" in line


def test_an_evaluation_line_names_the_step_of_an_earlier_training_loss(
    tmp_path: Path, xablate_cli: Any, run_dirs: Any
) -> None:
    """Evaluations at steps 3 and 6, training rows at 2, 4 and 6: the line at step 3 shows step 2's loss and
    says so; the line at step 6 shows that step's own loss, unlabelled."""
    args = [*TINY, "trainer.max_steps=6", "trainer.evals=2", "trainer.log_every=2", "trainer.progress=false"]
    result = xablate_cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs" / "default").values()
    train = {int(r["step"]): float(r["loss"]) for r in read_metrics(run_dir) if r["split"] == "train"}
    lines = {int(line.split()[2].split("/")[0]): line for line in result.stdout.splitlines() if " val loss " in line}
    assert sorted(lines) == [3, 6]
    shown = {step: line.split("| train loss ")[1].split(" | ")[0].split() for step, line in lines.items()}
    assert shown[3][1:] == ["(step", "2)"] and float(shown[3][0]) == pytest.approx(train[2], abs=1e-4)
    assert len(shown[6]) == 1 and float(shown[6][0]) == pytest.approx(train[6], abs=1e-4)


def test_evenly_spaced_evaluations_a_final_test_and_the_unsmoothed_ce(
    tmp_path: Path, xablate_cli: Any, run_dirs: Any
) -> None:
    args = [*TINY, "data.holdout=64", "trainer.evals=5", "trainer.epochs=3", "trainer.log_every=3"]
    result = xablate_cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs" / "default").values()
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir)
    total = summary["total_steps"]
    assert [int(r["step"]) for r in rows if r["split"] == "val"] == [round(total * k / 5) for k in range(1, 6)]
    (test,) = [r for r in rows if r["split"] == "test"]
    assert int(test["step"]) == total and float(test["top1"]) == pytest.approx(summary["test_top1"], abs=1e-6)
    assert summary["holdout"] == 64 and summary["torch"] == torch.__version__ and summary["threads"] == 1
    assert 0 < summary["eval_s"] < summary["wall_s"]
    train = [r for r in rows if r["split"] == "train"]
    assert all(float(r["ce"]) < float(r["loss"]) for r in train), "label smoothing 0.1 raises the objective"
    assert all(r["ce"] == "" for r in rows if r["split"] != "train")


def test_test_every_eval_tests_at_every_evaluation(tmp_path: Path, xablate_cli: Any, run_dirs: Any) -> None:
    result = xablate_cli(tmp_path, *TINY, "data.holdout=64", "trainer.evals=3", "trainer.test_every_eval=true")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs" / "default").values()
    rows = read_metrics(run_dir)
    steps = {split: [int(r["step"]) for r in rows if r["split"] == split] for split in ("val", "test")}
    assert len(steps["val"]) == 3 and steps["test"] == steps["val"]


def test_the_evaluation_batch_size_does_not_change_what_is_measured(compose_cfg: Any) -> None:
    """`data.eval_batch_size` stays out of the run key: only the batching of the evaluation differs."""
    cfg = compose_cfg(*TINY, "data.holdout=64")
    kwargs = model_kwargs(cfg)
    model = create_model(kwargs.pop("name"), **kwargs).to(memory_format=torch.channels_last)
    results = []
    for size in (7, None):
        cfg.data.eval_batch_size = size
        _, val_loader, _ = build_loaders(cfg.data, seed=cfg.seed, device=torch.device("cpu"))
        sizes = {y.shape[0] for _, y in val_loader.batches(0)}
        assert max(sizes) == (size or cfg.data.batch_size)
        results.append(evaluate(model, val_loader, torch.device("cpu"), "32", memory_format=torch.channels_last))
    assert results[0]["top1"] == results[1]["top1"]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)


def test_without_label_smoothing_the_ce_is_the_loss(tmp_path: Path, xablate_cli: Any, run_dirs: Any) -> None:
    result = xablate_cli(tmp_path, *TINY, "optim.label_smoothing=0", "trainer.epochs=1", "trainer.log_every=2")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs" / "default").values()
    train = [r for r in read_metrics(run_dir) if r["split"] == "train"]
    assert train and all(float(r["ce"]) == pytest.approx(float(r["loss"]), rel=1e-4) for r in train)
    assert not [r for r in read_metrics(run_dir) if r["split"] == "test"], "holdout=0: no separate test split"


def test_too_many_evaluations_for_the_budget_is_one_line(tmp_path: Path, xablate_cli: Any) -> None:
    result = xablate_cli(tmp_path, *TINY, "trainer.max_steps=3", "trainer.evals=5")
    assert result.returncode != 0
    assert "trainer.evals=5 is more than the run's 3 steps" in result.stdout + result.stderr
