"""The Train page's time estimate: this machine's speed for a net, measured once in a child process (it
trains a few batches; the web server trains nothing) and kept for the server's life, then scaled to the run."""
from __future__ import annotations

import json
import subprocess

import streamlit as st

from .. import cli_child
from ..specs.config import RunSpec
from ..specs.serde import SpecError
from ..training.estimate import Estimate, Speed, expected, speed_key

MEASURE_TIMEOUT_S = 120


@st.cache_resource(show_spinner=False)
def _speeds() -> dict[str, Speed]:
    """Every speed measured on this server, by ``speed_key``: one per net, augmentation and batch size."""
    return {}


def known(run: RunSpec, train_images: int, test_images: int) -> Estimate | None:
    """The estimate from a speed already measured, else None (nothing is measured here)."""
    speed = _speeds().get(speed_key(run))
    return expected(run, speed, train_images, test_images) if speed else None


def known_stored(spec: dict, train_images: int, test_images: int) -> Estimate | None:
    """``known`` for a stored run's spec; None for one this server's validator refuses (older limits)."""
    try:
        return known(RunSpec.from_dict(spec), train_images, test_images)
    except SpecError:
        return None


def measured(run: RunSpec, train_images: int, test_images: int) -> Estimate | str:
    """The estimate, measuring this net's speed first where it is not known yet; a one-line reason where the
    measurement fails (a net that does not build, a timeout)."""
    key = speed_key(run)
    if key not in _speeds():
        argv, env = cli_child("estimate")
        try:
            done = subprocess.run(argv, input=run.to_json(), capture_output=True, text=True, env=env,
                                  timeout=MEASURE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"measuring took over {MEASURE_TIMEOUT_S} s: this net trains very slowly here"
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            return lines[-1] if lines else "the measurement failed"
        _speeds()[key] = Speed(**json.loads(done.stdout.splitlines()[-1]))
    return known(run, train_images, test_images)
