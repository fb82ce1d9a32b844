"""`trainer.stack=K`: K seeds of a cell trained as one folded model, each seed as its own run would be.

Correctness against K separate runs: the same initial weights bit for bit, the same first steps' losses and
gradients to fp32 rounding, a short run's curves within a stated tolerance; then the files each seed keeps
(an ordinary run folder the analysis reads), resume after a kill, and the refusals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis.load import load_local
from xablate.engine.build import StepParts, build_engine, train_step
from xablate.engine.stack import StackedLoss, build_stack_engine, seat_states
from xablate.errors import ConfigError
from xablate.model import create_model
from xablate.model.stack import fold, unfold
from xablate.spec.resolvers import register_resolvers
from xablate.spec.schema import register_configs
from xablate.spec.validate import validate
from xablate.sweep.check import check_command

from .conftest import compose_config, isolated_env, read_summaries, run_cli

K = 3
TINY = ("data=synthetic", "data.train_subset=96", "data.val_subset=64", "data.batch_size=32", "trainer.device=cpu")


@pytest.mark.parametrize("segments", [1, 4, "depthwise"])
@pytest.mark.parametrize("order", ["depthwise_first", "pointwise_first"])
def test_folded_model_computes_each_seeds_model_exactly(segments: object, order: str) -> None:
    """In float64, where rounding cannot flip a ReLU: outputs and every parameter's gradient per seed."""
    kwargs = dict(num_classes=10, in_chans=1, segments=segments, order=order, mid_norm=True, budget="params")
    models = []
    for seed in range(K):
        torch.manual_seed(seed)
        models.append(create_model("xception_mini", **kwargs).double())
    folded = create_model("xception_mini", stack=K, **kwargs).double()
    folded.load_state_dict(fold([m.state_dict() for m in models]))
    for seat, model in zip(unfold(folded.state_dict(), K), models, strict=True):
        assert all(torch.equal(seat[name], value) for name, value in model.state_dict().items())
    images = [torch.randn(4, 1, 28, 28, dtype=torch.float64) for _ in range(K)]
    labels = torch.randint(0, 10, (4, K))
    logits = folded(torch.cat(images, 1))
    assert logits.shape == (4, K, 10)
    StackedLoss(0.1)(logits, labels).sum().backward()
    for i, (model, x) in enumerate(zip(models, images, strict=True)):
        alone = model(x)
        torch.testing.assert_close(logits[:, i], alone, rtol=1e-10, atol=1e-12)
        torch.nn.functional.cross_entropy(alone, labels[:, i], label_smoothing=0.1).backward()
        for (name, p), q in zip(model.named_parameters(), folded.parameters(), strict=True):
            torch.testing.assert_close(q.grad.chunk(K)[i], p.grad, rtol=1e-9, atol=1e-12, msg=name)


def _cells(*overrides: str) -> tuple[list, list]:
    cfgs = [compose_config(*TINY, "data.batch_size=8", *overrides, f"seed={seed}", f"trainer.stack={K}")
            for seed in range(K)]  # fmt: skip
    return cfgs, [validate(cfg) for cfg in cfgs]


def _double(parts: StepParts) -> None:
    """The engine's model (and Polyak copy) in float64, in place: the optimiser keeps the same parameters."""
    parts.model.double()
    if parts.averaged is not None:
        parts.averaged.double()


