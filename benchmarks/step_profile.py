"""Where a training step's time goes: `torch.profiler` self time per (op, input shapes) of one xablate
training step, per segments value, and the 3x3 layers that cost most timed alone in both memory formats
with their achieved GFLOP/s. Printed as Markdown for BENCHMARKS.md. `--nchw-sizes 4` instead times whole
steps with the grouped (not depthwise) spatial layers at those image sides run in NCHW, against the
channels_last default, interleaved (the layout experiment of BENCHMARKS.md).

The step is `train_speed.training_step` (the engine's own step, the hand-written small-image backward
switched on). Profiling adds overhead, so the step total here is above the bare loop's; the shares are
what to read.

Usage (with the malloc variables `python -m xablate` sets):
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \
  python benchmarks/step_profile.py [--segments 1 4 16 depthwise] [--top 8] [--threads 2]
  python benchmarks/step_profile.py --segments 16 4 --nchw-sizes 4
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

import torch
import torch.nn.functional as F
from conv_backward import median_ms
from torch.profiler import ProfilerActivity, profile
from train_speed import training_step

from xablate.model.spatial import SpatialConv2d

STEPS = 3


def profile_step(segments: str, batch: int) -> tuple[float, list[tuple[float, int, str, list]]]:
    """Milliseconds of self time per step, and (ms per step, calls per step, op, input shapes) rows."""
    step = training_step(segments, batch=batch, channels_last=True)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(STEPS):
            step()
    rows = [
        (e.self_cpu_time_total / STEPS / 1000, e.count // STEPS, e.key, e.input_shapes)
        for e in prof.key_averages(group_by_input_shape=True)
    ]
    return sum(r[0] for r in rows), sorted(rows, key=lambda r: -r[0])


def spatial_shape(op: str, shapes: list) -> tuple[int, int, int] | None:
    """(channels, groups, side) of a separable layer's 3x3 step (as many channels out as in) from a
    convolution op's input shapes, None for other ops and layers."""
    inputs = {"aten::mkldnn_convolution": shapes[:2], "aten::convolution_backward": shapes[1:3]}.get(op)
    if not inputs or len(inputs) < 2 or [len(s) for s in inputs] != [4, 4] or inputs[1][2:] != [3, 3]:
        return None
    (_, chs, side, _), (out_chs, in_per_group, _, _) = inputs
    return (chs, chs // in_per_group, side) if out_chs == chs else None


def time_layer(chs: int, groups: int, side: int, batch: int, fmt: torch.memory_format) -> tuple[float, float]:
    """Library forward ms and backward ms (both gradients) of one 3x3 layer alone, in memory format `fmt`."""
    x = torch.randn(batch, chs, side, side).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(chs, chs // groups, 3, 3).contiguous(memory_format=fmt).requires_grad_()
    go = torch.randn(batch, chs, side, side).contiguous(memory_format=fmt)

    def forward() -> torch.Tensor:
        return F.conv2d(x, w, padding=1, groups=groups)

    def forward_and_backward() -> object:
        return torch.autograd.grad(forward(), (x, w), go)

    forward_and_backward()
    fwd = median_ms(forward, 9)
    return fwd, median_ms(forward_and_backward, 9) - fwd


def nchw_against_channels_last(segments: str, batch: int, sides: set[int], reps: int = 8) -> tuple[float, float]:
    """Median ms of a whole step as is and with the grouped spatial layers at `sides` computed in NCHW (the
    input, weight and output converted around the library convolution), alternating blocks of 2 steps."""
    library_forward = SpatialConv2d.forward
    nchw = {"on": False}

    def forward(self: SpatialConv2d, x: torch.Tensor) -> torch.Tensor:
        if nchw["on"] and 1 < self.groups < self.in_channels and x.shape[2] in sides:
            y = F.conv2d(x.contiguous(), self.weight.contiguous(), padding=1, groups=self.groups)
            return y.contiguous(memory_format=torch.channels_last)
        return library_forward(self, x)

    SpatialConv2d.forward = forward  # type: ignore[method-assign]
    try:
        step = training_step(segments, batch=batch, channels_last=True)
        for _ in range(3):
            step()
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(reps):
            for on in (False, True):
                nchw["on"] = on
                step()
                times[on] += [median_ms(step, 1) for _ in range(2)]
    finally:
        SpatialConv2d.forward = library_forward  # type: ignore[method-assign]
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", nargs="+", default=["1", "4", "16", "depthwise"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="rows per segments value")
    parser.add_argument("--nchw-sizes", type=int, nargs="+", help="time NCHW grouped layers at these sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, channels_last, fp32\n")
    if args.nchw_sizes:
        print(f"| segments | channels_last ms | NCHW at {args.nchw_sizes} px ms | speed-up |\n|---|---:|---:|---:|")
        for segments in args.segments:
            cl, nchw = nchw_against_channels_last(segments, args.batch, set(args.nchw_sizes))
            print(f"| {segments} | {cl:.0f} | {nchw:.0f} | {cl / nchw:.3f}x |", flush=True)
        return
    spatial_layers: Counter[tuple[int, int, int]] = Counter()
    for segments in args.segments:
        total, rows = profile_step(segments, args.batch)
        by_op: Counter[str] = Counter()
        spatial_ms = 0.0
        for ms, _, op, shapes in rows:
            by_op[op] += ms
            if layer := spatial_shape(op, shapes):
                spatial_layers[layer] += ms
                spatial_ms += ms
        print(f"### segments {segments}: {total:.0f} ms of self time a step (profiled)\n")
        print("| ms a step | share | calls | op | input shapes |\n|---:|---:|---:|---|---|")
        for ms, calls, op, shapes in rows[: args.top]:
            print(f"| {ms:.1f} | {ms / total:.0%} | {calls} | {op} | {[s for s in shapes if s][:3]} |")
        print("\nBy op: " + ", ".join(f"{op} {ms:.0f} ms" for op, ms in by_op.most_common(6)))
        print(
            f"\nThe 3x3 layers' library forward + backward: {spatial_ms:.0f} ms ({spatial_ms / total:.0%}; the "
            f"hand-written 2x2 backward's ops not counted); were they free, the step would run "
            f"{total / (total - spatial_ms):.2f}x faster.\n"
        )
    print("### The costliest 3x3 layers alone, both memory formats\n")
    print("| channels | groups | px | GFLOP | channels_last fwd / bwd ms | GFLOP/s fwd | NCHW fwd / bwd ms |")
    print("|---:|---:|---:|---:|---|---:|---|")
    for (chs, groups, side), _ in spatial_layers.most_common(args.top):
        gflop = 2 * 9 * args.batch * side * side * chs * (chs // groups) / 1e9
        cf, cb = time_layer(chs, groups, side, args.batch, torch.channels_last)
        nf, nb = time_layer(chs, groups, side, args.batch, torch.contiguous_format)
        kind = "depthwise" if groups == chs else groups
        print(f"| {chs} | {kind} | {side}x{side} | {gflop:.3f} | {cf:.2f} / {cb:.2f} | {gflop / cf * 1000:.0f} | "
              f"{nf:.2f} / {nb:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
