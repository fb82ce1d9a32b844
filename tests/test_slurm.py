"""The SLURM launcher on a real one-node cluster (`bash scripts/slurm_cluster.sh start`), through the CLI.

Each test runs `python -m xablate -m hydra/launcher=submitit_slurm ...` in a subprocess and then checks
SLURM's own records, not just the harness's: the job completion file (`JobCompType=jobcomp/filetxt`; the
test cluster has no slurmdbd, so `sacct` knows nothing) and `scontrol show job`. A cell's
`.hydra/hydra.yaml` names the job that ran it (`hydra.job.id`, submitit's `<array job>_<task>`, or
`<job>` for a sweep of one cell), and submitit keeps that job's files in `<sweep dir>/.submitit/<id>/`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slurm

SLURM = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",  # must fit the node's RealMemory
    "hydra.launcher.timeout_min=5",
]
TINY = ["data=synthetic", "model.width=0.5", "model.middle_blocks=1", "trainer.epochs=2", "trainer.threads=1"]
# 128 steps of one thread: about 30 s of training, long enough to be pre-empted at step 16 or soon after.
LONG = [
    "segments=depthwise",
    "data=synthetic",
    "data.train_subset=4096",
    "model.width=0.5",
    "model.middle_blocks=1",
    "trainer.epochs=2",
    "trainer.eval_every=16",
    "trainer.log_every=8",
    "trainer.threads=1",
    "logger.mode=disabled",
]
REQUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "PREEMPTED"}
"""The states jobcomp records for a job that ended by being requeued (22.05 writes PENDING, its new state)."""
COMPARED = ("step", "epoch", "split", "loss", "top1", "top5", "lr")
"""metrics.csv columns that must match an uninterrupted run exactly (wall time and speed cannot)."""


@dataclass(frozen=True)
class Cluster:
    jobcomp: Path


def _slurm(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """The running cluster, or a skip that says why there is none."""
    if shutil.which("sinfo") is None:
        pytest.skip("no SLURM client (sinfo) on PATH; `bash scripts/slurm_cluster.sh start` brings up a cluster")
    try:
        nodes = _slurm("sinfo", "-h", "-N", "-o", "%T")
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo did not answer within 15 s; is slurmctld running? (bash scripts/slurm_cluster.sh start)")
    states = nodes.stdout.split()
    if nodes.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        why = nodes.stderr.strip() or f"node states {states}"
        pytest.skip(f"no usable SLURM node ({why}); bash scripts/slurm_cluster.sh start brings one up")
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", _slurm("scontrol", "show", "config").stdout, re.MULTILINE))
    if config.get("JobCompType") != "jobcomp/filetxt" or not config.get("JobCompLoc"):
        pytest.skip("these tests read SLURM's job records from JobCompType=jobcomp/filetxt, which is not set")
    return Cluster(jobcomp=Path(config["JobCompLoc"]))


@pytest.fixture
def workdir(tmp_path: Path, cluster: Cluster) -> Iterator[Path]:
    """The folder commands run in, which SLURM records as each job's WorkDir; its jobs are cancelled after."""
    yield tmp_path
    queue = _slurm("squeue", "-h", "-o", "%i %Z")
    left = [line.split()[0] for line in queue.stdout.splitlines() if line.endswith(f" {tmp_path}")]
    if left:
        _slurm("scancel", *left)


