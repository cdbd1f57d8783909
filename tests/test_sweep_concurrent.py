"""Four sweep processes started at the same moment on a fresh storage (a fresh PostgreSQL database,
a fresh SQLite file): each opens the storage, creates or joins the study and runs its trial; none
fails on creating Optuna's tables or the study, no trial is lost or repeated, and every trial is
a finished run of its own.

Each process is ``python -m playground sweep`` in all but its start: it imports what the sweep
imports, then waits for one file, so the four reach the storage within milliseconds of each
other (started back to back they would be spread over their imports). Tiny trials as in
tests/test_sweep.py: seed-004, 1 epoch, batch 32, on the synthetic image folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna

from playground.runs.store import RunStore
from tests.test_sweep_postgres import pg  # noqa: F401 - the module's PostgreSQL server, a fixture
from tests.test_training import ROOT

PROCESSES, TRIALS_EACH = 4, 1
COMPLETE = optuna.trial.TrialState.COMPLETE
# the sweep's own entry point (playground/__main__.py) once its imports are done: it says so with
# a file of its own (argv[2]), then waits for the signal file (argv[1])
AT_THE_SIGNAL = """
import pathlib, sys, time
import optuna, sqlalchemy, torch
import playground.cli, playground.runs.sweep, playground.training.data
go = pathlib.Path(sys.argv[1])
pathlib.Path(sys.argv[2]).touch()
while not go.exists():
    time.sleep(0.005)
sys.exit(playground.cli.main(sys.argv[3:]))
"""


def start_together(tmp_path, image_folder, storage: str | None, runs: list) -> list[subprocess.CompletedProcess]:
    """The sweep processes, each with its runs folder, released at once; their exit codes and stderr."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"name": "race", "base": {"preset": "seed-004",
                                                          "train": {"epochs": 1, "batch_size": 32}},
                                 "params": {"train.max_lr": {"float": [0.01, 0.2]}}}))
    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(len(runs))]
    env, errs = {**os.environ, "PYTHONPATH": str(ROOT)}, [open(f"{mine}.err", "w") for mine in ready]
    procs = [subprocess.Popen([sys.executable, "-c", AT_THE_SIGNAL, str(go), str(mine), "sweep",
                               "--space", str(space), "--trials", str(TRIALS_EACH), "--study", "race",
                               "--data", str(image_folder), "--runs", str(folder),
                               *(["--storage", storage] if storage else [])],
                              cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err) for folder, mine, err in zip(runs, ready, errs)]
    try:
        deadline = time.monotonic() + 180
        while not all(f.exists() for f in ready):  # all imported: none still loading torch when the others go
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a sweep never got ready"
            time.sleep(0.05)
        go.touch()
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for err in errs:
            err.close()
    return [subprocess.CompletedProcess(p.args, code, None, Path(f"{mine}.err").read_text())
            for p, code, mine in zip(procs, codes, ready)]


def check_every_trial_ran_once(results, study_storage: str, stores: list[RunStore]) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    trials = optuna.load_study(study_name="race", storage=study_storage).trials
    assert sorted(t.number for t in trials) == list(range(PROCESSES * TRIALS_EACH))  # none lost, none repeated
    assert all(t.state == COMPLETE for t in trials), [t.state for t in trials]
    run_ids = [t.user_attrs["run_id"] for t in trials]
    assert len(set(run_ids)) == len(run_ids)
    for t in trials:  # each trial's run is in exactly one store, finished, named after it
        holders = [s for s in stores if s.get(t.user_attrs["run_id"]) is not None]
        assert len(holders) == 1
        record = holders[0].get(t.user_attrs["run_id"])
        assert record.status == "finished" and record.name == f"race #{t.number}"


def test_four_machines_starting_at_once_on_a_fresh_postgresql_database(pg, image_folder, tmp_path):
    """Each "machine" has its own run store: every one of them trains its own trial."""
    url = pg.create_database(f"race_{uuid.uuid4().hex[:8]}")
    runs = [tmp_path / f"machine-{i}" for i in range(PROCESSES)]
    results = start_together(tmp_path, image_folder, url, runs)
    stores = [RunStore(r) for r in runs]
    check_every_trial_ran_once(results, url, stores)
    assert [len(s.list()) for s in stores] == [TRIALS_EACH] * PROCESSES


def test_four_processes_starting_at_once_on_a_fresh_sqlite_file(image_folder, tmp_path):
    """One runs folder, so one default storage (its sweeps.sqlite) and one run store for all four."""
    runs = tmp_path / "runs"
    results = start_together(tmp_path, image_folder, None, [runs] * PROCESSES)
    check_every_trial_ran_once(results, f"sqlite:///{runs / 'sweeps.sqlite'}", [RunStore(runs)])
    assert len(RunStore(runs).list()) == PROCESSES * TRIALS_EACH
