import tempfile

import numpy as np
from pathlib import Path

import streamlit as st

from playground.ui import data_choice, server
from playground.escape import plain
from playground.results.evaluate import (Busy, accuracy_note, classify_photo, disagreements, evaluate, gradcam,
                                        gradcams)
from playground.runs.loading import load_run
from playground.results.export import ExportError, export
from playground.results.plots import accuracy_text, confusion_figure, heat_overlay, per_class_figure
from playground.faults import CheckpointError, StoreError
from playground.runs.records import DAMAGED
from playground.specs.serde import SpecError
from playground.training.data import DataError

st.title("Results")
store = server.store()
runs = [r for r in server.launcher().runs()  # any ended, undamaged run with a saved epoch
        if not r.active and r.checkpoint_sha and r.status != DAMAGED]
if not runs:
    st.info("No finished runs yet: train one on the **Train** page.")
    st.stop()
ids = [r.id for r in runs]
default = ids.index(st.session_state["last_run_id"]) if st.session_state.get("last_run_id") in ids else 0
run_id = st.selectbox("Run", ids, default, format_func=lambda i: next(
    f"{r.id} · {r.name} · {r.status} · best {accuracy_text(r.best_acc)}" for r in runs if r.id == i), key="r_run")
if note := next(r.note for r in runs if r.id == run_id):
    st.caption(f"Note: {plain(note)}")


@st.cache_resource(max_entries=12, show_spinner="Evaluating the run…")  # per run and TTA setting: a few MB each
def report_for(run_id: str, source: str, tta: bool, shift: int, checkpoint_sha: str):
    """``checkpoint_sha`` is part of the key: a resumed run's new weights are evaluated anew."""
    data = data_choice.cached_dataset(source)
    loaded = load_run(store, run_id, data)  # refuses data with other classes or image shapes
    return loaded, evaluate(loaded, data.x_test, data.y_test, tta=tta, shift=shift)


data = data_choice.dataset()
if data is None:
    st.stop()
try:
    record = store.get(run_id)
    if record is None or not record.checkpoint_sha:
        raise CheckpointError(f"run {run_id} was deleted (or has no checkpoint); pick another run")
    run_train = record.spec.get("train", {})
    v1, v2 = st.columns(2)
    tta = v1.toggle("Flip TTA: average with the mirror image", bool(run_train.get("tta")), key=f"r_tta_{run_id}",
                    help="Defaults to the run's own setting")
    shift = v2.selectbox("Shift TTA: also average views moved by this many px", range(5),
                         run_train.get("tta_shift", 0), key=f"r_shift_{run_id}",
                         format_func=lambda px: "off" if px == 0 else f"{px} px (9× the views)")
    loaded, report = report_for(run_id, data_choice.data_source(), tta, shift, record.checkpoint_sha)
except (Busy, CheckpointError, SpecError, StoreError) as e:  # SpecError: over eval_macs; Busy: others evaluated
    # for minutes; StoreError: its row was damaged since the list was read
    st.error(plain(e))
    st.stop()

classes = report.classes
m1, m2, m3 = st.columns(3)
m1.metric("Test accuracy", f"{report.accuracy:.2%}")
m2.metric("Misclassified", f"{int((report.preds != report.labels).sum()):,} / {len(report.labels):,}")
m3.metric("Checkpoint epoch", loaded.epoch)
st.caption(accuracy_note(record, loaded.epoch, report.accuracy, len(report.labels), tta, shift,
                         data_choice.data_source()))


def on_cell_click() -> None:
    """Filter the gallery to the clicked cell (a cleared selection shows every class); runs before the
    selectboxes are drawn, so it may set their values."""
    points = st.session_state["cm"]["selection"]["points"]
    true, pred = (points[0]["y"], points[0]["x"]) if points else ("any", "any")
    st.session_state.update(r_true=true, r_pred=pred, r_page=1)


left, right = st.columns([3, 2])
with left:
    st.subheader("Confusion matrix")
    st.caption("Click a cell to show its misclassified images below.")
    fig = confusion_figure(report.confusion(), classes, st.session_state.get("r_true", "any"),
                           st.session_state.get("r_pred", "any"))
    st.plotly_chart(fig, on_select=on_cell_click, selection_mode="points", key="cm")
with right:
    st.subheader("Per-class accuracy")
    per = report.per_class()
    st.plotly_chart(per_class_figure(per), key="per_class")

st.subheader("Misclassified images")
c1, c2, c3, c4 = st.columns(4)
true_c = c1.selectbox("True class", ["any"] + classes, key="r_true")
pred_c = c2.selectbox("Predicted class", ["any"] + classes, key="r_pred")
sort = c3.selectbox("Sort by", ["loss", "confidence"], key="r_sort")
wrong = report.misclassified(sort, None if true_c == "any" else classes.index(true_c),
                             None if pred_c == "any" else classes.index(pred_c))
