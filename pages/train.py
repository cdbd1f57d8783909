import pandas as pd
import streamlit as st

from playground import form
from playground.ui import data_choice, server, visitor, widget_memory, working_specs
from playground.escape import bullets, plain
from playground.results.plots import live_figure, minutes_seconds
from playground.faults import StoreError
from playground.runs.jobs import JobError, owns
from playground.runs.records import DAMAGED, RESUMABLE
from playground.specs.config import DEVICES, OPTIMIZERS, SCHEDULES, RunSpec, keep_low_res_share
from playground.specs.limits import current as current_limits
from playground.specs.presets import preset_net
from playground.specs.recipes import RECIPES
from playground.specs.serde import SpecError
from playground.training.device import DeviceError, cpu_bf16_units
from playground.runs.distill import TeacherError, candidates

st.title("Train")
data = data_choice.dataset()
net, aug = working_specs.get_net(), working_specs.get_aug()
launcher = server.launcher()
widget_memory.restore_widget_values()  # before the first widget (the recipe box)

def load_recipe() -> None:
    """Runs before the widgets are drawn, so it may set their values. A recipe over this server's limits
    (record's 162 epochs on a hosted demo) is said in one line and changes nothing."""
    recipe = RECIPES[st.session_state["t_recipe"]]
    try:
        aug, train = recipe.copy_specs()
    except SpecError as e:
        st.session_state["t_recipe_error"] = (f"The {recipe.name} recipe does not fit this server's limits: "
                                              f"{'; '.join(e.problems)}")
        return
    working_specs.set_net(preset_net(recipe.preset))  # forgets any recipe loaded before
    st.session_state["t_loaded"] = recipe.name  # its low-res epochs follow a changed epoch count at Start
    working_specs.set_aug(aug)
    st.session_state.update({k: v for k, v in form.values(train).items() if k not in ("t_device", "t_teachers")})


def recipe_label(name: str) -> str:
    m = RECIPES[name].measured
    return f"{name}: measured {m.line()}" if m else f"{name}: the seed's own schedule, not yet measured here"


r1, r2 = st.columns([3, 1])
r1.selectbox("Recipes: a preset with its augmentation and training settings", list(RECIPES),
             format_func=recipe_label, key="t_recipe",
             help="; ".join(f"{r.name}: {r.goal}" for r in RECIPES.values()))
r2.button("Load recipe", on_click=load_recipe, key="t_load_recipe")
if err := st.session_state.pop("t_recipe_error", None):
    st.error(plain(err))
following = st.container()  # the followed run's progress and chart: above the long form, in view after Start

