"""Crafted archives (issue 16): members outside their folder, links, devices, bombs, every accepted
format and zip flavour; each is one line (DataError) or loads, and nothing is written outside its folder."""
from __future__ import annotations

import io
import stat
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from playground.training import data as data_mod
from playground.training.data import load_dataset
from playground.training.sources import DataError, cache_dir

from .test_data_sources import folder, leftovers, one_line, tar_gz, zip_of


# --- archives --------------------------------------------------------------------------------

def _outside_cases(tmp_path: Path):
    evil = tmp_path / "evil.txt"
    return evil, {
        "tar-dotdot": lambda p: tar_gz(p.with_suffix(".tar.gz"), folder(tmp_path / "src"),
                                       [("mydata/../../../../../../" + str(evil).lstrip("/"), b"x", {})]),
        "tar-absolute": lambda p: tar_gz(p.with_suffix(".tar.gz"), folder(tmp_path / "src"), [(str(evil), b"x", {})]),
        "zip-dotdot": lambda p: zip_of(p.with_suffix(".zip"), folder(tmp_path / "src"),
                                       [("../../../../../../" + str(evil).lstrip("/"), b"x")]),
        "zip-absolute": lambda p: zip_of(p.with_suffix(".zip"), folder(tmp_path / "src"), [(str(evil), b"x")]),
    }


@pytest.mark.parametrize("case", ["tar-dotdot", "tar-absolute", "zip-dotdot", "zip-absolute"])
def test_an_archive_member_outside_its_folder_is_refused_and_nothing_is_written(tmp_path, case):
    evil, cases = _outside_cases(tmp_path)
    archive = cases[case](tmp_path / "bad")
    with pytest.raises(DataError) as e:
        load_dataset(str(archive))
    assert "points outside the archive" in one_line(e) or "absolute path" in one_line(e)
    assert not evil.exists()
    assert leftovers() == []


def _dev(kind):
    return {"type": kind, "devmajor": 1, "devminor": 3}


@pytest.mark.parametrize("name,attrs", [
    ("mydata/train/a/link.png", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
    ("mydata/train/a/up", {"type": tarfile.SYMTYPE, "linkname": "../../../../.."}),
    ("mydata/train/a/hard.png", {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}),
    ("mydata/train/a/null.png", _dev(tarfile.CHRTYPE)),
    ("mydata/train/a/disk.png", _dev(tarfile.BLKTYPE)),
    ("mydata/train/a/pipe.png", {"type": tarfile.FIFOTYPE}),
])
def test_links_and_devices_in_a_tarball_are_refused(tmp_path, name, attrs):
    archive = tar_gz(tmp_path / "bad.tar.gz", folder(tmp_path / "src"), [(name, b"", attrs)])
    with pytest.raises(DataError, match="is a link or a device") as e:
        load_dataset(str(archive))
    one_line(e)
    assert leftovers() == []


def test_a_symlink_in_a_zip_is_refused(tmp_path):
    info = zipfile.ZipInfo("mydata/train/a/link.png")
    info.external_attr = 0o120777 << 16  # S_IFLNK: what `zip --symlinks` writes
    archive = zip_of(tmp_path / "bad.zip", folder(tmp_path / "src"), [(info, "/etc/passwd")])
    with pytest.raises(DataError, match="is a link or a device") as e:
        load_dataset(str(archive))
    one_line(e)


@pytest.mark.parametrize("fmt", ["tar", "zip"])
@pytest.mark.parametrize("bomb", ["count", "bytes"])
def test_archive_bombs_get_one_line_naming_the_setting(tmp_path, monkeypatch, fmt, bomb):
    src = folder(tmp_path / "src", n_train=30 if bomb == "count" else 2)
    if bomb == "count":
        monkeypatch.setenv("PLAYGROUND_MAX_ARCHIVE_FILES", "40")  # the folder has 62 files and 7 folders
        extra_tar, extra_zip, setting = [], [], "PLAYGROUND_MAX_ARCHIVE_FILES"
    else:
        monkeypatch.setenv("PLAYGROUND_MAX_UNPACKED_MB", "1")
        zeros = bytes(3_000_000)  # compresses to a few kB
        extra_tar, extra_zip, setting = [("mydata/zeros.bin", zeros, {})], [("mydata/zeros.bin", zeros)], \
            "PLAYGROUND_MAX_UNPACKED_MB"
    archive = (tar_gz(tmp_path / "bomb.tar.gz", src, extra_tar) if fmt == "tar"
               else zip_of(tmp_path / "bomb.zip", src, extra_zip))
    assert archive.stat().st_size < 100_000 or bomb == "count"  # far under the 1 MB it unpacks past
    with pytest.raises(DataError, match=setting) as e:
        load_dataset(str(archive))
    one_line(e)
    assert leftovers() == []


def test_a_tar_header_that_claims_hundreds_of_megabytes_is_not_read_into_memory(tmp_path):
    """A GNU long-name header's data is read in one piece by tarfile: 200 MB of zeros gzip to
    200 kB. The reader refuses the read instead of allocating it."""
    size = 200 * 2 ** 20
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, size
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip container
    parts = [comp.compress(header.tobuf(tarfile.GNU_FORMAT))]
    chunk = bytes(2 ** 20)
    parts += [comp.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(comp.flush())
    archive = tmp_path / "longname.tar.gz"
    archive.write_bytes(b"".join(parts))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            load_dataset(str(archive))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line(e)
    assert peak < 32 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB allocated"
    assert leftovers() == []


def test_a_good_zip_and_a_nested_tarball_load(tmp_path):
    src = folder(tmp_path / "src")
    z = load_dataset(str(zip_of(tmp_path / "d.zip", src)))
    t = load_dataset(str(tar_gz(tmp_path / "d.tar.gz", src)))
    for ds in (z, t):
        assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3) and ds.classes == ["a", "b"]
    assert not (cache_dir() / "unpack").exists() or not any((cache_dir() / "unpack").iterdir())  # no copy kept


def _zip_entries(src: Path, style: str) -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    """The folder ``src`` as zip entries the way other tools write them: Python's writestr (bare
    0o600 permission bits, no file type, no folder entries) or a Windows tool (create_system 0,
    only DOS attributes, folder entries; with backslashes for the older ones)."""
    if style == "writestr":
        return [("mydata/" + f.relative_to(src).as_posix(), f.read_bytes()) for f in sorted(src.rglob("*"))
                if f.is_file()]
    sep = "\\" if style == "windows-backslashes" else "/"
    entries = []
    for f in sorted(src.rglob("*")):
        name = sep.join(("mydata",) + f.relative_to(src).parts) + (sep if f.is_dir() else "")
        info = zipfile.ZipInfo(name)
        info.create_system, info.external_attr = 0, 0x10 if f.is_dir() else 0x20  # DOS directory / archive
        entries.append((info, b"" if f.is_dir() else f.read_bytes()))
    return entries


@pytest.mark.parametrize("style", ["writestr", "windows", "windows-backslashes"])
def test_zips_without_unix_file_types_load(tmp_path, style):
    archive = zip_of(tmp_path / "d.zip", None, _zip_entries(folder(tmp_path / "src"), style))
    ds = load_dataset(str(archive))
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3) and ds.classes == ["a", "b"]
    assert not any((cache_dir() / "unpack").iterdir())  # unpacked, read, removed


