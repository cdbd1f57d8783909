"""Time to accuracy in seed-style epochs: a recipe's wall time against the seed pipeline's speed, one run.

    python benchmarks/time_to_accuracy.py --data PATH [--recipe fast] [--target 0.85] [--eval-every 1]
        [--set FIELD=VALUE ...] [--net FILE] [--aug FILE]

``--set`` changes one training-spec field of the recipe (a lever: ``--set ema=0.99``,
``--set epochs=12``), ``--net`` and ``--aug`` replace its network or augmentation with a JSON file;
the result goes through the same validator as every other spec.

First it measures the seed-style reference (per-image Albumentations in a DataLoader with 2 workers,
NCHW fp32, seed-004, batch 128: bench.reference_img_per_s) on this machine (again at the end, and
uses the mean: one measurement moved by up to 30% between runs on a shared VM), then trains the recipe
as `python -m playground train --recipe NAME` would (its data, its augmentation, its schedule) and
tests every ``--eval-every`` epochs. It prints, with the CPU:

- the wall time until the first tested epoch at or above ``--target`` and at the end,
- both as seed-style epochs: wall seconds x reference img/s / 45,000 (how many epochs the seed
  pipeline would have trained in that time on this machine),
- the accuracies, and at the end the final model's accuracy and evaluation time under each
  test-time augmentation (none, flip, flip + 1 px shifts, flip + 2 px shifts), in fp32 and, where
  the CPU has bf16 units, under bf16 autocast: a lever that needs no retraining.

Testing every epoch costs time the recipe alone would not spend (its own eval_every is larger):
both walls are printed, with every test and "as the recipe runs" (the extra tests' time, measured
per epoch, taken off). Nothing here is a timed test: it prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.cli_specs import load_spec_file  # noqa: E402
from playground.training.analysis import analyze  # noqa: E402
from playground.specs.arch import Net  # noqa: E402
from playground.specs.augment import AugSpec  # noqa: E402
from playground.specs.config import RunSpec, TrainSpec  # noqa: E402
from playground.specs.presets import preset_net  # noqa: E402
from playground.specs.recipes import get_recipe  # noqa: E402
from playground.training.bench import cpu_description, reference_img_per_s  # noqa: E402
from playground.training.data import load_dataset  # noqa: E402
from playground.training.device import configure_threads, cpu_bf16_units  # noqa: E402
from playground.training.predict import predict  # noqa: E402
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
ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                help="change a training-spec field (VALUE as JSON, else a string); repeatable")
ap.add_argument("--net", help="architecture JSON file instead of the recipe's preset")
ap.add_argument("--aug", help="augmentation JSON file instead of the recipe's")
ap.add_argument("--save", metavar="FILE",
                help="also save the final model's state dict (torch.save) for later TTA trials")
args = ap.parse_args()


def lever_train(base: TrainSpec, settings: list[str]) -> TrainSpec:
    """The recipe's training spec with ``--set`` fields changed, through the one validator."""
    fields = json.loads(base.to_json())
    for item in settings:
        name, _, value = item.partition("=")
        try:
            fields[name] = json.loads(value)
        except json.JSONDecodeError:
            fields[name] = value
    return TrainSpec.from_json(json.dumps(fields))

configure_threads()
ds = load_dataset(args.data)
print(f"CPU: {cpu_description()}", flush=True)
ref = ref_before = reference_img_per_s(ds, "seed-004", args.reference_steps, args.reference_batch, warmup=3)
print(f"reference: {ref:.1f} img/s (seed-004, batch {args.reference_batch}, seed-style pipeline); measured again "
      f"after the training, and the mean used (one measurement moved by up to 30% between runs here)", flush=True)

recipe = get_recipe(args.recipe)
aug, train = recipe.copy_specs()
train = lever_train(train, args.set)
own_eval_every = train.eval_every  # the recipe's own, for the wall "as the recipe runs"
train.eval_every = args.eval_every
train.epochs = args.epochs or train.epochs
train.device = "cpu"
net = load_spec_file(Net, args.net) if args.net else preset_net(recipe.preset)
aug = load_spec_file(AugSpec, args.aug) if args.aug else aug
run = RunSpec(net, aug, train)
shape = analyze(net, with_summary=False)
print(f"training: {args.recipe}{' with ' + ', '.join(args.set) if args.set else ''}"
      f"{', net ' + args.net if args.net else ''}{', aug ' + args.aug if args.aug else ''}: {train.epochs} epochs, "
      f"{shape.trace.params:,} params, {shape.trace.macs / 1e6:.1f}M MACs", flush=True)
