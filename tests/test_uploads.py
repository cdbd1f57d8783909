"""Uploaded datasets on a shared server (moved from test_data_sources.py): kept by content, room made
only for an archive that loads, one visitor's uploads never taking another's in use, listed for their
uploader after a reload, and what a hosted visitor is told."""
from __future__ import annotations

import hashlib
import os
import re
import time

import pytest

from playground.training import data as data_mod
from playground.training.data import load_dataset
from playground.settings import SettingError
from playground.training.sources import DataError, cache_dir, discard_upload, keep_upload, store_upload
from tests.test_data_sources import folder, leftovers, tar_gz


def test_an_upload_is_stored_by_content_and_loads(tmp_path):
    payload = tar_gz(tmp_path / "d.tar.gz", folder(tmp_path / "src")).read_bytes()
    source = store_upload(payload)
    digest = hashlib.sha256(payload).hexdigest()
    assert source == f"upload:{digest}" and (cache_dir() / "uploads" / digest).read_bytes() == payload
    assert store_upload(payload) == source
    ds = load_dataset(source)
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.source == source and ds.name == "mydata"


def test_an_upload_over_the_cap_or_not_an_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOAD_MB", "1")
    with pytest.raises(DataError, match=r"1\.2 MB; the limit is 1 MB \(PLAYGROUND_MAX_UPLOAD_MB\)"):
        store_upload(b"\x1f\x8b" + bytes(1_200_000))
    with pytest.raises(DataError, match=r"not a \.zip, \.tar, \.tar\.gz, \.tar\.bz2 or \.tar\.xz archive"):
        store_upload(b"hello")
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOAD_MB", "lots")
    with pytest.raises(SettingError, match="PLAYGROUND_MAX_UPLOAD_MB must be a whole number from 1 to "):
        store_upload(b"hello")
    assert not (cache_dir() / "uploads").exists() or leftovers() == []


def test_uploads_are_bounded_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOADS", "2")
    sources = []
    for k in range(3):
        sources.append(upload(tar_gz(tmp_path / f"d{k}.tar.gz", folder(tmp_path / f"src{k}", n_train=k + 1))
                              .read_bytes()))
        if k == 0:
            load_dataset(sources[0])
            assert any(p.name.startswith("upload-") for p in (cache_dir() / "arrays").iterdir())
            os.utime(cache_dir() / "uploads" / sources[0][7:], (1, 1))  # the least recently used
    assert stored_uploads() == sorted(s[7:] for s in sources[1:])
    assert not any(p.name.startswith(f"upload-{sources[0][7:23]}") for p in (cache_dir() / "arrays").iterdir())
    with pytest.raises(DataError, match="no longer on the server"):
        load_dataset(sources[0])


def upload(data: bytes, owner: str = "") -> str:
    """As the Home page does: kept, then (once it has loaded) given room."""
    source = store_upload(data, owner=owner)
    keep_upload(source, owner=owner)
    return source


def stored_uploads() -> list[str]:
    return sorted(p.name for p in (cache_dir() / "uploads").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))


def test_one_visitor_uploading_again_and_again_drops_only_their_own_uploads(tmp_path, monkeypatch):
    """Hosted: visitor A's upload in use survives visitor B's stream of uploads (B's own older ones
    make room, but not an archive A uploaded too); with every place held by other visitors' recent
    uploads, the next one is refused in one line and not kept; one unused for an hour may go."""
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOADS", "2")
    a, b, c = "a" * 32, "b" * 32, "c" * 32

    archives = [tar_gz(tmp_path / f"d{k}.tar.gz", folder(tmp_path / f"src{k}", n_train=k + 1)).read_bytes()
                for k in range(5)]
    archive = archives.__getitem__

    mine = upload(archive(0), owner=a)
    theirs = [upload(archive(k), owner=b) for k in (1, 2, 3)]
    assert stored_uploads() == sorted([mine[7:], theirs[-1][7:]])
    assert upload(archive(0), owner=b) == mine  # the same archive: now A's and B's
    assert stored_uploads() == sorted([mine[7:], theirs[-1][7:]])  # room made by B's own older one only
    latest = upload(archive(4), owner=b)  # B's own older one goes, not the archive A uploaded too
    assert stored_uploads() == sorted([mine[7:], latest[7:]])
    refused = hashlib.sha256(archive(3)).hexdigest()
    with pytest.raises(DataError, match=r"keeps 2 uploaded datasets \(PLAYGROUND_MAX_UPLOADS\) and other "
                                        r"visitors have used each of them in the last 60 minutes"):
        upload(archive(3), owner=c)
    assert sorted(os.listdir(cache_dir() / "uploads" / "owners")) == sorted([mine[7:], latest[7:]])
    assert refused not in stored_uploads() and not (cache_dir() / "uploads" / "owners" / refused).exists()
    assert load_dataset(mine).x_train.shape[0] == 2
    hour_ago = time.time() - 3700
    os.utime(cache_dir() / "uploads" / latest[7:], (hour_ago, hour_ago))  # B left an hour ago
    assert upload(archive(3), owner=c)[7:] == refused
    assert stored_uploads() == sorted([mine[7:], refused])
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOADS", "1")  # the cap lowered: what is kept and in use stays
    assert upload(archive(0), owner=a) == mine and stored_uploads() == sorted([mine[7:], refused])


