"""Forward and backward time of every spatial (3x3 grouped) layer shape of a model: the library's backward
against the hand-written one of `xablate.model.spatial`, printed as Markdown for BENCHMARKS.md.

For each distinct (channels, groups, image size) of the separable layers' spatial step, over the given
segments values and both orders: the forward time, the library backward, the hand-written backward, the
route `fast_backward_applies` picks, and backward / forward before (library) and after (the rule's route).
Repetitions of the two backwards alternate, so a noisy machine hits both; each number is a median.
`--grid` instead times a square grid of channels x image sizes x groups kinds, to set the rule.
`--against COMMIT` adds that commit's hand-written backward (its `xablate/model/spatial.py`, loaded from git) as
another interleaved column, on the layers where the rule takes the hand-written route.

Usage (with the malloc variables `python -m xablate` sets):
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \
  python benchmarks/conv_backward.py [--model xception_mini] [--batch 256] [--threads 2] [--reps 7]
                                     [--against COMMIT]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from xablate import create_model
from xablate.model import spatial
from xablate.model.spatial import SpatialConv2d, fast_backward_applies, spatial_conv

Shape = tuple[int, int, int]
"""(channels, groups, image side) of one spatial layer."""

SpatialConv = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""`spatial_conv(x, weight, groups)`: the 3x3 convolution with a hand-written backward."""


def spatial_conv_at(commit: str) -> SpatialConv:
    """The `spatial_conv` of the spatial module as it was at `commit`, loaded from git into its own module."""
    repo = Path(__file__).resolve().parent.parent
    for path in ("xablate/model/spatial.py", "xablate/spatial.py"):  # the layered package, then the flat one
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=repo, capture_output=True, text=True)
        if shown.returncode == 0:
            break
    shown.check_returncode()
    module = types.ModuleType(f"spatial_{commit}")
    exec(compile(shown.stdout, f"{commit}:{path}", "exec"), module.__dict__)
    return module.spatial_conv


def layer_shapes(model: str, segments: list[str], image_size: int, in_chans: int) -> list[Shape]:
    """Every distinct spatial-layer shape of `model` over `segments` and both orders, in network order."""
    seen: dict[Shape, None] = {}
    for order in ("depthwise_first", "pointwise_first"):
        for seg in segments:
            net = create_model(model, num_classes=10, in_chans=in_chans, segments=seg, order=order)
            hooks = [
                m.register_forward_hook(lambda m, i, o: seen.setdefault((m.in_channels, m.groups, i[0].shape[-1])))
                for m in net.modules()
                if isinstance(m, SpatialConv2d)
            ]
            with torch.no_grad():
                net.eval()(torch.zeros(1, in_chans, image_size, image_size))
            for h in hooks:
                h.remove()
    return list(seen)


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median milliseconds of `reps` calls of `fn`."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_shape(shape: Shape, batch: int, reps: int, old: SpatialConv | None = None) -> dict[str, float | bool]:
    """Forward ms, library backward ms and hand-written backward ms of one layer (medians, interleaved);
    with `old`, that hand-written backward's ms as well where the rule takes the hand-written route."""
    chs, groups, side = shape
    fmt = torch.channels_last
    x = torch.randn(batch, chs, side, side).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(chs, chs // groups, 3, 3, requires_grad=True)
    go = torch.randn(batch, chs, side, side).contiguous(memory_format=fmt)
    lib_y = F.conv2d(x, w, padding=1, groups=groups)
    hand_y = spatial_conv(x, w, groups)
    old_y = old(x, w, groups) if old is not None and fast_backward_applies(x, w, groups) else None

    def forward() -> None:
        with torch.no_grad():
            F.conv2d(x, w, padding=1, groups=groups)

    def backward(y: torch.Tensor) -> Callable[[], object]:
        return lambda: torch.autograd.grad(y, (x, w), go, retain_graph=True)

    ys = {"library": lib_y, "hand": hand_y} | ({"old": old_y} if old_y is not None else {})
    forward(), *(backward(y)() for y in ys.values())
    times: dict[str, list[float]] = {"forward": [], **{name: [] for name in ys}}
    for _ in range(reps):
        times["forward"].append(median_ms(forward, 1))
        for name, y in ys.items():
            times[name].append(median_ms(backward(y), 1))
    return {name: statistics.median(t) for name, t in times.items()} | {"fast": fast_backward_applies(x, w, groups)}


def print_table(shapes: list[Shape], batch: int, reps: int, against: str | None = None) -> None:
    """One row per shape. Switches the rule on for this process, as `trainer.fast_backward=true` does, so that
    the route column is the one a run with it takes."""
    spatial.enable(True)
    old = spatial_conv_at(against) if against else None
    extra = f" hand bwd ms at {against} | bwd/fwd at {against} |" if against else ""
    print("| channels | groups | px | forward ms | library bwd ms | hand bwd ms | hand / library | route | "
          f"bwd/fwd before | bwd/fwd after |{extra}")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|" + ("---:|---:|" if against else ""))
    for chs, groups, side in shapes:
        t = time_shape((chs, groups, side), batch, reps, old)
        after = t["hand"] if t["fast"] else t["library"]
        cells = [
            chs, "depthwise" if groups == chs else groups, f"{side}x{side}", f"{t['forward']:.2f}",
            f"{t['library']:.2f}", f"{t['hand']:.2f}", f"{t['hand'] / t['library']:.2f}",
            "hand" if t["fast"] else "library", f"{t['library'] / t['forward']:.1f}", f"{after / t['forward']:.1f}",
        ]  # fmt: skip
        if against:
            cells += [f"{t['old']:.2f}", f"{t['old'] / t['forward']:.1f}"] if "old" in t else ["", ""]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xception_mini")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--segments", nargs="+", default=["1", "2", "4", "8", "16", "depthwise"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--grid", action="store_true", help="channels x sizes x kinds instead of a model's")
    parser.add_argument("--against", metavar="COMMIT", help="also time this commit's hand-written backward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, channels_last, fp32\n")
    if args.grid:
        shapes = [(c, g, s) for s in (1, 2, 3, 4, 5, 7, 14) for c in (64, 128, 256, 512) for g in (c, 16, 4, 1)]
    else:
        shapes = layer_shapes(args.model, args.segments, args.image_size, args.in_chans)
    print_table(shapes, args.batch, args.reps, args.against)


if __name__ == "__main__":
    main()
