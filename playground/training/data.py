"""Datasets as in-memory uint8 arrays, from torchvision or a local folder.

Sources (``PLAYGROUND_DATA`` or ``--data``): ``cifar10`` / ``cifar100``
(torchvision, downloaded into the cache), a folder with ``train/`` and
``test/`` ImageFolder splits (or one level above such a folder), a ``.tar.gz``
/ ``.tar`` / ``.zip`` of such a folder, or ``upload:<sha256>``: an archive a
visitor uploaded, stored under the cache by its content hash. Decoded arrays
are cached as .npy files so a second load takes a fraction of a second.

Everything a source holds is untrusted. The layout is checked strictly and the
pixels leniently: an archive member that would land outside its folder, a link
or a device, a non-UTF-8 or absurd name, a train/ without test/, classes that
differ between the splits, an empty class folder or more classes than the
limits allow (limits.py) reject the whole source with one line (``DataError``).
A file that is not a readable image, is truncated, or has more pixels than ``max_image_pixels()``
is skipped and counted (``Dataset.skipped`` with ``skipped_why``): a few bad
files among thousands should not cost the rest, and the count is shown. Every
kept image is converted to RGB and resized to 32x32, so the arrays are always
(N, 32, 32, 3) uint8. Archives are unpacked by hand (regular files and folders
only, under caps on the member count and the unpacked bytes) into a temporary
folder that is removed once the arrays are cached; the cache is written to a
temporary name and renamed, so a rejected or interrupted load leaves nothing.

Which source a string names, whether a visitor may load it, the data settings and the
stored uploads are sources.py's.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from .. import atomic, settings
from ..faults import cause_of_os_error
from ..specs.serde import short
from .archives import ArchiveRefused, name_problem, unpack
from .sources import (MB, NAMED, UPLOAD_PREFIX, DataError, cache_dir, hint, resolve_source,
                      upload_path)
from ..specs.limits import current as limits_current

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")  # PIL never tries another decoder (EPS runs Ghostscript)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
CACHE_FORMAT = 1
UPLOAD_MAX_TEST_IMAGES = 10_000  # the server keeps a cached dataset's test images in memory (3 KiB each)


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, 32, 32, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # split/class/file of every file that was skipped
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) when known without x_train
    skipped_why: list[str] = field(default_factory=list)  # why, one per skipped file

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean of the training set on the 0-1 scale."""
        return tuple(self.stats[0]) if self.stats else tuple(float(v) for v in _channel_stats(self.x_train)[0])

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.stats[1]) if self.stats else tuple(float(v) for v in _channel_stats(self.x_train)[1])

    def subset(self, n_train: int | None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A random class-mixed subset, for quick runs."""
        rng = np.random.default_rng(seed)
        tr = np.sort(rng.permutation(len(self.y_train))[:n_train]) if n_train else slice(None)
        te = np.sort(rng.permutation(len(self.y_test))[:n_test]) if n_test else slice(None)
        return Dataset(self.name, take_rows(self.x_train, tr), self.y_train[tr], self.x_test[te], self.y_test[te],
                       self.classes, self.source, self.skipped, self.stats, self.skipped_why)

    def skipped_note(self, show: int = 3) -> str:
        """One line: how many files were skipped, and why for the first few ('' when none)."""
        if not self.skipped:
            return ""
        why = self.skipped_why if len(self.skipped_why) == len(self.skipped) else [""] * len(self.skipped)
        first = "; ".join(f"{p}: {w}" if w else p for p, w in list(zip(self.skipped, why))[:show])
        more = f"; and {len(self.skipped) - show:,} more" if len(self.skipped) > show else ""
        return f"{len(self.skipped):,} file{'s' if len(self.skipped) != 1 else ''} skipped ({first}{more})"


def take_rows(x: np.ndarray, idx) -> np.ndarray:
    """``x[idx]``. From a memory-mapped array it reads just those rows from the file: indexing the map
    would fault in (and keep mapped, counted in the process's memory) the pages around every row,
    which for a random subset is nearly the whole file."""
    if not isinstance(x, np.memmap) or isinstance(idx, slice):
        return x[idx]
    row = x[0].nbytes
    out = np.empty((len(idx), *x.shape[1:]), x.dtype)
    with open(x.filename, "rb", buffering=0) as f:
        for k, i in enumerate(idx):
            out[k] = np.frombuffer(os.pread(f.fileno(), row, x.offset + int(i) * row), x.dtype).reshape(x.shape[1:])
    return out


_STATS: dict[tuple[int, tuple], tuple[np.ndarray, np.ndarray]] = {}


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    key = (x.__array_interface__["data"][0], x.shape)
    if key not in _STATS:
        flat = x.reshape(-1, x.shape[-1])
        step = max(1, len(flat) // 2_000_000)
        sample = flat[::step].astype(np.float64) / 255.0
        _STATS[key] = (sample.mean(0), sample.std(0))
    return _STATS[key]


def max_image_pixels() -> int:
    """Pixels of the largest image that is decoded; a bigger one is skipped unread (a PNG of
    16k x 16k zeros is a few kB that would decode to 768 MB). Hosted mode allows 1024 x 1024."""
    return 1024 * 1024 if settings.hosted() else 8192 * 8192


class NotCached(DataError):
    """``decode=False`` and the source has not been decoded into the cache yet."""


def load_dataset(source: str | None = None, cache: Path | None = None, mmap_train: bool = False,
                 decode: bool = True) -> Dataset:
    """Load (and cache) a dataset; raises DataError with a clear message on failure.

    ``mmap_train``: map the cached training images from disk instead of reading them (the web
    server shows a few of them and must not hold them all). ``decode=False``: NotCached instead
    of decoding a source that is not cached yet (the server has a subprocess do it)."""
    source = resolve_source(source)
    cache = Path(cache) if cache else cache_dir()
    load = partial(_cached, mmap_train=mmap_train, decode=decode)
    if source.lower() in NAMED:
        return load(cache, source.lower(), lambda: _load_torchvision(source.lower(), cache))
    if source.startswith(UPLOAD_PREFIX):
        archive = upload_path(source, cache)
        key = f"upload-{archive.name[:16]}"
        return load(cache, key, lambda: _load_archive(archive, cache, key, source, "the uploaded archive",
                                                      max_test=UPLOAD_MAX_TEST_IMAGES))
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Dataset not found: {path} does not exist. {hint()}")
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        key = _archive_key(path)
        return load(cache, key, lambda: _load_archive(path, cache, key, source, str(path)))
    if not path.is_dir():
        raise DataError(f"Cannot read {path}: expected a folder or a .tar.gz / .tar / .zip archive. {hint()}")
    root = _find_split_root(path, str(path))
    key = _folder_key(root)
    return load(cache, key, lambda: _load_folder(root, str(root), source=str(root)))


# ---------------------------------------------------------------------------------------------
# Archives: unpacked by archives.py into a temporary folder, then read as a folder.

def _archive_key(path: Path) -> str:
    st = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(errors="surrogateescape"))
    digest = digest.hexdigest()[:12]
    return f"archive-{_safe(path.name)}-{digest}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40]


def _load_archive(archive: Path, cache: Path, key: str, source: str, shown: str, max_test: int | None = None
                  ) -> Dataset:
    """Unpack into a temporary folder under the cache, decode, and remove the folder again."""
    tmp_root = cache / "unpack"
    target = tmp_root / f"{key}.tmp{os.getpid()}"
    try:
        tmp_root.mkdir(parents=True, exist_ok=True)
        _sweep(tmp_root)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
    except OSError as e:
        raise DataError(f"The server could not unpack {shown}: "
                        f"{cause_of_os_error(e, tmp_root, 'the unpack folder')}.") from None
    try:
        _unpack(archive, target, shown)
        root = _find_split_root(target, shown)
        ds = _load_folder(root, shown if root == target else f"{shown}: {root.name}", source=source,
                          max_test=max_test)
        if root == target:
            ds.name = re.sub(r"(\.tar)?\.(gz|tgz|tar|bz2|tbz2|xz|txz|zip)$", "", archive.name) \
                if not source.startswith(UPLOAD_PREFIX) else "upload"
        return ds
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _unpack(archive: Path, target: Path, shown: str) -> None:
    try:
        unpack(archive, target, shown, settings.whole("PLAYGROUND_MAX_ARCHIVE_FILES"),
               settings.whole("PLAYGROUND_MAX_UNPACKED_MB") * MB)
    except ArchiveRefused as e:
        raise DataError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# The ImageFolder layout, checked strictly.

def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _find_split_root(path: Path, shown: str) -> Path:
    """``path`` or the first folder below it that holds train/ and test/; one line naming a folder
    that holds only one of them."""
    candidates = [path] + _dirs(path)
    for cand in candidates:
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    for cand in candidates:
        where = shown if cand == path else f"{shown}: {short(cand.name, 60)}"
        for have, lack in (("train", "test"), ("test", "train")):
            if (cand / have).is_dir():
                raise DataError(f"{where} has {have}/ but no {lack}/; both splits are needed (train/<class>/*.png "
                                f"and test/<class>/*.png).")
    raise DataError(f"No train/ and test/ folders found in {shown} (or one level below). {hint()}")


def _folder_key(root: Path) -> str:
    h = hashlib.sha1(str(root.resolve()).encode(errors="surrogateescape"))
    for split in ("train", "test"):
        for d in sorted((root / split).iterdir()):
            if d.is_dir():
                st = d.stat()
                h.update(f"{split}/{d.name}:{st.st_mtime_ns}:{len(os.listdir(d))}".encode(errors="surrogateescape"))
    return f"folder-{_safe(root.name)}-{h.hexdigest()[:12]}"


def _layout(root: Path, shown: str) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """The classes and, per split, the image files (relative path, label); DataError for a
    layout problem."""
    classes = {}
    for split in ("train", "test"):
        names = []
        for entry in sorted(os.listdir(root / split)):
            if (why := name_problem(entry)) is not None:
                raise DataError(f"{shown}: the name {split}/{short(entry, 60)} {why}; rename it.")
            if not entry.startswith(".") and (root / split / entry).is_dir():
                names.append(entry)
        if not names:
            raise DataError(f"{shown}: {split}/ has no class folders; expected {split}/<class>/*.png.")
        if len(names) > (most := limits_current().classes):
            raise DataError(f"{shown}: {split}/ has {len(names):,} class folders; the limit is {most:,}.")
        classes[split] = names
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))

        def few(xs):
            return ", ".join(short(x, 30) for x in xs[:4]) + (f" and {len(xs) - 4:,} more" if len(xs) > 4 else "")
        raise DataError(f"{shown}: train/ and test/ have different classes"
                        + (f"; only in train/: {few(only_train)}" if only_train else "")
                        + (f"; only in test/: {few(only_test)}" if only_test else "") + ".")
    files: dict[str, list[tuple[str, int]]] = {}
    for split in ("train", "test"):
        files[split] = []
        for label, c in enumerate(classes["train"]):
            n = 0
            for entry in sorted(os.listdir(root / split / c)):
                if (why := name_problem(entry)) is not None:
                    raise DataError(f"{shown}: the name {split}/{c}/{short(entry, 60)} {why}; rename it.")
                if Path(entry).suffix.lower() in IMAGE_EXTS and (root / split / c / entry).is_file():
                    files[split].append((f"{split}/{c}/{entry}", label))
                    n += 1
            if n == 0:
                raise DataError(f"{shown}: {split}/{c}/ holds no images ({', '.join(sorted(IMAGE_EXTS))}); every "
                                f"class needs images in train/ and test/.")
    return classes["train"], files


def _load_folder(root: Path, shown: str, source: str = "", max_test: int | None = None) -> Dataset:
    classes, files = _layout(root, shown)
    if max_test is not None and len(files["test"]) > max_test:
        raise DataError(f"{shown}: test/ holds {len(files['test']):,} images; the limit for an upload is "
                        f"{max_test:,}.")
    limit = max_image_pixels()
    skipped, why = [], []
    splits = {}
    for split in ("train", "test"):
        paths = [str(root / rel) for rel, _ in files[split]]
        out = np.empty((len(paths), 32, 32, 3), np.uint8)  # decoded in place: one copy of the split

        def decode(k: int, paths: list[str] = paths, out: np.ndarray = out) -> str | None:
            image, problem = decode_image(paths[k], limit)
            if image is not None:
                out[k] = image
            return problem

        from PIL import Image
        with warnings.catch_warnings():  # PIL warns about big images before we skip them
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
                problems = list(pool.map(decode, range(len(paths)), chunksize=256))
        keep = [k for k, p in enumerate(problems) if p is None]
        for k, p in enumerate(problems):
            if p is not None:
                skipped.append(files[split][k][0])
                why.append(p)
        labels = np.asarray([files[split][k][1] for k in keep], np.int64)
        lost = sorted(set(range(len(classes))) - set(labels.tolist()))
        if lost:
            first = next(i for i, p in enumerate(problems) if p is not None and files[split][i][1] == lost[0])
            raise DataError(f"{shown}: none of the images in {split}/{classes[lost[0]]}/ could be decoded "
                            f"({files[split][first][0]}: {problems[first]}).")
        splits[split] = (out if len(keep) == len(paths) else out[keep], labels)
    return Dataset(root.name, *splits["train"], *splits["test"], classes=list(classes), source=source,
                   skipped=skipped, skipped_why=why)


def decode_image(path, max_pixels: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """(32x32x3 uint8, None), or (None, why it cannot be used), for an untrusted image file (a path
    or a file object, such as an uploaded photo): RGB, resized bilinearly as the data's images are."""
    from PIL import Image, UnidentifiedImageError

    max_pixels = max_pixels or max_image_pixels()
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:
            w, h = im.size
            if w * h > max_pixels:
                return None, f"{w:,}x{h:,} px is over the limit of {max_pixels:,} pixels per image"
            im = im.convert("RGB")
            if im.size != (32, 32):
                im = im.resize((32, 32), Image.BILINEAR)
            image = np.asarray(im, np.uint8)
    except Image.DecompressionBombError:
        return None, "a decompression bomb (too many pixels)"
    except UnidentifiedImageError:
        return None, "not an image (or a format other than PNG, JPEG, BMP, WebP, GIF, TIFF)"
    except MemoryError:
        return None, "out of memory while decoding it"
    except Exception as e:  # noqa: BLE001 - a damaged file raises OSError, ValueError, SyntaxError, struct.error...
        return None, f"damaged ({type(e).__name__})"
    if image.shape != (32, 32, 3):
        return None, f"decoded to {image.shape}, not 32x32x3"
    return image, None


# ---------------------------------------------------------------------------------------------
# The cache: one folder of .npy files per source, written under a temporary name and renamed.

def _sweep(folder: Path) -> None:
    """Remove what a killed process left half-written (``*.tmp<pid>`` of a process that is gone)."""
    for p in folder.glob("*.tmp*"):
        m = re.search(r"\.tmp(\d+)$", p.name)
        if m and not atomic.pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _cached(cache: Path, key: str, load, mmap_train: bool = False, decode: bool = True) -> Dataset:
    folder = cache / "arrays" / key
    meta_path = folder / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") == CACHE_FORMAT:
                if "mean" not in meta:  # cached by an older version: add the statistics once
                    ds = Dataset("", np.load(folder / "x_train.npy"), *([np.empty(0)] * 3), classes=[])
                    meta.update(mean=ds.mean, std=ds.std)
                    atomic.write_atomic(meta_path, lambda tmp: tmp.write_text(json.dumps(meta)))
                arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r" if mmap_train and n == "x_train" else None,
                                     allow_pickle=False) for n in ("x_train", "y_train", "x_test", "y_test")}
                return Dataset(meta["name"], **arrays, classes=meta["classes"], source=meta["source"],
                               skipped=meta.get("skipped", []), skipped_why=meta.get("skipped_why", []),
                               stats=(tuple(meta["mean"]), tuple(meta["std"])))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    if not decode:
        raise NotCached(f"{key} is not decoded yet")
    ds = load()
    for n in ("x_train", "x_test"):
        x = getattr(ds, n)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DataError(f"{ds.name}: {n} is {x.dtype} {x.shape}, not 32x32x3 uint8 images.")
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _sweep(folder.parent)
        tmp.mkdir(parents=True, exist_ok=True)
        for n in ("x_train", "y_train", "x_test", "y_test"):
            np.save(tmp / f"{n}.npy", getattr(ds, n))
        (tmp / "meta.json").write_text(json.dumps(dict(
            format=CACHE_FORMAT, name=ds.name, classes=ds.classes, source=ds.source, skipped=ds.skipped,
            skipped_why=ds.skipped_why, mean=ds.mean, std=ds.std)))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            pass  # another process cached it first; ours is identical
    except OSError as e:  # a full or read-only disk: the server's fault, in one line
        raise DataError(f"Cannot cache the decoded dataset {ds.name}: "
                        f"{cause_of_os_error(e, folder.parent, 'the data cache')}.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # an interrupted write leaves nothing
    return ds


def _load_torchvision(name: str, cache: Path) -> Dataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = cache / "torchvision"
    try:
        train = cls(root=str(root), train=True, download=True)
        test = cls(root=str(root), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - torchvision raises URLError, RuntimeError, OSError...
        raise DataError(f"Could not download {name} into {root} ({type(e).__name__}: {e}). {hint()}") from None
    return Dataset(name, np.asarray(train.data, np.uint8), np.asarray(train.targets, np.int64),
                   np.asarray(test.data, np.uint8), np.asarray(test.targets, np.int64),
                   list(train.classes), source=name)
