"""One damaged row of the run store, and a damaged resume state (the review's row edits, reproduced).

The store is shared by every visitor of the hosted demo, so a row edited by hand, written by a bug
or damaged on disk must never take down the listing, reconciling or stopping of the other runs:
it is listed as a "damaged" run, and whatever needs the run itself (evaluate, export, curves,
resume) refuses it in one line naming the run and the field. A resume state whose hash matches but
whose contents cannot be resumed from is refused before the run's status changes, so the run stays
stopped and resumable.
"""
import hashlib
import io
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from playground.training.trainer import StopSignal
from playground.cli import main
from playground.runs import lifecycle
from playground.faults import DamagedRun
from playground.runs.jobs import JobError, Launcher
from playground.runs.runner import execute, resume_state
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from tests.test_app import APP
from tests.test_training import tiny_run


def metrics(epoch: int) -> dict:
    return dict(epoch=epoch, train_loss=1.5, train_acc=0.4, test_loss=1.6, test_acc=0.5, lr=0.01, img_per_s=100.0,
                epoch_time=1.0, elapsed=1.0 * epoch)


def finished_run(store: RunStore, name: str) -> str:
    run_id = store.create(name, tiny_run(epochs=1).to_dict(), params=1234)
    store.add_epoch(run_id, metrics(1))
    store.finish(run_id, "finished")
    return run_id


def edit(store: RunStore, sql: str, *args) -> None:
    """A row edited behind the store's back, as a person with the database file (or a bug) would."""
    with sqlite3.connect(store.db) as c:
        c.execute(sql, args)


# (SQL run on the victim's row, its last parameter the run id; the field the one line must name)
DAMAGE = {
    "spec not JSON": ("UPDATE runs SET spec = '{not json' WHERE id = ?", (), "spec"),
    "spec an array": ("UPDATE runs SET spec = '[]' WHERE id = ?", (), "spec"),
    "train null": ("UPDATE runs SET spec = json_set(spec, '$.train', json('null')) WHERE id = ?", (), "spec"),
    "epochs text": ("UPDATE runs SET spec = json_set(spec, '$.train.epochs', 'abc') WHERE id = ?", (), "spec"),
    "spec nested 100,000 deep": ("UPDATE runs SET spec = ? WHERE id = ?", ("[" * 100_000 + "]" * 100_000,), "spec"),
    "spec not UTF-8": ("UPDATE runs SET spec = CAST(? AS BLOB) WHERE id = ?", (b"\xff",), "spec"),
    "name text that is not UTF-8": ("UPDATE runs SET name = CAST(? AS TEXT) WHERE id = ?", (b"\xff\xfe",), "name"),
    "created text": ("UPDATE runs SET created = 'yesterday' WHERE id = ?", (), "created"),
    "created 1e300": ("UPDATE runs SET created = 1e300 WHERE id = ?", (), "created"),
    "best_acc text": ("UPDATE runs SET best_acc = 'high' WHERE id = ?", (), "best_acc"),
    "params text": ("UPDATE runs SET params = 'many' WHERE id = ?", (), "params"),
    "message a blob": ("UPDATE runs SET message = ? WHERE id = ?", (b"\xff\xfe",), "message"),
    "status unknown": ("UPDATE runs SET status = 'bogus' WHERE id = ?", (), "status"),
    "heartbeat text on a running row": ("UPDATE runs SET status = 'running', pid = 1, pid_start = 0, "
                                        "host = 'elsewhere', heartbeat = 'x' WHERE id = ?", (), "heartbeat"),
    "metrics not JSON": ("UPDATE epochs SET metrics = '{bad' WHERE run_id = ?", (), "metrics"),
    "metrics an array": ("UPDATE epochs SET metrics = '[1]' WHERE run_id = ?", (), "metrics"),
}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_naming(err: str, run_id: str, field: str) -> bool:
    return (len(err.strip().splitlines()) == 1 and f"run {run_id}" in err and f"the store's {field}" in err
            and "internal error" not in err)


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_row_is_listed_as_damaged_and_refused_in_one_line_naming_the_run_and_field(
        tmp_path, capsys, image_folder, how):
    store = RunStore(tmp_path / "runs")
    healthy, victim = finished_run(store, "healthy"), finished_run(store, "victim")
    sql, args, field = DAMAGE[how]
    edit(store, sql, *args, victim)

    listed = {r.id: r for r in store.list()}
    assert listed[healthy].status == "finished" and len(listed[healthy].epochs) == 1
    damaged = listed[victim]
    assert damaged.status == "damaged" and damaged.planned_epochs in (0, 1)
    assert one_line_naming(damaged.message, victim, field), damaged.message
    with pytest.raises(DamagedRun) as caught:
        store.get(victim)
    assert one_line_naming(str(caught.value), victim, field)
    assert store.get(healthy).status == "finished"

    runs = str(store.root)
    code, out, err = cli(capsys, "runs", "--runs", runs)
    assert code == 0 and not err
    assert any(healthy in line and "finished" in line for line in out.splitlines())
    assert any(victim in line and "damaged" in line for line in out.splitlines()), out
    code, out, err = cli(capsys, "runs", "--json", "--runs", runs)
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0 and rows[healthy]["status"] == "finished" and rows[victim]["status"] == "damaged"
    assert one_line_naming(rows[victim]["message"], victim, field)

    for command in (["evaluate", victim, "--data", str(image_folder)],
                    ["export", victim, "--format", "script", "--out", str(tmp_path / "x.py")],
                    ["curves", victim, "--out", str(tmp_path / "curves.html")],
                    ["train", "--resume", victim, "--quiet"]):
        code, _, err = cli(capsys, *command, "--runs", runs)
        assert code != 0 and one_line_naming(err, victim, field), (command, err)


