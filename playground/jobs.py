"""Background training jobs for the app: a thread-safe registry that owns the
threads, enforces one job per browser session and a server-wide cap, and keeps
each job's progress for the UI to poll. No Streamlit here.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from .config import RunSpec, checked
from .data import Dataset
from .device import pick_device
from .distill import load_teachers
from .evaluate import LoadedRun
from .runner import create_run, execute
from .store import RunStore
from .trainer import Event

DEFAULT_MAX_JOBS = 2


class JobError(RuntimeError):
    """A job cannot be started (busy server, a job already running in this session)."""


@dataclass
class Job:
    id: str
    session: str
    run_id: str
    run: RunSpec
    status: str = "starting"  # starting, running, finished, stopped, failed
    message: str = ""
    started: float = field(default_factory=time.time)
    steps: int = 0
    step: int = 0
    img_per_s: float = 0.0
    batches: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    @property
    def progress(self) -> float:
        return self.step / self.steps if self.steps else 0.0

    @property
    def eta(self) -> float | None:
        elapsed = time.time() - self.started
        return elapsed / self.progress * (1 - self.progress) if 0 < self.progress < 1 else None

    def on_event(self, event: Event) -> None:
        d = event.data
        with self.lock:
            if event.kind == "teachers":  # before "start": can take a minute per teacher on a CPU
                self.message = f"computing {d['count']} teachers' predictions on {d['images']:,} training images"
            elif event.kind == "start":
                self.status, self.steps, self.message = "running", d["steps"], ""
            elif event.kind == "batch":
                self.step, self.img_per_s = d["step"], d["img_per_s"]
                self.batches.append({k: d[k] for k in ("step", "epoch", "loss", "acc", "lr")})
            elif event.kind == "epoch":
                self.epochs.append({k: v for k, v in d.items() if k != "model"})
            elif event.kind == "end":
                self.status, self.message = d["status"], d["message"]

    def snapshot(self) -> dict:
        """A consistent copy for the UI thread."""
        with self.lock:
            return dict(id=self.id, run_id=self.run_id, status=self.status, message=self.message,
                        progress=self.progress, step=self.step, steps=self.steps, img_per_s=self.img_per_s,
                        eta=self.eta, batches=list(self.batches), epochs=list(self.epochs),
                        name=self.run.net.name, elapsed=time.time() - self.started)

    def request_stop(self) -> bool:
        """Ask the trainer to stop after the current batch; False if the job already ended."""
        if not self.active:
            return False
        self.stop_event.set()
        return True


def max_jobs() -> int:
    return int(os.environ.get("PLAYGROUND_MAX_JOBS", DEFAULT_MAX_JOBS))


class JobRegistry:
    def __init__(self, store_root: str | None = None, limit: int | None = None):
        self.store = RunStore(store_root)
        self.limit = limit if limit is not None else max_jobs()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def active_for(self, session: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.session == session and j.active), None)

    def start(self, session: str, run: RunSpec, data: Dataset) -> Job:
        checked(run)
        pick_device(run.train.device)  # fail now, in the page, not in the thread
        teachers = load_teachers(self.store, run.train.teachers, run.data, list(data.classes))
        with self._lock:
            active = [j for j in self._jobs.values() if j.active]
            mine = next((j for j in active if j.session == session), None)
            if mine is not None:
                raise JobError(f"a training job ({mine.run.net.name}, run {mine.run_id}) is already running in "
                               f"this session; stop it or wait for it to finish")
            if len(active) >= self.limit:
                raise JobError(f"the server is busy: {len(active)} of {self.limit} training slots are in use; "
                               f"try again when a run finishes")
            run_id = create_run(self.store, run, data, run.train.device)
            job = Job(secrets.token_hex(4), session, run_id, run)
            self._jobs[job.id] = job
        thread = threading.Thread(target=self._work, args=(job, data, teachers), daemon=True,
                                  name=f"train-{job.id}")
        thread.start()
        return job

    def _work(self, job: Job, data: Dataset, teachers: list[LoadedRun]) -> None:
        try:
            execute(self.store, job.run, data, [job.on_event], job.stop_event, run_id=job.run_id,
                    teachers=teachers)
        except Exception as e:  # noqa: BLE001 - the page shows it
            with job.lock:
                job.status, job.message = "failed", f"{type(e).__name__}: {e}"
            self.store.finish(job.run_id, "failed", job.message)  # also when it failed before training began

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        """For tests and the CLI-like callers: block until the job ends."""
        job = self.get(job_id)
        end = time.time() + timeout
        while job is not None and job.active and time.time() < end:
            time.sleep(0.05)
        return job
