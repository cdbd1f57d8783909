"""LR range tests kept in the run store, apart from trainings: one JSON file each in ``lr-tests/``, named by an id
of the runs' shape, written whole (atomically) by the process that runs the test. The app starts that process
(``python -m playground lr-find --job ID``); a test is "running" only while its process lives."""
from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import cli_child
from ..atomic import write_bytes
from ..specs.config import RunSpec
from ..specs.ids import is_run_id
from ..training.lr_find import RangeTest
from .lifecycle import process_start
from .store import RunStore

FOLDER = "lr-tests"
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
KEPT = 20  # the newest tests a store keeps
START_S = 120  # a test whose process never recorded itself in this long is not running


@dataclass
class LRTest:
    id: str
    created: float
    owner: str
    spec: dict
    data: str
    status: str
    message: str
    result: RangeTest
    pid: int | None = None
    pid_start: float | None = None

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in ("id", "created", "owner", "spec", "data", "status", "message",
                                                "pid", "pid_start")}, "result": self.result.to_dict()}

    @property
    def active(self) -> bool:
        return self.status == RUNNING


def _folder(store: RunStore) -> Path:
    return store.root / FOLDER


def _path(store: RunStore, test_id: str) -> Path:
    if not is_run_id(test_id):
        raise KeyError(f"{test_id[:40]!r} is not an LR test id")
    return _folder(store) / f"{test_id}.json"


def save(store: RunStore, test: LRTest) -> None:
    _folder(store).mkdir(exist_ok=True)
    write_bytes(_path(store, test.id), json.dumps(test.to_dict(), allow_nan=False).encode())


def _alive(test: LRTest) -> bool:
    try:
        return test.pid is not None and abs(psutil.Process(test.pid).create_time() - (test.pid_start or 0)) <= 1
    except psutil.Error:
        return False


def get(store: RunStore, test_id: str) -> LRTest | None:
    """The test as stored; a "running" one whose process is gone reads as interrupted (the curve so far kept)."""
    try:
        d = json.loads(_path(store, test_id).read_text())
        test = LRTest(**{**d, "result": RangeTest.from_dict(d["result"])})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lost = not _alive(test) if test.pid is not None else time.time() - test.created > START_S
    if test.active and lost:
        test.status, test.message = INTERRUPTED, "its process ended before the test did"
    return test


def tests(store: RunStore) -> list[LRTest]:
    """Every readable test, newest first."""
    found = [get(store, p.stem) for p in _folder(store).glob("*.json") if is_run_id(p.stem)]
    return sorted((t for t in found if t is not None), key=lambda t: -t.created)


def create(store: RunStore, run: RunSpec, data_source: str, start: float, end: float, steps: int,
           owner: str = "") -> LRTest:
    test = LRTest(time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3), time.time(), owner, run.to_dict(),
                  data_source, RUNNING, "", RangeTest(start, end, steps))
    save(store, test)
    for old in tests(store)[KEPT:]:  # housekeeping: the oldest ended tests past the newest KEPT
        if not old.active:
            _path(store, old.id).unlink(missing_ok=True)
    return test


def spawn(store: RunStore, test: LRTest) -> subprocess.Popen:
    """The test's process, its pid recorded, so that a reader can tell a live test from a dead one."""
    argv, env = cli_child("lr-find", "--job", test.id, "--runs", str(store.root.resolve()))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=env)
    test.pid, test.pid_start = proc.pid, process_start(proc.pid)
    current = get(store, test.id)
    if current is not None and current.active and current.pid is None:  # the child may have written already
        current.pid, current.pid_start = test.pid, test.pid_start
        save(store, current)
    return proc
