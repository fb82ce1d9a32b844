"""How long a sweep takes, before and while it runs: the dry run's estimate (measured step times, kept in a
cache), the split sizes it rests on, the launcher's width, and the status view of a study's folders.

The CLI tests run real commands; the slow ones train real sweeps and compare with what the estimate and the
status view said.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from xablate.data import build_loaders, split_sizes
from xablate.sweep.slots import makespan

from .conftest import isolated_env

SMALL = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "logger.mode=disabled", "trainer.threads=1"]
TINY = [*SMALL, "trainer.epochs=2"]
CELLS = ["-m", "segments=4,depthwise", "seed=0,1", *TINY]
DURATION = r"(?:\d+ h \d\d m|\d+ m \d\d s|\d+ s)"


def seconds_of(text: str) -> float:
    """`2 m 05 s`, `1 h 02 m` or `12 s` as seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+) ([hms])", text)))


def report_csv(study: Path) -> dict[str, dict[str, str]]:
    """The newest sweep report's rows, by cell folder."""
    newest = sorted((study / "sweeps").glob("*.csv"))[-1]
    with newest.open(newline="") as fh:
        return {row["cell"]: row for row in csv.DictReader(fh)}


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=synthetic"],
        ["data=synthetic", "data.holdout=100", "data.train_subset=300", "data.val_subset=50"],
        ["data.holdout=5000", "data.train_subset=12000", "data.test_subset=3000"],
        ["data.holdout=0", "data.val_subset=2500"],
        ["data.holdout=5000", "data.val_subset=1000"],
    ],
)
def test_split_sizes_are_those_the_loaders_make(overrides: list[str], compose_cfg: Any) -> None:
    """What the estimate reads without loading the data: the training steps of an epoch and the images each
    evaluation split holds."""
    cfg = compose_cfg(*overrides)
    loaders = build_loaders(cfg.data, seed=3, device="cpu")
    sizes = split_sizes(cfg.data)
    assert sizes.train // cfg.data.batch_size == len(loaders.train)
    assert (sizes.val, sizes.test) == (loaders.val.num_samples, 0 if loaders.test is None else loaders.test.num_samples)


def test_makespan_starts_each_cell_in_the_first_free_slot() -> None:
    assert makespan([3, 1, 1, 1], 1) == 6
    assert makespan([3, 1, 1, 1], 2) == 3
    assert makespan([1, 1, 3], 2) == 4
    assert makespan([2, 2], 2, busy=[5]) == 5
    assert makespan([], 4) == 0


@pytest.fixture(scope="module")
def dry(tmp_path_factory: pytest.TempPathFactory, xablate_cli: Any) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A dry run of four tiny cells of two architectures: its folder and what it printed."""
    cwd = tmp_path_factory.mktemp("dry")
    return cwd, xablate_cli(cwd, *CELLS, "dry_run=true")


def copy_of(dry: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> Path:
    """A folder of its own holding a copy of the dry run's `runs/` (its cells and its cache of step times)."""
    cwd, proc = dry
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(cwd / "runs", tmp_path / "runs")
    return tmp_path


