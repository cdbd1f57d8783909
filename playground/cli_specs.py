"""Specs from the command line: the JSON files and flags of ``train`` and ``summary`` made into the
architecture, augmentation and training specs, through the one validator; the CLI's commands call these."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .specs.serde import SpecError

if TYPE_CHECKING:
    from .runs.store import RunStore


def load_spec_file(cls, path: str):
    """A spec from a file (read bounded, see serde.read_spec_file), each problem prefixed with its name."""
    from .specs.serde import read_spec_file, short

    raw = read_spec_file(path)
    try:
        return cls.from_json(raw)
    except SpecError as e:
        raise SpecError([f"{short(path, 80)[1:-1]}: {p}" for p in e.problems]) from None


def net_from_args(args):
    from .specs.arch import Net
    from .specs.presets import preset_net

    if getattr(args, "spec", None):
        return load_spec_file(Net, args.spec)
    return preset_net(args.preset or "fast")


def train_spec(args, base):
    from .specs.config import TrainSpec, keep_low_res_share

    t = load_spec_file(TrainSpec, args.train) if args.train else base
    planned = t.epochs
    for name in ("epochs", "batch_size", "optimizer", "schedule", "max_lr", "weight_decay", "label_smoothing",
                 "seed", "device", "train_subset", "test_subset", "ema", "eval_every", "teachers", "tta_shift",
                 "distill_weight", "distill_temperature", "low_res", "low_res_epochs"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(t, name, value)
    if getattr(args, "low_res_epochs", None) is None:  # a shorter run of a recipe keeps its low-res share
        args.low_res_note = keep_low_res_share(t, planned)  # printed once the run is created
    if args.tta:
        t.tta = True
    if args.alternate_flip:
        t.alternate_flip = True
    if args.whiten:
        t.whiten = True
    if args.fixed_bn_scale:
        t.fixed_bn_scale = True
    if args.bf16:
        t.bf16 = True
    return t


def new_run(args) -> tuple[str, RunStore]:
    """The run the flags describe, recorded as queued, and its store: everything is checked before
    anything is written, the store itself included (a refused spec left an empty store behind)."""
    run, _ = checked_run(args)
    from .runs.runner import create_run  # torch: only for a spec that passed (a refusal answers in a second)
    from .runs.store import RunStore

    store = RunStore(args.runs)
    return create_run(store, run, run.train.device), store


def checked_run(args):
    """The RunSpec the flags describe and its data, both checked (the device, the data's classes and image
    size, the teachers), writing nothing."""
    from .specs.augment import AugSpec, default_aug  # here, not at the top: the CLI starts without numpy
    from .specs.config import RunSpec, TrainSpec, checked, data_problems
    from .specs.recipes import get_recipe
    from .training.sources import resolve_source

    if args.recipe:
        recipe = get_recipe(args.recipe)
        args.preset = args.preset or recipe.preset
        aug, base = recipe.copy_specs()
    else:
        aug, base = default_aug(), TrainSpec()
    if args.aug:
        aug = load_spec_file(AugSpec, args.aug)
    run = checked(RunSpec(net_from_args(args), aug, train_spec(args, base), resolve_source(args.data)))
    from .runs.store import RunStore  # torch: only for a spec that passed (a refusal answers in a second)
    from .training.data import load_dataset
    from .training.device import pick_device
    from .runs.distill import load_teachers

    pick_device(run.train.device)
    data = load_dataset(run.data, mmap_train=True)
    warn_skipped(data)
    if problems := data_problems(run.net, data.classes, data.x_test.shape[1:]):
        raise SpecError([f"{p} ({data.name})" for p in problems])
    if run.train.teachers:  # as the app does: before a record; they are runs in an existing store
        load_teachers(RunStore(args.runs, existing=True), run.train.teachers, run.data, list(data.classes))
    return run, data


def warn_skipped(data) -> None:
    """One line on stderr, with or without --quiet, when loading the data skipped files (and why)."""
    if data.skipped:
        print(f"warning: {data.skipped_note()}", file=sys.stderr)
