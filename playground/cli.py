"""Headless CLI: ``python -m playground COMMAND``, one function per command (presets, summary, train,
worker, runs, stop, evaluate, data, bench, export, curves; sweep and trials are in runs/sweep_cli.py, rename in
cli_runs.py, inside in cli_inside.py, lr-find in cli_lr_find.py). The specs that flags and files describe are
built in cli_specs.py."""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import suppress
from pathlib import Path

from . import settings
from .cli_estimate import cmd_estimate, cmd_train_estimate
from .cli_inside import add_inside_parser, cmd_inside
from .cli_lr_find import add_lr_find_parser, cmd_lr_find
from .cli_runs import add_rename_parser, cmd_rename, cmd_runs
from .cli_specs import net_from_args, new_run, warn_skipped
from .errors import UserError
from .escape import PLAIN_CHARS
from .settings import SettingError
from .runs.sweep_cli import add_sweep_parsers, cmd_sweep, cmd_trials
from .specs.serde import SpecError, printable

EPILOG = ("Data: --data cifar10 | cifar100 | PATH (ImageFolder with train/ and test/, or a .tar.gz / .tar / .zip "
          "of one) | upload:<sha256> (an archive uploaded in the app); "
          "defaults to $PLAYGROUND_DATA, then cifar10. Runs: --runs DIR, defaults to $PLAYGROUND_RUNS, then ./runs.")

TTA_SHIFT_HELP = ("also average the views moved by PX pixels in each direction (a 3x3 grid; "
                  "9x the evaluation cost per flip view; in training, the last epoch's test only)")


def cmd_presets(args) -> int:
    from .specs.presets import PRESETS
    from .specs.recipes import measured_for
    from .training.analysis import analyze, markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    print(f"{'name':10} {'params':>8} {'RF':>4} {'MACs':>8}  rules  {'reported':15} measured here")
    for p in PRESETS.values():
        a = analyze(p.net)
        rules = "".join("✓" if r.passed else "✗" for r in a.rules)
        m = measured_for(p.name)
        mine = f"{m.line()} (--recipe)" if m else "-"
        print(f"{p.name:10} {a.params:>8,} {a.trace.rf:>4g} {a.macs / 1e6:>7.1f}M  {rules}  {p.claim:15} {mine}")
    print("rules: params < 200k, RF > 44, dilated + depthwise, GAP head, C1C2C3C4O")
    return 0


def cmd_summary(args) -> int:
    from .training.analysis import analyze

    a = analyze(net_from_args(args))
    if not a.ok:
        print("invalid architecture:\n  " + "\n  ".join(a.problems), file=sys.stderr)
        return 2
    print(a.summary)
    print(f"{'layer':7} {'type':12} {'c_out':>5} {'k':>2} {'s':>2} {'d':>2} {'k_eff':>5} {'n':>3} {'j':>3} {'RF':>4}")
    for r in a.table():
        print(f"{r['layer']:7} {r['type']:12} {r['c_out']:>5} {r['k']:>2} {r['s']:>2} {r['d']:>2} {r['k_eff']:>5} "
              f"{r['n']:>3} {r['j']:>3g} {r['r']:>4g}")
    print(f"RF before GAP: {a.trace.rf:g} px (the centre unit sees {a.coverage:.0%} of the image's area); "
          f"counting GAP: {a.trace.rf_with_gap:g}")
    for rule in a.rules:
        print(f"  [{'pass' if rule.passed else 'FAIL'}] {rule.name}: {rule.reason}")
    return 0


