"""Glue between the trainer and the run store, shared by the CLI and the app's job registry."""
from __future__ import annotations

import threading
from functools import partial

import torch

from .config import RunSpec
from .data import Dataset
from .distill import load_teachers, teacher_targets
from .evaluate import LoadedRun
from .store import RunStore
from .trainer import Callback, Event, Trainer, TrainResult

CHECKPOINT_FORMAT = 1


def checkpoint_state(run: RunSpec, model: torch.nn.Module, data: Dataset, epoch: int) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return dict(format=CHECKPOINT_FORMAT, spec=run.to_dict(), state_dict=state, epoch=epoch,
                classes=list(data.classes), mean=list(data.mean), std=list(data.std))


class StoreWriter:
    """Records each epoch and checkpoint, so a crash or a stop keeps the last good state."""

    def __init__(self, store: RunStore, run: RunSpec, data: Dataset, run_id: str):
        self.store, self.run, self.data, self.run_id = store, run, data, run_id
        self.epoch = 0

    def __call__(self, event: Event) -> None:
        if event.kind == "epoch":
            metrics = {k: v for k, v in event.data.items() if k != "model"}
            self.epoch = metrics["epoch"]
            self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, event.data["model"], self.data,
                                                                     self.epoch))
            self.store.add_epoch(self.run_id, metrics)
        elif event.kind == "end":
            status = event.data["status"]
            if status == "stopped":  # mid-epoch weights are valid; keep them
                self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, event.data["model"], self.data,
                                                                         self.epoch))
            self.store.finish(self.run_id, status, event.data["message"], event.data["elapsed"])


def create_run(store: RunStore, run: RunSpec, data: Dataset, device: str = "") -> str:
    from .geometry import trace

    return store.create(run.net.name, run.to_dict(), params=trace(run.net).params, device=device)


def execute(store: RunStore, run: RunSpec, data: Dataset, callbacks: list[Callback] | None = None,
            stop: threading.Event | None = None, run_id: str | None = None,
            teachers: list[LoadedRun] | None = None) -> tuple[str, TrainResult]:
    """Train ``run`` on ``data``, recording everything in ``store``; returns (run id, result).

    ``teachers``: the spec's teachers when the caller has already loaded (and so checked) them."""
    targets = None
    if run.train.teachers:  # checked before a record exists, like the spec and device
        if teachers is None:
            teachers = load_teachers(store, run.train.teachers, run.data, list(data.classes))
        targets = partial(teacher_targets, store, run.train.teachers, teachers)
    trainer = Trainer(data, run, stop=stop, teacher_targets=targets)  # validates the spec and device
    run_id = run_id or create_run(store, run, data, str(trainer.device))
    trainer.callbacks = [StoreWriter(store, run, data, run_id), *(callbacks or [])]
    try:
        result = trainer.fit()
    except BaseException as e:
        store.finish(run_id, "failed", f"{type(e).__name__}: {e}")
        raise
    return run_id, result
