"""The visitor's draft in a session: restored once when the session starts (a reload, a new tab) and the
parts it changed saved after each run (the files themselves: playground/drafts.py)."""
from __future__ import annotations

import copy
import hashlib
import json
from contextlib import suppress

import streamlit as st

from .. import drafts, form
from ..specs.arch import Net
from ..specs.config import TrainSpec
from ..specs.recipes import RECIPES
from ..specs.serde import SpecError
from .data_choice import still_choosable
from .visitor import owner
from .working_specs import default_spec


def restore_draft() -> None:
    """Once per session, after restore_from_link: the architecture, pipeline, data choice and Train form this
    visitor had when their last session ended (a reload, a new tab: drafts.py), each part the link did not set
    and only through its validator (the form: its types, then its widgets' bounds); a data source only while
    this visitor may still pick it."""
    if st.session_state.get("_draft_done"):
        return
    st.session_state["_draft_done"] = True
    draft = drafts.load(owner())
    from ..specs.augment import AugSpec

    for key, cls in (("net", Net), ("aug", AugSpec)):
        if key in draft and key not in st.session_state:
            with suppress(SpecError):
                st.session_state[key] = cls.from_dict(draft[key]).to_dict()
    source = draft.get("data")
    if isinstance(source, str) and "data_source" not in st.session_state and still_choosable(source):
        st.session_state["data_source"] = source
    # what the session starts with: the restored draft, else the defaults (worked out once, not on every rerun)
    st.session_state["_draft_saved"] = {**{k: default_spec(k) for k in ("net", "aug", "data")}, **copy.deepcopy(draft)}
    st.session_state["_draft_saved"].pop("train", None)  # save_draft takes the Train form as first drawn
    if isinstance(train := draft.get("train"), dict) and "_kept_widgets" not in st.session_state:
        with suppress(SpecError):
            _restore_train_form(train)

def _restore_train_form(train: dict) -> None:
    """The Train form's values from a draft's TrainSpec (the page fits the subset and teachers to its data),
    its recipe choice, and the recipe it was loaded from, whose settings without a widget (seed-001's
    warm-up) apply at Start while the session's net is the one it was loaded for (not a share link's, nor
    one another tab saved since)."""
    kept = form.values(TrainSpec.parse(train.get("spec")))  # types: the form as left, even if Start refuses it
    if isinstance(recipe := train.get("recipe"), str) and recipe in RECIPES:
        kept["t_recipe"] = recipe
    st.session_state["_kept_widgets"] = kept
    loaded = train.get("loaded")
    if isinstance(loaded, str) and loaded in RECIPES and train.get("for_net") == _digest(st.session_state.get("net")):
        st.session_state["t_loaded"] = loaded

def _digest(net: dict | None) -> str:
    return hashlib.sha256(json.dumps(net, sort_keys=True).encode()).hexdigest()[:32]

def save_draft() -> None:
    """After each run of a page: the parts of this session's working specs and data choice that changed,
    merged into the visitor's draft. A part is changed when it differs from what the session started with
    (the restored draft, else the default): another tab's changes to the other parts stay, and a session
    that only saw the defaults saves nothing (a visitor without cookies, a monitor or a bot, wrote a draft
    on each visit and pushed real visitors' drafts out)."""
    draft = {k: st.session_state[k] for k in ("net", "aug") if k in st.session_state}
    if "data_source" in st.session_state:
        draft["data"] = st.session_state["data_source"]
    saved = st.session_state.get("_draft_saved", {})
    if kept := st.session_state.get("_kept_widgets"):  # the Train form's values as of its last Start or recipe
        loaded = st.session_state.get("t_loaded")
        draft["train"] = {"spec": form.spec(kept).to_dict(), "recipe": kept.get("t_recipe"), "loaded": loaded,
                          "for_net": _digest(st.session_state.get("net")) if loaded else None}
        saved.setdefault("train", draft["train"])  # the form as first drawn (the defaults or the restored draft)
    changed = {k: v for k, v in draft.items() if v != saved.get(k)}
    if not changed:
        return
    st.session_state["_draft_saved"] = {**saved, **copy.deepcopy(changed)}  # not kept (a full disk): not retried
    drafts.update(owner(), changed)