def _progress(run, quiet: bool):
    """A callback that prints what a training does: a progress bar per epoch and a line per epoch."""
    from tqdm import tqdm

    from .training.trainer import BATCH, END, EPOCH, START, TEACHERS

    bar = None

    def show(event) -> None:
        nonlocal bar
        d = event.data
        if event.kind == START:
            resumed = f", resuming after epoch {d['first_epoch'] - 1}" if d["first_epoch"] > 1 else ""
            print(f"training {printable(run.net.name)} ({d['params']:,} params) on {d['train_size']:,} images, "
                  f"testing on {d['test_size']:,}, device {d['device']} ({d['precision']}){resumed}", flush=True)
        elif event.kind == TEACHERS:
            print(f"teachers: averaging {d['count']} runs' predictions on {d['images']:,} training images "
                  f"(cached in the run store after the first time)", flush=True)
        elif event.kind == BATCH:
            if bar is None:
                bar = tqdm(total=d["steps"] // run.train.epochs + 1, desc=f"epoch {d['epoch']}", leave=False,
                           disable=quiet)
            bar.update(1)
            bar.set_postfix(loss=f"{d['loss']:.3f}", img_s=f"{d['img_per_s']:.0f}")
        elif event.kind == EPOCH:
            if bar is not None:
                bar.close()
                bar = None
            tested = (f"test loss {d['test_loss']:.4f} acc {d['test_acc']:.2%}" if d["test_acc"] is not None
                      else "(not tested this epoch)")
            tqdm.write(f"epoch {d['epoch']:3d}  train loss {d['train_loss']:.4f} acc {d['train_acc']:.2%}  "
                       f"{tested}  lr {d['lr']:.4f}  {d['img_per_s']:.0f} img/s  {d['elapsed']:.0f}s")
            sys.stdout.flush()
        elif event.kind == END and bar is not None:
            bar.close()
    return show


def cmd_train(args) -> int:
    from .runs.lifecycle import reconcile
    from .runs.store import RunStore
    from .specs.config import RunSpec

    if args.estimate:
        return cmd_train_estimate(args)
    if args.resume:
        store = RunStore(args.runs, existing=True)
        if _find_runs(store, [args.resume]) is None:
            return 2
        reconcile(store)  # a run whose worker died still says "running" until someone looks
        record = store.get(args.resume)
        if record.state_sha:  # the stored spec and saved state are checked before the run is touched
            from .runs.runner import resume_state

            resume_state(store, args.resume, RunSpec.from_dict(record.spec))
        if not record.state_sha or not store.requeue(args.resume):
            print(f"error: run {args.resume} is {record.status}; only a stopped or interrupted run with a "
                  f"finished epoch can be resumed", file=sys.stderr)
            return 2
        run_id = args.resume
    else:
        run_id, store = new_run(args)
    from .runs.worker import run_worker  # torch: only once the flags and the spec are accepted

    run = RunSpec.from_dict(store.get(run_id).spec)
    print(f"run id: {run_id}", flush=True)
    if note := getattr(args, "low_res_note", None):
        print(f"note: {note}")
    result = run_worker(store, run_id, [_progress(run, args.quiet)])
    if result is None:
        print(f"run {run_id} was deleted while it trained", file=sys.stderr)
        return 1
    if result.status == "finished" and result.message:
        print(f"warning: {result.message}", file=sys.stderr)
    if result.status != "finished":
        hint = f"; resume it with `python -m playground train --resume {run_id}`" if result.status == "stopped" else ""
        print(f"run {result.status}: {result.message}{hint}", file=sys.stderr)
    print(f"run id: {run_id}")
    return 0 if result.status == "finished" else 1


def cmd_worker(args) -> int:
    from .runs.worker import main

    return main(args.run_id, args.runs)


def cmd_stop(args) -> int:
    from .runs.lifecycle import GRACE_S, grace_s, reconcile, request_stop
    from .runs.store import RunStore

    store = RunStore(args.runs, existing=True)
    if _find_runs(store, [args.run_id]) is None:
        return 2
    reconcile(store)
    record = store.get(args.run_id)
    if not record.active:
        print(f"run {args.run_id} already ended ({record.status})", file=sys.stderr)
        return 1
    request_stop(store, record)
    end = time.time() + GRACE_S + 5
    while (record := store.get(args.run_id)).active and time.time() < max(end, record.updated + grace_s(record) + 5):
        time.sleep(0.2)  # a test pass under way may take its own grace; the epoch it saves restarts the count
        reconcile(store)
    print(f"run {args.run_id}: {record.status} {record.message}".rstrip())
    return 0 if not record.active else 1


def _find_runs(store, run_ids: list[str]) -> list | None:
    """The stored records, or None after saying which ids the store lacks."""
    records = [store.get(i) for i in run_ids]
    missing = [repr(i[:40]) + ("…" if len(i) > 40 else "") for i, r in zip(run_ids, records) if r is None]
    if missing:
        print(f"no run {', '.join(missing)} in {store.root}", file=sys.stderr)
        return None
    return records


