"""Files written whole or not at all, shared by the run store, the data cache and the exports.

A file is written to a temporary name beside its place (``.<name>.<pid>.<random>.tmp``), flushed
to the disk and renamed onto the place: a crash, a full disk or Ctrl-C leaves the old file and
no temporary one; a writer killed mid-write leaves a temporary whose name holds its pid, which
``sweep_stale`` removes once that process is gone.
"""
from __future__ import annotations

import os
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import Callable


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (under any user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def discard(tmp: Path) -> None:
    """Remove a temporary file if it is still there; never raises (it must not hide the real error)."""
    with suppress(OSError):
        os.unlink(tmp)


def write_temporary(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` fills a new temporary file beside ``path``, which is then flushed to the disk;
    removed again if anything fails (OSError and the rest propagate). An OSError about the temporary
    file names ``path`` instead: the temporary name means nothing to the person who asked for ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException as e:
        discard(tmp)
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) == str(tmp):
            raise type(e)(e.errno, e.strerror, str(path)) from None
        raise
    return tmp


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` fills a temporary file; only a complete one is renamed onto ``path``, and only
    over a regular file or nothing: renaming onto /dev/full or a fifo replaced the device node."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise IsADirectoryError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file'}; "
                                f"give the path of a file to write")
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    finally:
        discard(tmp)
    return path


def _bytes(data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return write


def write_bytes(path: Path, data: bytes) -> Path:
    return write_atomic(path, _bytes(data))


def write_bytes_temporary(path: Path, data: bytes) -> Path:
    """A flushed temporary file holding ``data`` beside ``path``, for a caller that renames it itself
    (the run store, inside the transaction that records the file's hash)."""
    return write_temporary(path, _bytes(data))


def sweep_stale(folder: Path, min_age_s: float) -> None:
    """Temporary files in ``folder`` left by writers that died mid-write (SIGKILL, power loss): older
    than ``min_age_s`` and their writer gone, or older than an hour (a reused pid)."""
    now = time.time()
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        try:
            pid = int(tmp.name.rsplit(".", 3)[-3])
            age = now - tmp.stat().st_mtime
            if age > min_age_s and (age > 3600 or not pid_alive(pid)):
                tmp.unlink()
        except (ValueError, IndexError, OSError):
            continue
