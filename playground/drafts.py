"""A visitor's work in progress, kept on the server so that a reload or a new tab finds it.

A reload starts a new Streamlit session with an empty session state. The architecture someone spent
ten minutes on, their augmentation pipeline and their data choice were gone. (Query parameters cannot
hold them: Streamlit drops them when the visitor moves to another page.) The app saves them here after
every run in which they changed, under the visitor's owner hash (ui/visitor.py: a cookie), and a new session
of the same visitor starts from them unless a share link says otherwise.

One small JSON file per visitor in ``<cache>/drafts/``, written whole or not at all. A draft is a
convenience, never a reason for an error: a change that cannot be written (a full or read-only disk)
leaves the draft saved before it, and a draft that cannot be read is none (the reader passes each part
through its validator). The folder is bounded: at most ``MAX_DRAFTS`` files of at most ``MAX_BYTES``
each, the least recently saved dropped first.
"""
from __future__ import annotations

import json
import re
from contextlib import suppress
from pathlib import Path

from . import atomic

MAX_DRAFTS = 500
MAX_BYTES = 64_000  # a 40-layer net and a 16-step pipeline take about 10 KB
OWNER_RE = re.compile(r"[0-9a-f]{32}")


def _folder(cache: Path | None) -> Path:
    from .training.sources import cache_dir

    return (Path(cache) if cache else cache_dir()) / "drafts"


def save(owner: str, draft: dict, cache: Path | None = None) -> bool:
    """Keep ``draft`` (plain JSON data) as this visitor's; False when it was not kept."""
    if not OWNER_RE.fullmatch(owner):
        return False
    try:
        data = json.dumps(draft, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError):  # a working copy being edited that JSON cannot hold
        return False
    if len(data) > MAX_BYTES:
        return False
    folder = _folder(cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        new = not (folder / f"{owner}.json").exists()
        atomic.write_bytes(folder / f"{owner}.json", data)
        if new:
            _drop_oldest(folder)
    except OSError:
        return False
    return True


def update(owner: str, parts: dict, cache: Path | None = None) -> bool:
    """Merge ``parts`` into this visitor's draft (the others stay as another tab saved them)."""
    return save(owner, {**load(owner, cache), **parts}, cache)


def load(owner: str, cache: Path | None = None) -> dict:
    """This visitor's last draft as plain data ({} when there is none or it cannot be read); its
    parts are unchecked: the caller passes each through its validator."""
    if not OWNER_RE.fullmatch(owner):
        return {}
    from .specs.serde import SpecError, parse_json

    try:
        data = parse_json((_folder(cache) / f"{owner}.json").read_bytes(), MAX_BYTES)
    except (OSError, SpecError):
        return {}
    return data if isinstance(data, dict) else {}


def _drop_oldest(folder: Path) -> None:
    atomic.sweep_stale(folder, 600)
    drafts = list(folder.glob("*.json"))
    if len(drafts) <= MAX_DRAFTS:
        return

    def saved(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    for path in sorted(drafts, key=saved)[:len(drafts) - MAX_DRAFTS]:
        with suppress(OSError):
            path.unlink()
