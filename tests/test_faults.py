"""Faults a run must survive and hostile values it must refuse, each as a user or a machine would cause it.

A full disk (a real 4 MB tmpfs where the machine lets us mount one), a checkpoint cut short, two processes
on one cell, a checkpoint crafted to run code, and hostile values on the command line, each refused in one line by
`python -m xablate` in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from xablate.__main__ import MALLOC_ENV
from xablate.cell.lock import LOCK, CellBusy, acquire, holder_if_live, release
from xablate.engine.checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint
from xablate.errors import ConfigError, WriteError
from xablate.files import write_atomic, write_json_atomic
from xablate.spec import schema, validate

TINY = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "logger.mode=disabled", "trainer.threads=1"]
SHORT = [*TINY, "trainer.max_steps=8", "trainer.eval_every=4"]
"""Eight steps, a checkpoint after steps 4 and 8 (about 1.4 MB each)."""


def xablate(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xablate", *args],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, **MALLOC_ENV, **(extra or {})}


def cell_dirs(out_dir: Path) -> list[Path]:
    return sorted(p.parent for p in out_dir.glob("*/*/.hydra"))


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("xablate: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# --- hostile values: one line, before any work -------------------------------------------------------------


BAD_VALUES = [
    (["optim.label_smoothing=1.5"], ["optim.label_smoothing=1.5", "0 <= x < 1"]),
    (["optim.momentum=-1"], ["optim.momentum=-1", "0 <= x < 1"]),
    (["study=../escaped", "dry_run=true"], ["study='../escaped'", "plain name"]),
    (["study=a/b", "dry_run=true"], ["study='a/b'", "plain name"]),
    (["out_dir=/proc/forbidden", "dry_run=true"], ["out_dir='/proc/forbidden'", "cannot be created or written"]),
    (["-m", "optim.lr=interval(0.01,0.1)", "dry_run=true"], ["takes lists", "optuna"]),
    (["dry_run=true", "data.root=/nonexistent"], ["/nonexistent", "data.root"]),
]


@pytest.mark.parametrize(("args", "needles"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_value_is_one_line_before_any_work(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out_dir = tmp_path / "box" / "runs"
    given = [] if any(a.startswith("out_dir=") for a in args) else [f"out_dir={out_dir}"]
    proc = xablate(*args, *given, cwd=tmp_path)
    assert_one_line_error(proc, *needles)
    assert list(tmp_path.iterdir()) == [], "a refused command wrote files"


def test_missing_launcher_names_the_extra(tmp_path: Path) -> None:
    """The submitit plugin hidden as if not installed: neither importable nor found by Hydra's plugin scan."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import pkgutil, sys\n"
        "HIDDEN = 'hydra_submitit_launcher'\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if HIDDEN in name.split('.') or name == 'submitit':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "walk = pkgutil.walk_packages\n"
        "pkgutil.walk_packages = lambda *a, **k: (e for e in walk(*a, **k) if HIDDEN not in e[1].split('.'))\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    args = ["-m", "hydra/launcher=submitit_slurm", "dry_run=true", f"out_dir={tmp_path / 'runs'}"]
    proc = xablate(*args, cwd=tmp_path, env={"PYTHONPATH": str(hide)})
    assert_one_line_error(proc, "hydra/launcher=submitit_slurm", "pip install -e '.[launchers]'")


