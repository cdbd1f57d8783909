import numpy as np
import streamlit as st

from playground.ui import data_choice, style, working_specs
from playground.escape import bullets
from playground.specs import limits
from playground.specs.augment import (REGISTRY, AugSpec, TransformSpec, build_pipeline, describe_replay, make_transform,
                                      to_python)
from playground.specs.serde import SpecError

# The spec in st.session_state["aug"] is the only truth for the pipeline, and st.session_state["samples"] for the
# sample settings; the widgets show them. A browser keeps each widget's value by key and sends it back with the next
# edit, so every change goes through a callback (which runs before the widgets are drawn) that stores the new value
# and writes the widget keys from it. working_specs.set_aug clears every "a_" key (the pipeline's widgets,
# re-written by show()),
# so the sample widgets use "sample_" keys, which a pipeline change leaves alone.

SAMPLES = {"n": 12, "cls": "all", "seed": 0, "draw": 0}


def widget_value(kind: str, value):
    """A spec value as its widget holds it (a range slider holds a tuple)."""
    if kind.endswith("range"):
        return tuple((int if kind.startswith("int") else float)(v) for v in value)
    return {"int": int, "float": float}.get(kind, lambda v: v)(value)


def widget_state(aug: AugSpec) -> dict:
    """The value of every pipeline widget for this spec."""
    state = {}
    for i, t in enumerate(aug.transforms):
        state[f"a_{i}_{t.name}_p"] = float(t.p)
        for prm in REGISTRY[t.name].params:
            state[f"a_{i}_{t.name}_{prm.name}"] = widget_value(prm.kind, t.params[prm.name])
    return state


def show(aug: AugSpec) -> None:
    """Make ``aug`` the working pipeline and its widgets show it; the sample settings are not touched."""
    working_specs.set_aug(aug)
    st.session_state.update(widget_state(aug))


def on_edit() -> None:
    """A pipeline widget changed: the spec takes every widget's value."""
    s, transforms = st.session_state, []
    for i, t in enumerate(working_specs.get_aug().transforms):
        params = {}
        for prm in REGISTRY[t.name].params:
            value = s.get(f"a_{i}_{t.name}_{prm.name}", t.params[prm.name])
            params[prm.name] = list(value) if isinstance(value, tuple) else value
        transforms.append(TransformSpec(t.name, s.get(f"a_{i}_{t.name}_p", t.p), params))
    show(AugSpec(transforms))


def on_move(i: int, step: int) -> None:
    order = list(working_specs.get_aug().transforms)
    if 0 <= i + step < len(order):
        order[i], order[i + step] = order[i + step], order[i]
        show(AugSpec(order))


def on_remove(i: int) -> None:
    order = list(working_specs.get_aug().transforms)
    del order[i]
    show(AugSpec(order))


def on_add() -> None:
    show(AugSpec(working_specs.get_aug().transforms + [make_transform(st.session_state["add_name"])]))


def samples() -> dict:
    return {**SAMPLES, **st.session_state.get("samples", {})}


def on_samples() -> None:
    s = st.session_state
    s["samples"] = {**samples(), "n": s["sample_n"], "cls": s["sample_cls"], "seed": int(s["sample_seed"])}


def on_resample() -> None:
    st.session_state["samples"] = {**samples(), "draw": samples()["draw"] + 1}


st.title("Augment")
data = data_choice.dataset()
aug = working_specs.get_aug()
if any(st.session_state.get(k) != v for k, v in widget_state(aug).items()):
    show(aug)  # first visit, or the pipeline was set elsewhere (a recipe, a share link)
classes = ["all"] + (data.classes if data else [])
settings = samples()
if settings["cls"] not in classes:
    settings["cls"] = "all"  # another dataset
st.session_state["samples"] = settings
for name in ("n", "cls", "seed"):
    if st.session_state.get(f"sample_{name}") != settings[name]:
        st.session_state[f"sample_{name}"] = settings[name]  # first visit, or back from another page
n, cls, seed, draw = settings["n"], settings["cls"], settings["seed"], settings["draw"]

