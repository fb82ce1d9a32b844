"""Config tests (second tier): `conf/` through `hydra.compose`, run identity, preflight."""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from xablate import ConfigError
from xablate.axes import parse_segments
from xablate.spec.architecture import model_kwargs
from xablate.spec.cell import Cell, run_key
from xablate.spec.resolvers import register_resolvers
from xablate.spec.schema import register_configs
from xablate.spec.validate import validate
from xablate.sweep import check
from xablate.sweep.check import check_command

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_configs()
    register_resolvers()


def test_defaults_compose_and_validate(compose_cfg: Any) -> None:
    cfg = compose_cfg()
    validate(cfg)
    assert cfg.model.name == "xception_mini"
    assert cfg.data.name == "fashion_mnist"
    assert parse_segments(cfg.segments) == "depthwise"
    assert (cfg.activation, cfg.residual, cfg.order, cfg.mid_norm, cfg.budget) == (
        "none",
        True,
        "depthwise_first",
        False,
        "none",
    )


@pytest.mark.parametrize(
    ("group", "option"),
    [(p.parent.name, p.stem) for group in ("model", "data") for p in sorted((CONF_DIR / group).glob("*.yaml"))],
)
def test_every_group_option_composes_and_validates(group: str, option: str, compose_cfg: Any) -> None:
    cfg = compose_cfg(f"{group}={option}")
    validate(cfg)
    assert cfg[group].name == option


def test_axis_overrides(compose_cfg: Any) -> None:
    cfg = compose_cfg(
        "segments=4", "activation=elu", "residual=false", "order=pointwise_first", "mid_norm=true", "budget=params"
    )
    validate(cfg)
    kwargs = model_kwargs(cfg)
    assert kwargs["segments"] == 4 and isinstance(kwargs["segments"], int)
    assert kwargs["activation"] == "elu"
    assert kwargs["residual"] is False
    assert (kwargs["order"], kwargs["mid_norm"], kwargs["budget"]) == ("pointwise_first", True, "params")


@pytest.mark.parametrize(
    "override",
    [
        "segments=3",
        "activation=tanh",
        "residual=maybe",
        "optim.polyak_decay=1.5",
        "design.variance=bayes",
        "design.comparisons=all",
        "design.baseline='segments=one activation=none'",
        "design.baseline='activation=relu activation=none'",
    ],
)
def test_bad_axis_values_fail_validation(override: str, compose_cfg: Any) -> None:
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError, match=re.escape(override.partition("=")[2].strip("'"))):
        validate(cfg)


@pytest.mark.parametrize("override", ["foo=1", "model.foo=1", "trainer.epoch=3"])
def test_unknown_key_is_rejected(override: str, compose_cfg: Any) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)
    with pytest.raises(ConfigError) as info:
        check_command([override])
    assert "\n" not in str(info.value) and override.partition("=")[0].split(".")[-1] in str(info.value)


# --- run identity -----------------------------------------------------------------------------------------


def test_run_key_is_stable_across_compositions(compose_cfg: Any) -> None:
    first = compose_cfg.__wrapped__("segments=4", "activation=relu")
    second = compose_cfg.__wrapped__("activation=relu", "segments=4")
    assert first is not second
    assert run_key(first) == run_key(second)
    assert len(run_key(first)) == 8 and int(run_key(first), 16) >= 0


@pytest.mark.parametrize(
    "override",
    [
        "segments=4",
        "activation=elu",
        "residual=false",
        "order=pointwise_first",
        "mid_norm=true",
        "budget=params",
        "seed=1",
        "model=xception",
        "data=synthetic",
        "optim.lr=0.1",
        "optim.polyak_decay=0.99",
    ],
)
def test_run_key_changes_with_what_changes_the_numbers(override: str, compose_cfg: Any) -> None:
    assert run_key(compose_cfg(override)) != run_key(compose_cfg())


@pytest.mark.parametrize(
    "override",
    [
        "out_dir=/elsewhere/runs",
        "study=other",
        "logger.mode=disabled",
        "dry_run=true",
        "status=true",
        "data.root=/mnt/data",
        "trainer.log_every=7",
        "trainer.threads=1",
        "trainer.deterministic=false",
        "design.comparisons=pairwise",
    ],
)
def test_run_key_ignores_paths_and_logging(override: str, compose_cfg: Any) -> None:
    assert run_key(compose_cfg(override)) == run_key(compose_cfg())


def test_a_knob_added_later_stays_out_of_the_key_while_unset(compose_cfg: Any) -> None:
    """Cells trained before `optim.polyak_decay` existed keep their folders."""
    cfg = compose_cfg()
    older = OmegaConf.to_container(cfg)
    del older["optim"]["polyak_decay"]
    assert run_key(OmegaConf.create(older)) == run_key(cfg)


def test_segments_spellings_share_a_key(compose_cfg: Any) -> None:
    assert run_key(compose_cfg("segments=4")) == run_key(compose_cfg("segments='4'"))


