"""The data layer: real Fashion-MNIST, CIFAR folders in the authors' format, determinism, resume, sharding."""

from __future__ import annotations

import gzip
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from xablate.data import TensorLoader, build_loaders, check_data
from xablate.data.core import Normalizer, holdout_indices
from xablate.data.sources import read_cifar, read_fashion_mnist
from xablate.errors import ConfigError
from xablate.spec.schema import DataConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
CPU = torch.device("cpu")


def data_cfg(**overrides: object) -> DataConfig:
    return DataConfig(**overrides)  # type: ignore[arg-type]


def collect(loader, epoch: int = 0, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.batches(epoch, start))


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- CIFAR folders written in the authors' "python version" format -------------------------------------------


def pattern(first: int, n: int) -> np.ndarray:
    """Images first..first+n-1 with pixel (c, y, x) = (37k + 101c + 7y + 3x) % 256, as N x C x H x W."""
    k, c, y, x = np.indices((n, 3, 32, 32))
    return ((37 * (k + first) + 101 * c + 7 * y + 3 * x) % 256).astype(np.uint8)


def dump(path: Path, images: np.ndarray, labels: list[int], label_keys: tuple[bytes, ...]) -> None:
    batch = {b"batch_label": path.name.encode(), b"data": images.reshape(len(images), 3072)}
    batch.update({key: labels for key in label_keys})
    batch[b"filenames"] = [f"img_{i}.png".encode() for i in range(len(labels))]
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(parent: Path, per_batch: int = 8, n_test: int = 10) -> Path:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(5):
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        dump(folder / f"data_batch_{b + 1}", pattern(b * per_batch, per_batch), labels, (b"labels",))
    dump(folder / "test_batch", pattern(1000, n_test), [(9 * i) % 10 for i in range(n_test)], (b"labels",))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=2)
    return folder


def write_cifar100(parent: Path, n_train: int = 20, n_test: int = 10) -> Path:
    folder = parent / "cifar-100-python"
    folder.mkdir(parents=True)
    keys = (b"fine_labels", b"coarse_labels")
    dump(folder / "train", pattern(0, n_train), [(7 * i) % 100 for i in range(n_train)], keys)
    dump(folder / "test", pattern(1000, n_test), [(3 * i) % 100 for i in range(n_test)], keys)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"x"] * 100, b"coarse_label_names": [b"y"] * 20}, f, protocol=2)
    return folder


CIFAR_CFG = dict(name="cifar10", image_size=32, in_chans=3, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)