n_train = len(data.y_train) if data else 1
finished = {r.id: r for r in candidates(server.store(), data_choice.data_source())}  # the runs that may teach
widget_memory.fit_kept_values(t_subset=n_train, t_teachers=list(finished))
with st.form("train_form", enter_to_submit=False):  # Enter in a field edits it; only the button starts a run
    top, go = st.columns([5, 1], vertical_alignment="center")  # Start in the first row: in view at 1280x800
    top.caption(f"Architecture **{plain(net.name)}** ({server.analysis(net).params:,} params) and the Augment page's "
                f"pipeline ({', '.join(t.name for t in aug.transforms) or 'none'}). The settings below apply.")
    start = go.form_submit_button("Start training", icon=":material/play_arrow:", type="primary",
                                  disabled=data is None, key="t_start")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Train subset (images, 0 = all)", 0, n_train, min(2000, n_train), 500, key="t_subset")
    c1.number_input("Epochs", 1, current_limits().epochs, 2, key="t_epochs")
    c1.select_slider("Batch size", form.BATCHES, 128, key="t_batch")
    c2.selectbox("Optimizer", OPTIMIZERS, key="t_opt")
    c2.number_input("Max LR", *form.BOUNDS["t_lr"], 0.05, format="%.4f", key="t_lr")
    c2.selectbox("Schedule", SCHEDULES, key="t_sched")
    c3.slider("Label smoothing", *form.BOUNDS["t_ls"], 0.1, 0.05, key="t_ls")
    c3.selectbox("Device", DEVICES, key="t_device")
    c3.checkbox("Flip TTA at evaluation", key="t_tta")
    c3.selectbox("Shift TTA (px)", form.SHIFTS, key="t_shift",
                 format_func=lambda px: "off" if px == 0 else f"{px} px",
                 help="The last epoch's test (the run's result) also averages the views moved by this many "
                 "pixels (a 3×3 grid, 9× the cost); the tests before it use the flip TTA setting only")
    c3.number_input("Test every N epochs (always after the last)", *form.BOUNDS["t_eval"], 1, key="t_eval")
    with st.expander("Levers: precision, weight averaging, airbench tricks"):
        l1, l2 = st.columns(2)
        units = cpu_bf16_units()
        l1.checkbox("bf16 autocast on the CPU", key="t_bf16", help=(
            f"This server's CPU has {' and '.join(units)}: bf16 trains 1.3-1.8x faster there at the same accuracy "
            "(docs/experiments/levers.md)" if units else
            "This server's CPU has no bf16 matrix units (AMX-BF16, AVX512-BF16), so the run stays in fp32"))
        l1.number_input("EMA decay of the weights (0 = off)", *form.BOUNDS["t_ema"], 0.0, 0.001, format="%.4f",
                        key="t_ema", help="Test and keep an exponential moving average of the weights")
        l1.checkbox("Alternating flip", key="t_altflip",
                    help="Each image's horizontal flip is drawn once, then alternates every epoch")
        l1.checkbox("Frozen whitening of the first conv", key="t_whiten")
        l1.checkbox("BatchNorm scales fixed at 1", key="t_fixbn",
                    help="Only each BatchNorm's shift learns; its scale stays 1 (airbench)")
        l2.number_input("Progressive resizing: early epochs at (px, 0 = off)", *form.BOUNDS["t_lowres"], 0,
                        key="t_lowres")
        l2.number_input("… for this many first epochs", 0, current_limits().epochs, 0, key="t_lowres_ep")
    st.multiselect(
        "Teachers: distil from finished runs on this data", list(finished), key="t_teachers",
        format_func=lambda i: f"{finished[i].name} · {i} · {finished[i].best_acc or 0:.1%}",
        help="The student also learns the teachers' averaged predictions (knowledge distillation, 90% of the "
             "loss at temperature 4). Their predictions on the training images are computed once per set of "
             "teachers before the first epoch.")

widget_memory.remember_widget_values()

if start and data is not None:
    loaded = RECIPES.get(st.session_state.get("t_loaded", ""))
    train = form.spec({k: st.session_state[k] for k in form.KEPT if k in st.session_state},
                      base=loaded.train if loaded else None)
    if loaded and train.low_res_epochs == loaded.train.low_res_epochs:  # as the CLI: left as the recipe set it
        if note := keep_low_res_share(train, loaded.train.epochs):
            st.info(note[0].upper() + note[1:] + ".")
    try:
        run_id = launcher.start(visitor.owner(), RunSpec(net, aug, train, data_choice.data_source()), data)
    except (JobError, DeviceError, TeacherError) as e:
        st.error(plain(e))
    except SpecError as e:
        st.error("**Cannot train this spec:**\n\n" + bullets(e.problems))
    else:
        st.session_state["watch"] = run_id
        st.query_params["run"] = run_id


def watched() -> str | None:
    """The run this tab follows: the one it started, the one its URL names (a reloaded tab), else
    this visitor's newest active run, so a run started before a reload on any page is found again."""
    if st.session_state.get("watch"):
        return st.session_state["watch"]
    if st.query_params.get("run"):
        return st.query_params["run"]
    mine = [r for r in launcher.store.active() if owns(r, visitor.owner())]
    return mine[-1].id if mine else None


def act(verb: str, run_id: str) -> None:
    try:
        if verb == "stop":
            launcher.stop(visitor.owner(), run_id)
            st.toast("Stopping after the current batch…")
        else:
            launcher.resume(visitor.owner(), run_id)
            st.toast(f"Resuming run {run_id}…")
    except (JobError, StoreError) as e:  # a callback's error would show as a traceback: app.py never sees it
        st.session_state["train_action_error"] = str(e)


