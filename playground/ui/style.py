"""The pages' shared styling: sticky columns and the rule badges."""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from ..escape import plain

if TYPE_CHECKING:
    from ..training.analysis import Analysis


def sticky_column(key: str) -> None:
    """Keep the column that holds the container ``key`` in view while the page scrolls (a preview or the
    metrics beside their controls); a narrow window, where Streamlit stacks the columns, leaves it in place."""
    st.html(f"<style>@media (min-width: 640px) {{ [data-testid=stColumn]:has(.st-key-{key}) "
            f"{{ position: sticky; top: 3.75rem; align-self: flex-start; z-index: 2; }} }}</style>")

def badges(a: Analysis, compact: bool = False) -> None:
    """The rule checks: side by side, each with its reason; or, compact (a narrow column), the badges in one
    paragraph and only the failed rules' reasons."""
    def badge(rule) -> str:
        return f"{':green-badge[✓' if rule.passed else ':red-badge[✗'} {rule.name}]"

    if compact:
        st.markdown(" ".join(badge(rule) for rule in a.rules))
        for rule in a.rules:
            if not rule.passed:
                st.caption(f"✗ {rule.name}: {plain(rule.reason)}")
        return
    cols = st.columns(len(a.rules))
    for col, rule in zip(cols, a.rules):
        col.markdown(badge(rule))
        col.caption(rule.reason)
