"""Every chart's ticks: whole epochs, and percent labels that fit the data and never repeat."""
from __future__ import annotations

import math

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
