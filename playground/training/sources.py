"""Data sources: what a ``--data`` string names, whether this server may load it for a visitor,
the data settings, and the archives visitors upload (kept under the cache by content hash). data.py reads
what a source names; this module decides which source that is and keeps uploads, without reading any images.

Its settings (settings.py reads and checks them): ``PLAYGROUND_MAX_UPLOAD_MB`` (50) the size of an
uploaded archive; ``PLAYGROUND_MAX_UNPACKED_MB`` (1024) what one archive may unpack to;
``PLAYGROUND_MAX_ARCHIVE_FILES`` (100,000) the members of one archive; ``PLAYGROUND_MAX_UPLOADS`` (4)
uploads kept on the server (with their decoded arrays): the uploader's own older ones are dropped
first, then other visitors' unused for an hour; an upload that would need another visitor's recent
one dropped is refused instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from contextlib import suppress
from pathlib import Path

from .. import settings
from ..errors import UserError
from ..faults import cause_of_os_error
from ..specs.serde import short
from .archives import archive_kind

DEFAULT_SOURCE = "cifar10"
NAMED = ("cifar10", "cifar100")
UPLOAD_PREFIX = "upload:"
UPLOAD_RE = re.compile(r"upload:([0-9a-f]{64})")
OWNER_RE = re.compile(r"[0-9a-f]{32}")  # visitor.owner(): a hash of the visitor's cookie
IN_USE_S = 3600  # another visitor's upload used (loaded, uploaded again) this recently is never dropped
MB = 1_000_000


class DataError(UserError, RuntimeError):
    """The data could not be found or read; the message says what to do."""


def cache_dir() -> Path:
    return settings.path("PLAYGROUND_CACHE", Path.home() / ".cache" / "cifar-playground")


def resolve_source(source: str | None = None) -> str:
    """``--data`` beats ``PLAYGROUND_DATA`` beats the default ``cifar10``."""
    return source or settings.text("PLAYGROUND_DATA") or DEFAULT_SOURCE


def allowed_sources() -> list[str]:
    """What a hosted demo's visitor may pick besides an upload: the configured dataset
    (``PLAYGROUND_DATA``) and ``cifar10``."""
    out = []
    for s in (settings.text("PLAYGROUND_DATA"), DEFAULT_SOURCE):
        if s and s not in out:
            out.append(s)
    return out


class SourceRefused(DataError):
    """Hosted mode: the source is not one a visitor may load."""


def check_source(source: str) -> str:
    """``source`` if this server may load it for a visitor, else SourceRefused. Local mode: any
    source. Hosted mode: ``allowed_sources()`` and well-formed ``upload:`` ids only; the answer is
    decided from the string alone, so it never tells whether a path exists on the server."""
    if not settings.hosted() or source in allowed_sources() or UPLOAD_RE.fullmatch(source or ""):
        return source
    raise SourceRefused(f"This demo loads only {', '.join(allowed_sources())} or a dataset archive you upload; "
                        f"{short(source, 60)} is not one of them.")


def same_source(a: str, b: str) -> bool:
    """Whether two recorded sources name the same data: a relative and an absolute path to one
    folder or archive are the same; names such as ``cifar10`` must match exactly."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def hint() -> str:
    """What to do about data that cannot be found or read: a hosted visitor can only upload or choose."""
    if settings.hosted():
        return ("Upload a .tar.gz or .zip of train/<class>/*.png and test/<class>/*.png (ImageFolder layout), or "
                "choose one of the listed datasets.")
    return ("Point the playground at a local copy with --data PATH or PLAYGROUND_DATA=PATH: a folder holding "
            "train/<class>/*.png and test/<class>/*.png (ImageFolder layout) or a .tar.gz / .zip of one; or use "
            "--data cifar10 with internet access to download it.")



# ---------------------------------------------------------------------------------------------
# Uploads: stored by content hash under the cache, the least recently used dropped first.

def store_upload(data: bytes, cache: Path | None = None, owner: str = "", name: str = "") -> str:
    """Keep an uploaded dataset archive (a .tar.gz / .tar / .zip of an ImageFolder) and return its
    source, ``upload:<sha256>``. Only its size and its first bytes are checked here; the rest
    when it is unpacked; once it has loaded, ``keep_upload`` makes room for it (so that a refused
    archive never costs its uploader the dataset they are using). ``owner``: the visitor (hosted mode),
    ``name``: the file name they uploaded, listed for them (``visitor_uploads``) after a reload."""
    cap = settings.whole("PLAYGROUND_MAX_UPLOAD_MB")
    if len(data) > cap * MB:
        raise DataError(f"The upload is {len(data) / MB:,.1f} MB; the limit is {cap:,} MB "
                        f"(PLAYGROUND_MAX_UPLOAD_MB).")
    if archive_kind(data[:512]) is None:
        raise DataError("The upload is not a .zip, .tar, .tar.gz, .tar.bz2 or .tar.xz archive.")
    folder = (Path(cache) if cache else cache_dir()) / "uploads"
    digest = hashlib.sha256(data).hexdigest()
    path = folder / digest
    if path.exists():
        with suppress(OSError):  # only the eviction order; a read-only disk still serves it
            os.utime(path)
    else:
        tmp = folder / f".{digest}.tmp{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException as e:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):  # a full or read-only disk: the server's fault, in one line
                raise DataError(f"Cannot keep the upload on the server: "
                                f"{cause_of_os_error(e, folder, 'the uploads folder')}.") from None
            raise
    with suppress(OSError):  # who uploaded it: their uploads make room for their next one first
        (folder / "owners" / digest).mkdir(parents=True, exist_ok=True)
        (folder / "owners" / digest / (owner if OWNER_RE.fullmatch(owner) else "local")).write_text(
            upload_name(name), encoding="utf-8")
    return f"{UPLOAD_PREFIX}{digest}"


