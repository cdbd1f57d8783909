"""Runs ended by the machine, not by themselves: a worker that cannot be started, a disk or store that fails
under a training. Where the run has a saved epoch it ends "interrupted", so Resume goes on from it; "failed"
is not resumable, and a momentary process limit at a resume made hours of training unresumable."""
import errno
import os
import shutil

import pytest

from playground.training.trainer import StopSignal
from playground.runs import lifecycle
from playground.faults import StoreError
from playground.runs.jobs import JobError, Launcher
from playground.runs.runner import execute, resume_state
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from tests.test_store_damage import stopped_run  # noqa: F401  (a fixture: a run stopped after epoch 1 of 3)
from tests.test_training import tiny_run


def copied(stopped_run, tmp_path) -> tuple[RunStore, str]:  # noqa: F811
    source, run_id = stopped_run
    shutil.copytree(source, tmp_path / "runs")
    return RunStore(tmp_path / "runs"), run_id


def full_disk(*args, **kwargs):
    raise StoreError("the run store's disk is full")


def test_a_resume_whose_worker_cannot_be_started_stays_resumable(stopped_run, tmp_path, monkeypatch):  # noqa: F811
    store, run_id = copied(stopped_run, tmp_path)
    monkeypatch.setattr(lifecycle.subprocess, "Popen", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))))
    with pytest.raises(JobError, match="could not be started"):
        Launcher(store.root).resume("me", run_id)
    record = store.get(run_id)
    assert record.status == "interrupted" and "could not be started" in record.message and not store.active()
    monkeypatch.undo()
    launcher = Launcher(store.root)
    launcher.resume("me", run_id)  # the limit has passed: it goes on from epoch 1
    assert launcher.wait(run_id, 120).status == "finished" and len(store.get(run_id).epochs) == 3


@pytest.mark.parametrize("saved_epoch", [True, False])
def test_a_disk_that_fails_under_a_training_leaves_a_run_with_a_saved_epoch_resumable(
        stopped_run, tmp_path, monkeypatch, image_folder, saved_epoch):  # noqa: F811
    store, run_id = copied(stopped_run, tmp_path)
    run, data = tiny_run(epochs=3), load_dataset(str(image_folder))
    run.data = str(image_folder)
    for save in ("save_state", "save_checkpoint"):  # at the end of the next epoch
        monkeypatch.setattr(RunStore, save, full_disk)
    with pytest.raises(StoreError):
        if saved_epoch:
            assert store.requeue(run_id)
            execute(store, run, data, run_id=run_id, resume=resume_state(store, run_id, run))
        else:
            execute(store, run, data)
    (record,) = [r for r in store.list() if (r.id == run_id) == saved_epoch]  # the resumed run, else the new one
    assert "the run store's disk is full" in record.message
    assert record.status == ("interrupted" if saved_epoch else "failed"), record
    assert store.requeue(record.id) == saved_epoch


def test_a_stop_whose_last_save_finds_the_disk_full_is_still_stopped(tmp_path, monkeypatch, image_folder):
    """A stopped run also keeps its mid-epoch weights; when that extra save failed, the run was "failed"."""
    store, stop, saves = RunStore(tmp_path / "runs"), StopSignal(), []
    real_save = RunStore.save_checkpoint

    def save(self, run_id, state):
        saves.append(run_id)
        return real_save(self, run_id, state) if len(saves) == 1 else full_disk()
    monkeypatch.setattr(RunStore, "save_checkpoint", save)
    run = tiny_run(epochs=3)
    run.data = str(image_folder)
    run_id, result = execute(store, run, load_dataset(str(image_folder)),
                             [lambda e: stop.set() if e.kind == "epoch" else None], stop=stop)
    assert result.status == "stopped" and len(saves) == 2
    assert store.get(run_id).status == "stopped" and store.load_checkpoint(run_id)["epoch"] == 1


def test_a_worker_that_exits_without_recording_its_end_is_resumable_when_it_saved_an_epoch(
        stopped_run, tmp_path):  # noqa: F811
    store, run_id = copied(stopped_run, tmp_path)
    assert store.requeue(run_id) and store.claim(run_id, os.getpid(), 0.0, lifecycle.this_host(), "cpu")
    lifecycle.record_exit(store, run_id, 1, os.getpid() + 1)  # an old worker's exit, reaped late: not this one's
    assert store.get(run_id).status == "running"
    lifecycle.record_exit(store, run_id, 1, os.getpid())  # e.g. its own record of a full disk failed
    assert store.get(run_id).status == "interrupted" and store.requeue(run_id)
