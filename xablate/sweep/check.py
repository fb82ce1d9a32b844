"""Check every cell of a command before any of them runs.

Hydra validates a job's config only when that job starts, so a bad value in the third cell of a sweep
would surface after two cells had trained. `check_command` lets the command's own sweeper expand the
command line, through Hydra's public plugin interfaces (`Sweeper.sweep` over a launcher that only records
the jobs it is given), composes each cell and validates it, checks that Hydra's output folders are the cell's own,
the launcher is installed, the data exist (unless `data.check=false`) and every `out_dir` can be written, and
reports the first problem in a single line.

A grid sweeper (Hydra's basic one) yields every cell; a search sweeper (Optuna, Nevergrad, Ax) chooses its
later trials from the results of earlier ones, so only its search space and its first batch of trials are
checked, and the command announces a search instead of a list of cells.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.core.plugins import Plugins
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.xablate_preflight import RecordingLauncher, is_enough_jobs

from ..data import check_data
from ..errors import ConfigError
from ..files import unwritable_reason
from ..spec.validate import validate
from .compose import compose_cells
from .stacks import check_stacks

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (MissingConfigException, OmegaConfBaseException, OverrideParseException, ConfigCompositionException) as err:
        raise _config_error(err, overrides) from None


def _config_error(err: Exception, overrides: list[str]) -> ConfigError:
    """One line for an error composing `overrides`; an unknown group option lists the known ones."""
    if not isinstance(err, MissingConfigException):
        return ConfigError(_one_line(err))
    for override in overrides:
        group, _, values = override.lstrip("+~").partition("=")
        for value in values.split(","):
            if (CONF_DIR / group).is_dir() and value not in _group_options(group):
                return ConfigError(f"{group}={value!r} is not known; allowed: {', '.join(_group_options(group))}")
    return ConfigError(str(err).splitlines()[0])


def _one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, folded to their first line and their cause's."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = first.replace("Error merging override ", "").rstrip(".")
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        return f"{first}: {str(cause).strip().splitlines()[0]}"
    return first


GRID_SWEEPERS: frozenset[str] = frozenset({"hydra._internal.core_plugins.basic_sweeper.BasicSweeper"})
"""Sweepers whose jobs do not depend on earlier jobs' results: every cell can be known before any runs."""


@dataclass(frozen=True)
class Command:
    """What a command line will run: its cells (a search's first trials only), and whether it is a multirun
    or, with the sweeper's name, a search."""

    cells: list[DictConfig] = field(default_factory=list)
    multirun: bool = False
    search: str | None = None


def _sweep_config(base: DictConfig, sweep_dir: str, *, first_batch_only: bool) -> DictConfig:
    """`base` with the recording launcher, its sweep folder in `sweep_dir` (the basic sweeper writes
    `multirun.yaml` there) and no study storage (Optuna would record the check's trial in it)."""
    cfg = base.copy()
    with open_dict(cfg):
        cfg.hydra.launcher = {"_target_": f"{RecordingLauncher.__module__}.RecordingLauncher"}
        cfg.hydra.launcher.first_batch_only = first_batch_only
        cfg.hydra.sweep.dir = sweep_dir
        if "storage" in cfg.hydra.sweeper:
            cfg.hydra.sweeper.storage = None
    return cfg


def check_grid_values(overrides: list[str]) -> None:
    """The grid sweeper takes lists and ranges, not intervals: say so, and name a sweeper that samples them."""
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(
                f"{override.input_line}: this sweeper (Hydra's basic one) takes lists (a,b,c), range(start,stop) "
                "and choice(...), not interval(...); a sweeper that samples ranges is Optuna's "
                "(pip install -e '.[optuna]', then hydra/sweeper=optuna or hparams_search=lr)"
            )


def check_launcher(cfg: DictConfig) -> None:
    """A multirun's launcher plugin must be installed; Hydra would only say "Unknown plugin class"."""
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_") or "")
    module = target.rpartition(".")[0]
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if module and not found:
        choice = OmegaConf.select(cfg, "hydra.runtime.choices")["hydra/launcher"]
        raise ConfigError(
            f"hydra/launcher={choice} is not installed: pip install -e '.[launchers]' (in the xablate folder) "
            "adds the joblib and submitit launchers"
        )


HYDRA_DIRS: tuple[str, ...] = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")
"""Hydra's output folders, which `conf/config.yaml` makes from the cell: set elsewhere, they would split a run
in two (Hydra's files there, the run's in its own folder)."""


