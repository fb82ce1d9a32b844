"""The data layer: `check_data(cfg)` before any work, then `build_loaders(cfg, ...)` for the (train, val) loaders.

Every data set but `imagefolder` is small enough to live on the training device as uint8 tensors; batches are
gathered, augmented (random crop from a zero-padded image, horizontal flip) and normalised there in a few batched
tensor ops. `imagefolder` streams files through DataLoader workers. Either way a batch is a pure function of
(seed, epoch, batch index), so a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .core import Batch, Loader, check_world, subset_indices
from .imagefolder import ImageFolderLoader, build_imagefolder, check_imagefolder
from .sources import CIFAR, Splits, cifar_root, fashion_mnist_root, make_synthetic, read_cifar, read_fashion_mnist
from .tensors import TensorLoader

if TYPE_CHECKING:
    from .core import DataCfg

__all__ = ["Batch", "ImageFolderLoader", "Loader", "TensorLoader", "build_loaders", "check_data"]

NAMES = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
SYNTHETIC_SIZES = (512, 256)  # train, val when data.train_subset / data.val_subset are null


def check_data(cfg: DataCfg) -> None:
    """Raise a one-line ConfigError if the files `cfg` needs are missing; reads no data."""
    if cfg.name == "fashion_mnist":
        fashion_mnist_root(cfg.root)
    elif cfg.name in CIFAR:
        cifar_root(cfg.name, cfg.root)
    elif cfg.name == "imagefolder":
        check_imagefolder(cfg.root, cfg.num_classes, cfg.in_chans)
    elif cfg.name != "synthetic":
        raise ConfigError(f"data.name={cfg.name!r} is not known; allowed: {', '.join(NAMES)}")


def build_loaders(
    cfg: DataCfg, *, seed: int, device: torch.device | str, rank: int = 0, world_size: int = 1
) -> tuple[Loader, Loader]:
    """The (train, val) loaders of this rank; batch_size is the global batch, split evenly over world_size ranks."""
    check_data(cfg)
    check_world(cfg.batch_size, rank, world_size)
    if cfg.crop_padding < 0:
        raise ConfigError(f"data.crop_padding={cfg.crop_padding} is invalid; allowed: 0 (off) or more pixels")
    device = torch.device(device)
    if cfg.name == "imagefolder":
        return build_imagefolder(cfg, seed=seed, device=device, rank=rank, world_size=world_size)
    splits = _read(cfg, seed)
    loaders = []
    for train, images, labels in ((True, *splits[:2]), (False, *splits[2:])):
        if cfg.name != "synthetic":
            key = "data.train_subset" if train else "data.val_subset"
            keep = subset_indices(len(images), cfg.train_subset if train else cfg.val_subset, key)
            if keep is not None:
                images, labels = images[keep], labels[keep]
        _check_labels(cfg, labels)
        loaders.append(
            TensorLoader(
                _fit(cfg, images.to(device)),
                labels.to(device),
                batch_size=cfg.batch_size,
                mean=list(cfg.mean),
                std=list(cfg.std),
                seed=seed,
                train=train,
                crop_padding=cfg.crop_padding,
                hflip=cfg.hflip,
                rank=rank,
                world_size=world_size,
            )
        )
    return loaders[0], loaders[1]


def _read(cfg: DataCfg, seed: int) -> Splits:
    if cfg.name == "fashion_mnist":
        return read_fashion_mnist(cfg.root)
    if cfg.name in CIFAR:
        return read_cifar(cfg.name, cfg.root)
    n_train = cfg.train_subset or SYNTHETIC_SIZES[0]
    n_val = cfg.val_subset or SYNTHETIC_SIZES[1]
    return make_synthetic(seed, n_train, n_val, cfg.in_chans, cfg.image_size, cfg.num_classes)


def _check_labels(cfg: DataCfg, labels: Tensor) -> None:
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < cfg.num_classes:
        raise ConfigError(
            f"{cfg.name} has labels {int(labels.min())}..{int(labels.max())} but data.num_classes={cfg.num_classes}; "
            f"set data.num_classes={int(labels.max()) + 1}"
        )


def _fit(cfg: DataCfg, images: Tensor) -> Tensor:
    """Check the channel count; resize once (bilinear, antialiased) if data.image_size is not the native size."""
    channels, size = images.shape[1], images.shape[-1]
    if channels != cfg.in_chans:
        raise ConfigError(
            f"data.in_chans={cfg.in_chans} does not match {cfg.name}'s {channels}-channel images; "
            f"set data.in_chans={channels}"
        )
    if size == cfg.image_size and images.shape[-2] == size:
        return images
    size2 = (cfg.image_size, cfg.image_size)
    chunks = [  # in chunks: a float copy of a whole data set can be larger than the device's memory
        F.interpolate(chunk.float(), size=size2, mode="bilinear", antialias=True).round_().clamp_(0, 255).byte()
        for chunk in images.split(4096)
    ]
    return torch.cat(chunks)
