"""The Inside view's pictures are right, not only drawn: the box is where the gradient reaches, the effective RF
sits in it, the activations are the layers' outputs and the taps span the kernel's effective size."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from torch import nn

from playground.results import inside
from playground.specs.arch import Block, Layer, Net
from playground.specs.geometry import trace
from playground.specs.limits import TIERS
from playground.specs.presets import PRESETS, preset_net
from tests.test_receptive_field import nets, positive_weights

PIXELS = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # mean and std that feed the raw pixel values in


def positive_subject(net: Net) -> inside.Subject:
    s = inside.from_net(net, *PIXELS, [str(i) for i in range(10)])
    s.model = positive_weights(s.model)
    return s


def bright_image(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (size, size, 3), dtype=np.uint8)


def bbox(mask: np.ndarray) -> inside.Box:
    ys, xs = np.nonzero(mask)
    return inside.Box(int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max()))


def solid_field(net: Net, index: int) -> bool:
    """Whether a unit's field away from every border has no holes (the same pattern at any position)."""
    size = int(2 * trace(net).rows[index].r + 32)
    big = Net.parse({**net.to_dict(), "input_size": size})
    t = trace(big, TIERS["raised"])
    u = (t.rows[index].n - 1) // 2
    mask = inside.reach(big, index, u, u, t)
    b = bbox(mask)
    return bool(mask[b.top:b.bottom + 1, b.left:b.right + 1].all())


@settings(max_examples=60, deadline=None)
@given(nets(), st.data())
def test_the_box_is_where_the_gradient_reaches_at_any_position(net, data):
    t = trace(net)
    assume(t.ok)
    index = data.draw(st.integers(0, len(t.rows) - 1))
    row = t.rows[index]
    r, c = data.draw(st.integers(0, row.n - 1)), data.draw(st.integers(0, row.n - 1))
    subject = positive_subject(net)
    support = inside.effective_rf(subject, bright_image(), index, r, c) > 0
    exact = inside.reach(net, index, r, c)
    assert np.array_equal(support, exact)
    box = inside.theoretical_box(row, r, c)
    assert box.side == row.r
    clipped, found = box.clipped(32), bbox(support)
    assert clipped.top <= found.top and found.bottom <= clipped.bottom
    assert clipped.left <= found.left and found.right <= clipped.right
    if clipped == box and solid_field(net, index):  # a box inside the image, with no holes: its every pixel
        assert found == clipped  # (at the border, a pixel may be reachable only through a padded map: not at all)


def test_a_border_unit_of_a_dilated_first_layer_reaches_fewer_pixels_than_its_box():
    net = Net(blocks=[Block([Layer(out=4, dilation=2, padding=2)])])
    row = trace(net).rows[0]
    mask = inside.reach(net, 0, 1, 1)
    assert inside.theoretical_box(row, 1, 1).clipped(32) == inside.Box(0, 0, 3, 3)
    assert bbox(mask) == inside.Box(1, 1, 3, 3) and mask.sum() == 4  # the taps at 1 and 3, the hole at 2


def test_a_border_pixel_reached_only_through_a_padded_map_is_not_reached():
    """Hypothesis found it: a 2x2 max-pool, then a 2x2 conv with dilation 2 and padding 1. The conv's unit 0 reads
    pool outputs -1 (padding) and 1; only the padding one would have read input pixel 0."""
    net = Net(blocks=[Block([Layer(kind="maxpool", kernel=2, stride=1, padding=0)]),
                      Block([Layer(out=4, kernel=2, dilation=2, padding=1)])])
    row = trace(net).rows[1]
    mask = inside.reach(net, 1, 0, 0)
    assert inside.theoretical_box(row, 0, 0).clipped(32) == inside.Box(0, 0, 2, 2)
    assert bbox(mask) == inside.Box(1, 1, 2, 2)
    support = inside.effective_rf(positive_subject(net), bright_image(), 1, 0, 0) > 0
    assert np.array_equal(support, mask)


def uniform(model: nn.Module) -> nn.Module:
    model = positive_weights(model)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.fill_(1.0)
    return model


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 3, 5]), st.sampled_from([1, 2]), st.sampled_from([1, 2])),
                min_size=1, max_size=5))
