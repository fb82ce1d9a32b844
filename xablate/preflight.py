"""Check every cell of a command before any of them runs.

Hydra validates a job's config only when that job starts, so a bad value in the third cell of a sweep
would surface after two cells had trained. `check_command` expands the command line into its cells the
way Hydra's basic sweeper does, composes each one and validates it, checks the launcher is installed, the
data exist (unless `data.check=false`) and every `out_dir` can be written, and reports the first problem
in a single line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import validate
from .data import check_data
from .errors import ConfigError
from .files import unwritable_reason

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as err:
        for override in overrides:
            group, _, value = override.lstrip("+~").partition("=")
            if (CONF_DIR / group).is_dir() and value not in _group_options(group):
                allowed = ", ".join(_group_options(group))
                raise ConfigError(f"{group}={value!r} is not known; allowed: {allowed}") from None
        raise ConfigError(str(err).splitlines()[0]) from None
    except (OmegaConfBaseException, OverrideParseException, ConfigCompositionException) as err:
        raise ConfigError(_one_line(err)) from None


def _one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, folded to their first line and their cause's."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = first.replace("Error merging override ", "").rstrip(".")
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        return f"{first}: {str(cause).strip().splitlines()[0]}"
    return first


def expand_cells(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command would launch (one job unless `multirun`)."""
    if not multirun:
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    for override in parsed:
        if override.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(
                f"{override.input_line}: this sweeper (Hydra's basic one) takes lists (a,b,c), range(start,stop) "
                "and choice(...), not interval(...); a sweeper that samples ranges is Optuna's "
                "(pip install hydra-optuna-sweeper, then hydra/sweeper=optuna)"
            )
    return [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]


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


def check_out_dirs(cells: list[DictConfig]) -> None:
    """Every `out_dir` of the command can be created and written, checked before any cell starts."""
    for out_dir in sorted({str(cell.out_dir) for cell in cells}):
        reason = unwritable_reason(Path(out_dir))
        if reason is not None:
            raise ConfigError(f"out_dir={out_dir!r} cannot be created or written: {reason}")


def _sweeper_params(cfg: DictConfig) -> list[str]:
    """Sweep values an experiment config puts in `hydra.sweeper.params`, as overrides."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return [f"{key}={value}" for key, value in params.items()]


def check_command(argv: list[str]) -> tuple[list[DictConfig], bool]:
    """Compose and validate every cell of `python -m xablate ARGV`; return their configs and whether
    the command is a multirun."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.cfg or args.shell_completion:
        return [], False
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="xablate"):
        try:
            parsed = OverridesParser.create().parse_overrides(args.overrides)
        except OverrideParseException as err:
            raise ConfigError(_one_line(err)) from None
        base = _compose([o.input_line for o in parsed if not o.is_sweep_override()])
        multirun = args.multirun or str(OmegaConf.select(base, "hydra.mode")).endswith("MULTIRUN")
        extra = _sweeper_params(base) if multirun else []
        cells = [_compose(cell) for cell in expand_cells([*extra, *args.overrides], multirun)]
    if multirun:
        check_launcher(base)
    for cell in cells:
        validate(cell)
        if cell.data.check:
            check_data(cell.data)
    check_out_dirs(cells)
    return cells, multirun
