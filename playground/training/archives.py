"""Unpacking a dataset archive by hand: regular files and folders only, under caps.

tarfile's and zipfile's own extractors trust member names, links and sizes; a dataset archive
comes from a stranger (an upload, a link in a README), so each member is checked before a byte
is written: no absolute path, no ``..``, no link or device, names UTF-8 without control
characters, at most MAX_DEPTH folders deep, and the member count and unpacked bytes under the
caller's caps, counted while reading (a header that lies about its size is caught too). A zip's
entries are counted before zipfile reads its directory into memory.
Refusals are ArchiveRefused with one line naming the archive and the member; a target the
server cannot write (a full or read-only disk) is ArchiveUnwritable, which blames the server.
"""
from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import re
import stat
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from contextlib import contextmanager, suppress
from pathlib import Path

from ..faults import cause_of_os_error
from ..specs.serde import short

MAX_NAME_BYTES = 255  # one file or folder name
MAX_DEPTH = 16  # folders in an archive member's path
_MB = 1_000_000


class ArchiveRefused(Exception):
    """An archive this module will not unpack; the message is one line for the user."""


class ArchiveUnwritable(ArchiveRefused):
    """The archive may be fine but the server cannot write what it holds (a full, read-only or
    failing disk); the message names the target folder and the cause in one line."""


# What writing under the target raises when the disk, not the archive, is at fault. Others (EEXIST,
# ENOTDIR, EISDIR: a file and a folder of one name) come from the archive and say it is damaged.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextmanager
def _writing(target: Path, shown: str):
    """Writes under ``target``: a disk fault becomes ArchiveUnwritable."""
    try:
        yield
    except OSError as e:
        if e.errno not in _DISK_ERRNOS:
            raise
        raise ArchiveUnwritable(f"The server could not unpack {shown}: "
                                f"{cause_of_os_error(e, target, 'the unpack folder')}.") from None


def archive_kind(head: bytes) -> str | None:
    """The archive format its first 512 bytes show, or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def unpack(archive: Path, target: Path, shown: str, max_files: int, max_bytes: int) -> None:
    """Every member of ``archive`` under ``target``, or ArchiveRefused (ArchiveUnwritable when the
    disk refuses the writes; nothing is cleaned up here: the caller owns ``target`` and removes it)."""
    try:
        with open(archive, "rb") as raw:
            kind = archive_kind(raw.read(512))
            raw.seek(0)
            if kind == "zip":
                _unpack_zip(raw, target, shown, max_files, max_bytes)
            else:
                _unpack_tar(raw, kind, target, shown, max_files, max_bytes)
    except ArchiveRefused:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
            lzma.LZMAError, ValueError, RuntimeError, NotImplementedError) as e:
        detail = str(e).replace(str(target), "").replace(str(archive), "").strip(" :'\"") or type(e).__name__
        raise ArchiveRefused(f"Cannot unpack {shown}: it is damaged or not a .zip, .tar, .tar.gz, .tar.bz2 or "
                             f".tar.xz archive ({short(detail, 100)[1:-1]}).") from None


class _Budget:
    """Counts an archive's members and unpacked bytes against the caps."""

    def __init__(self, shown: str, max_files: int, max_bytes: int):
        self.shown, self.max_files, self.max_bytes = shown, max_files, max_bytes
        self.files = self.bytes = 0

    def member(self, size: int = 0) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ArchiveRefused(f"Cannot unpack {self.shown}: it holds more than {self.max_files:,} files and folders "
                                 f"(PLAYGROUND_MAX_ARCHIVE_FILES).")
        self.add(size)

    def add(self, size: int) -> None:
        self.bytes += max(0, size)
        if self.bytes > self.max_bytes:
            raise ArchiveRefused(f"Cannot unpack {self.shown}: it unpacks to more than {self.max_bytes // _MB:,} MB "
                                 f"(PLAYGROUND_MAX_UNPACKED_MB).")