def test_the_effective_rf_of_uniform_weights_peaks_at_the_centre_and_stays_in_the_box(spec):
    layers = [Layer(out=4, kernel=k, stride=s, dilation=d if k > 1 else 1, padding=(d if k > 1 else 1) * (k - 1) // 2)
              for k, s, d in spec]
    net = Net(blocks=[Block(layers)])
    t = trace(net)
    assume(t.ok and t.rf < 32)
    row = t.rows[-1]
    u = (row.n - 1) // 2
    box = inside.theoretical_box(row, u, u)
    assume(box.clipped(32) == box)
    subject = inside.from_net(net, *PIXELS, list("abcdefghij"))
    subject.model = uniform(subject.model)
    grad = inside.effective_rf(subject, np.full((32, 32, 3), 7, np.uint8), len(t.rows) - 1, u, u)
    cy, cx = inside.centre(row, u, u)
    if all(s == d == 1 for _, s, d in spec):  # dilated or strided kernels overlap unevenly: a grid, peaks off-centre
        assert grad[int(cy), int(cx)] == grad.max() > 0
    assert inside.spread(grad, row, u, u).inside == pytest.approx(1.0)
    outside = grad.copy()
    outside[box.top:box.bottom + 1, box.left:box.right + 1] = 0
    assert not outside.any()


@settings(max_examples=40, deadline=None)
@given(nets())
def test_each_layer_map_is_what_the_next_layer_receives(net):
    assume(trace(net).ok)
    subject = inside.from_net(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), list("abcdefghij"))
    model = subject.model
    modules = [model.get_submodule(r.name) for r in subject.trace.rows] + [model.head]
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
             for m in modules[1:]]
    image = bright_image(seed=3)
    try:
        with torch.no_grad():
            logits = model(inside._input(subject, image))
    finally:
        for h in hooks:
            h.remove()
    acts = inside.activations(subject, image)
    assert len(acts.layers) == len(seen)
    for layer, want in zip(acts.layers, seen):
        np.testing.assert_allclose(layer.maps, want[0].numpy(), rtol=1e-5, atol=1e-5)
        assert layer.maps.shape == (layer.row.c_out, layer.row.n, layer.row.n)
    np.testing.assert_allclose(acts.probs, logits.softmax(1)[0].numpy(), rtol=1e-5, atol=1e-6)
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def test_the_activations_leave_the_subjects_model_without_hooks():
    subject = inside.from_net(preset_net("seed-002"), (0.5,) * 3, (0.25,) * 3, list("abcdefghij"))
    inside.activations(subject, bright_image())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in subject.model.modules())
    assert all(p.grad is None for p in subject.model.parameters())


@given(st.sampled_from([1, 2, 3, 5]), st.sampled_from([1, 2, 3, 4]), st.sampled_from([1, 2]), st.data())
def test_the_taps_span_the_kernels_effective_size(k, d, s, data):
    layer = Layer(out=4, kernel=k, dilation=d if k > 1 else 1, stride=s, padding=(d * (k - 1)) // 2 if k > 1 else 0)
    net = Net(blocks=[Block([Layer(out=4), layer])])
    t = trace(net)
    assume(t.ok)
    row = t.rows[1]
    r = data.draw(st.integers(0, row.n - 1))
    found = inside.taps(row, r, r)
    assert found.reach == row.k_eff == layer.k_eff
    assert len(set(found.points)) == k * k


def test_a_separable_layer_is_two_steps_whose_parameters_add_up():
    for preset in PRESETS.values():
        net = preset.net
        for row in trace(net).rows:
            layer = net.blocks[row.block].layers[row.index]
            if row.kind == "sep":
                steps = inside.stages(layer, row)
                assert [s["step"] for s in steps] == ["depthwise", "pointwise"]
                assert sum(s["params"] for s in steps) == row.params
                assert steps[0]["params"] >= row.c_in * layer.kernel ** 2


def test_a_bad_layer_or_position_names_the_valid_range():
    subject = inside.from_net(preset_net("seed-000"), (0.5,) * 3, (0.25,) * 3, list("abcdefghij"))
    try:
        subject.layer_index("C9.9")
    except inside.InsideError as e:
        assert "C1.1" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("C9.9 was accepted")
    last = subject.layer_index(None)
    n = subject.trace.rows[last].n
    try:
        subject.check_position(last, n, 0)
    except inside.InsideError as e:
        assert f"0 to {n - 1}" in str(e)
    else:
        raise AssertionError("a row past the map was accepted")
    assert subject.layer_index("c1.1") == 0
