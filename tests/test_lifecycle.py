"""Fault injection for training workers: each lifecycle path with real processes.

Graceful stop and resume, SIGKILL, an exception in the augmentation thread and in any other
thread, a worker that ignores its stop, a restarted server finding dead workers, resume with
identical weights, ownership refusals and delete-while-training.
"""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from playground.runs import lifecycle
from playground.runs.jobs import JobError, Launcher
from playground.runs.runner import create_run, execute
from playground.faults import CheckpointError
from playground.runs.records import PHASE_TESTING, PHASE_TRAINING
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from tests.test_training import ROOT, run_cli, tiny_net, tiny_run


def wait_until(condition, timeout: float = 60, every: float = 0.05):
    end = time.time() + timeout
    while time.time() < end:
        if value := condition():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {condition}")


def long_run(image_folder, **train):
    run = tiny_run(**{"epochs": 300, "batch_size": 16, **train})
    run.data = str(image_folder)
    return run


def start(launcher: Launcher, image_folder, owner: str = "me", **train) -> str:
    run_id = launcher.start(owner, long_run(image_folder, **train), load_dataset(str(image_folder)))
    wait_until(lambda: launcher.get(run_id).epochs, 90)  # running, with a saved epoch
    return run_id


def test_graceful_stop_saves_then_resume_finishes(image_folder, tmp_path):
    launcher = Launcher(tmp_path / "runs")
    run_id = start(launcher, image_folder, epochs=40)
    proc = launcher._procs[run_id]
    assert launcher.get(run_id).pid == proc.pid != os.getpid()  # a process of its own, not a thread of this one
    assert psutil.Process(proc.pid).cmdline()[-4:-2] == ["worker", run_id]
    launcher.stop("me", run_id)
    record = wait_until(lambda: (r := launcher.get(run_id)).status != "running" and r, 30)
    assert record.status == "stopped" and "stopped by request" in record.message
    assert proc.wait(10) == 0
    done = len(record.epochs)
    assert 0 < done < 40 and record.state_sha and launcher.store.load_checkpoint(run_id)
    launcher.resume("me", run_id)
    record = launcher.wait(run_id, 120)
    assert record.status == "finished" and [e["epoch"] for e in record.epochs] == list(range(1, 41))


@pytest.mark.parametrize("sig, words", [(signal.SIGKILL, "SIGKILL; out of memory?"),
                                         (signal.SIGSEGV, "Fatal Python error: Segmentation fault")])
def test_a_killed_or_crashed_worker_is_recorded_within_seconds_with_the_reason(image_folder, tmp_path, sig, words):
    launcher = Launcher(tmp_path / "runs")
    run_id = start(launcher, image_folder)
    os.kill(launcher.get(run_id).pid, sig)
    killed = time.time()
    record = wait_until(lambda: (r := launcher.store.get(run_id)).status != "running" and r, 10)  # the watcher
    assert time.time() - killed < 3
    assert record.status == "interrupted" and words in record.message and "resume" in record.message
    assert launcher.store.active() == []  # the slot is free


def test_a_child_that_dies_between_its_poll_and_the_reconcile_keeps_its_exit_reason(image_folder, tmp_path):
    """The watcher polls its children, then reconciles the store: a worker killed in between
    must wait for the next poll (which knows the signal), not be written off as merely gone."""
    launcher = Launcher(tmp_path / "runs")
    run_id = start(launcher, image_folder)
    proc = launcher._procs[run_id]
    real_poll = proc.poll

    def poll_then_die():
        code = real_poll()
        if code is None:
            os.kill(proc.pid, signal.SIGKILL)
            wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 10)
        return code

    with launcher._lock:
        proc.poll = poll_then_die
    record = wait_until(lambda: (r := launcher.get(run_id)).status != "running" and r, 10)
    assert "SIGKILL; out of memory?" in record.message


def test_a_reader_that_judged_a_dead_worker_never_ends_the_worker_that_resumed_the_run_meanwhile(tmp_path,
                                                                                                  monkeypatch):
    """Between a reader's liveness check and its write, another reader recorded the end and a Resume's
    worker claimed the run: the first reader wrote "interrupted" over the live worker's "running"."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", {})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert store.claim(run_id, gone.pid, time.time(), lifecycle.this_host(), "cpu")
    real_alive = lifecycle.alive

    def judged_then_resumed(record):
        verdict = real_alive(record)
        store.finish(run_id, "interrupted", "recorded by another reader")
        assert store.requeue(run_id) and store.claim(run_id, *lifecycle.this_process(), "cpu")
        return verdict

    monkeypatch.setattr(lifecycle, "alive", judged_then_resumed)
    assert lifecycle.reconcile(store) == []
    assert store.get(run_id).status == "running" and store.get(run_id).pid == os.getpid()


def test_a_restarted_server_finds_runs_whose_workers_are_gone(image_folder, tmp_path):
    """A CLI training killed with SIGKILL: nobody holds its handle; the next reader records it."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "playground", "train", "--preset", "fast", "--epochs", "300",
                             "--batch-size", "16", "--device", "cpu", "--data", str(image_folder), "--runs",
                             str(runs), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().split("run id: ")[-1].strip()
    store = RunStore(runs)
    wait_until(lambda: store.get(run_id).status == "running", 60)
    proc.kill()
    proc.wait()
    assert store.get(run_id).status == "running"  # what the store said before anyone looked
    listed = json.loads(run_cli("runs", "--json", "--runs", str(runs)).stdout)  # a fresh process reads the store
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
    assert "ended without recording a result" in listed[0]["message"]
    assert Launcher(runs).get(run_id).status == "interrupted"  # and a new server sees the same


