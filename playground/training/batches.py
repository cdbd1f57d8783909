"""Where a training's batches come from: shuffled and augmented, on the host or on the device.

BatchSource keeps the dataset in host memory and augments each batch with numpy/OpenCV, one batch
ahead in a thread. DeviceBatchSource keeps the whole dataset on the training device (a GPU) as one
uint8 tensor and augments there with torch ops: no image crosses the bus or passes through
Python. Both draw the order and the augmentation from the same numpy generators, so for the
same seed they give the same batches, and a run resumes on either.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import numpy as np
import torch

from .batch_augment import BatchAugment


class TrainingError(RuntimeError):
    """The run could not continue (diverged, out of memory); the message says why and what to try."""


def spans(n: int, size: int) -> list[slice]:
    """Batches of ``size`` over ``n`` items, a last batch of a single item joined to the one before:
    BatchNorm cannot normalise one image whose map has shrunk to 1×1 (it stopped the run mid-epoch)."""
    cuts = list(range(0, n, size))
    if len(cuts) > 1 and n - cuts[-1] == 1:
        cuts.pop()
    return [slice(a, b) for a, b in zip(cuts, cuts[1:] + [n])]


class BatchSource:
    """Shuffled, augmented uint8 batches; optionally produced one batch ahead in a thread."""

    on_device = False

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: Callable[[np.ndarray], np.ndarray],
                 batch_size: int, seed: int, threads: int):
        self.x, self.y, self.augment = x, y, augment
        self.batch_size, self.threads = batch_size, threads
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(spans(len(self.y), self.batch_size))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _make(self, idx: np.ndarray, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.augment(self.x[idx], (idx, number)), self.y[idx], idx

    def epoch(self, number: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(augmented images, labels, their indices into x) per batch of epoch ``number`` (from 1)."""
        order = self.rng.permutation(len(self.y))
        chunks = [order[s] for s in spans(len(order), self.batch_size)]
        if self.threads == 0:
            for idx in chunks:
                yield self._make(idx, number)
            return
        q: queue.Queue = queue.Queue(maxsize=2)
        done = threading.Event()

        def produce() -> None:
            try:
                for idx in chunks:
                    if done.is_set():
                        return
                    q.put(self._make(idx, number))
                q.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the training thread, which raises it
                q.put(e)

        worker = threading.Thread(target=produce, daemon=True, name="playground-augment")
        worker.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise TrainingError(f"the augmentation thread failed: {type(item).__name__}: {item}") from item
                yield item
        finally:
            done.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(0.01)


class DeviceBatchSource(BatchSource):
    """The dataset on ``device`` once; each batch indexed, augmented and yielded there (torch tensors)."""

    on_device = True

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: BatchAugment, batch_size: int, seed: int,
                 device: torch.device):
        super().__init__(x, y, augment, batch_size, seed, threads=0)
        self.x_dev = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y_dev = torch.from_numpy(np.ascontiguousarray(y)).to(device)

    def epoch(self, number: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        host_order = self.rng.permutation(len(self.y))
        order = torch.from_numpy(host_order).to(self.x_dev.device)
        for s in spans(len(order), self.batch_size):
            idx = order[s]
            yield self.augment.on_device(self.x_dev[idx], (host_order[s], number)), self.y_dev[idx], idx


def batch_source(x: np.ndarray, y: np.ndarray, augment: BatchAugment, batch_size: int, seed: int,
                 threads: int, device: torch.device, on_device: bool) -> BatchSource:
    """The device source where asked and every augmentation step has a torch version, else the host one."""
    if on_device and augment.runs_on_device:
        return DeviceBatchSource(x, y, augment, batch_size, seed, device)
    return BatchSource(x, y, augment, batch_size, seed, threads)
