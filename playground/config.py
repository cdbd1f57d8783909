"""Training spec and the run bundle (architecture + augmentation + training + data).

The bundle is what a saved run, the CLI, the share link and the exported
script all carry, so a run can always be reproduced from its record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import serde
from .arch import Net
from .augment import AugSpec, default_aug, validate_aug
from .geometry import validate

def hosted() -> bool:
    """Hosted mode (PLAYGROUND_HOSTED=1), for a demo that strangers share: visitors change only the
    runs they started, and the server and its workers trade speed for memory."""
    return os.environ.get("PLAYGROUND_HOSTED", "").strip().lower() in ("1", "true", "yes", "on")


TRAIN_VERSION = 1
MAX_EPOCHS = 1000
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainSpec(serde.JsonSpec):
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"  # SGD uses nesterov momentum
    schedule: str = "onecycle"
    max_lr: float = 0.2
    warmup: float = 0.2  # fraction of steps spent warming up (onecycle, cosine)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    train_subset: int | None = None
    test_subset: int | None = None
    tta: bool = False  # flip test-time augmentation at evaluation
    tta_shift: int = 0  # also average the views moved by up to this many px (3x3 grid); 0 turns it off
    ema: float = 0.0  # EMA decay of the weights; 0 turns it off
    loader_threads: int = 1  # 0: augment inline; 1: augment the next batch in a background thread
    eval_every: int = 1  # test every N epochs and always after the last (a test pass costs ~5% of a CPU epoch)
    teachers: list[str] = field(default_factory=list)  # finished run ids to distil from (same store, same data)
    distill_weight: float = 0.9  # share of the loss that is the teachers' soft targets
    distill_temperature: float = 4.0
    version: int = TRAIN_VERSION

    SPEC_VERSION = TRAIN_VERSION

    @classmethod
    def _validated(cls, spec: "TrainSpec") -> "TrainSpec":
        return serde.valid_or_raise(spec, validate_train(spec))


def validate_train(t: TrainSpec) -> list[str]:
    p = []
    if not (1 <= t.epochs <= MAX_EPOCHS):
        p.append(f"epochs must be between 1 and {MAX_EPOCHS}, got {t.epochs}")
    if not (1 <= t.batch_size <= 4096):
        p.append(f"batch size must be between 1 and 4096, got {t.batch_size}")
    if not (1 <= t.eval_every <= 1000):
        p.append(f"eval_every must be between 1 and 1000 epochs, got {t.eval_every}")
    if t.optimizer not in OPTIMIZERS:
        p.append(f"unknown optimizer {t.optimizer!r} (choose one of {', '.join(OPTIMIZERS)})")
    if t.schedule not in SCHEDULES:
        p.append(f"unknown schedule {t.schedule!r} (choose one of {', '.join(SCHEDULES)})")
    if not (0 < t.max_lr <= 10):
        p.append(f"max LR must be in (0, 10], got {t.max_lr}")
    if not (0 <= t.warmup < 1):
        p.append(f"warmup must be a fraction in [0, 1), got {t.warmup}")
    if not (0 <= t.momentum < 1):
        p.append(f"momentum must be in [0, 1), got {t.momentum}")
    if not (0 <= t.weight_decay < 1):
        p.append(f"weight decay must be in [0, 1), got {t.weight_decay}")
    if not (0 <= t.label_smoothing < 1):
        p.append(f"label smoothing must be in [0, 1), got {t.label_smoothing}")
    if t.device not in DEVICES:
        p.append(f"unknown device {t.device!r} (choose one of {', '.join(DEVICES)})")
    for name in ("train_subset", "test_subset"):
        v = getattr(t, name)
        if v is not None and v < 1:
            p.append(f"{name.replace('_', ' ')} must be at least 1 image, got {v}")
    if not (0 <= t.tta_shift <= 4):
        p.append(f"TTA shift must be between 0 and 4 px, got {t.tta_shift}")
    if not (0 <= t.ema < 1):
        p.append(f"EMA decay must be in [0, 1), got {t.ema}")
    if not (0 <= t.distill_weight <= 1):
        p.append(f"distillation weight must be in [0, 1], got {t.distill_weight}")
    if not (0 < t.distill_temperature <= 100):
        p.append(f"distillation temperature must be in (0, 100], got {t.distill_temperature}")
    if len(set(t.teachers)) != len(t.teachers):
        p.append("teachers are listed more than once")
    if t.loader_threads not in (0, 1):
        p.append(f"loader threads must be 0 or 1, got {t.loader_threads}")
    return p


@dataclass
class RunSpec(serde.JsonSpec):
    net: Net
    aug: AugSpec = field(default_factory=default_aug)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: str = ""  # the data source the run was trained on

    @classmethod
    def _validated(cls, spec: "RunSpec") -> "RunSpec":
        return checked(spec)


def problems(run: RunSpec) -> list[str]:
    """Every problem across the three specs, prefixed by which spec it is in."""
    out = [f"architecture: {p}" for p in validate(run.net)]
    out += [f"augmentation: {p}" for p in validate_aug(run.aug)]
    out += [f"training: {p}" for p in validate_train(run.train)]
    return out


def checked(run: RunSpec) -> RunSpec:
    return serde.valid_or_raise(run, problems(run))