def test_a_dry_run_times_each_architecture_once_and_estimates_each_cell(
    dry: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, proc = dry
    assert proc.returncode == 0, proc.stderr
    assert re.findall(r"^time: (\S+): [\d.e-]+ s a step of 64", proc.stdout, re.M) == [
        "seg4-none-res",
        "segdw-none-res",
    ]
    rows = re.findall(rf"^\| (\S+) \| dry_run \| [\d,]+ \| [\d.]+ M \|  \|  \| ({DURATION}) \|  \|$", proc.stdout, re.M)
    assert len(rows) == 4 and all(seconds_of(estimate) > 0 for _, estimate in rows)
    head = re.search(rf"^estimate: 4 of 4 cells to train; about ({DURATION}) in all, one at a time", proc.stdout, re.M)
    assert head is not None
    assert sum(seconds_of(e) for _, e in rows) <= seconds_of(head.group(1))  # the cells, and the command's start
    assert "assumes: step times measured just now" in proc.stdout
    cache = json.loads((cwd / "runs" / ".cache" / "step_times.json").read_text())
    assert sorted(str(e["key"]["model"]["segments"]) for e in cache.values() if "times" in e) == ["4", "depthwise"]
    assert all(float(row["estimate_s"]) > 0 for row in report_csv(cwd / "runs" / "default").values())


def test_a_second_dry_run_reads_the_cache_and_a_completed_cell_costs_nothing(
    dry: tuple[Path, subprocess.CompletedProcess[str]], xablate_cli: Any, tmp_path: Path
) -> None:
    cwd = copy_of(dry, tmp_path)
    study = cwd / "runs" / "default"
    (seg4,) = study.glob("seg4-none-res-s0-*")
    summary = json.loads((seg4 / "summary.json").read_text()) | {"status": "completed", "val_top1": 0.5}
    (seg4 / "summary.json").write_text(json.dumps(summary))
    again = xablate_cli(cwd, *CELLS, "dry_run=true")
    assert again.returncode == 0, again.stderr
    assert "time: " not in again.stdout  # nothing measured again
    assert re.search(r"assumes: step times measured 20\d\d-\d\d-\d\dT", again.stdout)
    assert f"| {seg4.name} | completed | " in again.stdout and "| 0 (completed) |" in again.stdout
    assert "estimate: 3 of 4 cells to train (1 cost nothing: completed, copied or running elsewhere)" in again.stdout

    single = xablate_cli(cwd, "segments=depthwise", "seed=1", *TINY, "dry_run=true")
    assert single.returncode == 0, single.stderr
    assert re.search(rf"^estimate: segdw-none-res-s1-\w+: {DURATION}; about {DURATION} in all", single.stdout, re.M)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in [root, *sorted(root.rglob("*"))]
    }


def test_status_counts_what_the_folders_hold_and_writes_nothing(
    dry: tuple[Path, subprocess.CompletedProcess[str]], xablate_cli: Any, tmp_path: Path
) -> None:
    """A cell locked by a live process (this one) is running, a completed summary is done, a failed one failed."""
    cwd = copy_of(dry, tmp_path)
    study = cwd / "runs" / "default"
    names = ("seg4-none-res-s0", "seg4-none-res-s1", "segdw-none-res-s0", "segdw-none-res-s1")
    *done, failed, held = (next(study.glob(f"{name}-*")) for name in names)
    record = json.loads((failed / "summary.json").read_text())
    for folder in done:
        completed = json.loads((folder / "summary.json").read_text()) | {"status": "completed", "wall_s": 30.0}
        (folder / "summary.json").write_text(json.dumps(completed | {"val_top1": 0.5}))
    (failed / "summary.json").write_text(json.dumps(record | {"status": "failed", "error": "training loss became nan"}))
    lock = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat(), "slurm_job": ""}
    (held / ".lock").write_text(json.dumps(lock))
    (held / "metrics.csv").write_text("step,epoch,split\n4,0.5,train\n8,1.0,tr")  # a last line still being written
    before = _snapshot(cwd / "runs")
    proc = xablate_cli(cwd, *CELLS, "status=true")
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(cwd / "runs") == before
    assert f"status: {study}: 2 of 4 done, 1 running, 0 left, 1 failed" in proc.stdout
    assert f"| {held.name} | running | step 4 of 16 |" in proc.stdout
    assert f"running: {held.name} ({socket.gethostname()}, pid {os.getpid()}, since " in proc.stdout
    assert f"| {failed.name} | failed |" in proc.stdout and "training loss became nan" in proc.stdout
    assert re.search(
        rf"^about {DURATION} left \(ETA \d\d:\d\d\), from 2 measured cells .*, 1 at a time", proc.stdout, re.M
    )


