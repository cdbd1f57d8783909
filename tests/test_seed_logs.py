"""A seed's logged curve: the README's own figures, drawn beside runs of that seed's network only, by epoch."""
import re
from dataclasses import replace
from pathlib import Path

import pytest

from playground.results.plots import compare_figure, live_figure, seed_log
from playground.specs.config import RunSpec
from playground.specs.presets import preset_net
from playground.specs.seed_logs import SEED_LOGS, log_for
from tests.test_app import app_env, open_page, shown  # noqa: F401  (app_env is a fixture)
from tests.test_compare import record

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
LOG = SEED_LOGS["seed-003"]


def run_of(net, epochs=3):
    spec = RunSpec(net).to_dict()
    return record("r1", net.name, spec, [dict(epoch=e, test_acc=0.5, train_acc=0.4, elapsed=60 * e)
                                         for e in range(1, epochs + 1)])


def test_the_log_holds_the_seed_readme_figures_epoch_by_epoch():
    readme = next(SEEDS.glob("003_*.txt"), None) if SEEDS.is_dir() else None
    if readme is None:
        pytest.skip(f"no seed READMEs at {SEEDS} (a user's clone has none)")
    text = readme.read_text()
    train = [float(a) / 100 for a in re.findall(r"Train: Loss = [\d.]+, Accuracy = ([\d.]+)%", text)]
    test = [float(a) / 100 for a in re.findall(r"Test : Loss = [\d.]+, Accuracy = ([\d.]+)%", text)]
    assert list(LOG.train_acc) == pytest.approx(train) and list(LOG.test_acc) == pytest.approx(test)
    assert len(LOG.epochs) == 30 and LOG.epochs[0] == 1


def test_only_the_seeds_own_network_gets_its_log():
    net = preset_net("seed-003")
    assert log_for(net.to_dict()) is LOG
    assert log_for(net.copy(name="my seed-003").to_dict()) is LOG  # a name is not a network
    wider = net.copy()
    wider.blocks[1].layers[0] = replace(wider.blocks[1].layers[0], out=48)
    assert log_for(wider.to_dict()) is None
    for other in ("seed-000", "seed-004", "fast", "record"):
        assert log_for(preset_net(other).to_dict()) is None, other
    for damaged in (None, [], "seed-003", {}, {"blocks": "x"}, {"blocks": [[]], "head": 3}):
        assert log_for(damaged) is None


def test_runs_of_the_seed_are_drawn_beside_its_log_by_epoch_only():
    seed, other = run_of(preset_net("seed-003")), run_of(preset_net("fast"))
    assert seed_log(seed) is LOG and seed_log(other) is None
    fig = compare_figure([seed, run_of(preset_net("seed-003")), other])
    logged = [t for t in fig.data if t.legendgroup == "seed-log"]
    assert len(logged) == 2  # once for both seed runs
    assert list(logged[0].y) == list(LOG.test_acc) and list(logged[1].y) == list(LOG.train_acc)
    assert list(logged[0].x) == LOG.epochs and logged[1].line.dash == "dot"
    assert fig.layout.yaxis.range[1] >= max(LOG.test_acc) and 30 in fig.layout.xaxis.tickvals
    assert not [t for t in compare_figure([other]).data if t.legendgroup == "seed-log"]
    assert not [t for t in compare_figure([seed], minutes=True).data if t.legendgroup == "seed-log"]


def test_the_train_chart_draws_the_log_on_its_accuracy_axis_over_all_its_epochs():
    epochs = [dict(epoch=1, train_loss=2.0, test_loss=1.9, train_acc=0.38, test_acc=0.445)]
    fig = live_figure(epochs, [], 352, 1, LOG)
    logged = [t for t in fig.data if t.legendgroup == "seed-log"]
    assert [t.yaxis for t in logged] == ["y2", "y2"] and list(logged[0].y) == list(LOG.test_acc)
    assert fig.layout.xaxis2.range[1] == 30.5 and max(fig.layout.xaxis2.tickvals) == 30
    assert fig.layout.yaxis2.range[1] >= max(LOG.test_acc)
    assert not [t for t in live_figure(epochs, [], 352, 1).data if t.legendgroup == "seed-log"]


def logged_traces(at, key: str) -> list[dict]:
    """The seed-log traces of the Plotly chart with ``key``, as the browser receives them."""
    import json

    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return [t for t in json.loads(chart.proto.spec)["data"] if t.get("legendgroup") == "seed-log"]


def test_the_runs_and_train_pages_draw_a_seed_runs_log_beside_it(app_env):
    from playground.runs.runner import execute
    from playground.specs.config import TrainSpec
    from playground.training.data import load_dataset
    from playground.ui import server

    store, data = server.store(), load_dataset(str(app_env))
    seed_id = execute(store, RunSpec(preset_net("seed-003"), train=TrainSpec(epochs=1, batch_size=4, device="cpu")),
                      data)[0]
    other_id = execute(store, RunSpec(preset_net("fast"), train=TrainSpec(epochs=1, batch_size=4, device="cpu")),
                       data)[0]
    runs = [r.id for r in server.launcher().runs()]
    both = {"selection": {"rows": [runs.index(seed_id), runs.index(other_id)], "columns": [], "cells": []}}
    at = open_page("runs", runs_table=both)
    assert [t["y"] for t in logged_traces(at, "overlay")] == [list(LOG.test_acc), list(LOG.train_acc)]
    assert any("Grey: seed-003's README log" in shown(c.value) for c in at.caption)
    fast_only = {"selection": {"rows": [runs.index(other_id)], "columns": [], "cells": []}}
    at = open_page("runs", runs_table=fast_only)
    assert not logged_traces(at, "overlay") and not any("Grey:" in shown(c.value) for c in at.caption)
    at = open_page("train", watch=seed_id)
    assert len(logged_traces(at, "live_chart")) == 2
    assert any("trains seed-003's own network" in shown(c.value) for c in at.caption)
    assert not logged_traces(open_page("train", watch=other_id), "live_chart")
