"""Run store: SQLite (WAL, short transactions) for specs, status, progress and per-epoch
metrics; checkpoints beside it, written atomically and verified on load.

It is the single source of truth about runs: workers write their progress here and
every page, tab and CLI command reads it from here. Whether a "running" run's process
still lives is lifecycle.py's job; the store only records pid, host and heartbeat.

Faults are one line, never a traceback (faults.py): a full or read-only disk, a damaged or missing
database, a lock held too long all raise StoreError with the cause in plain words; a missing
or altered checkpoint raises CheckpointError. A checkpoint is replaced only in the same
transaction that records its hash, so a failed write (of the file or of the database) keeps
the previous checkpoint and its hash; a writer that dies mid-write leaves a temporary file
that the next RunStore of this host sweeps away. Opening a fresh store is safe when many
processes do it at once (first-use initialisation is serialised and retried).

Every value read from a row is checked (the store is shared, and may be edited or damaged): a
row that fails is listed as a "damaged" record naming the field, ``get`` refuses it with
DamagedRun, and reconciling and stopping pass it by, so one bad row never breaks the other runs.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from .. import atomic, settings
from ..faults import DamagedRun, RunGone, StoreError, cause_of_os_error, cause_of_sqlite_error, read_only_disk
from .records import BATCH_POINT, COLUMNS, DAMAGED, STATUSES, PHASE_TRAINING, RunRecord, batch_point, record_from_row
from ..specs.ids import RUN_ID, checked_label, is_run_id
from .store_files import RunFiles, checked_id, previous

RUN_OWN_FILE = re.compile(rf"({RUN_ID.pattern})\.")

try:
    import fcntl
except ImportError:  # Windows: initialisation relies on the retries alone
    fcntl = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    spec TEXT NOT NULL,
    params INTEGER,
    best_acc REAL,
    elapsed REAL,
    device TEXT,
    message TEXT DEFAULT '',
    checkpoint_sha TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL, acc REAL, lr REAL, img_per_s REAL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS leftovers (
    id TEXT PRIMARY KEY
);
"""
# Columns added after the first release; older stores gain them when opened.
LIFECYCLE_COLUMNS = {
    "owner": "TEXT DEFAULT ''", "pid": "INTEGER", "pid_start": "REAL", "host": "TEXT", "heartbeat": "REAL",
    "step": "INTEGER DEFAULT 0", "steps": "INTEGER DEFAULT 0", "img_per_s": "REAL", "stop_requested": "REAL",
    "state_sha": "TEXT", "started": "REAL", "phase": "TEXT DEFAULT ''", "note": "TEXT DEFAULT ''",
}
ANY_PID = object()  # RunStore.finish: whichever process the run has
BUSY_TIMEOUT_S = 30.0  # how long an operation waits for another process's write lock
STALE_TMP_S = 600.0  # a temporary file this old whose writer is gone (or any after an hour) is swept


def runs_dir(path: str | Path | None = None) -> Path:
    """``--runs`` beats ``PLAYGROUND_RUNS`` beats ./runs."""
    return Path(path or settings.path("PLAYGROUND_RUNS", "runs"))


