"""The run store under faults (issue 16: every bad input gets a one-line answer and harms
nothing).

Full and read-only disks are simulated where the store meets the system (``open`` and
``os.replace`` raising the OSError a full or read-only disk raises; SQLite opened read-only),
and for real on a tiny tmpfs when this machine lets the tests mount one. Damaged stores are
real damaged files.
"""
import errno
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import playground.atomic as atomic_mod
import playground.runs.store as store_mod
from playground.runs import lifecycle
from playground.runs.runner import create_run, execute
from playground.faults import CheckpointError, StoreError
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from tests.test_training import ROOT, run_cli, tiny_run


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def one_line(e: BaseException) -> bool:
    """Shown without a chained traceback: no cause, and any context suppressed."""
    return e.__cause__ is None and (e.__context__ is None or e.__suppress_context__) and "\n" not in str(e)


def store_with_checkpoint(tmp_path: Path) -> tuple[RunStore, str]:
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", {"train": {"epochs": 1}})
    store.save_checkpoint(run_id, {"epoch": 1})
    return store, run_id


class FailingFile(io.FileIO):
    """A file whose writes fail as on a full disk (after the file was created)."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def failing_open(kind: str):
    def fake(path, mode="r", *args, **kwargs):
        if kind == "erofs":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        if kind == "enospc":
            return FailingFile(path, mode.replace("b", ""))
        if kind == "interrupt":
            f = open(path, mode, *args, **kwargs)
            f.write(b"half")
            raise KeyboardInterrupt
        raise AssertionError(kind)
    return fake


# -- writes: atomic, never a temporary file left, the previous checkpoint kept -------------------

@pytest.mark.parametrize("fault, expected", [
    ("enospc", "the disk is full"), ("erofs", "is read-only"), ("fsync", "the disk is full"),
    ("replace", "I/O error"), ("interrupt", KeyboardInterrupt), ("serialise", "Can't pickle")])
def test_a_failed_checkpoint_write_leaves_no_temporary_file_and_keeps_the_previous_one(tmp_path, monkeypatch,
                                                                                      fault, expected):
    store, run_id = store_with_checkpoint(tmp_path)
    state = {"epoch": 2}
    if fault in ("enospc", "erofs", "interrupt"):
        monkeypatch.setattr(atomic_mod, "open", failing_open(fault), raising=False)  # where files are written
    elif fault == "fsync":
        monkeypatch.setattr(store_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    elif fault == "replace":
        monkeypatch.setattr(store_mod.os, "replace", lambda a, b: (_ for _ in ()).throw(
            OSError(errno.EIO, os.strerror(errno.EIO), str(a))))
    else:
        state = {"epoch": 2, "bad": lambda: 0}  # torch.save cannot pickle a lambda
    error = expected if isinstance(expected, type) else Exception
    with pytest.raises(error) as caught:
        store.save_checkpoint(run_id, state)
    if not isinstance(expected, type):
        assert expected in str(caught.value)
        if fault != "serialise":
            assert isinstance(caught.value, StoreError) and one_line(caught.value)
    monkeypatch.undo()
    assert temporaries(store.root) == []
    assert store.load_checkpoint(run_id) == {"epoch": 1}  # the previous checkpoint, still matching its hash


def read_only_sqlite(monkeypatch) -> None:
    """SQLite as it behaves on a read-only disk: reads work, every write fails."""
    real = sqlite3.connect

    def connect(db, *args, **kwargs):
        return real(f"file:{db}?mode=ro", *args, uri=True, **kwargs)
    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)


@pytest.mark.parametrize("fault", ["read-only", "locked"])
def test_a_database_that_cannot_record_the_hash_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fault):
    """The file is moved into place only in the transaction that records its hash: when the
    database refuses the write, the old file and its hash stay a matching pair."""
    store, run_id = store_with_checkpoint(tmp_path)
    holder = None
    if fault == "read-only":
        read_only_sqlite(monkeypatch)
    else:  # another process holds the write lock longer than this one waits
        monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_S", 0.2)
        holder = sqlite3.connect(store.db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="is read-only" if fault == "read-only" else "locked by another process") as caught:
        store.save_checkpoint(run_id, {"epoch": 2})
    assert one_line(caught.value)
    if holder is not None:
        holder.execute("ROLLBACK")
    monkeypatch.undo()
    assert temporaries(store.root) == []
    assert store.load_checkpoint(run_id) == {"epoch": 1}


def test_a_writer_that_died_mid_write_leaves_nothing_behind(tmp_path):
    """SIGKILL between the temporary file and the rename: the next store of this host sweeps
    the dead writer's file (an old one of a live writer, or a fresh one, stays)."""
    store = RunStore(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 2 * store_mod.STALE_TMP_S
    names = {"dead_old": f".x.pt.{dead.pid}.aaaaaa.tmp", "live_old": f".y.pt.{os.getpid()}.bbbbbb.tmp",
             "dead_new": f".z.pt.{dead.pid}.cccccc.tmp"}
    paths = {k: store.root / "checkpoints" / v for k, v in names.items()}
    for key, path in paths.items():
        path.write_bytes(b"half a checkpoint")
        if key.endswith("old"):
            os.utime(path, (old, old))
    RunStore(tmp_path)
    assert {k for k, p in paths.items() if p.exists()} == {"live_old", "dead_new"}


def test_a_fresh_store_opens_while_another_process_holds_its_write_lock(tmp_path):
    """Switching a fresh database to WAL mode while another connection holds a write lock fails
    at once with "database is locked" (SQLite does not wait on its busy timeout there); this is
    what killed some of forty processes opening a fresh store at once. The store waits it out."""
    tmp_path.mkdir(exist_ok=True)
    other = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # e.g. a process in the middle of initialising the same fresh store
    other.execute("CREATE TABLE scratch (x)")
    release = threading.Timer(0.5, lambda: other.execute("ROLLBACK"))
    release.start()
    began = time.monotonic()
    store = RunStore(tmp_path)
    release.join()
    assert time.monotonic() - began >= 0.4  # it did meet the lock
    run_id = store.create("tiny", {})
    assert RunStore(tmp_path).get(run_id).status == "queued"
    with sqlite3.connect(store.db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


# -- damaged stores: one line, never a traceback -------------------------------------------------

def damage(root: Path, how: str) -> None:
    db = root / "runs.sqlite"
    if how == "garbage":
        root.mkdir(parents=True, exist_ok=True)
        db.write_bytes(b"this is not a database " * 100)
    elif how == "directory":
        db.mkdir(parents=True)
    elif how == "truncated":
        store = RunStore(root)
        for i in range(200):
            store.create(f"run {i}", {"train": {"epochs": 1}, "padding": "x" * 500})
        with sqlite3.connect(db) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = db.read_bytes()
        db.write_bytes(data[:len(data) // 3])
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how, words", [("garbage", "is damaged"), ("directory", "it is a directory"),
                                        ("truncated", "is damaged")])
def test_a_damaged_store_is_reported_in_one_line(tmp_path, how, words):
    root = tmp_path / "runs"
    damage(root, how)
    with pytest.raises(StoreError, match=words) as caught:
        RunStore(root).list()
    assert one_line(caught.value)
    out = run_cli("runs", "--runs", str(root))
    assert out.returncode != 0 and words in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("how, words", [("deleted", "has no checkpoint"), ("altered", "is damaged"),
                                        ("directory", "cannot be read")])
def test_a_deleted_altered_or_unreadable_checkpoint_is_a_checkpoint_error(tmp_path, how, words):
    store, run_id = store_with_checkpoint(tmp_path)
    path = store.checkpoint_path(run_id)
    data = path.read_bytes()
    path.unlink()
    if how == "altered":  # same length, one byte changed
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:])
    elif how == "directory":
        path.mkdir()
    with pytest.raises(CheckpointError, match=words) as caught:
        store.load_checkpoint(run_id)
    assert one_line(caught.value)


