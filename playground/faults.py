"""Faults below every stage: the store's and checkpoints' exceptions, and the translation of OS and
SQLite errors into the cause a person can act on, in one line (a full or read-only disk, a damaged or
locked database, a failing disk). Every page and command shows their message, never a traceback.
"""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from .errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing or damaged; it is reported, never loaded silently."""


class RunGone(UserError, RuntimeError):
    """The run was deleted while something was writing to it."""


class StoreError(UserError, RuntimeError):
    """The run store cannot be read or written (a full or read-only disk, a damaged or missing
    database, a lock held too long); the message names the cause in one line."""


class DamagedRun(StoreError):
    """One run's row holds values of the wrong type or shape (edited by hand, written by a bug, a disk
    fault SQLite did not notice). Raised by what needs the run itself (evaluate, export, resume, curves);
    the listing shows the row as a "damaged" record and every other run is unaffected. The message names
    the run and the damaged fields, in one line."""


def cause_of_os_error(e: OSError, where: Path, what: str = "the run store") -> str:
    """An OSError as the cause a person can act on; ``what`` names the kind of place ``where`` is
    (the data cache and the uploads folder use it too)."""
    detail = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: cannot write {what} {where} ({detail}); free some space"
    if e.errno == errno.EROFS:
        return f"{what} {where} is read-only ({detail})"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{what} {where} is not writable ({detail})"
    if e.errno == errno.EIO:
        return f"an I/O error in {what} {where} ({detail}); the disk may be failing"
    return f"cannot write {what} {where} ({detail})"


def read_only_disk(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False


def _disk_nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def cause_of_sqlite_error(e: sqlite3.Error, db: Path) -> str:
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL"):
        return f"the disk is full: the run store database {db} cannot grow ({e}); free some space"
    if name.startswith("SQLITE_READONLY"):
        return f"the run store {db.parent} is read-only ({e})"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"the run store database {db} is locked by another process ({e}); try again"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or isinstance(e, sqlite3.DatabaseError) and (
            "malformed" in str(e) or "not a database" in str(e)):
        return (f"the run store database {db} is damaged ({e}); move it aside to start an empty store "
                f"(checkpoints are kept beside it) or restore a backup")
    if name.startswith("SQLITE_CANTOPEN") and read_only_disk(db.parent):
        return f"the run store {db.parent} is read-only (it is on a read-only disk) and has no database to read"
    if name.startswith("SQLITE_CANTOPEN"):
        why = "it is a directory" if db.is_dir() else "missing, or its folder is not writable"
        return f"cannot open the run store database {db} ({why})"
    if name.startswith("SQLITE_IOERR"):  # SQLite reports a full disk so when its WAL index cannot grow
        if _disk_nearly_full(db.parent):
            return f"the disk is full: the run store database {db} cannot be written ({e}); free some space"
        return f"an I/O error in the run store database {db} ({e}); the disk may be failing"
    return f"the run store database {db} failed: {type(e).__name__}: {e}"
