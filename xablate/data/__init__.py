"""The data layer: `check_data(cfg)` before any work, then `build_loaders(cfg, ...)` for the (train, val) loaders.

Every data set but `imagefolder` is small enough to live on the training device as uint8 tensors; batches are
gathered, augmented (random crop from a zero-padded image, horizontal flip) and normalised there in a few batched
tensor ops. `imagefolder` streams files through DataLoader workers. Either way a batch is a pure function of
(seed, epoch, batch index), so a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .core import Batch, Loader, check_world, holdout_indices, subset_indices
from .imagefolder import ImageFolderLoader, build_imagefolder, check_imagefolder, class_folders, list_images
from .sources import CIFAR, Splits, cifar_root, fashion_mnist_root, make_synthetic, read_cifar, read_fashion_mnist
from .tensors import TensorLoader

if TYPE_CHECKING:
    from .core import DataCfg

__all__ = [
    "Batch", "ImageFolderLoader", "Loader", "Loaders", "SplitSizes", "TensorLoader", "build_loaders", "check_data",
    "split_sizes",
]  # fmt: skip

NAMES = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
SYNTHETIC_SIZES = (512, 256)  # train, val when data.train_subset / data.val_subset are null
NATIVE_SIZES: dict[str, tuple[int, int]] = {"fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
                                            "cifar100": (50_000, 10_000)}  # fmt: skip
"""The official (train, test) split sizes of the data sets read from fixed files."""


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


class Loaders(NamedTuple):
    """A run's loaders: `val` is the held-out part of the training split (`data.holdout` > 0) or, at
    `data.holdout=0`, the official test split; `test` is the official test split when `val` is not."""

    train: Loader
    val: Loader
    test: Loader | None = None


def build_loaders(
    cfg: DataCfg, *, seed: int, device: torch.device | str, rank: int = 0, world_size: int = 1
) -> Loaders:
    """This rank's loaders; batch_size is the global batch, split evenly over world_size ranks."""
    check_data(cfg)
    check_world(cfg.batch_size, rank, world_size)
    if cfg.crop_padding < 0:
        raise ConfigError(f"data.crop_padding={cfg.crop_padding} is invalid; allowed: 0 (off) or more pixels")
    device = torch.device(device)
    if cfg.name == "imagefolder":
        if cfg.holdout:
            raise ConfigError(
                f"data.holdout={cfg.holdout}: imagefolder validates on its val/ folder; set data.holdout=0"
            )
        return Loaders(*build_imagefolder(cfg, seed=seed, device=device, rank=rank, world_size=world_size))
    made = {}
    for role, (images, labels, source) in _split(cfg, _read(cfg, seed)).items():
        _check_labels(cfg, labels)
        made[role] = TensorLoader(
            _fit(cfg, images.to(device)),
            labels.to(device),
            batch_size=cfg.batch_size if role == "train" else cfg.eval_batch_size or cfg.batch_size,
            mean=list(cfg.mean),
            std=list(cfg.std),
            seed=seed,
            train=role == "train",
            crop_padding=cfg.crop_padding,
            hflip=cfg.hflip,
            rank=rank,
            world_size=world_size,
            source=source,
        )
    return Loaders(**made)


Part = tuple[Tensor, Tensor, Tensor]
"""Images, labels, and their positions in the data set's own split (train or test)."""


def _take(images: Tensor, labels: Tensor, positions: Tensor, size: int | None, key: str) -> Part:
    """The `size`-subset (`key` names the setting) of the samples at `positions`; all of them at None."""
    keep = subset_indices(len(positions), size, key)
    if keep is not None:
        positions = positions[keep]
    if len(positions) == len(images):
        return images, labels, positions
    return images[positions], labels[positions], positions


def _split(cfg: DataCfg, splits: Splits) -> dict[str, Part]:
    """train, val and (with a held-out split) test parts. The held-out images are chosen from the training
    split by `data.holdout_seed` alone and never trained on; `data.train_subset` draws from the rest."""
    synthetic = cfg.name == "synthetic"  # generated at its subset sizes already
    train_n, test_n = len(splits.train_labels), len(splits.val_labels)
    test = (splits.val_images, splits.val_labels, torch.arange(test_n))
    if not cfg.holdout:
        return {
            "train": _take(
                *splits[:2], torch.arange(train_n), None if synthetic else cfg.train_subset, "data.train_subset"
            ),
            "val": _take(*test, None if synthetic else cfg.val_subset, "data.val_subset"),
        }
    held = holdout_indices(splits.train_labels, cfg.holdout, cfg.holdout_seed)
    rest = torch.ones(train_n, dtype=torch.bool)
    rest[held] = False
    pool = rest.nonzero().flatten()
    return {
        "train": _take(*splits[:2], pool, None if synthetic else cfg.train_subset, "data.train_subset"),
        "val": _take(*splits[:2], held, None if synthetic else cfg.val_subset, "data.val_subset"),
        "test": _take(*test, None if synthetic else cfg.test_subset, "data.test_subset"),
    }


def _read(cfg: DataCfg, seed: int) -> Splits:
    if cfg.name == "fashion_mnist":
        return read_fashion_mnist(cfg.root)
    if cfg.name in CIFAR:
        return read_cifar(cfg.name, cfg.root)
    n_train = (cfg.train_subset or SYNTHETIC_SIZES[0]) + cfg.holdout
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


class SplitSizes(NamedTuple):
    """Images in each split a run uses; `test` is 0 when validation is on the official test split."""

    train: int
    val: int
    test: int


def split_sizes(cfg: DataCfg) -> SplitSizes:
    """The split sizes `build_loaders` makes for `cfg` (one process), from the data sets' known sizes and
    the subset and holdout settings, without reading an image (imagefolder's files are listed)."""
    if cfg.name == "imagefolder":
        root = Path(cfg.root).expanduser()
        classes = class_folders(root / "train")
        train_n, val_n = (len(list_images(root / split, classes)[0]) for split in ("train", "val"))
        return SplitSizes(cfg.train_subset or train_n, cfg.val_subset or val_n, 0)
    synthetic = cfg.name == "synthetic"
    if synthetic:
        train_n, test_n = (cfg.train_subset or SYNTHETIC_SIZES[0]) + cfg.holdout, cfg.val_subset or SYNTHETIC_SIZES[1]
    else:
        train_n, test_n = NATIVE_SIZES[cfg.name]

    def take(n: int, size: int | None) -> int:
        return n if synthetic or size is None else size

    if not cfg.holdout:
        return SplitSizes(take(train_n, cfg.train_subset), take(test_n, cfg.val_subset), 0)
    return SplitSizes(
        take(train_n - cfg.holdout, cfg.train_subset), take(cfg.holdout, cfg.val_subset), take(test_n, cfg.test_subset)
    )
