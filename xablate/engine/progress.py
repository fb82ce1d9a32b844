"""What a run prints: a live bar with images/s and ETA on a terminal, one line per evaluation in a log."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    def __init__(self, name: str, total_steps: int, interactive: bool | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.name = name
        self.total = total_steps
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._last_draw = 0.0

    def step(self, step: int, img_per_s: float, train_s: float, steps_done_here: int) -> None:
        if not self.enabled or not self.interactive or time.monotonic() - self._last_draw < 0.5:
            return
        self._last_draw = time.monotonic()
        eta = train_s / max(1, steps_done_here) * (self.total - step)
        width = 24
        filled = int(width * step / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.name} [{bar}] {step}/{self.total} {img_per_s:,.0f} img/s ETA {_clock(eta)}   ")
        sys.stderr.flush()

    def evaluation(
        self,
        step: int,
        epoch: float,
        train: dict,
        val: dict,
        wall_s: float,
        eta_s: float,
        train_step: int | None = None,
    ) -> None:
        """One line per evaluation. `train` holds the latest training figures; when they are those of an earlier
        logged row (`train_step`, before `step`), the line says which step they come from."""
        if not self.enabled:
            return
        if self.interactive:
            sys.stderr.write("\r" + " " * 100 + "\r")
        when = f" (step {train_step})" if train_step is not None and train_step != step else ""
        line = (
            f"{self.name} step {step}/{self.total} epoch {epoch:.2f} | "
            f"train loss {train.get('loss', float('nan')):.4f}{when} | "
            f"val loss {val['loss']:.4f} top1 {val['top1']:.2%} | "
            f"{train.get('img_per_s', float('nan')):,.0f} img/s | {_clock(wall_s)} elapsed, ETA {_clock(eta_s)}"
        )
        print(line, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.interactive:
            sys.stderr.write("\r" + " " * 100 + "\r")
        print(f"{self.name} {text}", flush=True)
