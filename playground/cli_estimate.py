"""The time a training will take, before it starts: ``train --estimate`` for the flags' run on its data, and
``estimate`` for the app, which sends a run spec on stdin (a child process measures: it trains a few batches)."""
from __future__ import annotations

import json
import sys

from .cli_specs import checked_run


def cmd_train_estimate(args) -> int:
    """One JSON line: this machine's speed for the flags' run, its expected epoch and run times, and the CPU."""
    from .training.bench import cpu_description
    from .training.estimate import expected, measure

    run, data = checked_run(args)
    speed = measure(run)
    estimate = expected(run, speed, len(data.y_train), len(data.y_test))
    print(json.dumps({**speed.__dict__, **estimate.to_dict(), "epochs": run.train.epochs,
                      "cpu": cpu_description()}))
    return 0


def cmd_estimate(args) -> int:
    """The app's child: a RunSpec as JSON on stdin (validated as every entry is), its speed as one JSON line."""
    from .settings import hosted
    from .specs.config import RunSpec
    from .training.device import return_memory_eagerly
    from .training.estimate import measure

    run = RunSpec.from_json(sys.stdin.read())
    if hosted():  # as the hosted worker trains
        return_memory_eagerly()
    print(json.dumps(measure(run).__dict__))
    return 0
