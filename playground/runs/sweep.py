"""Sweeps: Optuna searches the spec space; every trial is a normal run in the run store.

The space files and a trial's spec are space.py's. Here each trial builds its spec there; an
invalid, over-budget or rule-breaking spec is pruned with its reason, never run. A valid one
is recorded as a run named ``<study> #<trial>`` (the trial keeps the run id as a user
attribute: both ways linked) and trained by a worker process, as the app does; the trial
reports each tested epoch's accuracy so the pruner (``"pruner"``: median by default, or
hyperband) stops poor trials, which stops their worker. Two objectives keep a Pareto front.
Storage: an SQLite file in the runs folder by default (no server), or any Optuna URL such as
``postgresql://…`` to share one study between machines; trials whose process died are marked
failed by Optuna's heartbeat and retried once.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .. import cli_child, settings
from ..specs.geometry import trace
from ..specs.presets import preset_net
from ..specs.serde import SpecError, short
from . import lifecycle
from .runner import create_run
from .space import Space, base_run, check_study_name, check_trial, load_space, sample, trial_spec
from ..faults import DamagedRun, StoreError
from .store import RunStore

TRIAL_ATTRS = ("run_id", "params", "macs", "minutes", "last_acc", "pruned_at", "pruned_because",  # set per trial
               "failed_because")
POLL_S = 0.5
STORE_PATIENCE_S = 120.0  # how long a trial waits for a run store it cannot read before it fails
OPEN_PATIENCE_S = 60.0  # how long opening a storage waits for another process that is creating its tables
TABLES_LOCK = 0x706C61795357  # the PostgreSQL advisory lock key that creating Optuna's tables holds
RACES = ("already exists", "duplicate key", "unique constraint", "database is locked")  # two creators met

try:
    import fcntl
except ImportError:  # Windows: opening an SQLite storage relies on the retries alone
    fcntl = None


class SweepStorageError(UserError, RuntimeError):
    """The study's storage cannot be opened (a bad URL, a server that is down); one line, no password."""




@dataclass
class Sweep:
    """One process's share of a study: ``trials`` trials, each a worker process training a run."""

    space: Space
    store: RunStore
    data_source: str
    classes: list[str]
    image_shape: tuple[int, ...]
    device: str = "cpu"
    finished: list[int] = field(default_factory=list)

    def objective(self, trial):
        import optuna

        for key in TRIAL_ATTRS:  # a retry copies the failed trial's attributes: its run is not this one's
            if trial.user_attrs.get(key) is not None:
                trial.set_user_attr(key, None)
        try:
            values = sample(trial, self.space)
        except ValueError as e:  # e.g. a space edited since the study's earlier trials: another kind of range
            reason = f"the space does not fit the study's earlier trials: {str(e).splitlines()[0][:300]}"
            trial.set_user_attr("pruned_because", reason)
            raise optuna.TrialPruned(reason) from None
        try:
            run = check_trial(self.space, trial_spec(self.space, values), self.classes, self.image_shape)
        except SpecError as e:
            reason = "; ".join(e.problems)
            trial.set_user_attr("pruned_because", reason[:500])
            raise optuna.TrialPruned(reason) from None
        run.data = self.data_source
        run.net.name = f"{trial.study.study_name} #{trial.number}"[:80]
        run_id = create_run(self.store, run, self.device, owner="sweep")
        size = trace(run.net)  # traced once: the table's columns and the second objective
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("params", size.params)
        trial.set_user_attr("macs", size.macs)
        record = self._train(trial, run_id)
        if record.status == "stopped" and trial.user_attrs.get("pruned_at") is not None:
            raise optuna.TrialPruned(f"pruned after epoch {trial.user_attrs['pruned_at']}")
        if record.status != "finished" or record.best_acc is None:
            reason = f"run {run_id} ended {record.status}: {record.message}"
            trial.set_user_attr("failed_because", reason[:500])
            raise RuntimeError(reason)
        self.finished.append(trial.number)
        accuracy = max(e["test_acc"] for e in record.epochs if e.get("test_acc") is not None)
        second = {"params": float(size.params), "minutes": (record.elapsed or 0) / 60, "macs": float(size.macs)}
        trial.set_user_attr("minutes", second["minutes"])
        return accuracy if len(self.space.objectives) == 1 else (accuracy, second[self.space.objectives[1]])

    def _train(self, trial, run_id: str):
        """Start the run's worker, report each tested epoch, stop it if the pruner says so. A run store that
        cannot be read for a moment (a lock held long, a passing I/O error) is looked at again for up to
        STORE_PATIENCE_S while the worker trains on: a healthy trial is not killed for it."""
        proc = lifecycle.start_worker(self.store, run_id, stop_with_parent=True)
        reported, unreadable_since = set(), None
        try:
            while True:
                code = proc.poll()
                try:
                    if (ended := self._look(trial, run_id, code, proc.pid, reported)) is not None:
                        return ended
                    unreadable_since = None
                except DamagedRun:
                    raise
                except StoreError:
                    unreadable_since = unreadable_since or time.monotonic()
                    if time.monotonic() - unreadable_since > STORE_PATIENCE_S:
                        raise
                time.sleep(POLL_S)
        except BaseException:
            proc.kill()  # the sweep itself is stopping: its worker goes with it
            proc.wait()
            lifecycle.reconcile(self.store)
            raise

    def _look(self, trial, run_id: str, code: int | None, pid: int, reported: set):
        """One look at the trial's run: its new tested epochs reported (and the worker asked to stop if the
        pruner says so); the run's record once its worker has ended (``code``), else None."""
        if (record := self.store.get(run_id)) is None:  # deleted meanwhile (the Runs page): killed by _train
            trial.set_user_attr("failed_because", f"run {run_id} was deleted while it trained")
            raise RuntimeError(f"run {run_id} was deleted while it trained")
        for e in record.epochs:
            if len(self.space.objectives) == 1 and e.get("test_acc") is not None and e["epoch"] not in reported:
                trial.report(e["test_acc"], e["epoch"])
                trial.set_user_attr("last_acc", e["test_acc"])
                if trial.should_prune() and trial.user_attrs.get("pruned_at") is None:
                    lifecycle.request_stop(self.store, record)
                    trial.set_user_attr("pruned_at", e["epoch"])
                reported.add(e["epoch"])  # last: a store error above has it looked at again
        if code is None:
            return None
        lifecycle.record_exit(self.store, run_id, code, pid)
        if (record := self.store.get(run_id)) is None:
            raise RuntimeError(f"run {run_id} was deleted as it ended")
        return record