def test_an_exception_in_the_augmentation_thread_fails_the_run(image_folder, tmp_path, monkeypatch):
    import playground.training.batch_augment as batch_augment
    real, calls = batch_augment.BatchAugment.__call__, []

    def broken(self, x, where=None):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("bad pixels")
        return real(self, x, where)

    monkeypatch.setattr(batch_augment.BatchAugment, "__call__", broken)
    store = RunStore(tmp_path)
    run_id, result = execute(store, tiny_run(epochs=3), load_dataset(str(image_folder)))
    assert result.status == "failed" and "augmentation thread failed: ValueError: bad pixels" in result.message
    assert store.get(run_id).status == "failed" and "bad pixels" in store.get(run_id).message


def test_an_exception_in_any_worker_thread_is_recorded_and_ends_the_worker(image_folder, tmp_path):
    store = RunStore(tmp_path)
    run = long_run(image_folder)
    run_id = create_run(store, run)
    script = f"""
import threading
from playground.faults import CheckpointError
from playground.runs.store import RunStore
from playground.runs.worker import run_worker

def rogue(event):
    if event.kind == "batch" and event.data["step"] == 2:
        threading.Thread(target=lambda: 1 / 0, name="rogue").start()

run_worker(RunStore({str(tmp_path)!r}), {run_id!r}, [rogue])
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 70, out.stderr[-2000:]
    record = store.get(run_id)
    assert record.status == "failed" and "ZeroDivisionError in thread rogue" in record.message


def test_a_worker_that_ignores_its_stop_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run_id = create_run(store, tiny_run())
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
                                stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"
    assert store.claim(run_id, stubborn.pid, lifecycle.process_start(stubborn.pid), lifecycle.this_host(), "cpu")
    monkeypatch.setattr(lifecycle, "GRACE_S", 0.5)
    lifecycle.request_stop(store, store.get(run_id))
    time.sleep(0.7)
    assert stubborn.poll() is None  # SIGTERM ignored
    assert lifecycle.reconcile(store) == [run_id]
    stubborn.wait(5)  # lifecycle.kill reaped it already (so the exit status is lost to Popen)
    assert not psutil.pid_exists(stubborn.pid)
    record = store.get(run_id)
    assert record.status == "stopped" and "did not end within" in record.message


def test_the_stop_grace_follows_the_recorded_phase_not_the_message(tmp_path):
    """The grace is chosen by the phase the worker records; the message is only shown."""
    store = RunStore(tmp_path)
    run_id = create_run(store, tiny_run())
    store.beat(run_id, "testing epoch 3 on 40 images", PHASE_TRAINING)
    assert lifecycle.grace_s(store.get(run_id)) == lifecycle.GRACE_S
    store.beat(run_id, "a message of any words", PHASE_TESTING)
    assert lifecycle.grace_s(store.get(run_id)) == lifecycle.TEST_GRACE_S


def test_a_worker_asked_to_stop_during_a_test_pass_may_finish_the_pass(tmp_path, monkeypatch):
    """A stop during the last epoch's TTA test (minutes on a CPU) killed the worker 20 s later: the run lost the
    epoch it had trained. While it says it is testing it has TEST_GRACE_S; it stops after the pass."""
    store = RunStore(tmp_path)
    run_id = create_run(store, tiny_run())
    testing = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    assert store.claim(run_id, testing.pid, lifecycle.process_start(testing.pid), lifecycle.this_host(), "cpu")
    store.beat(run_id, "testing epoch 30 on 10,000 images × 18 TTA views", PHASE_TESTING)
    monkeypatch.setattr(lifecycle, "GRACE_S", 0.5)
    store.request_stop(run_id)
    time.sleep(0.6)
    assert lifecycle.reconcile(store) == [] and testing.poll() is None
    store.add_epoch(run_id, dict(epoch=1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5, lr=0.1,
                                 img_per_s=100.0, epoch_time=1.0, elapsed=1.0))  # the pass ended, the epoch is saved:
    store.beat(run_id, "", PHASE_TRAINING)                                             # now it has GRACE_S to end
    assert lifecycle.reconcile(store) == [] and testing.poll() is None
    time.sleep(0.6)
    assert lifecycle.reconcile(store) == [run_id] and testing.wait(5) is not None


def test_resume_after_sigkill_ends_with_the_same_weights(image_folder, tmp_path):
    runs = str(tmp_path / "runs")
    args = ["train", "--spec", str(tmp_path / "net.json"), "--epochs", "4", "--batch-size", "16", "--device", "cpu",
            "--data", str(image_folder), "--runs", runs, "--quiet", "--seed", "5"]
    (tmp_path / "net.json").write_text(tiny_net().to_json())
    whole = run_cli(*args)
    assert whole.returncode == 0, whole.stderr
    whole_id = whole.stdout.split("run id: ")[-1].strip()
    proc = subprocess.Popen([sys.executable, "-m", "playground", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().split("run id: ")[-1].strip()
    store = RunStore(runs)
    wait_until(lambda: len(store.get(run_id).epochs) >= 2, 60, every=0.01)
    proc.kill()
    proc.wait()
    resumed = run_cli("train", "--resume", run_id, "--runs", runs, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    a, b = store.load_checkpoint(whole_id)["state_dict"], store.load_checkpoint(run_id)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [e["train_loss"] for e in store.get(run_id).epochs] == [e["train_loss"] for e in store.get(whole_id).epochs]
    again = run_cli("train", "--resume", run_id, "--runs", runs)
    assert again.returncode == 2 and "only a stopped or interrupted run" in again.stderr


def test_visitors_cannot_change_runs_they_did_not_start(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    launcher = Launcher(tmp_path)
    run_id = create_run(launcher.store, tiny_run(), owner="alice")
    launcher.store.finish(run_id, "stopped", "stopped by request")
    before = launcher.store.get(run_id)
    for verb in ("stop", "resume", "delete"):
        with pytest.raises(JobError, match=f"another visitor; you can only {verb} runs you started"):
            getattr(launcher, verb)("mallory", run_id)
    assert launcher.store.get(run_id) == before
    monkeypatch.delenv("PLAYGROUND_HOSTED")  # local mode: the one user owns everything
    launcher.delete("anyone", run_id)
    assert launcher.store.get(run_id) is None


def test_deleting_a_training_run_stops_it_first(image_folder, tmp_path):
    launcher = Launcher(tmp_path / "runs")
    run_id = start(launcher, image_folder)
    proc = launcher._procs[run_id]
    launcher.delete("me", run_id)
    assert launcher.store.get(run_id) is None
    assert proc.wait(15) == 0  # it ended by itself, quietly: no IntegrityError from writing to a deleted run
    assert not list((tmp_path / "runs" / "checkpoints").glob(f"*{run_id}*"))


def test_run_ids_from_links_and_flags_never_become_paths(tmp_path):
    store = RunStore(tmp_path)
    for bad in ("../../etc/passwd", "20261125-163227-62f58b/../x", "x" * 5000, "", None):
        assert store.get(bad) is None
        with pytest.raises(CheckpointError, match="is not a run id"):
            store.checkpoint_path(bad)
    for command in (["evaluate", "../../etc/passwd"], ["train", "--resume", "x" * 5000]):
        out = run_cli(*command, "--runs", str(tmp_path))
        assert out.returncode == 2 and out.stderr.startswith("no run '") and len(out.stderr) < 200


def test_a_training_start_ends_at_the_tiers_run_minutes_stopped_and_resumable(image_folder, tmp_path, monkeypatch):
    """On the hosted demo one visitor's 100-epoch run held a training slot for hours: a start of a training
    ends at run_minutes (here 0: at the first heartbeat), saved and resumable, and says why."""
    from dataclasses import replace

    from playground.runs.worker import run_worker
    from playground.specs import limits

    monkeypatch.setitem(limits.TIERS, "local", replace(limits.TIERS["local"], run_minutes=0))
    store = RunStore(tmp_path / "runs")
    run = tiny_run(epochs=1000)
    run.data = str(image_folder)
    run_id = create_run(store, run)
    result = run_worker(store, run_id)
    record = store.get(run_id)
    assert result.status == record.status == "stopped" and record.state_sha and len(record.epochs) < 1000
    assert "at run_minutes, the 0-minute limit of one start of a training (Resume goes on)" in record.message


def test_the_apps_store_keeps_the_tiers_newest_runs_and_never_an_active_one(image_folder, tmp_path, monkeypatch):
    """One hosted visitor starting run after run grew the store 21 MiB a run toward a full disk for everyone:
    starting a run past kept_runs deletes the oldest ended runs (their files too), never a running one."""
    from dataclasses import replace

    from playground.runs.jobs import Launcher
    from playground.specs import limits

    monkeypatch.setitem(limits.TIERS, "local", replace(limits.TIERS["local"], kept_runs=2))
    store = RunStore(tmp_path / "runs")
    old = [store.create(f"old {i}", tiny_run().to_dict(), params=1) for i in range(3)]
    for run_id in old[1:]:  # old[0] stays queued: active, as a run whose worker is starting
        store.finish(run_id, "finished")
        store.log_path(run_id).write_text("log")
    launcher = Launcher(tmp_path / "runs")
    run = tiny_run(epochs=1)
    run.data = str(image_folder)
    new = launcher.start("me", run, load_dataset(str(image_folder)))
    assert {r.id for r in store.list()} == {new, old[2], old[0]}  # the newest two, and the active one
    assert not store.log_path(old[1]).exists() and store.log_path(old[2]).exists()
    launcher.delete("me", new)