@pytest.mark.slow
def test_a_joblib_dry_run_lays_the_cells_out_two_at_a_time(tmp_path: Path, xablate_cli: Any) -> None:
    args = ["-m", "seed=0,1,2,3", *SMALL, "trainer.epochs=40", "dry_run=true"]
    one = xablate_cli(tmp_path, *args)
    two = xablate_cli(tmp_path, *args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    total = [re.search(rf"; about ({DURATION}) in all, (.*?), on ", p.stdout, re.M) for p in (one, two)]
    assert total[0] is not None and total[1] is not None
    assert (total[0].group(2), total[1].group(2)) == ("one at a time (Hydra's basic launcher)",
                                                      "2 at a time (joblib, n_jobs=2)")  # fmt: skip
    cells = [re.findall(rf"\| dry_run \|.*\| ({DURATION}) \|  \|$", p.stdout, re.M) for p in (one, two)]
    assert len(cells[0]) == len(cells[1]) == 4  # the same cells (each command composes its own: a second apart)
    assert all(abs(seconds_of(a) - seconds_of(b)) <= 1 for a, b in zip(*cells, strict=True))
    assert seconds_of(total[1].group(1)) < seconds_of(total[0].group(1))


TIMED = [
    "-m", "segments=1,4,16,depthwise", "data.batch_size=32", "trainer.max_steps=200", "trainer.evals=2",
    "data.holdout=1000", "data.test_subset=2000", "trainer.threads=1", "study=timed",
]  # fmt: skip


@pytest.mark.slow
def test_the_dry_runs_estimate_is_within_35_percent_of_the_sweep_it_estimates(tmp_path: Path, xablate_cli: Any) -> None:
    """Four cells of 200 Fashion-MNIST steps each (about 2-3 minutes on 2 cores): the dry run, then the sweep
    at once, on the same machine and thread count. The machine is shared, so the bound is wide."""
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (bash scripts/setup.sh installs it)")
    dry = xablate_cli(tmp_path, *TIMED, "dry_run=true")
    assert dry.returncode == 0, dry.stderr
    head = re.search(rf"^estimate: 4 of 4 cells to train; about ({DURATION}) in all", dry.stdout, re.M)
    assert head is not None, dry.stdout
    estimated = {cell: float(row["estimate_s"]) for cell, row in report_csv(tmp_path / "runs" / "timed").items()}
    started = time.perf_counter()
    real = xablate_cli(tmp_path, *TIMED)
    took = time.perf_counter() - started
    assert real.returncode == 0, real.stderr
    print(f"estimate {head.group(1)} ({seconds_of(head.group(1)):.0f} s), took {took:.0f} s")  # for the record (-rA)
    assert abs(seconds_of(head.group(1)) - took) <= 0.35 * took, f"estimate {head.group(1)}, took {took:.0f} s"
    walls = {cell: float(row["wall_s"]) for cell, row in report_csv(tmp_path / "runs" / "timed").items()}
    slowest, fastest = (next(c for c in walls if c.startswith(p)) for p in ("seg1-", "segdw-"))
    assert estimated[slowest] > estimated[fastest] and walls[slowest] > walls[fastest]


WATCHED = [
    "-m",
    "seed=0,1,2",
    "segments=4",
    *SMALL,
    "data.train_subset=6400",
    "trainer.epochs=4",
    "trainer.log_every=4",
]


def _comparable(study: Path) -> dict[str, Any]:
    """Each cell's numbers and files, without the clocks."""
    out = {}
    for summary in sorted(study.glob("*/summary.json")):
        record = json.loads(summary.read_text())
        with (summary.parent / "metrics.csv").open(newline="") as fh:
            curve = [(r["step"], r["split"], r["loss"], r["top1"]) for r in csv.DictReader(fh)]
        numbers = {k: record[k] for k in ("status", "steps", "val_top1", "val_loss", "test_top1", "run_key")}
        out[summary.parent.name] = (numbers, curve, sorted(p.name for p in summary.parent.iterdir()))
    return out


@pytest.mark.slow
def test_status_reads_a_running_study_without_disturbing_it(tmp_path: Path, xablate_cli: Any) -> None:
    reference = xablate_cli(tmp_path / "ref", *WATCHED)
    assert reference.returncode == 0, reference.stderr
    cwd = tmp_path / "watched"
    cwd.mkdir()
    env = isolated_env(cwd / "wandb_home")
    cmd = [sys.executable, "-m", "xablate", *WATCHED, f"out_dir={cwd / 'runs'}"]
    sweep = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    study = cwd / "runs" / "default"
    deadline = time.monotonic() + 300
    while not (list(study.glob("*/summary.json")) and list(study.glob("*/.lock"))) and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[0]
        time.sleep(0.2)
    status = xablate_cli(cwd, *WATCHED, "status=true")
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0, output
    assert status.returncode == 0, status.stderr
    counts = re.search(r"^status: .*: (\d) of 3 done, (\d) running, (\d) left, 0 failed$", status.stdout, re.M)
    assert counts is not None, status.stdout
    done, running, left = map(int, counts.groups())
    assert done >= 1 and running == 1 and done + running + left == 3
    assert f", pid {sweep.pid}, since " in status.stdout
    assert re.search(r"\| running \| step \d+ of 400 \|", status.stdout)
    assert "running elsewhere" not in output  # the status view took no lock
    assert _comparable(study) == _comparable(tmp_path / "ref" / "runs" / "default")