def heartbeat_grace() -> int:
    """Seconds a trial may go without its process's heartbeat before the next trial started by any
    process fails it and queues its retry: $PLAYGROUND_SWEEP_GRACE_S, else 30. The heartbeat beats
    three times within it. Shorter finds a lost machine sooner; a machine that stalls for longer than
    this (swapping, suspended) has its live trial failed and trained twice."""
    return settings.whole("PLAYGROUND_SWEEP_GRACE_S")


def storage_for(url: str | None, runs_root: Path):
    """Optuna storage: ``url``, or an SQLite file in the runs folder (which must exist). RDB storages get a heartbeat,
    so a trial whose process died is marked failed (and retried once) instead of running forever. Any number of
    processes may open a fresh storage at once: creating its tables is serialised (_creating_tables), and a
    creation race that gets through anyway (no lock to be had) is retried."""
    import optuna
    from optuna.storages import RDBStorage

    url = url or f"sqlite:///{(runs_root / 'sweeps.sqlite').resolve()}"
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]  # SQLAlchemy 2.1 means psycopg 3 by default
    shown = short(url.split("@")[-1], 60)[1:-1]  # never the user name or password
    if re.fullmatch(r"sqlite(\+\w+)?://(/(:memory:)?)?", url):
        raise SweepStorageError(f"storage {shown}: an in-memory database is not shared by the sweep's processes; "
                                "name a file (sqlite:///path/sweeps.sqlite)")
    connect = ({"timeout": 30} if url.startswith("sqlite") else
               {"connect_timeout": 10} if url.startswith("postgresql") else None)  # a dead host: 10 s, not minutes
    retry = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
             or optuna.storages.RetryFailedTrialCallback)
    grace = heartbeat_grace()
    for attempt in range(4):
        try:
            with _creating_tables(url, connect), warnings.catch_warnings():
                # Optuna calls its heartbeat experimental; it is what fails dead trials
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=grace // 3, grace_period=grace,
                                  heartbeat_stale_trial_callback=retry(max_retry=1),
                                  engine_kwargs={"connect_args": connect} if connect else None)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors share no base with ours
            detail = " ".join(str(getattr(e, "orig", None) or e).split())[:200] or type(e).__name__
            if attempt < 3 and any(race in detail.lower() for race in RACES):
                time.sleep(0.5 * (attempt + 1))  # the other creator has finished by then: its tables are read
                continue
            raise SweepStorageError(f"storage {shown}: cannot open it: {detail}") from None


