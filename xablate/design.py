"""A study's design as its config declares it, checked the same way by the training command's pre-launch
check and by the analysis: the reference cell (`design.baseline`) and the looks (`design.looks`). No torch."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .axes import BASELINE, allowed, parse_value
from .errors import ConfigError

PAPER_AXES: tuple[str, ...] = ("segments", "activation", "residual")
"""The paper's three axes: the ones a study's reference cell (`design.baseline`) names."""


def parse_baseline(declared: str) -> dict[str, Any]:
    """A study's `design.baseline`, such as `segments=depthwise activation=none residual=true`, as the
    reference value of each of `PAPER_AXES`; an axis it leaves out keeps the paper's Xception value."""
    shape = f"space-separated AXIS=VALUE pairs, each AXIS at most once and one of {', '.join(PAPER_AXES)}"
    baseline = {axis: getattr(BASELINE, axis) for axis in PAPER_AXES}
    named: set[str] = set()
    pairs = str(declared).split()
    if not pairs:
        raise ConfigError(f"design.baseline={declared!r} names no cell; allowed: {shape}")
    for pair in pairs:
        axis, sep, value = pair.partition("=")
        if not sep or axis not in PAPER_AXES or axis in named:
            raise ConfigError(f"design.baseline={declared!r}: cannot use {pair!r}; allowed: {shape}")
        try:
            baseline[axis] = parse_value(axis, value)
        except ConfigError:
            problem = f"{axis}={value.strip()} is not valid; allowed: {allowed(axis)}"
            raise ConfigError(f"design.baseline={declared!r}: {problem}") from None
        named.add(axis)
    return baseline


def check_looks(looks: Sequence[Any]) -> tuple[int, ...]:
    """`design.looks` as a tuple: the seed counts at which a study may be read, rising, each at least 2, the
    last its registered number of seeds; a one-line ConfigError otherwise."""
    try:
        values = tuple(int(k) for k in looks)
    except (TypeError, ValueError):
        values = ()
    if not values or any(k < 2 for k in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(
            f"design.looks={list(looks)} is not allowed; allowed: rising seed counts of at least 2, the last N"
        )
    return values
