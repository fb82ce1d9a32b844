"""What a model costs: parameters, multiply-adds and each stage's output shape, without real compute.

The forward pass runs on PyTorch's meta device, so profiling the paper model at 299 px takes well under a
second and allocates nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .xception import Xception, count_params

STAGES: tuple[str, ...] = ("stem", "entry", "middle", "exit")


@dataclass(frozen=True)
class StageCost:
    name: str
    out_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelCost:
    params: int
    macs: int
    stages: tuple[StageCost, ...]


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def profile(model: Xception, input_shape: tuple[int, int, int]) -> ModelCost:
    """Per-image multiply-adds of convolutions and linear layers, and the shape after every stage."""
    meta = model if _on_meta(model) else copy.deepcopy(model).to("meta")
    macs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in meta.named_modules():
        stage = name.split(".")[0] if name.split(".")[0] in STAGES else "head"
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(
                module.register_forward_hook(
                    lambda m, _i, out, s=stage: macs.__setitem__(s, macs.get(s, 0) + _layer_macs(m, out))
                )
            )
        if name in STAGES or name == "fc":
            key = "head" if name == "fc" else name
            handles.append(
                module.register_forward_hook(lambda _m, _i, out, k=key: shapes.__setitem__(k, tuple(out.shape[1:])))
            )
    try:
        with torch.no_grad():
            meta.eval()(torch.empty((1, *input_shape), device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    stages = []
    for name in (*STAGES, "head"):
        parts = [getattr(meta, name)] if name != "head" else [meta.global_pool, meta.head_drop, meta.fc]
        params = sum(count_params(p) for p in parts)
        stages.append(StageCost(name, shapes[name], params, macs.get(name, 0)))
    return ModelCost(count_params(meta), sum(macs.values()), tuple(stages))


def _on_meta(model: nn.Module) -> bool:
    return all(p.is_meta for p in model.parameters())


def format_costs(name: str, what: str, input_shape: tuple[int, int, int], cost: ModelCost) -> str:
    """The dry run's table: each stage's output shape, parameters and multiply-adds, then the totals."""
    shape = "x".join(map(str, input_shape))
    lines = [f"{name}  {what} ({shape})", f"  {'stage':<8}{'output':>14}{'params':>14}{'MACs':>16}"]
    for stage in cost.stages:
        out = "x".join(map(str, stage.out_shape))
        lines.append(f"  {stage.name:<8}{out:>14}{stage.params:>14,}{stage.macs:>16,}")
    lines.append(f"  {'total':<8}{'':>14}{cost.params:>14,}{cost.macs:>16,}")
    return "\n".join(lines)
