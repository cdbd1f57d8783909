import datetime as dt

import pandas as pd
import streamlit as st

from playground import ui
from playground.plots import compare_figure

st.title("Runs")
store = ui.store()
runs = store.list()
if not runs:
    st.info("No runs yet: train one on the **Train** page or with `python -m playground train`.")
    st.stop()
table = pd.DataFrame([{
    "id": r.id, "name": r.name, "status": r.status, "params": r.params, "best acc": r.best_acc,
    "epochs": len(r.epochs), "time (s)": round(r.elapsed or 0, 1),
    "started": dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
    "optimizer": r.spec.get("train", {}).get("optimizer"), "max LR": r.spec.get("train", {}).get("max_lr"),
    "message": r.message} for r in runs])
sel = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs_table")
chosen = [runs[i] for i in (sel.selection.rows if sel else [])] or runs[:1]
by_time = st.toggle("Wall-clock minutes on the x axis", key="runs_by_time")
st.plotly_chart(compare_figure(chosen, minutes=by_time), key="overlay")

st.subheader("Delete")
victim = st.selectbox("Run to delete", [r.id for r in runs], index=None, key="del_pick")
if victim:
    active = ui.registry().get(st.session_state.get("job_id"))
    if active is not None and active.active and active.run_id == victim:
        st.warning("This run is still training; stop it first.")
    elif st.checkbox(f"Yes, delete run {victim} and its checkpoint", key="del_confirm"):
        if st.button("Delete", type="primary", key="del_go"):
            store.delete(victim)
            st.session_state.pop("del_confirm", None)
            st.success(f"Deleted {victim}.")
            st.rerun()
