"""AppTest of the Train page's LR range test: a stored test is drawn with its suggestion, and "Use this max LR"
writes it into the form."""
import pytest

from playground.cli_lr_find import run_test
from playground.runs import lr_tests
from playground.training.data import load_dataset
from playground.ui import server
from tests.test_app import app_env, open_page, shown  # noqa: F401  (app_env is a fixture)
from tests.test_training import tiny_run


def test_a_stored_range_test_is_drawn_and_its_suggestion_fills_the_form(app_env):
    run = tiny_run(batch_size=16)
    store = server.store()
    test = lr_tests.create(store, run, str(app_env), 1e-4, 1.0, 15, owner="")
    test = run_test(store, test, load_dataset(str(app_env)))
    at = open_page("train", lr_test=test.id)
    assert not at.exception
    assert any("LR range test" in shown(m.value) and test.id in shown(m.value) for m in at.markdown)
    assert any("Suggested max LR for OneCycle" in shown(c.value) for c in at.caption)
    at.button(key="lr_use").click().run()
    assert not at.exception
    assert at.number_input(key="t_lr").value == pytest.approx(test.result.suggested_max_lr)


def test_two_ticked_runs_show_only_the_settings_they_differ_in(app_env):
    from playground.runs.runner import execute
    from playground.specs.config import RunSpec, TrainSpec

    data = load_dataset(str(app_env))
    store = server.store()
    for lr in (0.05, 0.1):
        execute(store, RunSpec(tiny_run().net, train=TrainSpec(epochs=1, batch_size=32, max_lr=lr, device="cpu")), data)
    at = open_page("runs", runs_table={"selection": {"rows": [0, 1], "columns": [], "cells": []}})
    assert not at.exception
    assert any("How the 2 ticked runs differ" in shown(m.value) for m in at.markdown)
    diff = at.dataframe[1].value
    assert list(diff["setting"]) == ["train.max_lr"] and sorted(diff.iloc[0, 1:]) == ["0.05", "0.1"]
    one = open_page("runs", runs_table={"selection": {"rows": [0], "columns": [], "cells": []}})
    assert any("Tick a second run" in shown(c.value) for c in one.caption)


def test_the_runs_page_lists_range_tests_apart_from_trainings(app_env):
    from playground.runs.runner import execute

    store, data = server.store(), load_dataset(str(app_env))
    test = run_test(store, lr_tests.create(store, tiny_run(batch_size=16), str(app_env), 1e-4, 1.0, 12), data)
    run_id = execute(store, tiny_run(), data)[0]
    at = open_page("runs")
    assert not at.exception
    assert list(at.dataframe[0].value["id"]) == [run_id]  # the trainings' table holds no range test
    tests_table = at.dataframe[1].value
    assert list(tests_table["id"]) == [test.id] and tests_table["batches"][0] == len(test.result.lrs)
    suggested = test.result.suggested_max_lr
    assert tests_table["suggested max LR"][0] == ("–" if suggested is None else f"{suggested:.3g}")  # never "None"
