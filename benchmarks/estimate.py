"""The Train page's estimate against the measured time (issue 32 F): for each preset, the estimate that
`train --estimate` prints, then the same run trained, with the ratio of the two per epoch and for the run.

    python benchmarks/estimate.py --data ../shared/data/cifar10-dev-jpeg.tar.gz [--presets seed-004 fast]
                                  [--images 2000] [--epochs 2]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.specs.augment import default_aug  # noqa: E402
from playground.specs.config import RunSpec, TrainSpec  # noqa: E402
from playground.specs.presets import preset_net  # noqa: E402
from playground.training.bench import cpu_description  # noqa: E402
from playground.training.data import load_dataset  # noqa: E402
from playground.training.estimate import expected, measure  # noqa: E402
from playground.training.trainer import Trainer  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--presets", nargs="+", default=["seed-000", "seed-002", "seed-004", "fast"])
ap.add_argument("--images", type=int, default=2000)
ap.add_argument("--epochs", type=int, default=2)
args = ap.parse_args()
data = load_dataset(args.data, mmap_train=True)
print(f"CPU: {cpu_description()}; {args.epochs} epochs of {args.images:,} images, "
      f"{len(data.y_test):,} test images", flush=True)
for name in args.presets:
    run = RunSpec(preset_net(name), default_aug(), TrainSpec(epochs=args.epochs, train_subset=args.images,
                                                             device="cpu"))
    t0 = time.perf_counter()
    speed = measure(run)
    took = time.perf_counter() - t0
    guess = expected(run, speed, len(data.y_train), len(data.y_test))
    t0 = time.perf_counter()
    result = Trainer(data, run).fit()
    wall = time.perf_counter() - t0
    epoch = result.epochs[-1]["epoch_time"]
    print(f"{name:9s} measuring {took:5.1f} s | epoch: estimated {guess.epoch_s:6.1f} s, measured {epoch:6.1f} s "
          f"({guess.epoch_s / epoch:.2f}x) | run: estimated {guess.run_s:6.1f} s, measured {wall:6.1f} s "
          f"({guess.run_s / wall:.2f}x)", flush=True)
