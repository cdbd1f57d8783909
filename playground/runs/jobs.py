"""What the app does with trainings: start a worker process per run, remember its handle,
and stop, resume, rename or delete runs on behalf of their owner. No Streamlit here, and no
training in this process: the web server never holds the training set.

Progress and status live in the run store, written by the worker (worker.py); this module
only polls its children (so their exit codes become reasons, and no zombie looks alive) and
lets lifecycle.reconcile record the workers that died.
"""
from __future__ import annotations

import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

from .. import settings
from ..specs import limits
from ..specs.config import RunSpec, checked, data_problems
from ..specs.serde import SpecError
from ..training.data import Dataset
from ..training.device import pick_device
from . import lifecycle
from ..faults import CheckpointError, RunGone, StoreError
from .distill import load_teachers
from .runner import create_run, resume_state
from .records import DAMAGED, RESUMABLE, RunRecord
from .store import RunStore

DELETE_WAIT_S = 10.0  # deleting a training run stops it; past this it is killed


class JobError(RuntimeError):
    """A run cannot be started, stopped, resumed, renamed or deleted; the message says why."""


def max_jobs() -> int:
    return settings.whole("PLAYGROUND_MAX_JOBS")


def owns(record: RunRecord, owner: str) -> bool:
    """In local mode the one user owns every run, CLI runs included."""
    return not settings.hosted() or (bool(record.owner) and record.owner == owner)


