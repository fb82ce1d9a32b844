"""Model tests (first tier): the ablation grid of `xception_mini`, and the paper's Xception.

Real modules throughout; the paper model is built on the meta device where only shapes and counts matter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from xablate import ConfigError, Xception, count_params, create_model, list_models
from xablate.axes import ACTIVATIONS
from xablate.model.arch import ARCHS, ModuleSpec
from xablate.model.costs import profile
from xablate.model.layers import ACT_LAYERS, SeparableConv2d
from xablate.model.xception import XceptionModule

SEGMENTS: tuple[int | str, ...] = (1, 2, 4, 16, "depthwise")
RESIDUALS: tuple[bool, ...] = (True, False)
ORDERS: tuple[str, ...] = ("depthwise_first", "pointwise_first")
MINI = dict(num_classes=10, in_chans=1)  # Fashion-MNIST: 28x28 grey, 10 classes
ACT_TYPES: dict[str, type[nn.Module]] = {
    "none": nn.Identity, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
}  # fmt: skip

# The paper's Xception (Fig. 5) at 1000 classes, as README states them.
PAPER_PARAMS = 22_855_952
PAPER_BN_STATS = 54_528
PAPER_MACS = 8.36e9


def _pairwise_grid() -> list[tuple[int | str, str, bool, str]]:
    """Every (segments, activation) pair once; (residual, order) cycle so every pair of axes values meets."""
    combos = list(itertools.product(RESIDUALS, ORDERS))
    combos = [combos[0], combos[3], combos[1], combos[2]]  # (T, dw), (F, pw), (T, pw), (F, dw)
    rows = [(s, a, *combos[k % 4]) for k, (s, a) in enumerate(itertools.product(SEGMENTS, ACTIVATIONS))]
    axes = (SEGMENTS, ACTIVATIONS, RESIDUALS, ORDERS)
    for i, j in itertools.combinations(range(4), 2):
        missing = set(itertools.product(axes[i], axes[j])) - {(r[i], r[j]) for r in rows}
        assert not missing, f"the grid misses the pairs {missing}"
    return rows


GRID = _pairwise_grid()


def _grid_id(row: tuple[int | str, str, bool, str]) -> str:
    s, a, r, o = row
    return f"seg{s}-{a}-{'res' if r else 'nores'}-{o}"


def _meta(name: str, **kwargs: object) -> Xception:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _spatial_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if name.endswith(".dw")}


def _blocks(model: nn.Module) -> list[XceptionModule]:
    return [m for m in model.modules() if isinstance(m, XceptionModule)]


def _widths(model: Xception) -> list[int]:
    """The output channels of every stem conv and every separable conv, read from the built modules."""
    widths = [m.out_channels for name, m in model.stem.named_children() if name.startswith("conv")]
    for block in _blocks(model):
        widths += [m.pw.out_channels for m in block.children() if isinstance(m, SeparableConv2d)]
    return widths


def _rounded(chs: int, width: float) -> int:
    """The documented width rule (conf/model/*.yaml): chs * width rounded to a multiple of 8, at least 8."""
    return max(8, 8 * math.floor(chs * width / 8 + 0.5))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is fastest, and on a shared 2-core machine two threads
    wait on each other's barrier (measured: 0.05 s against 6 s per forward+backward with a busy core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the ablation grid: forward, backward, sharing -------------------------------------------------------


@pytest.mark.parametrize("row", GRID, ids=_grid_id)
def test_grid_forward_backward(row: tuple[int | str, str, bool, str]) -> None:
    segments, activation, residual, order = row
    torch.manual_seed(0)
    model = create_model(
        "xception_mini", segments=segments, activation=activation, residual=residual, order=order, **MINI
    )
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([3, 7])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("order", ORDERS)
def test_mid_norm_forward_backward(order: str) -> None:
    model = create_model("xception_mini", segments=4, activation="relu", mid_norm=True, order=order, **MINI)
    F.cross_entropy(model(torch.randn(2, 1, 28, 28)), torch.tensor([0, 1])).backward()
    mid_norms = [n for n, _ in model.named_parameters() if ".mid_norm." in n]
    assert mid_norms
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("row", GRID[:4], ids=_grid_id)
def test_no_shared_parameters_and_distinct_middle_blocks(row: tuple[int | str, str, bool, str]) -> None:
    segments, activation, residual, order = row
    model = create_model(
        "xception_mini", segments=segments, activation=activation, residual=residual, order=order, **MINI
    )
    ids = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    assert len(ids) == len(set(ids))
    assert len(model.middle) == model.arch.middle_blocks == 4
    assert len({id(block) for block in model.middle}) == len(model.middle)
    first, second = model.middle[0], model.middle[1]
    assert first.sep1.dw.weight is not second.sep1.dw.weight
    assert count_params(model) == sum(p.numel() for p in model.parameters())


# --- exact counts of the ablated op ------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("segments", [*SEGMENTS, 8])
def test_spatial_conv_parameter_count(segments: int | str, order: str) -> None:
    model = _meta("xception_mini", segments=segments, order=order, **MINI)
    widths = model.arch.spatial_widths(order)
    spatial = _spatial_convs(model)
    assert [m.in_channels for m in spatial.values()] == widths
    expected = sum(c * (1 if segments == "depthwise" else c // segments) * 9 for c in widths)
    assert sum(m.weight.numel() for m in spatial.values()) == expected
    for conv in spatial.values():
        assert conv.kernel_size == (3, 3) and conv.bias is None
        assert conv.groups == (conv.in_channels if segments == "depthwise" else segments)


def test_segments_one_is_a_regular_conv_and_count_falls_along_the_spectrum() -> None:
    regular = _spatial_convs(_meta("xception_mini", segments=1, **MINI))
    assert all(conv.groups == 1 and conv.weight.shape[1] == conv.in_channels for conv in regular.values())
    counts = [count_params(_meta("xception_mini", segments=s, **MINI)) for s in (1, 2, 4, 8, 16, "depthwise")]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)


@pytest.mark.parametrize(("segments", "reached"), [(1, 8), (4, 2), ("depthwise", 1)])
def test_segments_decide_how_far_one_input_channel_reaches(segments: int | str, reached: int) -> None:
    """A regular conv mixes every input channel into every output; s segments keep each channel inside
    its segment of 8 / s channels; depthwise keeps it in its own channel."""
    torch.manual_seed(0)
    conv = SeparableConv2d(8, 8, segments=segments).dw
    x = torch.randn(1, 8, 5, 5)
    nudged = x.clone()
    nudged[0, 0] += 1.0
    with torch.no_grad():
        changed = (conv(nudged) - conv(x)).abs().sum(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [True] * reached + [False] * (8 - reached)


# --- structure of the axes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xception_mini", "xception"])
def test_residual_false_removes_every_skip(name: str) -> None:
    model = _meta(name, residual=False)
    assert all(block.skip is None for block in _blocks(model))
    assert not [n for n, _ in model.named_modules() if "skip" in n]


@pytest.mark.parametrize("name", ["xception_mini", "xception"])
def test_residual_true_skips(name: str) -> None:
    model = _meta(name)
    for flow in (model.entry, model.exit):
        for block in flow:
            if hasattr(block, "pool"):
                conv = block.skip.conv
                assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
                assert isinstance(block.skip.bn, nn.BatchNorm2d)
    assert all(isinstance(block.skip, nn.Identity) for block in model.middle)
    # Paper: residual connections around every module except the first (stem) and the last.
    assert model.exit[-1].skip is None
    assert sum(block.skip is not None for block in _blocks(model)) == len(_blocks(model)) - 1


@pytest.mark.parametrize("residual", [True, False])
def test_identity_skip_adds_the_untouched_input(residual: bool) -> None:
    """With the main branch silenced, a middle block returns its input (residual) or zeros (no residual);
    an in-place op on the input would break the first case."""
    model = create_model("xception_mini", residual=residual, **MINI).eval()
    block = model.middle[0]
    with torch.no_grad():
        block.bn3.weight.zero_()
        block.bn3.bias.zero_()
        x = torch.randn(2, 128, 4, 4)
        out = block(x.clone())
    torch.testing.assert_close(out, x if residual else torch.zeros_like(x))


@pytest.mark.parametrize("mid_norm", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_and_mid_norm_between_the_steps(activation: str, mid_norm: bool) -> None:
    model = _meta("xception_mini", activation=activation, mid_norm=mid_norm, **MINI)
    seps = [m for m in model.modules() if isinstance(m, SeparableConv2d)]
    acts = {n: m for n, m in model.named_modules() if n.endswith(".mid_act")}
    assert len(seps) == len(acts) == len(model.arch.spatial_widths())
    assert all(type(m) is ACT_TYPES[activation] for m in acts.values())
    for sep in seps:
        if mid_norm:
            assert isinstance(sep.mid_norm, nn.BatchNorm2d) and sep.mid_norm.num_features == sep.dw.in_channels
        else:
            assert sep.mid_norm is None
    assert len({id(m) for m in acts.values()}) == len(acts)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_no_inplace_module_anywhere(activation: str) -> None:
    for name in ("xception_mini", "xception"):
        model = _meta(name, activation=activation, mid_norm=True)
        assert not [n for n, m in model.named_modules() if getattr(m, "inplace", False)]


# --- the paper model ------------------------------------------------------------------------------------


def test_paper_model_counts_and_cost() -> None:
    model = _meta("xception")
    assert count_params(model) == PAPER_PARAMS
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert stats == PAPER_BN_STATS
    assert profile(model, (3, 299, 299)).macs == pytest.approx(PAPER_MACS, rel=0.005)
    # 36 conv layers: 2 in the stem, 34 separable; 14 modules counting the stem.
    assert len(_spatial_convs(model)) == 34
    assert len([n for n in model.stem.named_children() if n[0].startswith("conv")]) == 2
    assert len(_blocks(model)) == 13
    assert model.num_features == 2048


def test_valid_segments() -> None:
    assert _meta("xception").arch.valid_segments() == [1, 2, 4, 8]
    assert _meta("xception_mini", **MINI).arch.valid_segments() == [1, 2, 4, 8, 16]


def test_paper_model_real_forward_small_input() -> None:
    model = create_model("xception", segments=4).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 71, 71))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_global_pool_gives_the_bits_of_adaptive_avg_pool_on_cpu() -> None:
    """The head pools with a mean (deterministic on CUDA); on the CPU it must reproduce the studies run
    with `nn.AdaptiveAvgPool2d(1)` bit for bit, forward and backward."""
    model = create_model("xception_mini", num_classes=10, in_chans=1)
    for fmt in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(8, model.num_features, 4, 4).contiguous(memory_format=fmt).requires_grad_()
        grad = torch.randn(8, model.num_features)
        ours = model.global_pool(x)
        reference = torch.flatten(nn.AdaptiveAvgPool2d(1)(x), 1)
        assert torch.equal(ours, reference)
        assert torch.equal(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(reference, x, grad)[0])


# --- width and depth overrides --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xception_mini", "xception"])
def test_width_override_scales_every_layer(name: str) -> None:
    base, half = _meta(name), _meta(name, width=0.5)
    assert _widths(half) == [_rounded(c, 0.5) for c in _widths(base)]
    assert half.num_features == base.num_features // 2
    assert count_params(half) < count_params(base) / 2.5


@pytest.mark.parametrize("name", ["xception_mini", "xception"])
def test_middle_blocks_override(name: str) -> None:
    base, two = _meta(name), _meta(name, middle_blocks=2)
    assert len(two.middle) == two.arch.middle_blocks == 2
    removed = len(base.middle) - 2
    assert count_params(base) - count_params(two) == removed * count_params(base.middle[0])


def test_mini_without_middle_flow_runs() -> None:
    model = create_model("xception_mini", middle_blocks=0, width=0.5, **MINI)
    assert len(model.middle) == 0
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# --- the parameter budget -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "segments", "options"),
    [
        *[("xception_mini", s, {}) for s in (1, 4, 8, 16)],
        ("xception_mini", 2, {"order": "pointwise_first", "activation": "relu", "residual": False}),
        ("xception", 1, {}),
        ("xception", 4, {}),
    ],
)
def test_budget_params_matches_depthwise(name: str, segments: int, options: dict[str, object]) -> None:
    kwargs = {**(MINI if name == "xception_mini" else {}), **options}
    target = count_params(_meta(name, **kwargs))
    model = _meta(name, segments=segments, budget="params", **kwargs)
    assert count_params(model) == pytest.approx(target, rel=0.05)
    spatial = _spatial_convs(model)
    assert spatial and all(m.in_channels % segments == 0 and m.groups == segments for m in spatial.values())
    assert count_params(model) != count_params(_meta(name, segments=segments, **kwargs))


# --- the model API -------------------------------------------------------------------------------------


def test_forward_is_head_of_features() -> None:
    torch.manual_seed(0)
    model = create_model("xception_mini", segments=2, drop_rate=0.5, **MINI).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model(x), model.forward_head(features))
    assert features.shape[1] == model.num_features == model.fc.in_features == 512
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)


def test_dropout_is_applied_in_training() -> None:
    model = create_model("xception_mini", drop_rate=0.5, **MINI)
    features = torch.ones(4, model.num_features, 2, 2)
    pre = model.train().forward_head(features, pre_logits=True)
    assert 0.3 < (pre == 0).float().mean().item() < 0.7
    assert (model.eval().forward_head(features, pre_logits=True) != 0).all()


def test_every_listed_model_builds_and_an_unknown_name_lists_them() -> None:
    """`list_models` is what `create_model` accepts: each name builds its own architecture, and any other
    name fails in one line that lists them."""
    names = list_models()
    assert set(names) == set(ARCHS)
    for name in names:
        model = _meta(name, **MINI)
        assert isinstance(model, Xception) and model.arch == ARCHS[name]
    with pytest.raises(ConfigError, match=r"^model='resnet50' is not known; allowed: ") as info:
        create_model("resnet50")
    assert str(info.value).endswith(", ".join(names))


def test_builders_set_no_device() -> None:
    model = create_model("xception_mini", **MINI)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(b.device.type == "cpu" for b in model.buffers())
    meta = _meta("xception_mini", **MINI)
    assert all(p.is_meta for p in meta.parameters())


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    [
        ("xception_mini", {"segments": 3}, ["segments=3", "1, 2, 4, 8, 16, depthwise"]),
        ("xception", {"segments": 16}, ["segments=16", "1, 2, 4, 8, depthwise"]),
        ("xception_mini", {"segments": 0}, ["segments=0", "depthwise"]),
        ("xception_mini", {"segments": -1}, ["segments=-1", "depthwise"]),
        ("xception_mini", {"segments": "four"}, ["segments='four'", "depthwise"]),
        ("xception_mini", {"segments": 1.5}, ["segments=1.5", "depthwise"]),
        ("xception_mini", {"segments": True}, ["segments=True", "depthwise"]),
        ("xception_mini", {"activation": "tanh"}, ["tanh", "none, relu, elu, gelu, silu"]),
        ("xception_mini", {"residual": "maybe"}, ["maybe", "true, false"]),
        ("resnet", {}, ["resnet", "xception, xception_mini"]),
        ("xception_mini", {"order": "sideways"}, ["sideways", "depthwise_first, pointwise_first"]),
        ("xception_mini", {"budget": "flops"}, ["flops", "none, params"]),
    ],
    ids=lambda v: None if isinstance(v, list) else str(v),
)
def test_bad_values_fail_in_one_line(name: str, kwargs: dict[str, object], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info, torch.device("meta"):
        create_model(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_every_activation_name_has_a_layer_type() -> None:
    assert tuple(ACT_LAYERS) == ACTIVATIONS


def test_module_runs_its_main_path_in_spec_order() -> None:
    module = XceptionModule(
        16, ModuleSpec((32, 32), pool=True), residual=False, sep_kwargs={}, norm_layer=nn.BatchNorm2d
    )
    assert module.main_path == ("act1", "sep1", "bn1", "act2", "sep2", "bn2", "pool")
    module.eval()
    x = torch.randn(2, 16, 8, 8)
    expected = x
    for name in ("act1", "sep1", "bn1", "act2", "sep2", "bn2", "pool"):
        expected = getattr(module, name)(expected)
    with torch.no_grad():
        assert torch.equal(module(x), expected)