def test_run_name(compose_cfg: Any) -> None:
    assert Cell.of(compose_cfg("segments=4", "activation=relu")).name == "seg4-relu-res-s0"
    assert Cell.of(compose_cfg("residual=false", "seed=1")).name == "segdw-none-nores-s1"


def test_run_folder_is_name_and_key(compose_cfg: Any) -> None:
    cfg = compose_cfg("segments=4", "out_dir=/tmp/xablate-runs", hydra_node=True)
    assert cfg.hydra.run.dir == f"/tmp/xablate-runs/default/seg4-none-res-s0-{run_key(cfg)}"
    assert cfg.hydra.sweep.subdir == Cell.of(cfg).folder.name


# --- preflight ----------------------------------------------------------------------------------------------


def test_check_command_returns_every_cell() -> None:
    command = check_command(["-m", "segments=1,4,depthwise", "seed=0,1", "dry_run=true"])
    cells = command.cells
    assert command.multirun and command.search is None and len(cells) == 6
    got = sorted((str(parse_segments(c.segments)), c.seed) for c in cells)
    assert got == sorted(itertools.product(["1", "4", "depthwise"], [0, 1]))
    assert len({run_key(c) for c in cells}) == 6


@pytest.mark.parametrize(
    "argv",
    [["experiment=fig11_iso", "seed=0,1"], ["experiment=fig10", "seed=3", "trainer.stack=1", "model.width=0.5"],
     ["-m", "hydra/launcher=joblib", "model=xception_mini,xception", "segments=1,4", "data.batch_size=64,128"],
     ["-m", "segments=1,4", "optim=paper_sgd,sgd_cosine", "residual=false"]],
)  # fmt: skip
def test_cells_set_on_one_composed_base_equal_the_cells_hydra_composes_one_by_one(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-launch check composes a sweep's base once and sets each cell's values on a copy; every field,
    Hydra's own included, must be what composing the cell from scratch gives."""
    fast = check_command(argv).cells
    monkeypatch.setattr(check, "compose_cells", lambda base, fixed, jobs, compose, conf: [compose(j) for j in jobs])
    slow = check_command(argv).cells
    assert len(fast) == len(slow) > 1
    for ours, hydras in zip(fast, slow, strict=True):
        assert OmegaConf.to_container(ours, resolve=False) == OmegaConf.to_container(hydras, resolve=False)
        assert Cell.of(ours).folder == Cell.of(hydras).folder


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["experiment=quickstart", "dry_run=true"], 4),  # its own hydra.sweeper.params: 4 segments values
        (["-m", "hydra/launcher=joblib", "segments=1,4", "seed=0,1", "dry_run=true"], 4),  # any launcher
        (["-m", "hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2", "segments=1,2,4", "dry_run=true"], 3),
    ],
)
def test_check_command_expands_through_the_commands_own_sweeper(argv: list[str], count: int, tmp_path: Path) -> None:
    command = check_command([*argv, f"out_dir={tmp_path}"])
    assert command.multirun and command.search is None and len(command.cells) == count
    assert len({run_key(c) for c in command.cells}) == count
    assert list(tmp_path.iterdir()) == []  # the check writes nothing where the runs go