def test_damaged_teacher_targets_are_computed_again(tmp_path):
    import numpy as np
    store = RunStore(tmp_path)
    store.save_teacher_targets("k", np.ones((3, 10), np.float32))
    assert store.load_teacher_targets("k").shape == (3, 10)
    store._teacher_path("k").write_bytes(b"\x93NUMPY garbage")
    assert store.load_teacher_targets("k") is None and not store._teacher_path("k").exists()


# -- a store that fails while a run trains ------------------------------------------------------

def test_a_full_disk_while_training_ends_the_run_with_the_cause_resumable_from_the_last_epoch(image_folder, tmp_path,
                                                                                             monkeypatch):
    store, data = RunStore(tmp_path / "runs"), load_dataset(str(image_folder))
    real_add_epoch = RunStore.add_epoch

    def add_epoch_then_fill_the_disk(self, run_id, metrics):
        real_add_epoch(self, run_id, metrics)
        monkeypatch.setattr(atomic_mod, "open", failing_open("enospc"), raising=False)

    monkeypatch.setattr(RunStore, "add_epoch", add_epoch_then_fill_the_disk)
    with pytest.raises(StoreError, match="the disk is full") as caught:
        execute(store, tiny_run(epochs=3), data)
    assert one_line(caught.value)
    record = store.list()[0]
    assert record.status == "interrupted" and record.message.startswith("the disk is full"), record.message
    assert temporaries(store.root) == []
    assert len(record.epochs) == 1 and store.requeue(record.id)
    assert store.load_state(record.id)["epoch"] == 1 and store.load_checkpoint(record.id)["epoch"] == 1


