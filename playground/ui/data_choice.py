"""The visitor's data: the cached datasets one server shares, this session's source and its uploads, and
the one-line refusals of hosted mode's allow-list."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from .. import settings
from ..escape import plain
from ..settings import hosted
from ..training.data import Dataset
from ..training.decoding import load_in_subprocess
from ..training.sources import (NAMED, UPLOAD_PREFIX, DataError, SourceRefused, allowed_sources, check_source,
                                discard_upload, keep_upload, resolve_source, store_upload, upload_kept, upload_name,
                                upload_path, visitor_uploads)
from .visitor import owner


@st.cache_resource(max_entries=2,
                   show_spinner="Loading the dataset (decoding it the first time takes about half a minute)…")
def cached_dataset(source: str) -> Dataset:
    """One copy per data source for the whole server (all sessions share it), at most two sources,
    the least recently used dropped first. The training images stay on disk, memory-mapped: the
    server shows a few, the workers train on them. So an entry costs its test images in memory
    (3 KiB each: 29 MiB for CIFAR-10's 10,000, at most 10,000 for an upload) plus 8 bytes a label,
    and whichever training pages it touched (file-backed: the kernel can drop them).
    Hosted mode: a source outside the allow-list is refused before anything is read."""
    return load_in_subprocess(check_source(source))

def data_source() -> str:
    return st.session_state.setdefault("data_source", resolve_source(None))

def uploads() -> dict[str, str]:
    """This visitor's uploads still on the server, {source: file name}: this session's, and in hosted
    mode those their cookie made before (a reload starts a new session)."""
    mine = {s: n for s, n in st.session_state.get("uploads", {}).items() if upload_kept(s)}  # dropped ones are gone
    return {**visitor_uploads(owner()), **mine} if hosted() else mine

def data_choices() -> list[str]:
    """Hosted mode: what a visitor may pick: the configured dataset, cifar10 and this visitor's uploads."""
    return allowed_sources() + [s for s in uploads() if s not in allowed_sources()]

def source_label(source: str) -> str:
    """A data source as the page shows it (an upload by its file name)."""
    name = uploads().get(source) if source.startswith(UPLOAD_PREFIX) else None
    return f"uploaded: {name} ({source[7:19]}…)" if name else source

def use_source(source: str) -> str | None:
    """Make ``source`` this session's data; the refusal (one line) in hosted mode, where only the
    choices above are taken."""
    try:
        st.session_state["data_source"] = check_source(source)
    except SourceRefused as e:
        return str(e)
    return None

def choose_data(source: str, upload=None) -> str | None:
    """The Home page's choice: a new upload (``st.file_uploader``'s file) if there is one, else
    ``source``. Returns the problem in one line, or None."""
    if upload is not None and getattr(upload, "file_id", None) != st.session_state.get("_data_upload_id"):
        try:
            visitor = owner() if hosted() else ""
            name = upload_name(upload.name)
            stored = store_upload(upload.getvalue(), owner=visitor, name=name)
        except DataError as e:
            return str(e)
        try:
            cached_dataset(stored)  # unpacked and decoded now (in a child process), so a bad archive is refused here
        except DataError as e:
            discard_upload(stored, owner=visitor)
            return str(e)
        try:
            keep_upload(stored, owner=visitor)  # room is made only for an archive that loads
        except DataError as e:
            return str(e)
        st.session_state["_data_upload_id"] = getattr(upload, "file_id", None)
        st.session_state.setdefault("uploads", {})[stored] = name
        source = stored
    return use_source(source)

def max_upload_mb() -> int:
    """The upload cap for ``st.file_uploader`` (app.py has checked the setting)."""
    return settings.whole("PLAYGROUND_MAX_UPLOAD_MB")

def dataset(show_error: bool = True) -> Dataset | None:
    """The dataset, or None with a clear message on the page (never a traceback); the message is
    also kept as ``st.session_state["data_error"]``. A source that hosted mode refuses is always
    reported, as one ``st.error`` line, and nothing is read."""
    source = data_source()
    st.session_state["data_error"] = None
    try:
        check_source(source)
    except SourceRefused as e:
        st.session_state["data_error"] = str(e)
        st.error(plain(e))
        return None
    lean_memory()
    try:
        if source.startswith(UPLOAD_PREFIX):
            upload_path(source)  # still there, and marked in use, so that other visitors' uploads make room first
        return cached_dataset(source)
    except DataError as e:
        st.session_state["data_error"] = str(e)
        if show_error:
            st.error(f"**No dataset available.** {plain(e)}")
        return None

def source_refused() -> bool:
    """Whether hosted mode refuses this session's source (``dataset()`` has said so)."""
    try:
        check_source(data_source())
    except SourceRefused:
        return True
    return False

_lean_done = False

def lean_memory() -> None:
    """Hosted mode: have this server process give freed memory back at once (device.return_memory_eagerly),
    before it loads its first dataset; once per process."""
    global _lean_done
    if not _lean_done:
        _lean_done = True
        if hosted():
            from ..training.device import return_memory_eagerly
            return_memory_eagerly()

def still_choosable(source: str) -> bool:
    if hosted():
        return source in data_choices()
    try:
        check_source(source)
        return source in NAMED or upload_kept(source) or Path(source).exists()
    except (DataError, OSError, ValueError):  # a name the file system refuses
        return False
