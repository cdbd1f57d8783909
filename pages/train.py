import streamlit as st

from playground import form
from playground.ui import data_choice, estimates, range_test, server, visitor, widget_memory, working_specs
from playground.escape import bullets, plain
from playground.results.plots import accuracy_text, epoch_table, live_figure, minutes_seconds, seed_log
from playground.faults import StoreError
from playground.runs.jobs import JobError, owns
from playground.runs.records import DAMAGED, PHASE_TEACHERS, PHASE_TESTING, RESUMABLE
from playground.specs.config import DEVICES, OPTIMIZERS, SCHEDULES, RunSpec, checked, keep_low_res_share
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
recipe_note = st.container()  # filled once the form's values are set: what Load recipe would change
following = st.container()  # the followed run's progress and chart: above the long form, in view after Start

n_train = len(data.y_train) if data else 1
finished = {r.id: r for r in candidates(server.store(), data_choice.data_source())}  # the runs that may teach
widget_memory.fit_kept_values(t_subset=n_train, t_teachers=list(finished))
lim = current_limits()
batch_sizes = form.batches(min(lim.batch_size, server.analysis(net).trace.batch_that_fits(lim)))
for key, value in form.DEFAULTS.items():
    st.session_state.setdefault(key, min(value, n_train) if key == "t_subset" else value)
if st.session_state["t_batch"] not in batch_sizes:
    st.session_state["t_batch"] = batch_sizes[-1]
recipe = RECIPES[st.session_state["t_recipe"]]
recipe_net = preset_net(recipe.preset)
pending = ([f"architecture {net.name} → {recipe_net.name}"] if net != recipe_net else []) + (
    [f"augmentation → {', '.join(t.name for t in recipe.aug.transforms) or 'none'}"] if aug != recipe.aug else []) + (
    form.changes({k: st.session_state.get(k) for k in form.KEPT}, recipe.train))
recipe_note.caption(f"**Load recipe** sets {plain('; '.join(pending))}." if pending else
                    f"The form holds the {recipe.name} recipe: Start trains it.")
with st.form("train_form", enter_to_submit=False):  # Enter in a field edits it; only the button starts a run
    top, go = st.columns([3, 1], vertical_alignment="center")  # Start in the first row: in view at 1280x800
    top.markdown(f"Start trains **{plain(net.name)}** ({server.analysis(net).params:,} params) with the Augment "
                 f"page's pipeline ({', '.join(t.name for t in aug.transforms) or 'none'}) and the settings below"
                 + (f", not the {recipe.name} recipe until you load it." if pending else "."))
    start = go.form_submit_button("Start training", icon=":material/play_arrow:", type="primary",
                                  disabled=data is None, key="t_start")
    est_line, est_go = st.columns([3, 1], vertical_alignment="center")
    estimate = est_go.form_submit_button("Estimate time", icon=":material/timer:", type="tertiary",
                                         disabled=data is None, key="t_estimate",
                                         help="Train a few batches of this net on this server (a few seconds, "
                                              "once per net and batch size) and scale them to the run")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Train subset (images, 0 = all)", 0, n_train, step=500, key="t_subset")
    c1.number_input("Epochs", *form.bounds("t_epochs"), key="t_epochs")
    c1.select_slider("Batch size", batch_sizes, key="t_batch",
                     help=f"Up to {batch_sizes[-1]} for this net on this server (its activation memory per image "
                          "and the server's limits)")
    c2.selectbox("Optimizer", OPTIMIZERS, key="t_opt")
    c2.number_input("Max LR", *form.bounds("t_lr"), format="%.4f", key="t_lr")
    find = c2.form_submit_button("Find max LR", icon=":material/query_stats:", type="tertiary", key="t_find",
                                 disabled=data is None, help="An LR range test: a throwaway copy of this net trains "
                                 "100 batches while the LR rises from 1e-5 to 10, in a process of its own")
    c2.selectbox("Schedule", SCHEDULES, key="t_sched")
    c3.slider("Label smoothing", *form.bounds("t_ls"), step=0.05, key="t_ls")
    c3.selectbox("Device", DEVICES, key="t_device")
    c3.checkbox("Flip TTA at evaluation", key="t_tta")
    c3.selectbox("Shift TTA (px)", form.SHIFTS, key="t_shift",
                 format_func=lambda px: "off" if px == 0 else f"{px} px",
                 help="The last epoch's test (the run's result) also averages the views moved by this many "
                 "pixels (a 3×3 grid, 9× the cost); the tests before it use the flip TTA setting only")
    c3.number_input("Test every N epochs (always after the last)", *form.bounds("t_eval"), key="t_eval")
    with st.expander("Levers: precision, weight averaging, airbench tricks"):
        l1, l2 = st.columns(2)
        units = cpu_bf16_units()
        l1.checkbox("bf16 autocast on the CPU", key="t_bf16", help=(
            f"This server's CPU has {' and '.join(units)}: bf16 trains 1.3-1.8x faster there at the same accuracy "
            "(docs/experiments/levers.md)" if units else
            "This server's CPU has no bf16 matrix units (AMX-BF16, AVX512-BF16), so the run stays in fp32"))
        l1.number_input("EMA decay of the weights (0 = off)", *form.bounds("t_ema"), step=0.001, format="%.4f",
                        key="t_ema", help="Test and keep an exponential moving average of the weights")
        l1.checkbox("Alternating flip", key="t_altflip",
                    help="Each image's horizontal flip is drawn once, then alternates every epoch")
        l1.checkbox("Frozen whitening of the first conv", key="t_whiten")
        l1.checkbox("BatchNorm scales fixed at 1", key="t_fixbn",
                    help="Only each BatchNorm's shift learns; its scale stays 1 (airbench)")
        l2.number_input("Progressive resizing: early epochs at (px, 0 = off)", *form.bounds("t_lowres"),
                        key="t_lowres")
        l2.number_input("… for this many first epochs", *form.bounds("t_lowres_ep"), key="t_lowres_ep")
    st.multiselect(
        "Teachers: distil from finished runs on this data", list(finished), key="t_teachers",
        max_selections=lim.teachers,
        format_func=lambda i: f"{finished[i].name} · {i} · {accuracy_text(finished[i].best_acc)}",
        help="The student also learns the teachers' averaged predictions (knowledge distillation, 90% of the "
             "loss at temperature 4). Their predictions on the training images are computed once per set of "
             "teachers before the first epoch.")

