"""Xception (Chollet, CVPR 2017, Fig. 5) built from its data (`arch.py`) by one generic class.

`create_model("xception")` is the paper's network (22,855,952 trainable parameters at 1000 classes);
`create_model("xception_mini")` is the same architecture scaled for 28-32 px images on a laptop CPU.
Over 250 lines because the module, the network and the iso-parameter width search belong together.
Both take the three ablation axes (`segments`, `activation`, `residual`) plus `order`, `mid_norm`,
`width`, `middle_blocks` and `budget`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..axes import Segments, parse_choice, parse_segments
from ..errors import ConfigError
from .arch import ARCHS, ModuleSpec, XceptionArch
from .layers import LayerType, Order, SeparableConv2d, get_act_layer

BUDGET_TOLERANCE = 0.05


class XceptionModule(nn.Module):
    """A residual module built from a `ModuleSpec`; the skip is added out of place.

    `main_path` names the main branch's layers in the order `forward` applies them."""

    def __init__(
        self,
        in_chs: int,
        spec: ModuleSpec,
        *,
        residual: bool,
        sep_kwargs: dict[str, Any],
        norm_layer: LayerType,
    ) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        chs = in_chs
        for i, out_chs in enumerate(spec.chs, start=1):
            if i > 1 or spec.lead_act:
                layers.append((f"act{i}", nn.ReLU()))
            layers.append((f"sep{i}", SeparableConv2d(chs, out_chs, norm_layer=norm_layer, **sep_kwargs)))
            layers.append((f"bn{i}", norm_layer(out_chs)))
            chs = out_chs
        if spec.pool:
            layers.append(("pool", nn.MaxPool2d(3, stride=2, padding=1)))
        if spec.tail_act:
            layers.append(("act_out", nn.ReLU()))
        for name, layer in layers:
            self.add_module(name, layer)
        self.main_path: tuple[str, ...] = tuple(name for name, _ in layers)
        self.out_chs = chs
        self.skip: nn.Module | None = None
        if residual and spec.skip:
            if spec.pool or in_chs != chs:
                conv = nn.Conv2d(in_chs, chs, 1, stride=2 if spec.pool else 1, bias=False)
                self.skip = nn.Sequential(OrderedDict(conv=conv, bn=norm_layer(chs)))
            else:
                self.skip = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for name in self.main_path:
            out = getattr(self, name)(out)
        return out if self.skip is None else out + self.skip(x)


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C) by a mean over H and W. Unlike `nn.AdaptiveAvgPool2d`, whose CUDA backward
    PyTorch flags as nondeterministic, this is deterministic everywhere; on the CPU both give the same bits."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3))


