"""Run store: SQLite (WAL, short transactions) for specs, status, progress and per-epoch
metrics; checkpoints beside it, written atomically and verified on load.

It is the single source of truth about runs: workers write their progress here and
every page, tab and CLI command reads it from here. Whether a "running" run's process
still lives is lifecycle.py's job; the store only records pid, host and heartbeat.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

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
"""
# Columns added after the first release; older stores gain them when opened.
LIFECYCLE_COLUMNS = {
    "owner": "TEXT DEFAULT ''", "pid": "INTEGER", "pid_start": "REAL", "host": "TEXT", "heartbeat": "REAL",
    "step": "INTEGER DEFAULT 0", "steps": "INTEGER DEFAULT 0", "img_per_s": "REAL", "stop_requested": "REAL",
    "state_sha": "TEXT", "started": "REAL",
}
ACTIVE = ("queued", "running")
RESUMABLE = ("stopped", "interrupted")
STATUSES = (*ACTIVE, "finished", *RESUMABLE, "failed")
COLUMNS = ("id, name, status, created, updated, spec, params, best_acc, elapsed, device, message, checkpoint_sha, "
           + ", ".join(LIFECYCLE_COLUMNS))


class CheckpointError(RuntimeError):
    """A checkpoint is missing or damaged; it is reported, never loaded silently."""


class RunGone(RuntimeError):
    """The run was deleted while something was writing to it."""


RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def is_run_id(text: object) -> bool:
    """Run ids come from URLs and command lines and become file names: only the store's own shape."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def _checked_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise CheckpointError(f"{str(run_id)[:40]!r} is not a run id (they look like 20261125-093000-a1b2c3)")
    return run_id


@dataclass
class RunRecord:
    id: str
    name: str
    status: str
    created: float
    updated: float
    spec: dict
    params: int | None
    best_acc: float | None
    elapsed: float | None
    device: str | None
    message: str
    checkpoint_sha: str | None
    owner: str
    pid: int | None
    pid_start: float | None
    host: str | None
    heartbeat: float | None
    step: int
    steps: int
    img_per_s: float | None
    stop_requested: float | None
    state_sha: str | None
    started: float | None
    epochs: list[dict]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def planned_epochs(self) -> int:
        return int(self.spec.get("train", {}).get("epochs", 0))


def runs_dir(path: str | Path | None = None) -> Path:
    """``--runs`` beats ``PLAYGROUND_RUNS`` beats ./runs."""
    return Path(path or os.environ.get("PLAYGROUND_RUNS") or "runs")


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = runs_dir(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.db = self.root / "runs.sqlite"
        for attempt in range(50):  # many processes opening a fresh store at once race for WAL mode
            try:
                with self._conn() as c:
                    c.execute("PRAGMA journal_mode=WAL")
                    c.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.05 + 0.01 * attempt)
        with self._tx() as c:
            have = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
            for name, decl in LIFECYCLE_COLUMNS.items():
                if name not in have:
                    c.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        # One connection per operation: safe across threads and processes.
        conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

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
                             "updated = ?, device = ?, message = '', started = COALESCE(started, ?) "
                             "WHERE id = ? AND status = 'queued'",
                             (pid, pid_start, host, now, now, device, now, run_id)).rowcount == 1

    def beat(self, run_id: str, message: str | None = None) -> None:
        if message is None:
            self._update(run_id, "heartbeat = ?", (time.time(),))
        else:
            self._update(run_id, "heartbeat = ?, message = ?", (time.time(), message))

    def progress(self, run_id: str, points: list[dict], steps: int) -> None:
        """Batch points (already thinned by the caller) and the latest step, in one transaction."""
        last = points[-1]
        with self._tx() as c:
            if c.execute("UPDATE runs SET step = ?, steps = ?, img_per_s = ?, heartbeat = ?, message = '' "
                         "WHERE id = ?", (last["step"], steps, last["img_per_s"], time.time(), run_id)).rowcount == 0:
                raise RunGone(f"run {run_id} is no longer in the store (deleted)")
            c.executemany("INSERT OR REPLACE INTO batches (run_id, step, epoch, loss, acc, lr, img_per_s) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(run_id, p["step"], p["epoch"], p["loss"], p["acc"], p["lr"], p["img_per_s"])
                           for p in points])

    def batches(self, run_id: str) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT step, epoch, loss, acc, lr, img_per_s FROM batches WHERE run_id = ? "
                             "ORDER BY step", (run_id,)).fetchall()
        return [dict(zip(("step", "epoch", "loss", "acc", "lr", "img_per_s"), r)) for r in rows]

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
               only_if_active: bool = False) -> bool:
        """Record the end of a run. ``only_if_active``: for observers (a reaper, a launcher) that must
        not overwrite a status the worker recorded itself. True if the record changed."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        guard = " AND status IN ('queued', 'running')" if only_if_active else ""
        with self._tx() as c:
            return c.execute(f"UPDATE runs SET status = ?, message = ?, updated = ?, elapsed = COALESCE(?, elapsed) "
                             f"WHERE id = ?{guard}", (status, message, time.time(), elapsed, run_id)).rowcount == 1

    def request_stop(self, run_id: str) -> None:
        self._update(run_id, "stop_requested = COALESCE(stop_requested, ?)", (time.time(),))

    # -- reading -------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        if not is_run_id(run_id):
            return None
        found = self._records("WHERE id = ?", (run_id,))
        return found[0] if found else None

    def list(self, limit: int = 500) -> list[RunRecord]:
        return self._records("ORDER BY created DESC LIMIT ?", (limit,))

    def active(self) -> list[RunRecord]:
        return self._records("WHERE status IN ('queued', 'running') ORDER BY created", ())

    def _records(self, where: str, args: tuple) -> list[RunRecord]:
        with self._conn() as c:
            rows = c.execute(f"SELECT {COLUMNS} FROM runs {where}", args).fetchall()
            epochs: dict[str, list[dict]] = {r[0]: [] for r in rows}
            marks = ",".join("?" * len(rows))
            if rows:
                for run_id, m in c.execute(f"SELECT run_id, metrics FROM epochs WHERE run_id IN ({marks}) "
                                           f"ORDER BY run_id, epoch", list(epochs)):
                    epochs[run_id].append(json.loads(m))
        return [RunRecord(*r[:5], json.loads(r[5]), *r[6:10], r[10] or "", r[11], r[12] or "", *r[13:17],
                          r[17] or 0, r[18] or 0, *r[19:], epochs=epochs[r[0]]) for r in rows]

    def log_path(self, run_id: str) -> Path:
        """The worker's own output (stdout and stderr), for the reasons a crash leaves behind."""
        return self.root / "logs" / f"{_checked_id(run_id)}.log"

    def delete(self, run_id: str) -> bool:
        _checked_id(run_id)
        with self._tx() as c:
            n = c.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        for path in (self.root / "checkpoints").glob(f"*{run_id}*"):  # checkpoint, state and exports
            path.unlink(missing_ok=True)
        self.log_path(run_id).unlink(missing_ok=True)
        return bool(n)

    # -- teacher targets (distill.py) ----------------------------------------
    def _teacher_path(self, key: str) -> Path:
        return self.root / "teachers" / f"{key}.npy"

    def load_teacher_targets(self, key: str) -> np.ndarray | None:
        path = self._teacher_path(key)
        return np.load(path, allow_pickle=False) if path.exists() else None

    def save_teacher_targets(self, key: str, probs: np.ndarray) -> None:
        path = self._teacher_path(key)
        path.parent.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, probs)
        _write_atomic(path, buffer.getvalue())

    # -- checkpoints: the weights (Results, exports, teachers) and the resume state -------------
    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{_checked_id(run_id)}.pt"

    def state_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{_checked_id(run_id)}.state.pt"

    def save_checkpoint(self, run_id: str, state: dict) -> Path:
        return self._save(run_id, self.checkpoint_path(run_id), "checkpoint_sha", state)

    def save_state(self, run_id: str, state: dict) -> Path:
        """Everything needed to go on after an epoch (model, optimizer, schedule, EMA, RNGs)."""
        return self._save(run_id, self.state_path(run_id), "state_sha", state)

    def load_checkpoint(self, run_id: str) -> dict:
        return self._load(run_id, self.checkpoint_path(run_id), "checkpoint_sha")

    def load_state(self, run_id: str) -> dict:
        return self._load(run_id, self.state_path(run_id), "state_sha")

    def _save(self, run_id: str, path: Path, column: str, state: dict) -> Path:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        _write_atomic(path, buffer.getvalue())
        try:
            self._update(run_id, f"{column} = ?", (hashlib.sha256(buffer.getvalue()).hexdigest(),))
        except RunGone:
            path.unlink(missing_ok=True)
            raise
        return path

    def _load(self, run_id: str, path: Path, column: str) -> dict:
        record = self.get(run_id)
        if record is None:
            raise CheckpointError(f"run {run_id} is not in the run store {self.root}")
        if not path.exists():
            raise CheckpointError(f"run {run_id} has no checkpoint at {path}")
        data = path.read_bytes()
        expected = getattr(record, column)
        if not expected or hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"checkpoint {path} is damaged (its contents do not match what was saved; "
                                  f"{len(data):,} bytes on disk, truncated?); retrain the run")
        try:  # tensors and plain values only: a crafted file cannot run code
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt zips
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename: a crash or a second writer never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
