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

import time
from contextlib import suppress
from functools import partial

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import UserError
from ..training.checkpoint import LoadedRun, check_state_dict, one_line, short_load_error
from ..specs.config import RunSpec, TrainSpec
from ..specs.serde import SpecError, short
from ..training.batch_augment import BatchAugment
from ..training.builder import build_model
from ..training.data import Dataset
from ..training.sources import DataError
from ..training.optim import make_optimizer
from ..training.trainer import (BATCH, END, EPOCH, START, TEACHERS, TESTING, Callback, Event, Trainer, StopSignal,
                                 TrainResult, metrics_of)
from . import lifecycle
from ..faults import CheckpointError, StoreError
from .distill import load_teachers, teacher_targets
from .records import PHASE_TEACHERS, PHASE_TESTING, PHASE_TRAINING, check_metrics
from .store import RunStore

CHECKPOINT_FORMAT = 1
RESUME_KEYS = ("epoch", "step", "elapsed", "epochs", "model", "optimizer", "scheduler", "scaler", "ema", "torch_rng",
               "cuda_rng", "source_rng", "augment")  # what Trainer.fit reads from a resume state
PROGRESS_EVERY_S = 1.0  # how often batch points reach the store
POINT_EVERY_S = 0.25  # at most this many seconds between two stored batch points


class WorkerError(UserError, RuntimeError):
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
        if event.kind == START:
            self.steps, self.epoch = d["steps"], d["first_epoch"] - 1
        elif event.kind == TEACHERS:
            self.store.beat(self.run_id, f"computing {d['count']} teachers' predictions on {d['images']:,} "
                                         f"training images", PHASE_TEACHERS)
        elif event.kind == BATCH:
            if now - self.last_point >= POINT_EVERY_S or d["batch"] == d["steps"] // max(1, self.run.train.epochs):
                self.points.append({k: d[k] for k in ("step", "epoch", "loss", "acc", "lr", "img_per_s")})
                self.last_point = now
            if now - self.last_flush >= PROGRESS_EVERY_S:
                self.flush()
        elif event.kind == TESTING:  # a test pass is a pause in the batch points: the Train page says why
            self.flush()
            views = f" × {d['views']} TTA views" if d["views"] > 1 else ""
            self.store.beat(self.run_id, f"testing epoch {d['epoch']} on {d['images']:,} images{views}", PHASE_TESTING)
        elif event.kind == EPOCH:
            self.flush()
            self.epoch = d["epoch"]
            self.store.save_state(self.run_id, d["state"])
            self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, d["model"], self.data, self.epoch))
            self.store.add_epoch(self.run_id, metrics_of(event))
            self.store.beat(self.run_id, "", PHASE_TRAINING)
        elif event.kind == END:
            self.flush()
            if d["status"] == "stopped":  # mid-epoch weights are valid; keep them (resume uses the epoch state)
                with suppress(StoreError):  # a full disk keeps the last epoch's checkpoint: still "stopped"
                    self.store.save_checkpoint(self.run_id, checkpoint_state(self.run, d["model"], self.data,
                                                                             self.epoch))
            self.store.finish(self.run_id, d["status"], d["message"], d["elapsed"])


def resume_state(store: RunStore, run_id: str, run: RunSpec) -> dict:
    """The run's saved epoch state, once it is known that ``Trainer.fit`` can continue ``run`` from it;
    CheckpointError in one line otherwise. Its hash only says the file is the one saved: a file saved
    by a bug or another version, or replaced together with its hash, is checked here, before the run's
    status changes, so a refused run stays stopped and can still be resumed once its state is restored."""
    try:
        state = store.load_state(run_id)
    except CheckpointError as e:
        raise CheckpointError(f"run {run_id} cannot be resumed: "
                              f"{short_load_error(str(e), store.state_path(run_id))}") from None
    check_resume_state(state, run, f"run {run_id} cannot be resumed: its saved state {store.state_path(run_id)}")
    return state


