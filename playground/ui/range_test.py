"""The Train page's LR range test: started as a process of its own (the web server never trains), followed from
the run store, where a reload finds it again, and its suggestion written into the form on request."""
from __future__ import annotations

import subprocess
import threading

import streamlit as st

from ..escape import plain
from ..results.plots import lr_figure
from ..runs import lr_tests
from ..settings import hosted
from ..specs.config import RunSpec
from . import server, visitor

_children: list[subprocess.Popen] = []  # reaped as pages poll, so no test leaves a zombie behind
_lock = threading.Lock()
START, END, STEPS = 1e-5, 10.0, 100


def start(run: RunSpec) -> str | None:
    """Record and start a test of ``run``; its id, or None after one line saying why not."""
    store, me = server.store(), visitor.owner()
    running = [t for t in lr_tests.tests(store) if t.active]
    mine = [t for t in running if t.owner == me]
    if mine or (hosted() and running):
        who = "yours" if mine else "another visitor's"
        st.error(f"An LR range test ({who}) is running on this server; wait for it to end (about a minute).")
        return None
    with _lock:
        _children[:] = [p for p in _children if p.poll() is None]
        test = lr_tests.create(store, run, run.data, START, END, STEPS, me)
        try:
            _children.append(lr_tests.spawn(store, test))
        except OSError as e:
            test.status, test.message = lr_tests.FAILED, f"its process could not start: {e}"
            lr_tests.save(store, test)
    st.session_state["lr_test"] = test.id
    return test.id


def use(lr: float, low: float, high: float) -> None:
    """Button callback: the form's max LR, within its bounds."""
    st.session_state["t_lr"] = min(high, max(low, lr))
    st.session_state["lr_used"] = lr


def latest() -> lr_tests.LRTest | None:
    """This tab's test, else this visitor's newest one (a reloaded tab finds it)."""
    store = server.store()
    if test_id := st.session_state.get("lr_test"):
        return lr_tests.get(store, test_id)
    me = visitor.owner()
    return next((t for t in lr_tests.tests(store) if t.owner == me), None)


def show(bounds: tuple[float, float]) -> None:
    """The newest test: followed every 1.5 s while it runs, then drawn once more in full."""
    test = latest()
    if test is not None:
        st.fragment(_panel, run_every=1.5 if test.active else None)(bounds, test.active)


def _panel(bounds: tuple[float, float], was_active: bool) -> None:
    with _lock:
        _children[:] = [p for p in _children if p.poll() is None]
    test = latest()
    if st.session_state.pop("lr_used", None) is not None or test is None or was_active and not test.active:
        st.rerun()  # the whole page: the form shows the new max LR, or the ended test stops being polled
    r = test.result
    net = test.spec.get("net", {}).get("name", "?")
    status = {lr_tests.RUNNING: f"running: {len(r.lrs)} of {r.steps} batches",
              lr_tests.FINISHED: f"ended after {len(r.lrs)} batches: {r.ended}",
              lr_tests.FAILED: f"failed: {test.message}",
              lr_tests.INTERRUPTED: f"interrupted after {len(r.lrs)} batches: {test.message}"}[test.status]
    st.markdown(f"**LR range test** of {plain(net)} ({test.id}): {plain(status)}.")
    if r.lrs:
        st.plotly_chart(lr_figure(r), key="lr_chart")
    if r.suggested_max_lr is not None and not test.active:
        low, high = bounds
        st.caption(f"Suggested max LR for OneCycle: **{r.suggested_max_lr:.2g}**, the LR at the smoothed loss's "
                   f"minimum ({r.min_loss_lr:.2g}) divided by 10; the loss fell fastest at {r.steepest_lr:.2g}. "
                   f"It is for this net, augmentation, optimizer and batch size.")
        st.button(f"Use this max LR ({r.suggested_max_lr:.2g})", key="lr_use", on_click=use,
                  args=(r.suggested_max_lr, low, high), icon=":material/check:")
    elif not test.active and not r.lrs:
        st.caption("The test drew no point, so it suggests nothing.")
