import numpy as np
import streamlit as st

from playground.ui import data_choice, style, working_specs
from playground.escape import bullets, plain
from playground.specs import limits
from playground.specs.augment import (REGISTRY, AugSpec, TransformSpec, describe_replay, draw_samples, make_transform,
                                      to_python)
from playground.specs.serde import SpecError

# The spec in st.session_state["aug"] is the only truth for the pipeline, and st.session_state["samples"] for the
# sample settings; the widgets show them. A browser keeps each widget's value by key and sends it back with the next
# edit, so every change goes through a callback (which runs before the widgets are drawn) that stores the new value
# and writes the widget keys from it. working_specs.set_aug clears every "a_" key (the pipeline's widgets,
# re-written by show()),
# so the sample widgets use "sample_" keys, which a pipeline change leaves alone. The seed alone picks and augments
# the samples, so the seed shown always reproduces the samples shown.

SAMPLES = {"n": 12, "cls": "all", "seed": 0}
SEED_MAX = 10_000
ZOOM = 3  # each 32 px image drawn at 96 px, pixels repeated (nearest neighbour): crisp, not blurred
PER_ROW = 2  # two original → augmented pairs a row: each image about 90 px wide in the column at 1280x800


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
    """Draw new samples from a new random seed, written into the Seed field so that it reproduces them."""
    current = samples()["seed"]
    seed = int(np.random.default_rng().choice(np.setdiff1d(np.arange(1, SEED_MAX + 1), [current])))
    st.session_state["samples"] = {**samples(), "seed": seed}
    st.session_state["sample_seed"] = seed


def pair(original: np.ndarray, augmented: np.ndarray) -> np.ndarray:
    """The two images side by side, each zoomed ZOOM times by repeating its pixels, with a white gap."""
    zoom = [np.repeat(np.repeat(x, ZOOM, 0), ZOOM, 1) for x in (original, augmented)]
    return np.concatenate([zoom[0], np.full((32 * ZOOM, 2 * ZOOM, 3), 255, np.uint8), zoom[1]], 1)


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
n, cls, seed = settings["n"], settings["cls"], settings["seed"]

with st.sidebar:
    st.subheader("Samples")
    st.slider("Number of samples", 4, 32, step=4, key="sample_n", on_change=on_samples)
    st.selectbox("Class", classes, key="sample_cls", on_change=on_samples)
    st.number_input("Seed", 0, SEED_MAX, key="sample_seed", on_change=on_samples)
    st.button("Resample", icon=":material/casino:", key="resample", on_click=on_resample)
    st.caption("Resample writes a new random seed into Seed; the same seed shows the same samples.")

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
                    st.selectbox(prm.name, prm.choices, format_func=prm.label, help=prm.help, key=key,
                                 on_change=on_edit)
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

# beside the pipeline, and it stays in view while that scrolls: a box that fits a 1280x800 window, its own
# scroll for the samples below its fold
with board, st.container(key="aug_preview", height=620, border=False):
    if data is None:
        st.info("The preview appears here once a dataset is loaded (Home page).")
    else:
        try:
            drawn = draw_samples(data.x_train, data.y_train, aug, data.mean, n, int(seed),
                                 None if cls == "all" else data.classes.index(cls))
        except SpecError as e:  # the working copy may come from elsewhere; say why instead of a traceback
            st.error("**This pipeline cannot be built:**\n\n"
                     + bullets(e.problems))
            st.stop()
        st.subheader("Original → augmented")
        st.html("<style>.st-key-aug_preview [data-testid=stImage] img { image-rendering: pixelated; }</style>")
        for row in range(0, len(drawn), PER_ROW):
            for col, (i, out) in zip(st.columns(PER_ROW), drawn[row:row + PER_ROW]):
                col.image(pair(data.x_train[i], out["image"]), caption=data.classes[data.y_train[i]],
                          width="stretch")
        with st.expander("Parameters drawn for each sample"):  # below the grid: it covers no image
            st.caption("Numbered left to right, row by row. shift=(x, y): x to the right, y down, in pixels.")
            st.markdown("\n".join(
                f"{k}. **{plain(data.classes[data.y_train[i]])}** (row {(k - 1) // PER_ROW + 1}, "
                f"{'left' if (k - 1) % PER_ROW == 0 else 'right'})\n"
                + "\n".join(f"    - {plain(line)}" for line in describe_replay(out["replay"]) or ["no transforms"])
                for k, (i, out) in enumerate(drawn, 1)))

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
