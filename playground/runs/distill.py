"""Knowledge distillation: a student learns from the averaged predictions of finished runs.

Small nets overfit the one-hot labels long before they run out of capacity; an
ensemble's soft predictions say which mistakes are reasonable and so regularise
better than label smoothing. The teachers' flip-averaged probabilities on every
training image are computed once, before the first step, and cached in the run
store, so the student pays nothing per batch. They come from the un-augmented
image: with flips and small crops the label barely moves, and keeping teachers
out of the loop is what makes this affordable on a CPU.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import UserError
from ..faults import CheckpointError
from ..training.checkpoint import LoadedRun, probabilities
from ..training.sources import same_source
from .loading import load_run
from .records import RunRecord
from .store import RunStore


class TeacherError(UserError, ValueError):
    """A teacher run cannot teach this student; the message says which and why."""


def load_teachers(store: RunStore, run_ids: list[str], data_source: str, classes: list[str]) -> list[LoadedRun]:
    """The teachers' models, after checking each finished on the student's data.

    A teacher trained on another source could have seen the student's test images,
    which would make the student's test accuracy a leak rather than a result.
    """
    teachers = []
    for run_id in run_ids:
        record = store.get(run_id)
        if record is None:
            raise TeacherError(f"teacher {run_id} is not in the run store {store.root}")
        if record.status != "finished":
            raise TeacherError(f"teacher {run_id} is {record.status}, not finished; only finished runs can teach")
        try:
            loaded = load_run(store, run_id)
        except CheckpointError as e:
            raise TeacherError(f"teacher {run_id} cannot be loaded: {e}") from None
        if not same_source(loaded.run.data, data_source):
            raise TeacherError(f"teacher {run_id} was trained on {loaded.run.data!r}, not on {data_source!r}; "
                               f"it may have seen this run's test images")
        if list(loaded.classes) != list(classes):
            raise TeacherError(f"teacher {run_id} predicts {len(loaded.classes)} classes "
                               f"({', '.join(loaded.classes[:3])}, ...), this data has {len(classes)}")
        teachers.append(loaded)
    return teachers


def candidates(store: RunStore, data_source: str) -> list[RunRecord]:
    """Finished runs that may teach a student on ``data_source``, best first."""
    runs = [r for r in store.list() if r.status == "finished" and same_source(r.spec.get("data", ""), data_source)]
    return sorted(runs, key=lambda r: -(r.best_acc or 0))


def _cache_key(store: RunStore, run_ids: list[str], x: np.ndarray) -> str:
    h = hashlib.sha256()
    for run_id in run_ids:
        h.update(f"{run_id}:{store.get(run_id).checkpoint_sha};".encode())
    h.update(str(x.shape).encode())
    h.update(hashlib.sha256(np.ascontiguousarray(x).data).digest())
    return h.hexdigest()[:24]


def teacher_targets(store: RunStore, run_ids: list[str], teachers: list[LoadedRun], x: np.ndarray,
                    device: torch.device) -> np.ndarray:
    """Mean flip-TTA probabilities of ``teachers`` on ``x`` (N, classes), float32, cached per
    teacher checkpoints and images."""
    key = _cache_key(store, run_ids, x)
    probs = store.load_teacher_targets(key)
    if probs is None:
        probs = sum(probabilities(t, x, device, tta=True)
                    for t in teachers) / len(teachers)  # in the training's worker: its slot bounds the work
        probs = probs.astype(np.float32)
        store.save_teacher_targets(key, probs)
    return probs
