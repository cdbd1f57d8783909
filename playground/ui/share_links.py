"""Share links: ?arch=…&aug=… read once per session through the validator, and written for the
current specs."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from ..escape import plain
from ..specs import links
from ..specs.arch import Net
from ..specs.serde import SpecError
from .working_specs import set_aug, set_net

if TYPE_CHECKING:
    from ..specs.augment import AugSpec


def restore_from_link() -> None:
    """Apply ?arch=…&aug=… once per session, through the validator; a bad link is reported, not fatal."""
    if st.session_state.get("_link_done"):
        return
    st.session_state["_link_done"] = True
    from ..specs.augment import AugSpec

    errors = []
    for key in ("arch", "aug"):
        raw = st.query_params.get(key)
        if not raw:
            continue
        cls = Net if key == "arch" else AugSpec
        try:
            spec = links.decode(cls, raw)  # bounded and validated; any failure is one SpecError
        except SpecError as e:
            errors.append(f"The share link's {key} part was ignored: {plain('; '.join(e.problems))}")
        else:
            set_net(spec) if key == "arch" else set_aug(spec)
    if errors:  # each part's own line (the aug part's error had replaced the arch part's)
        st.session_state["_link_error"] = errors

def link_error() -> None:
    """The link's refused parts, once, above the page it opened."""
    for msg in st.session_state.pop("_link_error", []):
        st.error(msg)

def share_query(net: Net, aug: AugSpec) -> dict:
    return {"arch": links.encode(net), "aug": links.encode(aug)}