WORKER_SCRIPT = """
import errno, os, sqlite3, sys
import playground.atomic as atomic_mod
import playground.runs.store as store_mod
from playground.runs.store import RunStore
from playground.runs.worker import main

real_connect, real_add_epoch, broken = sqlite3.connect, RunStore.add_epoch, []

def connect(db, *args, **kwargs):  # the disk turned read-only: reads still work, writes fail
    if broken:
        return real_connect(f"file:{{db}}?mode=ro", *args, uri=True, **kwargs)
    return real_connect(db, *args, **kwargs)

def read_only_open(path, *args, **kwargs):
    if broken:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return open(path, *args, **kwargs)

def add_epoch(self, run_id, metrics):
    real_add_epoch(self, run_id, metrics)
    broken.append(1)

store_mod.sqlite3.connect, atomic_mod.open, RunStore.add_epoch = connect, read_only_open, add_epoch
sys.exit(main({run_id!r}, {runs!r}))
"""


def test_a_worker_whose_store_turns_read_only_exits_in_one_line_and_the_reader_records_it(image_folder,
                                                                                         tmp_path):
    """The status itself cannot be written: the worker says why in one line and exits; the next
    reader of the store records the run, quoting that line."""
    store = RunStore(tmp_path / "runs")
    run = tiny_run(epochs=50, batch_size=16)
    run.data = str(image_folder)
    run_id = create_run(store, run)
    with open(store.log_path(run_id), "ab") as log:
        code = subprocess.run([sys.executable, "-c", WORKER_SCRIPT.format(run_id=run_id, runs=str(store.root))],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
    said = store.log_path(run_id).read_text().strip().splitlines()
    assert code == 1 and len(said) == 1 and "is read-only" in said[0], said
    record = store.get(run_id)
    assert record.status == "running" and len(record.epochs) == 1  # what the store said before anyone looked
    assert lifecycle.reconcile(store) == [run_id]
    record = store.get(run_id)
    assert record.status == "interrupted" and "is read-only" in record.message, record.message
    assert temporaries(store.root) == [] and store.load_checkpoint(run_id)["epoch"] == 1


def test_a_reader_that_cannot_write_leaves_the_record_for_a_later_reader(tmp_path, monkeypatch, capsys):
    """...and meanwhile the pages and `runs` show the run as ended, not "running" (which it said for
    as long as the store stayed read-only)."""
    from playground.cli import main
    from playground.runs.jobs import Launcher

    store = RunStore(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_id = create_run(store, tiny_run(), owner="me")
    assert store.claim(run_id, dead.pid, time.time(), lifecycle.this_host(), "cpu")
    read_only_sqlite(monkeypatch)
    assert lifecycle.reconcile(store) == [] and store.get(run_id).status == "running"  # read, not written
    launcher = Launcher(tmp_path, limit=1)
    for seen in (launcher.get(run_id), *launcher.runs()):
        assert seen.status == "interrupted" and not seen.active
        assert seen.message.endswith("(not recorded yet: the run store cannot be written)"), seen.message
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    with launcher._lock:  # nor does it hold its owner's slot or the server's last one ("already running for you")
        launcher._check_capacity("me")
    assert main(["runs", "--json", "--runs", str(tmp_path)]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["interrupted"]
    monkeypatch.undo()
    assert lifecycle.reconcile(store) == [run_id] and store.get(run_id).status == "interrupted"


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB tmpfs, where this machine lets the tests mount one (root, with mount rights)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_store_on_a_read_only_disk_is_read_and_refuses_writes_in_one_line(image_folder, tmp_path, tiny_disk):
    """A real read-only mount (SQLite cannot create the files it reads a WAL database with there)."""
    store = RunStore(tiny_disk / "runs")
    run_id, _ = execute(store, tiny_run(), load_dataset(str(image_folder)))
    del store
    assert subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True).returncode == 0
    store = RunStore(tiny_disk / "runs")
    assert [r.status for r in store.list()] == ["finished"] and store.load_checkpoint(run_id)["epoch"] == 1
    for write in (lambda: store.create("tiny", {}), lambda: store.delete(run_id),
                  lambda: store.save_checkpoint(run_id, {"epoch": 2})):
        with pytest.raises(StoreError, match="is read-only") as caught:
            write()
        assert one_line(caught.value)
    listed = run_cli("runs", "--runs", str(store.root))
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr
    with pytest.raises(StoreError, match="is read-only"):
        RunStore(tiny_disk / "elsewhere")


def test_a_read_only_store_with_commits_still_in_its_write_ahead_log_shows_them(tmp_path, tiny_disk):
    """A store copied while a worker wrote, or a disk that went read-only under one: its newest commits are
    in runs.sqlite-wal, which reading the database as immutable skipped (the newest runs were missing)."""
    root = tiny_disk / "runs"
    first = RunStore(root).create("tiny", {})
    script = (f"import os, sqlite3; c = sqlite3.connect({str(root / 'runs.sqlite')!r}, isolation_level=None); "
              f"c.execute(\"UPDATE runs SET name = 'in the log' WHERE id = '{first}'\"); os._exit(0)")
    subprocess.run([sys.executable, "-c", script], check=True)  # ends without closing: the commit stays in the log
    assert (root / "runs.sqlite-wal").stat().st_size > 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True).returncode == 0
    assert [r.name for r in RunStore(root).list()] == ["in the log"]
    assert subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], capture_output=True).returncode == 0
    (root / "runs.sqlite-shm").unlink()  # without the log's index a read-only disk cannot read the log
    assert subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True).returncode == 0
    with pytest.raises(StoreError, match="changes not yet merged") as caught:
        RunStore(root).list()
    assert one_line(caught.value)