def test_dry_run_without_the_data_check_says_it_skipped_it(tmp_path: Path) -> None:
    proc = xablate("dry_run=true", "data.root=/nonexistent", "data.check=false", f"out_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "data check skipped (data.check=false)" in proc.stdout


def _numeric_fields(node: type, prefix: str = "") -> Iterator[str]:
    """Every field of the schema typed int or float (optional or not), as dotted keys."""
    for name, kind in typing.get_type_hints(node).items():
        if dataclasses.is_dataclass(kind):
            yield from _numeric_fields(kind, f"{prefix}{name}.")
        elif {int, float} & {kind, *typing.get_args(kind)}:
            yield f"{prefix}{name}"


def test_every_numeric_knob_has_a_range() -> None:
    numeric = set(_numeric_fields(schema.Config))
    assert {"optim.momentum", "optim.label_smoothing", "seed", "data.batch_size"} <= numeric
    ranged = set(validate.RANGES) | set(validate.PER_CHANNEL)
    assert numeric <= ranged, f"no range for {sorted(numeric - ranged)}"


@pytest.mark.parametrize(
    ("key", "bad"),
    [("optim.lr", float("nan")), ("optim.eps", 0.0), ("trainer.log_every", 0), ("seed", -1), ("model.width", 0.0)],
)
def test_ranges_refuse_out_of_range_values(key: str, bad: float) -> None:
    cfg = schema.Config()
    group, _, leaf = key.rpartition(".")
    setattr(getattr(cfg, group) if group else cfg, leaf, bad)
    with pytest.raises(ConfigError, match=f"^{key}=") as info:
        validate.check_ranges(cfg)
    assert "allowed:" in str(info.value) and "\n" not in str(info.value)
    validate.check_ranges(schema.Config())


@pytest.fixture(scope="module")
def completed_cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished eight-step run: its checkpoints of steps 8 and 4, and its summary."""
    cwd = tmp_path_factory.mktemp("done")
    proc = xablate(*SHORT, f"out_dir={cwd / 'runs'}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    (cell,) = cell_dirs(cwd / "runs")
    return cell


# --- a full disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB file system (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("a 4 MB tmpfs cannot be mounted here (needs root): " + proc.stderr.decode().strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with ballast.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return ballast


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_leaves_the_old_file_and_no_temp_file(tiny_disk: Path) -> None:
    target = tiny_disk / "summary.json"
    write_json_atomic(target, {"status": "completed"})
    fill(tiny_disk, leave=100_000)
    with pytest.raises(WriteError, match=r"could not write .*summary.json: No space left on device \(needs 1\.0 MB"):
        write_atomic(target, b"x" * 1_000_000)
    assert json.loads(target.read_text()) == {"status": "completed"}
    assert temp_files(tiny_disk) == []


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_fails_in_one_line_and_resumes_later(
    tiny_disk: Path, completed_cell: Path
) -> None:
    """Room for the step-4 checkpoint, not for the step-8 one: one line, exit 1, step 4 intact, no temp
    file; once there is room again the same command resumes from step 4 to the numbers of a clean run."""
    out_dir = tiny_disk / "runs"
    ballast = fill(tiny_disk, leave=(completed_cell / CHECKPOINT).stat().st_size * 3 // 2)
    failed = xablate(*SHORT, f"out_dir={out_dir}", cwd=tiny_disk)
    line = assert_one_line_error(failed, "checkpoint.pt", "No space left on device", "needs", code=1)
    assert "MB free" in line
    (cell,) = cell_dirs(out_dir)
    ckpt = load_checkpoint(cell / CHECKPOINT, torch.device("cpu"))
    assert ckpt is not None and ckpt["state"]["step"] == 4
    assert temp_files(out_dir) == []

    ballast.unlink()
    again = xablate(*SHORT, f"out_dir={out_dir}", cwd=tiny_disk)
    assert again.returncode == 0, again.stderr
    assert "resuming from step 4/8" in again.stdout
    resumed = json.loads((cell / "summary.json").read_text())
    expected = json.loads((completed_cell / "summary.json").read_text())
    assert resumed["status"] == "completed"
    for key in ("steps", "val_top1", "val_loss"):
        assert resumed[key] == expected[key], key


# --- a checkpoint cut short -----------------------------------------------------------------------------------


def killed_copy(cell: Path, dest: Path) -> Path:
    """`cell` as a kill -9 after its last checkpoint leaves it: no summary yet."""
    copy = dest / "runs" / cell.parent.name / cell.name
    shutil.copytree(cell, copy)
    (copy / "summary.json").unlink()
    return copy


def truncate(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 3)


def test_truncated_checkpoint_falls_back_to_the_previous_one(completed_cell: Path, tmp_path: Path) -> None:
    cell = killed_copy(completed_cell, tmp_path)
    truncate(cell / CHECKPOINT)
    proc = xablate(*SHORT, f"out_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{CHECKPOINT} cannot be read" in proc.stdout and "resuming from step 4" in proc.stdout
    (archived,) = (cell / "archive").iterdir()
    assert (archived / CHECKPOINT).exists()
    summary = json.loads((cell / "summary.json").read_text())
    expected = json.loads((completed_cell / "summary.json").read_text())
    assert summary["status"] == "completed"
    for key in ("steps", "val_top1", "val_loss"):
        assert summary[key] == expected[key], key


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="no vector kernels to switch off on this CPU"
)
def test_a_run_resumed_on_another_kind_of_cpu_says_so_and_records_both(completed_cell: Path, tmp_path: Path) -> None:
    """PyTorch's plain kernels (ATEN_CPU_CAPABILITY=default) stand in for another machine: other numbers."""
    cell = killed_copy(completed_cell, tmp_path)
    (cell / CHECKPOINT).unlink()  # the step-4 checkpoint is the one left
    first = json.loads((completed_cell / "summary.json").read_text())["hardware"]
    proc = xablate(*SHORT, f"out_dir={tmp_path / 'runs'}", cwd=tmp_path, env={"ATEN_CPU_CAPABILITY": "default"})
    assert proc.returncode == 0, proc.stderr
    assert "resuming from step 4/8" in proc.stdout
    moved = f"resuming on {first.rsplit(' (', 1)[0]} (DEFAULT); its first 4 steps ran on {first}"
    assert moved in proc.stdout, proc.stdout
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["hardware"] == f"{first} then {first.rsplit(' (', 1)[0]} (DEFAULT)"


def test_no_readable_checkpoint_archives_them_and_starts_over(completed_cell: Path, tmp_path: Path) -> None:
    cell = killed_copy(completed_cell, tmp_path)
    truncate(cell / CHECKPOINT)
    truncate(cell / PREVIOUS)
    proc = xablate(*SHORT, f"out_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no readable checkpoint" in proc.stdout and "starting over from step 0" in proc.stdout
    (archived,) = (cell / "archive").iterdir()
    assert {p.name for p in archived.iterdir()} == {CHECKPOINT, PREVIOUS, "metrics.csv"}
    assert json.loads((cell / "summary.json").read_text())["status"] == "completed"


# --- a checkpoint that would run code --------------------------------------------------------------------------


class _Payload:
    """Unpickling this touches `marker`: the observable stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_crafted_checkpoint_runs_no_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code-ran"
    cell = tmp_path / "cell"
    cell.mkdir()
    crafted = {"model": {"w": _Payload(marker)}, "optimizer": {}, "state": {"step": 1}, "rng": {}}
    torch.save(crafted, cell / CHECKPOINT)
    assert load_checkpoint(cell / CHECKPOINT, torch.device("cpu")) is None
    assert not marker.exists()
    assert "cannot be read" in capsys.readouterr().out
    (archived,) = (cell / "archive").iterdir()
    torch.load(archived / CHECKPOINT, weights_only=False)
    assert marker.exists(), "the crafted file did not carry code: this test would prove nothing"


# --- two processes on one cell ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_on_one_cell(tmp_path: Path) -> None:
    """A long run holds the cell; a second run of it and a sweep over it train nothing and say who holds it."""
    out_dir = tmp_path / "runs"
    args = [*TINY, "trainer.epochs=400", "trainer.eval_every=8", f"out_dir={out_dir}"]
    first = subprocess.Popen(
        [sys.executable, "-m", "xablate", *args], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.glob(f"*/*/{LOCK}")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        (lock,) = out_dir.glob(f"*/*/{LOCK}")
        second = xablate(*args, cwd=tmp_path, timeout=90)  # a second run that trains would take minutes
        sweep = xablate("-m", "seed=0", *args, cwd=tmp_path, timeout=90)
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    holder = f"running elsewhere ({socket.gethostname()}, pid {first.pid}, since "
    assert second.returncode == 1 and holder in second.stderr, second.stderr
    assert "step" not in second.stdout, second.stdout
    assert f"| {lock.parent.name} | running |" in sweep.stdout and holder in sweep.stdout, sweep.stdout
    assert not lock.exists(), "the first run did not release its lock"
    steps = [line.split(",")[:3] for line in (lock.parent / "metrics.csv").read_text().splitlines()[1:]]
    assert len(steps) == len({tuple(s) for s in steps}), "a metrics row was written twice"


def test_stale_lock_is_taken_over_and_a_live_one_elsewhere_is_not(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"host": socket.gethostname(), "pid": int(dead.stdout), "since": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK).write_text(json.dumps(record))
    assert holder_if_live(tmp_path) is None
    holder = acquire(tmp_path)
    assert holder.pid == os.getpid()
    with pytest.raises(CellBusy, match="running elsewhere"):
        acquire(tmp_path)
    release(tmp_path, holder)
    assert not (tmp_path / LOCK).exists()
    (tmp_path / LOCK).write_text(json.dumps({**record, "host": "another-node"}))
    with pytest.raises(CellBusy, match=r"running elsewhere \(another-node, pid \d+, since 2026-01-01"):
        acquire(tmp_path)
    (tmp_path / LOCK).write_text("{")
    with pytest.raises(CellBusy, match="cannot be read"):
        acquire(tmp_path)


def test_lock_of_a_requeued_slurm_job_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"host": "node-a", "pid": 1, "since": "2026-01-01T00:00:00+00:00", "slurm_job": "77"}
    (tmp_path / LOCK).write_text(json.dumps(record))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert holder_if_live(tmp_path) is not None, "another live process of the same job (salloc) holds it"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert holder_if_live(tmp_path) is None
    release(tmp_path, acquire(tmp_path))
