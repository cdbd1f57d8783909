"""Run ids and labels: the run store names each run by an id, and specs (a student's teachers), URLs and
command lines carry them; ids become file names, so only the store's own shape is an id. A run's label (its
name and note) is what a student gives it to tell runs apart, checked here once for every entry."""
from __future__ import annotations

import re

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # ASCII digits: \d also takes Arabic-Indic ones


NOTE_CHARS = 500


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def label_problems(name: str, note: str, name_chars: int) -> list[str]:
    """What is wrong with a run's name (one line of printable text, 1 to ``name_chars`` characters) and note
    (printable text, at most NOTE_CHARS characters; lines may break); [] when both are fine."""
    p = []
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        p.append("name: one line of printable text, not empty")
    elif len(name) > name_chars:
        p.append(f"name: at most {name_chars} characters, got {len(name)}")
    if not isinstance(note, str) or not all(c.isprintable() or c == "\n" for c in note):
        p.append("note: printable text only")
    elif len(note) > NOTE_CHARS:
        p.append(f"note: at most {NOTE_CHARS} characters, got {len(note)}")
    return p
