"""The ``sweep`` and ``trials`` commands: an Optuna search over a space of specs, each trial a run
in the store, in one or several processes on this machine and on any machine that shares the
storage (sweep.py does the work; this is its command line)."""
from __future__ import annotations

import argparse
import json
import os

from .. import settings
from ..specs.serde import SpecError


def add_sweep_parsers(sub) -> tuple:
    """The two subcommands' parsers; cli.py adds --data and --runs to them with the others."""
    sw = sub.add_parser("sweep", help="search a space of specs with Optuna; every trial is a run in the store")
    sw.add_argument("--space", required=True,
                    help="a shipped space by name (fastest-to-85, under-200k-seed-rules) or a space JSON file")
    sw.add_argument("--trials", type=int, default=20)
    sw.add_argument("--workers", type=int, default=1, help="trials at once on this machine, as processes")
    sw.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host/db to share a study "
                                      "between machines (default: sweeps.sqlite in the runs folder)")
    sw.add_argument("--study", help="study name (default: the space's name); the same name joins the same study")
    sw.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    sw.add_argument("--share-of", type=int, dest="share_of", help=argparse.SUPPRESS)  # a worker process of a sweep
    tr = sub.add_parser("trials", help="a sweep's trials, best first (no --study: the studies in the storage)")
    tr.add_argument("--study", help="study name")
    tr.add_argument("--storage", help="Optuna storage URL (default: sweeps.sqlite in the runs folder)")
    tr.add_argument("--json", action="store_true", help="one JSON list, one object per trial")
    return sw, tr


def cmd_sweep(args) -> int:
    import subprocess

    from .. import cli_child
    from .space import load_space, space_path
    from .store import RunStore, runs_dir
    from ..training.sources import resolve_source

    space = load_space(space_path(args.space))  # a bad space file: one line before any process starts (or torch loads)
    if not (1 <= args.trials <= 10_000) or not (1 <= args.workers <= 64):
        raise SpecError([f"--trials must be 1..10000 and --workers 1..64, got {args.trials} and {args.workers}"])
    import optuna

    from .sweep import run_share, storage_for, study_for

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    source = resolve_source(args.data)
    storage = storage_for(args.storage, runs_dir(args.runs)) if args.storage else None  # refused: no store made
    store = RunStore(args.runs)
    study = study_for(space, storage or storage_for(None, store.root), args.study)  # created once, before the workers
    if args.workers > 1 and not settings.whole("PLAYGROUND_THREADS"):  # K trainings share the cores, not each all
        os.environ["PLAYGROUND_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    shares = [args.trials // args.workers + (i < args.trials % args.workers) for i in range(args.workers)]
    children = []
    for share in shares[1:]:
        if share:
            argv, env = cli_child("sweep", "--space", args.space, "--trials", str(share),
                                  "--share-of", str(args.trials), "--study", study.study_name,
                                  "--data", source, "--runs", str(store.root), "--device", args.device,
                                  *(["--storage", args.storage] if args.storage else []))
            children.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
    where = (args.storage or str(store.root / "sweeps.sqlite")).split("@")[-1]
    print(f"study {study.study_name}: " + (f"a worker process for {args.trials} of its {args.share_of} trials"
          if args.share_of else f"{args.trials} trials in {args.workers} process(es)") + f", storage {where}",
          flush=True)
    run_share(args.space, shares[0], args.storage, study.study_name, source, args.runs, args.device)
    failed = sum(child.wait() != 0 for child in children)
    study = study_for(space, storage_for(args.storage, store.root), study.study_name)
    best = study.best_trials if len(space.objectives) > 1 else ([study.best_trial] if any(
        t.value is not None for t in study.trials) else [])
    for t in best:
        values = ", ".join(f"{n} {v:.4g}" for n, v in zip(space.objectives, t.values))
        print(f"best trial {t.number}: {values}, run {t.user_attrs.get('run_id')}")
    counts = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    print("trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 1 if failed else 0


def cmd_trials(args) -> int:
    """A study's trials, best first: what the Sweep page shows, for a terminal or a script (--json)."""
    from .space import check_study_name
    from .store import RunStore
    from .sweep import studies, trial_rows

    store = RunStore(args.runs, existing=args.storage is None)  # a shared storage needs no local runs
    if args.study is None:
        names = studies(store, args.storage)
        print("\n".join(names) if names else "no studies in this storage (python -m playground sweep starts one)")
        return 0
    rows = trial_rows(store, check_study_name(args.study), args.storage)
    rows.sort(key=lambda r: (r["state"] != "complete", -(r["accuracy"] or 0)))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'trial':>5} {'state':9} {'accuracy':>8} {'params':>9} {'minutes':>7}  {'run':24} why")
    for r in rows:
        acc = f"{r['accuracy']:.2%}" if r["accuracy"] is not None else "-"
        minutes = f"{r['minutes']:.1f}" if r["minutes"] is not None else "-"
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        print(f"{r['trial']:>5} {r['state']:9} {acc:>8} {params:>9} {minutes:>7}  {r['run'] or '-':24} "
              f"{r['why']}")
    return 0
