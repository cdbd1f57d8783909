"""Data sources are untrusted (issue 16): crafted archives, images, layouts and uploads get one
line (DataError) or are skipped and counted, never write outside their folder, and leave nothing
half-written in the cache. Everything is made in tmp dirs; nothing needs the network."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground import cli_child
from playground.training import data as data_mod
from playground.training.data import load_dataset
from playground.training.sources import DataError, SourceRefused, cache_dir, check_source
from playground.specs.serde import short

_RNG = np.random.default_rng(0)


def png_bytes(w: int = 32, h: int = 32, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    Image.fromarray(_RNG.integers(0, 255, shape, dtype=np.uint8), mode if channels else "L").save(buf, "PNG")
    return buf.getvalue()


TINY = png_bytes()


def folder(root: Path, classes=("a", "b"), n_train: int = 2, n_test: int = 1) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                (root / split / c / f"{k}.png").write_bytes(TINY)
    return root


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


def tar_gz(path: Path, src: Path | None = None, extra=()) -> Path:
    """A .tar.gz of ``src`` (as mydata/...) followed by crafted members ``extra``: (name, data, attrs)."""
    with tarfile.open(path, "w:gz") as tar:
        if src is not None:
            tar.add(src, arcname="mydata")
        for name, data, attrs in extra:
            add_bytes(tar, name, data, **attrs)
    return path


def zip_of(path: Path, src: Path | None = None, extra=()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if src is not None:
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    zf.write(f, "mydata/" + f.relative_to(src).as_posix())
        for info, data in extra:
            zf.writestr(info, data)
    return path


def leftovers() -> list[str]:
    """Files in the cache (a rejected or interrupted load must leave none)."""
    return sorted(str(p.relative_to(cache_dir())) for p in cache_dir().rglob("*") if not p.is_dir())


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# --- images ----------------------------------------------------------------------------------

def crafted_png(w: int, h: int) -> bytes:
    """A PNG header that claims w x h pixels (a few dozen bytes)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_decompression_bomb_png_is_skipped_and_counted(tmp_path):
    root = folder(tmp_path / "d")
    (root / "train" / "a" / "bomb.png").write_bytes(crafted_png(100_000, 100_000))
    ds = load_dataset(str(root))
    assert ds.x_train.shape == (4, 32, 32, 3)
    assert ds.skipped == ["train/a/bomb.png"] and "bomb" in ds.skipped_why[0]
    assert ds.skipped_note().startswith("1 file skipped (train/a/bomb.png")


def test_images_over_the_hosted_pixel_cap_are_skipped_unread(tmp_path, monkeypatch):
    root = folder(tmp_path / "d")
    big = Image.new("RGB", (1100, 1100), (200, 10, 10))
    big.save(root / "train" / "a" / "big.png")
    assert len(load_dataset(str(root)).y_train) == 5  # local mode: resized to 32 x 32
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "hosted-cache"))
    ds = load_dataset(str(root))
    assert len(ds.y_train) == 4 and "over the limit of 1,048,576 pixels" in ds.skipped_why[0]


