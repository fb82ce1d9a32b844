"""K models of one architecture as one: the folded (stacked) layout and the moves in and out of it.

Folding K seeds of a cell multiplies every width and every convolution's `groups` by K, so that seed k owns
channels [k*C, (k+1)*C) of every layer and no convolution mixes two seeds; BatchNorm over K*C channels keeps
each seed's statistics exactly, and the head is `StackedLinear`, one linear map per seed. Every parameter,
buffer and optimiser state of the folded model is then the K seeds' tensors concatenated along dim 0 (0-dim
counters such as BatchNorm's `num_batches_tracked` are shared: the seeds step together), so `fold` and
`unfold` are concatenation and slicing. Why: on a GPU, K small models run as one launch per layer instead
of K, which is where a launch-bound step of xception_mini spends its time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


class StackedLinear(nn.Module):
    """K independent linear maps: (N, K * in) -> (N, K, out). `weight` is (K * out, in) and `bias` (K * out,),
    the K maps' `nn.Linear` tensors concatenated, so a slice of either is one seed's `fc`."""

    def __init__(self, in_features: int, out_features: int, stack: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.stack = in_features, out_features, stack
        self.weight = nn.Parameter(torch.empty(stack * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(stack * out_features))
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation, per map
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        k, n = self.stack, x.shape[0]
        x = x.view(n, k, self.in_features).transpose(0, 1)
        w = self.weight.view(k, self.out_features, self.in_features).transpose(1, 2)
        out = torch.baddbmm(self.bias.view(k, 1, self.out_features), x, w)
        return out.transpose(0, 1)


def _split(value: Any, k: int) -> list[Any]:
    if isinstance(value, Tensor) and value.dim() > 0:
        return [part.clone() for part in value.chunk(k)]
    if isinstance(value, Mapping):
        parts = {key: _split(v, k) for key, v in value.items()}
        return [{key: v[i] for key, v in parts.items()} for i in range(k)]
    return [value] * k


def _join(values: Sequence[Any]) -> Any:
    first = values[0]
    if isinstance(first, Tensor) and first.dim() > 0:
        return torch.cat(list(values))
    if isinstance(first, Mapping):
        return {key: _join([v[key] for v in values]) for key in first}
    return first


def unfold(state: Mapping[str, Any], k: int) -> list[dict[str, Any]]:
    """The K seeds' states (a model's, an optimiser's, or any nesting of them) of a folded state: every
    tensor of one or more dimensions sliced along dim 0 (cloned, so each saves alone), the rest shared."""
    return _split(state, k)


def fold(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The folded state of K seeds' states: `unfold`'s inverse (0-dim tensors and plain values from the first)."""
    return _join(states)
