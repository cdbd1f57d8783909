"""Whether a run's worker still lives, and the stop protocol. No lies: a run is "running"
only while its process does.

A worker records its pid, its process start time and its host when it claims a run, and
beats a heartbeat while it trains. On the same host a reader checks the pid and its start
time (a reused pid has another start time); for a worker on another machine sharing the
store it trusts the heartbeat. Whoever reads the store first after a worker died (a page,
the CLI, the launcher's watcher) records the run as interrupted, with the reason. A store
that cannot be written just now (read-only, full) is still read; the record waits for a
reader that can write it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import replace

import psutil

from .. import cli_child
from ..faults import StoreError
from .records import PHASE_TESTING, RunRecord
from .store import RunStore

HEARTBEAT_S = 2.0  # how often a worker says it is alive
STALE_S = 60.0  # a worker on another host is presumed dead after this long without a heartbeat
GRACE_S = 20.0  # a worker asked to stop is killed if it has not ended after this long
# ... or this long while it tests an epoch (its message says so): a test pass does not look at the stop, and the
# last epoch's 18 TTA views of 10,000 images take minutes on 2 CPU cores; killed, the run lost its last epoch
TEST_GRACE_S = 900.0


def this_host() -> str:
    return socket.gethostname()


def this_process() -> tuple[int, float, str]:
    """(pid, start time, host) of the calling process, as a worker records itself."""
    return os.getpid(), psutil.Process().create_time(), this_host()


def process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _process(record: RunRecord) -> psutil.Process | None:
    """The run's live worker process on this host, or None if it is gone (or a zombie)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - (record.pid_start or 0)) > 1 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, TypeError, ValueError):
        return None


def alive(record: RunRecord) -> bool:
    if record.pid is None:  # queued by a launcher that has not started its worker yet
        return time.time() - record.updated < STALE_S
    if record.host == this_host():
        return _process(record) is not None
    return time.time() - (record.heartbeat or record.updated) < STALE_S


def last_output(store: RunStore, run_id: str) -> str:
    """The worker's last line of output, when it says why it ended (an error, a fatal signal)."""
    try:
        with open(store.log_path(run_id), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))  # a fatal error is followed by every thread's stack
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    said = ("Error", "Fatal", "Killed")  # and the CLI's own one-line "error: ..." (an OSError importing torch)
    last = next((ln for ln in reversed(lines) if any(w in ln for w in said) or ln.startswith("error: ")), "")
    return f"; its last words: {last[:200]}" if last else ""


def gone_reason(store: RunStore, record: RunRecord) -> str:
    who = f"worker process {record.pid}" if record.pid else "worker"
    return (f"interrupted: the {who} ended without recording a result (killed, out of memory, crashed, or the "
            f"server restarted){last_output(store, record.id)}; resume it to go on from its last epoch")


def exit_reason(returncode: int) -> tuple[str, str]:
    """(status, message) for a worker that exited without recording its end, from its exit code."""
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        if -returncode == signal.SIGKILL:
            return "interrupted", ("interrupted: the worker was killed (SIGKILL; out of memory?); resume it to "
                                   "go on from its last epoch")
        return "interrupted", f"interrupted: the worker died of signal {name}; resume it to go on from its last epoch"
    return "failed", f"failed: the worker exited with code {returncode} before recording a result"