def test_damaged_odd_and_foreign_files_are_skipped_or_converted(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", lambda self: opened.append(1))
    root = folder(tmp_path / "d")
    a = root / "train" / "a"
    (a / "truncated.png").write_bytes(png_bytes(64, 64)[:300])
    (a / "text.jpg").write_bytes(b"just some text, not an image")
    (a / "ghost.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n")  # PIL would run Ghostscript
    (a / "gray.png").write_bytes(png_bytes(40, 40, "L"))
    (a / "rgba.png").write_bytes(png_bytes(64, 48, "RGBA"))
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(a / "deep.png")  # 16-bit
    Image.new("P", (32, 32), 3).save(a / "palette.gif")
    for ext in ("jpg", "bmp", "tif", "webp"):
        Image.new("RGB", (50, 40), (10, 200, 30)).save(a / f"photo.{ext}")
    ds = load_dataset(str(root))
    assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert sorted(ds.skipped) == ["train/a/ghost.png", "train/a/text.jpg", "train/a/truncated.png"]
    assert not opened, "a format outside PNG/JPEG/BMP/WebP/GIF/TIFF was tried"
    assert "3 files skipped" in ds.skipped_note()


def test_a_class_whose_images_all_fail_is_refused(tmp_path):
    root = folder(tmp_path / "d")
    for f in (root / "train" / "b").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the images in train/b/ could be decoded") as e:
        load_dataset(str(root))
    one_line(e)


# --- layout ----------------------------------------------------------------------------------

def _layout_case(root: Path, case: str) -> None:
    folder(root)
    if case == "train-only":
        import shutil
        shutil.rmtree(root / "test")
    elif case == "empty-class":
        for f in (root / "test" / "b").iterdir():
            f.unlink()
    elif case == "classes-differ":
        (root / "test" / "b").rename(root / "test" / "c")
    elif case == "non-utf8-file":
        with open(os.path.join(os.fsencode(root / "train" / "a"), b"\xff\xfe.png"), "wb") as f:
            f.write(TINY)
    elif case == "non-utf8-class":
        for split in ("train", "test"):
            os.rename(os.fsencode(root / split / "a"), os.path.join(os.fsencode(root / split), b"caf\xe9"))
    elif case == "control-char-file":
        (root / "train" / "a" / "line\nbreak.png").write_bytes(TINY)
    elif case == "bidi-class":
        for split in ("train", "test"):
            os.rename(root / split / "a", root / split / "\u202ecat")
    elif case == "too-many-classes":
        for split in ("train", "test"):
            for k in range(1001):
                (root / split / f"c{k:04d}").mkdir()
                (root / split / f"c{k:04d}" / "0.png").write_bytes(TINY)


@pytest.mark.parametrize("case,expected", [
    ("train-only", "has train/ but no test/"),
    ("empty-class", "test/b/ holds no images"),
    ("classes-differ", "different classes; only in train/: 'b'; only in test/: 'c'"),
    ("non-utf8-file", "is not valid UTF-8"),
    ("non-utf8-class", "is not valid UTF-8"),
    ("control-char-file", "holds the hidden character U+000A"),
    ("bidi-class", "holds the hidden character U+202E"),
    ("too-many-classes", "1,003 class folders; the limit is 1,000"),
])
def test_layout_problems_are_one_line_each(tmp_path, case, expected):
    root = tmp_path / "d"
    _layout_case(root, case)
    with pytest.raises(DataError) as e:
        load_dataset(str(root))
    assert expected in one_line(e)
    assert leftovers() == []


# --- the cache -------------------------------------------------------------------------------

def test_an_interrupted_cache_write_leaves_nothing(tmp_path, monkeypatch):
    root = folder(tmp_path / "d")
    real_save, calls = np.save, []

    def save(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(*a, **k)

    monkeypatch.setattr(data_mod.np, "save", save)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(str(root))
    assert leftovers() == []
    monkeypatch.setattr(data_mod.np, "save", real_save)
    assert load_dataset(str(root)).x_train.shape == (4, 32, 32, 3)


def test_what_a_killed_process_left_is_swept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for sub in ("arrays", "unpack"):
        stale = cache_dir() / sub / f"folder-x-123.tmp{dead.pid}"
        stale.mkdir(parents=True)
        (stale / "x_train.npy").write_bytes(b"half")
    load_dataset(str(tar_gz(tmp_path / "d.tar.gz", folder(tmp_path / "src"))))
    assert not any(p.name.endswith(f".tmp{dead.pid}") for p in cache_dir().rglob("*"))


@pytest.mark.parametrize("case", ["dotdot-archive", "train-only-folder"])
def test_the_cli_answers_in_one_line_exits_2_and_leaves_no_partial_cache(tmp_path, case):
    if case == "dotdot-archive":
        path = tar_gz(tmp_path / "bad.tar.gz", folder(tmp_path / "src"), [("mydata/../../x.txt", b"x", {})])
    else:
        path = tmp_path / "d"
        _layout_case(path, "train-only")
    argv, env = cli_child("data", "--data", str(path))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert leftovers() == [] and not (tmp_path / "x.txt").exists()


# --- the allow-list and the decoders (uploads: test_uploads.py) -----------------------------------

def test_hosted_mode_allows_only_its_list_and_never_looks_at_the_disk(tmp_path, monkeypatch, image_folder):
    upload = "upload:" + "0" * 64
    for anything in (str(tmp_path), "/etc/passwd", "cifar100", upload):
        assert check_source(anything) == anything  # local mode: any source
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setenv("PLAYGROUND_DATA", str(image_folder))
    for allowed in (str(image_folder), "cifar10", upload):
        assert check_source(allowed) == allowed
    messages = []
    for refused in (str(tmp_path), str(tmp_path / "missing"), "/etc", "/nonexistent", "cifar100",
                    "upload:../../etc/passwd", "upload:" + "0" * 63, "", str(image_folder) + "/"):
        with pytest.raises(SourceRefused) as e:
            check_source(refused)
        messages.append(one_line(e).replace(short(refused, 60), "<source>"))
    assert len(set(messages)) == 1, messages  # the same answer whether the path exists or not


def test_decoders_take_turns_and_a_hosted_one_is_ended_at_its_time_limit(tmp_path, monkeypatch):
    """Two visitors' uploads decoded at once held 1.2 GiB on a 1 GB demo, and one upload of many large
    images held both cores for minutes: decoders run one at a time, a visitor kept waiting is told so,
    and in hosted mode a decoder is killed at HOSTED_DECODE_S, all in one line."""
    import subprocess
    import sys
    import threading
    import time

    import playground.training.decoding as decoding

    spans = []

    def slow_child(*args):
        return [sys.executable, "-c", "import time; time.sleep(0.6)"], None

    def not_cached(*args, **kwargs):
        raise decoding.NotCached("x")

    monkeypatch.setattr(decoding, "cli_child", slow_child)
    monkeypatch.setattr(decoding, "load_dataset", not_cached)
    real_run = subprocess.run

    def timed_run(*args, **kwargs):
        start = time.monotonic()
        try:
            return real_run(*args, **kwargs)
        finally:
            spans.append((start, time.monotonic()))

    monkeypatch.setattr(decoding.subprocess, "run", timed_run)

    def decode():
        with pytest.raises(decoding.NotCached):  # the child "decoded"; the reload finds nothing (patched)
            decoding.load_in_subprocess("upload:" + "a" * 64)

    threads = [threading.Thread(target=decode) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1  # one after the other
    monkeypatch.setattr(decoding, "DECODE_WAIT_S", 0.1)
    with decoding.DECODE_TURN:
        with pytest.raises(DataError, match="decoding other visitors' data"):
            decoding.load_in_subprocess("cifar10")
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setattr(decoding, "HOSTED_DECODE_S", 0.2)
    with pytest.raises(DataError, match=r"took over 0 s, the hosted limit") as e:
        decoding.load_in_subprocess("cifar10")
    assert "\n" not in str(e.value)


def test_names_in_other_scripts_and_emoji_are_kept_and_only_layout_characters_refused():
    from playground.training.archives import name_problem

    for name in ("می\u200cخواهم.png", "👩\u200d💻.png", "soft\u00adhyphen.png", "\U0001FAE8.png", "c\u200bat"):
        assert name_problem(name) is None, name
    for name, char in (("\u202ecat", "U+202E"), ("\x9b31m", "U+009B"), ("a\u2028b", "U+2028"), ("a\u2066b", "U+2066")):
        assert name_problem(name) == f"holds the hidden character {char}"
