"""Streamlit entry point: ``streamlit run playground/app.py`` from the repository root."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # streamlit puts only playground/ on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from playground import settings  # noqa: E402  (light: torch and albumentations load where a page first needs them)
from playground.ui import server, session_drafts, share_links, visitor  # noqa: E402
from playground.faults import StoreError  # noqa: E402

# Hosted mode's memory setting (device.return_memory_eagerly) is made by data_choice.dataset before the first
# dataset loads:
# importing config or device here would import torch before the first paint of a fresh server.
st.set_page_config(page_title="CIFAR-10 CNN Playground", page_icon=":material/science:", layout="wide")
if bad := settings.problems():  # a server misconfigured (PLAYGROUND_HOSTED=y) must not serve as anything
    for problem in bad:
        st.error(problem, icon=":material/settings:")
    st.stop()
share_links.restore_from_link()
visitor.remember_owner()
session_drafts.restore_draft()
pages = [
    st.Page("../pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("../pages/augment.py", title="Augment", icon=":material/palette:"),
    st.Page("../pages/architect.py", title="Architect", icon=":material/account_tree:"),
    st.Page("../pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("../pages/results.py", title="Results", icon=":material/search:"),
    st.Page("../pages/inside.py", title="Inside", icon=":material/visibility:"),
    st.Page("../pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("../pages/sweep.py", title="Sweep", icon=":material/tune:"),
]
page = st.navigation(pages)
share_links.link_error()  # above whichever page the link opens: a refused part is said before anything trains
try:
    page.run()
except StoreError as e:  # a damaged, full or read-only run store: one line on any page, never a traceback
    server.store_error(e)
finally:  # also when the page reran or switched pages (Streamlit's own exceptions)
    session_drafts.save_draft()
