"""`scripts/gpu_session.sh`, the prepared session for a GPU lent for minutes, run on the CPU with a tiny budget:
the packing table, a queue of studies in a stacked layout, the runs packed as they complete, and a second
session that takes the first one's runs and trains only what is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .conftest import isolated_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_session.sh"
TINY = ("trainer.max_steps=2", "trainer.evals=null", "trainer.eval_every=2", "seed=0,1")


def _session(tmp_path: Path, dest: str, *args: str, **env: str) -> tuple[str, list[str], list[dict]]:
    """Run the script (on the CPU); its log, the names in DEST/runs.tar, and the packed summaries."""
    env = isolated_env(tmp_path / "home") | {"PYTHON": sys.executable, "DEVICE": "cpu", "OMP_NUM_THREADS": "1"} | env
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / dest), "600", *args],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with tarfile.open(tmp_path / dest / "runs.tar") as tar:
        names = tar.getnames()
        summaries = [json.load(tar.extractfile(n)) for n in names if n.endswith("summary.json")]
    return (tmp_path / dest / "session.log").read_text(), names, summaries


@pytest.mark.slow
def test_gpu_session_measures_layouts_then_packs_a_queue_of_studies_and_resumes_from_its_runs(tmp_path: Path) -> None:
    log, names, summaries = _session(
        tmp_path, "first", "fig10", "--", *TINY, "activation=none,relu",
        PACK_STEPS="2", PACK_SPECS="1x2 2+mps", JOBS="2", STACK="2",
    )  # fmt: skip
    rows = [line.split("|") for line in (tmp_path / "first" / "packing.md").read_text().splitlines()[2:]]
    assert [(row[1].strip(), row[2].strip()) for row in rows] == [("1", "2"), ("2", "1")]
    assert float(rows[0][5].replace(",", "")) > 0 and "MPS: no nvidia-cuda-mps-control here" in rows[1][3]
    cells = sorted((s["activation"], s["seed"]) for s in summaries)
    assert cells == [(a, seed) for a in ("none", "relu") for seed in (0, 1)]
    kinds = {(s["study"], s["status"], s["device"], s["steps"], s["stack"]) for s in summaries}
    assert kinds == {("fig10_gpu_stack2", "completed", "cpu", 2, 2)}
    assert sum(n.endswith("metrics.csv") for n in names) == 4
    assert sum(n.endswith("/.hydra/config.yaml") for n in names) == 4
    for summary in summaries:  # trained without W&B, then logged as W&B runs where wandb is installed (here)
        run_id = summary["wandb_id"]
        logs = [n for n in names if n.endswith(f"-{run_id}/run-{run_id}.wandb") and "/wandb/offline-run-" in n]
        assert len(logs) == 1 and logs[0].startswith(f"./fig10_gpu_stack2/{summary['name']}-{summary['run_key']}/")
    assert "runs packed: 4 completed" in log and "wandb sync runs/<study>_gpu*/*/wandb/offline-run-*" in log

    log, _, again = _session(
        tmp_path, "second", "fig10", "fig9", "--", *TINY, "activation=relu",
        PACK_STEPS="0", JOBS="2", STACK="2", RUNS_IN=str(tmp_path / "first" / "runs.tar"),
    )  # fmt: skip
    assert "earlier runs: 4 completed" in log and "runs packed: 8 completed" in log
    by_study = {(s["study"], s["residual"], s["activation"], s["seed"]): s for s in again}
    new = sorted(k for k in by_study if k[0] == "fig9_gpu_stack2")  # residual=true copied from fig10, not trained
    assert new == [("fig9_gpu_stack2", r, "relu", seed) for r in (False, True) for seed in (0, 1)]
    assert "2 completed in another study (copied, not trained again), 2 to run" in log
    for earlier in summaries:  # the first session's runs come back unchanged, none trained again
        assert by_study[(earlier["study"], True, earlier["activation"], earlier["seed"])] == earlier
