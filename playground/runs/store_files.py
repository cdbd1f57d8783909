"""The run store's files: run ids checked before they name a file, cached teacher targets and the
checkpoints, each written atomically and recorded by hash in the same transaction (see store.py).

``RunFiles`` is a part of ``RunStore``: it uses the store's ``root``, ``_tx`` and ``get``.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np

from .. import atomic
from ..faults import CheckpointError, RunGone, StoreError, cause_of_os_error
from ..specs.ids import is_run_id


def checked_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise CheckpointError(f"{str(run_id)[:40]!r} is not a run id (they look like 20261125-093000-a1b2c3)")
    return run_id


def previous(path: Path) -> Path:
    """Where a checkpoint's previous file waits while a save of a new one is not yet committed."""
    return path.with_name(path.name + ".previous")


def _read_matching(path: Path, sha: str | None) -> bytes | None:
    """The file's bytes if its hash is ``sha``; None otherwise, or when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if sha and hashlib.sha256(data).hexdigest() == sha else None


def _settle(path: Path, prev: Path, recorded: str | None) -> None:
    """After a save that died between moving its file in and committing its hash, the recorded file
    is ``prev``: put it back in its place before the next save moves that place aside."""
    if prev.exists() and _read_matching(path, recorded) is None and _read_matching(prev, recorded) is not None:
        os.replace(prev, path)


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
        records its hash, and the file it replaces is kept (``previous``) until that transaction has
        committed: whatever fails (serialising, the disk, the database, a SIGKILL between the move
        and the commit), the hash on record still names a file on disk, which ``_verified`` finds, and
        no temporary file is left."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        try:
            tmp = atomic.write_bytes_temporary(path, data)
        except OSError as e:
            raise StoreError(cause_of_os_error(e, self.root)) from None
        prev, aside, moved = previous(path), False, False
        try:
            with self._tx() as c:
                row = c.execute(f"SELECT {column} FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise RunGone(f"run {run_id} is no longer in the store (deleted)")
                c.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (hashlib.sha256(data).hexdigest(), run_id))
                try:
                    _settle(path, prev, row[0])
                    if path.exists():
                        os.replace(path, prev)
                        aside = True
                    os.replace(tmp, path)
                    moved = True
                except OSError as e:
                    raise StoreError(cause_of_os_error(e, self.root)) from None
        except BaseException:  # not committed: the record still names the previous file (or none)
            with suppress(OSError):
                if aside:
                    os.replace(prev, path)
                elif moved:
                    path.unlink()
            raise
        finally:
            atomic.discard(tmp)
        atomic.discard(prev)
        return path

    def checkpoint_bytes(self, run_id: str) -> bytes:
        """The checkpoint file as saved (its hash checked), for a download."""
        return self._verified(run_id, self.checkpoint_path(run_id), "checkpoint_sha")

    def _verified(self, run_id: str, path: Path, column: str) -> bytes:
        """The file whose hash the run's record holds: at ``path``, or its previous file after a save
        that was interrupted before its commit; CheckpointError in one line otherwise."""
        record = self.get(run_id)
        if record is None:
            raise CheckpointError(f"run {run_id} is not in the run store {self.root}")
        expected = getattr(record, column)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})") from None
        if data is not None and expected and hashlib.sha256(data).hexdigest() == expected:
            return data
        if (kept := _read_matching(previous(path), expected)) is not None:
            return kept
        if data is None:
            raise CheckpointError(f"run {run_id} has no checkpoint at {path} (deleted?)")
        raise CheckpointError(f"checkpoint {path} is damaged (its contents do not match what was saved; "
                              f"{len(data):,} bytes on disk, truncated?); retrain the run")

    def _load(self, run_id: str, path: Path, column: str) -> dict:
        import torch

        data = self._verified(run_id, path, column)
        try:  # tensors and plain values only: a crafted file cannot run code
            with warnings.catch_warnings():  # a legacy pickle makes torch warn in two lines; the refusal is one
                warnings.simplefilter("ignore")
                return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt zips
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
