"""Learning-rate schedules as pure functions of the gradient step, so a resumed run needs no schedule state."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """`kind`: `cosine` (linear warm-up, then cosine to 0), `step` (the paper's: x`decay_rate` every
    `decay_every` steps, after warm-up), or `constant`."""

    kind: str
    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    decay_rate: float = 0.94
    decay_every: int = 1

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.base_lr * self.decay_rate ** (step // max(1, self.decay_every))
        return self.base_lr