with st.sidebar:
    st.subheader("Samples")
    st.slider("Number of samples", 4, 32, step=4, key="sample_n", on_change=on_samples)
    st.selectbox("Class", classes, key="sample_cls", on_change=on_samples)
    st.number_input("Seed", 0, 10_000, key="sample_seed", on_change=on_samples)
    st.button("Resample", icon=":material/casino:", key="resample", on_click=on_resample)

style.sticky_column("aug_preview")
controls, board = st.columns(2, gap="medium")
with controls:
    st.subheader("Pipeline")
    for i, t in enumerate(aug.transforms):
        d = REGISTRY[t.name]
        with st.expander(f"{i + 1}. {t.name}", expanded=False):
            st.caption(d.help)
            st.slider("p (probability)", 0.0, 1.0, step=0.05, key=f"a_{i}_{t.name}_p", on_change=on_edit)
            for prm in d.params:
                key = f"a_{i}_{t.name}_{prm.name}"
                if prm.kind == "bool":
                    st.checkbox(prm.name, help=prm.help, key=key, on_change=on_edit)
                elif prm.kind == "choice":
                    st.selectbox(prm.name, prm.choices, help=prm.help, key=key, on_change=on_edit)
                else:
                    cast = int if prm.kind.startswith("int") else float
                    st.slider(prm.name, cast(prm.min), cast(prm.max), step=cast(prm.step), help=prm.help, key=key,
                              on_change=on_edit)
            c1, c2, c3 = st.columns(3)
            c1.button("↑ up", key=f"up_{i}", disabled=i == 0, on_click=on_move, args=(i, -1))
            c2.button("↓ down", key=f"down_{i}", disabled=i == len(aug.transforms) - 1, on_click=on_move,
                      args=(i, 1))
            c3.button("✕ remove", key=f"rm_{i}", on_click=on_remove, args=(i,))

    c1, c2 = st.columns([3, 1])
    c1.selectbox("Add a transform", list(REGISTRY), key="add_name", label_visibility="collapsed")
    most = limits.current().transforms
    c2.button("Add", icon=":material/add:", key="add", on_click=on_add, disabled=len(aug.transforms) >= most,
              help=f"at most {most} transforms" if len(aug.transforms) >= most else None)

with board, st.container(key="aug_preview"):  # beside the pipeline, and it stays in view while that scrolls
    if data is None:
        st.info("The preview appears here once a dataset is loaded (Home page).")
    else:
        idx = (np.arange(len(data.y_train)) if cls == "all"
               else np.flatnonzero(data.y_train == data.classes.index(cls)))
        rng = np.random.default_rng(int(seed) + 1000 * draw)
        picks = rng.choice(idx, size=min(n, len(idx)), replace=False)
        try:
            pipe = build_pipeline(aug, data.mean, seed=int(seed) + draw, replay=True)
        except SpecError as e:  # the working copy may come from elsewhere; say why instead of a traceback
            st.error("**This pipeline cannot be built:**\n\n"
                     + bullets(e.problems))
            st.stop()
        st.subheader("Original → augmented")
        cols = st.columns(4)
        for k, i in enumerate(picks):
            out = pipe(image=data.x_train[i])
            with cols[k % 4]:
                st.image(np.concatenate([data.x_train[i], np.full((32, 2, 3), 255, np.uint8), out["image"]], 1),
                         caption=data.classes[data.y_train[i]], width="stretch")
                with st.popover(":material/tune:", help="The parameters drawn for this image", width="stretch"):
                    st.text("\n".join(describe_replay(out["replay"])) or "no transforms")
                    st.caption("shift: x to the right, y down, in pixels")

st.subheader("Export")
mean = data.mean if data else (0.4914, 0.4822, 0.4465)
c1, c2 = st.columns(2)
c1.download_button("JSON", aug.to_json(), "augmentation.json", "application/json", icon=":material/download:",
                   key="dl_json")
c2.download_button("Python", to_python(aug, mean), "augmentation.py", "text/x-python", icon=":material/download:",
                   key="dl_py")
with st.expander("Python code"):
    st.code(to_python(aug, mean), language="python")
st.caption("Train uses exactly this pipeline.")
