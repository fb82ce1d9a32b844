"""A command with `trainer.stack=K` must hold whole blocks of seeds: the job of any seed of a block trains
all K (`cell/stack.py`), so a seed missing from the command would be trained without being asked for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from omegaconf import DictConfig

from ..errors import ConfigError


def _ranges(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def check_stacks(cells: Sequence[DictConfig], jobs: Sequence[Sequence[str]]) -> None:
    """One line naming the first block of seeds that a stacked command holds only part of."""
    seeds_of: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for cell, job in zip(cells, jobs, strict=True):
        if cell.trainer.stack > 1:
            seeds_of[tuple(sorted(o for o in job if not o.lstrip("+~").startswith("seed=")))].add(cell.seed)
    for cell, job in zip(cells, jobs, strict=True):
        k = cell.trainer.stack
        if k == 1:
            continue
        first = cell.seed - cell.seed % k
        block = list(range(first, first + k))
        have = seeds_of[tuple(sorted(o for o in job if not o.lstrip("+~").startswith("seed=")))]
        missing = [s for s in block if s not in have]
        if missing:
            raise ConfigError(
                f"trainer.stack={k} trains seeds in blocks of {k} (seed={_ranges(block)} together), but seed "
                f"{_ranges(missing)} of that block is not in this command; allowed: -m with whole blocks of seeds, "
                f"e.g. seed={_ranges(block)}"
            )