def check_resume_state(state: object, run: RunSpec, where: str) -> None:
    """CheckpointError, one line starting with ``where``, unless ``state`` holds every RESUME_KEY with the
    type Trainer.fit expects, the metrics of each epoch up to its own, and weights, EMA weights, optimizer
    state and random generator states that load into the run's net, optimizer and generators."""
    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{where} {problem}")

    if not isinstance(state, dict):
        raise refuse(f"is not a resume state (it holds a {type(state).__name__}, not a dict)")
    if missing := [k for k in RESUME_KEYS if k not in state]:
        raise refuse(f"is not a resume state (it lacks {', '.join(missing)})")
    t, epoch, epochs = run.train, state["epoch"], state["epochs"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= t.epochs:
        raise refuse(f"has no valid epoch number (a whole number from 1 to {t.epochs}, not {short(epoch)})")
    for key, kinds in (("step", int), ("elapsed", (int, float)), ("loss_reference", (int, float, type(None)))):
        value = state.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool) or value is not None and not 0 <= value < 1e12:
            raise refuse(f"has no valid {key} ({short(value)})")
    if not isinstance(epochs, list) or len(epochs) != epoch:
        raise refuse(f"does not hold the metrics of its {epoch} epoch(s) (it holds {short(epochs)})")
    for number, metrics in enumerate(epochs, 1):
        try:
            check_metrics(metrics, number)
        except ValueError as e:
            raise refuse(f"holds damaged metrics for epoch {number} ({e})") from None
    model = build_model(run.net)
    check_state_dict(model, state["model"], where)
    if t.ema:
        check_state_dict(AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True),
                          state["ema"], f"{where} (its EMA weights)")
    for key, load in (("optimizer", lambda s: _load_optimizer_state(model, t, s)),
                      ("torch_rng", lambda s: torch.Generator().set_state(s)),
                      ("source_rng", lambda s: setattr(np.random.default_rng().bit_generator, "state", s)),
                      ("augment", lambda s: BatchAugment(run.aug, (0.5, 0.5, 0.5), t.seed).set_state(s))):
        try:  # into objects like those Trainer.fit builds (the augmentation's mean does not change its generators)
            load(state[key])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as e:
            raise refuse(f"holds a {key} state that does not fit the run ({type(e).__name__}: {one_line(e, 120)})") \
                from None
    for key in ("scheduler", "scaler"):
        if not isinstance(state[key], dict):
            raise refuse(f"holds no {key} state (a dict), but {short(state[key])}")
    if state["cuda_rng"] is not None and not (isinstance(state["cuda_rng"], (list, tuple)) and all(
            isinstance(g, torch.Tensor) and g.dtype == torch.uint8 for g in state["cuda_rng"])):
        raise refuse(f"holds no CUDA generator states (a list of byte tensors), but {short(state['cuda_rng'])}")


def _load_optimizer_state(model: torch.nn.Module, train: TrainSpec, state: object) -> None:
    """Load ``state`` into the optimizer Trainer.fit makes for ``model``; ValueError unless each parameter's
    buffers (momentum, Adam's moments) have its shape, which torch only finds out at the first step."""
    opt = make_optimizer(model, train)
    opt.load_state_dict(state)
    for param, buffers in opt.state.items():
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                raise ValueError(f"its {name} is {tuple(value.shape)} for a parameter of {tuple(param.shape)}")


def failure_message(e: BaseException) -> str:
    """What a run that failed with ``e`` says: store, checkpoint, data and spec errors already name their cause."""
    if isinstance(e, SpecError):
        return "invalid spec: " + "; ".join(e.problems)
    return str(e) if isinstance(e, (StoreError, CheckpointError, DataError)) else f"{type(e).__name__}: {e}"


# What ends a run through no fault of its own: a run with a saved epoch then ends "interrupted" (fault_end)
MACHINE_FAULTS = (StoreError, OSError, DataError)


def record_error(store: RunStore, run_id: str, e: BaseException) -> bool:
    """Record the end of an active run after the error ``e``: a machine fault (the disk, the store, the data)
    leaves a run with a saved epoch resumable; anything else fails it."""
    if isinstance(e, MACHINE_FAULTS):
        return record_end(store, run_id, *lifecycle.fault_end(store, run_id, failure_message(e)))
    return record_end(store, run_id, "failed", failure_message(e))


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
            stop: StopSignal | None = None, run_id: str | None = None,
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
        record_error(store, run_id, e)
        raise
    return run_id, result
