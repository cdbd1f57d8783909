"""Time to accuracy in seed-style epochs: a recipe's wall time against the seed pipeline's speed, one run.

    python benchmarks/time_to_accuracy.py --data PATH [--recipe fast] [--target 0.85] [--eval-every 1]

First it measures the seed-style reference (per-image Albumentations in a DataLoader with 2 workers,
NCHW fp32, seed-004, batch 128: bench.reference_img_per_s) on this machine, then trains the recipe
as `python -m playground train --recipe NAME` would (its data, its augmentation, its schedule) and
tests every ``--eval-every`` epochs. It prints, with the CPU:

- the wall time until the first tested epoch at or above ``--target`` and at the end,
- both as seed-style epochs: wall seconds x reference img/s / 45,000 (how many epochs the seed
  pipeline would have trained in that time on this machine),
- the accuracies.

Testing every epoch costs time the recipe alone would not spend (its own eval_every is larger);
the wall times include it, so they are a little pessimistic. Nothing here is a timed test: it prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.specs.config import RunSpec  # noqa: E402
from playground.specs.presets import preset_net  # noqa: E402
from playground.specs.recipes import get_recipe  # noqa: E402
from playground.training.bench import cpu_description, reference_img_per_s  # noqa: E402
from playground.training.data import load_dataset  # noqa: E402
from playground.training.device import configure_threads  # noqa: E402
from playground.training.trainer import Trainer  # noqa: E402

SEED_EPOCH = 45_000  # images in one seed-style epoch (the seeds train on 45k-50k; the dev split has 45k)

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--recipe", default="fast")
ap.add_argument("--target", type=float, default=0.85)
ap.add_argument("--eval-every", type=int, default=1)
ap.add_argument("--reference-steps", type=int, default=40)
ap.add_argument("--reference-batch", type=int, default=128)
ap.add_argument("--epochs", type=int, help="override the recipe's epochs (a quick check; not its result)")
args = ap.parse_args()

configure_threads()
ds = load_dataset(args.data)
print(f"CPU: {cpu_description()}", flush=True)
ref = reference_img_per_s(ds, "seed-004", args.reference_steps, args.reference_batch, warmup=3)
print(f"reference: {ref:.1f} img/s (seed-004, batch {args.reference_batch}, seed-style pipeline)", flush=True)

recipe = get_recipe(args.recipe)
aug, train = recipe.copy_specs()
train.eval_every = args.eval_every
train.epochs = args.epochs or train.epochs
train.device = "cpu"
run = RunSpec(preset_net(recipe.preset), aug, train)
reached: dict = {}


def watch(event) -> None:
    if event.kind == "epoch" and event.data.get("test_acc") is not None:
        acc, wall = event.data["test_acc"], time.perf_counter() - t0
        print(f"epoch {event.data['epoch']:3d}: test {acc:.2%} at {wall:7.1f} s "
              f"({wall * ref / SEED_EPOCH:.2f} seed-style epochs)", flush=True)
        if acc >= args.target and not reached:
            reached.update(epoch=event.data["epoch"], wall_s=wall, acc=acc)


t0 = time.perf_counter()
result = Trainer(ds, run, [watch]).fit()
wall = time.perf_counter() - t0
final = result.epochs[-1]["test_acc"]
summary = dict(cpu=cpu_description(), recipe=args.recipe, reference_img_per_s=round(ref, 1), target=args.target,
               wall_s=round(wall, 1), seed_epochs=round(wall * ref / SEED_EPOCH, 2), final_acc=final,
               reached=reached and dict(reached, wall_s=round(reached["wall_s"], 1),
                                        seed_epochs=round(reached["wall_s"] * ref / SEED_EPOCH, 2)))
if reached:
    print(f"{args.target:.0%} reached at epoch {reached['epoch']} after {reached['wall_s']:.0f} s = "
          f"{summary['reached']['seed_epochs']:.2f} seed-style epochs")
else:
    print(f"{args.target:.0%} not reached ({final:.2%} at the end)")
print(f"whole run: {wall:.0f} s = {summary['seed_epochs']:.2f} seed-style epochs, final {final:.2%}")
print(json.dumps(summary))
