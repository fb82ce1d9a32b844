"""The configuration schema: every knob a researcher turns, typed and registered with Hydra.

`conf/` holds the values; these dataclasses hold the shape (unknown keys are rejected by Hydra), and
`validate.py` checks what types alone cannot, so that bad input fails in one line before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from ..axes import BASELINE

DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
OPTIMIZERS: tuple[str, ...] = ("sgd", "rmsprop")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
PRECISIONS: tuple[str, ...] = ("32", "bf16", "16-mixed")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
LOGGER_MODES: tuple[str, ...] = ("offline", "online", "disabled")
PRIMARY_ENDPOINTS: tuple[str, ...] = ("test_top1", "val_top1")
VARIANCE_MODELS: tuple[str, ...] = ("welch", "paired", "pooled")
COMPARISON_SCOPES: tuple[str, ...] = ("baseline", "pairwise")
"""What a study's family of comparisons holds: every cell against the baseline, or every pair of cells too."""
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
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
    test_subset: int | None = None
    holdout: int = 0
    holdout_seed: int = 0
    eval_batch_size: int | None = None
    crop_padding: int = 2
    hflip: bool = True
    num_workers: int = 4
    check: bool = True


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
    evals: int | None = None
    test_every_eval: bool = False
    log_every: int = 50
    device: str = "auto"
    precision: str = "32"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    fast_backward: bool = False
    threads: int | None = None
    progress: bool | None = None
    sync_bn: bool = False
    deterministic: bool = True
    stack: int = 1


@dataclass
class DesignConfig:
    """A study's design, declared before it runs and read by the analysis: what its verdicts are about."""

    primary: str = "test_top1"
    baseline: str = "segments=depthwise activation=none residual=true"
    margin: float = 0.5
    variance: str | None = None
    """`welch` | `paired` | `pooled`; None: not declared (the analysis' flags choose, Welch's by default)."""
    comparisons: str | None = None
    """`baseline` | `pairwise`; None: what the figure compares (against the baseline; Fig. 10 pairwise too)."""
    looks: list[int] | None = None
    """The seed counts at which the study may be read, rising, the last its registered N; None: none registered."""


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
    design: DesignConfig = field(default_factory=DesignConfig)
    segments: Any = BASELINE.segments
    activation: Any = BASELINE.activation
    residual: Any = BASELINE.residual
    order: str = BASELINE.order
    mid_norm: bool = BASELINE.mid_norm
    budget: str = BASELINE.budget
    seed: int = 0
    dry_run: bool = False
    status: bool = False
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
