"""Who the visitor is across reloads: a random token in a cookie (the store keeps only its hash), and
whether they dismissed the Home page's guide."""
from __future__ import annotations

import hashlib
import re
import secrets

import streamlit as st


OWNER_COOKIE = "playground_owner"

def owner() -> str:
    """Who this visitor is, for run ownership in hosted mode and their drafts: a random token kept in a
    cookie, so a reload of the tab (a new Streamlit session) is still the same visitor. The store
    keeps only its hash. Draws nothing: the pages ask for it inside their columns."""
    if "owner" not in st.session_state:
        token = st.context.cookies.get(OWNER_COOKIE)  # sent by the browser: anything at all
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            token = secrets.token_hex(16)
            st.session_state["_new_owner_token"] = token
        st.session_state["owner"] = hashlib.sha256(token.encode()).hexdigest()[:32]
    return st.session_state["owner"]

def remember_owner() -> None:
    """app.py, once per run, before any page: a new visitor's token written to their cookie, on every
    run of the session that made it (a run can be cut short before the browser sees it). It draws its
    script here, once, so no page column gets one (a second one at the top would break sticky columns)."""
    owner()
    if token := st.session_state.get("_new_owner_token"):
        st.html(f"<script>document.cookie = '{OWNER_COOKIE}={token}; path=/; max-age=31536000; SameSite=Strict';"
                f"</script>", unsafe_allow_javascript=True)

GUIDE_COOKIE = "playground_guide"

def guide_hidden() -> bool:
    """Whether this visitor dismissed the Home page's "Start here" guide. Kept in a cookie, not in the
    link: a reload, a new tab or a bookmark of any page still knows it (query parameters are dropped when
    the visitor moves to another page, and a shared link would hide the guide for its receiver too)."""
    if "guide_hidden" not in st.session_state:
        st.session_state["guide_hidden"] = st.context.cookies.get(GUIDE_COOKIE) == "hidden"
    if (cookie := st.session_state.get("_guide_cookie")) is not None:  # written on every run after a change:
        age = 31536000 if cookie else 0                                 # a run may end before the browser sees it
        st.html(f"<script>document.cookie = '{GUIDE_COOKIE}=hidden; path=/; max-age={age}; SameSite=Strict';"
                f"</script>", unsafe_allow_javascript=True)
    return st.session_state["guide_hidden"]

def hide_guide(hidden: bool = True) -> None:
    """on_click for the guide's buttons: hide it (or show it again) now and in later visits."""
    st.session_state["guide_hidden"] = st.session_state["_guide_cookie"] = hidden
