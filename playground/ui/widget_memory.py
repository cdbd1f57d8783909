"""The Train form's widget values kept across pages: Streamlit drops a widget's value when its page is
not drawn, so the form keeps a copy under a key it never drops."""
from __future__ import annotations

import streamlit as st

from .. import form


def restore_widget_values() -> None:
    """Before the Train form is drawn: the kept copy (form.KEPT) of each value Streamlit has dropped, so a
    visitor who looks at another page and comes back finds the form as they left it."""
    for key, value in st.session_state.get("_kept_widgets", {}).items():
        if key not in st.session_state:
            st.session_state[key] = value

def remember_widget_values() -> None:
    """After the widgets are drawn: their values, kept under a key that Streamlit never drops."""
    st.session_state["_kept_widgets"] = {k: st.session_state[k] for k in form.KEPT if k in st.session_state}

def fit_kept_values(t_subset: int, t_teachers: list[str]) -> None:
    """A kept value that no longer fits its widget (another dataset has fewer images, a teacher run was
    deleted) is brought within it, so the widget does not fail on it."""
    if st.session_state.get("t_subset", 0) > t_subset:
        st.session_state["t_subset"] = t_subset
    if "t_teachers" in st.session_state:
        st.session_state["t_teachers"] = [i for i in st.session_state["t_teachers"] if i in t_teachers]
