"""CIFAR-10 CNN Playground: specs, models, analysis, data, augmentation and training.

The package is built in stages that import one way only (tests/test_layers.py keeps it so):

    base -> specs -> training -> runs -> results -> app

- base: ``errors``, ``settings`` (every environment variable), ``atomic`` (file writes), ``faults``
  (the store's and the disk's faults in one line) and this module's ``cli_child``;
- specs/: the architecture, augmentation and training specs, their one validator, presets and recipes;
- training/: data, augmentation on batches, the model builder, the trainer, checkpoints as models;
- runs/: the run store, training workers and their lifecycle, teachers, sweeps;
- results/: evaluation of stored runs, exports and figures;
- app: the Streamlit layer (``app.py``, ``ui/``, the top-level pages/) and the CLI (``cli.py``), the
  only modules that read a visitor's or a command line's input, and the only ones that import streamlit.
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys


def cli_child(*args: str) -> tuple[list[str], dict[str, str]]:
    """Argv and environment that run ``python -m playground ARGS`` in a child process (a training
    worker, the data decoder), finding this package even when it is not installed."""
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    path = _os.pathsep.join(filter(None, [root, _os.environ.get("PYTHONPATH")]))
    return [_sys.executable, "-m", "playground", *args], {**_os.environ, "PYTHONPATH": path}
