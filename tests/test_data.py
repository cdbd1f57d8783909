import json
import time

import numpy as np
import pytest

from playground.training.data import NotCached, load_dataset
from playground.training.decoding import load_in_subprocess
from playground.training.sources import DataError, cache_dir, resolve_source
from tests.conftest import SHARED_TARBALL, make_image_folder


def test_image_folder_loads_as_uint8_and_is_cached(image_folder):
    ds = load_dataset(str(image_folder))
    assert ds.x_train.shape == (120, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (40, 32, 32, 3) and ds.y_test.dtype == np.int64
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    assert all(0 < m < 1 for m in ds.mean) and all(0 < s < 1 for s in ds.std)
    t0 = time.perf_counter()
    again = load_dataset(str(image_folder))
    assert time.perf_counter() - t0 < 1.0
    assert np.array_equal(again.x_train, ds.x_train) and again.classes == ds.classes


def test_the_server_maps_training_images_and_a_child_decodes_them(tmp_path):
    """The web server never decodes nor holds the training set: a child process decodes it into
    the cache, the server maps the training images from disk, with the statistics from the cache."""
    folder = make_image_folder(tmp_path / "d", n_train=3, n_test=1)
    with pytest.raises(NotCached):
        load_dataset(str(folder), decode=False)
    served = load_in_subprocess(str(folder))
    assert isinstance(served.x_train, np.memmap) and not served.x_train.flags.writeable
    assert not isinstance(served.x_test, np.memmap)
    full = load_dataset(str(folder))
    assert np.array_equal(full.x_train, served.x_train) and full.mean == served.mean and full.std == served.std
    meta = next((cache_dir() / "arrays").glob("*/meta.json"))  # a cache written before the statistics were kept
    legacy = {k: v for k, v in json.loads(meta.read_text()).items() if k not in ("mean", "std")}
    meta.write_text(json.dumps(legacy))
    assert load_dataset(str(folder), mmap_train=True).mean == full.mean and "mean" in meta.read_text()


def test_parent_folder_and_tarball_are_accepted(tmp_path):
    import tarfile
    make_image_folder(tmp_path / "outer" / "mydata", n_train=2, n_test=1)
    assert load_dataset(str(tmp_path / "outer")).x_train.shape[0] == 20
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "outer" / "mydata", arcname="mydata")
    assert load_dataset(str(archive)).x_test.shape[0] == 10


def test_env_var_chooses_source(monkeypatch, image_folder):
    monkeypatch.setenv("PLAYGROUND_DATA", str(image_folder))
    assert resolve_source(None) == str(image_folder)
    assert resolve_source("cifar100") == "cifar100"
    assert load_dataset().x_train.shape[0] == 120


def test_missing_and_unreadable_sources_explain_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data PATH or PLAYGROUND_DATA"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No train/ and test/ folders"):
        load_dataset(str(tmp_path / "empty"))
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="Cannot unpack"):
        load_dataset(str(bad))


def test_download_failure_is_a_clear_message(monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataError, match="Could not download cifar10.*--data PATH"):
        load_dataset("cifar10")


def test_corrupt_image_is_skipped_and_reported(tmp_path):
    root = make_image_folder(tmp_path / "d", n_train=2, n_test=1)
    (root / "train" / "cat" / "9999.png").write_bytes(b"garbage")
    ds = load_dataset(str(root))
    assert ds.x_train.shape[0] == 20
    assert [p.endswith("9999.png") for p in ds.skipped] == [True]


@pytest.mark.skipif(not SHARED_TARBALL.exists(), reason="shared CIFAR-10 dev tarball not present")
def test_shared_dev_tarball_loads(monkeypatch):
    monkeypatch.delenv("PLAYGROUND_CACHE")  # reuse the user cache: decoding 50k JPEGs takes ~30 s
    ds = load_dataset(str(SHARED_TARBALL))
    assert ds.x_train.shape == (45000, 32, 32, 3) and ds.x_test.shape == (5000, 32, 32, 3)
    assert np.bincount(ds.y_test).tolist() == [500] * 10


@pytest.mark.parametrize("command", [
    ["train", "--preset", "seed-004", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet"],
    ["data"],
])
def test_the_cli_names_the_files_it_skipped_and_why(tmp_path, capsys, command):
    """A corrupt image, a zero-byte file and a text file named .jpg are skipped; the command says so in one
    line, with or without --quiet."""
    from playground.cli import main

    root = make_image_folder(tmp_path / "d", n_train=2, n_test=1)
    (root / "train" / "cat" / "9999.png").write_bytes(b"garbage")
    (root / "train" / "dog" / "empty.png").write_bytes(b"")
    (root / "test" / "cat" / "notes.jpg").write_text("not an image")
    assert main([*command, "--data", str(root), "--runs", str(tmp_path / "runs")] if command[0] == "train"
                else [*command, "--data", str(root)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: 3 files skipped (")
    assert "9999.png" in warnings[0]