class Launcher:
    def __init__(self, store_root: str | Path | None = None, limit: int | None = None):
        self.store = RunStore(store_root)
        self.limit = limit if limit is not None else max_jobs()
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # -- reading -------------------------------------------------------------
    def refresh(self) -> None:
        """Reap finished children and record dead workers (every reader calls this first)."""
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self._procs[run_id]
                lifecycle.record_exit(self.store, run_id, code, proc.pid)
            children = set(self._procs)  # one that died since its poll is recorded at the next one
        lifecycle.reconcile(self.store, children)

    def runs(self) -> list[RunRecord]:
        self.refresh()
        return [self._as_seen(r) for r in self.store.list()]

    def get(self, run_id: str) -> RunRecord | None:
        """The run's record; a damaged row as its "damaged" record (pages show it, its owner may delete it)."""
        self.refresh()
        record = self.store.get(run_id, damaged=True)
        return None if record is None else self._as_seen(record)

    def _as_seen(self, record: RunRecord) -> RunRecord:
        with self._lock:
            children = set(self._procs)
        return lifecycle.as_seen(self.store, record, children)

    # -- changing ------------------------------------------------------------
    def _owned(self, owner: str, run_id: str, verb: str) -> RunRecord:
        """The run, if ``owner`` may ``verb`` it; a damaged one can only be deleted (its message says why)."""
        record = self.get(run_id)
        if record is None:
            raise JobError(f"there is no run {run_id} (deleted?)")
        if not owns(record, owner):
            raise JobError(f"run {run_id} was started by another visitor; you can only {verb} runs you started")
        if record.status == DAMAGED and verb != "delete":
            raise JobError(record.message)
        return record

    def _check_capacity(self, owner: str) -> None:
        """Under ``_lock``. A run whose dead worker could not be recorded yet holds no slot (it shows as ended)."""
        children = set(self._procs)
        active = [r for r in self.store.active() if lifecycle.as_seen(self.store, r, children).active]
        mine = next((r for r in active if r.owner == owner), None) if settings.hosted() else None
        if mine is not None:
            raise JobError(f"a training ({mine.name}, run {mine.id}) is already running for you; stop it or wait "
                           f"for it to finish")
        if len(active) >= self.limit:
            raise JobError(f"the server is busy: {len(active)} of {self.limit} training slots are in use; "
                           f"try again when a run finishes")

    def start(self, owner: str, run: RunSpec, data: Dataset) -> str:
        """Check everything that can be checked here (the spec, its fit to ``data``, the device, the
        teachers), record the run as queued and start its worker."""
        checked(run)
        if problems := data_problems(run.net, data.classes, data.x_test.shape[1:]):
            raise SpecError(problems)
        pick_device(run.train.device)  # fail now, in the page, not in the worker
        load_teachers(self.store, run.train.teachers, run.data, list(data.classes))
        self.refresh()
        with self._lock:
            self._check_capacity(owner)
            run_id = create_run(self.store, run, run.train.device, owner)
            self._spawn(run_id)
            with suppress(StoreError):  # the run has started: pruning is housekeeping, the next start tries again
                self._prune()
        return run_id

    def _prune(self) -> None:
        """Keep the tier's ``kept_runs`` newest runs, deleting the oldest ended ones past it: on the hosted
        demo, one visitor starting run after run of a 1.8M-parameter net adds 21 MiB a run, toward the full
        disk that every visitor would then meet. Nothing active is ever deleted."""
        for run_id in self.store.ended_past_newest(limits.current().kept_runs):
            self.store.delete(run_id)

    def resume(self, owner: str, run_id: str) -> None:
        """Requeue a stopped or interrupted run and start its worker, once its spec and saved state are
        known to be usable: a refused run is left as it was, still resumable."""
        record = self._owned(owner, run_id, "resume")
        if record.status not in RESUMABLE or not record.state_sha:
            raise JobError(f"run {run_id} is {record.status}{'' if record.state_sha else ' with no saved epoch'}; "
                           f"only a stopped or interrupted run with a finished epoch can be resumed")
        try:
            resume_state(self.store, run_id, RunSpec.from_dict(record.spec))
        except SpecError as e:
            raise JobError(f"run {run_id} cannot be resumed: its stored spec is invalid: {'; '.join(e.problems)}") \
                from None
        except CheckpointError as e:
            raise JobError(str(e)) from None
        with self._lock:
            self._check_capacity(owner)
            if not self.store.requeue(run_id):
                raise JobError(f"run {run_id} changed meanwhile; look again")
            self._spawn(run_id)

    def stop(self, owner: str, run_id: str) -> RunRecord:
        record = self._owned(owner, run_id, "stop")
        if not record.active:
            raise JobError(f"run {run_id} already ended ({record.status}); there is nothing to stop")
        lifecycle.request_stop(self.store, record)
        return record

    def label(self, owner: str, run_id: str, name: str | None = None, note: str | None = None) -> tuple[str, str]:
        """Rename the run, set its note, or both (RunStore.label), if ``owner`` may; its name and note now."""
        self._owned(owner, run_id, "rename")
        try:
            return self.store.label(run_id, name, note)
        except SpecError as e:
            raise JobError(f"run {run_id} kept its name and note: {e}") from None
        except RunGone:
            raise JobError(f"there is no run {run_id} (deleted?)") from None

    def delete(self, owner: str, run_id: str) -> None:
        """Delete a run and its files; a run still training is stopped (and if need be killed) first."""
        record = self._owned(owner, run_id, "delete")
        if record.active:
            lifecycle.request_stop(self.store, record)
            end = time.time() + DELETE_WAIT_S
            while time.time() < end and (r := self.get(run_id)) is not None and r.active:
                time.sleep(0.1)
            record = self.get(run_id)
            if record is not None and record.active:
                if record.host != lifecycle.this_host():
                    raise JobError(f"run {run_id} is training on {record.host}; stop it there before deleting it")
                lifecycle.kill(record)
        self.store.delete(run_id)

    # -- processes -----------------------------------------------------------
    def _spawn(self, run_id: str) -> None:
        """The run's worker process; when it cannot be started (no memory, no process slots, a log that
        cannot be opened, a store that cannot record its pid) the run ends saying why (lifecycle.start_worker),
        instead of waiting as queued for a worker, and no process is left behind."""
        try:
            self._procs[run_id] = lifecycle.start_worker(self.store, run_id)
        except (OSError, StoreError) as e:
            raise JobError(f"run {run_id} {lifecycle.not_started(e)}") from None
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, daemon=True, name="playground-workers")
            self._watcher.start()

    def _watch(self) -> None:
        """Within a second of a worker's death its run says why, even with no page open."""
        while True:
            time.sleep(1.0)
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a locked or damaged store: try again next second
                continue
            with self._lock:
                if not self._procs:
                    self._watcher = None
                    return

    def wait(self, run_id: str, timeout: float = 60.0) -> RunRecord | None:
        """For tests and scripts: block until the run ends."""
        end = time.time() + timeout
        while (record := self.get(run_id)) is not None and record.active and time.time() < end:
            time.sleep(0.1)
        return record
