import pandas as pd
import streamlit as st

from playground import ui
from playground.presets import PRESETS
from playground.recipes import RECIPES, measured_for

st.title("CIFAR-10 CNN Playground")
st.markdown(
    "Build small convolutional networks, see their receptive field and parameter budget live, preview the "
    "augmentations, train in the browser and dig into the mistakes. Everything here is also a Python library "
    "and a CLI (`python -m playground --help`).")
st.subheader("The classic assignment")
st.markdown("- fewer than **200,000** parameters\n- receptive field **> 44** px\n"
            "- at least one **dilated** and one **depthwise-separable** convolution\n"
            "- a **GAP** head, in the **C1 C2 C3 C4 O** form\n- **85%** test accuracy")
st.subheader("Presets")
rows = []
for p in PRESETS.values():
    a = ui.analysis(p.net)
    m = measured_for(p.name)
    rows.append({"preset": p.name, "params": a.params, "RF": a.trace.rf, "MACs (M)": round(a.macs / 1e6, 1),
                 "all rules": all(r.passed for r in a.rules), "reported acc": p.reported_accuracy,
                 "reported epochs": p.reported_epochs, "measured acc": m.test_acc if m else None,
                 "measured epochs": m.epochs if m else None,
                 "measured minutes": round(m.wall_s / 60, 1) if m else None,
                 "measured on": m.where if m else None, "source": p.source,
                 "about": p.description})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
st.caption("Reported: the seed README's own figure. Measured: our recipe for that preset on the 45k/5k split, "
           "on the hardware named; replay it with " + ", ".join(f"`python -m playground train --recipe {r}`"
                                                         for r in RECIPES) + ".")
st.subheader("Data")
data = ui.dataset(show_error=False)
if data is None:
    st.warning(
        f"No dataset is available from `{ui.data_source()}` yet. Either let torchvision download CIFAR-10 "
        "(needs internet), or point the app at a local copy: an ImageFolder folder with `train/` and `test/` "
        "(or a `.tar.gz` of one). Enter it below or start the app with `PLAYGROUND_DATA=/path/to/folder`.")
else:
    st.success(f"Using **{data.name}**: {len(data.y_train):,} training and {len(data.y_test):,} test images, "
               f"{len(data.classes)} classes, from `{ui.data_source()}`.")
with st.form("data_form"):
    source = st.text_input("Data source (cifar10, cifar100, or a folder / .tar.gz path)", ui.data_source())
    if st.form_submit_button("Use this data"):
        st.session_state["data_source"] = source.strip()
        st.rerun()
