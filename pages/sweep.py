import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from playground import ui
from playground.config import hosted
from playground.presets import PRESETS
from playground.recipes import measured_for
from playground.serde import SpecError
from playground.sweep import shipped_spaces, space_from_dict, start_sweep, studies, trial_rows

st.title("Sweep")
st.markdown("Optuna searches a space of specs for you: every trial is a normal run (Runs, Results), poor trials "
            "are stopped early by the median pruner, and the same study can be shared by several machines "
            "(`python -m playground sweep --storage postgresql://…`, see the README).")
store = ui.store()

if hosted():
    st.info("Sweeps are off in this hosted demo: they train many networks and would take the server from every "
            "other visitor. Run one on your own machine: `python -m playground sweep --space "
            "sweeps/under-200k-seed-rules.json --trials 20`.")
else:
    spaces = shipped_spaces()
    pick = st.selectbox("Search space", list(spaces), key="sw_space")
    text = st.text_area("Space (JSON, editable)", spaces[pick].read_text(), height=260, key=f"sw_text_{pick}")
    c1, c2, c3 = st.columns(3)
    trials = c1.number_input("Trials", 1, 200, 8, key="sw_trials")
    workers = c2.number_input("Processes at once", 1, 4, 1, key="sw_workers",
                              help="Each trains one trial; on a 2-core machine 1 is usually fastest per trial")
    name = c3.text_input("Study name (the same name continues a study)", pick, max_chars=80, key="sw_study")
    if st.button("Start the sweep", type="primary", key="sw_start"):
        try:
            space = space_from_dict(json.loads(text), pick)
            data = ui.dataset()
            if data is not None:
                start_sweep(space, int(trials), int(workers), ui.data_source(), store, name.strip() or pick)
                st.success(f"Sweep {name} started: its trials appear below as they run.")
        except json.JSONDecodeError as e:
            st.error(f"The space is not JSON: {e.msg} at line {e.lineno}")
        except SpecError as e:
            st.error("**Not started:** " + "; ".join(e.problems))


def references() -> list[dict]:
    """The presets' parameter counts and measured accuracies, drawn beside the trials."""
    out = []
    for p in PRESETS.values():
        m = measured_for(p.name)
        acc = m.test_acc / 100 if m else (p.reported_accuracy / 100 if p.reported_accuracy else None)
        if acc is not None:
            out.append({"name": p.name + (" (measured)" if m else " (reported)"), "params": ui.analysis(p.net).params,
                        "accuracy": acc})
    return out


@st.fragment(run_every=3.0)
def watch() -> None:
    names = studies(store)
    if not names:
        st.caption("No sweep has run with this run store yet.")
        return
    study = st.selectbox("Study", names, index=len(names) - 1, key="sw_watch")
    rows = trial_rows(store, study)
    if not rows:
        st.caption("No trials yet.")
        return
    table = pd.DataFrame(rows)
    done = table[table["accuracy"].notna()]
    fig = go.Figure()
    fig.add_scatter(x=done["params"], y=done["accuracy"], mode="markers", name="trials",
                    text=[f"trial {t} ({s})" for t, s in zip(done["trial"], done["state"])],
                    marker=dict(size=9, color=["#d9480f" if s == "complete" else "#adb5bd" for s in done["state"]]))
    ref = pd.DataFrame(references())
    if len(ref):
        fig.add_scatter(x=ref["params"], y=ref["accuracy"], mode="markers+text", text=ref["name"], name="presets",
                        textposition="top center", marker=dict(symbol="diamond", size=10, color="#1c7ed6"))
    fig.update_layout(height=380, margin=dict(t=20), xaxis=dict(title="parameters"),
                      yaxis=dict(title="test accuracy", tickformat=".0%"))
    st.plotly_chart(fig, key="sw_chart")
    st.dataframe(table, hide_index=True, key="sw_table", column_config={
        "accuracy": st.column_config.NumberColumn(format="percent"),
        "params": st.column_config.NumberColumn(format="localized")})
    opened = st.selectbox("Open a trial's run in Results", [r for r in table["run"] if r], index=None,
                          key="sw_open", placeholder="choose a trial's run…")
    if opened:
        st.session_state["last_run_id"] = opened
        st.page_link("../pages/results.py", label=f"Results for run {opened}", icon=":material/search:")


st.subheader("Trials")
watch()
