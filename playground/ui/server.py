"""What one server shares between its sessions: the launcher of training workers and its run store,
and the cached analysis of nets."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from ..escape import plain
from ..runs.store import RunStore
from ..specs.arch import Net
from ..specs.serde import from_json

if TYPE_CHECKING:
    from ..runs.jobs import Launcher
    from ..training.analysis import Analysis

# torch (through analysis and jobs) takes seconds to import: it is imported where first used, so a fresh
# server paints the Home page before it has loaded it.


@st.cache_resource
def launcher() -> Launcher:
    """One per server: it starts the workers and keeps their handles; the store holds the rest."""
    from ..runs.jobs import Launcher
    return Launcher()

def store() -> RunStore:
    return launcher().store

def store_error(e: Exception) -> None:
    """A run store that cannot be used (damaged, full, read-only): one line wherever it is met."""
    st.error(f"**The run store cannot be used.** {plain(e)}")

@st.cache_data(max_entries=256, show_spinner=False)
def _analysis(spec_json: str) -> Analysis:
    from ..training.analysis import analyze
    return analyze(from_json(Net, spec_json))  # types only: an invalid working copy is analysed to show why

def analysis(net: Net) -> Analysis:
    return _analysis(net.to_json(None))