widget_memory.remember_widget_values()


def form_run() -> RunSpec:
    """The run the form describes now, over the loaded recipe's training spec (its fields without a widget)."""
    loaded = RECIPES.get(st.session_state.get("t_loaded", ""))
    return RunSpec(net, aug, form.spec({k: st.session_state[k] for k in form.KEPT if k in st.session_state},
                                       base=loaded.train if loaded else None), data_choice.data_source())


def estimate_text(run: RunSpec, result) -> str:
    t = run.train
    images = min(len(data.y_train), t.train_subset or len(data.y_train))
    return (f"Expected: about **{minutes_seconds(result.epoch_s)} per epoch** and **{minutes_seconds(result.run_s)} "
            f"for the run** ({t.epochs} epochs of {images:,} images with their tests), from a few batches of "
            "this net measured on this server." + (
                f" This server stops a start after {lim.run_minutes} minutes; **Resume** goes on from the last "
                "finished epoch." if result.run_s > lim.run_minutes * 60 else ""))


if data is not None:
    with est_line:
        if estimate:
            with st.spinner("Measuring this net on this server (a few batches)…"):
                result = estimates.measured(form_run(), len(data.y_train), len(data.y_test))
        else:
            result = estimates.known(form_run(), len(data.y_train), len(data.y_test))
        if isinstance(result, str):
            st.caption(f"No estimate: {plain(result)}.")
        elif result is not None:
            st.caption(estimate_text(form_run(), result))
        else:
            st.caption("**Estimate time** says how long this run takes here before you start it.")

if find and data is not None:
    try:
        range_test.start(checked(form_run()))
    except SpecError as e:
        st.error("**Cannot test this spec:**\n\n" + bullets(e.problems))
range_test.show(form.bounds("t_lr"))

if start and data is not None:
    loaded = RECIPES.get(st.session_state.get("t_loaded", ""))
    train = form_run().train
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
        else:
            launcher.resume(visitor.owner(), run_id)
            st.session_state["train_action_note"] = f"Resuming run {run_id}…"  # said by the fragment: a callback
            # that draws (a toast) during a fragment rerun is what Streamlit warns about in the server log
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
    if data is not None and (guess := estimates.known_stored(record.spec, len(data.y_train), len(data.y_test))):
        eta += f" · estimated {minutes_seconds(guess.run_s)} in all before the start"
    st.progress(min(1.0, record.step / record.steps) if record.steps else 0.0,
                text=f"{plain(record.name)} · run {run_id} · {record.status} · epoch {epoch}/{record.planned_epochs} · "
                     + (f"step {record.step}/{record.steps}{rate}{eta}" if record.steps else  # was "step 0/0"
                        "starting (loading the data and building the net)…" if record.active else "no step trained"))
    if record.note:
        st.caption(f"Note: {plain(record.note)}")
    mine = owns(record, visitor.owner())
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("Stop", icon=":material/stop:", key="stop", on_click=act, args=("stop", run_id),
              disabled=not (mine and record.active))
    b2.button("Resume", icon=":material/play_arrow:", key="resume", on_click=act, args=("resume", run_id),
              disabled=not (mine and record.status in RESUMABLE and record.state_sha))
    if err := st.session_state.pop("train_action_error", None):
        st.error(plain(err))
    if note := st.session_state.pop("train_action_note", None):
        st.toast(note)
    if not mine:
        st.caption("Another visitor started this run: you can watch it, not stop or resume it.")
    if record.active and record.stop_requested:  # a test pass or the teachers' predictions run to their end first
        st.warning("Stop requested: " + {
            PHASE_TESTING: f"the test pass of epoch {epoch} finishes first and that epoch is saved, then it stops.",
            PHASE_TEACHERS: "it stops once the teachers' predictions are computed, before its first epoch."}.get(
            record.phase, "it stops after the current batch."), icon=":material/stop_circle:")
    elif record.status == "queued":
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
    first_test = min(record.spec.get("train", {}).get("eval_every", 1), record.planned_epochs)
    reference = seed_log(record)
    st.plotly_chart(live_figure(record.epochs, launcher.store.batches(run_id), record.steps_per_epoch, first_test,
                                reference), key="live_chart")
    if reference:
        st.caption(f"Grey: {plain(reference.source)}: this run trains {reference.preset}'s own network, so its "
                   "accuracy can be read against the seed's.")
    if record.epochs:
        st.dataframe(epoch_table(record.epochs), hide_index=True, key="epoch_table")
    st.session_state["last_run_id"] = run_id


with following:
    live()
