"""Readers for the small data sets: each returns uint8 N x C x H x W images and int64 labels, train and val, on CPU.

Fashion-MNIST comes as IDX `.gz` files, CIFAR as the authors' "python version" pickles; `synthetic` is generated
from the seed. Every check raises a one-line `ConfigError` naming the path tried and how to fix it.
"""

from __future__ import annotations

import gzip
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .core import generator


class Splits(NamedTuple):
    train_images: Tensor
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor


FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class CifarSpec(NamedTuple):
    title: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    url: str


CIFAR: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": CifarSpec(
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        b"fine_labels",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


def _missing(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


def fashion_mnist_root(root: str) -> Path:
    folder = Path(root).expanduser()
    missing = _missing(folder, FASHION_FILES)
    if missing:
        raise ConfigError(
            f"Fashion-MNIST not found in {folder.resolve()} (need {', '.join(missing)}): "
            "apt-get install dataset-fashion-mnist, or set data.root=DIR"
        )
    return folder


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, ndim big-endian int32 sizes, then the data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ConfigError(f"{path} is not a readable gzip file ({err}): reinstall it, or set data.root=DIR") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, 8, ndim)):
        raise ConfigError(f"{path} is not an IDX file of {ndim}-d uint8 data (bad magic number): reinstall it")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", ndim, 4))
    if len(raw) != header + int(np.prod(shape)):
        raise ConfigError(f"{path} is truncated or corrupt: {len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


_READ: dict[tuple[str, ...], Splits] = {}


def _once(folder: Path, names: tuple[str, ...], read: Callable[[], Splits]) -> Splits:
    """`read()`, done once per process for the same files unchanged: a worker reused for many cells (joblib's,
    or a stack's seeds) decompresses the data once (about 0.5 s for Fashion-MNIST). Each caller gets its own
    copy, so no run can change another's."""
    stats = [(folder / n).stat() for n in names]
    key = (str(folder.resolve()), *(f"{n}:{st.st_size}:{st.st_mtime_ns}" for n, st in zip(names, stats, strict=True)))
    if key not in _READ:
        _READ[key] = read()
    return Splits(*(t.clone() for t in _READ[key]))


def read_fashion_mnist(root: str) -> Splits:
    folder = fashion_mnist_root(root)
    return _once(folder, FASHION_FILES, lambda: _read_fashion_mnist(folder))


def _read_fashion_mnist(folder: Path) -> Splits:
    arrays = [_read_idx(folder / name, 3 if "images" in name else 1) for name in FASHION_FILES]
    for images, labels in (arrays[0:2], arrays[2:4]):
        if len(images) != len(labels):
            raise ConfigError(f"Fashion-MNIST in {folder}: {len(images)} images but {len(labels)} labels")
    train_x, train_y, val_x, val_y = (torch.from_numpy(a.copy()) for a in arrays)
    return Splits(train_x.unsqueeze(1), train_y.long(), val_x.unsqueeze(1), val_y.long())


def cifar_root(name: str, root: str) -> Path:
    """The batch folder itself: `root`, or `root/<folder>` when root is its parent."""
    spec = CIFAR[name]
    given = Path(root).expanduser()
    needed = (*spec.train, spec.test, spec.meta)
    for folder in (given, given / spec.folder):
        if not _missing(folder, needed):
            return folder
    parent = given.parent if given.name == spec.folder else given
    listed = "data_batch_1..5, test_batch, batches.meta" if name == "cifar10" else ", ".join(needed)
    raise ConfigError(
        f"{spec.title} not found in {given.resolve()} (need {listed} there or in {spec.folder}/): "
        f"download {spec.url} and extract it in {parent.resolve()}, or set data.root=DIR"
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR files hold (dicts, lists, bytes, numpy arrays): a pickle can run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[Tensor, Tensor]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ConfigError(f"{path} is not a CIFAR python batch ({err!r}): re-extract the archive") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ConfigError(f"{path}: data {data.shape} and {len(labels)} labels, expected N x 3072 and N labels")
    # Each row is the red 32x32 plane, then green, then blue, each row-major: channel-major already.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def read_cifar(name: str, root: str) -> Splits:
    folder = cifar_root(name, root)
    spec = CIFAR[name]
    return _once(folder, (*spec.train, spec.test), lambda: _read_cifar(spec, folder))


def _read_cifar(spec: CifarSpec, folder: Path) -> Splits:
    parts = [_read_cifar_batch(folder / f, spec.label_key) for f in spec.train]
    val_x, val_y = _read_cifar_batch(folder / spec.test, spec.label_key)
    return Splits(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), val_x, val_y)


def make_synthetic(seed: int, n_train: int, n_val: int, in_chans: int, image_size: int, num_classes: int) -> Splits:
    """Per-class smooth random patterns plus heavy noise: learnable, but not trivially."""
    g = generator(seed, "synthetic")
    coarse = torch.rand(num_classes, in_chans, 4, 4, generator=g)
    prototypes = torch.nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bilinear")

    def draw(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.rand(n, in_chans, image_size, image_size, generator=g)
        images = (0.6 * prototypes[labels] + 0.4 * noise).mul(255).round().clamp(0, 255).to(torch.uint8)
        return images, labels

    train_x, train_y = draw(n_train)
    val_x, val_y = draw(n_val)
    return Splits(train_x, train_y, val_x, val_y)