reached: dict = {}
extra_eval = [0.0]  # seconds spent testing epochs the recipe itself would not test


def watch(event) -> None:
    if event.kind != "epoch" or event.data.get("test_acc") is None:
        return
    d = event.data
    acc, wall = d["test_acc"], time.perf_counter() - t0
    eval_s = d["epoch_time"] - len(ds.y_train) / d["img_per_s"]
    print(f"epoch {d['epoch']:3d}: test {acc:.2%} at {wall:7.1f} s ({wall * ref / SEED_EPOCH:.2f} seed-style epochs; "
          f"train {d['img_per_s']:.0f} img/s, test {eval_s:.1f} s)", flush=True)
    if acc >= args.target and not reached:
        reached.update(epoch=d["epoch"], wall_s=wall, acc=acc, as_run_s=wall - extra_eval[0])
    if d["epoch"] % own_eval_every and d["epoch"] != train.epochs:
        extra_eval[0] += eval_s


def seed_epochs(seconds: float) -> float:
    return round(seconds * ref / SEED_EPOCH, 2)


t0 = time.perf_counter()
result = Trainer(ds, run, [watch]).fit()
wall = time.perf_counter() - t0
ref_after = reference_img_per_s(ds, "seed-004", args.reference_steps, args.reference_batch, warmup=3)
ref = (ref_before + ref_after) / 2
print(f"reference: {ref_before:.1f} img/s before, {ref_after:.1f} after: {ref:.1f} img/s; the seed-style epochs "
      f"below use it (the per-epoch lines above used the first)", flush=True)
final = result.epochs[-1]["test_acc"]
as_run = wall - extra_eval[0]
summary = dict(cpu=cpu_description(), recipe=args.recipe, levers=args.set, net=args.net, aug=args.aug,
               reference_img_per_s=round(ref, 1), reference_before_after=[round(ref_before, 1), round(ref_after, 1)],
               target=args.target, wall_s=round(wall, 1),
               seed_epochs=seed_epochs(wall), as_run_s=round(as_run, 1), as_run_seed_epochs=seed_epochs(as_run),
               final_acc=final, reached=reached and dict(reached, wall_s=round(reached["wall_s"], 1),
                                                         as_run_s=round(reached["as_run_s"], 1),
                                                         seed_epochs=seed_epochs(reached["as_run_s"])))
if reached:
    print(f"{args.target:.0%} reached at epoch {reached['epoch']} after {reached['wall_s']:.0f} s "
          f"({reached['as_run_s']:.0f} s as the recipe runs) = {summary['reached']['seed_epochs']:.2f} "
          f"seed-style epochs")
else:
    print(f"{args.target:.0%} not reached ({final:.2%} at the end)")
print(f"whole run: {wall:.0f} s ({as_run:.0f} s as the recipe runs = {summary['as_run_seed_epochs']:.2f} "
      f"seed-style epochs), final {final:.2%}")

mean = torch.tensor(ds.mean).view(1, 3, 1, 1) * 255  # as the trainer's, for uint8 input
std = torch.tensor(ds.std).view(1, 3, 1, 1) * 255
y_test = torch.from_numpy(ds.y_test)
if args.save:
    torch.save(result.model.state_dict(), args.save)
summary["tta"] = {}
for bf16 in sorted({False, bool(cpu_bf16_units())}):
    views = (("none", False, 0), ("flip", True, 0), ("flip+shift1", True, 1), ("flip+shift2", True, 2))
    for name, flip, shift in views:
        t_eval = time.perf_counter()
        probs = predict(result.model, ds.x_test, mean, std, torch.device("cpu"), 1000, flip, shift, bf16)
        seconds, acc = time.perf_counter() - t_eval, float((probs.argmax(1) == y_test).float().mean())
        label = f"{name}{' bf16' if bf16 else ''}"
        summary["tta"][label] = dict(acc=acc, eval_s=round(seconds, 1))
        print(f"final model, test-time augmentation {label:17s}: {acc:.2%} in {seconds:5.1f} s", flush=True)
print(json.dumps(summary))
