"""Forward and backward time of every pointwise (1x1) layer shape of xception_mini: the library's 1x1
convolution against the same product as a matrix multiplication over channels_last pixels.

A 1x1 convolution of an NHWC tensor is one GEMM, (N*H*W, C_in) x (C_in, C_out); `F.linear` on the
permuted view computes it with the BLAS directly. Whether the convolution path costs more than that, and
where, decides whether a pointwise fast path is worth writing. Repetitions of the two routes alternate,
so a noisy machine hits both; each number is a median. Printed as Markdown for BENCHMARKS.md.

Usage (with the malloc variables `python -m xablate` sets):
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \
  python benchmarks/pointwise.py [--batch 256] [--threads 2] [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xablate import create_model

Shape = tuple[int, int, int]
"""(in channels, out channels, image side) of one pointwise layer."""


def layer_shapes(segments: str = "depthwise") -> list[Shape]:
    """Every distinct 1x1 convolution shape of xception_mini (pointwise steps and skip paths), in order."""
    seen: dict[Shape, None] = {}
    net = create_model("xception_mini", num_classes=10, in_chans=1, segments=segments)
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.setdefault((m.in_channels, m.out_channels, i[0].shape[-1])))
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
    ]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return list(seen)


def as_conv(x: Tensor, w: Tensor) -> Tensor:
    return F.conv2d(x, w)


def as_linear(x: Tensor, w: Tensor) -> Tensor:
    """The same 1x1 convolution as a GEMM over the pixels of a channels_last tensor (no copy either way)."""
    return F.linear(x.permute(0, 2, 3, 1), w.flatten(1)).permute(0, 3, 1, 2)


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def time_shape(shape: Shape, batch: int, reps: int) -> dict[str, float]:
    """Forward and forward+backward ms of both routes (medians of interleaved repetitions)."""
    c_in, c_out, side = shape
    x = torch.randn(batch, c_in, side, side).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(c_out, c_in, 1, 1).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(batch, c_out, side, side).to(memory_format=torch.channels_last)
    y_conv, y_lin = as_conv(x, w), as_linear(x, w)
    assert torch.allclose(y_conv, y_lin, rtol=1e-4, atol=1e-4), shape
    times: dict[str, list[float]] = {k: [] for k in ("conv_fwd", "lin_fwd", "conv_step", "lin_step")}
    for _ in range(2):
        for route in (as_conv, as_linear):
            route(x, w).backward(grad)
    for _ in range(reps):
        for name, route in (("conv", as_conv), ("lin", as_linear)):
            with torch.no_grad():
                times[f"{name}_fwd"].append(_once(lambda r=route: r(x, w)))
            times[f"{name}_step"].append(_once(lambda r=route: r(x, w).backward(grad)))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, channels_last, fp32")
    print("| in | out | px | conv fwd ms | GEMM fwd ms | conv fwd+bwd ms | GEMM fwd+bwd ms | GEMM / conv (fwd+bwd) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    total = {"conv": 0.0, "lin": 0.0}
    for shape in layer_shapes():
        t = time_shape(shape, args.batch, args.reps)
        total["conv"] += t["conv_step"]
        total["lin"] += t["lin_step"]
        print(
            f"| {shape[0]} | {shape[1]} | {shape[2]} | {t['conv_fwd']:.2f} | {t['lin_fwd']:.2f} | "
            f"{t['conv_step']:.2f} | {t['lin_step']:.2f} | {t['lin_step'] / t['conv_step']:.2f} |"
        )
    print(f"Sum over distinct shapes, fwd+bwd: conv {total['conv']:.1f} ms, GEMM {total['lin']:.1f} ms")


if __name__ == "__main__":
    main()
