import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from playground.ui import data_choice, server
from playground.escape import plain
from playground.results.sweep_chart import front_figure, trial_table
from playground.results.sweep_insight import VIEWS, snapshot
from playground.runs.space import shipped_spaces, space_from_dict, with_train
from playground.runs.sweep import (SweepStorageError, load_study, references, start_sweep, studies, study_objectives,
                                   trial_rows)
from playground.settings import hosted
from playground.specs import limits
from playground.specs.serde import SpecError, parse_json

st.title("Sweep")
st.markdown("Optuna searches a space of specs for you: every trial is a normal run (Runs, Results), poor trials "
            "are stopped early by a pruner (the space's `pruner`: median or hyperband), and the same study can be "
            "shared by several machines (`python -m playground sweep --storage postgresql://…`, see docs/sweeps.md).")
store = server.store()

@st.cache_data
def reference_points(axis: str) -> list[dict]:
    return references(axis)


@st.cache_resource(max_entries=4, show_spinner=False)
def study_snapshot(root: str, study: str, stamp: tuple):
    """The study in memory, read again from the run store (``root``) when a trial starts, ends or reports an
    epoch (``stamp``)."""
    return snapshot(load_study(store, study))


@st.cache_data(max_entries=32, show_spinner="Drawing Optuna's plot…")
def insight(root: str, study: str, stamp: tuple, view: int) -> go.Figure | str:
    """One of the views, drawn once per state of the study: the page refreshes every 3 s."""
    return VIEWS[view].draw(study_snapshot(root, study, stamp))


def trial_scale(table: pd.DataFrame) -> str:
    """What one trial trains, said where it is less than a full training: trials of 5,000 images for 2 epochs sit
    far below the presets' and recipes' points, which are full trainings."""
    trains = [r.spec.get("train", {}) for r in map(store.get, [i for i in table["run"] if i][:50]) if r is not None]
    subsets = {t.get("train_subset") for t in trains if isinstance(t.get("train_subset"), int) and t["train_subset"]}
    epochs = sorted({t.get("epochs") for t in trains if isinstance(t.get("epochs"), int)})
    if not subsets or not epochs:
        return ""
    images = " to ".join(f"{n:,}" for n in sorted({min(subsets), max(subsets)}))
    span = " to ".join(map(str, sorted({epochs[0], epochs[-1]})))
    return (f"The trials train on {images} images for {span} epoch{'s' * (epochs[-1] != 1)}; the presets and "
            "recipes are full trainings, so a trial's accuracy sits below theirs.")


@st.fragment(run_every=3.0)
def watch() -> None:
    try:
        show_studies()
    except SweepStorageError as e:  # a damaged or unreadable sweeps.sqlite: say so, keep the page
        st.error(f"The sweeps of this run store cannot be read: {plain(e)}")


def show_studies() -> None:
    names = studies(store)
    if not names:
        st.caption("No sweep has run with this run store yet" + ("." if hosted() else ": start one below."))
        return
    study = st.selectbox("Study", names, index=len(names) - 1, key="sw_watch")
    rows = trial_rows(store, study)
    if not rows:
        st.caption("No trials yet.")
        return
    table = pd.DataFrame(rows)
    objectives = study_objectives(store, study)
    axes = ["params", "macs", "minutes"]
    axis = st.radio("Accuracy against", axes, horizontal=True, key=f"sw_axis_{study}",
                    index=axes.index(objectives[-1]) if objectives[-1] in axes else 0,
                    help="The front: the trials no other trial beats with fewer parameters (MACs, minutes) and "
                         "more accuracy. Pruned trials are drawn grey at their last tested accuracy.")
    st.plotly_chart(front_figure(table, axis, reference_points(axis)), key="sw_chart")
    if scale := trial_scale(table):
        st.caption(scale)
    st.dataframe(trial_table(rows), hide_index=True, key="sw_table", column_config={
        "run": st.column_config.TextColumn(width=175),
        "time": st.column_config.TextColumn(help="training time, m:ss (h:mm:ss past an hour)")})
    opened = st.selectbox("Open a trial's run in Results", [r for r in table["run"] if r], index=None,
                          key="sw_open", placeholder="choose a trial's run…")
    if opened:
        st.session_state["last_run_id"] = opened
        st.page_link("../pages/results.py", label=f"Results for run {opened}", icon=":material/search:")
    learned(study, tuple((r["trial"], r["state"], r["accuracy"]) for r in rows))


def learned(study: str, stamp: tuple) -> None:
    """Optuna's own plots of the study, one tab each; only the open tab is drawn."""
    st.subheader("What the sweep learned")
    tabs = st.tabs([v.label for v in VIEWS], key="sw_insight", on_change="rerun")
    for i, tab in enumerate(tabs):
        if tab.open:
            with tab:
                shown = insight(str(store.root), study, stamp, i)
                if isinstance(shown, str):
                    st.info(plain(shown))
                else:
                    st.caption(VIEWS[i].note)
                    st.plotly_chart(shown, key="sw_insight_chart")


def start_form() -> None:
    """A shipped space to edit, trials and processes; Start runs the sweep as a process of its own."""
    if hosted():
        st.info("Sweeps are off in this hosted demo: they train many networks and would take the server from every "
                "other visitor. Run one on your own machine: `python -m playground sweep --space "
                "under-200k-seed-rules --trials 20`.")
    else:
        spaces = shipped_spaces()
        pick = st.selectbox("Search space", list(spaces), key="sw_space")
        text = st.text_area("Space (JSON, editable)", spaces[pick].read_text(), height=260, key=f"sw_text_{pick}")
        c1, c2, c3 = st.columns(3)
        trials = c1.number_input("Trials", 1, 200, 8, key="sw_trials")
        workers = c2.number_input("Processes at once", 1, 4, 1, key="sw_workers",
                                  help="Each trains one trial; on a 2-core machine 1 is usually fastest per trial")
        name = c3.text_input("Study name (the same name continues a study)", pick, max_chars=80, key="sw_study")
        c4, c5 = st.columns(2)
        subset = c4.number_input("Train subset per trial (images, 0 = the space's)", 0, 1_000_000, 0, 500,
                                 key="sw_subset", help="Set in the space's base training spec: a small sweep "
                                 "for a quick look needs no hand-edited JSON")
        epochs = c5.number_input("Epochs per trial (0 = the space's)", 0, limits.current().epochs, 0,
                                 key="sw_epochs", help="A space that searches train.epochs draws its own instead")
        if st.button("Start the sweep", type="primary", key="sw_start"):
            try:
                overrides = {k: int(v) for k, v in (("train_subset", subset), ("epochs", epochs)) if v}
                space = space_from_dict(with_train(parse_json(text), **overrides), pick)
                data = data_choice.dataset()
                if data is not None:
                    start_sweep(space, int(trials), int(workers), data_choice.data_source(), store,
                                name.strip() or pick)
                    st.success(f"Sweep {plain(name)} started: its trials appear above as they run.")
            except SpecError as e:
                st.error("**Not started:** " + "; ".join(map(plain, e.problems)))


st.subheader("Trials")
watch()
st.subheader("Start a sweep")
start_form()
