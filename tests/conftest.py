"""Shared fixtures: a tiny synthetic ImageFolder dataset and isolated cache/runs dirs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SHARED_TARBALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-dev-jpeg.tar.gz"


def make_image_folder(root: Path, n_train: int = 12, n_test: int = 4, seed: int = 0, learnable: bool = True) -> Path:
    """Class-coloured noise images, so a tiny net can learn something in one epoch; ``learnable=False``:
    the same grey noise for every class, so nothing can be learned on any CPU."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i, c in enumerate(CLASSES):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            base = np.array([(i * 25) % 256, (i * 70) % 256, (255 - i * 25) % 256]) if learnable else 128
            for k in range(n):
                img = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{k:04d}.png")
    return root


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.delenv("PLAYGROUND_DATA", raising=False)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "tiny")
