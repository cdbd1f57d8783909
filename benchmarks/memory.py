"""Peak RSS of a short training run (dataset in memory + model + optimizer).

    python benchmarks/memory.py --data PATH [--preset fast] [--images 5120]
"""
import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.config import RunSpec, TrainSpec  # noqa: E402
from playground.data import load_dataset  # noqa: E402
from playground.presets import preset_net  # noqa: E402
from playground.trainer import Trainer  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--preset", default="fast")
ap.add_argument("--images", type=int, default=5120)
args = ap.parse_args()
data = load_dataset(args.data)
after_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
Trainer(data, RunSpec(preset_net(args.preset), train=TrainSpec(epochs=1, train_subset=args.images,
                                                                device="cpu"))).fit()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"peak RSS after loading data: {after_data:.0f} MiB; after training {args.images} images: {peak:.0f} MiB")
