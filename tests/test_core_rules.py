"""Rules that the pages show and the core decides: a layer edited as the Architect edits it, and a run's
epoch and time left as the Train page shows them."""
from __future__ import annotations

import dataclasses

import pytest

from playground.runs.records import RunRecord
from playground.specs.arch import conv, pool, sep
from playground.specs.edits import edited_layer


def edit(src, **changes):
    values = dict(kind=src.kind, out=src.out, kernel=src.kernel, stride=src.stride, dilation=src.dilation,
                  pools=src.pools)
    return edited_layer(src, **{**values, **changes})


def test_an_unchanged_layer_is_returned_as_it_was():
    src = conv(48, 5)
    assert edit(src) == src


def test_a_kernel_or_dilation_change_keeps_the_map_size():
    assert edit(conv(32), kernel=5).padding == 2
    assert edit(conv(32), dilation=3).padding == 3
    assert edit(conv(32), kernel=7, dilation=2).padding == 6


def test_a_conv_turned_pool_loses_padding_order_and_dilation():
    layer = edit(conv(32, dilation=2), kind="maxpool", kernel=2, stride=2)
    assert (layer.padding, layer.order, layer.dilation) == (0, "none", 1)


def test_a_pool_turned_conv_gains_a_width_and_bn_relu():
    layer = edit(pool(), kind="conv", kernel=3, stride=1)
    assert (layer.out, layer.order, layer.padding) == (32, "bn-relu", 1)


def test_a_conv_turned_grouped_gets_groups():
    assert edit(conv(32), kind="grouped").groups == 4
    assert edit(dataclasses.replace(conv(32), kind="grouped", groups=8), out=64).groups == 8


def test_the_pool_choice_sets_the_order_of_a_bn_relu_conv():
    assert edit(conv(32), pools=True).order == "pool-bn-relu"
    assert edit(dataclasses.replace(conv(32), order="pool-bn-relu"), pools=False).order == "bn-relu"
    assert edit(sep(32), pools=True).order == "pool-bn-relu"


def record(**fields) -> RunRecord:
    base = dict(id="20261207-000000-abcdef", name="r", status="running", created=0.0, updated=0.0,
                spec={"train": {"epochs": 4, "batch_size": 50}}, params=1, best_acc=None, elapsed=None, device=None,
                message="", checkpoint_sha=None, owner="", pid=None, pid_start=None, host=None, heartbeat=None,
                step=0, steps=40, img_per_s=None, stop_requested=None, state_sha=None, started=None, phase="",
                epochs=[])
    return RunRecord(**{**base, **fields})


def test_a_running_run_is_in_the_epoch_after_its_finished_steps():
    assert record(step=0).current_epoch == 1
    assert record(step=10).current_epoch == 2
    assert record(step=40).current_epoch == 4  # the last step: never epoch 5 of 4
    assert record(step=20, status="stopped").current_epoch == 2


def test_a_test_pass_belongs_to_the_epoch_it_tests():
    """epoch 2/2 with step 16/32 was shown while the worker tested epoch 1."""
    assert record(step=10, phase="testing").current_epoch == 1
    assert record(step=10, phase="training").current_epoch == 2


def test_the_time_left_counts_the_remaining_images_at_the_current_speed():
    assert record(step=10, img_per_s=100.0).eta_s == 30 * 50 / 100
    assert record(step=10).eta_s is None  # no speed yet
    assert record(step=10, img_per_s=100.0, status="stopped").eta_s is None
    assert record(step=40, img_per_s=100.0).eta_s is None


def test_a_dilated_1x1_conv_does_not_pass_the_dilated_rule():
    """A 1x1 conv with dilation 2 changes nothing (the RF stays): the badge counts only dilations that widen."""
    from playground.specs.arch import Block, Net
    from playground.specs.geometry import trace
    from playground.training.analysis import check_rules

    def rule(net):
        return next(r for r in check_rules(net, trace(net)) if r.name == "dilated + depthwise")

    plain = [conv(16), sep(32), conv(32)]
    no_op = Net(name="n", blocks=[Block(plain[:2] + [conv(32, 1, dilation=2)])])
    widening = Net(name="w", blocks=[Block(plain[:2] + [conv(32, 3, dilation=2)])])
    assert trace(no_op).rf == trace(Net(name="p", blocks=[Block(plain[:2] + [conv(32, 1)])])).rf
    assert not rule(no_op).passed and "dilated: none" in rule(no_op).reason
    assert rule(widening).passed and "C1.3" in rule(widening).reason


def test_a_1x1_depthwise_stage_is_not_depthwise_separable():
    from playground.specs.arch import Block, Net
    from playground.specs.geometry import trace
    from playground.training.analysis import check_rules

    net = Net(name="n", blocks=[Block([conv(16), sep(32, 1), conv(32, 3, dilation=2)])])
    rule = next(r for r in check_rules(net, trace(net)) if r.name == "dilated + depthwise")
    assert not rule.passed and "depthwise-separable: none" in rule.reason


@pytest.mark.parametrize("src, kind", [
    (dataclasses.replace(conv(32), kind="grouped", groups=32), "sep"),
    (dataclasses.replace(conv(32), kind="grouped", groups=32), "maxpool"),
    (dataclasses.replace(sep(32), mid=True), "conv"),
    (conv(64, bias=True), "avgpool"),
])
def test_a_type_change_leaves_no_field_the_new_type_ignores(src, kind):
    from playground.specs.arch import Layer

    layer = edit(src, kind=kind, kernel=2 if kind.endswith("pool") else 3, stride=2 if kind.endswith("pool") else 1)
    default = Layer()
    if kind == "sep" or kind.endswith("pool"):
        assert layer.groups == 1
    if kind != "sep":
        assert layer.mid is False
    if kind.endswith("pool"):
        assert (layer.out, layer.bias) == (0, False)
    assert layer.kind == kind and default.kind == "conv"


def test_a_1x1_kernel_has_no_dilation():
    assert edit(conv(32, 3, dilation=2), kernel=1).dilation == 1
