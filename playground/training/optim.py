"""The optimizer and the learning-rate schedule a training spec names."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..specs.config import TrainSpec


def make_optimizer(model: nn.Module, t: TrainSpec) -> torch.optim.Optimizer:
    """SGD (nesterov), Adam or AdamW; no weight decay on biases and norm parameters. Frozen parameters
    (whitening, fixed BN scales) stay in the groups: they get no gradient, so no step, and the groups
    keep the shape that stored optimizer states (resume) were saved with."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.max_lr, momentum=t.momentum, nesterov=t.momentum > 0)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.max_lr)
    return torch.optim.AdamW(groups, lr=t.max_lr)


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """LR multiplier at ``step``: onecycle = linear warmup from 0.1x then linear decay to
    0.001x, cosine = linear warmup then cosine decay, constant = 1. Safe for tiny runs."""
    if schedule == "constant":
        return 1.0
    warm = int(warmup * total)
    if step < warm:
        return 0.1 + 0.9 * step / warm if schedule == "onecycle" else (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    if schedule == "onecycle":
        return 1.0 - frac * (1.0 - 1e-3)
    return 0.5 * (1 + math.cos(math.pi * frac))


def make_schedule(opt: torch.optim.Optimizer, t: TrainSpec, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(t.schedule, step, total_steps, t.warmup))
