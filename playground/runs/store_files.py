"""The run store's files: run ids (they become file names), cached teacher targets and the
checkpoints, each written atomically and recorded by hash in the same transaction (see store.py).

``RunFiles`` is a part of ``RunStore``: it uses the store's ``root``, ``_tx`` and ``get``.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np

from .. import atomic
from .faults import CheckpointError, RunGone, StoreError, cause_of_os_error

RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # ASCII digits: \d also takes Arabic-Indic ones


def is_run_id(text: object) -> bool:
    """Run ids come from URLs and command lines and become file names: only the store's own shape."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def checked_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise CheckpointError(f"{str(run_id)[:40]!r} is not a run id (they look like 20261125-093000-a1b2c3)")
    return run_id


class RunFiles:
    # -- teacher targets (distill.py) ----------------------------------------
    def _teacher_path(self, key: str) -> Path:
        return self.root / "teachers" / f"{key}.npy"

    def load_teacher_targets(self, key: str) -> np.ndarray | None:
        """The cached predictions, or None when there are none or the file is damaged (recomputed)."""
        path = self._teacher_path(key)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, EOFError, OSError):  # truncated or garbage: a cache, so compute it again
            with suppress(OSError):
                path.unlink()
            return None

    def save_teacher_targets(self, key: str, probs: np.ndarray) -> None:
        path = self._teacher_path(key)
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as e:
            raise StoreError(cause_of_os_error(e, self.root)) from None
        buffer = io.BytesIO()
        np.save(buffer, probs)
        try:
            atomic.write_bytes(path, buffer.getvalue())
        except OSError as e:
            raise StoreError(cause_of_os_error(e, self.root)) from None

    # -- checkpoints: the weights (Results, exports, teachers) and the resume state -------------
    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{checked_id(run_id)}.pt"

    def state_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{checked_id(run_id)}.state.pt"

    def save_checkpoint(self, run_id: str, state: dict) -> Path:
        return self._save(run_id, self.checkpoint_path(run_id), "checkpoint_sha", state)

    def save_state(self, run_id: str, state: dict) -> Path:
        """Everything needed to go on after an epoch (model, optimizer, schedule, EMA, RNGs)."""
        return self._save(run_id, self.state_path(run_id), "state_sha", state)

    def load_checkpoint(self, run_id: str) -> dict:
        return self._load(run_id, self.checkpoint_path(run_id), "checkpoint_sha")

    def load_state(self, run_id: str) -> dict:
        return self._load(run_id, self.state_path(run_id), "state_sha")

    def _save(self, run_id: str, path: Path, column: str, state: dict) -> Path:
        """The file is written beside its place and moved into it inside the transaction that
        records its hash: whatever fails (serialising, the disk, the database), the previous
        file and its hash stay as they were, and no temporary file is left."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        try:
            tmp = atomic.write_bytes_temporary(path, data)
        except OSError as e:
            raise StoreError(cause_of_os_error(e, self.root)) from None
        try:
            with self._tx() as c:
                if c.execute(f"UPDATE runs SET {column} = ? WHERE id = ?",
                             (hashlib.sha256(data).hexdigest(), run_id)).rowcount == 0:
                    raise RunGone(f"run {run_id} is no longer in the store (deleted)")
                try:
                    os.replace(tmp, path)
                except OSError as e:
                    raise StoreError(cause_of_os_error(e, self.root)) from None
        finally:
            atomic.discard(tmp)
        return path

    def _load(self, run_id: str, path: Path, column: str) -> dict:
        import torch

        record = self.get(run_id)
        if record is None:
            raise CheckpointError(f"run {run_id} is not in the run store {self.root}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"run {run_id} has no checkpoint at {path} (deleted?)") from None
        except OSError as e:
            raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})") from None
        expected = getattr(record, column)
        if not expected or hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"checkpoint {path} is damaged (its contents do not match what was saved; "
                                  f"{len(data):,} bytes on disk, truncated?); retrain the run")
        try:  # tensors and plain values only: a crafted file cannot run code
            with warnings.catch_warnings():  # a legacy pickle makes torch warn in two lines; the refusal is one
                warnings.simplefilter("ignore")
                return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt zips
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
