import datetime as dt

import pandas as pd
import streamlit as st

from playground.ui import server, visitor
from playground.escape import plain
from playground.results.compare import settings_diff
from playground.results.plots import accuracy_text, compare_figure, figure_text, minutes_seconds, seed_logs
from playground.faults import StoreError
from playground.runs import lr_tests
from playground.runs.jobs import JobError, owns
from playground.runs.records import RESUMABLE
from playground.settings import hosted
from playground.specs import limits

st.title("Runs")
launcher = server.launcher()
if note := st.session_state.pop("runs_note", None):
    st.success(note)
runs = launcher.runs()
if not runs:
    st.info("No runs yet: train one on the **Train** page or with `python -m playground train`.")
    st.stop()
me = visitor.owner()
table = pd.DataFrame([{
    "id": r.id, "name": r.name, "note": r.note, "status": r.status, "params": r.params,
    "best acc": accuracy_text(r.best_acc, 2),
    "epochs": f"{len(r.epochs)}/{r.planned_epochs}", "time": minutes_seconds(r.elapsed),
    "started": dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
    "optimizer": r.spec.get("train", {}).get("optimizer") or "", "max LR": r.spec.get("train", {}).get("max_lr"),
    **({"yours": owns(r, me)} if hosted() else {}), "message": r.message or ""} for r in runs])
sel = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs_table",
                   column_config={"params": st.column_config.NumberColumn(format="localized"),
                                  "max LR": st.column_config.NumberColumn(format="%.3g"),
                                  "yours": st.column_config.CheckboxColumn(width=60),
                                  "time": st.column_config.TextColumn(help="training time, m:ss (h:mm:ss past an "
                                                                            "hour)")})
rows = sel.selection.rows if sel else []
# the ticked rows (the list may have shrunk since the tick), else the newest run with a curve to draw
chosen = [runs[i] for i in rows if i < len(runs)] or [r for r in runs if r.epochs][:1]
by_time = st.toggle("Wall-clock minutes on the x axis", key="runs_by_time")
if any(r.epochs for r in chosen):
    if not rows:
        st.caption(f"The newest run with a finished epoch, {plain(chosen[0].name)} ({chosen[0].id}): tick runs in "
                   "the table to compare them.")
    st.plotly_chart(compare_figure(chosen, minutes=by_time), key="overlay")
    for log in seed_logs(chosen):
        st.caption(f"Grey: {plain(log.source)}, the curve a run of {log.preset}'s own network is judged against"
                   + (" (the log has no times: switch the axis to epochs to see it)." if by_time else "."))
else:  # an empty chart drew axes from -100% to 400%
    st.caption("No finished epoch to draw yet: tick a run that has trained at least one epoch.")
if len(chosen) > 1:
    st.markdown(f"**How the {len(chosen)} ticked runs differ**")
    diff = settings_diff(chosen)
    if diff:
        st.dataframe(pd.DataFrame(diff), hide_index=True, key="runs_diff")
        st.caption("Only the settings that are not the same in every ticked run: the net layer by layer (C2.1 is "
                   "block C2's first layer), the augmentation, the training and the data. — : the run's spec has "
                   "no such setting.")
    else:
        st.caption("The ticked runs share every setting: they differ only by chance (and by when they ran).")
elif rows:
    st.caption("Tick a second run to see how their settings differ.")

if tested := lr_tests.tests(launcher.store):  # kept apart from the trainings: no weights, no curve of epochs
    with st.expander(f"LR range tests ({len(tested)})"):
        st.dataframe(pd.DataFrame([{
            "id": t.id, "net": t.spec.get("net", {}).get("name", ""), "status": t.status,
            "batches": len(t.result.lrs),
            "suggested max LR": figure_text(t.result.suggested_max_lr, ".3g"),
            "ended": t.result.ended or t.message} for t in tested]), hide_index=True, key="lr_tests_table")
        st.caption("Each is a throwaway copy of a net trained while the LR rose (the Train page's **Find max LR**, "
                   "or `python -m playground lr-find`); no run's weights changed.")

st.subheader("Stop, resume or delete")
mine = [r for r in runs if owns(r, me)]
if not mine:
    st.caption("Runs that other visitors started are read-only; the runs you start appear here.")
    st.stop()
by_id = {r.id: r for r in mine}
pick = st.selectbox("Run", list(by_id), index=None, key="manage_pick", placeholder="choose a run…",
                    format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].status}")


def act(verb: str, run_id: str) -> None:
    """Button callbacks: the message survives the rerun that follows."""
    try:
        if verb == "stop":
            launcher.stop(me, run_id)
            st.session_state["runs_note"] = (f"Stop requested for {run_id}: it stops after its current batch (a test "
                                             "pass runs to its end first, and its epoch is saved).")
        elif verb == "label":
            launcher.label(me, run_id, st.session_state["label_name"], st.session_state["label_note"])
            st.session_state["runs_note"] = f"Saved the name and note of {run_id}."
            st.session_state.pop("label_for", None)  # the fields show them as stored (whitespace made one space)
        elif verb == "resume":
            launcher.resume(me, run_id)
            st.session_state["runs_note"] = f"Resuming {run_id}; follow it on the **Train** page."
        else:
            launcher.delete(me, run_id)
            st.session_state["runs_note"] = f"Deleted {run_id}."
            st.session_state.pop("manage_pick", None)
            st.session_state.pop("del_confirm", None)
    except (JobError, StoreError) as e:  # a callback's error would show as a traceback: app.py never sees it
        st.session_state["runs_error"] = str(e)


if err := st.session_state.pop("runs_error", None):
    st.error(plain(err))
if pick:
    record = by_id[pick]
    c1, c2, _ = st.columns([1, 1, 3])
    c1.button("Stop", icon=":material/stop:", key="run_stop", on_click=act, args=("stop", pick),
              disabled=not record.active)
    c2.button("Resume", icon=":material/play_arrow:", key="run_resume", on_click=act, args=("resume", pick),
              disabled=not (record.status in RESUMABLE and record.state_sha))
    if st.session_state.get("label_for") != pick:  # the fields show the picked run's label, not the last one's
        st.session_state.update(label_for=pick, label_name=record.name, label_note=record.note)
    with st.form("label_form", enter_to_submit=False, border=False):
        n1, n2 = st.columns([1, 2])
        n1.text_input("Name", key="label_name", max_chars=limits.current().name_chars)
        n2.text_input("Note", key="label_note", max_chars=limits.current().note_chars,
                      placeholder="what this run tries")
        st.form_submit_button("Save name and note", on_click=act, args=("label", pick), icon=":material/edit:")
    warn = " It is still training: it will be stopped first." if record.active else ""
    if st.checkbox(f"Yes, delete run {pick} and its checkpoint.{warn}", key="del_confirm"):
        st.button("Delete", type="primary", key="del_go", on_click=act, args=("delete", pick))
