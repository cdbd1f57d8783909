"""Run store: SQLite (WAL, short transactions) for specs, status and per-epoch
metrics; checkpoints beside it, written atomically and verified on load.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
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
"""
STATUSES = ("running", "finished", "stopped", "failed")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or damaged; it is reported, never loaded silently."""


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
    epochs: list[dict]


def runs_dir(path: str | Path | None = None) -> Path:
    """``--runs`` beats ``PLAYGROUND_RUNS`` beats ./runs."""
    return Path(path or os.environ.get("PLAYGROUND_RUNS") or "runs")


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = runs_dir(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        self.db = self.root / "runs.sqlite"
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(SCHEMA)

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

    def create(self, name: str, spec: dict, params: int | None = None, device: str | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT INTO runs (id, name, status, created, updated, spec, params, device) "
                      "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                      (run_id, name, now, now, json.dumps(spec), params, device))
        return run_id

    def add_epoch(self, run_id: str, metrics: dict) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)",
                      (run_id, int(metrics["epoch"]), json.dumps(metrics)))
            acc = metrics.get("test_acc")
            c.execute("UPDATE runs SET updated = ?, elapsed = ?, best_acc = MAX(COALESCE(best_acc, 0), ?) "
                      "WHERE id = ?", (time.time(), metrics.get("elapsed"), acc if acc is not None and acc == acc else 0, run_id))

    def finish(self, run_id: str, status: str, message: str = "", elapsed: float | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._tx() as c:
            c.execute("UPDATE runs SET status = ?, message = ?, updated = ?, elapsed = COALESCE(?, elapsed) "
                      "WHERE id = ?", (status, message, time.time(), elapsed, run_id))

    def mark_interrupted(self) -> int:
        """Runs left 'running' by a process that died are marked failed (called at start-up)."""
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET status = 'failed', message = 'interrupted: the process ended' "
                            "WHERE status = 'running' AND updated < ?", (time.time() - 6 * 3600,))
            return cur.rowcount

    def get(self, run_id: str) -> RunRecord | None:
        with self._conn() as c:
            row = c.execute("SELECT id, name, status, created, updated, spec, params, best_acc, elapsed, device, "
                            "message, checkpoint_sha FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            eps = [json.loads(m) for (m,) in c.execute(
                "SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))]
        return RunRecord(*row[:5], json.loads(row[5]), *row[6:10], row[10] or "", row[11], eps)

    def list(self, limit: int = 500) -> list[RunRecord]:
        with self._conn() as c:
            ids = [r for (r,) in c.execute("SELECT id FROM runs ORDER BY created DESC LIMIT ?", (limit,))]
        return [r for r in (self.get(i) for i in ids) if r is not None]

    def delete(self, run_id: str) -> bool:
        with self._tx() as c:
            n = c.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
        for path in (self.root / "checkpoints").glob(f"*{run_id}*"):  # checkpoint and its exports
            path.unlink(missing_ok=True)
        return bool(n)

    # -- teacher targets (distill.py) ----------------------------------------
    def _teacher_path(self, key: str) -> Path:
        return self.root / "teachers" / f"{key}.npy"

    def load_teacher_targets(self, key: str) -> np.ndarray | None:
        path = self._teacher_path(key)
        return np.load(path) if path.exists() else None

    def save_teacher_targets(self, key: str, probs: np.ndarray) -> None:
        path = self._teacher_path(key)
        path.parent.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, probs)
        _write_atomic(path, buffer.getvalue())

    # -- checkpoints -------------------------------------------------------
    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{run_id}.pt"

    def save_checkpoint(self, run_id: str, state: dict) -> Path:
        path = self.checkpoint_path(run_id)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        _write_atomic(path, buffer.getvalue())
        sha = hashlib.sha256(buffer.getvalue()).hexdigest()
        with self._tx() as c:
            c.execute("UPDATE runs SET checkpoint_sha = ? WHERE id = ?", (sha, run_id))
        return path

    def load_checkpoint(self, run_id: str) -> dict:
        path = self.checkpoint_path(run_id)
        record = self.get(run_id)
        if not path.exists():
            raise CheckpointError(f"run {run_id} has no checkpoint at {path}")
        data = path.read_bytes()
        if record is not None and record.checkpoint_sha and hashlib.sha256(data).hexdigest() != record.checkpoint_sha:
            raise CheckpointError(f"checkpoint {path} is damaged (its contents do not match what was saved; "
                                  f"{len(data):,} bytes on disk, truncated?); retrain the run")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt zips
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename: a crash or a second writer never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