def reconcile(store: RunStore, children: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Record every active run whose worker is gone, and kill workers that outlived a stop
    request by GRACE_S. Cheap (one query) when nothing runs; returns the ids it changed. A damaged
    row is not among the active runs (RunStore.active), so it cannot stop this for the others.

    ``children`` are runs whose worker is the caller's own child: their exit code says more
    than "gone" (a signal, an exit status), so the caller records them when it reaps them."""
    def record(r: RunRecord, status: str, message: str) -> None:
        try:
            if store.finish(r.id, status, message, only_if_active=True, seen_pid=r.pid):
                changed.append(r.id)
        except StoreError:  # read-only or full just now: a later reader records it
            pass

    changed: list[str] = []
    for r in store.active():
        if not alive(r):
            if r.id in children:
                continue
            record(r, *_end_of(store, r))
        elif r.stop_requested and time.time() - max(r.stop_requested, r.updated) > (grace := grace_s(r)) \
                and r.host == this_host():  # counted from the request, or from the epoch saved after it
            kill(r)
            record(r, "stopped", f"stopped: the worker did not end within {grace:.0f} s of the stop request "
                                 f"and was killed")
    return changed


def grace_s(record: RunRecord) -> float:
    """How long a worker asked to stop may take to end before it is killed (by the phase it records),
    counted from the request or from the last epoch it saved (a test pass ends with one: then it stops)."""
    return TEST_GRACE_S if record.phase == PHASE_TESTING else GRACE_S


def _end_of(store: RunStore, record: RunRecord) -> tuple[str, str]:
    """(status, message) for an active run whose worker is gone."""
    if record.stop_requested:
        return "stopped", "stopped by request (the worker ended before saving a final state)"
    return "interrupted", gone_reason(store, record)


def as_seen(store: RunStore, record: RunRecord, children: frozenset[str] | set[str] = frozenset()) -> RunRecord:
    """The record as readers show it, after ``reconcile``: a run whose worker is gone but whose end
    could not be recorded (a read-only or full store) shows that end, not "running", until a
    reader can record it. ``children`` as for ``reconcile``: their reaper records a better reason."""
    if not record.active or record.id in children or alive(record):
        return record
    fresh = store.get(record.id, damaged=True)  # its worker or reaper may have recorded its end just now
    if fresh is None or not fresh.active:
        return fresh or record
    status, message = _end_of(store, record)
    return replace(record, status=status, message=f"{message} (not recorded yet: the run store cannot be written)")


def kill(record: RunRecord) -> None:
    proc = _process(record)
    if proc is not None:
        try:
            proc.kill()
            proc.wait(5)
        except psutil.Error:
            pass


def request_stop(store: RunStore, record: RunRecord) -> None:
    """Ask the worker to end after its current batch (SIGTERM): it saves and records "stopped".
    ``reconcile`` kills it if it has not ended GRACE_S later."""
    store.request_stop(record.id)
    if record.pid is None:
        store.finish(record.id, "stopped", "stopped before it started", only_if_active=True, seen_pid=None)
        return
    proc = _process(record) if record.host == this_host() else None
    if proc is not None:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass


def start_worker(store: RunStore, run_id: str, stop_with_parent: bool = False) -> subprocess.Popen:
    """``python -m playground worker RUN_ID`` as a child process, its output in the run's log, its
    pid recorded at once. ``stop_with_parent``: it gets SIGTERM (a graceful stop) when the caller
    dies, even by SIGKILL (Linux), so no training is left orphaned.

    When it cannot be started (no memory or process slots, a log that cannot be opened, a store
    that refuses its pid) the run ends saying why (``not_started``; "interrupted" when it has a saved epoch
    to resume from, else "failed") rather than waiting as queued, no process is left behind, and the
    OSError or StoreError is raised."""
    try:
        argv, env = cli_child("worker", run_id, "--runs", str(store.root.resolve()))
        with open(store.log_path(run_id), "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    preexec_fn=_stop_with_parent if stop_with_parent else None)
        start = process_start(proc.pid)
        if start is not None:  # else it already ended: whoever reaps it records why
            try:
                store.set_process(run_id, proc.pid, start, this_host())
            except StoreError:  # the page would say "failed" while it trained: it goes now
                proc.kill()
                proc.wait()
                raise
    except (OSError, StoreError) as e:
        with suppress(StoreError):
            store.finish(run_id, *fault_end(store, run_id, not_started(e)), only_if_active=True)
        raise
    return proc


def fault_end(store: RunStore, run_id: str, message: str) -> tuple[str, str]:
    """(status, message) for a run ended by a fault of the machine, not of the run (a worker that could
    not be started, a disk or store that failed under it): "interrupted", so Resume continues from its
    last saved epoch, when it has one; "failed" otherwise. "failed" is not resumable: a resume whose
    fork met a momentary process limit made hours of training unresumable."""
    try:
        record = store.get(run_id)
    except StoreError:
        record = None
    if record is not None and record.state_sha:
        return "interrupted", f"{message}; resume it to go on from its last epoch"
    return "failed", message


def not_started(e: OSError | StoreError) -> str:
    return f"its worker process could not be started ({getattr(e, 'strerror', None) or e})"


def _stop_with_parent() -> None:
    import ctypes

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def record_exit(store: RunStore, run_id: str, code: int, pid: int) -> None:
    """A reaped worker's exit code (process ``pid``) as its run's end, when the worker could not record one
    itself, and only while the run is still that worker's (or has no process recorded: it ended at once)."""
    if code == 0:
        return
    status, message = exit_reason(code)
    try:
        record = store.get(run_id, damaged=True)
        if record is None or record.pid not in (None, pid):  # deleted, or another reader recorded the end and
            return                                             # a Resume's worker has the run now
        if status == "failed":  # it could not record its end: the store's disk, almost always (it records errors)
            status, message = fault_end(store, run_id, message)
        store.finish(run_id, status, message + last_output(store, run_id), only_if_active=True, seen_pid=record.pid)
    except StoreError:  # a full or read-only store: a later reader records it
        pass