def test_check_command_checks_a_searchs_space_and_first_trial(tmp_path: Path) -> None:
    command = check_command(["hparams_search=lr", "segments=4", f"out_dir={tmp_path}"])
    (trial,) = command.cells
    assert command.multirun and command.search == "OptunaSweeper"
    assert 0.01 <= trial.optim.lr <= 1.0 and parse_segments(trial.segments) == 4
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=tag(log, interval(0, 1))", "OptunaSweeper search space: The `low` value must be larger than 0"),
        ("segments=choice(3)", "segments=3"),  # a trial the search space allows fails validation
    ],
)
def test_a_bad_search_space_is_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        check_command(["hparams_search=lr", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=3", override])
    assert "\n" not in str(info.value)


def test_check_command_single_run() -> None:
    command = check_command(["segments=8", "activation=relu", "dry_run=true"])
    (cell,) = command.cells
    assert not command.multirun
    assert parse_segments(cell.segments) == 8 and cell.activation == "relu"


def test_check_command_rejects_a_bad_cell() -> None:
    with pytest.raises(ConfigError, match="segments=3") as info:
        check_command(["-m", "segments=1,3", "dry_run=true"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("sweep", "named"), [("data=synthetic,nope", "data='nope'"), ("trainer.epoch=1,2", "epoch")])
def test_a_sweep_cell_that_cannot_be_composed_is_one_line(sweep: str, named: str) -> None:
    """The check composes every cell of a grid itself, so a cell Hydra cannot compose still fails it."""
    with pytest.raises(ConfigError, match=named) as info:
        check_command(["-m", sweep, "dry_run=true"])
    assert "\n" not in str(info.value)


PUBLISHED_FOLDERS: dict[str, tuple[str, ...]] = {
    "v1": ("results", "results_iso"),
    "v2": ("results_v2", "results_iso_v2"),
    "h200": ("results_iso_h200",),
}
"""The published samples by version; the H200 sample ran on a GPU (`trainer.device=cuda`, part of its key)."""


def published_cells(version: str = "v1") -> list[dict[str, str]]:
    """The rows of every published runs.csv of one version (`PUBLISHED_FOLDERS`)."""
    root = Path(__file__).resolve().parents[1] / "experiments"
    rows = []
    for table in sorted(root.glob("*/results*/runs.csv")):
        if table.parent.name in PUBLISHED_FOLDERS[version]:
            with table.open(newline="") as fh:
                rows.extend({**row, "study_dir": table.parent.parent.name} for row in csv.DictReader(fh))
    return rows


def test_published_cells_keep_their_folders_at_holdout_zero(compose_cfg: Any) -> None:
    """Knobs added since (holdout, evals, test split, design) stay out of the key at their old behaviour, so
    the folders of the published studies are found again by the same command with data.holdout=0."""
    cells = published_cells()
    assert len(cells) >= 45
    for cell in cells:
        axes = [f"{axis}={cell[axis]}" for axis in ("segments", "activation", "residual", "budget", "seed")]
        assert run_key(compose_cfg(*axes, "data.holdout=0")) == cell["run_key"], cell["name"]
    assert run_key(compose_cfg("data.holdout=0")) != run_key(compose_cfg())


@pytest.mark.slow
def test_published_v2_cells_are_found_again_by_their_study_config(compose_cfg: Any) -> None:
    """A v2 study published at some of its seeds continues in the same folders: its config gives the same keys."""
    cells = published_cells("v2")
    assert cells
    for cell in cells:
        axes = [f"{axis}={cell[axis]}" for axis in ("segments", "activation", "residual", "budget", "seed")]
        assert run_key(compose_cfg(f"experiment={cell['study_dir']}", *axes)) == cell["run_key"], cell["name"]


def test_the_h200_sample_is_found_again_by_its_study_config_on_cuda(compose_cfg: Any) -> None:
    """The H200 sample's runs were trained by `experiment=fig11_iso trainer.device=cuda`: the same keys."""
    cells = published_cells("h200")
    assert len(cells) == 63
    for cell in cells:
        axes = [f"{axis}={cell[axis]}" for axis in ("segments", "activation", "residual", "budget", "seed")]
        cfg = compose_cfg("experiment=fig11_iso", "trainer.device=cuda", *axes)
        assert run_key(cfg) == cell["run_key"], cell["name"]


@pytest.mark.parametrize(
    ("study", "axis"), [("fig9", "residual"), ("fig10", "activation"), ("fig11", "segments"), ("fig11_iso", "segments")]
)
def test_registered_studies_run_seed_major(study: str, axis: str, compose_cfg: Any) -> None:
    """Hydra's basic sweeper varies its first parameter slowest: seed first means every cell at seed 0, then at 1."""
    params = compose_cfg(f"experiment={study}", hydra_node=True).hydra.sweeper.params
    assert list(params) == ["seed", axis]
    seeds = [int(s) for s in str(params.seed).split(",")]
    assert seeds == list(range(len(seeds))) and len(seeds) >= 16


@pytest.mark.parametrize("study", ["fig9", "fig10", "fig11", "fig11_iso"])
def test_every_study_fixes_its_execution_setting_and_declares_its_design(study: str, compose_cfg: Any) -> None:
    cfg = compose_cfg(f"experiment={study}")
    validate(cfg)
    assert cfg.study == study and isinstance(cfg.trainer.threads, int)
    assert cfg.design.comparisons is not None
    assert cfg.trainer.evals >= 10 and cfg.trainer.eval_every is None
    assert cfg.design.primary == "test_top1" and cfg.design.variance is not None and cfg.design.margin == 0.5


@pytest.mark.parametrize(("pilot", "axis"), [("fig11_iso", "segments"), ("fig10", "activation"), ("fig9", "residual")])
def test_each_v3_pilot_is_two_cells_at_four_budgets_on_a_held_out_split(pilot: str, axis: str, tmp_path: Path) -> None:
    """The pilots decide the v3 budgets: on the held-out split only, the study's baseline and one other cell,
    each at 4, 8, 16 and 32 epochs and seeds 0-2, and nothing else of the study changed."""
    cells = check_command([f"experiment={pilot}_pilot_v3", f"out_dir={tmp_path}"]).cells
    study = check_command([f"experiment={pilot}", f"out_dir={tmp_path}", "seed=0"]).cells[0]
    assert {c.data.holdout for c in cells} == {5000} and {c.study for c in cells} == {f"{pilot}_pilot_v3"}
    grid = sorted((c.seed, c.trainer.epochs, str(c[axis])) for c in cells)
    values = sorted({str(c[axis]) for c in cells})
    assert len(values) == 2 and grid == sorted(itertools.product([0, 1, 2], [4, 8, 16, 32], values))
    same = ("model", "optim", "data", "budget", "order", "mid_norm")
    assert all(OmegaConf.to_container(c[k]) == OmegaConf.to_container(study[k]) for c in cells for k in same[:3])
    assert all(c[k] == study[k] for c in cells for k in same[3:])
