import numpy as np
import streamlit as st

from playground import ui
from playground.augment import REGISTRY, AugSpec, TransformSpec, build_pipeline, describe_replay, make_transform, to_python

st.title("Augment")
ui.link_error()
data = ui.dataset()
aug = ui.get_aug()

with st.sidebar:
    st.subheader("Samples")
    n = st.slider("Number of samples", 4, 32, 12, step=4, key="a_n")
    cls = st.selectbox("Class", ["all"] + (data.classes if data else []), key="a_cls")
    seed = st.number_input("Seed", 0, 10_000, 0, key="a_seed")
    if st.button("Resample", icon=":material/casino:", key="resample"):
        st.session_state["a_draw"] = st.session_state.get("a_draw", 0) + 1

st.subheader("Pipeline")
transforms: list[TransformSpec] = []
for i, t in enumerate(aug.transforms):
    d = REGISTRY[t.name]
    with st.expander(f"{i + 1}. {t.name}", expanded=False):
        st.caption(d.help)
        p = st.slider("p (probability)", 0.0, 1.0, float(t.p), 0.05, key=f"a_{i}_{t.name}_p")
        params = {}
        for prm in d.params:
            key, value = f"a_{i}_{t.name}_{prm.name}", t.params[prm.name]
            if prm.kind == "bool":
                params[prm.name] = st.checkbox(prm.name, value, help=prm.help, key=key)
            elif prm.kind == "choice":
                params[prm.name] = st.selectbox(prm.name, prm.choices, prm.choices.index(value), help=prm.help, key=key)
            elif prm.kind.endswith("range"):
                cast = int if prm.kind.startswith("int") else float
                low, high = st.slider(prm.name, cast(prm.min), cast(prm.max), tuple(cast(v) for v in value),
                                      cast(prm.step), help=prm.help, key=key)
                params[prm.name] = [low, high]
            else:
                cast = int if prm.kind == "int" else float
                params[prm.name] = st.slider(prm.name, cast(prm.min), cast(prm.max), cast(value), cast(prm.step),
                                             help=prm.help, key=key)
        c1, c2, c3 = st.columns(3)
        move = (-1 if c1.button("↑ up", key=f"up_{i}") else 1 if c2.button("↓ down", key=f"down_{i}") else 0)
        removed = c3.button("✕ remove", key=f"rm_{i}")
    if not removed:
        transforms.append(TransformSpec(t.name, p, params))
    if move and 0 <= i + move < len(aug.transforms):
        order = list(aug.transforms)
        order[i], order[i + move] = order[i + move], order[i]
        ui.set_aug(AugSpec(order))
        st.rerun()
    if removed:
        ui.set_aug(AugSpec(transforms + aug.transforms[i + 1:]))
        st.rerun()

c1, c2 = st.columns([3, 1])
new_name = c1.selectbox("Add a transform", list(REGISTRY), key="add_name", label_visibility="collapsed")
if c2.button("Add", icon=":material/add:", key="add"):
    ui.set_aug(AugSpec(transforms + [make_transform(new_name)]))
    st.rerun()
aug = AugSpec(transforms)
st.session_state["aug"] = aug.to_dict()

if data is not None:
    idx = np.arange(len(data.y_train)) if cls == "all" else np.flatnonzero(data.y_train == data.classes.index(cls))
    rng = np.random.default_rng(int(seed) + 1000 * st.session_state.get("a_draw", 0))
    picks = rng.choice(idx, size=min(n, len(idx)), replace=False)
    pipe = build_pipeline(aug, data.mean, seed=int(seed) + st.session_state.get("a_draw", 0), replay=True)
    st.subheader("Original → augmented")
    cols = st.columns(4)
    for k, i in enumerate(picks):
        out = pipe(image=data.x_train[i])
        with cols[k % 4]:
            st.image(np.concatenate([data.x_train[i], np.full((32, 2, 3), 255, np.uint8), out["image"]], 1),
                     caption=data.classes[data.y_train[i]], width="stretch")
            with st.popover("drawn parameters"):
                st.text("\n".join(describe_replay(out["replay"])) or "no transforms")

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