def test_a_refused_archive_costs_its_uploader_nothing(tmp_path, monkeypatch):
    """Room is made only once an archive has loaded: a bad second upload left the visitor's first one
    dropped (its place given to an archive that was then refused), and their next training failed."""
    monkeypatch.setenv("PLAYGROUND_MAX_UPLOADS", "1")
    good = upload(tar_gz(tmp_path / "good.tar.gz", folder(tmp_path / "src")).read_bytes(), owner="a" * 32)
    bad = store_upload(tar_gz(tmp_path / "bad.tar.gz", extra=[("../evil", b"x", {})]).read_bytes(), owner="a" * 32)
    with pytest.raises(DataError, match="outside the archive"):
        load_dataset(bad)
    discard_upload(bad)
    assert stored_uploads() == [good[7:]] and load_dataset(good).x_train.shape[0] == 4


def test_an_uploads_test_split_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "UPLOAD_MAX_TEST_IMAGES", 1)
    source = store_upload(tar_gz(tmp_path / "d.tar.gz", folder(tmp_path / "src")).read_bytes())
    with pytest.raises(DataError, match="test/ holds 2 images; the limit for an upload is 1"):
        load_dataset(source)


def test_a_hosted_visitor_is_told_what_they_can_do_not_the_command_line(tmp_path, monkeypatch):
    """An empty upload said "Point the playground at a local copy with --data PATH ...", which a
    visitor of the hosted demo cannot do."""
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    source = store_upload(tar_gz(tmp_path / "empty.tar.gz", extra=[("readme.txt", b"hi", {})]).read_bytes())
    with pytest.raises(DataError) as caught:
        load_dataset(source)
    assert "No train/ and test/ folders found" in str(caught.value) and "--data" not in str(caught.value)
    assert str(caught.value).endswith("Upload a .tar.gz or .zip of train/<class>/*.png and test/<class>/*.png "
                                      "(ImageFolder layout), or choose one of the listed datasets.")


def test_a_visitors_uploads_are_listed_for_them_after_a_reload(tmp_path, monkeypatch):
    """A reload starts a new session: the Home page listed none of the visitor's uploads still on the
    server. They follow the visitor's cookie (its hash), with the file name they uploaded."""
    from playground.training.sources import visitor_uploads

    monkeypatch.setenv("PLAYGROUND_MAX_UPLOADS", "1")
    a, b = "a" * 32, "b" * 32
    first = store_upload(tar_gz(tmp_path / "1.tar.gz", folder(tmp_path / "s1")).read_bytes(), owner=a,
                         name="cats\x1b[31m.tar.gz")
    keep_upload(first, owner=a)
    assert visitor_uploads(a) == {first: "cats[31m.tar.gz"} and visitor_uploads(b) == {}
    assert visitor_uploads("../" + a[3:]) == {} and visitor_uploads("*") == {}
    second = upload(tar_gz(tmp_path / "2.tar.gz", folder(tmp_path / "s2", n_train=3)).read_bytes(), owner=a)
    assert visitor_uploads(a) == {second: ""}  # the first made room for it


def test_discarding_an_upload_keeps_it_for_another_visitor_who_uploaded_it_too(tmp_path):
    """A load that failed for B (the decoder busy with other visitors for minutes) discarded the archive
    that A had uploaded too, and was using."""
    from playground.training.sources import visitor_uploads

    data = tar_gz(tmp_path / "d.tar.gz", folder(tmp_path / "src")).read_bytes()
    source = upload(data, owner="a" * 32)
    assert store_upload(data, owner="b" * 32) == source
    discard_upload(source, owner="b" * 32)
    assert stored_uploads() == [source[7:]] and visitor_uploads("b" * 32) == {} and visitor_uploads("a" * 32)
    discard_upload(source, owner="a" * 32)  # nobody else has it: it goes
    assert stored_uploads() == []
