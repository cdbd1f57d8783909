"""Every chart's ticks: whole epochs, and percent labels that fit the data and never repeat."""
from __future__ import annotations

import math

import numpy as np

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playground.results.axes import epoch_ticks, percent_axis
from playground.results.plots import compare_figure, live_figure


@given(st.integers(1, 100_000))
def test_epoch_ticks_are_whole_increasing_and_few(last):
    ticks = epoch_ticks(last)
    assert all(isinstance(t, int) for t in ticks) and ticks == sorted(set(ticks))
    assert ticks[0] == 1 and ticks[-1] <= last and len(ticks) <= 11


@given(st.lists(st.one_of(st.floats(0, 1), st.none(), st.just(float("nan"))), max_size=50))
def test_percent_labels_are_distinct_and_within_what_an_accuracy_can_be(values):
    axis = percent_axis(values)
    lo, hi = axis["range"]
    assert 0 <= lo < hi <= 1
    assert len(axis["ticktext"]) == len(set(axis["ticktext"])) >= 2
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in axis["tickvals"])
    finite = [v for v in values if v is not None and math.isfinite(v)]
    assert all(lo <= v <= hi for v in finite)


def _epochs(accs):
    return [dict(epoch=i + 1, train_loss=1.0, test_loss=1.0, train_acc=a, test_acc=a, elapsed=60.0 * (i + 1))
            for i, a in enumerate(accs)]


@pytest.mark.parametrize("accs", [[0.14, 0.141, 0.139], [0.11, 0.111], [0.5], [0.2, 0.9]])
def test_the_train_chart_has_whole_epoch_ticks_and_distinct_percent_labels(accs):
    batches = [dict(step=s, loss=1.0, lr=0.1) for s in range(1, 3 * len(accs) + 1)]
    fig = live_figure(_epochs(accs), batches, steps_per_epoch=3)
    for axis in ("xaxis", "xaxis2", "xaxis3"):
        assert all(float(t).is_integer() for t in fig.layout[axis].tickvals)
    labels = fig.layout.yaxis2.ticktext
    assert len(labels) == len(set(labels)) and fig.layout.yaxis2.range[0] >= 0 and fig.layout.yaxis2.range[1] <= 1


def test_the_runs_chart_fits_two_runs_near_eleven_percent_and_has_a_legend():
    from tests.test_core_rules import record

    runs = [record(id=f"20261207-00000{i}-abcdef", name=f"run {i}", epochs=_epochs([0.11, 0.112])) for i in (1, 2)]
    fig = compare_figure(runs)
    assert fig.layout.yaxis.range[0] >= 0.05 and fig.layout.yaxis.range[1] <= 0.2
    assert len(set(fig.layout.yaxis.ticktext)) == len(fig.layout.yaxis.ticktext)
    assert fig.layout.xaxis.tickvals == (1, 2) and fig.layout.showlegend


@given(st.lists(st.floats(0, 5000), min_size=1, max_size=30))
def test_integer_axes_have_whole_distinct_ticks_past_the_data(values):
    from playground.results.axes import integer_axis

    axis = integer_axis(values)
    assert all(isinstance(t, int) for t in axis["tickvals"]) and axis["ticktext"] == [str(t) for t in axis["tickvals"]]
    assert len(set(axis["tickvals"])) == len(axis["tickvals"]) <= 10 and axis["range"][1] >= max(values)


@pytest.mark.parametrize("preset", ["seed-000", "seed-004", "fast"])
def test_the_rf_chart_labels_map_sizes_and_pixels_with_whole_numbers(preset):
    from playground.results.plots import rf_figure
    from playground.specs.presets import preset_net
    from playground.training.analysis import analyze

    fig = rf_figure(analyze(preset_net(preset), with_summary=False).table())
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):
        assert all(float(t).is_integer() for t in axis.tickvals), axis.tickvals


def test_the_per_class_bars_run_in_the_confusion_matrix_row_order():
    from playground.results.plots import confusion_figure, per_class_figure

    classes = ["airplane", "automobile", "bird"]
    bars, cm = per_class_figure(dict(zip(classes, [0.5, 0.6, 0.7]))), confusion_figure(
        np.eye(3, dtype=int), classes, "any", "any")
    # both draw the first class at the top: the same category order on an axis reversed the same way
    assert list(bars.data[0].y) == classes and list(cm.data[0].y) == classes
    assert bars.layout.yaxis.autorange == cm.layout.yaxis.autorange == "reversed"
    near_top = per_class_figure(dict(zip(classes, [0.93, 0.95, 0.97])))  # the last tick is above every bar
    assert near_top.layout.xaxis.ticktext[-1] == "100%" and max(near_top.layout.xaxis.tickvals) >= 0.97


def test_the_train_chart_says_when_the_first_test_comes_and_keeps_its_legend_above():
    fig = live_figure([], [dict(step=s, loss=2.0, lr=0.1) for s in (1, 2)], steps_per_epoch=10, eval_every=3)
    assert [a.text for a in fig.layout.annotations if "no test yet" in a.text] == [
        "no test yet: the first<br>comes after epoch 3"]
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y > 1
    tested = live_figure(_epochs([0.3]), [], steps_per_epoch=10)
    assert not [a for a in tested.layout.annotations if "no test yet" in a.text]
