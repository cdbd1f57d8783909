"""Seconds per training epoch of presets on one device (the GPU figures in docs/performance.md).

Each preset trains with its recipe's augmentation and training spec when it has one
(``record``, ``fast``), else with the defaults that ``train --preset`` uses; only the
last epoch is tested, so the per-epoch figure is training alone. The first epoch
carries the warm-up (cuDNN plans, allocator), so the steady figure is the median of
the others.

    python benchmarks/epoch_time.py --data PATH [--presets seed-004 record] [--epochs 4]
                                    [--device cuda] [--images N]
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.specs.augment import default_aug  # noqa: E402
from playground.specs.config import RunSpec, TrainSpec  # noqa: E402
from playground.specs.presets import preset_net  # noqa: E402
from playground.specs.recipes import RECIPES  # noqa: E402
from playground.training.data import load_dataset  # noqa: E402
from playground.training.trainer import Trainer  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--presets", nargs="+", default=["seed-004", "record"])
ap.add_argument("--epochs", type=int, default=4)
ap.add_argument("--device", default="auto")
ap.add_argument("--images", type=int, help="train on N random images (a quick check)")
args = ap.parse_args()
data = load_dataset(args.data)
rows = []
for name in args.presets:
    recipe = next((r for r in RECIPES.values() if r.preset == name), None)
    aug, train = recipe.copy_specs() if recipe else (default_aug(), TrainSpec())
    train.epochs, train.eval_every, train.device = args.epochs, args.epochs, args.device
    train.train_subset = args.images
    trainer = Trainer(data, RunSpec(preset_net(name), aug, train))
    result = trainer.fit()
    n = len(trainer.data.y_train)
    train_s = [n / e["img_per_s"] for e in result.epochs]
    test_s = result.epochs[-1]["epoch_time"] - train_s[-1]
    for e, s in zip(result.epochs, train_s):
        print(f"{name} epoch {e['epoch']}: train {s:.2f} s ({e['img_per_s']:.0f} img/s)")
    rows.append((name, train.batch_size, train_s[0], statistics.median(train_s[1:] or train_s), test_s))
device = trainer.device
if device.type == "cuda":
    label = torch.cuda.get_device_name(device)
else:
    label = f"{device.type}, {torch.get_num_threads()} threads"
print(f"\ndevice: {label}; torch {torch.__version__}; {n:,} training images")
print(f"{'preset':10} {'batch':>5} {'1st epoch s':>11} {'s/epoch':>8} {'test pass s':>11}")
for name, batch, first, steady, test_s in rows:
    print(f"{name:10} {batch:5d} {first:11.2f} {steady:8.2f} {test_s:11.2f}")