def cmd_evaluate(args) -> int:
    from .runs.store import RunStore

    store = RunStore(args.runs, existing=True)
    found = _find_runs(store, args.run_ids)
    if found is None:
        return 2
    from .results.evaluate import Report, evaluate, strict_json  # torch: once the runs are found
    from .runs.loading import load_run
    from .training.data import load_dataset

    data = load_dataset(args.data or found[0].spec.get("data") or None)
    warn_skipped(data)
    reports = [evaluate(load_run(store, i, data), data.x_test, data.y_test, tta=args.tta, shift=args.tta_shift)
               for i in args.run_ids]
    if len(reports) == 1:
        report, which = reports[0], {"run_id": args.run_ids[0]}
    else:  # an ensemble: the mean of the members' probabilities
        report = Report(sum(r.probs for r in reports) / len(reports), reports[0].labels, reports[0].classes)
        which = {"run_ids": args.run_ids, "member_accuracy": [r.accuracy for r in reports]}
    params = sum(r.params or 0 for r in found)
    print(json.dumps(strict_json({**which, **report.summary(), "params": params, "tta": args.tta,
                                  "tta_shift": args.tta_shift}), allow_nan=False))
    return 0


def cmd_data(args) -> int:
    import signal

    from .training.data import load_dataset

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped decode cleans up as after Ctrl-C
    data = load_dataset(args.data)
    print(f"{data.name}: {len(data.y_train):,} training and {len(data.y_test):,} test images, "
          f"{len(data.classes)} classes, from {data.source}; decoded and cached")
    warn_skipped(data)
    return 0


def cmd_bench(args) -> int:
    problems = [f"{name} must be between {lo} and {hi}, got {v}" for name, v, lo, hi in (
        ("steps", args.steps, 1, 10_000), ("warmup", args.warmup, 1, 1_000)) if not lo <= v <= hi]
    if problems:
        raise SpecError(problems)
    from .training.bench import bench_trainer  # checks the run spec (batch size, memory) before loading the data

    print(json.dumps(bench_trainer(args.preset, args.data, args.steps, args.batch_size, args.warmup, bf16=args.bf16)))
    return 0


def cmd_export(args) -> int:
    from .runs.store import RunStore

    store = RunStore(args.runs, existing=True)
    if _find_runs(store, [args.run_id]) is None:
        return 2
    from .faults import cause_of_os_error
    from .runs.loading import load_run  # torch: once the run is found
    from .results.export import default_filename, export

    out = Path(args.out or default_filename(args.run_id, args.format))
    try:
        export(load_run(store, args.run_id), args.format, out, args.run_id, baked=args.baked)
    except OSError as e:
        _say(f"error: --out: {cause_of_os_error(e, out, 'the export')}; nothing was written")
        return 2
    print(f"wrote {out}")
    return 0


