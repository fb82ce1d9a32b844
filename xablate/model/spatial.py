"""The separable layer's spatial step: a 3x3 grouped convolution whose CPU backward is hand-written
where PyTorch's is slow.

Why hand-written: on the CPU (torch 2.13), `convolution_backward` of a 3x3 depthwise or grouped
convolution on 2x2 and 4x4 images takes tens to hundreds of times its own forward (depthwise, 512
channels, 2 px, batch 256: about 0.4 ms forward, 31-61 ms backward; BENCHMARKS.md has the measurements).
The same gradients by a cheaper route:

- grad input: the library's *forward* convolution of the output gradient with each group's kernel
  transposed and flipped (the forward kernel is fast at these shapes);
- grad weight: for each of the nine kernel taps, the output gradient times the input shifted by that tap,
  summed over batch and the pixels where both exist (depthwise: an elementwise product and a sum; grouped:
  one batched matrix product per tap, a group per batch entry).

Forward is the unchanged `F.conv2d`, so outputs are bit-identical; gradients agree with autograd's to fp32
rounding (a different summation order), and are the same bits run to run for a given thread count.

When (measured on this project's 2-core AMD EPYC CPU, torch 2.13, fp32, batch 256, channels_last, every
spatial-layer shape of xception_mini at every segments value; BENCHMARKS.md): the hand-written backward
is used for CPU fp32 tensors in eager mode when the image has at most `FAST_MAX_PIXELS` (4) pixels, at any
groups value: there it took 0.04-0.5x the library's time; at 4x4 it lost for most groups (0.8-3x), at 7x7
and more always. Everywhere else (CUDA, MPS, other dtypes, torch.compile, larger images) the library
kernels stay: the rule was not measured there.
"""

from __future__ import annotations

from itertools import product

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENABLED = False
"""Off by default (`trainer.fast_backward`, which the engine sets for its run): its gradients equal the
library's to fp32 rounding, but that rounding differs, and on the tiny synthetic DDP test a run with it ended
0.06 top-1 away from the two-rank run (the library kernel: within 0.02). Until that is understood it is opt-in."""

FAST_MAX_PIXELS = 4
"""The largest H*W at which the hand-written backward is used: it beat the library's on every 2x2 layer
(0.04-0.5x its time) and lost on most 4x4 ones (0.8-3x), at every groups value (BENCHMARKS.md)."""

TAPS: tuple[tuple[int, int], ...] = tuple(product((-1, 0, 1), repeat=2))


def fast_backward_applies(x: Tensor, weight: Tensor, groups: int) -> bool:
    """The measured rule: CPU, fp32, eager, a gradient wanted, and an image small enough for its kind."""
    if not ENABLED or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return False
    if torch.compiler.is_compiling() or x.dim() != 4:
        return False
    return x.shape[2] * x.shape[3] <= FAST_MAX_PIXELS


def _tap_slices(tap: int, size: int) -> tuple[slice, slice]:
    """The output rows (or columns) that see input row (or column) `out + tap`, and those input rows."""
    return slice(max(-tap, 0), size + min(-tap, 0)), slice(max(tap, 0), size + min(tap, 0))


def grad_input(grad_out: Tensor, weight: Tensor, groups: int) -> Tensor:
    """d loss / d input of a stride-1, padding-1 3x3 convolution: a forward convolution of the output
    gradient with each group's kernel transposed (in and out channels) and flipped in space."""
    out_chs, in_per_group = weight.shape[:2]
    flipped = weight.view(groups, out_chs // groups, in_per_group, 3, 3).transpose(1, 2)
    flipped = flipped.reshape(groups * in_per_group, out_chs // groups, 3, 3).flip(2, 3)
    return F.conv2d(grad_out, flipped, padding=1, groups=groups)


def grad_weight(x: Tensor, grad_out: Tensor, groups: int) -> Tensor:
    """d loss / d weight of a stride-1, padding-1 3x3 convolution, tap by tap over the valid pixels."""
    _, in_chs, h, w = x.shape
    out_chs = grad_out.shape[1]
    in_per_group, out_per_group = in_chs // groups, out_chs // groups
    taps = []
    for di, dj in TAPS:
        (go_rows, x_rows), (go_cols, x_cols) = _tap_slices(di, h), _tap_slices(dj, w)
        go = grad_out[:, :, go_rows, go_cols]
        xs = x[:, :, x_rows, x_cols]
        if in_per_group == 1 and out_per_group == 1:
            taps.append((go * xs).sum((0, 2, 3)).view(out_chs, 1))
            continue
        go_mat = go.permute(0, 2, 3, 1).reshape(-1, groups, out_per_group).permute(1, 2, 0)
        x_mat = xs.permute(0, 2, 3, 1).reshape(-1, groups, in_per_group).transpose(0, 1)
        taps.append(torch.bmm(go_mat, x_mat).reshape(out_chs, in_per_group))
    return torch.stack(taps, dim=-1).view(out_chs, in_per_group, 3, 3)


class _SpatialConvFunction(torch.autograd.Function):
    """`F.conv2d(x, weight, padding=1, groups=groups)` with the hand-written backward above."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.groups = groups
        return F.conv2d(x, weight, padding=1, groups=groups)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        need_x, need_w, _ = ctx.needs_input_grad
        dx = grad_input(grad_out, weight, ctx.groups) if need_x else None
        dw = grad_weight(x, grad_out, ctx.groups) if need_w else None
        return dx, dw, None


def enable(flag: bool) -> None:
    """Switch the hand-written backward on or off for the spatial layers of this process."""
    global ENABLED
    ENABLED = bool(flag)


def spatial_conv(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    """The 3x3 spatial convolution with the hand-written backward, whatever the rule says (for tests)."""
    return _SpatialConvFunction.apply(x, weight, groups)


class SpatialConv2d(nn.Conv2d):
    """A 3x3, stride-1, same-padded grouped convolution without bias: an `nn.Conv2d` (same parameter
    names, same state dict) whose backward takes the hand-written route where `fast_backward_applies`."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__(channels, channels, 3, padding=1, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if fast_backward_applies(x, self.weight, self.groups):
            return _SpatialConvFunction.apply(x, self.weight, self.groups)
        return super().forward(x)