def check_hydra_dirs(cfg: DictConfig, folder: Path) -> None:
    """Each of `HYDRA_DIRS` must name the cell's own `folder` (its sweep folder, its name): a run's folder is
    its identity, `<out_dir>/<study>/<name>-<key>`, where skip, resume, reuse and the analysis find it, so a
    command that moves Hydra's output elsewhere is refused, naming the knob and `out_dir`."""
    wanted = {"hydra.run.dir": folder, "hydra.sweep.dir": folder.parent, "hydra.sweep.subdir": Path(folder.name)}
    for knob in HYDRA_DIRS:
        parent, _, leaf = knob.rpartition(".")
        given = OmegaConf.to_container(OmegaConf.select(cfg, parent), resolve=False)[leaf]
        try:
            same = Path(str(OmegaConf.select(cfg, knob))) == wanted[knob]
        except OmegaConfBaseException:
            same = False
        if not same:
            raise ConfigError(
                f"{knob}={given}: xablate puts each run in <out_dir>/<study>/<name>-<key> (here {folder}), where "
                f"skip, resume and reuse find it; choose where runs go with out_dir= (and study=), not {knob}"
            )


def check_out_dirs(cells: list[DictConfig]) -> None:
    """Every `out_dir` of the command can be created and written, checked before any cell starts."""
    for out_dir in sorted({str(cell.out_dir) for cell in cells}):
        reason = unwritable_reason(Path(out_dir))
        if reason is not None:
            raise ConfigError(f"out_dir={out_dir!r} cannot be created or written: {reason}")


def expand_cells(base: DictConfig, overrides: list[str]) -> tuple[list[list[str]], str | None]:
    """The override lists of the jobs `base`'s sweeper launches for `overrides`, and the sweeper's name when
    it is a search (then only its first batch). Inside an initialised Hydra context."""
    target = str(OmegaConf.select(base, "hydra.sweeper._target_"))
    search = None if target in GRID_SWEEPERS else target.rpartition(".")[2]
    if search is None:
        check_grid_values(overrides)
    jobs: list[list[str]] = []

    def record(job: list[str]) -> float:
        jobs.append(job)
        return 0.0

    context = HydraContext(config_loader=GlobalHydra.instance().hydra.config_loader, callbacks=None)
    with tempfile.TemporaryDirectory(prefix="xablate-preflight-") as sweep_dir:
        cfg = _sweep_config(base, sweep_dir, first_batch_only=search is not None)
        try:
            logging.disable(logging.WARNING)  # a search sweeper's own messages about the trials nobody runs
            sweeper = Plugins.instance().instantiate_sweeper(hydra_context=context, task_function=record, config=cfg)
            if search is None:  # check_command composes every cell itself: composing each twice doubles the wait
                sweeper.validate_batch_is_legal = lambda batch: None
            sweeper.sweep(arguments=overrides)
        except Exception as err:
            if not is_enough_jobs(err):
                error = _config_error(err, overrides)
                raise (ConfigError(f"{search} search space: {error}") if search else error) from None
        finally:
            logging.disable(logging.NOTSET)
    return jobs, search


def check_command(argv: list[str]) -> Command:
    """Compose and validate every cell of `xablate ARGV` (a search: its first trials)."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.cfg or args.shell_completion:
        return Command()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="xablate"):
        try:
            parsed = OverridesParser.create().parse_overrides(args.overrides)
        except OverrideParseException as err:
            raise ConfigError(_one_line(err)) from None
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = _compose(fixed)
        multirun = args.multirun or str(OmegaConf.select(base, "hydra.mode")).endswith("MULTIRUN")
        if multirun:
            check_launcher(base)
            jobs, search = expand_cells(base, args.overrides)
            cells = compose_cells(base, fixed, jobs, _compose, CONF_DIR)
        else:  # one cell: the base is it, unless a sweep value without -m is to fail as Hydra would fail it
            search, jobs = None, [args.overrides]
            cells = [base if len(fixed) == len(parsed) else _compose(args.overrides)]
    for cell in cells:
        check_hydra_dirs(cell, validate(cell).folder)
        if cell.data.check:
            check_data(cell.data)
    if search is None:
        check_stacks(cells, jobs)
    if not cells[0].status:  # a status view writes nothing
        check_out_dirs(cells)
    return Command(cells, multirun, search)
