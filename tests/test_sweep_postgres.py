"""Sweeps on a real PostgreSQL server (started here, thrown away after; skipped with the reason
when Debian's ``postgresql`` binaries are missing or the server cannot start): two worker
processes finish 2 trials numbered 0..1, each a finished run of its own; a second "machine" (its
own run store, same --storage and --study) joins the study and its trials continue the numbering;
a sweep process killed with SIGKILL mid-trial leaves a trial that Optuna's heartbeat marks failed
and retries, and the study goes on.

Tiny trials as in tests/test_sweep.py: seed-004, batch 32, on the synthetic image folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from playground.runs.store import RunStore
from playground.runs.sweep import trial_rows
from tests import postgres
from tests.test_training import ROOT, run_cli

RUNNING = optuna.trial.TrialState.RUNNING
COMPLETE = optuna.trial.TrialState.COMPLETE
FAIL = optuna.trial.TrialState.FAIL


@pytest.fixture(scope="module")
def pg():
    try:
        server = postgres.start(settings={"fsync": "off"})
    except postgres.Unavailable as e:
        pytest.skip(f"no PostgreSQL server for the sweep tests: {e}")
    yield server
    server.stop()


def space_file(tmp_path, epochs: int = 1, name: str = "space.json") -> str:
    space = {"name": "pg-tiny", "base": {"preset": "seed-004", "train": {"epochs": epochs, "batch_size": 32}},
             "params": {"train.max_lr": {"float": [0.01, 0.2]}}}
    path = tmp_path / name
    path.write_text(json.dumps(space))
    return str(path)


def sweep(space, storage, study, data, runs, trials, workers=1):
    result = run_cli("sweep", "--space", space, "--trials", str(trials), "--workers", str(workers),
                     "--storage", storage, "--study", study, "--data", str(data), "--runs", str(runs))
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_readme_url_form_postgresql_reaches_the_server(pg, tmp_path):
    """``--storage postgresql://…`` (no driver named) must work with the driver in requirements.txt."""
    from playground.runs.sweep import storage_for

    storage_for(pg.plain_url, RunStore(tmp_path / "runs").root)


def test_two_workers_then_a_second_machine_share_one_study(pg, image_folder, tmp_path):
    space, study = space_file(tmp_path), "shared"
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    out = sweep(space, pg.url, study, image_folder, first, trials=2, workers=2)
    assert "127.0.0.1" in out.stdout and "sweep-pw" not in out.stdout + out.stderr  # no password in the output
    trials = optuna.load_study(study_name=study, storage=pg.url).trials
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state == COMPLETE for t in trials)
    run_ids = [t.user_attrs["run_id"] for t in trials]
    assert len(set(run_ids)) == 2
    store = RunStore(first)
    for t in trials:
        record = store.get(t.user_attrs["run_id"])
        assert record.status == "finished" and record.name == f"{study} #{t.number}"

    sweep(space, pg.url, study, image_folder, second, trials=1)  # another machine: same storage and study
    trials = optuna.load_study(study_name=study, storage=pg.url).trials
    assert sorted(t.number for t in trials) == list(range(3)) and all(t.state == COMPLETE for t in trials)
    joined = [t for t in trials if t.number >= 2]
    assert {t.user_attrs["run_id"] for t in joined}.isdisjoint(run_ids)
    for t in joined:  # its runs are in its own store
        assert RunStore(second).get(t.user_attrs["run_id"]).status == "finished"
        assert t.user_attrs["run_id"] not in {r.id for r in store.list()}


def test_a_sweep_process_killed_mid_trial_is_failed_by_the_heartbeat_and_retried(pg, image_folder, tmp_path,
                                                                                 monkeypatch):
    """The killed process's trial trains for many epochs; the second process (a 1-epoch base, same
    distributions) starts after the heartbeat's grace period (6 s here, by the setting; 30 s by
    default), fails the stale trial, runs its retry (same parameters) and a new trial."""
    from playground.runs.sweep import storage_for

    monkeypatch.setenv("PLAYGROUND_SWEEP_GRACE_S", "6")
    study, first, second = "killed", tmp_path / "machine-a", tmp_path / "machine-b"
    slow, quick = space_file(tmp_path, epochs=200, name="slow.json"), space_file(tmp_path, name="quick.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "playground", "sweep", "--space", slow, "--trials", "1",
                             "--storage", pg.url, "--study", study, "--data", str(image_folder), "--runs", str(first)],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # mid-trial: the trial has reported a tested epoch
            assert proc.poll() is None and time.monotonic() < deadline, "the first sweep never got going"
            try:
                trials = optuna.load_study(study_name=study, storage=pg.url).trials
            except KeyError:  # the study is not created yet
                trials = []
            if trials and trials[0].state == RUNNING and trials[0].intermediate_values:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = optuna.load_study(study_name=study, storage=pg.url).trials[0]
        orphan = RunStore(first)  # the trial's worker is told to stop when its sweep process dies
        deadline = time.monotonic() + 30
        while orphan.get(killed.user_attrs["run_id"]).active:
            assert time.monotonic() < deadline, "the killed sweep's training worker went on"
            time.sleep(0.5)
        assert orphan.get(killed.user_attrs["run_id"]).status == "stopped"
    finally:
        try:  # anything left of that process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert killed.state == RUNNING  # nobody has noticed yet

    storage = storage_for(pg.url, RunStore(second).root)
    assert storage.grace_period == 6
    study_id = storage.get_study_id_from_name(study)
    deadline = time.monotonic() + 60
    while not storage._get_stale_trial_ids(study_id):  # the heartbeat's grace period runs out
        assert time.monotonic() < deadline, "the killed trial never went stale"
        time.sleep(1)

    sweep(quick, pg.url, study, image_folder, second, trials=2)
    trials = sorted(optuna.load_study(study_name=study, storage=pg.url).trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [FAIL, COMPLETE, COMPLETE]
    retry = trials[1]
    assert retry.system_attrs.get("failed_trial") == 0 and retry.params == killed.params
    assert retry.user_attrs["run_id"] != killed.user_attrs["run_id"]
    assert {RunStore(second).get(t.user_attrs["run_id"]).status for t in trials[1:]} == {"finished"}
    rows = {r["trial"]: r for r in trial_rows(RunStore(second), study, pg.url)}  # what `trials` and the page say
    assert rows[0]["why"] == "its sweep process stopped (no heartbeat)" and rows[1]["why"] == "retry of trial 0"
