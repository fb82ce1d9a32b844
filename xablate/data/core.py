"""Pieces every loader shares: the Loader protocol, seeds derived from (seed, epoch, batch), sharding, normalising."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

import torch
from torch import Tensor

from ..errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ..spec.schema import DataConfig

    DataCfg: TypeAlias = DataConfig | DictConfig

Batch = tuple[Tensor, Tensor]

# Subsets are drawn with this fixed seed, not the run's: every seed of a study trains on the same samples.
SUBSET_SEED = 20170407


class Loader(Protocol):
    """What the trainer iterates: a fixed number of batches per epoch, each a pure function of (seed, epoch, i)."""

    num_samples: int

    def __len__(self) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed for one stream, e.g. ("perm", epoch) or ("aug", epoch, batch).

    Hashing rather than `seed + epoch` keeps neighbouring seeds' streams unrelated.
    """
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def generator(seed: int, *parts: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


def subset_indices(n: int, size: int | None, key: str) -> Tensor | None:
    """The first `size` of a fixed permutation of range(n), in ascending order; None for the whole set.

    `key` ("data.train_subset" or "data.val_subset") names the setting in errors and seeds the permutation.
    """
    if size is None or size == n:
        return None
    if not 1 <= size <= n:
        raise ConfigError(f"{key}={size} is invalid for a split of {n} samples; allowed: 1..{n}, or null for all")
    perm = torch.randperm(n, generator=generator(SUBSET_SEED, key))
    return perm[:size].sort().values


def holdout_indices(labels: Tensor, size: int, seed: int) -> Tensor:
    """`size` positions of a split to hold out, stratified by class, drawn by `seed` alone; ascending.

    Each class gives its share of `size` (largest remainders round up), its positions taken in the order
    of one permutation drawn from `seed`: every cell and every run seed holds out the same images."""
    n = len(labels)
    if not 0 < size < n:
        raise ConfigError(f"data.holdout={size} is invalid for a training split of {n} images; allowed: 0..{n - 1}")
    perm = torch.randperm(n, generator=generator(seed, "holdout"))
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * size / n
    take = quota.floor().long()
    short = size - int(take.sum())
    take[torch.argsort(quota - take, descending=True, stable=True)[:short]] += 1
    permuted = labels[perm]
    chosen = [perm[permuted == c][:k] for c, k in zip(classes.tolist(), take.tolist(), strict=True)]
    return torch.cat(chosen).sort().values


def shard(lo: int, hi: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous part of positions lo..hi-1 of a global batch; the parts tile it in rank order."""
    n = hi - lo
    return lo + n * rank // world_size, lo + n * (rank + 1) // world_size


def check_world(batch_size: int, rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} and world_size={world_size}: need 0 <= rank < world_size")
    if batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} does not split over {world_size} processes; "
            f"allowed: a multiple of {world_size}"
        )


class Normalizer:
    """uint8 images -> float32 (x / 255 - mean) / std, as one fused multiply-add on the images' device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device) -> None:
        m = torch.tensor([float(v) for v in mean], dtype=torch.float64)
        s = torch.tensor([float(v) for v in std], dtype=torch.float64)
        self.scale = (1.0 / (255.0 * s)).to(torch.float32).view(-1, 1, 1).to(device)
        self.shift = (-m / s).to(torch.float32).view(-1, 1, 1).to(device)

    def __call__(self, images: Tensor) -> Tensor:
        return torch.addcmul(self.shift, images.to(torch.float32), self.scale)
