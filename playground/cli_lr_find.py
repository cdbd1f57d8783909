"""``python -m playground lr-find``: the LR range test for a recipe or specs, kept in the run store's LR tests and
printed as one line of JSON; ``--job ID`` runs a test the app has recorded (its process, never the web server)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import UserError


def add_lr_find_parser(sub):
    """The subcommand's parser; cli.py adds --data and --runs to it with the others."""
    p = sub.add_parser("lr-find", help="the LR range test: the loss as the LR rises batch by batch, and a max LR "
                                       "for OneCycle, as one JSON line")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="preset name (see `presets`); default: the recipe's, else fast")
    g.add_argument("--spec", help="architecture JSON file")
    p.add_argument("--recipe", help="a recipe: its preset, augmentation and training spec")
    p.add_argument("--aug", help="augmentation JSON file")
    p.add_argument("--train", help="training spec JSON file (its optimizer, batch size and precision are used)")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on a CPU with bf16 units")
    p.add_argument("--start", type=float, default=1e-5, help="the first LR (default 1e-5)")
    p.add_argument("--end", type=float, default=10.0, help="the last LR (default 10)")
    p.add_argument("--steps", type=int, default=100, help="batches, one LR each (default 100)")
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.set_defaults(tta=False, alternate_flip=False, whiten=False, fixed_bn_scale=False)
    return p


def cmd_lr_find(args) -> int:
    from .runs import lr_tests
    from .runs.store import RunStore

    if args.job:
        return run_job(RunStore(args.runs, existing=True), args.job)
    from .cli_specs import checked_run
    from .specs.serde import SpecError
    from .training.lr_find import MAX_STEPS, check_range

    if problems := check_range(args.start, args.end, args.steps, MAX_STEPS):
        raise SpecError(problems)
    run, data = checked_run(args)
    store = RunStore(args.runs)
    test = lr_tests.create(store, run, run.data, args.start, args.end, args.steps)
    test = run_test(store, test, data)
    r = test.result
    print(json.dumps({"id": test.id, "status": test.status, "ended": r.ended, "points": len(r.lrs),
                      "suggested_max_lr": r.suggested_max_lr, "rule": "the smoothed loss's minimum / 10",
                      "steepest_lr": r.steepest_lr, "min_loss_lr": r.min_loss_lr, "seconds": round(r.seconds, 1)},
                     allow_nan=False))
    return 0 if test.status == lr_tests.FINISHED else 1


def run_test(store, test, data):
    """Run ``test`` in this process, saving the curve every few points and at its end."""
    from .runs import lr_tests
    from .runs.lifecycle import process_start
    from .specs.config import RunSpec
    from .training.lr_find import range_test

    test.pid, test.pid_start = os.getpid(), process_start(os.getpid())
    lr_tests.save(store, test)

    def saved(result) -> None:
        if len(result.lrs) % 5 == 0:
            test.result = result
            lr_tests.save(store, test)

    r = test.result
    try:
        test.result = range_test(data, RunSpec.parse(test.spec), r.start, r.end, r.steps, on_point=saved)
        test.status, test.message = lr_tests.FINISHED, test.result.ended
    except (UserError, ValueError, RuntimeError, MemoryError) as e:  # the curve so far stays with the reason
        test.status, test.message = lr_tests.FAILED, " ".join(str(e).split())[:300]
    lr_tests.save(store, test)
    return test


def run_job(store, test_id: str) -> int:
    """A recorded test, run by the process the app started: its data, then the test."""
    from .runs import lr_tests
    from .training.data import load_dataset

    test = lr_tests.get(store, test_id)
    if test is None:
        print(f"error: no LR test {test_id[:40]!r} in {store.root}", file=sys.stderr)
        return 2
    try:
        data = load_dataset(test.data, mmap_train=True)
    except (UserError, OSError) as e:
        test.status, test.message = lr_tests.FAILED, f"the data cannot be read: {' '.join(str(e).split())[:200]}"
        lr_tests.save(store, test)
        return 1
    return 0 if run_test(store, test, data).status == lr_tests.FINISHED else 1
