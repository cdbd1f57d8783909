"""A run store row as a RunRecord, every value checked.

The store is shared and may be edited or damaged by hand, by a bug or by a full disk: each column has
a parser (FIELDS) that says in a few words what is wrong with a value, and a row that fails any of
them becomes a record with status "damaged" whose message names the run and the fields, so listing
shows it, whatever uses the run refuses it, and no other run is affected.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..specs.serde import MAX_DEPTH, short, too_deep
from ..specs.ids import is_run_id

ACTIVE = ("queued", "running")
RESUMABLE = ("stopped", "interrupted")
STATUSES = (*ACTIVE, "finished", *RESUMABLE, "failed", "diverged")  # diverged: trainer.py's divergence rules
PHASE_TEACHERS, PHASE_TRAINING, PHASE_TESTING = "teachers", "training", "testing"
PHASES = ("", PHASE_TEACHERS, PHASE_TRAINING, PHASE_TESTING)  # what an active run's worker does now; "" until it says
DAMAGED = "damaged"  # a record's status (never stored) when its row fails the checks in record_from_row
LATEST_TIME = 253_402_214_400.0  # 9999-12-31: the latest timestamp datetime (every page and the CLI) can show
EPOCH_METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "elapsed")  # what plots and lists read


@dataclass
class RunRecord:
    id: str
    name: str
    status: str
    created: float
    updated: float
    spec: dict
    params: int | None
    best_acc: float | None
    elapsed: float | None
    device: str | None
    message: str
    checkpoint_sha: str | None
    owner: str
    pid: int | None
    pid_start: float | None
    host: str | None
    heartbeat: float | None
    step: int
    steps: int
    img_per_s: float | None
    stop_requested: float | None
    state_sha: str | None
    started: float | None
    phase: str
    epochs: list[dict]
    note: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def planned_epochs(self) -> int:
        return self.spec.get("train", {}).get("epochs", 0)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.steps // max(1, self.planned_epochs))

    @property
    def current_epoch(self) -> int:
        """The epoch the worker trains (or tests) now while it runs, else the last it trained (from the step
        count): after an epoch's last step its test pass still belongs to that epoch."""
        training = self.status == "running" and self.phase != PHASE_TESTING
        return min(self.planned_epochs, max(1, self.step // self.steps_per_epoch + training)
                   if self.status == "running" else self.step // self.steps_per_epoch)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current speed for a running run, None where there is no speed to go by."""
        if self.status != "running" or not self.img_per_s or self.steps <= self.step:
            return None
        return (self.steps - self.step) * self.spec["train"]["batch_size"] / self.img_per_s


# -- a row as a record: every value checked -----------------------------------------------------
def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str:
    """Text that is valid UTF-8 (_records reads invalid text as lone surrogates rather than failing)."""
    if not isinstance(value, str):
        raise ValueError(f"{short(value)} is not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{short(value)} is not UTF-8 text") from None
    return value


def _time(value: object) -> float:
    if not _is_number(value) or not 0 <= value <= LATEST_TIME:  # NaN fails too
        raise ValueError(f"{short(value)} is not a time")
    return value


def _count(value: object) -> int:
    if not _is_whole(value) or value < 0:
        raise ValueError(f"{short(value)} is not a whole number")
    return value


def _amount(value: object) -> float:
    if not _is_number(value) or not 0 <= value < math.inf:
        raise ValueError(f"{short(value)} is not a number of at least 0")
    return value


def _fraction(value: object) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{short(value)} is not an accuracy from 0 to 1")
    return value


def _run_id(value: object) -> str:
    if not is_run_id(value):
        raise ValueError(f"{short(value)} is not a run id")
    return value


def _phase(value: object) -> str:
    if value not in PHASES:
        raise ValueError(f"{short(value)} is not a phase")
    return value


def _status(value: object) -> str:
    if value not in STATUSES:
        raise ValueError(f"{short(value)} is not a status")
    return value


def _json_kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def decode_json(value: object) -> object:
    """Stored JSON text as a value; ValueError, in a few words, if it is not UTF-8 text, not JSON, or nested
    deeper than MAX_DEPTH (whatever walks a deeper value later could exhaust the stack)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("bytes that are not UTF-8 text") from None
    try:
        parsed = json.loads(_text(value))
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if too_deep(parsed):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return parsed


def _spec(value: object) -> dict:
    """The parts of a spec the store's readers use without validating it (RunSpec.from_dict checks the
    rest where a run is trained or resumed): an object, its train an object with whole numbers of
    epochs and batch size, its data source a string."""
    spec = decode_json(value)
    if not isinstance(spec, dict):
        raise ValueError(f"{_json_kind(spec)}, not an object")
    train = spec.get("train", {})
    if not isinstance(train, dict):
        raise ValueError(f"its train is {_json_kind(train)}, not an object")
    for key, least in (("epochs", 0), ("batch_size", 1)):
        if key in train and not (_is_whole(train[key]) and least <= train[key] <= 1_000_000):
            raise ValueError(f"its train.{key} {short(train[key])} is not a whole number from {least} to 1,000,000")
    if not isinstance(spec.get("data", ""), str):
        raise ValueError(f"its data {short(spec['data'])} is not a string")
    return spec


def check_metrics(metrics: object, epoch: int) -> dict:
    """One epoch's metrics, as the trainer records them: an object with the EPOCH_METRICS, its epoch
    ``epoch`` and every value a number or null. ValueError in a few words otherwise."""
    if not isinstance(metrics, dict):
        raise ValueError(f"{_json_kind(metrics)}, not an object")
    if missing := [k for k in EPOCH_METRICS if k not in metrics]:
        raise ValueError(f"no {', '.join(missing)}")
    if (bad := next((k for k, v in metrics.items() if v is not None and not _is_number(v)), None)) is not None:
        raise ValueError(f"its {short(bad)} {short(metrics[bad])} is not a number")
    if metrics["epoch"] != epoch or not _is_whole(metrics["epoch"]):
        raise ValueError(f"its epoch {short(metrics['epoch'])} is not {epoch}")
    return metrics


BATCH_POINT = ("step", "epoch", "loss", "acc", "lr", "img_per_s")  # a batches row, as the live chart reads it


def batch_point(row: tuple) -> dict | None:
    """A batches row (BATCH_POINT) as the live chart's point, or None when it is damaged: a step or
    epoch that is not a whole number of at least 0, or a value that is neither a number nor null.
    A damaged point is left out of the chart instead of breaking it (NaN and inf stay: a run that
    blew up records them)."""
    step, epoch, *values = row
    if not all(_is_whole(v) and v >= 0 for v in (step, epoch)) or not all(
            v is None or _is_number(v) for v in values):
        return None
    return dict(zip(BATCH_POINT, row))


def _optional(parse, empty=None):
    """``parse`` for a nullable column: NULL reads as ``empty``."""
    return lambda value: empty if value is None else parse(value)


# Every column a record reads: (parse, what a damaged record holds instead); parse raises ValueError
# saying in a few words what is wrong.
FIELDS = {
    "id": (_run_id, ""), "name": (_text, ""), "status": (_status, DAMAGED), "created": (_time, 0.0),
    "updated": (_time, 0.0), "spec": (_spec, {}), "params": (_optional(_count), None),
    "best_acc": (_optional(_fraction), None), "elapsed": (_optional(_amount), None),
    "device": (_optional(_text), None), "message": (_optional(_text, ""), ""),
    "checkpoint_sha": (_optional(_text), None), "owner": (_optional(_text, ""), ""),
    "pid": (_optional(_count), None), "pid_start": (_optional(_time), None), "host": (_optional(_text), None),
    "heartbeat": (_optional(_time), None), "step": (_optional(_count, 0), 0), "steps": (_optional(_count, 0), 0),
    "img_per_s": (_optional(_amount), None), "stop_requested": (_optional(_time), None),
    "state_sha": (_optional(_text), None), "started": (_optional(_time), None), "phase": (_optional(_phase, ""), ""),
    "note": (_optional(_text, ""), ""),
}
COLUMNS = ", ".join(FIELDS)


def record_from_row(row: tuple, epoch_rows: list[tuple]) -> RunRecord:
    """A runs row (COLUMNS) and its epochs rows (epoch, metrics) as a RunRecord, every value checked.

    A row that fails any check becomes a record with status "damaged" (DAMAGED), the failed fields at
    harmless defaults (its spec may be {}), and a one-line message naming the run and each damaged field:
    listing shows it like any run, ``RunStore.get`` refuses it, and no other run is affected."""
    values, damage = {}, {}
    for (name, (parse, instead)), raw in zip(FIELDS.items(), row):
        try:
            values[name] = parse(raw)
        except ValueError as e:
            values[name], damage[name] = instead, str(e)
    epochs = []
    for epoch, raw in epoch_rows:
        try:
            epochs.append(check_metrics(decode_json(raw), epoch))
        except ValueError as e:
            damage.setdefault("metrics", f"epoch {short(epoch)}: {e}")
    if damage:
        run_id = values["id"] or short(row[0])
        fields = list(damage)
        named = fields[0] if len(fields) == 1 else ", ".join(fields[:-1]) + " and " + fields[-1]
        why = "; ".join(damage.values()) if len(fields) == 1 else "; ".join(f"{k}: {v}" for k, v in damage.items())
        values.update(id=run_id, status=DAMAGED, message=(
            f"run {run_id}: the store's {named} {'is' if len(fields) == 1 else 'are'} damaged ({why}); delete the "
            f"run or restore the store from a backup"))
    return RunRecord(**values, epochs=epochs)
