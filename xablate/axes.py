"""The ablation axes: their names, allowed values, defaults and parsers, in one torch-free place.

Config validation, model building, run names and keys, W&B tags and `analysis` all read the axes from
here, so a value one of them accepts is accepted by all. A cell of a study is one value per axis; the
seed is the replicate inside a cell, never an axis. The paper's Xception (segments=depthwise,
activation=none, residual=true) is the baseline every other cell is compared with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import ConfigError

Segments = int | Literal["depthwise"]

DEPTHWISE = "depthwise"
SEGMENT_ALIASES: frozenset[str] = frozenset({DEPTHWISE, "dw"})
ACTIVATIONS: tuple[str, ...] = ("none", "relu", "elu", "gelu", "silu")
ORDERS: tuple[str, ...] = ("depthwise_first", "pointwise_first")
BUDGETS: tuple[str, ...] = ("none", "params")

NAMES: tuple[str, ...] = ("segments", "activation", "residual", "order", "mid_norm", "budget")
"""The axes of a model, the paper's three first (sections 1.2 and 4.7), then the project's own."""

CHOICES: dict[str, tuple[str, ...]] = {"activation": ACTIVATIONS, "order": ORDERS, "budget": BUDGETS}
BOOL_AXES: frozenset[str] = frozenset({"residual", "mid_norm"})
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def allowed(axis: str) -> str:
    """The values `axis` accepts, in words (for error messages)."""
    if axis == "segments":
        return f"a positive integer or {DEPTHWISE}"
    if axis in BOOL_AXES:
        return "true, false"
    if axis == "seed":
        return "an integer"
    return ", ".join(CHOICES[axis]) if axis in CHOICES else "any name"


def _invalid(axis: str, value: object) -> ConfigError:
    return ConfigError(f"{axis}={value!r} is invalid; allowed: {allowed(axis)}")


def parse_segments(value: object) -> Segments:
    """A positive int, or "depthwise" (also spelt "dw"), from a config, a command line or a run's files."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SEGMENT_ALIASES:
            return DEPTHWISE
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise _invalid("segments", value)


def parse_bool(axis: str, value: object) -> bool:
    """A boolean axis (`residual`, `mid_norm`) from a bool or its spelling on a command line."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise _invalid(axis, value)


def parse_choice(axis: str, value: object) -> str:
    if value not in CHOICES[axis]:
        raise ConfigError(f"{axis}={value!r} is not known; allowed: {allowed(axis)}")
    return str(value)


def parse_seed(value: object) -> int:
    if isinstance(value, bool):
        raise _invalid("seed", value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise _invalid("seed", value) from None


def parse_value(axis: str, value: object) -> Any:
    """Any axis (or the seed) in its Python form; unknown axes (model, data) are plain names."""
    if axis == "segments":
        return parse_segments(value)
    if axis in BOOL_AXES:
        return parse_bool(axis, value)
    if axis == "seed":
        return parse_seed(value)
    if axis in CHOICES:
        return parse_choice(axis, value)
    text = str(value).strip()
    if not text:
        raise _invalid(axis, value)
    return text


@dataclass(frozen=True)
class Axes:
    """One value per axis, parsed. The defaults are the paper's Xception."""

    segments: Segments = DEPTHWISE
    activation: str = "none"
    residual: bool = True
    order: str = "depthwise_first"
    mid_norm: bool = False
    budget: str = "none"

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Axes:
        """Axes from a mapping holding every axis (a config, a summary); raises a one-line ConfigError."""
        return cls(**{name: parse_value(name, values[name]) for name in NAMES})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name_parts(self) -> list[str]:
        """The readable part of a run's name: `seg4-relu-res`, plus the project's axes where not default."""
        parts = [
            f"seg{'dw' if self.segments == DEPTHWISE else self.segments}",
            self.activation,
            "res" if self.residual else "nores",
        ]
        if self.order == "pointwise_first":
            parts.append("pwfirst")
        if self.mid_norm:
            parts.append("midbn")
        if self.budget == "params":
            parts.append("isoparams")
        return parts


BASELINE = Axes()

def text(value: Any) -> str:
    """A value as typed on the command line: booleans lower-case, everything else as is."""
    return str(value).lower() if isinstance(value, bool) else str(value)
