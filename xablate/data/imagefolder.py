"""ImageNet-style folders (`root/train/<class>/*.jpg`, `root/val/<class>/...`), decoded by DataLoader workers.

The sampler hands each worker (file index, five uniform numbers) pairs drawn from (seed, epoch, batch), and the
worker turns the numbers into a crop box and a flip for that image's own size: batches stay a pure function of
(seed, epoch, batch) whatever the number of workers. Images leave the workers as uint8 and are normalised on the
device. Pillow is imported inside the workers' functions only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from .core import Batch, Normalizer, check_world, generator, shard, subset_indices

if TYPE_CHECKING:
    from .core import DataCfg

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"})
SCALE = (0.08, 1.0)  # area fraction of a training crop (Inception-style random-resized crop)
RATIO = (3 / 4, 4 / 3)  # aspect ratio of a training crop
CENTRE = 0.875  # validation: the central square of 87.5% of the short side, the usual 224/256


def pillow_missing() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return True
    return False


def class_folders(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir()) if split.is_dir() else []


def check_imagefolder(root: str, num_classes: int, in_chans: int) -> None:
    folder = Path(root).expanduser()
    problems = []
    if in_chans not in (1, 3):
        problems.append(f"data.in_chans={in_chans} is invalid for imagefolder; allowed: 1 (grey), 3 (RGB)")
    train, val = class_folders(folder / "train"), class_folders(folder / "val")
    if not train or not val:
        problems.append(
            f"ImageFolder data not found in {folder.resolve()} (need train/<class>/*.jpg and val/<class>/*.jpg): "
            "set data.root=DIR"
        )
    elif len(train) != num_classes:
        problems.append(
            f"{folder / 'train'} has {len(train)} class folders but data.num_classes={num_classes}: "
            f"set data.num_classes={len(train)}"
        )
    elif unknown := sorted(set(val) - set(train)):
        problems.append(f"{folder / 'val'} has class folders not in train/: {', '.join(unknown[:5])}")
    if pillow_missing():
        problems.append("data.name=imagefolder needs Pillow, which is missing: pip install 'xablate[imagefolder]'")
    if problems:
        raise ConfigError("; ".join(problems))


def list_images(split: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = split / name
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        files += [str(p) for p in found]
        labels += [label] * len(found)
    if not files:
        raise ConfigError(f"no images ({', '.join(sorted(EXTENSIONS))}) in the class folders of {split}")
    return files, labels


def _train_box(width: int, height: int, u: Sequence[float]) -> tuple[float, float, float, float]:
    area = width * height * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[0])
    ratio = math.exp(math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * u[1])
    w = min(math.sqrt(area * ratio), width)
    h = min(math.sqrt(area / ratio), height)
    x, y = (width - w) * u[2], (height - h) * u[3]
    return x, y, x + w, y + h


def _val_box(width: int, height: int) -> tuple[float, float, float, float]:
    side = CENTRE * min(width, height)
    x, y = (width - side) / 2, (height - side) / 2
    return x, y, x + side, y + side


class _Files(Dataset):
    """Item (file index, u): the image cropped by `u` (None: centre crop), resized to `size`, as uint8 C x H x W."""

    def __init__(self, files: list[str], labels: list[int], size: int, in_chans: int, hflip: bool) -> None:
        self.files, self.labels, self.size, self.hflip = files, labels, size, hflip
        self.mode = "RGB" if in_chans == 3 else "L"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, tuple[float, ...] | None]) -> tuple[Tensor, int]:
        import numpy as np
        from PIL import Image

        index, u = item
        with Image.open(self.files[index]) as raw:
            image = raw.convert(self.mode)
        box = _val_box(*image.size) if u is None else _train_box(*image.size, u)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if u is not None and self.hflip and u[4] < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.uint8).reshape(self.size, self.size, -1)
        return torch.from_numpy(array.transpose(2, 0, 1).copy()), self.labels[index]


def _collate(items: list[tuple[Tensor, int]], shape: tuple[int, int, int]) -> Batch:
    if not items:  # an empty shard of a small last validation batch
        return torch.empty(0, *shape, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


class ImageFolderLoader:
    def __init__(
        self,
        files: list[str],
        labels: list[int],
        *,
        batch_size: int,
        image_size: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
        train: bool,
        hflip: bool,
        num_workers: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_world(batch_size, rank, world_size)
        if train and len(files) < batch_size:
            raise ConfigError(f"data.batch_size={batch_size} is more than the {len(files)} training images")
        self.dataset = _Files(files, labels, image_size, in_chans, hflip and train)
        self.shape = (in_chans, image_size, image_size)
        self.n, self.batch_size, self.seed, self.train = len(files), batch_size, seed, train
        self.rank, self.world_size, self.num_workers, self.device = rank, world_size, num_workers, device
        self.normalize = Normalizer(mean, std, device)
        bounds = [shard(i * batch_size, min((i + 1) * batch_size, self.n), rank, world_size) for i in range(len(self))]
        self.num_samples = sum(hi - lo for lo, hi in bounds)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.train else -(-self.n // self.batch_size)

    def _plan(self, epoch: int, start: int) -> Iterator[list[tuple[int, tuple[float, ...] | None]]]:
        """Each batch's items, made lazily: a list for a whole ImageNet epoch would take hundreds of MB."""
        order = torch.randperm(self.n, generator=generator(self.seed, "perm", epoch)) if self.train else None
        for i in range(start, len(self)):
            lo = i * self.batch_size
            a, b = shard(lo, min(lo + self.batch_size, self.n), self.rank, self.world_size)
            if order is None:
                yield [(k, None) for k in range(a, b)]
                continue
            u = torch.rand(self.batch_size, 5, generator=generator(self.seed, "aug", epoch, i), dtype=torch.float64)
            yield [(int(order[j]), tuple(u[j - lo].tolist())) for j in range(a, b)]

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if start < 0:
            raise ValueError(f"start={start}: need a batch index >= 0")
        loader = DataLoader(
            self.dataset,
            batch_sampler=self._plan(epoch, start),
            num_workers=self.num_workers,
            collate_fn=partial(_collate, shape=self.shape),
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in loader:
            yield self.normalize(images.to(self.device, non_blocking=True)), labels.to(self.device, non_blocking=True)


def build_imagefolder(
    cfg: DataCfg, *, seed: int, device: torch.device, rank: int, world_size: int
) -> tuple[ImageFolderLoader, ImageFolderLoader]:
    check_imagefolder(cfg.root, cfg.num_classes, cfg.in_chans)
    root = Path(cfg.root).expanduser()
    classes = class_folders(root / "train")
    loaders = []
    for split, subset, train in (("train", cfg.train_subset, True), ("val", cfg.val_subset, False)):
        files, labels = list_images(root / split, classes)
        keep = subset_indices(len(files), subset, f"data.{split}_subset")
        if keep is not None:
            files, labels = [files[k] for k in keep.tolist()], [labels[k] for k in keep.tolist()]
        loaders.append(
            ImageFolderLoader(
                files,
                labels,
                batch_size=cfg.batch_size,
                image_size=cfg.image_size,
                in_chans=cfg.in_chans,
                mean=list(cfg.mean),
                std=list(cfg.std),
                seed=seed,
                train=train,
                hflip=cfg.hflip,
                num_workers=cfg.num_workers,
                device=device,
                rank=rank,
                world_size=world_size,
            )
        )
    return loaders[0], loaders[1]
