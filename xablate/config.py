"""The configuration schema: every knob a researcher turns, typed, registered with Hydra, validated.

`conf/` holds the values; these dataclasses hold the shape (unknown keys are rejected by Hydra) and
`validate` checks what types alone cannot, so that bad input fails in one line before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .axes import BASELINE, Axes
from .errors import ConfigError
from .identity import Cell
from .models import Xception, create_model

DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
OPTIMIZERS: tuple[str, ...] = ("sgd", "rmsprop")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
PRECISIONS: tuple[str, ...] = ("32", "bf16", "16-mixed")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
LOGGER_MODES: tuple[str, ...] = ("offline", "online", "disabled")
OBJECTIVES: tuple[str, ...] = ("val_top1", "val_top5", "val_loss", "best_val_top1")
"""What a search may optimise: values of the held-out split only, never of the test split."""
OBJECTIVE_MODES: tuple[str, ...] = ("maximize", "minimize")


@dataclass
class ModelConfig:
    name: str = "xception_mini"
    width: float = 1.0
    middle_blocks: int | None = None
    drop_rate: float = 0.0


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: str = "/usr/share/datasets/fashion-mnist"
    image_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    mean: list[float] = field(default_factory=lambda: [0.2860])
    std: list[float] = field(default_factory=lambda: [0.3530])
    batch_size: int = 256
    train_subset: int | None = None
    val_subset: int | None = None
    crop_padding: int = 2
    hflip: bool = True
    num_workers: int = 4


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    eps: float = 1.0
    schedule: str = "cosine"
    warmup_steps: int = 50
    decay_rate: float = 0.94
    decay_epochs: float = 2.0
    decay_samples: int | None = None
    label_smoothing: float = 0.1
    polyak_decay: float | None = None


@dataclass
class TrainerConfig:
    epochs: float = 2.0
    max_steps: int | None = None
    eval_every: int | None = None
    log_every: int = 50
    device: str = "auto"
    precision: str = "32"
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None
    progress: bool | None = None
    sync_bn: bool = False
    deterministic: bool = True


@dataclass
class LoggerConfig:
    mode: str = "offline"
    project: str = "xablate"
    entity: str | None = None
    log_model: bool = False


@dataclass
class TuneConfig:
    """`tune=lr`: each cell picks `param` among `values` by its objective on the held-out split (trials at
    seed `seed`, kept in `<out_dir>/<study>/tuning/`), then trains with it."""

    param: str = "optim.lr"
    values: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])
    seed: int = 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    segments: Any = BASELINE.segments
    activation: Any = BASELINE.activation
    residual: Any = BASELINE.residual
    order: str = BASELINE.order
    mid_norm: bool = BASELINE.mid_norm
    budget: str = BASELINE.budget
    seed: int = 0
    dry_run: bool = False
    rerun: bool = False
    reuse: bool = True
    study: str = "default"
    out_dir: str = "runs"
    objective: str = "val_top1"
    objective_mode: str = "maximize"
    tune: TuneConfig | None = None


def register_configs() -> None:
    """The schema `conf/config.yaml` starts from: every group merges into a typed node."""
    ConfigStore.instance().store(name="base_config", node=Config)


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not known; allowed: {', '.join(allowed)}")


def _positive(key: str, value: object, *, optional: bool = False, minimum: float = 1) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{key}={value!r} is invalid; allowed: a number >= {minimum}")


def model_kwargs(cfg: Config | DictConfig, axes: Axes | None = None) -> dict[str, Any]:
    """The `create_model` arguments a config describes, with the axes in their Python types."""
    axes = Axes.parse(cfg) if axes is None else axes
    return dict(
        name=cfg.model.name,
        num_classes=cfg.data.num_classes,
        in_chans=cfg.data.in_chans,
        **axes.as_dict(),
        width=cfg.model.width,
        middle_blocks=cfg.model.middle_blocks,
        drop_rate=cfg.model.drop_rate,
    )


def build_model(cfg: Config | DictConfig, axes: Axes | None = None) -> Xception:
    """The cell's model, on the current default device (meta inside `torch.device("meta")`)."""
    kwargs = model_kwargs(cfg, axes)
    return create_model(kwargs.pop("name"), **kwargs)


def input_shape(cfg: Config | DictConfig) -> tuple[int, int, int]:
    return (cfg.data.in_chans, cfg.data.image_size, cfg.data.image_size)


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


def validate(cfg: DictConfig) -> Cell:
    """The cell `cfg` describes, or a one-line `ConfigError` for any value the run could not use.

    Builds the model on the meta device, so architecture errors (segments that do not divide a layer, an
    unreachable parameter budget) surface here too."""
    _check_known_keys(cfg, OmegaConf.structured(Config))
    cell = Cell.of(cfg)
    _choice("data.name", cfg.data.name, DATASETS)
    _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    _choice("optim.schedule", cfg.optim.schedule, SCHEDULES)
    _choice("trainer.precision", str(cfg.trainer.precision), PRECISIONS)
    _choice("trainer.device", cfg.trainer.device, DEVICES)
    _choice("logger.mode", cfg.logger.mode, LOGGER_MODES)
    _choice("objective", cfg.objective, OBJECTIVES)
    _choice("objective_mode", cfg.objective_mode, OBJECTIVE_MODES)
    _check_tune(cfg)
    _positive("data.batch_size", cfg.data.batch_size)
    _positive("data.train_subset", cfg.data.train_subset, optional=True)
    _positive("data.val_subset", cfg.data.val_subset, optional=True)
    _positive("data.image_size", cfg.data.image_size)
    _positive("trainer.epochs", cfg.trainer.epochs, minimum=0)
    _positive("trainer.max_steps", cfg.trainer.max_steps, optional=True)
    _positive("trainer.eval_every", cfg.trainer.eval_every, optional=True)
    _positive("trainer.log_every", cfg.trainer.log_every)
    _positive("trainer.threads", cfg.trainer.threads, optional=True)
    _positive("optim.lr", cfg.optim.lr, minimum=0)
    decay = cfg.optim.polyak_decay
    if decay is not None and not 0 < decay < 1:
        raise ConfigError(f"optim.polyak_decay={decay!r} is invalid; allowed: 0 < decay < 1, or null (off)")
    if not 0 <= cfg.model.drop_rate < 1:
        raise ConfigError(f"model.drop_rate={cfg.model.drop_rate!r} is invalid; allowed: 0 <= p < 1")
    if len(cfg.data.mean) != cfg.data.in_chans or len(cfg.data.std) != cfg.data.in_chans:
        raise ConfigError(f"data.mean and data.std need {cfg.data.in_chans} values (data.in_chans)")
    with torch.device("meta"):
        build_model(cfg, cell.axes)
    return cell
