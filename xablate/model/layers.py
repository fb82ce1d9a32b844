"""The ablated operation: a separable convolution whose spatial step runs on channel segments.

Xception (Chollet, CVPR 2017, section 1.2) places regular convolutions (1 segment), Inception modules
(3-4 segments) and depthwise separable convolutions (one segment per channel) on one discrete spectrum.
`SeparableConv2d` is every point of it: a 3x3 grouped convolution with `segments` groups next to a 1x1
pointwise convolution, in either order, with an optional normalisation and activation between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn

from ..axes import Segments, parse_choice
from ..errors import ConfigError
from .spatial import SpatialConv2d

Order = Literal["depthwise_first", "pointwise_first"]
LayerType = Callable[..., nn.Module]

ACT_LAYERS: dict[str, LayerType] = {
    "none": nn.Identity,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def get_act_layer(name: str) -> LayerType:
    """The activation type for a name of the `activation` axis (`none` is the paper's Xception)."""
    return ACT_LAYERS[parse_choice("activation", name)]


def resolve_groups(segments: Segments, channels: int) -> int:
    """The `groups` of the spatial convolution over `channels` channels split into `segments` segments."""
    if segments == "depthwise":
        return channels
    if channels % segments:
        raise ConfigError(f"segments={segments} does not divide a separable layer of {channels} channels")
    return segments


class SeparableConv2d(nn.Module):
    """A 3x3 spatial convolution over channel segments and a 1x1 pointwise convolution, without bias.

    `dw` is the spatial step (depthwise only when segments='depthwise'), `pw` the pointwise step.
    `order='depthwise_first'` is Xception's (and Keras') order; `'pointwise_first'` is the Inception order.
    Between the two steps sit an optional `norm_layer` (when `mid_norm`) and `act_layer` (Identity for the
    paper's Xception, which has no non-linearity there; paper section 4.7, Fig. 10). `stack=K` makes it K
    such layers side by side, one per K-th of the channels (`stack.py`); `in_chs` and `out_chs` are per seed.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        segments: Segments = "depthwise",
        order: Order = "depthwise_first",
        act_layer: LayerType = nn.Identity,
        norm_layer: LayerType = nn.BatchNorm2d,
        mid_norm: bool = False,
        stack: int = 1,
    ) -> None:
        super().__init__()
        self.order = order
        spatial_chs = in_chs if order == "depthwise_first" else out_chs
        spatial = SpatialConv2d(stack * spatial_chs, stack * resolve_groups(segments, spatial_chs))
        pointwise = nn.Conv2d(stack * in_chs, stack * out_chs, 1, groups=stack, bias=False)
        mid_norm_layer = norm_layer(stack * spatial_chs) if mid_norm else None
        if order == "depthwise_first":
            self.dw, self.mid_norm, self.mid_act, self.pw = spatial, mid_norm_layer, act_layer(), pointwise
        else:
            self.pw, self.mid_norm, self.mid_act, self.dw = pointwise, mid_norm_layer, act_layer(), spatial

    def forward(self, x: Tensor) -> Tensor:
        first, second = (self.dw, self.pw) if self.order == "depthwise_first" else (self.pw, self.dw)
        x = first(x)
        if self.mid_norm is not None:
            x = self.mid_norm(x)
        return second(self.mid_act(x))