@pytest.mark.parametrize(
    "overrides",
    [("segments=depthwise",), ("segments=4", "budget=params", "optim.label_smoothing=0.1", "optim.polyak_decay=0.9"),
     ("segments=1", "order=pointwise_first", "activation=relu", "optim=paper_rmsprop")],
)  # fmt: skip
def test_each_seed_takes_its_own_runs_steps(overrides: tuple[str, ...]) -> None:
    """Engines as runs build them (the same initial weights bit for bit, the same batches), then three steps in
    float64, where rounding cannot flip a ReLU: each seed's loss, gradients, weights, optimiser state and
    Polyak average equal its own run's. (In fp32 a ReLU input within rounding of 0 lets one element's gradient
    through in one path and not the other, which moved earlier layers' gradients by up to 1%: the short-run
    test below bounds where fp32 ends.)"""
    cfgs, cells = _cells(*overrides)
    device = torch.device("cpu")
    alone = [build_engine(cfg, cell, device) for cfg, cell in zip(cfgs, cells, strict=True)]
    stack = build_stack_engine(cfgs[0], cells, device)
    for seat, engine in zip(seat_states(stack.parts, K), alone, strict=True):
        assert all(torch.equal(seat["model"][n], v) for n, v in engine.parts.model.state_dict().items())
    for parts in (stack.parts, *(engine.parts for engine in alone)):
        _double(parts)
    batches = [engine.loaders.train.batches(0) for engine in alone]
    for step, (x, y) in zip(range(3), stack.loaders.train.batches(0), strict=False):
        lr = stack.schedule(step)
        losses, _ = train_step(stack.parts, x.double(), y, lr)
        for i, (engine, it) in enumerate(zip(alone, batches, strict=True)):
            xi, yi = next(it)
            assert torch.equal(x[:, i : i + 1], xi) and torch.equal(y[:, i], yi)  # its own shuffle and augmentation
            loss, _ = train_step(engine.parts, xi.double(), yi, lr)
            torch.testing.assert_close(losses[i], loss, rtol=1e-10, atol=0)
            folded = [p.grad.chunk(K)[i] for p in stack.parts.model.parameters()]
            for (name, p), grad in zip(engine.parts.model.named_parameters(), folded, strict=True):
                torch.testing.assert_close(grad, p.grad, rtol=1e-8, atol=1e-12, msg=f"step {step}: {name}")
    for seat, engine in zip(seat_states(stack.parts, K), alone, strict=True):
        theirs = engine.parts.state_dict()
        torch.testing.assert_close(seat["model"], theirs["model"], rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(seat["optimizer"]["state"], theirs["optimizer"]["state"], rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(seat.get("averaged"), theirs.get("averaged"), rtol=1e-8, atol=1e-12)


SHORT = (*TINY, "trainer.max_steps=24", "trainer.evals=3", "trainer.threads=1", "segments=1,depthwise")


def _curves(study: Path) -> dict[str, list[float]]:
    out = {}
    for folder in sorted(study.glob("seg*")):
        rows = (folder / "metrics.csv").read_text().splitlines()[1:]
        out[folder.name] = [float(r.split(",")[3]) for r in rows if ",val," in r]
    return out


@pytest.mark.slow
def test_stacked_sweep_writes_each_seed_an_ordinary_run_that_matches_its_own(tmp_path: Path) -> None:
    """Per seed, every evaluation's validation loss within 1% of the separately trained run's (24 steps: the
    fp32 rounding of other kernels grows, as it does between two thread counts), and every file of a run."""
    stacked = run_cli(tmp_path, "-m", *SHORT, "seed=0,1,2", "trainer.stack=3", "study=stacked")
    assert stacked.returncode == 0, stacked.stderr[-3000:]
    alone = run_cli(tmp_path, "-m", *SHORT, "seed=0,1,2", "study=alone", "logger.mode=disabled")
    assert alone.returncode == 0, alone.stderr[-3000:]
    runs = tmp_path / "runs"
    ours, theirs = read_summaries(runs / "stacked"), read_summaries(runs / "alone")
    assert len(ours) == 6 and {s["status"] for s in ours.values()} == {"completed"}
    assert {s["stack"] for s in ours.values()} == {3} and {s["stack"] for s in theirs.values()} == {1}
    assert sorted(s["run_key"] for s in ours.values()) == sorted(s["run_key"] for s in theirs.values())
    for name, summary in ours.items():
        folder = runs / "stacked" / name
        assert (folder / "checkpoint.pt").is_file() and (folder / ".hydra" / "config.yaml").is_file()
        assert summary["wandb_id"] == f"{summary['run_key']}-1"
        assert len(list(folder.glob(f"wandb/offline-run-*-{summary['wandb_id']}/*.wandb"))) == 1
    for (name, ours_curve), theirs_curve in zip(
        _curves(runs / "stacked").items(), _curves(runs / "alone").values(), strict=True
    ):
        assert len(ours_curve) == 3
        torch.testing.assert_close(torch.tensor(ours_curve), torch.tensor(theirs_curve), rtol=1e-2, atol=0, msg=name)
    loaded = load_local([runs / "stacked"])
    assert len(loaded.runs) == 6 and set(loaded.runs["stack"]) == {3}


@pytest.mark.slow
def test_a_killed_stack_resumes_and_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    args = [*TINY, "trainer.max_steps=60", "trainer.evals=6", "trainer.threads=1", "seed=0,1", "trainer.stack=2"]
    whole = run_cli(tmp_path / "whole", "-m", *args, "logger.mode=disabled")
    assert whole.returncode == 0, whole.stderr[-3000:]
    cwd = tmp_path / "killed"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "xablate", "-m", *args, "logger.mode=disabled", f"out_dir={cwd / 'runs'}"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=isolated_env(cwd / "home"), stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((cwd / "runs").glob("default/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert "stopped by SIGTERM" in out
    interrupted = read_summaries(cwd / "runs" / "default")
    assert {s["status"] for s in interrupted.values()} == {"interrupted"}
    again = run_cli(cwd, "-m", *args, "logger.mode=disabled")
    assert again.returncode == 0 and "resuming from step" in again.stdout, again.stderr[-3000:]
    for name, summary in read_summaries(cwd / "runs" / "default").items():
        reference = read_summaries(tmp_path / "whole" / "runs" / "default")[name]
        assert summary["status"] == "completed"
        assert (summary["val_loss"], summary["val_top1"]) == (reference["val_loss"], reference["val_top1"])


@pytest.mark.slow
def test_a_seed_completed_earlier_rides_along_untouched(tmp_path: Path) -> None:
    args = [*TINY, "trainer.max_steps=8", "trainer.evals=1", "logger.mode=disabled"]
    first = run_cli(tmp_path, "-m", *args, "seed=1", "trainer.stack=1")
    assert first.returncode == 0, first.stderr[-3000:]
    (done,) = (tmp_path / "runs" / "default").glob("*/summary.json")
    before = done.read_bytes()
    both = run_cli(tmp_path, "-m", *args, "seed=0,1", "trainer.stack=2")
    assert both.returncode == 0, both.stderr[-3000:]
    assert done.read_bytes() == before
    summaries = read_summaries(tmp_path / "runs" / "default")
    assert sorted((s["seed"], s["stack"]) for s in summaries.values()) == [(0, 2), (1, 1)]


def test_a_command_with_part_of_a_block_is_refused_in_one_line_before_any_work(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "-m", "seed=0,1,2", "trainer.stack=2", "data=synthetic")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "seed 3 of that block is not in this command" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("seed=0", "trainer.stack=2"), "seed 1 of that block is not in this command"),
     (("-m", "seed=0,1", "trainer.stack=2", "model.drop_rate=0.1"), "trainer.stack=2 with model.drop_rate=0.1"),
     (("-m", "seed=0,1", "trainer.stack=2", "trainer.precision=16-mixed"), "with trainer.precision=16-mixed"),
     (("trainer.stack=0",), "trainer.stack=0 is out of range")],
)  # fmt: skip
def test_a_stack_that_cannot_be_exact_is_refused(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    register_configs()
    register_resolvers()
    with pytest.raises(ConfigError) as refused:
        check_command([*args, "data=synthetic", f"out_dir={tmp_path}"])
    assert needle in str(refused.value) and "\n" not in str(refused.value)
