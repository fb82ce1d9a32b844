"""Xception (Chollet, CVPR 2017, Fig. 5) as read-only data: a stem and the entry, middle and exit flows of
module specs, for the paper's network and for its version scaled to 28-32 px images. `xception.py` builds
either with one generic class."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .layers import Order


@dataclass(frozen=True)
class ConvSpec:
    """One regular convolution of the stem (followed by BatchNorm and ReLU)."""

    chs: int
    stride: int
    padding: int


@dataclass(frozen=True)
class ModuleSpec:
    """One Xception module: separable convs, each preceded by ReLU and followed by BatchNorm.

    `pool` ends the module with MaxPool 3x3/2 and makes its skip a strided 1x1 conv; `lead_act=False` drops
    the ReLU before the first separable conv; `skip=False` marks the modules the paper leaves without a
    residual connection; `tail_act` adds a final ReLU (the end of the exit flow).
    """

    chs: tuple[int, ...]
    pool: bool = False
    lead_act: bool = True
    skip: bool = True
    tail_act: bool = False


def round_channels(chs: int, multiplier: float, divisor: int) -> int:
    """`chs * multiplier` rounded to a multiple of `divisor`, never below `divisor`."""
    return max(divisor, int(chs * multiplier / divisor + 0.5) * divisor)


@dataclass(frozen=True)
class XceptionArch:
    """The whole network as read-only data: a stem and the entry, middle and exit flows."""

    stem: tuple[ConvSpec, ...]
    entry: tuple[ModuleSpec, ...]
    middle: ModuleSpec
    middle_blocks: int
    exit: tuple[ModuleSpec, ...]

    def scaled(self, width: float = 1.0, middle_blocks: int | None = None, divisor: int = 8) -> XceptionArch:
        """Every width times `width` (rounded to a multiple of `divisor`), and a new middle-flow depth."""
        if width == 1.0 and divisor == 8 and middle_blocks in (None, self.middle_blocks):
            return self

        def scale(spec: ModuleSpec) -> ModuleSpec:
            return replace(spec, chs=tuple(round_channels(c, width, divisor) for c in spec.chs))

        return XceptionArch(
            stem=tuple(replace(c, chs=round_channels(c.chs, width, divisor)) for c in self.stem),
            entry=tuple(scale(m) for m in self.entry),
            middle=scale(self.middle),
            middle_blocks=self.middle_blocks if middle_blocks is None else middle_blocks,
            exit=tuple(scale(m) for m in self.exit),
        )

    def modules(self) -> list[ModuleSpec]:
        return [*self.entry, *[self.middle] * self.middle_blocks, *self.exit]

    def spatial_widths(self, order: Order = "depthwise_first") -> list[int]:
        """The channel count each separable conv's spatial step sees, in network order."""
        widths, in_chs = [], self.stem[-1].chs
        for spec in self.modules():
            for chs in spec.chs:
                widths.append(in_chs if order == "depthwise_first" else chs)
                in_chs = chs
        return widths

    def valid_segments(self, order: Order = "depthwise_first") -> list[int]:
        """Every segment count that divides every separable layer (depthwise is always valid too)."""
        common = math.gcd(*self.spatial_widths(order))
        return [g for g in range(1, common + 1) if common % g == 0]


_mod = ModuleSpec
XCEPTION_ARCH = XceptionArch(
    stem=(ConvSpec(32, 2, 0), ConvSpec(64, 1, 0)),
    entry=(_mod((128, 128), pool=True, lead_act=False), _mod((256, 256), pool=True), _mod((728, 728), pool=True)),
    middle=_mod((728, 728, 728)),
    middle_blocks=8,
    exit=(_mod((728, 1024), pool=True), _mod((1536, 2048), lead_act=False, skip=False, tail_act=True)),
)
"""Paper Fig. 5: 36 conv layers in 14 modules, residual around all but the first (stem) and last."""

XCEPTION_MINI_ARCH = XceptionArch(
    stem=(ConvSpec(8, 1, 1), ConvSpec(16, 1, 1)),
    entry=(_mod((16, 32), pool=True, lead_act=False), _mod((64, 64), pool=True), _mod((128, 128), pool=True)),
    middle=_mod((128, 128, 128)),
    middle_blocks=4,
    exit=(_mod((128, 256), pool=True), _mod((256, 512), lead_act=False, skip=False, tail_act=True)),
)
"""Fig. 5 for 28-32 px: a stride-1, same-padded stem, three pooling entry modules (28 -> 14 -> 7 -> 4 px),
4 middle blocks at 4x4, exit at 2x2. Widths are powers of two, so 1, 2, 4, 8 and 16 segments divide every
separable layer. Sized so a Fashion-MNIST epoch takes about 2 minutes on 2 CPU cores at depthwise (its
full-resolution layers are kept narrow: depthwise backward passes are memory-bound there)."""

ARCHS: dict[str, XceptionArch] = {"xception": XCEPTION_ARCH, "xception_mini": XCEPTION_MINI_ARCH}
