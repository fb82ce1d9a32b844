"""The training engine as plain parts: what a run is built from, one gradient step, one evaluation.

Deliberately plain (airbench / nanoGPT style): data already on the device, a schedule that is a pure
function of the step, and a step that is one function a benchmark or a notebook can call as the loop does.
The loop itself (`loop.py`) strings these together; the cell's lifecycle (`xablate/cell/`) sits above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..data import Loader, Loaders, build_loaders
from ..errors import ConfigError
from ..model import spatial
from ..model.costs import ModelCost, profile
from ..spec.architecture import build_model, input_shape
from ..spec.cell import Cell
from . import distributed
from .distributed import SINGLE, World
from .meter import topk_correct
from .runtime import autocast, memory_format_of
from .schedule import Schedule


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Weight decay (the paper's L2) on conv and linear weights only, not on BatchNorm or biases. SGD runs
    fused: one kernel for all parameters instead of a loop over them (BENCHMARKS.md: about 1 ms instead of
    11-15 ms a step on the CPU, the same numbers to 2e-7)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, momentum=cfg.momentum, eps=cfg.eps)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=True)


def polyak(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """Polyak averaging, as the paper evaluates: an exponential moving average of the weights and the
    BatchNorm statistics, updated after every step; every evaluation uses it instead of the raw model."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def build_schedule(cfg: DictConfig, total_steps: int, steps_per_epoch: int, batch_size: int) -> Schedule:
    if cfg.decay_samples:
        decay_every = max(1, round(cfg.decay_samples / batch_size))
    else:
        decay_every = max(1, round(cfg.decay_epochs * steps_per_epoch))
    return Schedule(cfg.schedule, cfg.lr, total_steps, cfg.warmup_steps, cfg.decay_rate, decay_every)


@dataclass
class StepParts:
    """What one gradient step touches. `step_model` is what the step calls: the model itself, or its DDP or
    compiled wrapper; `model` is the raw module (checkpointed, averaged, evaluated)."""

    model: nn.Module
    step_model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    scaler: torch.amp.GradScaler
    averaged: AveragedModel | None
    device: torch.device
    precision: str = "32"
    memory_format: torch.memory_format = torch.channels_last

    @property
    def eval_model(self) -> nn.Module:
        return self.model if self.averaged is None else self.averaged.module

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's model, optimiser, scaler and (with Polyak averaging) averaged-model states."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])


def train_step(parts: StepParts, x: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor]:
    """One optimiser step at learning rate `lr`; returns the (detached) loss and logits (a folded stack's: each
    seed's loss, (K,), and logits (N, K, classes))."""
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    x = x.contiguous(memory_format=parts.memory_format)
    with autocast(parts.device, parts.precision):
        logits = parts.step_model(x)
        loss = parts.criterion(logits, y)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss if loss.dim() == 0 else loss.sum()).backward()  # a folded stack: one loss per seed
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.averaged is not None:
        parts.averaged.update_parameters(parts.model)
    return loss.detach(), logits.detach()


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    precision: str,
    world: World = SINGLE,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, float]:
    """Loss and top-1/top-5 accuracy over a whole split (each rank its shard, then summed); in inference
    mode, in the training's memory format."""
    model.eval()
    loss = torch.zeros((), device=device)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in loader.batches(0):
        with autocast(device, precision):
            logits = model(x.contiguous(memory_format=memory_format))
        loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        c1, c5 = topk_correct(logits, y)
        correct1 += c1
        correct5 += c5
        count += y.shape[0]
    model.train()
    total = torch.tensor(float(count), device=device)
    loss, correct1, correct5, total = distributed.all_sum(world, loss, correct1, correct5, total)
    n = total.item()
    return {"loss": loss.item() / n, "top1": correct1.item() / n, "top5": correct5.item() / n}