@contextmanager
def _creating_tables(url: str, connect: dict | None):
    """Holds every other process that opens ``url`` off while this one creates or checks Optuna's tables (two
    creators at once collide on the same names): on PostgreSQL an advisory lock, held by a connection of its own
    and released when it closes (a process that dies releases it); on SQLite a lock file beside the database
    (this host's processes); elsewhere nothing, and the retries in storage_for remain."""
    import sqlalchemy

    where = sqlalchemy.engine.make_url(url)
    if where.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(where, poolclass=sqlalchemy.pool.NullPool, connect_args=connect or {})
        try:
            with engine.connect() as conn:
                lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
                _wait_for(lambda: conn.execute(lock, {"key": TABLES_LOCK}).scalar())
                yield
        finally:
            engine.dispose()
        return
    fd = None
    if where.get_backend_name() == "sqlite" and fcntl is not None and where.database:
        database = Path(where.database)
        with suppress(OSError):  # a folder that cannot hold the lock file: the retries remain
            fd = os.open(database.parent / f".{database.name}.init-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fd is not None:
            _wait_for(lambda: _flocked(fd))
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _flocked(fd: int) -> bool:
    """Whether this process now holds the lock file's lock (also true where the file system has no locks:
    the retries remain there)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def _wait_for(taken) -> None:
    """Calls ``taken`` until it returns true, for up to OPEN_PATIENCE_S (a creator that hangs is named)."""
    deadline = time.monotonic() + OPEN_PATIENCE_S
    while not taken():
        if time.monotonic() > deadline:
            raise TimeoutError(f"another process has been creating its tables for {OPEN_PATIENCE_S:.0f} s")
        time.sleep(0.05)


def make_pruner(space: Space):
    """Median: stop a trial whose tested accuracy is below the median of earlier trials at the same
    epoch, from 40% of the base's epochs on. Hyperband: successive halving in brackets, the epoch as
    the resource, from the base's test interval up to the longest trial seen (``auto``)."""
    import optuna

    if space.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.pruner == "hyperband":
        eval_every = int(base_run(space)["train"].get("eval_every", 1))
        return optuna.pruners.HyperbandPruner(min_resource=max(1, eval_every), max_resource="auto", reduction_factor=3)
    # no verdict before 40% of the schedule: early in a one-cycle run the higher learning rates trail
    # (the fast recipe's own settings were pruned at epoch 2 of 10 by a one-epoch warm-up, 2026-11-25)
    warmup = max(1, int(0.4 * int(base_run(space)["train"].get("epochs", 1))))
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)


def study_for(space: Space, storage, name: str | None):
    """The study (created or joined); its objectives are kept with it, so readers know its axes."""
    import optuna

    directions = ["maximize"] if len(space.objectives) == 1 else ["maximize", "minimize"]
    study = optuna.create_study(study_name=check_study_name(name or space.name), storage=storage, directions=directions,
                                pruner=make_pruner(space), load_if_exists=True)
    if "objectives" not in study.user_attrs:
        study.set_user_attr("objectives", list(space.objectives))
    return study


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (fewer x, more accuracy), by x.
    The sweep's front: for each size or time, the best accuracy reached with no more of it."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def run_share(space_path: str, trials: int, storage_url: str | None, study_name: str | None, data_source: str,
              runs: str | None, device: str = "cpu") -> list[int]:
    """This process's ``trials`` trials of the study; the trial numbers that finished."""
    import optuna

    from ..training.data import load_dataset

    space = load_space(space_path)
    store = RunStore(runs)
    data = load_dataset(data_source, mmap_train=True)
    if data.skipped:  # this process's own command line, or its log as a worker
        print(f"warning: {data.skipped_note()}", file=sys.stderr)
    study = study_for(space, storage_for(storage_url, store.root), study_name)
    sweep = Sweep(space, store, data_source, list(data.classes), data.x_test.shape[1:], device)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(sweep.objective, n_trials=trials, catch=(RuntimeError,))
    return sweep.finished


def studies(store: RunStore, url: str | None = None) -> list[str]:
    """Study names in ``url``, or in the runs folder's default storage (none if no sweep ran there)."""
    import optuna

    if url is None and not (store.root / "sweeps.sqlite").exists():
        return []
    storage = storage_for(url, store.root)
    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception as e:  # noqa: BLE001 - a file damaged after it was opened: SQLAlchemy's errors
        raise _unreadable(store, url, e) from None


def _where(store: RunStore, url: str | None) -> str:
    return str(store.root / "sweeps.sqlite") if url is None else short(url.split("@")[-1], 60)[1:-1]


def _unreadable(store: RunStore, url: str | None, e: Exception) -> SweepStorageError:
    """A storage that opened but cannot be read (damaged after it was opened: SQLAlchemy's errors)."""
    return SweepStorageError(f"{_where(store, url)}: {' '.join(str(e).split())[:200]}")