def test_a_damaged_active_row_does_not_stop_reconciling_stopping_or_starting_the_others(tmp_path, capsys):
    """The review's case: a running row with heartbeat 'x' made every reader's reconcile fail, so
    `stop` of another, healthy run failed too; and it took a training slot no one could free."""
    store = RunStore(tmp_path / "runs")
    victim = finished_run(store, "victim")
    edit(store, DAMAGE["heartbeat text on a running row"][0], victim)
    dead = store.create("dead", tiny_run().to_dict())  # its worker is gone: reconcile records it
    assert store.claim(dead, 2 ** 22 + 12345, 1.0, lifecycle.this_host(), "cpu")
    queued = store.create("queued", tiny_run().to_dict())  # its launcher has not started the worker yet

    assert [r.id for r in store.active()] == [dead, queued]
    assert lifecycle.reconcile(store) == [dead] and store.get(dead).status == "interrupted"
    code, out, err = cli(capsys, "stop", queued, "--runs", str(store.root))
    assert code == 0 and "stopped before it started" in out, err

    launcher = Launcher(store.root, limit=1)
    launcher._check_capacity("me")  # the damaged row holds no training slot
    with pytest.raises(JobError) as caught:
        launcher.stop("me", victim)
    assert one_line_naming(str(caught.value), victim, "heartbeat")
    assert launcher.get(victim).status == "damaged"  # what the pages show
    launcher.delete("me", victim)  # its owner can still get rid of it
    assert store.get(victim) is None and [r.status for r in store.list()] == ["stopped", "interrupted"]


@pytest.fixture
def app_store(image_folder, tmp_path, monkeypatch):
    """The app on synthetic data, with a run store of its own (and no launcher cached from another test)."""
    import streamlit as st

    monkeypatch.setenv("PLAYGROUND_DATA", str(image_folder))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "runs"))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield RunStore(tmp_path / "runs")
    st.cache_resource.clear()


