"""The spatial step's hand-written backward (`xablate.spatial`): same forward bits, autograd's gradients
to fp32 rounding on every spatial-layer shape of both models, same bits run to run, same checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xablate import create_model
from xablate.axes import ORDERS
from xablate.model.arch import ARCHS
from xablate.model.spatial import FAST_MAX_PIXELS, SpatialConv2d, fast_backward_applies, spatial_conv

Shape = tuple[int, int, int, int]
"""(channels, groups, height, width) of one spatial layer."""

REL_TOL = 1e-5
MODELS = {"xception_mini": (1, 28), "xception": (3, 35)}
"""(in_chans, image side): the mini model at its real 28 px; the paper's at 35 px to keep the test cheap (its
flows then run at 15, 8, 4, 2 and 1 px, every channel width and groups value of the 299 px model)."""


@pytest.fixture(autouse=True)
def _fast_path_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-written backward is opt-in (`trainer.fast_backward`); these tests are about it."""
    monkeypatch.setattr("xablate.model.spatial.ENABLED", True)


def _layer_shapes(name: str) -> list[Shape]:
    """Every distinct spatial-layer shape of a model at the image side of `MODELS`, over every valid segments
    value (of either order) and both orders; found by a forward pass on the meta device."""
    in_chans, side = MODELS[name]
    arch = ARCHS[name]
    segments = sorted({*arch.valid_segments("depthwise_first"), *arch.valid_segments("pointwise_first")})
    shapes: dict[Shape, None] = {}
    for order in ORDERS:
        for seg in [*(s for s in segments if s in arch.valid_segments(order)), "depthwise"]:
            with torch.device("meta"):
                net = create_model(name, num_classes=10, in_chans=in_chans, segments=seg, order=order)
            for m in net.modules():
                if isinstance(m, SpatialConv2d):
                    m.register_forward_hook(lambda m, i, o: shapes.setdefault((m.in_channels, m.groups, *o.shape[2:])))
            with torch.no_grad():
                net.eval()(torch.empty(1, in_chans, side, side, device="meta"))
    return list(shapes)


SHAPES = [(name, shape) for name in MODELS for shape in _layer_shapes(name)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _inputs(shape: Shape, batch: int, channels_last: bool) -> tuple[torch.Tensor, ...]:
    chs, groups, h, w = shape
    gen = torch.Generator().manual_seed(hash(shape) % 2**31)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, chs, h, w, generator=gen).contiguous(memory_format=fmt).requires_grad_()
    weight = torch.randn(chs, chs // groups, 3, 3, generator=gen).requires_grad_()
    grad = torch.randn(batch, chs, h, w, generator=gen).contiguous(memory_format=fmt)
    return x, weight, grad


@pytest.mark.parametrize(("model", "shape"), SHAPES, ids=[f"{m}-c{s[0]}-g{s[1]}-{s[2]}px" for m, s in SHAPES])
def test_hand_backward_matches_autograd_on_every_layer_shape(model: str, shape: Shape) -> None:
    _, groups, h, w = shape
    x, weight, grad = _inputs(shape, batch=2 if model == "xception" else 4, channels_last=h * w % 2 == 0)
    ref_y = F.conv2d(x, weight, padding=1, groups=groups)
    ref = torch.autograd.grad(ref_y, (x, weight), grad)
    y = spatial_conv(x, weight, groups)
    got = torch.autograd.grad(y, (x, weight), grad)
    assert torch.equal(y, ref_y)
    assert _rel(got[0], ref[0]) <= REL_TOL and _rel(got[1], ref[1]) <= REL_TOL


def test_every_segments_value_and_both_orders_are_covered() -> None:
    mini = {(c // g if g else 0) for _, (c, g, *_) in SHAPES}
    assert 1 in mini and any(k > 1 for k in mini)
    pixels = {h * w for _, (_, _, h, w) in SHAPES}
    assert min(pixels) <= FAST_MAX_PIXELS < max(pixels)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("segments", [1, 2, 4, 8, 16, "depthwise"])
def test_model_gradients_equal_with_and_without_the_fast_path(
    segments: object, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    net = create_model("xception_mini", num_classes=10, in_chans=1, segments=segments, order=order)
    net.to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)

    def grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net.zero_grad(set_to_none=True)
        out = net(x)
        out.square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}

    fast_out, fast = grads()
    monkeypatch.setattr("xablate.model.spatial.FAST_MAX_PIXELS", 0)
    ref_out, ref = grads()
    assert torch.equal(fast_out, ref_out)
    worst = max(_rel(fast[n], ref[n]) for n in ref)
    assert worst <= REL_TOL


def test_same_inputs_give_the_same_gradient_bits() -> None:
    x, weight, grad = _inputs((256, 256, 2, 2), batch=64, channels_last=True)
    first = torch.autograd.grad(spatial_conv(x, weight, 256), (x, weight), grad)
    again = torch.autograd.grad(spatial_conv(x, weight, 256), (x, weight), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_the_rule_keeps_the_library_kernel_where_it_was_not_measured() -> None:
    small = torch.randn(2, 8, 2, 2, requires_grad=True)
    weight = torch.randn(8, 1, 3, 3, requires_grad=True)
    assert fast_backward_applies(small, weight, 8)
    assert not fast_backward_applies(torch.randn(2, 8, 7, 7, requires_grad=True), weight, 8)
    assert not fast_backward_applies(small.double(), weight.double(), 8)
    with torch.no_grad():
        assert not fast_backward_applies(small, weight, 8)
    assert not fast_backward_applies(small.detach(), weight.detach(), 8)
    if torch.cuda.is_available():
        assert not fast_backward_applies(small.cuda(), weight.cuda(), 8)


def test_parameter_names_and_checkpoints_are_unchanged() -> None:
    net = create_model("xception_mini", num_classes=10, in_chans=1, segments=4)
    spatial = net.get_submodule("middle.0.sep1.dw")
    assert isinstance(spatial, torch.nn.Conv2d) and spatial.groups == 4 and spatial.padding == (1, 1)
    state = net.state_dict()
    assert "middle.0.sep1.dw.weight" in state and not any(k.endswith("dw.bias") for k in state)
    plain = torch.nn.Conv2d(128, 128, 3, padding=1, groups=4, bias=False)
    plain.load_state_dict({"weight": state["middle.0.sep1.dw.weight"]})
    assert torch.equal(plain.weight, spatial.weight)
