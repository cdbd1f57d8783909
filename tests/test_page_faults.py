"""The pages when the run store fails under them (a full or read-only disk, a failing one), and when a
worker process cannot be started.

app.py turns a StoreError into one error line, but only for the page script itself: Streamlit runs a
button's callback before the script, and a fragment (the Train page's live view, redrawn every
second) on its own, and shows their errors with a traceback. These tests reach exactly those paths.
"""
import errno
import os

import pytest
from streamlit.testing.v1 import AppTest

from playground.runs import lifecycle
from playground.faults import StoreError
from playground.runs.jobs import JobError, Launcher
from playground.runs.store import RunStore
from tests.test_app import APP, shown
from tests.test_store_damage import app_store  # noqa: F401  (a fixture)
from tests.test_training import tiny_run

FULL = StoreError("the disk is full: cannot write the run store /srv/runs (No space left on device); free some space")


def running_run(store: RunStore) -> str:
    """A run a live process (this one) holds, so the page offers Stop."""
    run_id = store.create("tiny", tiny_run(epochs=2).to_dict())
    assert store.claim(run_id, os.getpid(), lifecycle.process_start(os.getpid()), lifecycle.this_host(), "cpu")
    return run_id


def train_page(run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, at.exception
    return at


def one_store_error(at: AppTest) -> bool:
    errors = [shown(e.value) for e in at.error]
    return not at.exception and len(errors) == 1 and "the disk is full" in errors[0] and "\n" not in errors[0]


def test_the_live_view_says_in_one_line_when_the_store_cannot_be_read(app_store, monkeypatch):
    run_id = running_run(app_store)
    at = train_page(run_id)
    assert at.button(key="stop") and not at.button(key="stop").disabled
    monkeypatch.setattr(Launcher, "get", lambda self, run_id: (_ for _ in ()).throw(FULL))
    at.run()
    assert one_store_error(at), (at.exception, [shown(e.value) for e in at.error])


def test_a_stop_that_the_store_refuses_is_one_line_on_the_train_page(app_store, monkeypatch):
    run_id = running_run(app_store)
    at = train_page(run_id)
    monkeypatch.setattr(Launcher, "stop", lambda self, owner, run_id: (_ for _ in ()).throw(FULL))
    at.button(key="stop").click().run()
    assert one_store_error(at), (at.exception, [shown(e.value) for e in at.error])


def test_a_delete_that_the_store_refuses_is_one_line_on_the_runs_page(app_store, monkeypatch):
    run_id = app_store.create("tiny", tiny_run().to_dict())
    app_store.finish(run_id, "finished")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("../pages/runs.py").run()
    monkeypatch.setattr(Launcher, "delete", lambda self, owner, run_id: (_ for _ in ()).throw(FULL))
    at.selectbox(key="manage_pick").set_value(run_id).run()
    at.checkbox(key="del_confirm").check().run()
    at.button(key="del_go").click().run()
    assert one_store_error(at), (at.exception, [shown(e.value) for e in at.error])
    assert app_store.get(run_id) is not None


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENOMEM, errno.ENOSPC])
def test_a_worker_that_cannot_be_started_fails_its_run_in_one_line_and_frees_the_slot(tmp_path, monkeypatch,
                                                                                      image_folder, code):
    """fork() without memory or process slots, or a log that cannot be opened: the run was left queued
    with no process for a minute, holding its owner's slot, and the page showed a raw OSError."""
    from playground.training.data import load_dataset

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(lifecycle.subprocess, "Popen", refuse)
    launcher = Launcher(tmp_path / "runs")
    run = tiny_run()
    run.data = str(image_folder)
    with pytest.raises(JobError) as caught:
        launcher.start("me", run, load_dataset(str(image_folder)))
    message = str(caught.value)
    assert "could not be started" in message and os.strerror(code) in message and "\n" not in message
    (record,) = launcher.store.list()
    assert record.status == "failed" and "could not be started" in record.message
    assert not launcher.store.active()


def test_a_worker_whose_pid_cannot_be_recorded_is_killed_and_its_run_fails_in_one_line(tmp_path, monkeypatch,
                                                                                       image_folder):
    """The store refuses the launcher's record of the new worker (a disk that just filled): the worker
    went on untracked, training where no page could see or stop it, while the page showed an error."""
    import psutil

    from playground.training.data import load_dataset

    started = []
    real_popen = lifecycle.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def refuse(*args, **kwargs):
        raise StoreError("the run store's disk is full")
    monkeypatch.setattr(lifecycle.subprocess, "Popen", popen)
    monkeypatch.setattr(lifecycle.RunStore, "set_process", refuse)
    launcher = Launcher(tmp_path / "runs")
    run = tiny_run()
    run.data = str(image_folder)
    with pytest.raises(JobError, match="could not be started \\(the run store's disk is full\\)"):
        launcher.start("me", run, load_dataset(str(image_folder)))
    (child,) = started
    assert child.returncode is not None and not psutil.pid_exists(child.pid)
    (record,) = launcher.store.list()
    assert record.status == "failed" and not launcher.store.active()


def test_a_worker_that_dies_saying_error_in_one_line_is_quoted_by_its_run(tmp_path):
    """The CLI's own one-line "error: ..." (an OSError while the worker imports torch, a missing CUDA
    library) is the run's last words, as a traceback's last line was."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", tiny_run().to_dict())
    store.log_path(run_id).write_text("loading\nerror: libcudnn.so.9: cannot open shared object file\n")
    assert lifecycle.last_output(store, run_id).endswith("its last words: error: libcudnn.so.9: cannot open shared "
                                                         "object file")


def test_the_runs_page_draws_no_empty_chart_for_a_run_that_never_trained(app_store):
    """The newest run failed before its first epoch: the default chart drew it, empty, with axes from
    -100% to 400%. It now draws the newest run with epochs, or says there is nothing to draw."""
    failed = app_store.create("tiny", tiny_run().to_dict())
    app_store.finish(failed, "failed", "failed: its worker process could not be started (no memory)")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and not at.get("plotly_chart")
    assert any("No finished epoch to draw yet" in shown(c.value) for c in at.caption)
