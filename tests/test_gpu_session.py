"""`scripts/gpu_session.sh`, the prepared session for a GPU lent for minutes, run on the CPU with a tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .conftest import isolated_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_session.sh"


@pytest.mark.slow
def test_gpu_session_measures_packing_then_packs_every_completed_study_run(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home") | {
        "PYTHON": sys.executable, "DEVICE": "cpu", "PACK_STEPS": "2", "PACK_SPECS": "1 2", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    overrides = ["trainer.max_steps=2", "trainer.evals=null", "trainer.eval_every=2", "seed=0", "activation=none,relu"]
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out"), "fig10", "2", "300", *overrides],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    rows = [line.split("|") for line in (out / "packing.md").read_text().splitlines()[2:]]
    assert [row[1].strip() for row in rows] == ["1", "2"]
    with tarfile.open(out / "runs.tar") as tar:
        names = tar.getnames()
        summaries = [json.load(tar.extractfile(n)) for n in names if n.endswith("summary.json")]
    assert sorted(s["activation"] for s in summaries) == ["none", "relu"]
    kinds = {(s["study"], s["status"], s["device"], s["steps"]) for s in summaries}
    assert kinds == {("fig10_gpu", "completed", "cpu", 2)}
    assert sum(n.endswith("metrics.csv") for n in names) == 2 and sum(n.endswith("config.yaml") for n in names) == 2
    assert sum(n.endswith(".hydra/hydra.yaml") for n in names) == 2
    for summary in summaries:  # trained without W&B, then logged as W&B runs where wandb is installed (here)
        run_id = summary["wandb_id"]
        assert run_id == f"{summary['run_key']}-1"
        logs = [n for n in names if n.endswith(f"-{run_id}/run-{run_id}.wandb") and "/wandb/offline-run-" in n]
        assert len(logs) == 1 and logs[0].startswith(f"./fig10_gpu/{summary['name']}-{summary['run_key']}/")
    log = (out / "session.log").read_text()
    assert "runs packed: 2 completed" in log
    assert "wandb sync runs/fig10_gpu/*/wandb/offline-run-*" in log
