"""Data-parallel training with torchrun on CPU (2 gloo processes) against a single process."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "trainer.epochs=3", "trainer.log_every=4",
        "data.batch_size=32", "trainer.sync_bn=true", "logger.mode=disabled", "trainer.threads=1"]  # fmt: skip
FIRST_LOSS_TOL = 1e-3  # the first logged training loss (4 steps): only float reduction order differs
FINAL_TOL = 0.02  # final validation top-1, after 48 steps in which those differences compound
CURVE_TOL = 0.05  # each later logged training loss (a 4-step mean): the differences compound to a few 0.01


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def xablate_cmd(out: Path, nproc: int, *extra: str) -> list[str]:
    launcher = [sys.executable, "-m", "xablate"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                    f"--master_port={free_port()}", "-m", "xablate"]  # fmt: skip
    return [*launcher, *ARGS, *extra, f"out_dir={out}"]


def run_dir(out: Path) -> Path:
    (folder,) = [p.parent for p in out.glob("*/*/.hydra")]
    return folder


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    one = subprocess.run(xablate_cmd(tmp_path / "one", 1), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(xablate_cmd(tmp_path / "two", 2), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    single, ddp = run_dir(tmp_path / "one"), run_dir(tmp_path / "two")
    assert single.name == ddp.name, "the world size is not part of a cell's identity"
    a, b = json.loads((single / "summary.json").read_text()), json.loads((ddp / "summary.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["steps"] == b["steps"] == 48
    assert b["val_top1"] == pytest.approx(a["val_top1"], abs=FINAL_TOL)
    ra, rb = rows(single), rows(ddp)
    assert [(r["step"], r["split"]) for r in ra] == [(r["step"], r["split"]) for r in rb]
    assert float(rb[0]["loss"]) == pytest.approx(float(ra[0]["loss"]), abs=FIRST_LOSS_TOL)
    train = [(float(x["loss"]), float(y["loss"])) for x, y in zip(ra, rb, strict=True) if x["split"] == "train"]
    assert [y for _, y in train] == pytest.approx([x for x, _ in train], abs=CURVE_TOL)
    assert not list(ddp.glob("*.tmp")), "rank 1 wrote nothing of its own"


@pytest.mark.slow
def test_a_data_parallel_run_resumes_after_sigterm(tmp_path: Path) -> None:
    straight = subprocess.run(xablate_cmd(tmp_path / "a", 2, "trainer.eval_every=8"), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    cmd = xablate_cmd(tmp_path / "b", 2, "trainer.eval_every=8")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "b").glob("*/*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    interrupted = json.loads((run_dir(tmp_path / "b") / "summary.json").read_text())
    assert interrupted["status"] == "interrupted", "the signal came too late to test resuming"
    cmd[cmd.index(next(c for c in cmd if c.startswith("--master_port")))] = f"--master_port={free_port()}"
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    final = json.loads((run_dir(tmp_path / "b") / "summary.json").read_text())
    expected = json.loads((run_dir(tmp_path / "a") / "summary.json").read_text())
    assert final["status"] == "completed"
    assert (final["val_top1"], final["val_loss"]) == (expected["val_top1"], expected["val_loss"])