def references(axis: str = "params") -> list[dict]:
    """Points to read a sweep against: the seed presets at their reported accuracy and the recipes
    at their measured one (``axis`` "minutes": only the recipes, whose wall time is measured). Each has a
    ``label`` (the preset or recipe) and a ``name`` that says where its accuracy comes from; ``measured``
    tells the two kinds apart."""
    from ..specs.presets import PRESETS
    from ..specs.recipes import RECIPES

    out = []
    if axis != "minutes":
        out += [{"name": f"{p.name} (reported)", "label": p.name, "measured": False, "x": getattr(trace(p.net), axis),
                 "accuracy": p.reported_accuracy / 100}
                for p in PRESETS.values() if p.reported_accuracy is not None and not any(
                    r.preset == p.name and r.measured for r in RECIPES.values())]
    for r in (r for r in RECIPES.values() if r.measured):
        t = trace(preset_net(r.preset))
        x = {"params": t.params, "macs": t.macs, "minutes": r.measured.wall_s / 60}[axis]
        out.append({"name": f"{r.name} recipe ({r.measured.where})", "label": r.name, "measured": True, "x": x,
                    "accuracy": r.measured.test_acc / 100})
    return out


def _load(store: RunStore, study_name: str, url: str | None = None):
    """A study of ``url`` (default: the runs folder's); SweepStorageError if it is gone or unreadable."""
    import optuna

    try:
        return optuna.load_study(study_name=study_name, storage=storage_for(url, store.root))
    except KeyError:
        raise SweepStorageError(f"no study {short(study_name, 80)} in {_where(store, url)}") from None
    except SweepStorageError:
        raise
    except Exception as e:  # noqa: BLE001 - see _unreadable
        raise _unreadable(store, url, e) from None


def study_objectives(store: RunStore, study_name: str) -> tuple[str, ...]:
    """What a study in the default storage optimises (``("accuracy",)`` for one made before this was kept)."""
    return tuple(_load(store, study_name).user_attrs.get("objectives", ["accuracy"]))


def why(t, attrs: dict) -> str:
    """Why a trial was pruned or failed, or which failed trial it retries; '' for the rest."""
    import optuna

    state, pruned_at = t.state, attrs.get("pruned_at")
    if state == optuna.trial.TrialState.PRUNED:
        return attrs.get("pruned_because") or (f"after epoch {pruned_at}" if pruned_at is not None else "pruned")
    if state == optuna.trial.TrialState.FAIL:
        return attrs.get("failed_because") or "its sweep process stopped (no heartbeat)"
    retry = t.system_attrs.get("failed_trial")
    return f"retry of trial {retry}" if retry is not None else ""


def trial_rows(store: RunStore, study_name: str, url: str | None = None) -> list[dict]:
    """One row per trial of a study: what the Sweep page, its chart and ``python -m playground trials`` show."""
    import optuna

    study, rows = _load(store, study_name, url), []
    for t in study.trials:
        # a queued retry carries its failed trial's attributes (its run is not this one's); None: reset
        attrs = {} if t.state == optuna.trial.TrialState.WAITING else t.user_attrs
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "accuracy": t.values[0] if t.values else attrs.get("last_acc"),
                     "params": attrs.get("params"), "macs": attrs.get("macs"), "minutes": attrs.get("minutes"),
                     "run": attrs.get("run_id") or "",
                     "why": why(t, attrs),
                     **{k: v for k, v in t.params.items()}})
    return rows


def start_sweep(space: Space, trials: int, workers: int, data_source: str, store: RunStore,
                study_name: str) -> subprocess.Popen:
    """The app's Start: ``python -m playground sweep`` as a child process (its output in the runs
    folder's logs), so the sweep outlives the page and the server never trains."""
    check_study_name(study_name)
    space_file = store.root / "logs" / f"sweep-{study_name}.space.json"
    space_file.parent.mkdir(parents=True, exist_ok=True)
    space_file.write_text(json.dumps({"name": space.name, "description": space.description, "base": space.base,
                                      "params": space.params, "objectives": list(space.objectives),
                                      "max_params": space.max_params, "rules": space.rules,
                                      "pruner": space.pruner}))
    argv, env = cli_child("sweep", "--space", str(space_file), "--trials", str(trials), "--workers", str(workers),
                          "--study", study_name, "--data", data_source, "--runs", str(store.root.resolve()))
    with open(store.root / "logs" / f"sweep-{study_name}.log", "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def load_study(store: RunStore, study_name: str, url: str | None = None):
    """A study to read (the Sweep page's Optuna plots), from ``url`` or the runs folder's storage;
    SweepStorageError if it is gone or unreadable."""
    return _load(store, study_name, url)