def cmd_curves(args) -> int:
    from .atomic import write_atomic
    from .results.plots import report_figure
    from .faults import cause_of_os_error
    from .runs.store import RunStore

    records = _find_runs(RunStore(args.runs, existing=True), args.run_ids)
    if records is None:
        return 2
    out = Path(args.out)
    fig = report_figure(records)
    try:  # all or nothing: a full disk leaves the previous report as it was
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, lambda tmp: fig.write_html(tmp, include_plotlyjs="cdn"))
    except OSError as e:
        _say(f"error: {cause_of_os_error(e, out, 'the report')}; nothing was written")
        return 2
    print(f"wrote {out}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse that answers a bad flag in one line, not the whole usage block, for every
    subcommand: add_subparsers makes its parsers of this class too."""

    def error(self, message: str):
        _say(f"{self.prog}: {message} (--help lists the options)")
        sys.exit(2)


def blank_flag(args: argparse.Namespace) -> str | None:
    """An empty value (``--runs ""`` made ./runs, ``--data ""`` fell back to a download, ``--resume ""``
    started a new run) or a NUL byte in any text flag, said in one line; None if there is none."""
    for dest, value in vars(args).items():
        for v in value if isinstance(value, list) else [value]:
            flag = dest if dest in POSITIONALS else "--" + dest.replace("_", "-")
            if isinstance(v, str) and not v.strip():
                return f"{flag}: empty; give a value or leave the flag out"
            if isinstance(v, str) and "\x00" in v:
                return f"{flag}: contains a NUL byte"
    return None


POSITIONALS = ("command", "run_id", "run_ids")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m playground", description="CIFAR-10 CNN Playground CLI", epilog=EPILOG)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("presets", help="list presets with params, RF and rule checks").add_argument(
        "--markdown", action="store_true",
        help="the README's table: each preset, its seed's claim, its recipe's result")

    def arch(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--preset", help="preset name (see `presets`); default: fast")
        g.add_argument("--spec", help="architecture JSON file (as exported by the Architect page)")

    s = sub.add_parser("summary", help="torchinfo summary, RF table and rule checks")
    arch(s)
    t = sub.add_parser("train", help="train and record a run", epilog=EPILOG)
    arch(t)
    t.add_argument("--recipe", help="a recipe (fast, record, seed-000 to seed-004; `presets` shows which are "
                                    "measured): its preset, augmentation and training spec; the other options "
                                    "override it")
    t.add_argument("--aug", help="augmentation JSON file (default: the seeds' flip + affine + cutout)")
    t.add_argument("--train", help="training spec JSON file; flags below override it")
    t.add_argument("--epochs", type=int, help="with a recipe or spec that trains its first epochs at low "
                   "resolution, that share of the epochs stays low-res unless --low-res-epochs says otherwise")
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    t.add_argument("--schedule", choices=("onecycle", "cosine", "constant"))
    t.add_argument("--max-lr", type=float, dest="max_lr")
    t.add_argument("--weight-decay", type=float, dest="weight_decay")
    t.add_argument("--label-smoothing", type=float, dest="label_smoothing")
    t.add_argument("--ema", type=float, help="EMA decay of the weights, e.g. 0.999 (default off)")
    t.add_argument("--tta", action="store_true", help="flip test-time augmentation when evaluating")
    t.add_argument("--tta-shift", type=int, dest="tta_shift", metavar="PX", choices=range(5), help=TTA_SHIFT_HELP)
    t.add_argument("--alternate-flip", action="store_true", dest="alternate_flip",
                   help="each image's HorizontalFlip is drawn once, then alternates every epoch (airbench)")
    t.add_argument("--whiten", action="store_true",
                   help="the first conv starts as a frozen whitening of the training images' patches (airbench)")
    t.add_argument("--fixed-bn-scale", action="store_true", dest="fixed_bn_scale",
                   help="every BatchNorm's scale stays 1 and only its shift learns (airbench)")
    t.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on a CPU with bf16 matrix units (AMX, AVX512-BF16); fp32 on one without")
    t.add_argument("--low-res", type=int, dest="low_res", metavar="PX",
                   help="progressive resizing: train the first --low-res-epochs on images scaled to PX px")
    t.add_argument("--low-res-epochs", type=int, dest="low_res_epochs", metavar="N")
    t.add_argument("--eval-every", type=int, dest="eval_every", help="test every N epochs (always after the last)")
    t.add_argument("--teachers", nargs="+", metavar="RUN_ID",
                   help="distil from these finished runs (same --runs store, same data): the student learns "
                        "their averaged predictions")
    t.add_argument("--distill-weight", type=float, dest="distill_weight",
                   help="share of the loss from the teachers (default 0.9)")
    t.add_argument("--distill-temperature", type=float, dest="distill_temperature", help="default 4")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    t.add_argument("--train-subset", type=int, dest="train_subset", help="train on N random images (quick runs)")
    t.add_argument("--test-subset", type=int, dest="test_subset")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--estimate", action="store_true", help="train nothing: measure a few batches of this run "
                   "on this machine and print its expected epoch and run times as one JSON line")
    t.add_argument("--resume", metavar="RUN_ID", help="continue a stopped or interrupted run from its last "
                                                       "finished epoch, under the same run id")
    sub.add_parser("estimate", help="this machine's speed for the run spec JSON on stdin (the app's time estimate)")
    w = sub.add_parser("worker", help="train a queued run (what the app starts, one process per run)")
    w.add_argument("run_id")
    r = sub.add_parser("runs", help="list the run store: id, status, epochs done/planned, best accuracy")
    r.add_argument("--json", action="store_true", help="print one JSON array")
    st = sub.add_parser("stop", help="stop a running run after its current batch (it keeps a checkpoint)")
    st.add_argument("run_id")
    e = sub.add_parser("evaluate", help="accuracy and per-class accuracy of a run, as one JSON line")
    e.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="several: evaluate their ensemble (mean probabilities)")
    e.add_argument("--tta", action="store_true", help="average each prediction with its mirror image")
    e.add_argument("--tta-shift", type=int, dest="tta_shift", metavar="PX", choices=range(5), default=0,
                   help=TTA_SHIFT_HELP)
    d = sub.add_parser("data", help="decode and cache a data source (the app does this once, in the background)")
    b = sub.add_parser("bench", help="training images/s after warm-up, as one JSON line")
    b.add_argument("--preset", default="seed-004")
    b.add_argument("--steps", type=int, default=30)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--batch-size", type=int, default=128, dest="batch_size")
    b.add_argument("--bf16", action="store_true", help="ours under bf16 autocast where the CPU has bf16 units")
    x = sub.add_parser("export", help="export a run as ONNX, TorchScript or a standalone training script")
    x.add_argument("run_id")
    x.add_argument("--format", choices=("onnx", "torchscript", "script"), default="onnx")
    x.add_argument("--out", help="output file (default: named after the run)")
    x.add_argument("--bake-normalization", action="store_true", dest="baked",
                   help="onnx/torchscript: the model takes RGB in [0, 1] and normalises inside (else the caller "
                        "normalises with the mean and std in the file's metadata)")
    c = sub.add_parser("curves", help="an HTML page of test accuracy by minute and loss by epoch for runs")
    c.add_argument("run_ids", nargs="+")
    c.add_argument("--out", default="docs/curves.html")
    sw, tr = add_sweep_parsers(sub)
    ins, lrf = add_inside_parser(sub), add_lr_find_parser(sub)
    for p in (t, e, b, d, sw, ins, lrf):
        p.add_argument("--data", help="cifar10 | cifar100 | PATH (folder, .zip or .tar[.gz|.bz2|.xz]) | "
                                      "upload:<sha256> (default: $PLAYGROUND_DATA, then cifar10)")
    for p in (t, e, x, c, w, r, st, sw, tr, ins, lrf, add_rename_parser(sub)):
        p.add_argument("--runs", help="run store folder (default: $PLAYGROUND_RUNS, then ./runs)")
    return ap


COMMANDS = dict(presets=cmd_presets, summary=cmd_summary, train=cmd_train, evaluate=cmd_evaluate,
                bench=cmd_bench, export=cmd_export, curves=cmd_curves, data=cmd_data, worker=cmd_worker, runs=cmd_runs,
                stop=cmd_stop, sweep=cmd_sweep, trials=cmd_trials, estimate=cmd_estimate, rename=cmd_rename,
                inside=cmd_inside, **{"lr-find": cmd_lr_find})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if problem := blank_flag(args):
        _say(f"error: {problem}")
        return 2
    if bad := settings.problems():  # before anything is read, written or started under them
        _say("error: " + "; ".join(bad))
        return 2
    try:
        return COMMANDS[args.command](args)
    except SpecError as e:
        _say("invalid spec: " + "; ".join(e.problems))
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (UserError, KeyError, OSError) as e:
        _say(f"error: {e.args[0] if isinstance(e, KeyError) else e}")
    except Exception as e:  # noqa: BLE001 - a bug of ours: one line here, the traceback on request
        with suppress(SettingError):  # checked at the start; never hide the bug behind its own error
            if settings.flag("PLAYGROUND_DEBUG"):
                raise
        _say(f"internal error: {type(e).__name__}: {e} (PLAYGROUND_DEBUG=1 shows the traceback)")
        return 1
    return 2


def _say(message: str) -> None:
    """One line on stderr, whatever it holds (a lone surrogate from a file name, a megabyte of spec)."""
    line = printable(" ".join(str(message).split()))
    line = line if len(line) <= PLAIN_CHARS else line[:PLAIN_CHARS - 1] + "…"
    sys.stderr.write(line.encode("utf-8", "backslashreplace").decode("utf-8", "replace") + "\n")
