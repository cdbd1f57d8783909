"""Recipes: a preset plus the augmentation and training spec that produced a measured result.

``python -m playground train --recipe NAME`` replays one; flags override its training
spec. Every ``measured`` figure comes from the command in ``Measured.command`` on the
hardware named there, on the 45k/5k split of the dev data.
"""
from __future__ import annotations

from dataclasses import dataclass

from .augment import AugSpec, make_transform
from .config import TrainSpec


@dataclass(frozen=True)
class Measured:
    test_acc: float  # percent, on the 5,000 held-out images
    epochs: int
    wall_s: float  # whole command, data already cached
    hardware: str
    command: str
    where: str  # the hardware in two words, for tables

    def line(self) -> str:
        return f"{self.test_acc:.2f}% @ {self.epochs} ep in {self.wall_s / 60:.1f} min on {self.where}"


@dataclass(frozen=True)
class Recipe:
    name: str
    preset: str
    goal: str
    aug: AugSpec
    train: TrainSpec
    measured: Measured  # a recipe is what produced a measured result

    def copy_specs(self) -> tuple[AugSpec, TrainSpec]:
        """Fresh copies, so callers can edit them without touching the registry."""
        return AugSpec.from_json(self.aug.to_json()), TrainSpec.from_json(self.train.to_json())


def flip_crop(padding: int, cutout: int = 0) -> AugSpec:
    """Flip + pad-and-crop: light regularisation for short schedules; a long schedule
    adds Cutout (one mean-filled hole, half the time) so the net keeps learning."""
    steps = [make_transform("HorizontalFlip", 0.5), make_transform("RandomCrop", 1.0, padding=padding)]
    if cutout:
        steps.append(make_transform("CoarseDropout", 0.5, holes=[1, 1], size=[cutout, cutout], fill="mean"))
    return AugSpec(steps)


CPU2 = "2-core AMD EPYC (Zen 3) CPU, torch 2.14.1"
H100 = "NVIDIA H100 80GB, torch 2.11.0+cu130"
_CMD = "python -m playground train --recipe {} --data ../shared/data/cifar10-dev-jpeg.tar.gz"

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fast", "fast", "85% test accuracy in at most 15 minutes on a 2-core CPU", flip_crop(2),
           TrainSpec(epochs=20, batch_size=256, schedule="onecycle", max_lr=0.2, warmup=0.2,
                     weight_decay=5e-4, label_smoothing=0.1, tta=True, eval_every=4),
           Measured(85.38, 20, 819.0, CPU2, _CMD.format("fast"), "2-core CPU")),
    Recipe("record", "record", "90% test accuracy under 200k parameters, however long it takes",
           flip_crop(4, cutout=8),
           TrainSpec(epochs=162, batch_size=256, schedule="onecycle", max_lr=0.2, warmup=0.2,
                     weight_decay=5e-4, label_smoothing=0.1, tta=True, eval_every=10),
           Measured(90.66, 162, 432.0, H100, _CMD.format("record") + " --device cuda", "H100 GPU")),
]}


def measured_for(preset: str) -> Measured | None:
    """The measured result of the recipe built on ``preset``, if there is one."""
    return next((r.measured for r in RECIPES.values() if r.preset == preset), None)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
