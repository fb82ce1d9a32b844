"""K seeds of one cell as one folded model (`model/stack.py`): its parts, its batches, its loss, its metrics.

Each seed is initialised from its own seed, shuffled and augmented by its own loader, and scored by its own
loss; the folded step sums the K losses, whose gradients touch only their own seed's slices, so each seed
takes the step its own run would have taken, to fp32 rounding (other kernels, other summation orders).
Momentum, weight decay and Polyak averaging are elementwise and stay per seed. What would couple the seeds
(16-bit loss scaling, dropout draws) is refused by the config's check.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from ..data import Loaders, TensorLoader, build_loaders
from ..model import spatial
from ..model.costs import profile
from ..model.stack import fold, unfold
from ..spec.architecture import build_model, input_shape
from ..spec.cell import Cell
from .build import Engine, StepParts, evaluation_steps, step_parts, total_steps
from .distributed import SINGLE
from .meter import IntervalMeter
from .runtime import autocast, memory_format_of


class StackedBatches:
    """K loaders in lockstep: batch i is their batches i side by side, images (N, K * C, H, W), labels (N, K)."""

    def __init__(self, loaders: Sequence[Any]) -> None:
        self.loaders = list(loaders)
        self.num_samples = self.loaders[0].num_samples

    def __len__(self) -> int:
        return len(self.loaders[0])

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        for parts in zip(*(loader.batches(epoch, start) for loader in self.loaders), strict=True):
            yield torch.cat([x for x, _ in parts], 1), torch.stack([y for _, y in parts], 1)


def _reseeded(loader: TensorLoader | None, seed: int) -> TensorLoader | None:
    """The same images under another run seed: a tensor loader's seed only draws its order and augmentation."""
    if loader is None:
        return None
    twin = copy.copy(loader)
    twin.seed = seed
    return twin


def seed_loaders(data: DictConfig, seeds: Sequence[int], device: torch.device) -> Loaders:
    """Each seed's loaders, side by side. Synthetic data are drawn from the run seed, so each seed gets its own;
    a data set read from files is read once and shared."""
    if data.name == "synthetic":
        each = [build_loaders(data, seed=s, device=device) for s in seeds]
    else:
        first = build_loaders(data, seed=seeds[0], device=device)
        each = [first, *(Loaders(*(_reseeded(part, s) for part in first)) for s in seeds[1:])]
    test = None if each[0].test is None else StackedBatches([loaders.test for loaders in each])
    return Loaders(StackedBatches([x.train for x in each]), StackedBatches([x.val for x in each]), test)


class StackedLoss(nn.Module):
    """Each seed's mean cross-entropy (label smoothing as configured): logits (N, K, classes) -> (K,)."""

    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        n, k = target.shape
        loss = F.cross_entropy(
            logits.flatten(0, 1), target.flatten(), reduction="none", label_smoothing=self.label_smoothing
        )
        return loss.view(n, k).mean(0)


def folded_model(cfg: DictConfig, cells: Sequence[Cell], device: torch.device) -> nn.Module:
    """The K cells' models, each built from its own seed exactly as its own run builds it, folded into one."""
    members = []
    for cell in cells:
        torch.manual_seed(cell.seed)
        members.append(build_model(cfg, cell.axes))
    with torch.device("meta"):
        model = build_model(cfg, cells[0].axes, stack=len(cells))
    model = model.to_empty(device=device)
    model.load_state_dict(fold([m.state_dict() for m in members]))
    return model.to(memory_format=memory_format_of(cfg.trainer.channels_last))


def build_stack_engine(cfg: DictConfig, cells: Sequence[Cell], device: torch.device) -> Engine:
    """The engine of K seeds of one cell (`cells`, seeds differing only) trained as one folded model."""
    spatial.enable(cfg.trainer.fast_backward)
    with torch.device("meta"):
        cost = profile(build_model(cfg, cells[0].axes), input_shape(cfg))
    model = folded_model(cfg, cells, device)
    loaders = seed_loaders(cfg.data, [cell.seed for cell in cells], device)
    steps_per_epoch = len(loaders.train)
    total = total_steps(cfg.trainer, steps_per_epoch)
    parts, schedule = step_parts(cfg, model, (total, steps_per_epoch), device, SINGLE)
    parts.criterion = StackedLoss(cfg.optim.label_smoothing)
    eval_steps = evaluation_steps(total, steps_per_epoch, cfg.trainer.eval_every, cfg.trainer.evals)
    return Engine(parts, loaders, schedule, cost, steps_per_epoch, total, eval_steps, cfg.trainer.log_every)


def seat_states(parts: StepParts, k: int) -> list[dict[str, Any]]:
    """Each seed's model, optimiser, scaler and averaged-model states, as its own run's checkpoint holds them."""
    return unfold(parts.state_dict(), k)


def _hits(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per seed, the samples whose label is the top logit, and among the top 5: logits (N, K, C), target (N, K)."""
    top = logits.topk(min(5, logits.shape[2]), dim=2).indices.eq(target[..., None])
    return top[..., 0].sum(0), top.any(2).sum(0)


class StackMeter:
    """The K seeds' interval metrics: summed on the device as (K,) tensors, one synchronisation per flush
    moving them into each seed's `IntervalMeter` host totals (what its checkpoint keeps)."""

    def __init__(self, device: torch.device, k: int) -> None:
        self.seats = [IntervalMeter(device) for _ in range(k)]
        self._sums = torch.zeros(4, k, device=device, dtype=torch.float64)
        self._pending = 0

    def add(self, loss: Tensor, logits: Tensor, target: Tensor) -> None:
        n, k = target.shape
        ce = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none").view(n, k).sum(0)
        c1, c5 = _hits(logits, target)
        self._sums += torch.stack([loss.float() * n, ce, c1, c5])
        self._pending += n

    def flush(self, seconds: float) -> int:
        """Add the interval's sums and `seconds` to every seed's totals; the images each seed saw."""
        loss, ce, c1, c5 = self._sums.tolist()
        for i, seat in enumerate(self.seats):
            seat.loss, seat.ce = seat.loss + loss[i], seat.ce + ce[i]
            seat.correct1, seat.correct5 = seat.correct1 + int(c1[i]), seat.correct5 + int(c5[i])
            seat.images, seat.seconds = seat.images + self._pending, seat.seconds + seconds
        moved, self._pending = self._pending, 0
        self._sums.zero_()
        return moved


@torch.inference_mode()
def evaluate_stack(parts: StepParts, loader: StackedBatches, k: int) -> list[dict[str, float]]:
    """Each seed's loss and top-1/top-5 over a whole split, its own loader's images, its averaged model."""
    model = parts.eval_model
    model.eval()
    sums = torch.zeros(3, k, device=parts.device, dtype=torch.float64)
    count = 0
    for x, y in loader.batches(0):
        with autocast(parts.device, parts.precision):
            logits = model(x.contiguous(memory_format=parts.memory_format)).float()
        n = y.shape[0]
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(n, k).sum(0)
        sums += torch.stack([loss, *_hits(logits, y)])
        count += n
    model.train()
    loss, c1, c5 = sums.tolist()
    return [{"loss": loss[i] / count, "top1": c1[i] / count, "top5": c5[i] / count} for i in range(k)]
