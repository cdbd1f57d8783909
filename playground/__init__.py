"""CIFAR-10 CNN Playground: specs, models, analysis, data, augmentation and training.

The core modules never import streamlit; the app (playground/app.py, pages/)
and the CLI (``python -m playground``) are thin layers over them.
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
