"""Validation of a composed config: what types alone cannot check, each failure one line naming the value
and what is allowed, before any work starts; and the model a valid config describes. Over 250 lines
because every knob's range lives here, in one table beside the checks that read it."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..design import check_looks, parse_baseline
from ..errors import ConfigError
from .architecture import check_architecture
from .cell import Cell
from .schema import (
    COMPARISON_SCOPES,
    COMPILE_MODES,
    DATASETS,
    DEVICES,
    LOGGER_MODES,
    OBJECTIVE_MODES,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    PRIMARY_ENDPOINTS,
    SCHEDULES,
    VARIANCE_MODELS,
    Config,
    TrainerConfig,
)


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not known; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class Range:
    """The values a numeric knob may take: finite, between `low` and `high` (either end open or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    null: str = ""
    """What null means when the knob may be null (e.g. "off"); empty when it may not."""

    def admits(self, value: object) -> bool:
        if value is None:
            return bool(self.null)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        x = "n" if self.integer else "x"
        if self.low is not None and self.high is not None:
            text = f"{_num(self.low)} {'<' if self.low_open else '<='} {x} {'<' if self.high_open else '<='} "
            text += _num(self.high) + (" (an integer)" if self.integer else "")
        elif self.low is not None:
            text = f"{'an integer' if self.integer else x} {'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = "a finite number"
        return text + (f", or null ({self.null})" if self.null else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_compile_mode(trainer: TrainerConfig | DictConfig) -> None:
    """`trainer.compile_mode` is torch.compile's `mode`: null (its default) or one of `COMPILE_MODES`."""
    if trainer.compile_mode is None:
        return
    _choice("trainer.compile_mode", trainer.compile_mode, COMPILE_MODES)
    if not trainer.compile:
        raise ConfigError(f"trainer.compile_mode={trainer.compile_mode!r} needs trainer.compile=true")


_COUNT, _SOME = Range(1, integer=True), Range(0, integer=True)
_FRACTION, _POSITIVE = Range(0, 1, high_open=True), Range(0, low_open=True)
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1, integer=True),
    "model.width": _POSITIVE,
    "model.middle_blocks": Range(0, integer=True, null="the architecture's own"),
    "model.drop_rate": _FRACTION,
    "data.image_size": _COUNT,
    "data.in_chans": _COUNT,
    "data.num_classes": _COUNT,
    "data.batch_size": _COUNT,
    "data.train_subset": Range(1, integer=True, null="all"),
    "data.val_subset": Range(1, integer=True, null="all"),
    "data.test_subset": Range(1, integer=True, null="all"),
    "data.holdout": Range(0, integer=True),
    "data.holdout_seed": Range(0, 2**32 - 1, integer=True),
    "data.eval_batch_size": Range(1, integer=True, null="data.batch_size"),
    "data.crop_padding": _SOME,
    "data.num_workers": _SOME,
    "optim.lr": Range(0),
    "optim.momentum": _FRACTION,
    "optim.weight_decay": Range(0),
    "optim.eps": _POSITIVE,
    "optim.warmup_steps": _SOME,
    "optim.decay_rate": Range(0, 1, low_open=True),
    "optim.decay_epochs": _POSITIVE,
    "optim.decay_samples": Range(1, integer=True, null="use decay_epochs"),
    "optim.label_smoothing": _FRACTION,
    "optim.polyak_decay": Range(0, 1, low_open=True, high_open=True, null="off"),
    "trainer.epochs": _POSITIVE,
    "trainer.max_steps": Range(1, integer=True, null="no cap"),
    "trainer.eval_every": Range(1, integer=True, null="once per epoch"),
    "trainer.evals": Range(1, integer=True, null="use trainer.eval_every"),
    "trainer.log_every": _COUNT,
    "trainer.threads": Range(1, integer=True, null="PyTorch's default"),
    "trainer.stack": _COUNT,
    "design.margin": _POSITIVE,
}
"""Every numeric knob of the schema and the values it may take; `check_ranges` enforces them."""

PER_CHANNEL: dict[str, Range] = {"data.mean": Range(), "data.std": _POSITIVE}


def _select(cfg: Config | DictConfig, dotted: str) -> Any:
    return functools.reduce(getattr, dotted.split("."), cfg)


def check_ranges(cfg: Config | DictConfig) -> None:
    """Raise a one-line `ConfigError` naming the first numeric value outside its range, and the range."""
    for key, allowed in RANGES.items():
        value = _select(cfg, key)
        if not allowed.admits(value):
            raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")
    for key, allowed in PER_CHANNEL.items():
        values = list(_select(cfg, key))
        if not all(allowed.admits(v) for v in values):
            raise ConfigError(f"{key}={values!r} is out of range; allowed: a list with every value {allowed}")


PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")
PATH_COMPONENTS: tuple[str, ...] = ("study",)
"""Values that name a folder under `out_dir` (the run folder's own name is made from checked axes)."""