@pytest.mark.parametrize("kind", ["S_IFIFO", "S_IFCHR", "S_IFBLK", "S_IFSOCK"])
def test_fifos_devices_and_sockets_in_a_zip_are_refused(tmp_path, kind):
    info = zipfile.ZipInfo("mydata/train/a/odd.png")
    info.external_attr = (getattr(stat, kind) | 0o644) << 16
    archive = zip_of(tmp_path / "bad.zip", folder(tmp_path / "src"), [(info, b"")])
    with pytest.raises(DataError, match="is a link or a device") as e:
        load_dataset(str(archive))
    one_line(e)
    assert leftovers() == []


_WRITERS = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar": "w", ".tar.bz2": "w:bz2", ".tbz2": "w:bz2",
            ".tar.xz": "w:xz", ".txz": "w:xz", ".zip": None}


def test_every_accepted_suffix_has_a_writer_here():
    assert set(_WRITERS) == set(data_mod.ARCHIVE_SUFFIXES)


@pytest.mark.parametrize("suffix", sorted(_WRITERS))
def test_an_archive_with_every_accepted_suffix_loads(tmp_path, suffix):
    src, archive = folder(tmp_path / "src"), tmp_path / f"d{suffix}"
    if _WRITERS[suffix] is None:
        zip_of(archive, src)
    else:
        with tarfile.open(archive, _WRITERS[suffix]) as tar:
            tar.add(src, arcname="mydata")
    ds = load_dataset(str(archive))
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3) and ds.classes == ["a", "b"]
    assert not any((cache_dir() / "unpack").iterdir())  # unpacked, read, removed


@pytest.mark.parametrize("end_record", ["honest", "claims-one-entry"])
def test_a_zip_over_the_entry_cap_is_refused_before_its_directory_is_read(tmp_path, monkeypatch, end_record):
    """zipfile builds a ZipInfo for every entry before any cap applies (400,000 entries in a 31 MB
    upload: 188 MB); the entries are counted first, and not from the end record, which can lie."""
    monkeypatch.setenv("PLAYGROUND_MAX_ARCHIVE_FILES", "100")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(10_000):  # zipfile's directory alone: some 5 MiB
            info = zipfile.ZipInfo(f"mydata/train/a/{k}.png")
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, b"")
    blob = bytearray(buf.getvalue())
    if end_record == "claims-one-entry":
        at = blob.rfind(b"PK\x05\x06")
        blob[at + 8:at + 12] = struct.pack("<HH", 1, 1)  # entries on this disk, entries in all
    archive = tmp_path / "many.zip"
    archive.write_bytes(bytes(blob))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="more than 100 files and folders .PLAYGROUND_MAX_ARCHIVE_FILES") as e:
            load_dataset(str(archive))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line(e)
    assert peak < 2 ** 20, f"{peak / 2 ** 20:.1f} MiB allocated"
    assert leftovers() == []
