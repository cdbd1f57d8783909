"""Run ids: the run store names each run so, and specs (a student's teachers), URLs and command lines
carry them. Ids become file names, so only the store's own shape is an id."""
from __future__ import annotations

import re

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # ASCII digits: \d also takes Arabic-Indic ones


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None
