"""Data and report writes under disk faults: an upload kept, an archive unpacked, the decoded
cache and the curves report each answer a full or read-only disk in one line naming the folder
or file and the cause, blame the server (not the visitor's archive) and leave nothing half-written.

Disks are simulated where each module meets the system (``open``, ``Path.write_bytes``,
``np.save``, ``Path.write_text`` raising what a full or read-only disk raises).
"""
import errno
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

import playground.training.archives as archives_mod
import playground.training.data as data_mod
import playground.training.sources as sources_mod
from playground import cli
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from playground.training.sources import DataError, store_upload
from tests.conftest import make_image_folder
from tests.test_store_faults import failing_open, one_line


def disk_error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), *([filename] if filename else []))


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def tiny_tarball(tmp_path_factory) -> Path:
    root = make_image_folder(tmp_path_factory.mktemp("tiny") / "ds", n_train=2, n_test=1)
    out = root.parent / "ds.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root / "train", "train")
        tar.add(root / "test", "test")
    return out


# -- 1. an upload kept on a full or read-only disk --------------------------------------------------

def test_an_upload_on_a_full_disk_is_one_line_naming_the_uploads_folder_and_leaves_nothing(tmp_path, monkeypatch,
                                                                                         tiny_tarball):
    def half_then_full(self, data):
        with open(self, "wb") as f:
            f.write(data[:10])
        raise disk_error(errno.ENOSPC)

    monkeypatch.setattr(sources_mod.Path, "write_bytes", half_then_full)
    with pytest.raises(DataError) as e:
        store_upload(tiny_tarball.read_bytes(), tmp_path / "cache")
    assert one_line(e.value)
    assert "the disk is full" in str(e.value) and str(tmp_path / "cache" / "uploads") in str(e.value)
    assert leftovers(tmp_path / "cache" / "uploads") == []


def test_an_upload_on_a_read_only_disk_is_one_line(tmp_path, monkeypatch, tiny_tarball):
    def read_only(self, *args, **kwargs):
        raise disk_error(errno.EROFS, str(self))

    monkeypatch.setattr(sources_mod.Path, "mkdir", read_only)
    with pytest.raises(DataError) as e:
        store_upload(tiny_tarball.read_bytes(), tmp_path / "cache")
    assert one_line(e.value) and "uploads" in str(e.value) and "is read-only" in str(e.value)


def test_an_upload_already_kept_is_served_from_a_read_only_disk(tmp_path, monkeypatch, tiny_tarball):
    data = tiny_tarball.read_bytes()
    source = store_upload(data, tmp_path / "cache")
    monkeypatch.setattr(sources_mod.os, "utime", lambda *a, **k: (_ for _ in ()).throw(disk_error(errno.EROFS)))
    assert store_upload(data, tmp_path / "cache") == source


# -- 2. unpacking an archive onto a full or read-only disk ----------------------------------------------

@pytest.mark.parametrize("fault, expected", [("enospc", "the disk is full"), ("erofs", "is read-only")])
def test_a_full_disk_while_unpacking_blames_the_server_not_the_archive(tmp_path, monkeypatch, tiny_tarball,
                                                                      fault, expected):
    cache = tmp_path / "cache"
    write = failing_open(fault)  # where members are written; the archive itself is still read

    def fake(path, mode="r", *args, **kwargs):
        return write(path, mode, *args, **kwargs) if "w" in mode else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(archives_mod, "open", fake, raising=False)
    with pytest.raises(DataError) as e:
        load_dataset(str(tiny_tarball), cache)
    message = str(e.value)
    assert one_line(e.value)
    assert message.startswith("The server could not unpack") and expected in message
    assert str(cache / "unpack") in message
    assert "damaged" not in message and "not a .zip" not in message
    assert leftovers(cache / "unpack") == [] and leftovers(cache / "arrays") == []


def test_a_file_and_a_folder_of_one_name_still_say_the_archive_is_damaged(tmp_path):
    archive = tmp_path / "clash.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("train/a", "train/a/x.png"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(archives_mod.ArchiveRefused) as e:
        archives_mod.unpack(archive, tmp_path / "t", "the archive", 100, 10**6)
    assert not isinstance(e.value, archives_mod.ArchiveUnwritable) and "damaged" in str(e.value)


# -- 3. the decoded data cache on a full or read-only disk ----------------------------------------------

@pytest.mark.parametrize("code, expected", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "is read-only")])
def test_writing_the_data_cache_on_a_full_disk_is_one_line_naming_the_cache_and_leaves_nothing(
        tmp_path, monkeypatch, image_folder, code, expected):
    cache = tmp_path / "cache"

    def half_then_fail(path, arr, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY")
        raise disk_error(code)

    monkeypatch.setattr(data_mod.np, "save", half_then_fail)
    with pytest.raises(DataError) as e:
        load_dataset(str(image_folder), cache)
    assert one_line(e.value) and expected in str(e.value) and str(cache / "arrays") in str(e.value)
    assert leftovers(cache / "arrays") == []
    monkeypatch.undo()  # the disk has room again: the next load writes the cache
    assert load_dataset(str(image_folder), cache).x_train.dtype == np.uint8


# -- 4. the curves report on a full disk -----------------------------------------------------------------

def test_the_curves_report_on_a_full_disk_keeps_the_previous_one_and_names_the_file(tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path / "runs")
    run_id = store.create("tiny", {"train": {"epochs": 1}}, params=1000)
    store.add_epoch(run_id, dict(epoch=1, train_loss=1.0, train_acc=.5, test_loss=1.0, test_acc=.5, elapsed=1.0))
    store.finish(run_id, "finished")
    out = tmp_path / "reports" / "curves.html"
    out.parent.mkdir()
    out.write_text("PREVIOUS GOOD REPORT")

    def half_then_full(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:100])
        raise disk_error(errno.ENOSPC)

    monkeypatch.setattr(Path, "write_text", half_then_full)
    rc = cli.main(["curves", run_id, "--runs", str(tmp_path / "runs"), "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("error:") and str(out) in err and "the disk is full" in err
    assert out.read_text() == "PREVIOUS GOOD REPORT"
    assert [p.name for p in out.parent.iterdir()] == ["curves.html"]
