"""A checkpoint or resume-state save interrupted between moving its file into place and committing its
hash (a full disk at COMMIT, a SIGKILL): the hash on record still names a file on disk (moved from
test_store_faults.py)."""
import sqlite3
import subprocess
import sys

import pytest

import playground.runs.store as store_mod
from playground.faults import CheckpointError, StoreError
from playground.runs.store import RunStore
from tests.test_store_faults import store_with_checkpoint
from tests.test_training import ROOT


class FailingCommit(sqlite3.Connection):
    """A connection whose COMMIT fails as on a full disk, after the statements before it worked."""

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


@pytest.mark.parametrize("first", [False, True])
def test_a_commit_that_fails_after_the_file_was_moved_in_keeps_the_recorded_file(tmp_path, monkeypatch, first):
    """The new file is in place before the commit that records its hash: when that commit fails,
    the previous file goes back (or, on a first save, the new one goes), so file and hash still match."""
    if first:
        store = RunStore(tmp_path / "runs")
        run_id = store.create("tiny", {"train": {"epochs": 1}})
    else:
        store, run_id = store_with_checkpoint(tmp_path)
    real = sqlite3.connect
    monkeypatch.setattr(store_mod.sqlite3, "connect", lambda *a, **k: real(*a, factory=FailingCommit, **k))
    with pytest.raises(StoreError):
        store.save_checkpoint(run_id, {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in (store.root / "checkpoints").iterdir()) == ([] if first else [f"{run_id}.pt"])
    if first:
        with pytest.raises(CheckpointError, match="has no checkpoint"):
            store.load_checkpoint(run_id)
    else:
        assert store.load_checkpoint(run_id) == {"epoch": 1}


KILLED_AT_COMMIT = """
import os, signal, sqlite3, sys
import playground.runs.store as store_mod
from playground.runs.store import RunStore

class KilledAtCommit(sqlite3.Connection):
    def execute(self, sql, *args):
        if sql == "COMMIT":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().execute(sql, *args)

real = sqlite3.connect
store_mod.sqlite3.connect = lambda *a, **k: real(*a, factory=KilledAtCommit, **k)
RunStore(sys.argv[1]).save_state(sys.argv[2], {"epoch": 2})
"""


def test_a_worker_killed_between_moving_its_state_in_and_committing_leaves_a_resumable_run(tmp_path):
    """SIGKILL (the reaper's, the OOM killer's) after the new resume state was moved into place and
    before its hash was committed: the recorded state is still found, and the next save settles it."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", {"train": {"epochs": 3}})
    store.save_state(run_id, {"epoch": 1})
    child = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, str(store.root), run_id], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    assert store.load_state(run_id) == {"epoch": 1}  # the recorded one, kept aside by the killed save
    store.save_state(run_id, {"epoch": 3})
    assert store.load_state(run_id) == {"epoch": 3}
    assert sorted(p.name for p in (store.root / "checkpoints").iterdir()) == [f"{run_id}.state.pt"]


def test_a_save_whose_file_cannot_be_moved_in_leaves_the_recorded_file_in_its_place(tmp_path, monkeypatch):
    """The recorded file was moved aside, then the new one could not be moved in: it goes back."""
    import errno
    import os


    store, run_id = store_with_checkpoint(tmp_path)
    real = os.replace

    def replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        return real(src, dst)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    with pytest.raises(StoreError):
        store.save_checkpoint(run_id, {"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in (store.root / "checkpoints").iterdir()) == [f"{run_id}.pt"]
    assert store.load_checkpoint(run_id) == {"epoch": 1}
