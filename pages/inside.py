import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from playground.escape import plain
from playground.faults import CheckpointError, StoreError
from playground.results import inside
from playground.results.evaluate import read_photo
from playground.results.inside_plots import erf_figure, field_figure, mosaic, taps_figure
from playground.runs.loading import load_run
from playground.runs.records import DAMAGED
from playground.specs.arch import Net
from playground.specs.geometry import kind_label
from playground.specs.serde import SpecError, from_json
from playground.training.data import DataError
from playground.ui import data_choice, server, working_specs

TOP = 8  # channels per layer in the overview

st.title("Inside the network")
st.caption("What each layer makes of one image, and where one unit of a layer looks: the receptive field the "
           "trace computes, and the effective one its gradient shows.")


@st.cache_resource(max_entries=8, show_spinner="Loading the run…")  # read-only: every computation copies the model
def run_subject(run_id: str, checkpoint_sha: str) -> inside.Subject:
    """``checkpoint_sha`` is part of the key: a resumed run's new weights are loaded anew."""
    return inside.from_run(load_run(server.store(), run_id))


@st.cache_resource(max_entries=16, show_spinner=False)
def net_subject(spec_json: str, mean: tuple, std: tuple, classes: tuple) -> inside.Subject:
    return inside.from_net(from_json(Net, spec_json), mean, std, list(classes))


@st.cache_resource(max_entries=8, show_spinner="Running the image through every layer…")
def layer_maps(key: str, _subject: inside.Subject, image_key: str, _image: np.ndarray) -> inside.Activations:
    return inside.activations(_subject, _image)


data = data_choice.dataset()
if data is None:
    st.stop()
runs = [r for r in server.launcher().runs() if not r.active and r.checkpoint_sha and r.status != DAMAGED]
n1, n2 = st.columns([1, 2])
ARCHITECT, RUN = "The Architect's net, untrained", "A finished run's weights"
which = n1.radio("Network", [ARCHITECT, RUN] if runs else [ARCHITECT], key="i_which",
                 help="An untrained net shows what its architecture alone does; a run shows what training made of it")
try:
    if which == RUN:
        ids = [r.id for r in runs]
        run_id = n2.selectbox("Run", ids, format_func=lambda i: next(f"{r.id} · {r.name}" for r in runs if r.id == i),
                              key="i_run")
        record = next(r for r in runs if r.id == run_id)
        subject, subject_key = run_subject(run_id, record.checkpoint_sha), f"run:{run_id}:{record.checkpoint_sha}"
    else:
        net = working_specs.get_net()
        if not server.analysis(net).ok:
            st.error("The Architect's net does not build: fix it on the **Architect** page first.")
            st.stop()
        n2.markdown(f"**{plain(net.name)}** ({server.analysis(net).params:,} params), at PyTorch's initialisation")
        spec_json = net.to_json(None)
        subject = net_subject(spec_json, data.mean, data.std, tuple(data.classes))
        subject_key = "net:" + hashlib.sha256(spec_json.encode()).hexdigest()[:16]
except (CheckpointError, SpecError, StoreError) as e:
    st.error(plain(e))
    st.stop()

st.subheader("The image")
IMAGE_TEST, IMAGE_PICKED, IMAGE_PHOTO = "A test image", "The Results page's Grad-CAM image", "Your photo"
picked = st.session_state.get("picked_test_image")
sources = [IMAGE_TEST] + ([IMAGE_PICKED] if picked is not None and picked < len(data.y_test) else []) + [IMAGE_PHOTO]
i1, i2, i3 = st.columns([2, 2, 1])
source = i1.radio("Image", sources, key="i_source", horizontal=False)
image = None
if source == IMAGE_TEST:
    cls = i2.selectbox("Class", range(len(data.classes)), format_func=lambda k: data.classes[k], key="i_class")
    members = np.flatnonzero(data.y_test == cls)
    if not len(members):
        i2.warning(f"The test set holds no {data.classes[cls]} image.")
        st.stop()
    k = i2.number_input(f"Index (0 to {len(members) - 1})", 0, len(members) - 1, 0, key=f"i_index_{cls}")
    image, image_key = data.x_test[members[k]], f"test:{cls}:{k}"
elif source == IMAGE_PICKED:
    image, image_key = data.x_test[picked], f"test#{picked}"
    i2.caption(f"test #{picked}, a {data.classes[data.y_test[picked]]}")
else:
    photo = i2.file_uploader("A photo, read as 32×32 RGB", type=["png", "jpg", "jpeg", "webp", "bmp", "gif"],
                             key="i_photo")
    if photo is None:
        st.info("Upload a photo to look inside the network with it.")
        st.stop()
    try:
        image, image_key = read_photo(photo.getvalue()), "photo:" + hashlib.sha256(photo.getvalue()).hexdigest()
    except DataError as e:
        st.error(plain(e))
        st.stop()
try:
    subject.check_image(image)
except inside.InsideError as e:
    st.error(plain(e))
    st.stop()
acts = layer_maps(subject_key, subject, image_key, image)
i3.image(np.kron(image, np.ones((4, 4, 1), np.uint8)), caption="as the net sees it", width=128)

st.subheader("Every layer's output")
st.caption(f"{plain(subject.label)}. Each layer's {TOP} channels with the highest mean activation, each tile scaled "
           f"to its own range (bright: high); the input above, the prediction below.")
