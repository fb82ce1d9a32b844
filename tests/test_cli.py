"""CLI tests (third tier): `python -m xablate` in a subprocess, in a temporary directory.

Dry runs only (no data, no training): a real Hydra multirun over the segments axis, the run folders it
writes, re-running it, and the one-line errors that stop a bad command before any folder exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from xablate import count_params, create_model

SWEEP = ["-m", "segments=1,4,depthwise", "dry_run=true"]
NAMES = {1: "seg1-none-res-s0", 4: "seg4-none-res-s0", "depthwise": "segdw-none-res-s0"}


@pytest.fixture(scope="module")
def dry_sweep(
    tmp_path_factory: pytest.TempPathFactory, xablate_cli: Any
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One dry-run sweep over three points of the spectrum, shared by the tests that only read it."""
    cwd = tmp_path_factory.mktemp("sweep")
    out_dir = cwd / "runs"
    return out_dir, xablate_cli(cwd, *SWEEP, out_dir=out_dir, fast_start=False)


def test_dry_run_sweep_writes_one_folder_per_cell(
    dry_sweep: tuple[Path, subprocess.CompletedProcess[str]], run_dirs: Any
) -> None:
    out_dir, proc = dry_sweep
    assert proc.returncode == 0, proc.stderr
    for name in NAMES.values():
        assert f"{name}  xception_mini on fashion_mnist (1x28x28)" in proc.stdout
    assert sum(line.split()[:1] == ["total"] for line in proc.stdout.splitlines()) == 3

    dirs = run_dirs(out_dir / "default")
    assert len(dirs) == 3
    by_segments = {}
    for folder, run in dirs.items():
        summary = json.loads((run / "summary.json").read_text())
        assert (run / ".hydra" / "config.yaml").is_file()
        assert summary["status"] == "dry_run"
        assert folder == f"{summary['name']}-{summary['run_key']}"
        assert summary["macs"] > 0
        by_segments[summary["segments"]] = summary
    assert set(by_segments) == set(NAMES)
    assert all(type(s) is int for s in by_segments if s != "depthwise")
    params = [by_segments[s]["params"] for s in (1, 4, "depthwise")]
    assert params[0] > params[1] > params[2]
    for segments, summary in by_segments.items():
        assert summary["name"] == NAMES[segments]
        with torch.device("meta"):
            model = create_model("xception_mini", num_classes=10, in_chans=1, segments=segments)
        assert summary["params"] == count_params(model)


@pytest.fixture(scope="module")
def rerun(
    dry_sweep: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path_factory: pytest.TempPathFactory,
    xablate_cli: Any,
    run_dirs: Any,
) -> tuple[Path, Path, bytes, subprocess.CompletedProcess[str]]:
    """The same sweep again over a copy of the first one's folders, after marking seg4's run completed."""
    cwd = tmp_path_factory.mktemp("rerun")
    out_dir = cwd / "runs"
    shutil.copytree(dry_sweep[0], out_dir)
    (seg4,) = (d for name, d in run_dirs(out_dir / "default").items() if name.startswith(NAMES[4] + "-"))
    completed = json.loads((seg4 / "summary.json").read_text()) | {"status": "completed", "val_acc": 0.9}
    (seg4 / "summary.json").write_text(json.dumps(completed))
    written = (seg4 / "summary.json").read_bytes()
    return out_dir, seg4, written, xablate_cli(cwd, *SWEEP, out_dir=out_dir)


def test_dry_run_folders_are_deterministic(
    dry_sweep: tuple[Path, subprocess.CompletedProcess[str]],
    rerun: tuple[Path, Path, bytes, subprocess.CompletedProcess[str]],
    run_dirs: Any,
    summaries: Any,
) -> None:
    out_dir, seg4, _, proc = rerun
    assert proc.returncode == 0, proc.stderr
    assert list(run_dirs(out_dir / "default")) == list(run_dirs(dry_sweep[0] / "default"))
    first, second = summaries(dry_sweep[0] / "default"), summaries(out_dir / "default")
    del first[seg4.name], second[seg4.name]
    assert len(second) == 2 and second == first


def test_dry_run_keeps_a_completed_run(rerun: tuple[Path, Path, bytes, subprocess.CompletedProcess[str]]) -> None:
    _, seg4, written, proc = rerun
    assert proc.returncode == 0, proc.stderr
    assert (seg4 / "summary.json").read_bytes() == written