def _member_parts(name: str, shown: str) -> list[str]:
    """The path components of an archive member, or ArchiveRefused for a name that is absolute, climbs
    out (..), is not UTF-8, holds control characters, line separators or bidi overrides, or is absurdly
    long or deep."""
    def bad(why: str) -> ArchiveRefused:
        return ArchiveRefused(f"Cannot unpack {shown}: the member {short(name, 60)} {why}.")

    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise bad("has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise bad("points outside the archive (..)")
    if len(parts) > MAX_DEPTH:
        raise bad(f"is deeper than {MAX_DEPTH} folders")
    for part in parts:
        if (why := name_problem(part)) is not None:
            raise bad(why)
    return parts


# Characters that reorder or break what a page shows. Not the whole of serde.hidden_char: a file name in Persian
# needs U+200C (ZWNJ), an emoji U+200D (ZWJ), and names newer than this Python's Unicode data are "unassigned".
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")


def name_problem(name: str) -> str | None:
    """Why a file or folder name is refused, or None."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if bad := next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI_CONTROLS), None):
        return f"holds the hidden character U+{ord(bad):04X}"  # class names are shown on the pages
    if len(encoded) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def _make_dir(path: Path, target: Path, shown: str) -> None:
    with _writing(target, shown):
        path.mkdir(parents=True, exist_ok=True)


def _write_member(src, dest: Path, budget: _Budget, target: Path, shown: str) -> None:
    """``src`` (read from the archive: its errors say it is damaged) into ``dest`` (written under
    ``target``: a disk fault is ArchiveUnwritable)."""
    with _writing(target, shown):
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = open(dest, "wb")
    try:
        while chunk := src.read(256 * 1024):
            budget.add(len(chunk))
            with _writing(target, shown):
                out.write(chunk)
        with _writing(target, shown):
            out.close()  # flushes the last buffered bytes
    finally:
        with suppress(OSError):  # already failing: the first error is the one to report
            out.close()


def _unpack_zip(raw, target: Path, shown: str, max_files: int, max_bytes: int) -> None:
    _count_zip_entries(raw, _Budget(shown, max_files, max_bytes))
    with zipfile.ZipFile(raw) as zf:
        infos = zf.infolist()
        declared = _Budget(shown, max_files, max_bytes)
        plan = []
        for info in infos:
            declared.member(info.file_size)
            name = info.filename.replace("\\", "/")
            parts = _member_parts(name, shown)
            # Only the file-type bits say link or device: Python's writestr stores bare permission
            # bits (0o600) and Windows zips no Unix mode at all, and both hold plain files.
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveRefused(f"Cannot unpack {shown}: the member {short(info.filename, 60)} is a link or a "
                                     f"device, not a file or folder.")
            if parts:
                plan.append((info, parts, name.endswith("/") or kind == stat.S_IFDIR))
        written = _Budget(shown, max_files, max_bytes)
        for info, parts, is_dir in plan:
            if is_dir:
                _make_dir(target.joinpath(*parts), target, shown)
                continue
            with zf.open(info) as src:
                _write_member(src, target.joinpath(*parts), written, target, shown)


def _count_zip_entries(raw, budget: _Budget) -> None:
    """Count a zip's entries against ``budget`` before zipfile.ZipFile reads its central directory:
    ZipFile builds a ZipInfo for every entry first, so a 31 MB upload of 400,000 empty entries
    costs some 190 MB before any cap applies. The total in the end record can lie, so the entry
    headers are walked instead, 46 bytes read each, over the very bytes ZipFile will parse (its
    own _EndRecData finds them). A damaged directory ends the walk; ZipFile then says what is wrong."""
    try:
        end = zipfile._EndRecData(raw)
    except OSError:  # shorter than an end record
        end = None
    if not end:
        raise zipfile.BadZipFile("File is not a zip file")
    size = end[zipfile._ECD_SIZE]
    start = end[zipfile._ECD_LOCATION] - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    raw.seek(max(start, 0))  # before the file start: ZipFile refuses the offset
    walked = 0
    while walked < size:
        head = raw.read(zipfile.sizeCentralDir)
        if len(head) < zipfile.sizeCentralDir or head[:4] != zipfile.stringCentralDir:
            break
        budget.member()
        skip = sum(struct.unpack_from("<3H", head, 28))  # name, extra field and comment lengths
        raw.seek(skip, 1)
        walked += zipfile.sizeCentralDir + skip
    raw.seek(0)


def _unpack_tar(raw, kind: str | None, target: Path, shown: str, max_files: int, max_bytes: int) -> None:
    # gzip.open, bz2.open and lzma.open all take a binary file object (the classes differ in how)
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind)
    stream = opener(raw, "rb") if opener else raw
    # headers and padding add at most 1.5 KiB a member; a longer read than 1 MiB is a bogus header
    bounded = _Forward(stream, max_bytes + max_files * 1536 + _MB, _MB, shown, max_bytes // _MB)
    budget = _Budget(shown, max_files, max_bytes)
    with tarfile.open(fileobj=bounded, mode="r:") as tar:
        while (m := tar.next()) is not None:
            tar.members.clear()  # keep no list of what was unpacked
            budget.member(m.size)
            parts = _member_parts(m.name, shown)
            if not (m.isreg() or m.isdir()):
                raise ArchiveRefused(f"Cannot unpack {shown}: the member {short(m.name, 60)} is a link or a device, "
                                     f"not a file or folder.")
            if not parts:
                continue
            if m.isdir():
                _make_dir(target.joinpath(*parts), target, shown)
            else:
                _write_member(tar.extractfile(m), target.joinpath(*parts), _Budget(shown, 1, m.size), target, shown)


class _Forward:
    """A read-only stream for tarfile over a decompressor: reads forward only (a step back within
    the last 4 KiB is replayed), counts every byte against ``budget`` and refuses one read over
    ``max_read``, so a header that claims gigabytes is never read into memory."""

    def __init__(self, f, budget: int, max_read: int, shown: str, max_mb: int):
        self.f, self.budget, self.max_read, self.shown, self.max_mb = f, budget, max_read, shown, max_mb
        self.pos = self.done = 0  # our position; how far the underlying stream was read
        self.tail = b""  # the last bytes read from it, ending at self.done

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        pos = pos + self.pos if whence == 1 else pos
        if whence == 2 or pos < self.done - len(self.tail):
            raise tarfile.ReadError("the archive cannot be read in one pass")
        self.pos = pos
        return pos

    def _pull(self, n: int) -> bytes:
        if self.done + n > self.budget:
            raise ArchiveRefused(f"Cannot unpack {self.shown}: it unpacks to more than "
                                 f"{self.max_mb:,} MB (PLAYGROUND_MAX_UNPACKED_MB).")
        data = self.f.read(n)
        self.done += len(data)
        self.tail = (self.tail + data)[-4096:]
        return data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.max_read:
            raise ArchiveRefused(f"Cannot unpack {self.shown}: a tar header claims {n:,} bytes; it is damaged.")
        out = b""
        if self.pos < self.done:
            start = len(self.tail) - (self.done - self.pos)
            out = self.tail[start:start + n]
            self.pos += len(out)
            n -= len(out)
        while self.pos > self.done:  # skip forward
            if not self._pull(min(self.pos - self.done, 256 * 1024)):
                return out
        if n > 0:
            data = self._pull(n)
            self.pos += len(data)
            out += data
        return out
