"""A stored run as a model: its checkpoint read from the run store (which verifies its hash and
unpickles tensors and plain values only) and then checked like any other input."""
from __future__ import annotations

from ..faults import CheckpointError
from ..training.checkpoint import LoadedRun, check_data, from_checkpoint, short_load_error
from .store import RunStore


def load_run(store: RunStore, run_id: str, data=None) -> LoadedRun:
    """Rebuild a run's model from its verified checkpoint (CheckpointError, one line, if it is
    missing, damaged or not what it claims to be). With ``data`` (a data.Dataset), also check
    the run can be evaluated on it (DataMismatch)."""
    try:
        state = store.load_checkpoint(run_id)
    except CheckpointError as e:
        if "\n" not in str(e):
            raise
        raise CheckpointError(short_load_error(str(e), store.checkpoint_path(run_id))) from None
    loaded = from_checkpoint(state, run_id, f"the checkpoint of run {run_id}")
    if data is not None:
        check_data(loaded, data.x_test, classes=data.classes)
    return loaded
