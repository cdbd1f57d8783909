"""The LR range test on tiny data: it ends within its steps with a finite curve and a suggestion inside its range,
stops early on a diverging or NaN loss with the curve so far, changes no stored run, and is kept in the store
apart from trainings, its process's death read as an interrupted test."""
import json
import subprocess
import sys
import time

import pytest

from playground.cli import main
from playground.runs import lr_tests
from playground.runs.runner import execute
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from playground.training.lr_find import RangeTest, check_range, lr_at, range_test
from tests.test_training import tiny_run


def test_the_rates_rise_in_equal_ratios_from_start_to_end():
    rates = [lr_at(k, 1e-4, 1.0, 5) for k in range(5)]
    assert rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(1.0)
    assert all(b / a == pytest.approx(10.0) for a, b in zip(rates, rates[1:]))


def test_a_test_ends_within_its_steps_with_a_finite_curve_and_a_suggestion_in_its_range(image_folder):
    data = load_dataset(str(image_folder))
    result = range_test(data, tiny_run(batch_size=16), start=1e-4, end=1.0, steps=20)
    assert 5 <= len(result.lrs) <= 20 and len(result.lrs) == len(result.losses) == len(result.smoothed)
    assert all(v is not None and v == v for v in result.smoothed)
    assert result.ended and 1e-4 <= result.suggested_max_lr <= 1.0
    assert result.suggested_max_lr == pytest.approx(result.min_loss_lr / 10) or result.suggested_max_lr == 1e-4
    assert 1e-4 <= result.steepest_lr <= 1.0


def test_a_diverging_loss_ends_the_test_early_with_the_curve_so_far(image_folder):
    data = load_dataset(str(image_folder))
    result = range_test(data, tiny_run(batch_size=16, optimizer="sgd"), start=1e-3, end=1e6, steps=60)
    assert len(result.lrs) < 60
    assert "passed 4× its minimum" in result.ended or "the loss became" in result.ended
    assert RangeTest.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False))).lrs == result.lrs


def test_a_nan_loss_ends_the_test_with_a_reason(image_folder, monkeypatch):
    import playground.training.lr_find as lr_find

    calls = {"n": 0}
    real = lr_find.train_loss

    def nan_after_three(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] > 8 else loss

    monkeypatch.setattr(lr_find, "train_loss", nan_after_three)
    result = range_test(load_dataset(str(image_folder)), tiny_run(batch_size=16), steps=30)
    assert len(result.lrs) == 9 and result.losses[-1] is None and "the loss became nan" in result.ended
    assert result.suggested_max_lr is not None  # from the 8 finite points before it


def test_bad_ranges_name_the_flag_and_its_limit():
    assert check_range(1e-5, 10, 100, 300) == []
    for args, flag in (((0, 10, 100, 300), "start"), ((1, 0.5, 100, 300), "end"), ((1e-5, 10, 3, 300), "steps"),
                       ((1e-5, 10, 301, 300), "steps"), ((float("nan"), 10, 100, 300), "start")):
        (problem,) = [p for p in check_range(*args) if p.startswith(flag)]
        assert "\n" not in problem


def test_the_cli_keeps_the_test_apart_from_runs_and_changes_no_stored_run(image_folder, tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    data = load_dataset(str(image_folder))
    run_id = execute(store, tiny_run(), data)[0]
    before = store.checkpoint_path(run_id).read_bytes()
    rc = main(["lr-find", "--spec", str(spec_file(tmp_path)), "--batch-size", "16", "--steps", "15",
               "--data", str(image_folder), "--runs", str(store.root)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    line = json.loads(out)
    assert line["points"] <= 15 and line["suggested_max_lr"] > 0 and line["status"] == "finished"
    assert [r.id for r in store.list()] == [run_id] and store.checkpoint_path(run_id).read_bytes() == before
    (kept,) = lr_tests.tests(store)
    assert kept.id == line["id"] and kept.result.suggested_max_lr == line["suggested_max_lr"]


def test_a_bad_flag_is_one_line_and_writes_nothing(image_folder, tmp_path, capsys):
    rc = main(["lr-find", "--preset", "seed-000", "--steps", "2", "--data", str(image_folder),
               "--runs", str(tmp_path / "runs")])
    _, err = capsys.readouterr()
    assert rc == 2 and "steps" in err and err.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_a_test_run_by_its_own_process_is_followed_and_its_death_reads_as_interrupted(image_folder, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = tiny_run(batch_size=16)
    test = lr_tests.create(store, run.__class__(run.net, run.aug, run.train, str(image_folder)), str(image_folder),
                           1e-4, 1.0, 12)
    assert lr_tests.get(store, test.id).active
    proc = lr_tests.spawn(store, test)
    assert proc.wait(timeout=180) == 0
    done = lr_tests.get(store, test.id)
    assert done.status == lr_tests.FINISHED and 0 < len(done.result.lrs) <= 12 and done.result.suggested_max_lr
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    test2 = lr_tests.create(store, run, str(image_folder), 1e-4, 1.0, 12)
    test2.pid, test2.pid_start = dead.pid, time.time() - 5
    lr_tests.save(store, test2)
    assert lr_tests.get(store, test2.id).status == lr_tests.INTERRUPTED
    assert [t.id for t in lr_tests.tests(store)] == [test2.id, test.id] and store.list() == []


def spec_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(tiny_run().net.to_json())
    return path
