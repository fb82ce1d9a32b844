"""The ablation axes the analysis groups, filters and plots by: names, allowed values, order and labels.

A cell of a study is one value per axis; the seed is the replicate inside a cell, never an axis. The paper's
Xception is the baseline cell (segments=depthwise, activation=none, residual=true): every other cell is
compared with it, and it is drawn in black in every figure.
"""

from __future__ import annotations

from typing import Any

AXES: tuple[str, ...] = ("segments", "activation", "residual", "order", "mid_norm", "budget", "model", "data")
"""Every axis a cell is defined by, the paper's three first."""

REPLICATE = "seed"

FIGURES: dict[str, str] = {"residual": "fig9_residual", "activation": "fig10_activation", "segments": "fig11_segments"}
"""The axis each figure varies: paper Fig. 9 and 10, and the project's Fig. 11 (the segments spectrum)."""

BASELINE: dict[str, Any] = {"segments": "depthwise", "activation": "none", "residual": True}
"""The paper's Xception; other axes of a cell's baseline are the cell's own."""

DEPTHWISE = "depthwise"
ACTIVATIONS: tuple[str, ...] = ("none", "relu", "elu", "gelu", "silu")
ORDERS: tuple[str, ...] = ("depthwise_first", "pointwise_first")
BUDGETS: tuple[str, ...] = ("none", "params")
BOOL_AXES: frozenset[str] = frozenset({"residual", "mid_norm"})

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def allowed(axis: str) -> str:
    """The values `axis` accepts, in words (for error messages)."""
    if axis == "segments":
        return f"a positive integer or {DEPTHWISE}"
    if axis in BOOL_AXES:
        return "true, false"
    if axis == "seed":
        return "an integer"
    choices = {"activation": ACTIVATIONS, "order": ORDERS, "budget": BUDGETS}.get(axis)
    return ", ".join(choices) if choices else "any name"


def parse_value(axis: str, value: object) -> Any:
    """`value` (text from the command line, or a value from a run's files) in the form the frames hold:
    segments an int or "depthwise", residual/mid_norm a bool, seed an int, everything else a string.

    Raises ValueError naming the value and what `axis` allows."""
    text = str(value).strip()
    bad = ValueError(f"{axis}={text} is not valid; allowed: {allowed(axis)}")
    if axis == "segments":
        if text.lower() in (DEPTHWISE, "dw"):
            return DEPTHWISE
        if isinstance(value, bool):
            raise bad
        try:
            number = int(text)
        except ValueError:
            raise bad from None
        if number < 1:
            raise bad
        return number
    if axis in BOOL_AXES:
        if isinstance(value, bool):
            return value
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad
    if axis == "seed":
        if isinstance(value, bool):
            raise bad
        try:
            return int(text)
        except ValueError:
            raise bad from None
    choices = {"activation": ACTIVATIONS, "order": ORDERS, "budget": BUDGETS}.get(axis)
    if not text or (choices is not None and text not in choices):
        raise bad
    return text


def sort_key(axis: str, value: Any) -> tuple[Any, ...]:
    """Order values along the paper's spectrum: segments 1 ... depthwise, activations none, relu, elu (then gelu, silu),
    residual with before without, everything else by name."""
    if axis == "segments":
        return (1, 0) if value == DEPTHWISE else (0, int(value))
    if axis == "residual":
        return (not value,)
    choices = {"activation": ACTIVATIONS, "order": ORDERS, "budget": BUDGETS}.get(axis)
    if choices is not None and value in choices:
        return (0, choices.index(value))
    return (1, str(value))


def ordered(axis: str, values: Any) -> list[Any]:
    """The distinct values of `values` in `sort_key` order."""
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return sorted(distinct, key=lambda v: sort_key(axis, v))


def text(value: Any) -> str:
    """A value as typed on the command line: booleans lower-case, everything else as is."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def legend_label(axis: str, value: Any) -> str:
    """A value as a figure legend says it."""
    if axis == "residual":
        return "with residual connections" if value else "without residual connections"
    if axis == "activation":
        return {"none": "no activation", "relu": "ReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU"}.get(
            value, str(value)
        )
    if axis == "segments":
        if value == DEPTHWISE:
            return "depthwise (Xception)"
        return "1 segment (regular conv)" if value == 1 else f"{value} segments"
    return f"{axis}={text(value)}"


def is_baseline(axis: str, value: Any) -> bool:
    return axis in BASELINE and BASELINE[axis] == value