class Xception(nn.Module):
    """The generic Xception: stem, entry, middle and exit flows, then pooling, dropout and a classifier."""

    def __init__(
        self,
        arch: XceptionArch,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        segments: Segments = "depthwise",
        activation: str = "none",
        residual: bool = True,
        order: Order = "depthwise_first",
        mid_norm: bool = False,
        drop_rate: float = 0.0,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.arch = arch
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        chs = in_chans
        for i, conv in enumerate(arch.stem, start=1):
            stem[f"conv{i}"] = nn.Conv2d(chs, conv.chs, 3, conv.stride, conv.padding, bias=False)
            stem[f"bn{i}"] = norm_layer(conv.chs)
            stem[f"act{i}"] = nn.ReLU()
            chs = conv.chs
        self.stem = nn.Sequential(stem)

        sep_kwargs = dict(segments=segments, order=order, act_layer=get_act_layer(activation), mid_norm=mid_norm)

        def build(specs: list[ModuleSpec]) -> nn.Sequential:
            nonlocal chs
            blocks = []
            for spec in specs:
                blocks.append(
                    XceptionModule(chs, spec, residual=residual, sep_kwargs=sep_kwargs, norm_layer=norm_layer)
                )
                chs = blocks[-1].out_chs
            return nn.Sequential(*blocks)

        self.entry = build(list(arch.entry))
        self.middle = build([arch.middle] * arch.middle_blocks)
        self.exit = build(list(arch.exit))
        self.num_features = chs
        self.num_classes = num_classes
        self.global_pool = GlobalAvgPool()
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chs, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.exit(self.middle(self.entry(self.stem(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


_model_entrypoints: dict[str, Callable[..., Xception]] = {}


def register_model(fn: Callable[..., Xception]) -> Callable[..., Xception]:
    _model_entrypoints[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_model_entrypoints)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_segments(arch: XceptionArch, segments: Segments, order: Order, model_name: str) -> None:
    """Fail with the list of valid values when `segments` does not divide every separable layer."""
    valid = arch.valid_segments(order)
    if segments != "depthwise" and segments not in valid:
        allowed = ", ".join([*map(str, valid), "depthwise"])
        raise ConfigError(
            f"segments={segments} does not divide every separable layer of {model_name}; valid: {allowed}"
        )


def _match_params(
    arch: XceptionArch, segments: int, target: int, width: float, middle_blocks: int | None, build: Callable
) -> XceptionArch:
    """The width multiplier whose model has `target` parameters (within 5%), widths multiples of `segments`."""
    divisor = math.lcm(8, segments)

    def params_at(m: float) -> tuple[int, XceptionArch]:
        scaled = arch.scaled(width * m, middle_blocks, divisor)
        with torch.device("meta"):
            return count_params(build(scaled)), scaled

    lo, hi = 0.01, 4.0
    best = params_at(hi)
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        n, scaled = params_at(mid)
        if abs(n - target) < abs(best[0] - target):
            best = (n, scaled)
        lo, hi = (mid, hi) if n < target else (lo, mid)
    if abs(best[0] - target) > BUDGET_TOLERANCE * target:
        raise ConfigError(
            f"budget=params cannot match {target:,} parameters within 5% at segments={segments} "
            f"(closest: {best[0]:,}); use budget=none"
        )
    return best[1]


_BUDGET_ARCHS: dict[tuple, XceptionArch] = {}
"""Architectures found by the iso-parameter search, by model options: the search builds ~30 models."""


def _create_xception(
    model_name: str,
    *,
    width: float = 1.0,
    middle_blocks: int | None = None,
    budget: str = "none",
    segments: object = "depthwise",
    order: str = "depthwise_first",
    residual: bool = True,
    **kwargs: Any,
) -> Xception:
    segments = parse_segments(segments)
    parse_choice("order", order)
    parse_choice("budget", budget)
    if not isinstance(residual, bool):
        raise ConfigError(f"residual={residual!r} is invalid; allowed: true, false")
    if not (isinstance(width, int | float) and width > 0):
        raise ConfigError(f"width={width!r} is invalid; allowed: a number > 0")
    if middle_blocks is not None and not (isinstance(middle_blocks, int) and middle_blocks >= 0):
        raise ConfigError(f"middle_blocks={middle_blocks!r} is invalid; allowed: an integer >= 0")
    base = ARCHS[model_name]
    arch = base.scaled(width, middle_blocks)
    check_segments(arch, segments, order, model_name)

    def build(a: XceptionArch, seg: Segments = segments) -> Xception:
        return Xception(a, segments=seg, order=order, residual=residual, **kwargs)

    if budget == "params" and segments != "depthwise":
        key = (model_name, segments, width, middle_blocks, order, residual, tuple(sorted(kwargs.items())))
        if key not in _BUDGET_ARCHS:
            with torch.device("meta"):
                target = count_params(build(arch, "depthwise"))
            _BUDGET_ARCHS[key] = _match_params(base, segments, target, width, middle_blocks, build)
        arch = _BUDGET_ARCHS[key]
    return build(arch)


@register_model
def xception(**kwargs: Any) -> Xception:
    """The paper's Xception (Fig. 5): 299x299 input, 22,855,952 parameters at 1000 classes."""
    return _create_xception("xception", **kwargs)


@register_model
def xception_mini(**kwargs: Any) -> Xception:
    """Xception scaled for 28-32 px images on a laptop CPU (same flows, narrower, 4 middle blocks)."""
    return _create_xception("xception_mini", **kwargs)


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    segments: object = "depthwise",
    activation: str = "none",
    residual: bool = True,
    **overrides: Any,
) -> Xception:
    """Build a registered model, in the style of `timm.create_model`; no device or dtype is set here.

    `overrides` may hold `order`, `mid_norm`, `width`, `middle_blocks`, `budget`, `drop_rate`, `norm_layer`.
    """
    if name not in _model_entrypoints:
        raise ConfigError(f"model={name!r} is not known; allowed: {', '.join(list_models())}")
    return _model_entrypoints[name](
        num_classes=num_classes,
        in_chans=in_chans,
        segments=segments,
        activation=activation,
        residual=residual,
        **overrides,
    )
