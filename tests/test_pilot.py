"""A pilot decides a study's budget on the held-out validation split only, by a stated rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.frames import METRIC_COLUMNS, build, run_row
from analysis.pilot import budget_lines, budget_table

REPO = Path(__file__).resolve().parents[1]
STEPS = (100, 200, 400)
FINAL = {100: 0.9000, 200: 0.9050, 400: 0.9055}
"""Mean final val top-1 per budget: 200 steps is within 0.1 points of 400, 100 steps is not."""


def _curve(total: int, final: float) -> pd.DataFrame:
    rows = []
    for k in range(1, 5):
        step = total * k // 4
        rows.append({"step": step, "split": "val", "top1": final - 0.01 * (4 - k), "loss": 0.3, "top5": 1.0})
        rows.append({"step": step, "split": "train", "top1": 0.9, "loss": 0.3, "top5": 1.0, "lr": 0.1 * (5 - k)})
    frame = pd.DataFrame(rows).reindex(columns=list(METRIC_COLUMNS))
    frame["epoch"] = frame["step"] / 100
    return frame


def _pilot_runs() -> Any:
    records = []
    for total in STEPS:
        for seed, jitter in enumerate((-0.0002, 0.0002)):
            summary = {
                "name": f"p{total}-s{seed}", "run_key": f"k{total}{seed}", "study": "pilot", "status": "completed",
                "segments": "depthwise", "activation": "none", "residual": True, "order": "depthwise_first",
                "mid_norm": False, "budget": "none", "model": "xception_mini", "data": "fashion_mnist",
                "seed": seed, "val_top1": FINAL[total] + jitter, "best_val_top1": FINAL[total] + jitter,
                "total_steps": total, "holdout": 5000,
            }  # fmt: skip
            row = run_row(summary, source=f"mem/{total}/{seed}")
            records.append((row, _curve(total, FINAL[total] + jitter)))
    return build(records, [], budgets=True)


def test_the_budget_is_the_smallest_within_tolerance_of_the_longest() -> None:
    data = _pilot_runs()
    assert len(data) == 6  # the same cell and seed at three budgets: kept apart, not duplicates
    table = budget_table(data, tolerance=0.1).set_index("total_steps")
    assert table.loc[100, "gap_to_longest"] == pytest.approx(0.55) and not table.loc[100, "converged"]
    assert table.loc[200, "converged"] and table.loc[400, "late_lr_share"] == pytest.approx(0.1)
    assert budget_lines(table.reset_index(), 0.1) == [
        "pilot (validation split only): budget 200 steps, the smallest within 0.1 points of the longest (400 "
        "steps) in every cell"
    ]
    assert "no budget shorter" in budget_lines(budget_table(data, tolerance=0.01), 0.01)[0]


def test_a_pilot_of_runs_validated_on_the_test_split_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The published Fig. 10 pilot's frames record no held-out split: no pilot report is written from them."""
    with pytest.raises(SystemExit) as info:
        main([str(REPO / "experiments/fig10/pilot"), "--out", str(tmp_path / "out"), "--pilot"])
    assert info.value.code == 2 and not (tmp_path / "out").exists()
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "validated on the test split or did not record a held-out split" in errors[0]


@pytest.mark.slow
def test_a_pilot_of_real_runs_reads_no_test_value(tmp_path: Path, xablate_cli: Any) -> None:
    """Real runs of one cell at two budgets and two seeds: the report holds no test number anywhere."""
    runs = tmp_path / "runs"
    result = xablate_cli(
        tmp_path, "-m", "data=synthetic", "data.holdout=128", "data.train_subset=256", "data.test_subset=64",
        "trainer.epochs=1,2", "seed=0,1", "trainer.evals=2", "logger.mode=disabled", "trainer.threads=1",
        "study=pilot", out_dir=runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in (runs / "pilot").glob("*/summary.json")]
    assert len(summaries) == 4 and all(s["test_top1"] is not None for s in summaries)
    out = tmp_path / "out"
    assert main([str(runs / "pilot"), "--out", str(out), "--wandb-mode", "disabled", "--pilot"]) == 0
    assert sorted(pd.read_csv(out / "pilot.csv")["total_steps"]) == [4, 8]
    frame = pd.read_csv(out / "runs.csv")
    assert frame["test_top1"].isna().all() and "test" not in set(pd.read_csv(out / "curves.csv")["split"])
    assert (out / "pilot.md").read_text().startswith("# Pilot: budgets on the validation split only")
    assert not (out / "comparisons.csv").exists()
