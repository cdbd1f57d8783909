"""The server's settings: every environment variable the playground reads, read here and checked.

A value that is not one the setting takes is one line naming the variable and what it takes, never a
default taken silently: ``PLAYGROUND_HOSTED=y`` read as "off" turned a public demo into a local one
(no owners, the largest limits), and ``PLAYGROUND_THREADS=99999`` crashed every worker in OpenMP. The
app and the CLI check them all when they start (``problems``), so a page or a worker never meets a bad
one midway. Text settings are stripped, and blank means unset.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

ON, OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
TIERS = ("local", "raised")
WHOLE = {  # name: (default, lowest, highest, meaning)
    "PLAYGROUND_MAX_UPLOAD_MB": (50, 1, 10 ** 6, "the size of an uploaded dataset archive, in MB"),
    "PLAYGROUND_MAX_UNPACKED_MB": (1024, 1, 10 ** 7, "what one dataset archive may unpack to, in MB"),
    "PLAYGROUND_MAX_ARCHIVE_FILES": (100_000, 1, 10 ** 9, "files and folders in one dataset archive"),
    "PLAYGROUND_MAX_UPLOADS": (4, 1, 10_000, "uploaded datasets kept on the server"),
    "PLAYGROUND_MAX_JOBS": (2, 1, 64, "trainings the app runs at once"),
    "PLAYGROUND_THREADS": (0, 0, 256, "threads of one training; 0: one per core"),
    "PLAYGROUND_SWEEP_GRACE_S": (30, 6, 3600, "seconds a sweep trial may miss its heartbeat"),
}
FLAGS = ("PLAYGROUND_HOSTED", "PLAYGROUND_DEBUG")


class SettingError(UserError, ValueError):
    """An environment variable holds a value its setting does not take."""


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:39] + "…")


def text(name: str) -> str | None:
    """A path or a source: the value stripped, None when unset or blank."""
    return os.environ.get(name, "").strip() or None


def path(name: str, default: Path | str) -> Path:
    return Path(text(name) or default)


def flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ON or raw in OFF:
        return raw in ON
    raise SettingError(f"{name} must be 1, true, yes or on (or 0, false, no, off or unset), got "
                       f"{_shown(os.environ[name])}")


def hosted() -> bool:
    """Hosted mode (PLAYGROUND_HOSTED=1), for a demo that strangers share: visitors change only the
    runs they started, and the server and its workers trade speed for memory."""
    return flag("PLAYGROUND_HOSTED")


def limits_tier() -> str:
    """``PLAYGROUND_LIMITS``: "local" (the default) or "raised"; hosted mode ignores it (limits.py)."""
    raw = os.environ.get("PLAYGROUND_LIMITS", "").strip().lower() or "local"
    if raw not in TIERS:
        raise SettingError(f"PLAYGROUND_LIMITS must be local or raised (or unset), got "
                           f"{_shown(os.environ['PLAYGROUND_LIMITS'])}")
    return raw


def whole(name: str) -> int:
    """One of ``WHOLE``: its value (ASCII digits, ``_`` allowed between them) or its default."""
    default, lo, hi, meaning = WHOLE[name]
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12 and lo <= int(raw) <= hi):
        raise SettingError(f"{name} must be a whole number from {lo:,} to {hi:,} ({meaning}), got "
                           f"{_shown(os.environ[name])}")
    return int(raw)


def problems() -> list[str]:
    """Every bad setting, one line each (empty when all are good)."""
    found = []
    for check in [*(lambda n=n: whole(n) for n in WHOLE), *(lambda n=n: flag(n) for n in FLAGS), limits_tier]:
        try:
            check()
        except SettingError as e:
            found.append(str(e))
    return found
