"""Deleting runs on a failing disk and beside other processes: the row goes first, the files after it,
and files left behind by an earlier failure are taken back later without touching anyone else's."""
import errno
import os
import sqlite3
from contextlib import suppress
from pathlib import Path

import pytest

from playground.faults import StoreError
from playground.runs.store import RunStore

from .test_store_faults import one_line, store_with_checkpoint


def test_files_that_cannot_be_removed_after_a_delete_are_one_line_and_taken_back_later(tmp_path, monkeypatch):
    store, run_id = store_with_checkpoint(tmp_path)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(
        OSError(errno.EIO, os.strerror(errno.EIO), str(self))))
    with pytest.raises(StoreError, match=f"run {run_id} was deleted but its files were not: an I/O error") as e:
        store.delete(run_id)
    assert one_line(e.value) and store.get(run_id) is None
    left = store.checkpoint_path(run_id)
    assert left.exists()
    monkeypatch.undo()
    # the next delete, of another run, takes the leftovers back and keeps the files of runs still stored
    kept = store.create("tiny", {"train": {"epochs": 1}})
    store.save_checkpoint(kept, {"epoch": 1})
    store.log_path(kept).parent.mkdir(exist_ok=True)
    store.log_path(kept).write_text("kept")
    sweep_log = store.root / "logs" / "sweep-20260101-120000-abcdef.log"  # a study may be named like a run
    sweep_log.write_text("a sweep's")
    other = store.create("tiny", {"train": {"epochs": 1}})
    store.save_checkpoint(other, {"epoch": 1})
    store.delete(other)
    assert not left.exists() and not store.checkpoint_path(other).exists()
    assert store.load_checkpoint(kept)["epoch"] == 1 and store.log_path(kept).read_text() == "kept"
    assert sweep_log.read_text() == "a sweep's"


def test_a_store_moved_aside_keeps_its_runs_files_through_the_new_stores_deletes(tmp_path):
    """A damaged store's message advises moving runs.sqlite aside (the checkpoints stay beside it): the first
    delete in the new, empty store took every file without a row for a leftover and removed all of them."""
    old, old_run = store_with_checkpoint(tmp_path)
    old.save_state(old_run, {"epoch": 1})
    old.log_path(old_run).write_text("old log")
    files = {p: p.read_bytes() for p in (old.root / "checkpoints").iterdir()} | {old.log_path(old_run): b"old log"}
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.rename(f"{old.db}{suffix}", f"{old.db}.damaged{suffix}")
    new = RunStore(old.root)
    run_id = new.create("tiny", {"train": {"epochs": 1}})
    new.save_checkpoint(run_id, {"epoch": 1})
    assert new.delete(run_id) and not new.checkpoint_path(run_id).exists()
    assert {p: p.read_bytes() for p in files} == files


def test_a_leftover_file_that_stays_stuck_does_not_fail_later_deletes(tmp_path, monkeypatch):
    store, stuck_run = store_with_checkpoint(tmp_path)
    stuck = store.checkpoint_path(stuck_run)
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == stuck:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(StoreError, match=f"run {stuck_run} was deleted but its files were not"):
        store.delete(stuck_run)
    for _ in range(2):  # each later delete removes its own run's files and says nothing of the stuck one
        run_id = store.create("tiny", {"train": {"epochs": 1}})
        store.save_checkpoint(run_id, {"epoch": 1})
        store.log_path(run_id).write_text("log")
        assert store.delete(run_id)
        assert not store.checkpoint_path(run_id).exists() and not store.log_path(run_id).exists()
    assert stuck.exists()


def test_a_run_created_while_another_is_deleted_keeps_its_files(tmp_path, monkeypatch):
    """Another process (a visitor, a sweep) creates a run and opens its log while a delete is under way."""
    store, gone = store_with_checkpoint(tmp_path)
    born = []
    listed = RunStore._run_files

    def list_then_create(self):
        found = listed(self)
        other = RunStore(self.root)
        born.append(other.create("tiny", {"train": {"epochs": 1}}))
        other.log_path(born[0]).write_text("starting")
        return found

    monkeypatch.setattr(RunStore, "_run_files", list_then_create)
    store.delete(gone)
    assert store.log_path(born[0]).read_text() == "starting" and not store.checkpoint_path(gone).exists()


def test_a_damaged_leftovers_table_names_no_file_outside_the_store(tmp_path):
    store, run_id = store_with_checkpoint(tmp_path)
    victim = tmp_path / "victim.pt"
    victim.write_text("not the store's")
    with sqlite3.connect(store.db) as c:
        c.executemany("INSERT INTO leftovers (id) VALUES (?)", [("../../victim",), (None,), (7,), ("",)])
        c.execute("INSERT INTO runs (id, name, status, created, updated, spec) VALUES (NULL, 'x', 'x', 0, 0, '')")
    assert store.delete(run_id) and victim.read_text() == "not the store's"
    assert not store.checkpoint_path(run_id).exists()  # a run row without an id hid every leftover ("NOT IN")


def test_a_store_from_before_the_leftovers_table_gains_it_when_opened(tmp_path):
    RunStore(tmp_path / "runs")
    with sqlite3.connect(tmp_path / "runs" / "runs.sqlite") as c:  # every table and column but this one
        c.execute("DROP TABLE leftovers")
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", {"train": {"epochs": 1}})
    store.save_checkpoint(run_id, {"epoch": 1})
    assert store.delete(run_id) and not store.checkpoint_path(run_id).exists()
