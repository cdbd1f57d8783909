"""A training worker: one process per run, for the app (``python -m playground worker RUN_ID``,
started by jobs.py) and the CLI (``train`` runs the same function in its own process).

It claims a queued run, trains it with runner.execute and records everything in the store.
SIGTERM or SIGINT ends it gracefully after the current batch ("stopped", with a checkpoint);
a stop requested through the store does the same, so a worker on another machine can be
stopped too. A heartbeat thread tells readers it is alive. An exception in any thread is
recorded as "failed" with its message before the process exits; a death it cannot record
(SIGKILL, OOM kill, segfault) is recorded by whoever next reads the store (lifecycle.py).
A store that cannot be written (a full or read-only disk, a damaged database) ends the worker
with one line naming the cause (exit code 1), which the reader quotes when it records the run.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

from ..specs import limits
from ..settings import hosted
from ..specs.config import RunSpec
from ..specs.serde import SpecError
from ..training.data import load_dataset
from ..training.sources import DataError
from ..training.device import return_memory_eagerly
from ..training.trainer import Callback, StopSignal, TrainResult
from . import lifecycle
from .runner import execute, failure_message, record_end, record_error, resume_state
from ..faults import CheckpointError, RunGone, StoreError
from .store import RunStore


def _on_signal(stop: threading.Event):
    def handler(signum, _frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        stop.set()
    return handler


def _heartbeat(store: RunStore, run_id: str, stop: StopSignal, done: threading.Event) -> None:
    """Beat, and stop the training when its stop is requested or this start has used up the tier's
    run_minutes (on the hosted demo one visitor could otherwise hold a training slot for hours)."""
    minutes = limits.current().run_minutes
    deadline = time.monotonic() + minutes * 60
    while not done.wait(lifecycle.HEARTBEAT_S):
        if time.monotonic() > deadline and not stop.is_set():
            stop.reason = f"at run_minutes, the {minutes:,}-minute limit of one start of a training (Resume goes on)"
            stop.set()
        try:
            store.beat(run_id)
            record = store.get(run_id)
        except RunGone:
            record = None
        except Exception:  # noqa: BLE001 - a busy or full disk: try again at the next beat
            continue
        if record is None or record.stop_requested:
            stop.set()


def _fail_fast(store: RunStore, run_id: str):
    def hook(args: threading.ExceptHookArgs) -> None:
        message = f"failed: {args.exc_type.__name__} in thread {args.thread.name if args.thread else '?'}: " \
                  f"{args.exc_value}"
        print(message, file=sys.stderr, flush=True)
        try:
            store.finish(run_id, "failed", message, only_if_active=True)
        finally:
            os._exit(70)
    return hook


def run_worker(store: RunStore, run_id: str, callbacks: list[Callback] | None = None) -> TrainResult | None:
    """Train the queued run ``run_id`` in this process; None if it was deleted meanwhile.

    A run that has a saved epoch state is resumed from it. A state it cannot resume from (runner.resume_state)
    is refused before the run is claimed: the run goes back to "stopped" with the reason, still resumable."""
    record = store.get(run_id)
    if record is None:
        raise RunGone(f"no run {run_id!r} in {store.root}")
    try:
        run = RunSpec.from_dict(record.spec)  # a stored run is untrusted input too (the store may be damaged)
    except SpecError as e:
        record_end(store, run_id, "failed", f"failed: the stored spec is invalid: {'; '.join(e.problems)}")
        raise
    try:
        resume = resume_state(store, run_id, run) if record.state_sha else None
    except CheckpointError as e:
        record_end(store, run_id, "stopped", str(e))
        raise
    stop, done = StopSignal(), threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _on_signal(stop))
    threading.excepthook = _fail_fast(store, run_id)
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop, done), daemon=True, name="heartbeat")
    beat.start()
    try:
        data = load_dataset(run.data or None, mmap_train=True)  # a subset run reads only its rows
        return execute(store, run, data, callbacks, stop, run_id=run_id, resume=resume)[1]
    except RunGone:
        return None
    except BaseException as e:  # e.g. a resume whose data folder cannot be read just now: still resumable
        record_error(store, run_id, e)
        raise
    finally:
        done.set()
        threading.excepthook = threading.__excepthook__
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def main(run_id: str, runs: str | None) -> int:
    """``python -m playground worker``: what jobs.py starts; its output goes to the run's log."""
    faulthandler.enable()  # a segfault leaves its traceback in the log, which the reaper quotes
    if hosted():
        return_memory_eagerly()
    try:
        result = run_worker(RunStore(runs, existing=True), run_id)  # a worker never makes a store
    except (StoreError, CheckpointError, OSError, SpecError, DataError) as e:  # one line, quoted as the reason
        print(f"run {run_id} failed: {type(e).__name__}: {failure_message(e)}", file=sys.stderr, flush=True)
        return 1
    print(f"run {run_id}: {result.status if result else 'deleted'} {result.message if result else ''}", flush=True)
    return 0
