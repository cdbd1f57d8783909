"""Throughput measurements: our trainer against a seed-style reference pipeline
(per-image Albumentations in a torch DataLoader with 2 workers, NCHW, batch 128),
on the same network, in the same process, so the ratio is meaningful."""
from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..specs.augment import build_pipeline, default_aug
from ..specs.config import RunSpec, TrainSpec, checked
from ..specs.presets import preset_net
from .builder import build_model
from .data import load_dataset
from .device import cpu_bf16_units, precision_name, speed_settings
from .trainer import BATCH, Trainer


def _usable_cpus() -> int:
    """The CPUs this process may run on (taskset and cgroups' cpusets narrow it; os.cpu_count does not)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_description() -> str:
    """What a printed figure must name: the CPU model, family/model, visible CPUs, hypervisor, bf16 units
    and torch's kernel level (CPUs change between machines; only ratios from one run compare)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    fields = dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line))
    virtual = f", {fields['Hypervisor vendor']} guest" if "Hypervisor vendor" in fields else ""
    return (f"{fields.get('Model name', 'unknown CPU')} (family {fields.get('CPU family', '?')} model "
            f"{fields.get('Model', '?')}), {_usable_cpus()} usable CPUs{virtual}, "
            f"{', '.join(cpu_bf16_units()) or 'no bf16 units'}, "
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})")


def bench_trainer(preset: str, data: str | None, steps: int, batch_size: int, warmup: int = 3,
                  reference: bool = True, bf16: bool = False) -> dict:
    checked(bench_run(preset, batch_size, bf16))  # the memory a batch needs, before the data loads
    ds = load_dataset(data)
    ours = our_img_per_s(ds, preset, steps, batch_size, warmup, bf16)
    out = dict(preset=preset, batch_size=batch_size, steps=steps, img_per_s=round(ours, 1),
               threads=torch.get_num_threads(), precision=precision_name(speed_settings(torch.device("cpu"), bf16)))
    if reference:
        ref = reference_img_per_s(ds, preset, steps, batch_size, warmup)
        out.update(reference_img_per_s=round(ref, 1), ratio=round(ours / ref, 2))
    return out


def bench_run(preset: str, batch_size: int, bf16: bool, images: int | None = None) -> RunSpec:
    """One epoch of ``images`` training images (None: all) of the preset, as the benchmark trains it."""
    return RunSpec(preset_net(preset), default_aug(), TrainSpec(epochs=1, batch_size=batch_size, train_subset=images,
                                                                test_subset=10, device="cpu", bf16=bf16))


def our_img_per_s(ds, preset: str, steps: int, batch_size: int, warmup: int, bf16: bool = False) -> float:
    """Images a second from the batch after ``warmup`` (at least 1: batches count from 1) to the last."""
    run = bench_run(preset, batch_size, bf16, min((steps + warmup) * batch_size, len(ds.y_train)))
    stamps: dict[int, float] = {}

    def on_batch(event) -> None:
        if event.kind == BATCH:
            stamps[event.data["batch"]] = time.perf_counter()

    Trainer(ds, run, [on_batch]).fit()
    last = max(stamps)
    return (last - warmup) * batch_size / (stamps[last] - stamps[warmup])


class _SeedStyleDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std):
        import albumentations as A
        from albumentations.pytorch import ToTensorV2

        self.x, self.y = x, y
        seed_aug = build_pipeline(default_aug(), mean).transforms
        self.tf = A.Compose([*seed_aug, A.Normalize(mean=mean, std=std), ToTensorV2()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.tf(image=self.x[i])["image"], int(self.y[i])


def reference_img_per_s(ds, preset: str, steps: int, batch_size: int, warmup: int, workers: int = 2) -> float:
    """How the seed repositories train: DataLoader workers, per-image transforms, NCHW."""
    torch.manual_seed(0)
    model = build_model(preset_net(preset), fast=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = (steps + warmup) * batch_size
    loader = torch.utils.data.DataLoader(_SeedStyleDataset(ds.x_train[:n], ds.y_train[:n], ds.mean, ds.std),
                                         batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    model.train()
    t0 = None
    for b, (x, y) in enumerate(loader):
        if b == warmup:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = b
    return (last + 1 - warmup) * batch_size / (time.perf_counter() - t0)
