"""Looks and family-wise error: a study read at its registered looks keeps false verdicts under 5% across the
family and the looks; reading every look at 5%, or equivalence unadjusted, does not. Every verdict says its
look, and only the final look is a finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.looks import look_at, simulate_family_error, spent
from analysis.stats import holm
from xablate.design import check_looks
from xablate.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
STUDIES = 5000


def published_sds(folder: str, budget: str) -> list[float]:
    """The seed SD of each segments cell's final test top-1 (points) in a published study, depthwise first."""
    runs = pd.read_csv(REPO / "experiments" / folder / "runs.csv")
    runs = runs[runs["budget"] == budget]
    sd = (100 * runs["test_top1"]).groupby(runs["segments"].astype(str)).std(ddof=1)
    return [float(sd["depthwise"]), *(float(sd[s]) for s in ("1", "2", "4", "8", "16"))]


def test_spending_keeps_false_differences_within_5_percent_across_the_looks() -> None:
    """Fig. 11 at equal parameters' observed SDs, no true difference, read at four looks up to 32 seeds."""
    sds, looks = published_sds("fig11/results_iso_v2", "params"), (4, 8, 16, 32)
    spending = simulate_family_error(sds, looks, true_diff=0.0, margin=0.5, studies=STUDIES)
    every_look_at_5 = simulate_family_error(sds, looks, true_diff=0.0, margin=0.5, studies=STUDIES, spending=False)
    assert spending <= 0.05 < every_look_at_5


def test_family_wise_equivalence_keeps_false_equivalences_within_5_percent() -> None:
    """Fig. 11 at equal width's observed SDs, every arm truly 0.5 points off: the rule before looks (TOST
    unadjusted, every look at 5%) calls some of them equivalent too often; the family-wise rule does not."""
    sds, looks = published_sds("fig11/results_v2", "none"), (3, 8, 16)
    family_wise = simulate_family_error(sds, looks, true_diff=0.5, margin=0.5, studies=STUDIES)
    before = simulate_family_error(
        sds, looks, true_diff=0.5, margin=0.5, studies=STUDIES, spending=False, adjust_equivalence=False
    )
    assert family_wise <= 0.05 < before


def test_looks_spend_little_early_and_all_of_alpha_by_the_last() -> None:
    looks = (8, 16, 32)
    levels = [look_at(n, looks).level for n in looks]
    assert levels[0] < 0.001 < levels[1] < levels[2] < 0.05
    assert sum(levels) == pytest.approx(spent(1.0)) == pytest.approx(0.05)
    stages = [look_at(n, looks).stage for n in (8, 10, 16, 32, 40)]
    assert stages == ["interim", "unplanned", "interim", "final", "final"]
    assert look_at(40, looks).label == "final, read past its last look (40 of 32 seeds)"
    assert look_at(3, None).stage == "unregistered" and look_at(3, None).level == 0.05


@pytest.mark.parametrize("looks", [[16, 8], [1, 4], [], ["a"]])
def test_bad_looks_are_refused_in_one_line(looks: list) -> None:
    with pytest.raises(ConfigError, match=r"^design\.looks=.* is not allowed; allowed: rising seed counts"):
        check_looks(looks)


def test_a_read_before_the_last_look_is_labelled_and_is_no_finding(tmp_path: Path) -> None:
    """The published Fig. 10 v2 frame (8 seeds a cell) without its declared look, read with looks 8, 19 and
    then with 8 as the last."""
    published = str(tmp_path / "published")
    Path(published).mkdir()
    source = REPO / "experiments/fig10/results_v2"
    pd.read_csv(source / "runs.csv").drop(columns="design_looks").to_csv(Path(published) / "runs.csv", index=False)
    (Path(published) / "curves.csv").write_bytes((source / "curves.csv").read_bytes())
    assert main([published, "--out", str(tmp_path / "interim"), "--wandb-mode", "disabled", "--looks", "8,19"]) == 0
    interim = (tmp_path / "interim" / "verdicts.md").read_text()
    assert "## fig10_activation: interim (8 of 19 seeds), not a finding" in interim
    bullets = [line for line in interim.splitlines() if line.startswith("- ")]
    assert bullets and all(line.endswith("; interim (8 of 19 seeds)") for line in bullets)
    table = pd.read_csv(tmp_path / "interim" / "comparisons.csv")
    assert set(table["stage"]) == {"interim"} and set(table["look"]) == {"8 of 19"}
    assert table["level"].to_numpy() == pytest.approx(spent(8 / 19), rel=1e-4)
    differs = table["verdict"].isin(["better", "worse"])
    assert (differs == (table["p_holm"] < table["level"])).all() and (table["p_holm"] < 0.05).sum() > differs.sum()
    top1 = table[table["metric"] == table["metric"].iloc[0]]
    assert top1["p_tost_holm"].to_numpy() == pytest.approx(holm(top1["p_tost"].tolist()), rel=1e-4)
    equivalent = top1["verdict"] == "equivalent"
    assert equivalent.any() and (top1.loc[equivalent, "p_tost_holm"] < top1.loc[equivalent, "level"]).all()
    assert main([published, "--out", str(tmp_path / "final"), "--wandb-mode", "disabled", "--looks", "4,8"]) == 0
    final = (tmp_path / "final" / "verdicts.md").read_text()
    assert "## fig10_activation: final (8 of 8 seeds), findings" in final


def test_a_bad_looks_flag_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "analysis", str(REPO / "experiments/fig10/results_v2"), "--looks", "19,8"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "--looks" in result.stderr and "rising" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