BAD_COMMANDS: list[tuple[list[str], str]] = [
    (["segments=3"], "segments=3"),
    (["segments=0"], "segments=0"),
    (["segments=-2"], "segments=-2"),
    (["segments=four"], "four"),
    (["activation=tanh"], "tanh"),
    (["residual=maybe"], "maybe"),
    (["model=resnet"], "resnet"),
    (["-m", "segments=1,3"], "segments=3"),
    (["status=true"], "status=true and dry_run=true"),
]


@pytest.mark.parametrize(
    ("args", "named"), [pytest.param(args, named, id=" ".join(args)) for args, named in BAD_COMMANDS]
)
def test_bad_value_fails_before_any_folder(args: list[str], named: str, tmp_path: Path, xablate_cli: Any) -> None:
    """Exit code 2 and one line, before Hydra starts: in a sweep, no cell runs if any cell is bad."""
    proc = xablate_cli(tmp_path, *args, "dry_run=true", fast_start=args[0] != "-m")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("xablate: error:") and named in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_console_command_runs_a_sweep_like_python_m(
    tmp_path: Path, xablate_cli: Any, dry_sweep: tuple[Path, subprocess.CompletedProcess[str]], summaries: Any
) -> None:
    """`xablate -m ...` (through its re-exec with the allocator settings) writes what `python -m xablate` does."""
    proc = xablate_cli(tmp_path, *SWEEP, out_dir=tmp_path / "runs", fast_start=False, console=True)
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 3 cells, dry run" in proc.stdout
    assert summaries(tmp_path / "runs" / "default") == summaries(dry_sweep[0] / "default")


@pytest.mark.slow
def test_shell_completion_of_the_console_command(tmp_path: Path, xablate_cli: Any) -> None:
    install = xablate_cli(tmp_path, "--shell-completion", "install=bash", fast_start=False, console=True)
    assert install.returncode == 0, install.stderr
    assert "complete -o nospace -o default -F hydra_bash_completion xablate" in install.stdout

    def query(line: str) -> list[str]:
        env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        proc = xablate_cli(tmp_path, "-sc", "query=bash", console=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert {"model=", "data=", "optim=", "trainer=", "logger=", "experiment=", "hparams_search=", "segments="} <= set(
        query("xablate ")
    )
    assert query("xablate optim=") == ["optim=paper_rmsprop", "optim=paper_sgd", "optim=sgd_cosine"]
    studies = ["experiment=fig11", "experiment=fig11_iso", "experiment=fig11_iso_pilot_v3"]
    assert query("xablate experiment=fig11") == studies


HYDRA_DIR_COMMANDS: list[tuple[list[str], str]] = [
    (["hydra.run.dir={tmp}/myrun"], "hydra.run.dir"),
    (["-m", "segments=1,4", "hydra.sweep.dir={tmp}/mysweep"], "hydra.sweep.dir"),
    (["-m", "segments=1,4", "hydra.sweep.subdir=job"], "hydra.sweep.subdir"),
]


@pytest.mark.parametrize(("args", "knob"), [pytest.param(args, knob, id=knob) for args, knob in HYDRA_DIR_COMMANDS])
def test_moving_hydras_output_folders_is_refused_before_any_folder(
    args: list[str], knob: str, tmp_path: Path, xablate_cli: Any
) -> None:
    """A run's files and Hydra's belong in one folder, the cell's: a command that moves Hydra's output stops at
    once, in one line that names the knob and `out_dir`, and writes nothing anywhere."""
    cwd = tmp_path / "cwd"
    proc = xablate_cli(cwd, *[a.format(tmp=tmp_path) for a in args], "dry_run=true", "data=synthetic")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"xablate: error: {knob}=") and "out_dir=" in line and "study=" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]
    assert list(cwd.iterdir()) == []


@pytest.mark.slow
def test_hydras_output_folders_set_to_the_cells_own_are_accepted(tmp_path: Path, xablate_cli: Any) -> None:
    """Only a knob that moves files is refused: one naming the folder xablate picks anyway runs as usual."""
    out_dir = tmp_path / "runs"
    proc = xablate_cli(tmp_path, "-m", "segments=4", "dry_run=true", f"hydra.sweep.dir={out_dir}/default")
    assert proc.returncode == 0, proc.stderr
    (summary,) = (out_dir / "default").glob("seg4-none-res-s0-*/summary.json")
    assert (summary.parent / ".hydra" / "config.yaml").is_file()