def upload_name(raw: str) -> str:
    """A visitor's file name as it may be shown and kept: printable characters, at most 60."""
    return "".join(c for c in str(raw) if c.isprintable())[:60]


def keep_upload(source: str, owner: str = "", cache: Path | None = None) -> None:
    """Make room for an upload that has loaded: at most PLAYGROUND_MAX_UPLOADS are kept (``_make_room``).
    When the room could only come from other visitors' uploads in use, it is dropped and DataError says
    so in one line (unless another visitor uploaded the same archive: then it is theirs too and stays)."""
    keep = settings.whole("PLAYGROUND_MAX_UPLOADS")
    cache = Path(cache) if cache else cache_dir()
    digest = upload_path(source, cache).name
    try:
        room = _make_room(cache, keep=keep, current=digest, owner=owner)
    except OSError:  # dropping old uploads can wait for the next one
        return
    if not room and _owned_by(cache / "uploads", digest, owner):  # kept for another visitor already: it stays
        with suppress(OSError):
            _drop_upload(cache, digest)
        raise DataError(f"The server keeps {keep} uploaded datasets (PLAYGROUND_MAX_UPLOADS) and other "
                        f"visitors have used each of them in the last {IN_USE_S // 60} minutes; try again "
                        f"later, or choose one of the listed datasets.")


def visitor_uploads(owner: str, cache: Path | None = None) -> dict[str, str]:
    """The uploads ``owner`` made that are still on the server: {source: the file name they uploaded}."""
    folder = (Path(cache) if cache else cache_dir()) / "uploads"
    found = {}
    if OWNER_RE.fullmatch(owner):
        for mark in folder.glob(f"owners/*/{owner}"):
            with suppress(OSError, UnicodeDecodeError):
                if re.fullmatch(r"[0-9a-f]{64}", mark.parent.name) and (folder / mark.parent.name).is_file():
                    found[f"{UPLOAD_PREFIX}{mark.parent.name}"] = mark.read_text(encoding="utf-8")[:60]
    return found


def upload_kept(source: str, cache: Path | None = None) -> bool:
    """Whether the upload is still on the server (without counting this as a use)."""
    m = UPLOAD_RE.fullmatch(source)
    return bool(m) and ((Path(cache) if cache else cache_dir()) / "uploads" / m.group(1)).is_file()


def upload_path(source: str, cache: Path | None = None) -> Path:
    m = UPLOAD_RE.fullmatch(source)
    if not m:
        raise DataError(f"{short(source, 60)} is not an upload id (upload: and 64 hex digits).")
    path = (Path(cache) if cache else cache_dir()) / "uploads" / m.group(1)
    if not path.is_file():
        raise DataError("This uploaded dataset is no longer on the server (its place went to newer uploads); "
                        "upload it again.")
    try:
        os.utime(path)  # recently used
    except OSError:
        pass
    return path


def discard_upload(source: str, cache: Path | None = None, owner: str = "") -> None:
    """Forget an upload that could not be loaded: its archive and anything cached from it; if another
    visitor uploaded the same archive (and may be using it), only ``owner``'s mark."""
    if m := UPLOAD_RE.fullmatch(source):
        cache = Path(cache) if cache else cache_dir()
        if _owned_by(cache / "uploads", m.group(1), owner):
            _drop_upload(cache, m.group(1))
        elif OWNER_RE.fullmatch(owner):
            (cache / "uploads" / "owners" / m.group(1) / owner).unlink(missing_ok=True)


def _make_room(cache: Path, keep: int, current: str, owner: str) -> bool:
    """At most ``keep`` uploads besides nothing: the uploader's own older ones go first, then other
    visitors' not used for IN_USE_S, least recently used first. Another visitor's upload in use is
    never dropped for a newcomer (one visitor uploading again and again would take every other
    visitor's data away); False when ``current`` cannot fit without that. Without an owner (local
    mode, one user) every upload is the uploader's own."""
    folder = cache / "uploads"
    stored = [p for p in folder.iterdir() if p.name != current and re.fullmatch(r"[0-9a-f]{64}", p.name)]
    excess = len(stored) + 1 - keep
    if excess <= 0:
        return True

    def own(p: Path) -> bool:
        return _owned_by(folder, p.name, owner)

    idle_since = time.time() - IN_USE_S
    droppable = sorted((p for p in stored if own(p) or p.stat().st_mtime < idle_since),
                       key=lambda p: (not own(p), p.stat().st_mtime))
    if len(droppable) < excess:
        return False
    for p in droppable[:excess]:
        _drop_upload(cache, p.name)
    return True


def _owned_by(folder: Path, digest: str, owner: str) -> bool:
    """No visitor but ``owner`` uploaded this archive (an upload with no marks is nobody's); without an
    owner (local mode) every upload is the uploader's own."""
    marks = folder / "owners" / digest
    return not owner or (marks.is_dir() and {m.name for m in marks.iterdir()} == {owner})


def _drop_upload(cache: Path, digest: str) -> None:
    (cache / "uploads" / digest).unlink(missing_ok=True)
    shutil.rmtree(cache / "uploads" / "owners" / digest, ignore_errors=True)
    with suppress(OSError):  # the last one: no empty folder left behind
        (cache / "uploads" / "owners").rmdir()
    shutil.rmtree(cache / "arrays" / f"upload-{digest[:16]}", ignore_errors=True)  # mapped copies live on
