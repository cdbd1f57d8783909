"""The session's working architecture and augmentation specs, kept as plain dicts in session state (a
page's working copy may be invalid while it is edited)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from ..specs.arch import Net
from ..specs.presets import preset_net
from ..training.sources import resolve_source

if TYPE_CHECKING:
    from ..specs.augment import AugSpec

# albumentations (through augment) takes seconds to import: it is imported where first used.
DEFAULT_PRESET = "fast"

def get_net() -> Net:
    if "net" not in st.session_state:
        st.session_state["net"] = preset_net(DEFAULT_PRESET).to_dict()
    return Net.parse(st.session_state["net"])  # the page's own working copy: may be invalid while edited

def set_net(net: Net) -> None:
    spec = net.to_dict()
    if spec != st.session_state.get("net"):  # a recipe loaded on the Train page no longer describes the run
        st.session_state.pop("t_loaded", None)  # (the Architect page sets the same net again on each visit)
    st.session_state["net"] = spec
    for key in [k for k in st.session_state if str(k).startswith("w_")]:
        del st.session_state[key]  # widgets re-initialise from the new spec

def get_aug() -> AugSpec:
    from ..specs.augment import AugSpec, default_aug
    if "aug" not in st.session_state:
        st.session_state["aug"] = default_aug().to_dict()
    return AugSpec.parse(st.session_state["aug"])

def set_aug(aug: AugSpec) -> None:
    st.session_state["aug"] = aug.to_dict()
    for key in [k for k in st.session_state if str(k).startswith("a_")]:
        del st.session_state[key]

def default_spec(part: str):
    """What a new session starts with where no draft is restored."""
    if part == "net":
        return preset_net(DEFAULT_PRESET).to_dict()
    if part == "aug":
        from ..specs.augment import default_aug
        return default_aug().to_dict()
    return resolve_source(None)
