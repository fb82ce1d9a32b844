"""A setting that varies within a study: each comparison within each stratum beside the pooled one, and a line
when the strata disagree beyond seed noise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.stats import Test
from analysis.strata import strata_p

REPO = Path(__file__).resolve().parents[1]


def test_fig10_is_compared_within_each_kind_of_cpu_and_the_disagreement_is_said(tmp_path: Path) -> None:
    """Fig. 10 v2: seeds 0-1 predate hardware recording, seeds 2-7 ran on an AVX-512 EPYC."""
    out = tmp_path / "out"
    assert main([str(REPO / "experiments/fig10/results_v2"), "--out", str(out), "--wandb-mode", "disabled"]) == 0
    strata = pd.read_csv(out / "strata.csv")
    assert set(strata["stratum"]) == {"AMD EPYC (AVX512)", "not recorded"} and set(strata["setting"]) == {"hardware"}
    assert strata.groupby("cell")["n"].sum().to_dict() == {"elu": 8, "gelu": 8, "relu": 8, "silu": 8}
    relu = strata[strata["cell"] == "relu"].set_index("stratum")
    assert relu.loc["AMD EPYC (AVX512)", "diff"] == pytest.approx(-0.745) and relu["p_strata"].iloc[0] < 0.05
    verdicts = (out / "verdicts.md").read_text()
    assert "ReLU vs none, final test top-1, differs by hardware beyond noise" in verdicts
    assert "ELU vs none, final test top-1, differs by hardware" not in verdicts


def test_strata_with_one_degree_of_freedom_are_not_called_different_by_chance() -> None:
    """Two strata 0.4 apart: with many seeds a disagreement; with a two-seed stratum (df about 1), noise."""
    many = strata_p([Test("welch", -0.75, 0.05, 30.0), Test("welch", -0.35, 0.05, 30.0)])
    two_seeds = strata_p([Test("welch", -0.75, 0.05, 30.0), Test("welch", -0.35, 0.2, 1.0)])
    assert many < 0.001 and two_seeds > 0.05


def test_a_study_in_one_setting_has_no_strata(tmp_path: Path) -> None:
    """Fig. 11 at equal parameters, v1: every run on one machine, none recording it."""
    out = tmp_path / "out"
    assert main([str(REPO / "experiments/fig11/results_iso"), "--out", str(out), "--wandb-mode", "disabled"]) == 0
    assert not (out / "strata.csv").exists()
