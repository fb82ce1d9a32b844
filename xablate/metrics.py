"""`metrics.csv`: one row per logged training interval and per evaluation, appended as the run goes."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from .files import append_text, write_atomic

COLUMNS: tuple[str, ...] = ("step", "epoch", "split", "loss", "top1", "top5", "lr", "img_per_s", "wall_s")
METRICS = "metrics.csv"


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """How many samples have their label among the top k logits, per k (as tensors: no device sync)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(target[:, None])
    return [hits[:, :k].any(dim=1).sum() for k in ks]


class MetricsLog:
    """Appends rows to `metrics.csv`; on resume, first drops rows past the checkpoint (they will be redone)."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows: list[dict[str, Any]] = []
        if resume_step is not None and path.exists():
            with path.open(newline="") as fh:
                rows = [row for row in csv.DictReader(fh) if int(row["step"]) <= resume_step]
        write_atomic(path, _csv(rows, header=True))

    def write(self, row: dict[str, Any]) -> None:
        append_text(self.path, _csv([{k: _fmt(row.get(k)) for k in COLUMNS}], header=False))


def _csv(rows: list[dict[str, Any]], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