def test_the_runs_page_shows_damaged_rows_beside_healthy_ones(app_store):
    from streamlit.testing.v1 import AppTest

    store = app_store
    healthy = finished_run(store, "healthy")
    for how in ("spec an array", "created 1e300", "heartbeat text on a running row", "metrics not JSON"):
        sql, args, _ = DAMAGE[how]
        edit(store, sql, *args, finished_run(store, "victim"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = at.dataframe[0].value
    assert list(table["status"]).count("damaged") == 4 and healthy in set(table["id"])
    damaged = next(i for i, s in zip(table["id"], table["status"]) if s == "damaged")
    edit(store, "UPDATE runs SET checkpoint_sha = 'ab' || id")  # as if each had saved an epoch
    at.switch_page("../pages/results.py").run()  # damaged runs are not offered (get would refuse them)
    assert not at.exception and [o.split(" · ")[0] for o in at.selectbox(key="r_run").options] == [healthy]
    train = AppTest.from_file(APP, default_timeout=60)
    train.query_params["run"] = damaged
    train.run()
    train.switch_page("../pages/train.py").run()  # watching it says what is damaged, in one line
    assert not train.exception and len(train.error) == 1 and "damaged" in train.error[0].value


BATCH_DAMAGE = {  # SQL on one batches row of the run; each leaves that point out of the live chart
    "step text": "UPDATE batches SET step = 'abc' WHERE run_id = ? AND step = 2",
    "epoch negative": "UPDATE batches SET epoch = -1 WHERE run_id = ? AND step = 3",
    "loss text": "UPDATE batches SET loss = 'high' WHERE run_id = ? AND step = 4",
    "lr a blob": "UPDATE batches SET lr = x'ff00' WHERE run_id = ? AND step = 5",
}


def test_damaged_batch_points_are_left_out_and_the_train_page_still_draws(app_store):
    from streamlit.testing.v1 import AppTest

    store = app_store
    run_id = finished_run(store, "chart")
    store.progress(run_id, [dict(step=s, epoch=1, loss=2.0 / s, acc=0.1 * s, lr=0.01, img_per_s=100.0)
                            for s in range(1, 7)], steps=6)
    for sql in BATCH_DAMAGE.values():
        edit(store, sql, run_id)
    assert [p["step"] for p in store.batches(run_id)] == [1, 6]
    train = AppTest.from_file(APP, default_timeout=60)
    train.query_params["run"] = run_id
    train.run()
    train.switch_page("../pages/train.py").run()
    assert not train.exception and not train.error, (train.exception, [e.value for e in train.error])
    assert train.get("plotly_chart")


# -- a resume state with a valid hash and contents that cannot be resumed from -----------------------

@pytest.fixture(scope="module")
def stopped_run(image_folder, tmp_path_factory) -> tuple[Path, str]:
    """A run stopped during its second epoch: its saved state is epoch 1's."""
    root = tmp_path_factory.mktemp("stopped") / "runs"
    run = tiny_run(epochs=3)
    run.data = str(image_folder)
    stop = StopSignal()
    run_id, result = execute(RunStore(root), run, load_dataset(str(image_folder)),
                             [lambda e: stop.set() if e.kind == "epoch" else None], stop=stop)
    assert result.status == "stopped"
    return root, run_id


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


BAD_STATES = {
    "an empty dict": lambda good, raw: saved({}),
    "epoch text": lambda good, raw: saved({**good, "epoch": "x"}),
    "epochs without metrics": lambda good, raw: saved({**good, "epochs": [{"bogus": 1}]}),
    "no weights": lambda good, raw: saved({**good, "model": {}}),
    "weights of other shapes": lambda good, raw: saved({**good, "model": {k: torch.zeros(1) for k in good["model"]}}),
    "no optimizer state": lambda good, raw: saved({**good, "optimizer": {}}),
    "a generator state that is not one": lambda good, raw: saved({**good, "torch_rng": torch.zeros(3)}),
    "random bytes": lambda good, raw: os.urandom(3000),
}


@pytest.mark.parametrize("how", BAD_STATES)
def test_a_state_that_cannot_be_resumed_is_refused_in_one_line_and_the_run_stays_resumable(
        stopped_run, tmp_path, capsys, how):
    source, run_id = stopped_run
    root = tmp_path / "runs"
    shutil.copytree(source, root)
    store = RunStore(root)
    good = store.load_state(run_id)
    assert resume_state(store, run_id, tiny_run(epochs=3))["epoch"] == 1  # the real one can be resumed from
    data = BAD_STATES[how](good, store.state_path(run_id).read_bytes())
    store.state_path(run_id).write_bytes(data)
    edit(store, "UPDATE runs SET state_sha = ? WHERE id = ?", hashlib.sha256(data).hexdigest(), run_id)
    before = store.get(run_id)

    with pytest.raises(JobError) as caught:  # the app: refused before the run is requeued
        Launcher(root).resume("me", run_id)
    assert "cannot be resumed" in str(caught.value) and "\n" not in str(caught.value)
    assert store.get(run_id) == before

    code, _, err = cli(capsys, "train", "--resume", run_id, "--runs", str(root), "--quiet")
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    assert f"run {run_id} cannot be resumed" in err and "internal error" not in err, err
    assert store.get(run_id) == before  # the CLI too: refused before the run is requeued, nothing written