@st.fragment(run_every=1.0)
def live() -> None:
    """The followed run, redrawn every second. A fragment's error does not reach app.py's handler (Streamlit
    shows it with its traceback, every second), so a run store that cannot be read is said here."""
    try:
        follow()
    except StoreError as e:
        server.store_error(e)


def follow() -> None:
    run_id = watched()
    record = launcher.get(run_id) if run_id else None
    if record is None:
        st.info("No training to follow yet. Set the options below and press **Start training**."
                if not run_id else "The run this page was following is not in the store (deleted, or a wrong link).")
        return
    if record.status == DAMAGED:  # its row is not what a run's row holds: nothing of it can be charted
        st.error(plain(record.message))
        return
    st.session_state["watch"] = run_id
    epoch = record.current_epoch
    rate = f" · {record.img_per_s:.0f} img/s" if record.img_per_s else ""
    eta = f" · ETA {minutes_seconds(record.eta_s)}" if record.eta_s is not None else ""
    st.progress(min(1.0, record.step / record.steps) if record.steps else 0.0,
                text=f"{plain(record.name)} · run {run_id} · {record.status} · epoch {epoch}/{record.planned_epochs} · "
                     + (f"step {record.step}/{record.steps}{rate}{eta}" if record.steps else  # was "step 0/0"
                        "starting (loading the data and building the net)…" if record.active else "no step trained"))
    mine = owns(record, visitor.owner())
    b1, b2, _ = st.columns([1, 1, 6])
    b1.button("Stop", icon=":material/stop:", key="stop", on_click=act, args=("stop", run_id),
              disabled=not (mine and record.active))
    b2.button("Resume", icon=":material/play_arrow:", key="resume", on_click=act, args=("resume", run_id),
              disabled=not (mine and record.status in RESUMABLE and record.state_sha))
    if err := st.session_state.pop("train_action_error", None):
        st.error(plain(err))
    if not mine:
        st.caption("Another visitor started this run: you can watch it, not stop or resume it.")
    if record.status == "queued":
        st.info("Starting a worker process…")
    elif record.status == "running" and record.message:
        st.info(plain(record.message) + "…")
    elif record.status == "finished":
        st.success(f"Finished run {run_id}. Open **Results** to explore it.")
        if record.message:  # e.g. it finished at chance level
            st.warning(plain(record.message))
    elif record.status == "diverged":
        st.error(f"Training diverged: {plain(record.message)}")
    elif record.status in RESUMABLE and record.state_sha and record.epochs:
        st.warning(f"{record.status.capitalize()}: {plain(record.message)}. Epoch {record.epochs[-1]['epoch']} is "
                   f"saved with run {run_id}; **Resume** continues from it.")
    elif record.status in RESUMABLE:
        st.warning(f"{record.status.capitalize()}: {plain(record.message)}. Nothing is saved: it ended before its "
                   f"first epoch did, so there is nothing to resume. Start a new training instead.")
    elif record.status == "failed":
        st.error(f"Training failed: {plain(record.message)}")
    st.plotly_chart(live_figure(record.epochs, launcher.store.batches(run_id), record.steps_per_epoch),
                    key="live_chart")
    if record.epochs:
        table = pd.DataFrame(record.epochs)
        for col in ("epoch_time", "elapsed"):
            table[col] = table[col].map(minutes_seconds)
        pct, loss = st.column_config.NumberColumn(format="percent"), st.column_config.NumberColumn(format="%.3f")
        st.dataframe(table, hide_index=True, key="epoch_table", column_config={
            "train_acc": pct, "test_acc": pct, "train_loss": loss, "test_loss": loss,
            "lr": st.column_config.NumberColumn("LR", format="%.4g"),
            "img_per_s": st.column_config.NumberColumn("img/s", format="%.0f"),
            "epoch_time": "epoch time", "elapsed": "elapsed"})
    st.session_state["last_run_id"] = run_id


with following:
    live()
