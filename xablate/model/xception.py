"""Xception (Chollet, CVPR 2017, Fig. 5) built from its data (`arch.py`) by one generic class.

`create_model("xception")` is the paper's network (22,855,952 trainable parameters at 1000 classes);
`create_model("xception_mini")` is the same architecture scaled for 28-32 px images on a laptop CPU.
Both take the three ablation axes (`segments`, `activation`, `residual`) plus `order`, `mid_norm`,
`width`, `middle_blocks` and `budget`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..axes import Segments, parse_choice, parse_segments
from ..errors import ConfigError
from .arch import ARCHS, ModuleSpec, XceptionArch
from .budget import BUDGET_ARCHS, count_params, match_params
from .layers import LayerType, Order, SeparableConv2d, get_act_layer
from .stack import StackedLinear


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
        stack: int = 1,
    ) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        chs = in_chs
        for i, out_chs in enumerate(spec.chs, start=1):
            if i > 1 or spec.lead_act:
                layers.append((f"act{i}", nn.ReLU()))
            sep = SeparableConv2d(chs, out_chs, norm_layer=norm_layer, stack=stack, **sep_kwargs)
            layers.append((f"sep{i}", sep))
            layers.append((f"bn{i}", norm_layer(stack * out_chs)))
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
                conv = nn.Conv2d(stack * in_chs, stack * chs, 1, stride=2 if spec.pool else 1, groups=stack, bias=False)
                self.skip = nn.Sequential(OrderedDict(conv=conv, bn=norm_layer(stack * chs)))
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
    """The generic Xception: stem, entry, middle and exit flows, then pooling, dropout and a classifier.

    `stack=K` folds K such networks into one (`stack.py`): input (N, K * in_chans, H, W), logits (N, K, classes)."""

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
        stack: int = 1,
    ) -> None:
        super().__init__()
        self.arch, self.stack = arch, stack
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        chs = in_chans
        for i, conv in enumerate(arch.stem, start=1):
            stem[f"conv{i}"] = nn.Conv2d(
                stack * chs, stack * conv.chs, 3, conv.stride, conv.padding, groups=stack, bias=False
            )
            stem[f"bn{i}"] = norm_layer(stack * conv.chs)
            stem[f"act{i}"] = nn.ReLU()
            chs = conv.chs
        self.stem = nn.Sequential(stem)

        sep_kwargs = dict(segments=segments, order=order, act_layer=get_act_layer(activation), mid_norm=mid_norm)

        def build(specs: list[ModuleSpec]) -> nn.Sequential:
            nonlocal chs
            blocks = []
            for spec in specs:
                blocks.append(
                    XceptionModule(
                        chs, spec, residual=residual, sep_kwargs=sep_kwargs, norm_layer=norm_layer, stack=stack
                    )
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
        self.fc = nn.Linear(chs, num_classes) if stack == 1 else StackedLinear(chs, num_classes, stack)

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


def check_segments(arch: XceptionArch, segments: Segments, order: Order, model_name: str) -> None:
    """Fail with the list of valid values when `segments` does not divide every separable layer."""
    valid = arch.valid_segments(order)
    if segments != "depthwise" and segments not in valid:
        allowed = ", ".join([*map(str, valid), "depthwise"])
        raise ConfigError(
            f"segments={segments} does not divide every separable layer of {model_name}; valid: {allowed}"
        )


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
    stack = kwargs.pop("stack", 1)

    def build(a: XceptionArch, seg: Segments = segments, k: int = 1) -> Xception:
        return Xception(a, segments=seg, order=order, residual=residual, stack=k, **kwargs)

    if budget == "params" and segments != "depthwise":
        key = (model_name, segments, width, middle_blocks, order, residual, tuple(sorted(kwargs.items())))
        if key not in BUDGET_ARCHS:
            with torch.device("meta"):
                target = count_params(build(arch, "depthwise"))
            BUDGET_ARCHS[key] = match_params(base, segments, target, width, middle_blocks, build)
        arch = BUDGET_ARCHS[key]
    return build(arch, k=stack)


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

    `overrides` may hold `order`, `mid_norm`, `width`, `middle_blocks`, `budget`, `drop_rate`, `norm_layer`, and
    `stack` (K seeds' networks folded into one, `stack.py`).
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
