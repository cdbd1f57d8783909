"""The LR range test (Smith, 2015; fastai's ``lr_find``): train a throwaway copy of a run's net for a few batches
while the learning rate rises exponentially, and read off the largest rate at which the loss still falls.

It trains what the run would (net, augmentation, optimizer, batch size, precision) on a fresh initialisation,
at full resolution, without teachers or EMA, and stops early once the smoothed loss passes ``diverge`` times its
minimum. The suggestion for OneCycle's max LR is the rate at the smoothed loss's minimum divided by 10; the rate of
steepest descent is reported beside it."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from ..specs.config import RunSpec
from .data import Dataset
from .predict import normalize
from .device import configure_threads
from .trainer import Trainer, seed_everything, train_loss

SMOOTHING = 0.98  # the loss's exponential moving average, bias-corrected as fastai does
MIN_STEPS_FOR_SUGGESTION = 5
MAX_STEPS = 300  # a test's batches: a few minutes of one core for a net the hosted tier allows


@dataclass
class RangeTest:
    """The curve so far (one point per batch) and, once it ends, why and what it suggests."""

    start: float
    end: float
    steps: int
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    ended: str = ""  # "", or why the test ended: the last step, a diverging loss, a NaN loss or a stop
    suggested_max_lr: float | None = None
    steepest_lr: float | None = None
    min_loss_lr: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> RangeTest:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def suggest(self) -> None:
        """The suggestion from the finite part of the smoothed curve (None with fewer than 5 points)."""
        pts = [(lr, s) for lr, s in zip(self.lrs, self.smoothed) if s is not None and math.isfinite(s)]
        if len(pts) < MIN_STEPS_FOR_SUGGESTION:
            return
        lrs, sm = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        lowest = int(np.argmin(sm))
        self.min_loss_lr = float(lrs[lowest])
        self.suggested_max_lr = max(self.start, self.min_loss_lr / 10)
        slope = np.gradient(sm[:lowest + 1], np.log(lrs[:lowest + 1])) if lowest >= 1 else np.zeros(1)
        self.steepest_lr = float(lrs[int(np.argmin(slope))])


def check_range(start: float, end: float, steps: int, max_steps: int) -> list[str]:
    """What is wrong with a test's range, one line each, naming the flag and its limit."""
    problems = []
    if not (math.isfinite(start) and 0 < start):
        problems.append(f"start: the first LR must be a positive number, got {start:g}")
    if not (math.isfinite(end) and start < end <= 100):
        problems.append(f"end: the last LR must be above the first ({start:g}) and at most 100, got {end:g}")
    if not (MIN_STEPS_FOR_SUGGESTION * 2 <= steps <= max_steps):
        problems.append(f"steps: between {MIN_STEPS_FOR_SUGGESTION * 2} and {max_steps} batches, got {steps}")
    return problems


def lr_at(step: int, start: float, end: float, steps: int) -> float:
    """The rate of batch ``step`` (0-based): from ``start`` to ``end`` in equal ratios over ``steps`` batches."""
    return start * (end / start) ** (step / max(1, steps - 1))


def range_test(data: Dataset, run: RunSpec, start: float = 1e-5, end: float = 10.0, steps: int = 100,
               diverge: float = 4.0, on_point: Callable[[RangeTest], None] | None = None,
               stopped: Callable[[], bool] = lambda: False) -> RangeTest:
    """Run the test; ``on_point`` sees the curve after every batch, ``stopped`` ends it early. A loss that is
    NaN or passes ``diverge`` times the smoothed minimum ends it with the curve so far."""
    throwaway = replace(run, train=replace(run.train, teachers=[], ema=0.0, low_res=0, low_res_epochs=0,
                                           epochs=max(1, run.train.epochs)))
    trainer = Trainer(data, throwaway)
    if trainer.device.type == "cpu":
        configure_threads()
    seed_everything(throwaway.train.seed)  # the same test twice draws the same curve, as fit() does
    loop = trainer.prepare()
    dev, amp = trainer.device, trainer.settings.amp_dtype
    result, avg, lowest, t0 = RangeTest(start, end, steps), 0.0, math.inf, time.perf_counter()
    loop.model.train()
    epoch = 0
    while len(result.lrs) < steps and not result.ended:
        epoch += 1
        before = len(result.lrs)
        for xb_u8, yb, _ in loop.source.epoch(epoch):
            k = len(result.lrs)
            if k >= steps:
                break
            if stopped():
                result.ended = "stopped"
                break
            lr = lr_at(k, start, end, steps)
            for group in loop.opt.param_groups:
                group["lr"] = lr
            xb = normalize(torch.as_tensor(xb_u8).to(dev), loop.mean, loop.std)
            yb = torch.as_tensor(yb).to(dev)
            with torch.autocast(dev.type, amp, enabled=amp is not None):
                loss = train_loss(loop.model(xb), yb, throwaway.train, loop.log_probs)
            value = float(loss.detach().float())
            result.lrs.append(lr)
            result.losses.append(value if math.isfinite(value) else None)
            if not math.isfinite(value):
                result.smoothed.append(None)
                result.ended = f"the loss became {value} at LR {lr:.3g}"
                break
            avg = SMOOTHING * avg + (1 - SMOOTHING) * value
            smooth = avg / (1 - SMOOTHING ** (k + 1))
            result.smoothed.append(smooth)
            lowest = min(lowest, smooth)
            if k >= MIN_STEPS_FOR_SUGGESTION and smooth > diverge * lowest:
                result.ended = f"the smoothed loss passed {diverge:g}× its minimum at LR {lr:.3g}"
            loop.opt.zero_grad(set_to_none=True)
            loop.scaler.scale(loss).backward()
            loop.scaler.step(loop.opt)
            loop.scaler.update()
            result.seconds = time.perf_counter() - t0
            if on_point is not None:
                on_point(result)
            if result.ended:
                break
        if len(result.lrs) == before and not result.ended:
            result.ended = "the training set gave no batch"
    result.ended = result.ended or f"all {steps} steps ran"
    result.suggest()
    result.seconds = time.perf_counter() - t0
    return result
