"""Sweeps on PostgreSQL: trials per minute and the share of time spent in the storage, for
K = 1, 2, 4 sweep processes sharing one study (as ``sweep --workers K`` does: the study is created
once, then K processes each run their share of the trials).

    python benchmarks/sweep_storage.py [--ks 1,2,4] [--trials-per-worker 4] [--epochs 1]

Needs Debian's ``postgresql`` binaries: a throwaway server is started (tests/postgres.py, as the
PostgreSQL tests do; default settings, fsync on) and removed after. Trials are tiny: seed-004,
batch 32, on a synthetic image folder (tests/conftest.py's make_image_folder: 120 train and 40
test images), each a run in a fresh run store trained by its own worker process.

What is measured, per sweep process: every call into Optuna's RDB storage (the PostgreSQL
backend, below Optuna's in-process cache) is timed by a wrapper; "storage %" is the time the
process's main thread spent in those calls while ``study.optimize`` ran, over the time
``study.optimize`` ran (its trials back to back: create, sample, report each tested epoch,
prune checks, user attributes, finish), summed over the K processes. The heartbeat thread's
calls run beside the trial, not in its way, and are reported apart. "trials/min" is the K-run's
trials over its wall time from starting the processes to the last one ending (process start-up,
imports and data loading included); "trial s" is the mean trial wall time from Optuna's
timestamps (a trial includes starting its training worker process, which imports torch).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from playground.training.bench import cpu_description  # noqa: E402


def space_json(epochs: int) -> dict:
    return {"name": "bench", "base": {"preset": "seed-004", "train": {"epochs": epochs, "batch_size": 32}},
            "params": {"train.max_lr": {"float": [0.01, 0.2]}}}


def child(args) -> None:
    """One sweep process: run_share with the storage's calls timed."""
    import optuna
    from optuna.storages import RDBStorage

    import playground.runs.sweep as sweep

    totals = {"main_s": 0.0, "main_calls": 0, "heartbeat_s": 0.0, "heartbeat_calls": 0, "optimize_s": 0.0}
    in_optimize = threading.Event()
    lock = threading.Lock()

    def timed(fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.perf_counter() - t
                main = threading.current_thread() is threading.main_thread()
                with lock:
                    if not main:
                        totals["heartbeat_s"] += dt
                        totals["heartbeat_calls"] += 1
                    elif in_optimize.is_set():
                        totals["main_s"] += dt
                        totals["main_calls"] += 1
        return wrapper

    original = sweep.storage_for

    def storage_for(url, runs):
        storage = original(url, runs)
        for name in dir(RDBStorage):
            if not name.startswith("__") and callable(getattr(RDBStorage, name)) and name not in (
                    "get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "get_failed_trial_callback"):
                setattr(storage, name, timed(getattr(storage, name)))
        return storage

    sweep.storage_for = storage_for
    optimize = optuna.Study.optimize

    def timed_optimize(self, *a, **kw):
        in_optimize.set()
        t = time.perf_counter()
        try:
            return optimize(self, *a, **kw)
        finally:
            totals["optimize_s"] += time.perf_counter() - t
            in_optimize.clear()

    optuna.Study.optimize = timed_optimize
    sweep.run_share(args.space, args.trials, args.storage, args.study, args.data, args.runs)
    Path(args.out).write_text(json.dumps(totals))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1,2,4")
    ap.add_argument("--trials-per-worker", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("space", "storage", "study", "data", "runs", "out"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import warnings

    import optuna

    warnings.filterwarnings("ignore")  # Optuna's experimental/deprecation notes about the heartbeat
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from playground.runs.store import RunStore
    from playground.runs.space import load_space
    from playground.runs.sweep import storage_for, study_for
    from tests import postgres
    from tests.conftest import make_image_folder

    print(f"CPU: {cpu_description()}")
    print(f"load average before: {load()}")
    work = Path(tempfile.mkdtemp(prefix="bench-sweeps-"))
    data = make_image_folder(work / "data")
    space = work / "space.json"
    space.write_text(json.dumps(space_json(args.epochs)))
    server = postgres.start()
    print(f"PostgreSQL on 127.0.0.1:{server.port} (throwaway), optuna {optuna.__version__}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLAYGROUND_CACHE": str(work / "cache")}
    rows = []
    try:
        for k in (int(x) for x in args.ks.split(",")):
            study_name, runs = f"bench-k{k}", work / f"runs-k{k}"
            study_for(load_space(space), storage_for(server.url, RunStore(runs).root), study_name)  # created once
            outs = [work / f"k{k}-{i}.json" for i in range(k)]
            t = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, __file__, "--child", "--space", str(space), "--trials",
                                       str(args.trials_per_worker), "--storage", server.url, "--study", study_name,
                                       "--data", str(data), "--runs", str(runs), "--out", str(out)],
                                      env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for out in outs]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - t
            if any(codes):
                raise SystemExit(f"K={k}: a sweep process failed ({codes})")
            totals = [json.loads(o.read_text()) for o in outs]
            trials = optuna.load_study(study_name=study_name, storage=server.url).trials
            done = [t for t in trials if t.datetime_complete]
            trial_s = statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
            main_s, opt_s = sum(x["main_s"] for x in totals), sum(x["optimize_s"] for x in totals)
            calls = sum(x["main_calls"] for x in totals)
            rows.append((k, len(done), wall, 60 * len(done) / wall, trial_s, 100 * main_s / opt_s,
                         1000 * main_s / len(done), calls / len(done), sum(x["heartbeat_s"] for x in totals)))
            print(f"K={k} done: {len(done)} trials in {wall:.1f} s (load {load()})", flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("K  trials  wall s  trials/min  trial s  storage %  storage ms/trial  calls/trial  heartbeat s")
    for k, n, wall, rate, trial_s, share, ms, calls, hb in rows:
        print(f"{k:<2} {n:>6}  {wall:>6.1f}  {rate:>10.1f}  {trial_s:>7.1f}  {share:>8.2f}%  {ms:>16.1f}  "
              f"{calls:>11.1f}  {hb:>11.2f}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
