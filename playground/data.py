"""Datasets as in-memory uint8 arrays, from torchvision or a local folder.

Sources (``PLAYGROUND_DATA`` or ``--data``): ``cifar10`` / ``cifar100``
(torchvision, downloaded into the cache), a folder with ``train/`` and
``test/`` ImageFolder splits (or one level above such a folder), or a
``.tar.gz`` of such a folder. Decoded arrays are cached as .npy files so a
second load takes a fraction of a second.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from . import cli_child

DEFAULT_SOURCE = "cifar10"
NAMED = ("cifar10", "cifar100")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CACHE_FORMAT = 1


class DataError(RuntimeError):
    """The data could not be found or read; the message says what to do."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, 32, 32, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str = ""
    skipped: list[str] = field(default_factory=list)
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) when known without x_train

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
                       self.classes, self.source, self.skipped, self.stats)


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


def cache_dir() -> Path:
    return Path(os.environ.get("PLAYGROUND_CACHE", Path.home() / ".cache" / "cifar-playground"))


def resolve_source(source: str | None = None) -> str:
    """``--data`` beats ``PLAYGROUND_DATA`` beats the default ``cifar10``."""
    return source or os.environ.get("PLAYGROUND_DATA") or DEFAULT_SOURCE


def same_source(a: str, b: str) -> bool:
    """Whether two recorded sources name the same data: a relative and an absolute path to one
    folder or archive are the same; names such as ``cifar10`` must match exactly."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _hint() -> str:
    return ("Point the playground at a local copy with --data PATH or PLAYGROUND_DATA=PATH: a folder holding "
            "train/<class>/*.png and test/<class>/*.png (ImageFolder layout) or a .tar.gz of one; or use "
            "--data cifar10 with internet access to download it.")


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
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Dataset not found: {path} does not exist. {_hint()}")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        path = _extract(path, cache)
    if not path.is_dir():
        raise DataError(f"Cannot read {path}: expected a folder or a .tar.gz archive. {_hint()}")
    root = _find_split_root(path)
    key = _folder_key(root)
    return load(cache, key, lambda: _load_folder(root))


def load_in_subprocess(source: str) -> Dataset:
    """The dataset with its training images memory-mapped, decoding it first (if it is not cached)
    in a child process (``python -m playground data``), so that the decoding's memory and CPU
    never burden the web server."""
    try:
        return load_dataset(source, mmap_train=True, decode=False)
    except NotCached:
        pass
    argv, env = cli_child("data", "--data", source)
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise DataError(lines[-1].removeprefix("error: ") if lines else f"decoding {source} failed")
    return load_dataset(source, mmap_train=True, decode=False)


def _extract(archive: Path, cache: Path) -> Path:
    stat = archive.stat()
    digest = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache / "extracted" / digest
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"Cannot unpack {archive}: {e}. {_hint()}") from None
        done.touch()
    return target


def _find_split_root(path: Path) -> Path:
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for child in children:
        if (child / "train").is_dir() and (child / "test").is_dir():
            return child
    raise DataError(f"No train/ and test/ folders found in {path} (or one level below). {_hint()}")


def _folder_key(root: Path) -> str:
    h = hashlib.sha1(str(root.resolve()).encode())
    for split in ("train", "test"):
        for d in sorted((root / split).iterdir()):
            if d.is_dir():
                st = d.stat()
                h.update(f"{split}/{d.name}:{st.st_mtime_ns}:{len(os.listdir(d))}".encode())
    return f"folder-{root.name}-{h.hexdigest()[:12]}"


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
                    _write_text_atomic(meta_path, json.dumps(meta))
                arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r" if mmap_train and n == "x_train" else None,
                                     allow_pickle=False) for n in ("x_train", "y_train", "x_test", "y_test")}
                return Dataset(meta["name"], **arrays, classes=meta["classes"], source=meta["source"],
                               skipped=meta.get("skipped", []), stats=(tuple(meta["mean"]), tuple(meta["std"])))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    if not decode:
        raise NotCached(f"{key} is not decoded yet")
    ds = load()
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for n in ("x_train", "y_train", "x_test", "y_test"):
        np.save(tmp / f"{n}.npy", getattr(ds, n))
    (tmp / "meta.json").write_text(json.dumps(dict(format=CACHE_FORMAT, name=ds.name, classes=ds.classes,
                                                   source=ds.source, skipped=ds.skipped, mean=ds.mean, std=ds.std)))
    if folder.exists():
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:
        pass  # another process cached it first; ours is identical
    return ds


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_torchvision(name: str, cache: Path) -> Dataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = cache / "torchvision"
    try:
        train = cls(root=str(root), train=True, download=True)
        test = cls(root=str(root), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - torchvision raises URLError, RuntimeError, OSError...
        raise DataError(f"Could not download {name} into {root} ({type(e).__name__}: {e}). {_hint()}") from None
    return Dataset(name, np.asarray(train.data, np.uint8), np.asarray(train.targets, np.int64),
                   np.asarray(test.data, np.uint8), np.asarray(test.targets, np.int64),
                   list(train.classes), source=name)


def _decode(path: str) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (32, 32):
                im = im.resize((32, 32), Image.BILINEAR)
            return np.asarray(im, np.uint8)
    except (OSError, ValueError, SyntaxError):
        return None


def _load_folder(root: Path) -> Dataset:
    from torchvision.datasets.folder import find_classes

    try:
        classes, _ = find_classes(str(root / "train"))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"Cannot read classes from {root / 'train'}: {e}. {_hint()}") from None
    skipped: list[str] = []
    splits = {}
    for split in ("train", "test"):
        files, labels = [], []
        for i, c in enumerate(classes):
            d = root / split / c
            if not d.is_dir():
                continue
            names = sorted(n for n in os.listdir(d) if Path(n).suffix.lower() in IMAGE_EXTS)
            files += [str(d / n) for n in names]
            labels += [i] * len(names)
        if not files:
            raise DataError(f"No images found in {root / split}; expected {split}/<class>/*.jpg. {_hint()}")
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
            images = list(pool.map(_decode, files, chunksize=256))
        keep = [k for k, im in enumerate(images) if im is not None]
        skipped += [files[k] for k, im in enumerate(images) if im is None]
        if not keep:
            raise DataError(f"None of the {len(files)} images in {root / split} could be decoded. {_hint()}")
        splits[split] = (np.stack([images[k] for k in keep]), np.asarray([labels[k] for k in keep], np.int64))
    return Dataset(root.name, *splits["train"], *splits["test"], classes=list(classes), source=str(root),
                   skipped=skipped)
