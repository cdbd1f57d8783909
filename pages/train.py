import pandas as pd
import streamlit as st

from playground import ui
from playground.config import DEVICES, MAX_EPOCHS, OPTIMIZERS, SCHEDULES, RunSpec, TrainSpec
from playground.device import DeviceError
from playground.distill import TeacherError, candidates
from playground.jobs import JobError
from playground.plots import live_figure
from playground.presets import preset_net
from playground.recipes import RECIPES
from playground.serde import SpecError

st.title("Train")
data = ui.dataset()
net, aug = ui.get_net(), ui.get_aug()
registry = ui.registry()
if "job" in st.query_params and "job_id" not in st.session_state:
    st.session_state["job_id"] = st.query_params["job"]  # a reloaded tab reattaches to its job

def load_recipe() -> None:
    """Runs before the widgets are drawn, so it may set their values."""
    recipe = RECIPES[st.session_state["t_recipe"]]
    aug, train = recipe.copy_specs()
    ui.set_net(preset_net(recipe.preset))
    ui.set_aug(aug)
    st.session_state.update(t_subset=0, t_epochs=train.epochs, t_batch=train.batch_size, t_opt=train.optimizer,
                            t_lr=train.max_lr, t_sched=train.schedule, t_ls=train.label_smoothing, t_tta=train.tta,
                            t_shift=train.tta_shift, t_eval=train.eval_every)


r1, r2 = st.columns([3, 1])
r1.selectbox("Measured recipes: a preset with its augmentation and training settings", list(RECIPES),
             format_func=lambda n: f"{n}: measured {RECIPES[n].measured.line()}", key="t_recipe",
             help="; ".join(f"{r.name}: {r.goal}" for r in RECIPES.values()))
r2.button("Load recipe", on_click=load_recipe, key="t_load_recipe")

with st.form("train_form"):
    st.caption(f"Architecture **{net.name}** ({ui.analysis(net).params:,} params) and the Augment page's "
               f"pipeline ({', '.join(t.name for t in aug.transforms) or 'none'}).")
    c1, c2, c3 = st.columns(3)
    n_train = len(data.y_train) if data else 1
    subset = c1.number_input("Train subset (images, 0 = all)", 0, n_train, min(2000, n_train), 500, key="t_subset")
    epochs = c1.number_input("Epochs", 1, MAX_EPOCHS, 2, key="t_epochs")
    batch = c1.select_slider("Batch size", [32, 64, 128, 256, 512], 128, key="t_batch")
    optimizer = c2.selectbox("Optimizer", OPTIMIZERS, key="t_opt")
    max_lr = c2.number_input("Max LR", 1e-5, 5.0, 0.05, format="%.4f", key="t_lr")
    schedule = c2.selectbox("Schedule", SCHEDULES, key="t_sched")
    smoothing = c3.slider("Label smoothing", 0.0, 0.3, 0.1, 0.05, key="t_ls")
    device = c3.selectbox("Device", DEVICES, key="t_device")
    tta = c3.checkbox("Flip TTA at evaluation", key="t_tta")
    shift = c3.selectbox("Shift TTA (px)", range(5), key="t_shift",
                         format_func=lambda px: "off" if px == 0 else f"{px} px",
                         help="Also average the test views moved by this many pixels (a 3×3 grid, 9× the cost)")
    eval_every = c3.number_input("Test every N epochs (always after the last)", 1, 50, 1, key="t_eval")
    finished = {r.id: r for r in candidates(ui.store(), ui.data_source())}
    teachers = st.multiselect(
        "Teachers: distil from finished runs on this data", list(finished), key="t_teachers",
        format_func=lambda i: f"{finished[i].name} · {i} · {finished[i].best_acc or 0:.1%}",
        help="The student also learns the teachers' averaged predictions (knowledge distillation, 90% of the "
             "loss at temperature 4). Their predictions on the training images are computed once per set of "
             "teachers before the first epoch.")
    start = st.form_submit_button("Start training", icon=":material/play_arrow:", type="primary",
                                  disabled=data is None, key="t_start")

if start and data is not None:
    train = TrainSpec(epochs=epochs, batch_size=batch, optimizer=optimizer, schedule=schedule, max_lr=max_lr,
                      label_smoothing=smoothing, device=device, tta=tta, tta_shift=shift, train_subset=subset or None,
                      eval_every=int(eval_every), teachers=teachers)
    try:
        job = registry.start(ui.session_id(), RunSpec(net, aug, train, ui.data_source()), data)
    except (JobError, DeviceError, TeacherError) as e:
        st.error(str(e))
    except SpecError as e:
        st.error("**Cannot train this spec:**\n\n" + "\n".join(f"- {p}" for p in e.problems))
    else:
        st.session_state["job_id"] = job.id
        st.query_params["job"] = job.id


@st.fragment(run_every=1.0)
def live() -> None:
    job = registry.get(st.session_state.get("job_id"))
    if job is None:
        st.info("No training job in this session yet. Set the options above and press **Start training**.")
        return
    snap = job.snapshot()
    eta = f", ETA {snap['eta']:.0f}s" if snap["eta"] else ""
    st.progress(min(1.0, snap["progress"]),
                text=f"{snap['name']} · run {snap['run_id']} · {snap['status']} · step {snap['step']}/{snap['steps']}"
                     f" · {snap['img_per_s']:.0f} img/s{eta}")
    if st.button("Stop", icon=":material/stop:", key="stop"):
        if job.request_stop():
            st.toast("Stopping after the current batch…")
        else:
            st.info(f"This job already ended ({snap['status']}); there is nothing to stop.")
    if snap["status"] == "starting" and snap["message"]:
        st.info(snap["message"] + "…")
    elif snap["status"] == "finished":
        st.success(f"Finished run {snap['run_id']}. Open **Results** to explore it.")
    elif snap["status"] == "stopped":
        st.warning(f"Stopped: {snap['message']}. The last state is saved with run {snap['run_id']}.")
    elif snap["status"] == "failed":
        st.error(f"Training failed: {snap['message']}")
    st.plotly_chart(live_figure(snap["epochs"], snap["batches"], snap["steps"]), key="live_chart")
    if snap["epochs"]:
        st.dataframe(pd.DataFrame(snap["epochs"]).round(4), hide_index=True, key="epoch_table")
    st.session_state["last_run_id"] = snap["run_id"]


live()