def check_path_components(cfg: Config | DictConfig) -> None:
    """A value that becomes a folder name must be a plain name, so no run lands outside `out_dir`."""
    for key in PATH_COMPONENTS:
        value = _select(cfg, key)
        if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value) or ".." in value:
            raise ConfigError(
                f"{key}={value!r} is invalid; allowed: a plain name of letters, digits and _ . + - "
                "(no '/', no '..', not starting with '.', at most 100 characters)"
            )


@functools.cache
def _schema() -> DictConfig:
    return OmegaConf.structured(Config)


def _check_known_keys(cfg: DictConfig, schema: DictConfig, prefix: str = "") -> None:
    """Hydra's `+key=value` can add keys the schema does not have; xablate would silently ignore them."""
    for key in cfg:
        if prefix == "" and key == "hydra":
            continue
        if key not in schema:
            raise ConfigError(
                f"{prefix}{key} is not a setting; the settings of {prefix.rstrip('.') or 'the top level'} are: "
                f"{', '.join(map(str, schema))}"
            )
        node, known = cfg[key], schema[key]
        if isinstance(node, DictConfig) and isinstance(known, DictConfig):
            _check_known_keys(node, known, f"{prefix}{key}.")


def _check_tune(cfg: DictConfig) -> None:
    """Tuning must never see the test split: once the data has a held-out split (`data.holdout`), it is on."""
    if cfg.tune is None:
        return
    if OmegaConf.select(cfg, cfg.tune.param) is None:
        raise ConfigError(f"tune.param={cfg.tune.param!r} is not a setting")
    if not cfg.tune["values"]:
        raise ConfigError("tune.values is empty; allowed: one value or more")
    if "holdout" in cfg.data and not cfg.data.holdout:
        raise ConfigError("tune needs a held-out split of the training set: set data.holdout")


def _check_stack(cfg: DictConfig) -> None:
    """What would make a folded seed differ from its own run, or cannot be folded (`model/stack.py`)."""
    k = cfg.trainer.stack
    reasons = {
        "trainer.precision=16-mixed": "one seed's overflow would skip every seed's step",
        f"model.drop_rate={cfg.model.drop_rate}": "the seeds would share dropout draws",
        "tune=...": "each seed would need its own search",
        "data.name=imagefolder": "only data sets held as tensors are folded",
    }
    flags = [str(cfg.trainer.precision) == "16-mixed", cfg.model.drop_rate > 0, cfg.tune is not None,
             cfg.data.name == "imagefolder"]  # fmt: skip
    for (setting, why), flagged in zip(reasons.items(), flags, strict=True):
        if k > 1 and flagged:
            raise ConfigError(f"trainer.stack={k} with {setting}: {why}; allowed: trainer.stack=1")


def validate(cfg: DictConfig) -> Cell:
    """The cell `cfg` describes, or a one-line `ConfigError` for any value the run could not use.

    Builds the model on the meta device, so architecture errors (segments that do not divide a layer, an
    unreachable parameter budget) surface here too."""
    _check_known_keys(cfg, _schema())
    cell = Cell.of(cfg)
    _choice("data.name", cfg.data.name, DATASETS)
    _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    _choice("optim.schedule", cfg.optim.schedule, SCHEDULES)
    _choice("trainer.precision", str(cfg.trainer.precision), PRECISIONS)
    _choice("trainer.device", cfg.trainer.device, DEVICES)
    _choice("logger.mode", cfg.logger.mode, LOGGER_MODES)
    check_ranges(cfg)
    check_path_components(cfg)
    if cfg.trainer.evals is not None and cfg.trainer.eval_every is not None:
        raise ConfigError(
            f"trainer.evals={cfg.trainer.evals} and trainer.eval_every={cfg.trainer.eval_every} both set; "
            "allowed: one of them (the other null)"
        )
    if cfg.status and cfg.dry_run:
        raise ConfigError("status=true and dry_run=true both set; allowed: one of them (status only reads folders)")
    _choice("design.primary", cfg.design.primary, PRIMARY_ENDPOINTS)
    parse_baseline(cfg.design.baseline)
    if cfg.design.looks is not None:
        check_looks(cfg.design.looks)
    if cfg.design.variance is not None:
        _choice("design.variance", cfg.design.variance, VARIANCE_MODELS)
    if cfg.design.comparisons is not None:
        _choice("design.comparisons", cfg.design.comparisons, COMPARISON_SCOPES)
    _check_compile_mode(cfg.trainer)
    _choice("objective", cfg.objective, OBJECTIVES)
    _choice("objective_mode", cfg.objective_mode, OBJECTIVE_MODES)
    _check_tune(cfg)
    _check_stack(cfg)
    if len(cfg.data.mean) != cfg.data.in_chans or len(cfg.data.std) != cfg.data.in_chans:
        raise ConfigError(f"data.mean and data.std need {cfg.data.in_chans} values (data.in_chans)")
    check_architecture(cfg, cell.axes)
    return cell