def test_cifar10_pixels_and_labels(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    splits = read_cifar("cifar10", str(folder))
    assert splits.train_images.dtype == torch.uint8 and splits.train_images.shape == (40, 3, 32, 32)
    assert torch.equal(splits.train_images, torch.from_numpy(pattern(0, 40)))
    assert splits.train_labels.tolist() == [i % 10 for i in range(40)]
    assert torch.equal(splits.val_images, torch.from_numpy(pattern(1000, 10)))
    assert splits.val_labels.tolist() == [(9 * i) % 10 for i in range(10)]
    # Through the val loader: in order, unaugmented, normalised.
    cfg = data_cfg(**CIFAR_CFG, root=str(folder), batch_size=8)
    _, val, _ = build_loaders(cfg, seed=0, device=CPU)
    images = torch.cat([x for x, _ in collect(val)])
    expected = (torch.from_numpy(pattern(1000, 10)).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    splits = read_cifar("cifar100", str(tmp_path))  # the parent folder
    assert torch.equal(splits.train_images, torch.from_numpy(pattern(0, 20)))
    assert splits.train_labels.tolist() == [(7 * i) % 100 for i in range(20)]
    assert splits.val_labels.tolist() == [(3 * i) % 100 for i in range(10)]
    cfg = data_cfg(**{**CIFAR_CFG, "name": "cifar100", "num_classes": 100}, root=str(tmp_path), batch_size=4)
    train, val, _ = build_loaders(cfg, seed=0, device=CPU)
    assert (len(train), train.num_samples, len(val), val.num_samples) == (5, 20, 3, 10)


def test_cifar_root_may_be_the_parent(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    images = []
    for root in (tmp_path, folder):
        check_data(data_cfg(**CIFAR_CFG, root=str(root)))
        images.append(read_cifar("cifar10", str(root)).train_images)
    assert torch.equal(images[0], images[1]) and images[0].shape == (40, 3, 32, 32)
    with pytest.raises(ConfigError):
        check_data(data_cfg(**CIFAR_CFG, root=str(folder / "data_batch_1")))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_is_one_line(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        check_data(data_cfg(**{**CIFAR_CFG, "name": name}, root=str(tmp_path / "nowhere")))
    message = one_line_error(excinfo)
    assert str(tmp_path / "nowhere") in message and "data.root=" in message and "python.tar.gz" in message


def test_cifar_corrupt_batch(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError) as excinfo:
        build_loaders(data_cfg(**CIFAR_CFG, root=str(folder), batch_size=8), seed=0, device=CPU)
    assert "data_batch_3" in one_line_error(excinfo)


def test_cifar_pickle_may_not_run_code(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": print}, f, protocol=2)
    with pytest.raises(ConfigError, match="test_batch"):
        build_loaders(data_cfg(**CIFAR_CFG, root=str(folder), batch_size=8), seed=0, device=CPU)


def test_image_size_and_channel_checks(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    train, val, _ = build_loaders(
        data_cfg(**{**CIFAR_CFG, "image_size": 16}, root=str(folder), batch_size=8), seed=0, device=CPU
    )
    assert next(train.batches(0))[0].shape == (8, 3, 16, 16) and next(val.batches(0))[0].shape == (8, 3, 16, 16)
    with pytest.raises(ConfigError, match=r"data\.in_chans=1"):
        build_loaders(data_cfg(**{**CIFAR_CFG, "in_chans": 1}, root=str(folder), batch_size=8), seed=0, device=CPU)
    with pytest.raises(ConfigError, match=r"data\.num_classes=10"):
        build_loaders(data_cfg(**{**CIFAR_CFG, "num_classes": 5}, root=str(folder), batch_size=8), seed=0, device=CPU)
    with pytest.raises(ConfigError, match=r"data\.batch_size=64"):
        build_loaders(data_cfg(**CIFAR_CFG, root=str(folder), batch_size=64), seed=0, device=CPU)


def test_subsets_are_sized_and_stable(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    cfg = data_cfg(
        **CIFAR_CFG, root=str(folder), batch_size=4, train_subset=24, val_subset=5, crop_padding=0, hflip=False
    )
    runs = [build_loaders(cfg, seed=seed, device=CPU) for seed in (0, 0, 1)]
    for train, val, _ in runs:
        assert (train.num_samples, val.num_samples, len(train), len(val)) == (24, 5, 6, 2)

    def samples(loader) -> set[bytes]:
        return {img.numpy().tobytes() for x, _ in collect(loader) for img in x}

    # The same samples for every build and every seed; not simply the first files.
    assert samples(runs[0][0]) == samples(runs[1][0]) == samples(runs[2][0])
    assert torch.equal(torch.cat([x for x, _ in collect(runs[0][1])]), torch.cat([x for x, _ in collect(runs[2][1])]))
    first_five = (torch.from_numpy(pattern(1000, 5)).float() / 255 - 0.5) / 0.25
    assert not torch.allclose(torch.cat([x for x, _ in collect(runs[0][1])]), first_five)
    with pytest.raises(ConfigError, match=r"data\.train_subset=100"):
        build_loaders(data_cfg(**CIFAR_CFG, root=str(folder), batch_size=4, train_subset=100), seed=0, device=CPU)


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION}")
def test_fashion_mnist_real_files() -> None:
    splits = read_fashion_mnist(str(FASHION))
    assert splits.train_images.shape == (60000, 1, 28, 28) and splits.train_images.dtype == torch.uint8
    assert splits.val_images.shape == (10000, 1, 28, 28)
    assert splits.train_labels.dtype == torch.int64 and int(splits.train_labels.max()) == 9
    assert (
        int(splits.train_labels.min()) == 0 and 0 <= int(splits.val_labels.min()) <= int(splits.val_labels.max()) <= 9
    )
    assert splits.train_labels.bincount().tolist() == [6000] * 10
    assert splits.val_labels.bincount().tolist() == [1000] * 10


def test_fashion_mnist_missing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        check_data(data_cfg(root=str(tmp_path)))
    message = one_line_error(excinfo)
    assert message.startswith(f"Fashion-MNIST not found in {tmp_path}")
    assert "train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.root=DIR" in message


def write_idx(path: Path, array: np.ndarray, magic_ndim: int | None = None) -> None:
    header = bytes((0, 0, 8, magic_ndim or array.ndim)) + np.array(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("fault", ["magic", "truncated", "not_gzip"])
def test_fashion_mnist_corrupt_is_one_line(tmp_path: Path, fault: str) -> None:
    images, labels = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    if fault == "magic":
        write_idx(bad, images, magic_ndim=2)
    elif fault == "truncated":
        bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-5]))
    else:
        bad.write_bytes(b"plain bytes")
    cfg = data_cfg(root=str(tmp_path), batch_size=4)
    check_data(cfg)  # the files are there; only reading finds the fault
    with pytest.raises(ConfigError) as excinfo:
        build_loaders(cfg, seed=0, device=CPU)
    assert str(bad) in one_line_error(excinfo)


def test_fashion_mnist_small_files_load(tmp_path: Path) -> None:
    images = np.arange(20 * 784).reshape(20, 28, 28) % 251
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(20) % 10)
    splits = read_fashion_mnist(str(tmp_path))
    assert torch.equal(splits.val_images[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert splits.val_labels.tolist() == [i % 10 for i in range(20)]


def test_a_process_reads_the_files_once_and_each_caller_gets_its_own_copy(tmp_path: Path) -> None:
    def write(n: int) -> None:
        for prefix in ("train", "t10k"):
            write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7))
            write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)

    write(20)
    first = read_fashion_mnist(str(tmp_path))
    first.train_images.zero_()
    second = read_fashion_mnist(str(tmp_path))
    assert int(second.train_images.min()) == 7  # the first caller's change did not reach the second
    write(30)  # changed files are read again
    assert len(read_fashion_mnist(str(tmp_path)).train_labels) == 30


# --- Loader semantics, on synthetic data and on TensorLoaders built directly ------------------------------------

SYNTH = dict(
    name="synthetic",
    root="",
    batch_size=32,
    train_subset=200,
    val_subset=70,
    crop_padding=2,
    hflip=True,
    mean=[0.5],
    std=[0.25],
)


def test_synthetic_shapes_and_labels() -> None:
    cfg = data_cfg(**{**SYNTH, "in_chans": 3, "image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3})
    train, val, _ = build_loaders(cfg, seed=3, device=CPU)
    assert (len(train), train.num_samples, len(val), val.num_samples) == (6, 192, 3, 70)
    for x, y in collect(train) + collect(val):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16) and y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < 10
    assert [len(y) for _, y in collect(val)] == [32, 32, 6]


def flat(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    return [t for batch in batches for t in batch]


def test_same_seed_same_batches_different_seed_different() -> None:
    a, b, c = (build_loaders(data_cfg(**SYNTH), seed=s, device=CPU)[0] for s in (5, 5, 6))
    for epoch in (0, 1):
        assert all(torch.equal(u, v) for u, v in zip(flat(collect(a, epoch)), flat(collect(b, epoch)), strict=True))
    assert not torch.equal(collect(a)[0][0], collect(c)[0][0])
    assert not torch.equal(collect(a, 0)[0][0], collect(a, 1)[0][0])


def test_resume_equals_the_tail_of_an_epoch() -> None:
    train, val, _ = build_loaders(data_cfg(**SYNTH), seed=1, device=CPU)
    for loader in (train, val):
        full = collect(loader, epoch=2)
        for k in (0, 1, len(loader) - 1, len(loader)):
            tail = collect(loader, epoch=2, start=k)
            assert len(tail) == len(loader) - k
            assert all(torch.equal(u, v) for u, v in zip(flat(tail), flat(full[k:]), strict=True))


def indexed(n: int, *, train: bool, batch_size: int = 16, rank: int = 0, world_size: int = 1, **kw: object):
    """A TensorLoader whose label is the sample's index and whose pixels encode it too."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 6, 5).contiguous()
    return TensorLoader(
        images,
        torch.arange(n),
        batch_size=batch_size,
        mean=[0.0],
        std=[1.0],
        seed=7,
        train=train,
        rank=rank,
        world_size=world_size,
        **kw,
    )


def test_train_batches_are_a_permutation() -> None:
    loader = indexed(100, train=True)
    assert (len(loader), loader.num_samples) == (6, 96)
    orders = []
    for epoch in (0, 1):
        batches = collect(loader, epoch)
        assert all(len(y) == 16 for _, y in batches)
        seen = torch.cat([y for _, y in batches])
        assert len(set(seen.tolist())) == 96
        for x, y in batches:  # images travel with their labels
            assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), y)
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1])


def test_val_is_in_order_and_complete() -> None:
    loader = indexed(100, train=False, crop_padding=2, hflip=True)
    batches = collect(loader)
    assert [len(y) for _, y in batches] == [16] * 6 + [4]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(100))
    assert loader.num_samples == 100


def test_augmentation_is_a_padded_crop_and_flip() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (40, 2, 7, 9), generator=g, dtype=torch.uint8)
    pad = 2
    loader = TensorLoader(
        images,
        torch.arange(40),
        batch_size=16,
        mean=[0.0, 0.0],
        std=[1.0, 1.0],
        seed=0,
        train=True,
        crop_padding=pad,
        hflip=True,
    )
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    used = set()
    for x, y in collect(loader):
        assert x.shape == (16, 2, 7, 9) and x.dtype == torch.float32
        raw = (x * 255).round().to(torch.uint8)
        for img, k in zip(raw, y.tolist(), strict=True):
            matches = [
                (dy, dx, flip)
                for dy, dx, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True))
                if torch.equal(img, (lambda c: c.flip(-1) if flip else c)(padded[k, :, dy : dy + 7, dx : dx + 9]))
            ]
            assert matches, "an augmented image is not a crop (or mirrored crop) of its padded original"
            used.update(matches)
    assert len(used) > 10  # many different offsets and both flips occur
    assert {flip for _, _, flip in used} == {False, True}


def test_no_augmentation_gives_the_normalised_originals() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 3, 5, 5), generator=g, dtype=torch.uint8)
    mean, std = [0.2, 0.4, 0.6], [0.3, 0.2, 0.1]
    loader = TensorLoader(
        images, torch.arange(50), batch_size=10, mean=mean, std=std, seed=0, train=True, crop_padding=0, hflip=False
    )
    normalize = Normalizer(mean, std, CPU)
    for x, y in collect(loader, epoch=3):
        assert torch.equal(x, normalize(images[y]))
        textbook = (images[y].float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        torch.testing.assert_close(x, textbook, rtol=0, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_two_ranks_split_every_global_batch(train: bool) -> None:
    kw = dict(train=train, batch_size=16, crop_padding=1, hflip=True)
    whole = indexed(101, **kw)
    ranks = [indexed(101, rank=r, world_size=2, **kw) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    assert ranks[0].num_samples + ranks[1].num_samples == whole.num_samples
    for epoch in (0, 1):
        for (x, y), (x0, y0), (x1, y1) in zip(collect(whole, epoch), *(collect(r, epoch) for r in ranks), strict=True):
            assert not set(y0.tolist()) & set(y1.tolist())
            assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
            if train:
                assert len(y0) == len(y1) == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batches_equal_cpu_batches() -> None:
    cpu, cuda = (build_loaders(data_cfg(**SYNTH), seed=2, device=d)[0] for d in ("cpu", "cuda"))
    for (x, y), (xc, yc) in zip(collect(cpu, 1), collect(cuda, 1), strict=True):
        assert xc.is_cuda and yc.is_cuda
        assert torch.equal(y, yc.cpu())
        torch.testing.assert_close(x, xc.cpu(), rtol=0, atol=1e-6)


def test_world_size_must_divide_batch_size() -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size=32"):
        build_loaders(data_cfg(**SYNTH), seed=0, device=CPU, rank=0, world_size=3)


def test_unknown_data_set() -> None:
    with pytest.raises(ConfigError, match="allowed: fashion_mnist"):
        check_data(data_cfg(name="mnist"))


# --- imagefolder ------------------------------------------------------------------------------------------------

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255)}


def write_image_tree(root: Path) -> None:
    from PIL import Image

    sizes = [(10, 7), (5, 12), (16, 16)]
    for split, count in (("train", 3), ("val", 2)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", sizes[i], colour).save(folder / f"{i}.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_imagefolder_shapes_labels_and_determinism(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'xablate[imagefolder]')")
    write_image_tree(tmp_path)
    cfg = data_cfg(
        name="imagefolder",
        root=str(tmp_path),
        image_size=8,
        in_chans=3,
        num_classes=2,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        batch_size=4,
        num_workers=0,
        hflip=True,
    )
    train, val, _ = build_loaders(cfg, seed=0, device=CPU)
    assert (len(train), train.num_samples, len(val), val.num_samples) == (1, 4, 1, 4)
    expected = {
        label: torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
        for label, colour in enumerate(COLOURS.values())
    }
    val_batches = collect(val)
    assert val_batches[0][1].tolist() == [0, 0, 1, 1]
    for x, y in val_batches + collect(train, 0) + collect(train, 1):
        assert x.shape == (len(y), 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
        for img, label in zip(x, y.tolist(), strict=True):
            torch.testing.assert_close(img, expected[label].expand(3, 8, 8))
    again = build_loaders(cfg, seed=0, device=CPU)[0]
    assert all(torch.equal(u, v) for u, v in zip(flat(collect(train, 4)), flat(collect(again, 4)), strict=True))
    ranks = [build_loaders(cfg, seed=0, device=CPU, rank=r, world_size=2)[0] for r in (0, 1)]
    assert torch.equal(torch.cat([collect(r, 4)[0][1] for r in ranks]), collect(train, 4)[0][1])


def test_imagefolder_checks(tmp_path: Path) -> None:
    cfg = data_cfg(name="imagefolder", root=str(tmp_path), num_classes=2, in_chans=3, mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(ConfigError) as excinfo:
        check_data(cfg)
    assert str(tmp_path) in one_line_error(excinfo) and "data.root=DIR" in str(excinfo.value)
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'xablate[imagefolder]')")
    write_image_tree(tmp_path)
    check_data(cfg)
    with pytest.raises(ConfigError, match=r"data\.num_classes=2"):
        check_data(data_cfg(name="imagefolder", root=str(tmp_path), num_classes=1000))


# --- the held-out validation split --------------------------------------------------------------------

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def test_holdout_is_stratified_fixed_by_its_own_seed_and_never_trained_on() -> None:
    labels = torch.arange(1000) % 10
    labels[:100] = 3  # an unbalanced class: its share of the holdout is larger
    held = holdout_indices(labels, 200, seed=7)
    assert len(held) == 200 == len(set(held.tolist()))
    counts = torch.bincount(labels[held], minlength=10)
    expected = torch.bincount(labels, minlength=10).double() * 200 / 1000
    assert ((counts - expected).abs() < 1).all(), counts
    assert torch.equal(held, holdout_indices(labels, 200, seed=7))
    assert not torch.equal(held, holdout_indices(labels, 200, seed=8))
    with pytest.raises(ConfigError, match=r"data\.holdout=1000"):
        holdout_indices(labels, 1000, seed=7)


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason="Fashion-MNIST not installed")
def test_held_out_images_never_reach_a_training_batch() -> None:
    """The training loader's samples are tracked back to the training split: across epochs, no batch holds
    a held-out image; every run seed validates on the same images; the test split is the official one."""
    cfg = data_cfg(root=str(FASHION_ROOT), holdout=2000, train_subset=6000, batch_size=500)
    seen: set[int] = set()
    loaders = [build_loaders(cfg, seed=seed, device=CPU) for seed in (0, 1)]
    for train, _, _ in loaders:
        for epoch in range(2):
            for position in train.order(epoch)[: len(train) * train.batch_size]:
                seen.add(int(train.source[position]))
    held = set(loaders[0].val.source.tolist())
    assert len(held) == 2000 and not held & seen
    assert held == set(loaders[1].val.source.tolist()), "the holdout does not depend on the run's seed"
    assert len(set(loaders[0].train.source.tolist())) == 6000
    assert loaders[0].test is not None and loaders[0].test.num_samples == 10_000
    labels = read_fashion_mnist(str(FASHION_ROOT)).train_labels
    assert torch.bincount(labels[sorted(held)], minlength=10).tolist() == [200] * 10


def test_holdout_zero_validates_on_the_test_split_as_before() -> None:
    cfg = data_cfg(**SYNTH)
    before = build_loaders(cfg, seed=4, device=CPU)
    assert before.test is None
    with_holdout = build_loaders(data_cfg(**{**SYNTH, "holdout": 32}), seed=4, device=CPU)
    assert with_holdout.val.num_samples == 32 and with_holdout.test is not None
    assert with_holdout.train.num_samples == before.train.num_samples
    assert with_holdout.test.num_samples == before.val.num_samples == 70
    assert not set(with_holdout.val.source.tolist()) & set(with_holdout.train.source.tolist())