@dataclass
class Engine:
    """A run's built parts: the step's parts, the loaders, the schedule and the run's length and rhythm."""

    parts: StepParts
    loaders: Loaders
    schedule: Schedule
    cost: ModelCost
    steps_per_epoch: int
    total: int
    eval_steps: frozenset[int]
    log_every: int

    def evaluate(self, loader: Loader, world: World = SINGLE) -> dict[str, float]:
        parts = self.parts
        return evaluate(parts.eval_model, loader, parts.device, parts.precision, world, parts.memory_format)

    def batches_from(self, step: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The training batches from `step` to the end of the budget, epoch after epoch (a resumed run starts
        mid-epoch): the caller takes one step per batch."""
        while step < self.total:
            epoch, start = divmod(step, self.steps_per_epoch)
            for batch in self.loaders.train.batches(epoch, start):
                yield batch
                step += 1
                if step >= self.total:
                    return


def total_steps(trainer: DictConfig, steps_per_epoch: int) -> int:
    """A run's gradient steps: `trainer.epochs` of `steps_per_epoch`, capped at `trainer.max_steps`."""
    total = math.ceil(trainer.epochs * steps_per_epoch)
    return total if trainer.max_steps is None else min(total, trainer.max_steps)


def evaluation_steps(total: int, steps_per_epoch: int, eval_every: int | None, evals: int | None) -> frozenset[int]:
    """The steps that evaluate (and checkpoint): `evals` evenly spaced ones, else every `eval_every` steps
    (by default once an epoch); the last step always."""
    if evals is not None:
        steps = {max(1, round(total * k / evals)) for k in range(1, evals + 1)}
        if len(steps) < evals:
            raise ConfigError(f"trainer.evals={evals} is more than the run's {total} steps; allowed: 1..{total}")
        return frozenset(steps)
    every = eval_every or steps_per_epoch
    return frozenset({*range(every, total + 1, every), total})


def step_parts(
    cfg: DictConfig, model: nn.Module, steps: tuple[int, int], device: torch.device, world: World
) -> tuple[StepParts, Schedule]:
    """The optimiser, loss, scaler, averaging and wrappers of `model`, and the schedule over
    `steps` = (total steps, steps per epoch)."""
    total, spe = steps
    optimizer = build_optimizer(cfg.optim, model)
    schedule = build_schedule(cfg.optim, total, spe, cfg.data.batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    precision = str(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    averaged = polyak(model, cfg.optim.polyak_decay)
    step_model: nn.Module = model
    if world.distributed:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.trainer.compile:
        step_model = torch.compile(step_model, mode=cfg.trainer.compile_mode)
    memory_format = memory_format_of(cfg.trainer.channels_last)
    parts = StepParts(model, step_model, optimizer, criterion, scaler, averaged, device, precision, memory_format)
    return parts, schedule


def build_engine(cfg: DictConfig, cell: Cell, device: torch.device, world: World = SINGLE) -> Engine:
    """Model (seeded by the cell's seed), loaders, optimiser, schedule: everything the loop runs on."""
    torch.manual_seed(cell.seed)
    spatial.enable(cfg.trainer.fast_backward)
    model = build_model(cfg, cell.axes)
    cost = profile(model, input_shape(cfg))
    if world.distributed and cfg.trainer.sync_bn:
        model = distributed.convert_sync_bn(model, device)
    model.to(device=device, memory_format=memory_format_of(cfg.trainer.channels_last))
    loaders = build_loaders(cfg.data, seed=cell.seed, device=device, rank=world.rank, world_size=world.size)
    steps_per_epoch = len(loaders.train)
    total = total_steps(cfg.trainer, steps_per_epoch)
    parts, schedule = step_parts(cfg, model, (total, steps_per_epoch), device, world)
    return Engine(
        parts=parts,
        loaders=loaders,
        schedule=schedule,
        cost=cost,
        steps_per_epoch=steps_per_epoch,
        total=total,
        eval_steps=evaluation_steps(total, steps_per_epoch, cfg.trainer.eval_every, cfg.trainer.evals),
        log_every=cfg.trainer.log_every,
    )