def test_a_really_full_disk_ends_the_worker_in_one_line_and_the_run_is_recorded_once_there_is_room(
        image_folder, tmp_path, tiny_disk):
    """A worker process on a 2 MiB disk that fills up after its first epoch: its one line names the
    cause; readers can still read the store (they record the run once there is room again),
    nothing partial is left, and the last good epoch still loads."""
    store = RunStore(tiny_disk / "runs")
    run = tiny_run(epochs=300, batch_size=16)
    run.data = str(image_folder)
    run_id = create_run(store, run)
    worker = subprocess.Popen([sys.executable, "-m", "playground", "worker", run_id, "--runs", str(store.root)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not store.get(run_id).epochs and time.time() < deadline:
        time.sleep(0.05)
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: closing it has nothing left to write
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode != 0 and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert "the disk is full" in out, out
    try:  # still full: a reader records what it can, or says in one line why it cannot even read
        lifecycle.reconcile(store)
        record = store.get(run_id)
    except StoreError as e:  # SQLite may need room for its WAL index even to read
        assert "the disk is full" in str(e) and one_line(e)
        record = None
    if record is None or record.status == "running":  # the worker could not record its end
        filler.unlink()
        assert lifecycle.reconcile(store) == [run_id]
        record = store.get(run_id)
        assert record.status == "interrupted", record
    else:  # SQLite still had room for the status: the worker recorded the cause itself
        assert record.status == "interrupted" and "the disk is full" in record.message, record
    assert temporaries(store.root) == []
    assert store.load_checkpoint(run_id)["epoch"] == len(record.epochs) >= 1
