"""Glue between the trainer and the run store: what a training records, and where.

Every epoch writes the resume state, the weights and the metrics; batches write thinned
progress points at a bounded rate; the end writes the status. worker.py runs this in its
own process for the CLI and the app alike; tests call ``execute`` directly.

A store that fails while the run trains (a full or read-only disk, a damaged database)
ends the run "failed" with the cause in its message; when even that status cannot be
written, the error is raised as it is (one line) and the next reader of the store records
the run (lifecycle.reconcile), since its worker process is gone by then.
"""
from __future__ import annotations

import threading
import time
from functools import partial

import torch

from ..results.evaluate import LoadedRun
from ..specs.config import RunSpec
from ..specs.serde import SpecError
from ..training.data import Dataset
from ..training.sources import DataError
from ..training.distill import load_teachers, teacher_targets
from ..training.trainer import Callback, Event, Trainer, TrainResult, metrics_of
from . import lifecycle
from .faults import CheckpointError, StoreError
from .store import RunStore

CHECKPOINT_FORMAT = 1
PROGRESS_EVERY_S = 1.0  # how often batch points reach the store
POINT_EVERY_S = 0.25  # at most this many seconds between two stored batch points


class WorkerError(RuntimeError):
    """A worker cannot take this run (not queued, already taken, gone)."""


def checkpoint_state(run: RunSpec, model: torch.nn.Module, data: Dataset, epoch: int) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return dict(format=CHECKPOINT_FORMAT, spec=run.to_dict(), state_dict=state, epoch=epoch,
                classes=list(data.classes), mean=list(data.mean), std=list(data.std))


class StoreWriter:
    """Records each epoch (resume state first, then weights and metrics) and the end, so a crash
    or a stop keeps the last good state; batch points are buffered and written about once a second."""

    def __init__(self, store: RunStore, run: RunSpec, data: Dataset, run_id: str):
        self.store, self.run, self.data, self.run_id = store, run, data, run_id
        self.epoch, self.steps = 0, 0
        self.points: list[dict] = []
        self.last_point = self.last_flush = 0.0

    def flush(self) -> None:
        if self.points:
            self.store.progress(self.run_id, self.points, self.steps)
            self.points = []
        self.last_flush = time.monotonic()

    def __call__(self, event: Event) -> None:
        d, now = event.data, time.monotonic()
        if event.kind == "start":
            self.steps, self.epoch = d["steps"], d["first_epoch"] - 1
        elif event.kind == "teachers":
            self.store.beat(self.run_id, f"computing {d['count']} teachers' predictions on {d['images']:,} "
                                         f"training images")
        elif event.kind == "batch":
            if now - self.last_point >= POINT_EVERY_S or d["batch"] == d["steps"] // max(1, self.run.train.epochs):
                self.points.append({k: d[k] for k in ("step", "epoch", "loss", "acc", "lr", "img_per_s")})
                self.last_point = now
            if now - self.last_flush >= PROGRESS_EVERY_S:
                self.flush()
        elif event.kind == "testing":  # a test pass is a pause in the batch points: the Train page says why
            self.flush()
            views = f" × {d['views']} TTA views" if d["views"] > 1 else ""
            self.store.beat(self.run_id, f"testing epoch {d['epoch']} on {d['images']:,} images{views}")
        elif event.kind == "epoch":
            self.flush()
            self.epoch = d["epoch"]
            self.store.save_state(self.run_id, d["state"])
            self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, d["model"], self.data, self.epoch))
            self.store.add_epoch(self.run_id, metrics_of(event))
            self.store.beat(self.run_id, "")
        elif event.kind == "end":
            self.flush()
            if d["status"] == "stopped":  # mid-epoch weights are valid; keep them (resume uses the epoch state)
                self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, d["model"], self.data,
                                                                         self.epoch))
            self.store.finish(self.run_id, d["status"], d["message"], d["elapsed"])


def failure_message(e: BaseException) -> str:
    """What a run that failed with ``e`` says: store, checkpoint, data and spec errors already name their cause."""
    if isinstance(e, SpecError):
        return "invalid spec: " + "; ".join(e.problems)
    return str(e) if isinstance(e, (StoreError, CheckpointError, DataError)) else f"{type(e).__name__}: {e}"


def record_end(store: RunStore, run_id: str, status: str, message: str) -> bool:
    """Record the end of an active run after an error; False if the store cannot be written
    (that must not hide the error being handled: the next reader records the run)."""
    try:
        return store.finish(run_id, status, message, only_if_active=True)
    except (StoreError, OSError):
        return False


def create_run(store: RunStore, run: RunSpec, device: str = "", owner: str = "") -> str:
    from ..specs.geometry import trace

    return store.create(run.net.name, run.to_dict(), params=trace(run.net).params, device=device, owner=owner)


def execute(store: RunStore, run: RunSpec, data: Dataset, callbacks: list[Callback] | None = None,
            stop: threading.Event | None = None, run_id: str | None = None,
            teachers: list[LoadedRun] | None = None, resume: dict | None = None) -> tuple[str, TrainResult]:
    """Train ``run`` on ``data``, recording everything in ``store``; returns (run id, result).

    ``teachers``: the spec's teachers when the caller has already loaded (and so checked) them.
    ``resume``: the run's saved state (``store.load_state``); training continues after its epoch."""
    targets = None
    if run.train.teachers:  # checked before a record exists, like the spec and device
        if teachers is None:
            teachers = load_teachers(store, run.train.teachers, run.data, list(data.classes))
        targets = partial(teacher_targets, store, run.train.teachers, teachers)
    trainer = Trainer(data, run, stop=stop, teacher_targets=targets)  # validates the spec and device
    run_id = run_id or create_run(store, run, str(trainer.device))
    if not store.claim(run_id, *lifecycle.this_process(), str(trainer.device)):
        record = store.get(run_id)
        raise WorkerError(f"run {run_id} is {record.status if record else 'not in the store'}, not queued; "
                          f"another worker has it or it has ended")
    if resume is not None:  # what came after the saved epoch is redone; the epochs before it are the state's
        store.rewind(run_id, resume["epoch"])
        for metrics in resume["epochs"]:
            store.add_epoch(run_id, metrics)
    trainer.callbacks = [StoreWriter(store, run, data, run_id), *(callbacks or [])]
    try:
        result = trainer.fit(resume)
    except KeyboardInterrupt:
        record_end(store, run_id, "interrupted", "interrupted (Ctrl-C twice); resume it to go on from its last epoch")
        raise
    except BaseException as e:
        record_end(store, run_id, "failed", failure_message(e))
        raise
    return run_id, result
