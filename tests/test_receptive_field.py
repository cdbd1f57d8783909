"""The analytic RF (geometry.trace) must equal the RF measured from input gradients."""
import torch
from hypothesis import assume, given, settings, strategies as st
from torch import nn

from playground.specs.arch import Block, Layer, Net
from playground.specs.geometry import trace
from playground.specs.limits import TIERS
from playground.training.builder import build_model


@st.composite
def layers(draw) -> Layer:
    kind = draw(st.sampled_from(["conv", "sep", "grouped", "maxpool", "avgpool"]))
    kernel = draw(st.sampled_from([1, 2, 3, 5]))
    dilation = 1 if kind.endswith("pool") else draw(st.sampled_from([1, 1, 2, 3]))
    k_eff = dilation * (kernel - 1) + 1
    padding = draw(st.integers(0, k_eff // 2))
    groups = draw(st.sampled_from([2, 4])) if kind == "grouped" else 1
    return Layer(kind=kind, out=draw(st.sampled_from([4, 8])), kernel=kernel, stride=draw(st.sampled_from([1, 1, 2])),
                 padding=padding, dilation=dilation, groups=groups,
                 order=draw(st.sampled_from(["bn-relu", "relu-bn", "pool-bn-relu"])),
                 mid=draw(st.booleans()))


@st.composite
def nets(draw) -> Net:
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        ls = draw(st.lists(layers(), min_size=1, max_size=3))
        skip = draw(st.booleans())
        blocks.append(Block(ls, skip=skip, skip_from=draw(st.integers(0, len(ls) - 1)) if skip else 0,
                            skip_every=draw(st.integers(0, 2))))
    return Net(blocks=blocks)


def positive_weights(model: nn.Module) -> nn.Module:
    """No path may cancel: positive weights, BN as a positive affine map, max-pool -> avg-pool."""
    model = model.double().eval()
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(mod, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.copy_(torch.rand_like(mod.weight) + 0.5)
                if mod.bias is not None:
                    mod.bias.fill_(0.1)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.bias.fill_(0.1)
    return model


def measured_box(model: nn.Module, size: int, u: int) -> tuple[int, int]:
    x = torch.rand(1, 3, size, size, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    feats = model.features(x)
    feats[0, :, u, u].sum().backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1) > 0).flatten()
    return int(rows.min()), int(rows.max())


@settings(max_examples=80, deadline=None)
@given(nets())
def test_analytic_rf_matches_gradient_rf(net):
    t = trace(net)
    assume(t.ok and t.rf <= 120)
    # Measure on an input large enough that the centre unit's field never touches the border or padding.
    size = int(2 * t.rf + 32)
    big = Net.parse({**net.to_dict(), "input_size": size})
    tb = trace(big, TIERS["raised"])  # inputs this large are past the default limit
    assume(tb.ok)
    u = (tb.out_size - 1) // 2
    centre = tb.start + u * tb.jump
    lo, hi = int(round(centre - (tb.rf - 1) / 2)), int(round(centre + (tb.rf - 1) / 2))
    assume(0 <= lo and hi < size)
    model = positive_weights(build_model(net))
    assert measured_box(model, size, u) == (lo, hi)
    assert hi - lo + 1 == t.rf
    assert sum(p.numel() for p in build_model(net).parameters()) == t.params


def test_unclipped_rf_on_a_known_stack():
    # 3x3, then 3x3 dilation 2, then stride-2 3x3: RF 1 + 2 + 4 + 2 = 9, fully inside the image.
    net = Net(blocks=[Block([Layer(out=4), Layer(out=4, dilation=2, padding=2), Layer(out=4, stride=2)])])
    t = trace(net)
    assert (t.rf, t.jump, t.out_size) == (9, 2, 16)
    model = positive_weights(build_model(net))
    lo, hi = measured_box(model, 32, 7)
    assert hi - lo + 1 == 9


@given(st.integers(1, 9), st.integers(1, 6), st.integers(0, 40), st.integers(1, 40), st.integers(1, 40))
def test_the_padding_only_check_finds_what_looking_at_every_tap_finds(k, s, p, d, n_in):
    from playground.specs.geometry import padding_only_output

    k_eff = d * (k - 1) + 1
    if n_in + 2 * p < k_eff:
        return
    n_out = (n_in + 2 * p - k_eff) // s + 1
    every_tap = next((o for o in range(n_out)
                      if not any(0 <= o * s - p + t * d < n_in for t in range(k))), None)
    assert padding_only_output(k, s, p, d, n_in, n_out) == every_tap
