"""Run ids and labels: the run store names each run by an id, and specs (a student's teachers), URLs and
command lines carry them; ids become file names, so only the store's own shape is an id. A run's label (its
name and note) is what a student gives it to tell runs apart, checked here once for every entry."""
from __future__ import annotations

import re

from . import limits
from .serde import SpecError, hidden_char

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # ASCII digits: \d also takes Arabic-Indic ones


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def checked_label(name: str | None = None, note: str | None = None) -> tuple[str | None, str | None]:
    """A run's new name and note as the store keeps them (None: left as it is), each one paragraph whose runs of
    whitespace are one space; SpecError, naming the field and its limit, when one is not printable text within
    the tier's limit (a name one line, not empty) or when neither is given."""
    lim = limits.current()
    name_rule = f"a name is one line of printable text of 1 to {lim.name_chars} characters"
    note_rule = f"a note is printable text of at most {lim.note_chars} characters"
    problems = [] if name is not None or note is not None else ["name and note: neither given; give one or both"]
    if name is not None:
        lines = len(name.strip().splitlines()) if isinstance(name, str) else 0
        name = _paragraph(name, "name", name_rule, problems)
        if lines > 1:
            problems.append(f"name: {lines} lines; {name_rule}")
        elif name == "":
            problems.append(f"name: empty; {name_rule}")
        elif name and (too_long := limits.exceeded("the name", len(name), lim, "name_chars", " characters")):
            problems.append(too_long)
    if note is not None:
        note = _paragraph(note, "note", note_rule, problems)
        if note and (too_long := limits.exceeded("the note", len(note), lim, "note_chars", " characters")):
            problems.append(too_long)
    if problems:
        raise SpecError(problems)
    return name, note


def _paragraph(text: object, field: str, rule: str, problems: list[str]) -> str | None:
    """``text`` with its runs of whitespace made one space, or None after adding what is wrong to ``problems``."""
    if not isinstance(text, str):
        problems.append(f"{field}: not text; {rule}")
        return None
    text = " ".join(text.split())
    if bad := hidden_char(text):
        problems.append(f"{field}: control and invisible characters are not allowed, got {bad}; {rule}")
        return None
    return text
