"""A small data set held on the device as uint8 tensors, batched, augmented and normalised there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .core import Batch, Normalizer, check_world, generator, shard


class TensorLoader:
    """Batches of `images` (uint8 N x C x H x W) and `labels`, both already on the device they will be used on.

    Training batches follow a permutation drawn from (seed, epoch) and drop the last partial batch; each sample is
    randomly cropped from its zero-padded image and flipped with parameters drawn from (seed, epoch, batch), for
    the whole global batch, so that the ranks' shards of a batch put together equal the single-process batch.
    Validation batches are in order, unaugmented, and cover every sample once. `source` holds each sample's
    position in the data set's own split, so that what a loader can yield is known exactly.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
        train: bool,
        crop_padding: int = 0,
        hflip: bool = False,
        rank: int = 0,
        world_size: int = 1,
        source: Tensor | None = None,
    ) -> None:
        check_world(batch_size, rank, world_size)
        if crop_padding < 0:
            raise ConfigError(f"data.crop_padding={crop_padding} is invalid; allowed: 0 (off) or more pixels")
        n, c, h, w = images.shape
        if train and n < batch_size:
            raise ConfigError(
                f"data.batch_size={batch_size} is more than the {n} training samples; "
                "allowed: at most the training set size (see data.train_subset)"
            )
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.batch_size = batch_size
        self.pad = crop_padding if train else 0
        self.hflip = hflip and train
        self.n = n
        self.images = F.pad(images, (self.pad,) * 4) if self.pad else images
        self.labels = labels
        self.source = source
        self.normalize = Normalizer(mean, std, images.device)
        device = images.device
        hp, wp = h + 2 * self.pad, w + 2 * self.pad
        chan, rows = torch.arange(c, device=device), torch.arange(h, device=device)
        self._plane = (chan.view(1, c, 1, 1) * (hp * wp) + rows.view(1, 1, h, 1) * wp).contiguous()
        self._cols = torch.arange(w, device=device)
        self._cols_flipped = self._cols.flip(0)
        bounds = [shard(i * batch_size, min((i + 1) * batch_size, n), rank, world_size) for i in range(len(self))]
        self.num_samples = sum(hi - lo for lo, hi in bounds)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.train else -(-self.n // self.batch_size)

    def order(self, epoch: int) -> Tensor:
        """The sample indices of `epoch` in the order training visits them."""
        return torch.randperm(self.n, generator=generator(self.seed, "perm", epoch)).to(self.images.device)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if start < 0:
            raise ValueError(f"start={start}: need a batch index >= 0")
        order = self.order(epoch) if self.train else None
        draws = self._draws(epoch, start) if order is not None and (self.pad or self.hflip) else None
        for i in range(start, len(self)):
            lo = i * self.batch_size
            a, b = shard(lo, min(lo + self.batch_size, self.n), self.rank, self.world_size)
            if order is None:
                yield self.normalize(self.images[a:b]), self.labels[a:b]
                continue
            idx = order[a:b]
            images = self.images[idx] if draws is None else self._augment(idx, draws[i - start, :, a - lo : b - lo])
            yield self.normalize(images), self.labels[idx]

    def _draws(self, epoch: int, start: int) -> Tensor:
        """Crop offsets and flips (batch, 3, batch_size) of the epoch's batches from `start` on, each batch's
        drawn on the CPU from (seed, epoch, batch) and all copied to the device at once: a copy per step
        would make the host wait for the GPU at every step."""
        draws = torch.empty(max(0, len(self) - start), 3, self.batch_size, dtype=torch.long)
        for row, batch in enumerate(range(start, len(self))):
            g = generator(self.seed, "aug", epoch, batch)
            torch.randint(0, 2 * self.pad + 1, (2, self.batch_size), generator=g, out=draws[row, :2])
            torch.randint(0, 2 if self.hflip else 1, (1, self.batch_size), generator=g, out=draws[row, 2:])
        return draws.to(self.images.device)

    def _augment(self, idx: Tensor, draws: Tensor) -> Tensor:
        """Crop and flip as one flat gather: output (k, c, y, x) reads padded (idx[k], c, dy + y, dx + x or dx + w-1-x).

        `torch.take` with precomputed flat offsets is about twice as fast on CPU as four-tensor advanced indexing.
        """
        dy, dx, flip = draws
        _, c, hp, wp = self.images.shape
        corner = (idx * (c * hp * wp) + dy * wp + dx).view(-1, 1, 1, 1)
        cols = torch.where(flip[:, None].bool(), self._cols_flipped, self._cols)[:, None, None, :]
        return torch.take(self.images, corner + self._plane + cols)