for layer in acts.layers:
    c_, n_ = layer.maps.shape[0], layer.maps.shape[1]
    s = layer.stats
    left, right = st.columns([1, 4])
    left.markdown(f"**{layer.name}** · {kind_label(layer.row.kind)}  \n{c_}×{n_}×{n_} · mean {s['mean']:.2f} · "
                  f"max {s['max']:.2f} · {s['zero']:.0%} zero")
    right.image(mosaic(layer.maps[layer.top(TOP)], cols=TOP, tile=40), caption=f"top {min(TOP, c_)} of {c_} channels",
                output_format="PNG")
top3 = " · ".join(f"{plain(c)} {p:.0%}" for c, p in acts.top_classes(subject.classes))
st.markdown(f"**Prediction**, the top 3 after the head: {top3}")
names = [layer.name for layer in acts.layers]
every = st.selectbox("See every channel of", names, len(names) - 1, key=f"i_all_{subject_key}")
chosen = acts.layers[names.index(every)]
st.image(mosaic(chosen.maps, cols=16, tile=40), caption=f"all {chosen.maps.shape[0]} channels of {every}, in order",
         output_format="PNG")

st.subheader("Where one unit looks")
rows = subject.trace.rows
f1, f2, f3 = st.columns([2, 1, 1])
index = f1.selectbox("Layer", range(len(rows)), len(rows) - 1, format_func=lambda i: names[i] + (
    " (the last: the RF the rule counts)" if i == len(rows) - 1 else ""), key=f"i_layer_{subject_key}")
row = rows[index]
r = f2.number_input(f"Row (0 to {row.n - 1})", 0, row.n - 1, (row.n - 1) // 2, key=f"i_r_{subject_key}_{index}")
c = f3.number_input(f"Column (0 to {row.n - 1})", 0, row.n - 1, (row.n - 1) // 2, key=f"i_c_{subject_key}_{index}")
view = inside.look(subject, image, names[index], (r, c), acts)
summary = view.summary()
m = st.columns(4)
m[0].metric("Theoretical RF", f"{row.r:g} px", help="The analytic trace's field, as the Architect and `summary` "
            "give it: the side of the square of input pixels this unit can depend on")
on = summary["box_on_image"]
m[1].metric("On the image", f"{on['bottom'] - on['top'] + 1}×{on['right'] - on['left'] + 1} px",
            help="The part of the field inside the 32×32 image; the rest is padding")
m[2].metric(f"Pixels it reaches, of {summary['box_on_image_px']:,}", f"{summary['reach_px']:,}",
            help="The pixels of the box that can change this unit: fewer where a dilated or strided stack leaves holes")
spreads = summary["effective"]
main = spreads.get("trained") or spreads["init"]
m[3].metric("Gradient inside the box", "none" if main["inside_share"] is None else f"{main['inside_share']:.0%}",
            help="The share of |d unit / d input| that falls inside the theoretical box")
g1, g2 = st.columns([2, 3])
with g1:
    st.plotly_chart(field_figure(image, view.box, view.reach), key="i_field")
    st.caption("Dashed red: the theoretical RF; yellow: its part on the image; grey: the zero padding it reaches "
               "into. Dimmed pixels inside the box are holes the unit cannot see.")
with g2:
    maps = [(f"{'trained' if k == 'trained' else 'at initialisation'}", g) for k, g in view.grads.items()]
    st.plotly_chart(erf_figure(maps, view.box), key="i_erf")
    lines = []
    for k, sp in spreads.items():
        who = "Trained" if k == "trained" else "At initialisation"
        if sp["inside_share"] is None:
            lines.append(f"{who}: the gradient is zero here (every path to this unit is switched off for this image).")
        else:
            lines.append(f"{who}: half the gradient lies within a {sp['side50_px']} px square, 95% within "
                         f"{sp['side95_px']} px, of the {row.r:g} px field.")
    st.caption("The effective RF is |d unit / d input| summed over the colour channels (Luo et al., 2016): how "
               "much each pixel moves this unit. " + " ".join(lines))
layer_spec = subject.net.blocks[row.block].layers[row.index]
if row.dilation > 1 and row.kernel > 1:
    st.markdown(f"**{names[index]} is dilated**: its {row.kernel}×{row.kernel} kernel with dilation {row.dilation} "
                f"reads {row.kernel ** 2} pixels spread over {row.k_eff}×{row.k_eff} of its input map, with holes "
                f"between them.")
    st.plotly_chart(taps_figure(inside.taps(row, r, c), row.k_eff), key="i_taps")
if layer_spec.groups > 1 and row.kind != "sep" and not layer_spec.is_pool:
    st.markdown(f"**{names[index]} is a grouped conv**: {layer_spec.groups} groups, so each output channel reads "
                f"{row.c_in // layer_spec.groups} of the {row.c_in} input channels ({row.params:,} params)" + (
                    "; one channel per group is a depthwise conv, and a 1×1 conv after it makes the pair "
                    "depthwise-separable." if layer_spec.groups == row.c_in else "."))
if row.kind == "sep":
    st.markdown(f"**{names[index]} is depthwise-separable**: two steps, each with its own shape and cost.")
    st.dataframe(pd.DataFrame(inside.stages(layer_spec, row)), hide_index=True,
                 column_config={"params": st.column_config.NumberColumn(format="localized")})
    sep = next(la for la in acts.layers if la.name == names[index])
    st.image(mosaic(sep.depthwise[:TOP], cols=TOP, tile=40),
             caption=f"the depthwise stage's first {min(TOP, len(sep.depthwise))} channels (one filter each)",
             output_format="PNG")
