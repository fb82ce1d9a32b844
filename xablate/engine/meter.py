"""The training metrics of a logging interval, accumulated on the device and read once per interval."""

from __future__ import annotations

import math
from typing import Any

import torch

from . import distributed
from .distributed import SINGLE, World


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """How many samples have their label among the top k logits, per k (as tensors: no device sync)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(target[:, None])
    return [hits[:, :k].any(dim=1).sum() for k in ks]


class IntervalMeter:
    """The training loss (the objective), its unsmoothed cross-entropy and the accuracy of the current
    logging interval.

    Each step adds to tensors on the device (no synchronisation); `flush` moves them to host totals with one
    synchronisation (summed over the ranks). The host totals are what a checkpoint keeps, under the names
    `state_dict` gives them, so a resumed run finishes the interval it was in."""

    def __init__(self, device: torch.device, world: World = SINGLE) -> None:
        self.device, self.world = device, world
        self._loss = torch.zeros((), device=device)
        self._ce = torch.zeros((), device=device)
        self._correct = [torch.zeros((), device=device, dtype=torch.long) for _ in range(2)]
        self._pending = 0
        self.reset()

    def reset(self) -> None:
        self.loss, self.ce, self.correct1, self.correct5, self.images, self.seconds = 0.0, 0.0, 0, 0, 0, 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        self._loss += loss.float() * target.shape[0]
        self._ce += torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")
        c1, c5 = topk_correct(logits, target)
        self._correct[0] += c1
        self._correct[1] += c5
        self._pending += target.shape[0]

    def flush(self, seconds: float) -> int:
        """Move the device sums to the host totals, adding `seconds` of training time; the images moved."""
        images = torch.tensor(float(self._pending), device=self.device)
        loss, ce, c1, c5, images = distributed.all_sum(self.world, self._loss, self._ce, *self._correct, images)
        moved = int(images.item())
        self.images += moved
        self.seconds += seconds
        self.loss += loss.item()
        self.ce += ce.item()
        self.correct1 += int(c1.item())
        self.correct5 += int(c5.item())
        self._pending = 0
        for tensor in (self._loss, self._ce, *self._correct):
            tensor.zero_()
        return moved

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss)

    def row(self) -> dict[str, float]:
        """The interval's mean objective and cross-entropy, top-1, top-5 and images/s."""
        n = self.images
        return {
            "loss": self.loss / n,
            "ce": self.ce / n,
            "top1": self.correct1 / n,
            "top5": self.correct5 / n,
            "img_per_s": n / self.seconds,
        }

    def partial_row(self) -> dict[str, float]:
        """Loss and images/s so far, for a progress line before the interval's first row."""
        return {"loss": self.loss / max(1, self.images), "img_per_s": self.images / max(self.seconds, 1e-9)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "interval_loss": self.loss,
            "interval_ce": self.ce,
            "interval_correct1": self.correct1,
            "interval_correct5": self.correct5,
            "interval_images": self.images,
            "interval_s": self.seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The host totals of a checkpoint (one written before `ce` was logged resumes with it at 0)."""
        self.loss, self.ce = state["interval_loss"], state.get("interval_ce", 0.0)
        self.correct1, self.correct5 = state["interval_correct1"], state["interval_correct5"]
        self.images, self.seconds = state["interval_images"], state["interval_s"]