def _env(tmp_path: Path) -> dict[str, str]:
    """W&B pointed at a closed local port with throw-away config folders. sbatch exports the submitting
    environment, so the jobs get the same sandbox."""
    home = tmp_path / "wandb_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_BASE_URL="http://127.0.0.1:9", NETRC=str(home / "netrc"))
    env.update({f"WANDB_{kind}_DIR": str(home / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")})
    return env


def _cmd(out_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "xablate", *args, f"out_dir={out_dir}"]


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(tmp_path / "runs", *args), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )


def popen(tmp_path: Path, out_dir: Path, *args: str) -> subprocess.Popen[str]:
    """The command in the background, its output in `<tmp_path>/<out_dir name>.log`."""
    with (tmp_path / f"{out_dir.name}.log").open("w") as log:
        return subprocess.Popen(
            _cmd(out_dir, *args), cwd=tmp_path, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, text=True
        )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"


def job_dirs(study_dir: Path) -> dict[str, Path]:
    """submitit's folder of each job, by job id (an array's own folder holds only its sbatch script)."""
    root = study_dir / ".submitit"
    return {p.name: p for p in sorted(root.iterdir()) if any(p.glob("*_submitted.pkl"))} if root.is_dir() else {}


def job_log(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*_log.*")))


def hydra_job_id(cell_dir: Path) -> str:
    return str(yaml.safe_load((cell_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])


def job_id(record: dict[str, str]) -> str:
    """A jobcomp record's id as submitit writes it: `<array job>_<task>` for array tasks, else the job id."""
    task = record.get("ArrayTaskId", "")
    return (
        f"{record['ArrayJobId']}_{task}" if task.isdigit() and record.get("ArrayJobId", "0") != "0" else record["JobId"]
    )


def records(cluster: Cluster, workdir: Path) -> dict[str, list[dict[str, str]]]:
    """SLURM's completion records of the jobs submitted from `workdir` (each test's own folder), oldest
    first, by job id. A requeued job has one record per run."""
    found: dict[str, list[dict[str, str]]] = {}
    lines = cluster.jobcomp.read_text().splitlines() if cluster.jobcomp.exists() else []
    for line in lines:
        record = dict(re.findall(r"(\w+)=(\S*)", line))
        if record.get("WorkDir") == str(workdir):
            found.setdefault(job_id(record), []).append(record)
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll `check` until it returns something true."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return value


def final_records(cluster: Cluster, workdir: Path, ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """The records of jobs `ids` once each has ended for good (its last record is not a requeue).
    slurmctld appends a record only after the job's processes have gone, a moment after submitit has
    read the job's result and the sweep has returned."""

    def check() -> dict[str, list[dict[str, str]]] | None:
        found = records(cluster, workdir)
        return found if all(found.get(i) and found[i][-1]["JobState"] not in REQUEUED for i in ids) else None

    return wait_for(f"SLURM's final records of jobs {sorted(ids)}", check, timeout=60)


def test_a_sweep_runs_one_slurm_job_per_cell_and_a_resubmitted_sweep_skips_them(
    workdir: Path, cluster: Cluster, summaries: Any
) -> None:
    args = ["-m", *SLURM, "segments=1,depthwise", *TINY, "logger.mode=offline", "study=slurm"]
    first = cli(workdir, *args)
    assert first.returncode == 0, output(first)
    assert "sweep: 2 cells: 2 to run" in first.stdout
    study = workdir / "runs" / "slurm"
    cells = summaries(study)
    assert sorted(str(s["segments"]) for s in cells.values()) == ["1", "depthwise"]
    assert {s["status"] for s in cells.values()} == {"completed"}, cells

    # Each cell ran in its own job, the one submitit kept the files of, and SLURM saw that job complete.
    ran_in = {name: hydra_job_id(study / name) for name in cells}
    jobs = job_dirs(study)
    assert sorted(ran_in.values()) == sorted(jobs), (ran_in, list(jobs))
    assert all(re.fullmatch(r"\d+_[01]", jid) for jid in jobs), "two cells should be submitted as one job array"
    done = final_records(cluster, workdir, jobs)
    for name, jid in ran_in.items():
        assert [(r["JobState"], r["ExitCode"]) for r in done[jid]] == [("COMPLETED", "0:0")], (name, done[jid])
        assert done[jid][0]["Name"] == "xablate" and done[jid][0]["NodeList"]

    # The same command again: every cell is found completed and skipped inside its (new) job.
    before = {p: p.read_bytes() for p in study.glob("*/summary.json")}
    second = cli(workdir, *args)
    assert second.returncode == 0, output(second)
    assert "sweep: 2 cells: 2 completed earlier (skipped), 0 to run" in second.stdout
    new_jobs = {jid: folder for jid, folder in job_dirs(study).items() if jid not in jobs}
    assert len(new_jobs) == 2, list(job_dirs(study))
    assert all("already completed" in job_log(folder) for folder in new_jobs.values())
    assert {p: p.read_bytes() for p in study.glob("*/summary.json")} == before
    again = final_records(cluster, workdir, new_jobs)
    assert all([r["JobState"] for r in again[jid]] == ["COMPLETED"] for jid in new_jobs)


def test_a_preempted_job_checkpoints_is_requeued_and_resumes_to_the_metrics_of_an_uninterrupted_run(
    workdir: Path, cluster: Cluster
) -> None:
    # The uninterrupted reference, with the default launcher, trains alongside (one thread each).
    reference = popen(workdir, workdir / "reference", *LONG)
    sweep = popen(workdir, workdir / "runs", "-m", *SLURM, *LONG)
    study = workdir / "runs" / "default"
    try:

        def started() -> str | None:
            if sweep.poll() is not None:
                raise AssertionError(f"the sweep ended early:\n{(workdir / 'runs.log').read_text()[-4000:]}")
            jobs = job_dirs(study)
            return next(iter(jobs)) if jobs and any(study.glob("*/checkpoint.pt")) else None

        # Once the first checkpoint exists, send what SLURM sends before a time limit or a pre-emption:
        # SIGUSR2 to the job's steps (not to the batch shell), as `#SBATCH --signal=USR2@<delay>` does.
        jid = wait_for("the job's first checkpoint", started, timeout=180)
        signalled = _slurm("scancel", "--signal=USR2", jid)
        assert signalled.returncode == 0, signalled.stderr
        (cell,) = study.glob("*/checkpoint.pt")
        cell = cell.parent

        seen: list[tuple[Any, ...]] = []
        restarts = None
        while sweep.poll() is None:
            summary = json.loads(s) if (s := _read(cell / "summary.json")) else {}
            if summary and (key := (summary["status"], summary.get("stopped_by"), summary["steps"])) not in seen:
                seen.append(key)
            if restarts is None and seen:
                shown = _slurm("scontrol", "show", "job", jid).stdout
                if (m := re.search(r"Restarts=(\d+)", shown)) and int(m.group(1)) > 0:
                    restarts = int(m.group(1))
            time.sleep(0.25)
        log = (workdir / "runs.log").read_text()
        assert sweep.returncode == 0, log[-4000:]
    finally:
        for proc in (sweep, reference):
            if proc.poll() is None:
                proc.kill()
    assert reference.wait(timeout=300) == 0, (workdir / "reference.log").read_text()[-4000:]

    # The job checkpointed on the signal and said so in its summary, then finished in its requeued run.
    final = json.loads((cell / "summary.json").read_text())
    interrupted = [s for s in seen if s[:2] == ("interrupted", "SIGUSR2")]
    assert interrupted and interrupted[0][2] < final["total_steps"], seen
    assert final["status"] == "completed" and final["steps"] == final["total_steps"], final
    assert hydra_job_id(cell) == jid

    # SLURM's own view: the job ended once by requeue (jobcomp records it as PENDING, its state once
    # requeued) and then completed; the controller counted the restart.
    states = [r["JobState"] for r in final_records(cluster, workdir, [jid])[jid]]
    assert len(states) >= 2 and states[-1] == "COMPLETED" and set(states[:-1]) <= REQUEUED, states
    shown = _slurm("scontrol", "show", "job", jid).stdout  # still known for MinJobAge (60 s) after it ended
    if m := re.search(r"Restarts=(\d+)", shown):
        restarts = int(m.group(1))
    assert restarts == len(states) - 1, (restarts, states)

    text = job_log(job_dirs(study)[jid])
    assert "Caught signal SIGUSR2" in text and f"Requeued job {jid}" in text, text[-4000:]
    assert "resuming from step" in text, text[-4000:]

    # Resumed from its checkpoint, the job ends with the numbers of a run that was never interrupted.
    (ref_cell,) = (workdir / "reference" / "default").glob("*/metrics.csv")
    assert ref_cell.parent.name == cell.name
    assert _metrics(cell / "metrics.csv") == _metrics(ref_cell)


def _read(path: Path) -> str | None:
    try:
        return path.read_text() or None
    except FileNotFoundError:
        return None


def _metrics(path: Path) -> list[tuple[str, ...]]:
    with path.open(newline="") as fh:
        return [tuple(row[c] for c in COMPARED) for row in csv.DictReader(fh)]