per_page = 24
pages = max(1, -(-len(wrong) // per_page))
page = c4.number_input(f"Page (of {pages})", 1, pages, 1, key="r_page")
shown = wrong[(page - 1) * per_page: page * per_page]
if not len(shown):
    st.info("No misclassified images match these filters.")
tile_cam = st.toggle("Grad-CAM on the tiles: where the net looked for the class it predicted", key="r_tile_cam")
tiles = data.x_test[shown]
if tile_cam and len(shown):  # one batch on a copy of the model, as fastai's plot_top_losses draws them
    tile_cams, _ = gradcams(loaded, tiles, report.preds[shown])
    tiles = np.stack([heat_overlay(t, c, 0.5) for t, c in zip(tiles, tile_cams)])
cols = st.columns(8)
for k, (i, tile) in enumerate(zip(shown, tiles)):
    p = report.probs[i]
    cols[k % 8].image(tile, width="stretch",
                      caption=f"{classes[report.labels[i]]} → {classes[p.argmax()]} ({p.max():.0%})")

st.subheader("Grad-CAM")
g1, g2 = st.columns([1, 2])
choice = g1.selectbox("Image", list(shown) or [0], format_func=lambda i: f"test #{i}", key="r_cam")
alpha = g1.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="r_alpha")
st.session_state["picked_test_image"] = int(choice)  # the Inside page offers it (a key no page switch drops)
cam, target = gradcam(loaded, data.x_test[choice])
g2.image([data.x_test[choice], heat_overlay(data.x_test[choice], cam, alpha)], width=200,
         caption=["original", f"Grad-CAM for '{classes[target]}' (last conv layer)"])

st.subheader("Try your own photo")
photo = st.file_uploader("A photo (PNG, JPEG, WebP…): the run's top 3 classes and its Grad-CAM", key="r_photo",
                         type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"])
if photo is not None:
    try:
        image, top = classify_photo(loaded, photo.getvalue(), tta=tta)
    except DataError as e:
        st.error(plain(e))
    else:
        p1, p2 = st.columns([1, 2])
        p1.dataframe([{"class": c, "probability": f"{p:.1%}"} for c, p in top], hide_index=True, key="r_top3")
        photo_cam, photo_target = gradcam(loaded, image)
        p2.image([image, heat_overlay(image, photo_cam, alpha)], width=200,
                 caption=["as the net sees it (32×32)", f"Grad-CAM for '{classes[photo_target]}'"])

st.subheader("Compare with another run")
other_id = st.selectbox("Run B", [i for i in ids if i != run_id], index=None, key="r_other",
                        placeholder="choose a run to compare with…", format_func=lambda i: next(
                            f"{r.id} · {r.name} · best {accuracy_text(r.best_acc)}" for r in runs if r.id == i),
                        help="The test images one run gets right and the other gets wrong, with both predictions")
if other_id is not None:
    try:
        _, other = report_for(other_id, data_choice.data_source(), tta, shift,
                              next(r.checkpoint_sha for r in runs if r.id == other_id))
        only_a, only_b = disagreements(report, other)
    except (Busy, CheckpointError, DataError, OSError, SpecError) as e:
        st.error(plain(e))
    else:
        st.caption(f"This run (A) {report.accuracy:.2%}, run B {other.accuracy:.2%}: A alone is right on "
                   f"{len(only_a):,} images, B alone on {len(only_b):,} (the 16 where the wrong run was surest).")
        for title, idx in ((f"A right, B wrong ({len(only_a):,})", only_a), (f"B right, A wrong ({len(only_b):,})",
                                                                               only_b)):
            st.markdown(f"**{title}**")
            cols = st.columns(8)
            for k, i in enumerate(idx[:16]):
                cols[k % 8].image(data.x_test[i], width="stretch", caption=(
                    f"{classes[report.labels[i]]}: A {classes[report.preds[i]]} ({report.probs[i].max():.0%}), "
                    f"B {classes[other.preds[i]]} ({other.probs[i].max():.0%})"))

st.subheader("Downloads")
d1, d2, d3 = st.columns(3)
try:
    d1.download_button("checkpoint (.pt)", store.checkpoint_bytes(run_id), f"{run_id}.pt", icon=":material/download:",
                       key="dl_ckpt")
except (CheckpointError, StoreError) as e:  # deleted or damaged since it was evaluated
    d1.error(plain(e))
baked = d2.checkbox("Normalisation inside the ONNX", key="onnx_baked",
                    help="The ONNX model takes pixels / 255 and normalises them itself. Otherwise normalise with "
                         "the mean and std in the file's metadata, which also names the classes")
for col, fmt, name, mime in ((d2, "onnx", f"{run_id}.onnx", "application/octet-stream"),
                             (d3, "script", f"train_{run_id}.py", "text/x-python")):
    if col.button(f"Prepare {fmt}", key=f"prep_{fmt}"):
        try:
            with tempfile.TemporaryDirectory() as tmp:  # nothing of it stays on the server
                out = export(loaded, fmt, Path(tmp) / name, run_id, baked=baked and fmt == "onnx")
                st.session_state[f"export_{fmt}"] = (run_id, out.read_bytes())
        except (ExportError, OSError) as e:
            col.error(f"Cannot export {fmt}: {plain(e)}")
    prepared = st.session_state.get(f"export_{fmt}")
    if prepared and prepared[0] == run_id:
        col.download_button(name, prepared[1], name, mime, icon=":material/download:", key=f"dl_{fmt}")
