"""Text from visitors, runs and archives made safe for Streamlit's markdown (st.markdown, st.error, captions).

The pages, the ui helpers and the CLI (its message length) share it."""
from __future__ import annotations

import re

from .specs.serde import MAX_PROBLEMS

AUTOLINK = re.compile(r"://|www\.|\w@", re.IGNORECASE)  # what GitHub-flavoured markdown makes a link of
PLAIN_CHARS = 2_000  # what a page shows of one message; the CLI cuts at the same length


def plain(text: str) -> str:
    """``text`` for st.markdown, st.error and friends with its markdown characters escaped and cut
    to ``PLAIN_CHARS``: a message may quote a visitor's run name, spec or archive, shown to other
    visitors too, and must never carry their links, images or layout (``$`` would start LaTeX)."""
    text = str(text)
    text = text if len(text) <= PLAIN_CHARS else text[:PLAIN_CHARS - 1] + "…"
    text = AUTOLINK.sub(lambda m: m[0][:-1] + "\u2060" + m[0][-1], text)  # a word joiner: shown, not linked
    return re.sub(r"([\\`*_\[\]<>|~$#!:])", r"\\\1", text)  # ":" starts Streamlit's :color[...] and icons


def bullets(problems: list[str]) -> str:
    """``problems`` as a markdown list, each escaped, at most ``MAX_PROBLEMS`` (then how many more)."""
    shown = [*problems[:MAX_PROBLEMS], *([f"and {len(problems) - MAX_PROBLEMS:,} more problems"]
                                         if len(problems) > MAX_PROBLEMS else [])]
    return "\n".join(f"- {plain(p)}" for p in shown)


def code(text: str) -> str:
    """``text`` as a markdown code span (on one line, with no backtick to end it early)."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"
