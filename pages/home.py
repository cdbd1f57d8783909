"""Home: the guide, the assignment and the presets paint at once; the data status comes after (a fresh
server decodes its data source first, in a child process), with a progress message where it will show."""
import streamlit as st

from playground.ui import data_choice, server, visitor
from playground.escape import code, plain


def guide() -> None:
    """The first-visit guide; a returning visitor dismisses it (a cookie keeps that) and may bring it back
    (the button at the bottom of the page)."""
    if hidden:
        return
    with st.container(border=True, key="start_here"):
        st.markdown("#### Start here")
        c = st.columns(4)
        for col, (page, title, what) in zip(c, (
                ("augment", "1. Augment", "pick the transforms and see them on the training images"),
                ("architect", "2. Architect", "start from a preset or a blank net and watch params and RF"),
                ("train", "3. Train", "train it here (a subset for a quick look) and follow the curves"),
                ("results", "4. Results", "the confusion matrix, the mistakes and Grad-CAM"))):
            col.page_link(f"../pages/{page}.py", label=f"**{title}**")
            col.caption(what)
        st.button("Got it, hide this guide", key="guide_hide", on_click=visitor.hide_guide, icon=":material/close:")


st.title("CIFAR-10 CNN Playground")
hidden = visitor.guide_hidden()
guide()
st.markdown(
    "Build small convolutional networks, see their receptive field and parameter budget live, preview the "
    "augmentations, train in the browser and dig into the mistakes. Everything here is also a Python library "
    "and a CLI (`python -m playground --help`).")
st.subheader("The classic assignment")
st.markdown("- fewer than **200,000** parameters\n- receptive field **> 44** px\n"
            "- at least one **dilated** and one **depthwise-separable** convolution\n"
            "- a **GAP** head, in the **C1 C2 C3 C4 O** form\n- **85%** test accuracy")
st.subheader("Presets")
with st.spinner("Measuring the presets…"):  # a fresh server imports torch here, after the text above is shown
    import pandas as pd

    from playground.results.plots import minutes_seconds
    from playground.specs.presets import PRESETS
    from playground.specs.recipes import RECIPES, measured_for

    rows = []
    for p in PRESETS.values():
        a = server.analysis(p.net)
        m = measured_for(p.name)
        rows.append({"preset": p.name, "params": a.params, "RF": a.trace.rf, "MACs (M)": round(a.macs / 1e6, 1),
                     "all rules": all(r.passed for r in a.rules),
                     "reported acc": f"{p.reported_accuracy:.2f}%" if p.reported_accuracy else "–",
                     "reported epochs": str(p.reported_epochs or "–"),
                     "measured acc": f"{m.test_acc:.2f}%" if m else "–", "measured epochs": str(m.epochs) if m else "–",
                     "measured time": minutes_seconds(m.wall_s) if m else "–",
                     "measured on": m.where if m else "–", "source": p.source,
                     "about": p.description})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
    "params": st.column_config.NumberColumn(format="localized", width=70),
    "RF": st.column_config.NumberColumn(width=40), "MACs (M)": st.column_config.NumberColumn(width=75),
    "all rules": st.column_config.CheckboxColumn(width=70)})
st.caption("Reported: the seed README's own figure. Measured: our recipe for that preset on the 45k/5k split, "
           "on the hardware named; replay it with " + ", ".join(f"`python -m playground train --recipe {r}`"
                                                         for r in RECIPES) + ".")

from playground.settings import hosted  # noqa: E402

st.subheader("Data")
status = st.container(key="data_status")  # filled after the form: the form is usable while the data loads
with st.form("data_form"):
    if hosted():
        choices = data_choice.data_choices()
        current = data_choice.data_source()
        source = st.selectbox("Data source", choices, choices.index(current) if current in choices else 0,
                              format_func=data_choice.source_label)
    else:
        source = st.text_input("Data source (cifar10, cifar100, or a folder / .tar.gz / .zip path)",
                               data_choice.data_source())
    upload = st.file_uploader(
        "Or upload a dataset: a .tar.gz or .zip of `train/<class>/*.png` and `test/<class>/*.png`",
        type=["gz", "tgz", "tar", "zip"],  # code spans: the label is markdown, and *.png and *.png made italics
        max_upload_size=data_choice.max_upload_mb(), key="data_upload",
        help="Images of any size are resized to 32×32; files that are not readable images are skipped and "
             "counted. Stored on the server by content; your uploads stay listed for you after a reload. To "
             "make room, your own older uploads go first, then others' unused for an hour.")
    if st.form_submit_button("Use this data"):
        problem = data_choice.choose_data(source.strip(), upload)
        if problem:
            st.error(plain(problem))
        else:
            st.rerun()

with status:
    data = data_choice.dataset(show_error=False)  # a source hosted mode refuses is reported there, in one line
    if data is None:
        if not data_choice.source_refused():
            advice = ("Choose another of the listed datasets, or upload your own below: a `.tar.gz` or `.zip` of "
                      "an ImageFolder with `train/<class>/` and `test/<class>/` image folders." if hosted() else
                      "Either let torchvision download CIFAR-10 (needs internet), or use a copy of your own: an "
                      "ImageFolder with `train/<class>/` and `test/<class>/` image folders, uploaded below as a "
                      "`.tar.gz` or `.zip`, entered as a folder or archive path, or named when the app starts "
                      "(`PLAYGROUND_DATA=/path/to/folder`).")
            source = data_choice.source_label(data_choice.data_source())
            st.warning(f"No dataset is available from {code(source)} yet: "
                       f"{plain(st.session_state.get('data_error') or '')} {advice}")
    else:
        source = data_choice.data_source()
        shown_name = data_choice.uploads().get(source) or data.name  # an upload by its file name, not "upload"
        st.success(f"Using **{plain(shown_name)}**: {len(data.y_train):,} training and {len(data.y_test):,} "
                   f"test images, {len(data.classes)} classes, from {code(data_choice.source_label(source))}.")
        if data.skipped:
            st.warning(plain(data.skipped_note()) + ": they are not readable images, or too large.")

if hidden:
    st.button("Show the “Start here” guide", key="guide_show", on_click=visitor.hide_guide, args=(False,),
              type="tertiary", icon=":material/help:")