class RunStore(RunFiles):
    def __init__(self, root: str | Path | None = None, existing: bool = False):
        """The store at ``root`` (runs_dir), made there on first use; with ``existing`` (what only reads
        or changes runs: a mistyped --runs must not leave an empty store behind) StoreError if there is
        none."""
        self.root = runs_dir(root)
        self.db = self.root / "runs.sqlite"
        if existing and not self.db.exists():
            raise StoreError(f"there is no run store at {self.root} (no runs.sqlite there): train a run first, "
                             f"or point --runs or PLAYGROUND_RUNS at the folder that holds one")
        try:
            for folder in (self.root, self.root / "checkpoints", self.root / "logs"):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(cause_of_os_error(e, self.root)) from None
        # On a read-only disk SQLite cannot make the files it reads a WAL database with; nothing can
        # change the database there, so it is read as an immutable file (and every write is refused).
        self._read_only = read_only_disk(self.root)
        with self._init_lock():
            self._initialise()
        self._sweep_temporary_files()

    @contextmanager
    def _init_lock(self) -> Iterator[None]:
        """Serialise first-use initialisation among this host's processes (best effort: a store
        whose folder cannot hold the lock file is read-only, and then only reads follow)."""
        try:
            fd = os.open(self.root / ".runs.sqlite.init-lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            if fcntl is not None:
                with suppress(OSError):  # a network file system without locks: the retries remain
                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _initialise(self) -> None:
        """WAL mode, the schema and the columns added since the first release. An initialised
        store is only read here (so a read-only store can still be read); a fresh one is set up
        with retries, because switching to WAL mode while another process holds a write lock
        fails at once with "database is locked" instead of waiting (SQLite does not call the
        busy handler there)."""
        for attempt in range(60):
            try:
                with self._conn(translate=False) as c:
                    if self._initialised(c):
                        return
                    if self._read_only:
                        raise StoreError(f"the run store {self.root} is read-only (it is on a read-only disk) "
                                         f"and its database was never set up there")
                    c.execute("PRAGMA journal_mode=WAL").fetchone()  # "database is locked" if it cannot
                    c.execute("BEGIN IMMEDIATE")
                    try:
                        for statement in SCHEMA.split(";"):
                            if statement.strip():
                                c.execute(statement)
                        have = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
                        for name, decl in LIFECYCLE_COLUMNS.items():
                            if name not in have:
                                c.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
                        c.execute("COMMIT")
                    finally:
                        if c.in_transaction:
                            with suppress(sqlite3.Error):
                                c.execute("ROLLBACK")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or attempt == 59:
                    raise StoreError(cause_of_sqlite_error(e, self.db)) from None
                time.sleep(0.02 + 0.01 * attempt)
            except sqlite3.Error as e:
                raise StoreError(cause_of_sqlite_error(e, self.db)) from None

    def _initialised(self, c: sqlite3.Connection) -> bool:
        if not self._read_only and c.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            return False
        have = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
        tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        needed = {"runs", "epochs", "batches"} | ({"leftovers"} if not self._read_only else set())  # only deletes
        return needed <= tables and set(LIFECYCLE_COLUMNS) <= have                                # write it

    def _sweep_temporary_files(self) -> None:
        """Temporary files of writers on this host that died mid-write (SIGKILL, power loss)."""
        for folder in (self.root / "checkpoints", self.root / "teachers"):
            atomic.sweep_stale(folder, STALE_TMP_S)

    @contextmanager
    def _conn(self, translate: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection per operation: safe across threads and processes. SQLite's errors
        become StoreError, with the cause in one line."""
        try:
            if self._read_only and self.db.is_file():
                conn = sqlite3.connect(self.db.resolve().as_uri() + self._read_only_mode(), uri=True,
                                       isolation_level=None)
            else:
                conn = sqlite3.connect(self.db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            if not translate:
                raise
            raise StoreError(cause_of_sqlite_error(e, self.db)) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        except sqlite3.Error as e:
            if not translate:
                raise
            raise StoreError(cause_of_sqlite_error(e, self.db)) from None
        finally:
            conn.close()

    def _read_only_mode(self) -> str:
        """How a store on a read-only disk is opened: as an immutable file, unless commits are still in its
        write-ahead log (a store copied while a worker wrote, a disk that went read-only under one), which
        "immutable" would skip: the newest runs and the hashes of the newest checkpoints were missing.
        Reading the log needs the log's index (``-shm``) beside it, which a read-only disk cannot create."""
        try:
            pending = os.path.getsize(f"{self.db}-wal") > 0
        except OSError:
            return "?mode=ro&immutable=1"
        if pending and not os.path.exists(f"{self.db}-shm"):
            raise StoreError(f"the run store {self.root} is on a read-only disk and has changes not yet merged "
                             f"into runs.sqlite (in runs.sqlite-wal) that cannot be read there without "
                             f"runs.sqlite-shm; copy the folder to a writable disk and open it there") from None
        return "?mode=ro" if pending else "?mode=ro&immutable=1"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            finally:
                if c.in_transaction:  # an error, or a COMMIT that failed; never mask the first error
                    with suppress(sqlite3.Error):
                        c.execute("ROLLBACK")

    def _update(self, run_id: str, sql: str, args: tuple) -> None:
        """UPDATE runs ... WHERE id = run_id; RunGone if the run no longer exists."""
        with self._tx() as c:
            if c.execute(f"UPDATE runs SET {sql} WHERE id = ?", (*args, run_id)).rowcount == 0:
                raise RunGone(f"run {run_id} is no longer in the store (deleted)")

    # -- lifecycle -----------------------------------------------------------
    def create(self, name: str, spec: dict, params: int | None = None, device: str | None = None,
               owner: str = "") -> str:
        """A new run, queued until a worker claims it."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT INTO runs (id, name, status, created, updated, spec, params, device, owner) "
                      "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                      (run_id, name, now, now, json.dumps(spec), params, device, owner))
        return run_id

    def set_process(self, run_id: str, pid: int, pid_start: float, host: str) -> None:
        """Who runs it: the launcher records its child at once, the worker itself when it claims."""
        self._update(run_id, "pid = ?, pid_start = ?, host = ?, heartbeat = ?, updated = ?",
                     (pid, pid_start, host, time.time(), time.time()))

    def requeue(self, run_id: str) -> bool:
        """A stopped or interrupted run goes back to the queue to be resumed; False if it is not one."""
        with self._tx() as c:
            return c.execute("UPDATE runs SET status = 'queued', message = '', stop_requested = NULL, pid = NULL, "
                             "updated = ? WHERE id = ? AND status IN ('stopped', 'interrupted')",
                             (time.time(), run_id)).rowcount == 1

    def claim(self, run_id: str, pid: int, pid_start: float, host: str, device: str) -> bool:
        """The worker takes a queued run; False if it is not queued (another worker has it)."""
        now = time.time()
        with self._tx() as c:
            return c.execute("UPDATE runs SET status = 'running', pid = ?, pid_start = ?, host = ?, heartbeat = ?, "
                             "updated = ?, device = ?, message = '', phase = '', started = COALESCE(started, ?) "
                             "WHERE id = ? AND status = 'queued'",
                             (pid, pid_start, host, now, now, device, now, run_id)).rowcount == 1

    def beat(self, run_id: str, message: str | None = None, phase: str | None = None) -> None:
        """A live worker's heartbeat; with ``message`` and ``phase`` (records.PHASES), what it does now."""
        if message is None:
            self._update(run_id, "heartbeat = ?", (time.time(),))
        else:
            self._update(run_id, "heartbeat = ?, message = ?, phase = ?", (time.time(), message, phase or ""))

    def progress(self, run_id: str, points: list[dict], steps: int) -> None:
        """Batch points (already thinned by the caller) and the latest step, in one transaction."""
        last = points[-1]
        with self._tx() as c:
            if c.execute("UPDATE runs SET step = ?, steps = ?, img_per_s = ?, heartbeat = ?, message = '', phase = ? "
                         "WHERE id = ?", (last["step"], steps, last["img_per_s"], time.time(), PHASE_TRAINING,
                                         run_id)).rowcount == 0:
                raise RunGone(f"run {run_id} is no longer in the store (deleted)")
            c.executemany("INSERT OR REPLACE INTO batches (run_id, step, epoch, loss, acc, lr, img_per_s) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(run_id, p["step"], p["epoch"], p["loss"], p["acc"], p["lr"], p["img_per_s"])
                           for p in points])

    def batches(self, run_id: str) -> list[dict]:
        with self._conn() as c:
            rows = c.execute(f"SELECT {', '.join(BATCH_POINT)} FROM batches WHERE run_id = ? ORDER BY step",
                             (run_id,)).fetchall()
        return [p for p in map(batch_point, rows) if p is not None]

    def add_epoch(self, run_id: str, metrics: dict) -> None:
        acc = metrics.get("test_acc")
        acc = acc if acc is not None and acc == acc else 0
        with self._tx() as c:
            if c.execute("UPDATE runs SET updated = ?, elapsed = ?, best_acc = MAX(COALESCE(best_acc, 0), ?) "
                         "WHERE id = ?", (time.time(), metrics.get("elapsed"), acc, run_id)).rowcount == 0:
                raise RunGone(f"run {run_id} is no longer in the store (deleted)")
            c.execute("INSERT OR REPLACE INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)",
                      (run_id, int(metrics["epoch"]), json.dumps(metrics)))

    def rewind(self, run_id: str, epoch: int) -> None:
        """Forget what came after ``epoch`` (a resumed run continues from its last epoch state)."""
        with self._tx() as c:
            c.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, epoch))
            c.execute("DELETE FROM batches WHERE run_id = ? AND epoch > ?", (run_id, epoch))
            accs = [json.loads(m).get("test_acc") for (m,) in
                    c.execute("SELECT metrics FROM epochs WHERE run_id = ?", (run_id,))]
            best = max((a for a in accs if a is not None and a == a), default=None)
            c.execute("UPDATE runs SET best_acc = ?, step = (SELECT COALESCE(MAX(step), 0) FROM batches "
                      "WHERE run_id = ?) WHERE id = ?", (best, run_id, run_id))

    def finish(self, run_id: str, status: str, message: str = "", elapsed: float | None = None,
               only_if_active: bool = False, seen_pid: int | None | object = ANY_PID) -> bool:
        """Record the end of a run. ``only_if_active``: for observers (a reaper, a launcher) that must
        not overwrite a status the worker recorded itself; ``seen_pid``: and only while the run's process is
        still the one they judged (None: none yet), not a worker that claimed it meanwhile (a Resume).
        True if the record changed."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        guard = " AND status IN ('queued', 'running')" if only_if_active else ""
        guard += " AND pid IS ?" if seen_pid is not ANY_PID else ""
        finished = status == "finished"  # its resume state (twice its checkpoint's size) can never be used
        with self._tx() as c:
            changed = c.execute(f"UPDATE runs SET status = ?, message = ?, updated = ?, "
                                f"elapsed = COALESCE(?, elapsed), state_sha = CASE WHEN ? THEN NULL ELSE state_sha END "
                                f"WHERE id = ?{guard}",
                                (status, message, time.time(), elapsed, finished, run_id,
                                 *([seen_pid] if seen_pid is not ANY_PID else []))).rowcount == 1
        if changed and finished:
            with suppress(OSError):  # the row no longer names it; a file left behind is only disk
                for path in (self.state_path(run_id), previous(self.state_path(run_id))):
                    path.unlink(missing_ok=True)
        return changed

    def label(self, run_id: str, name: str | None = None, note: str | None = None) -> tuple[str, str]:
        """Rename the run, set its note, or both, in one transaction, as specs.ids.checked_label makes them (its
        SpecError, and nothing written, where either fails); the run's name and note now. RunGone if there is no
        such run. Nothing else writes a run's name after it is created, so a running run may be renamed."""
        checked_id(run_id)
        name, note = checked_label(name, note)
        with self._tx() as c:
            if c.execute("UPDATE runs SET name = COALESCE(?, name), note = COALESCE(?, note) WHERE id = ?",
                         (name, note, run_id)).rowcount == 0:
                raise RunGone(f"there is no run {run_id} in the run store {self.root}")
            return c.execute("SELECT name, note FROM runs WHERE id = ?", (run_id,)).fetchone()

    def request_stop(self, run_id: str) -> None:
        self._update(run_id, "stop_requested = COALESCE(stop_requested, ?)", (time.time(),))

    # -- reading -------------------------------------------------------------
    def get(self, run_id: str, damaged: bool = False) -> RunRecord | None:
        """The run's record, or None if there is none. A damaged row (see record_from_row) raises
        DamagedRun, in one line naming the run and the field: what uses a run (evaluate, export, resume,
        curves, a teacher) must not guess. ``damaged=True`` returns it as its "damaged" record instead,
        for what only shows or deletes the run."""
        if not is_run_id(run_id):
            return None
        found = self._records("WHERE id = ?", (run_id,))
        if found and found[0].status == DAMAGED and not damaged:
            raise DamagedRun(found[0].message)
        return found[0] if found else None

    def list(self, limit: int = 500) -> list[RunRecord]:
        """The newest runs, a damaged row among them as a "damaged" record."""
        return self._records("ORDER BY created DESC LIMIT ?", (limit,))

    def ended_past_newest(self, n: int) -> list[str]:
        """The ids of runs older than the ``n`` newest that are not queued or running, oldest last."""
        with self._conn() as c:
            return [i for (i,) in c.execute("SELECT id FROM (SELECT id, status FROM runs ORDER BY created DESC "
                                            "LIMIT -1 OFFSET ?) WHERE status NOT IN ('queued', 'running')", (n,))
                    if is_run_id(i)]

    def active(self) -> list[RunRecord]:
        """The queued and running runs, less damaged rows: nothing can tell whether their workers live, so
        reconciling, stopping and counting training slots pass them by (the listing shows them)."""
        return [r for r in self._records("WHERE status IN ('queued', 'running') ORDER BY created", ()) if r.active]

    def _records(self, where: str, args: tuple) -> list[RunRecord]:
        with self._conn() as c:
            # Text that is not UTF-8 would fail the whole query; read as lone surrogates, it fails its row's check.
            c.text_factory = lambda data: data.decode("utf-8", "surrogateescape")
            rows = c.execute(f"SELECT {COLUMNS} FROM runs {where}", args).fetchall()
            epochs: dict[str, list[tuple]] = {r[0]: [] for r in rows if is_run_id(r[0])}  # not a damaged id
            if epochs:
                marks = ",".join("?" * len(epochs))
                for run_id, epoch, metrics in c.execute(f"SELECT run_id, epoch, metrics FROM epochs WHERE run_id IN "
                                                        f"({marks}) ORDER BY run_id, epoch", list(epochs)):
                    epochs[run_id].append((epoch, metrics))
        return [record_from_row(r, epochs.get(r[0], [])) for r in rows]

    def log_path(self, run_id: str) -> Path:
        """The worker's own output (stdout and stderr), for the reasons a crash leaves behind."""
        return self.root / "logs" / f"{checked_id(run_id)}.log"

    def delete(self, run_id: str) -> bool:
        """Delete the run's row, then its files. A run whose files cannot all be removed then (a failing
        disk, a folder made read-only) stays listed in ``leftovers``, and each later delete tries its files
        again, as far as the disk lets. Only runs this store deleted are ever cleared away: files without a
        row may be the runs of a store moved aside (what a damaged store's message advises) or of a backup
        about to be restored, and were all removed by the first delete in the new store."""
        checked_id(run_id)
        with self._tx() as c:
            n = c.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
            if n:
                c.execute("INSERT OR IGNORE INTO leftovers (id) VALUES (?)", (run_id,))
            pending = [i for (i,) in c.execute("SELECT id FROM leftovers AS l WHERE NOT EXISTS "
                                               "(SELECT 1 FROM runs WHERE runs.id = l.id)")
                       if is_run_id(i)]  # an edited or damaged row names no path outside the store
        listed = self._run_files()
        cleared, failure = [], None
        for i in pending:
            try:
                for path in {*(p for p, j in listed if j == i), self.log_path(i), self.checkpoint_path(i),
                             self.state_path(i)}:
                    path.unlink(missing_ok=True)
                cleared.append(i)
            except OSError as e:  # still stuck: the next delete tries again
                failure = e if i == run_id else failure
        with suppress(StoreError), self._tx() as c:  # not recorded: the next delete finds them gone
            c.executemany("DELETE FROM leftovers WHERE id = ?", [(i,) for i in cleared])
        if failure:  # the run is gone from the store; a file left behind is only disk
            raise StoreError(f"run {run_id} was deleted but its files were not: "
                             f"{cause_of_os_error(failure, self.root)}")
        return bool(n)

    def _run_files(self) -> list[tuple[Path, str]]:
        """The store's files of runs and their run ids: checkpoints, resume states (and their previous
        files) and logs are named ``<run id>.…`` (a sweep's log, ``sweep-<study>.log``, is not)."""
        found = []
        for folder in (self.root / "checkpoints", self.root / "logs"):
            with suppress(OSError):
                for path in folder.iterdir():
                    if (m := RUN_OWN_FILE.match(path.name)) and path.is_file():
                        found.append((path, m.group(1)))
        return found
