"""A run's checkpoint as a model: ``from_checkpoint`` checks that a checkpoint is what it claims (its
state dict fits its own spec key for key and shape for shape, its weights are finite, its classes and
statistics are well formed) and refuses anything else with a one-line CheckpointError; ``check_data``
refuses data the run cannot be evaluated on with a one-line DataMismatch that names both sides;
``probabilities`` is the model's prediction on images, as every evaluation makes it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..faults import CheckpointError
from ..specs.config import RunSpec
from ..specs.serde import SpecError
from .builder import build_model
from .predict import eval_batch_size, predict

CHECKPOINT_KEYS = ("spec", "state_dict", "classes", "mean", "std", "epoch")


class DataMismatch(CheckpointError):
    """The run and the data do not fit together (other classes, image size or channels); the
    message names both sides. A CheckpointError, so every caller that reports a run it cannot
    use in one line reports this too."""


@dataclass
class LoadedRun:
    run: RunSpec
    model: nn.Module
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    epoch: int
    run_id: str = ""

    @property
    def label(self) -> str:
        return f"run {self.run_id}" if self.run_id else f"the run ({self.run.net.name})"


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a message, at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def short_load_error(message: str, path) -> str:
    """torch's refusal to unpickle code is a page of advice; the user needs what it refused."""
    if "Weights only load failed" in message:
        found = re.search(r"GLOBAL ([\w.]+)", message)
        what = f" ({found.group(1)[:80]})" if found else ""
        return (f"checkpoint {path} cannot be read: it holds objects other than tensors and plain values{what}, "
                f"which are never unpickled")
    return one_line(message)


def _names(classes: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(str(c)[:30] for c in list(classes)[:n])
    return shown + (", …" if len(classes) > n else "")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def from_checkpoint(state, run_id: str = "", where: str = "the checkpoint") -> LoadedRun:
    """A LoadedRun from a checkpoint's contents, after checking every part of them."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} is not a checkpoint (it holds a {type(state).__name__}, not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{where} is not a checkpoint of this playground (it lacks {', '.join(missing)})")
    try:
        run = RunSpec.from_dict(state["spec"])
        model = build_model(run.net)
    except SpecError as e:
        raise CheckpointError(f"{where} holds an invalid spec: {one_line('; '.join(e.problems))}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{where} holds an unreadable spec: {type(e).__name__}: {one_line(e)}") from None
    check_state_dict(model, state["state_dict"], where)
    classes, mean, std, epoch = state["classes"], state["mean"], state["std"], state["epoch"]
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{where} has no list of class names")
    if len(classes) != run.net.num_classes:
        raise CheckpointError(f"{where} names {len(classes)} classes but its net predicts {run.net.num_classes}")
    for name, stats in (("mean", mean), ("std", std)):
        if (not isinstance(stats, (list, tuple)) or len(stats) != 3 or not all(_is_number(v) for v in stats)
                or (name == "std" and min(stats) <= 0)):
            raise CheckpointError(f"{where} has no valid channel {name} (three finite numbers"
                                  f"{', above 0' if name == 'std' else ''})")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise CheckpointError(f"{where} has no valid epoch number")
    return LoadedRun(run, model.eval(), list(classes), tuple(float(v) for v in mean),
                     tuple(float(v) for v in std), epoch, run_id)


def check_state_dict(model: nn.Module, weights, where: str) -> None:
    """Load ``weights`` into ``model`` only if they are its exact keys and shapes, all finite."""
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise CheckpointError(f"{where} holds no state dict of named tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        parts = ([f"missing {len(missing)} ({_names(missing)})"] if missing else []) + (
            [f"{len(extra)} not in the spec ({_names(extra)})"] if extra else [])
        raise CheckpointError(f"{where} does not fit its spec's net: weights {'; '.join(parts)}")
    for k, v in weights.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{where} does not fit its spec's net: {k[:60]} is {tuple(v.shape)}, "
                                  f"the net has {tuple(expected[k].shape)}")
        if v.is_floating_point() != expected[k].is_floating_point() or v.is_complex():
            raise CheckpointError(f"{where} does not fit its spec's net: {k[:60]} is {v.dtype}, "
                                  f"the net has {expected[k].dtype}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{where} holds weights that are not finite (NaN or inf in {k[:60]}); "
                                  f"the run diverged")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, ValueError, TypeError) as e:  # not expected after the checks above; still one line
        raise CheckpointError(f"{where} cannot be loaded into its spec's net ({one_line(e)})") from None


def check_data(loaded: LoadedRun, x: np.ndarray | None = None, y: np.ndarray | None = None,
               classes: Sequence[str] | None = None) -> None:
    """DataMismatch (one line, naming both sides) unless ``loaded`` can be evaluated on images
    ``x`` (N, H, W, C) with labels ``y`` of the data's ``classes``; each is checked if given."""
    net, who = loaded.run.net, loaded.label
    run_classes = f"{len(loaded.classes)} classes ({_names(loaded.classes)})"
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(classes) != len(loaded.classes):
            raise DataMismatch(f"{who} was trained on {run_classes}; this data has {len(classes)} "
                               f"({_names(classes)})")
        diff = next((i for i, (a, b) in enumerate(zip(loaded.classes, classes)) if a != b), None)
        if diff is not None:
            raise DataMismatch(f"{who} was trained on {run_classes}; this data has {len(classes)} "
                               f"({_names(classes)}): class {diff} is {loaded.classes[diff][:30]!r} in the run "
                               f"and {classes[diff][:30]!r} in the data")
    if x is not None:
        want = (net.input_size, net.input_size, net.in_channels)
        shape = tuple(np.shape(x))
        if len(shape) != 4 or shape[1:] != want:
            has = (f"{shape[1]}x{shape[2]} images with {shape[3]} channel(s)" if len(shape) == 4
                   else f"an array of shape {shape}, not images")
            raise DataMismatch(f"{who} takes {want[0]}x{want[1]} images with {want[2]} channel(s); "
                               f"this data has {has}")
    if y is not None and len(y):
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataMismatch(f"{who} needs one integer label per image; this data's labels are "
                               f"{y.dtype} of shape {y.shape}")
        if (x is not None and len(y) != len(x)) or y.min() < 0 or y.max() >= len(loaded.classes):
            raise DataMismatch(f"{who} was trained on {run_classes}; this data has "
                               + (f"{len(x)} images and {len(y)} labels" if x is not None and len(y) != len(x)
                                  else f"labels from {int(y.min())} to {int(y.max())}"))


def channel_stats(values, device) -> torch.Tensor:
    """A checkpoint's channel mean or std as the (1, 3, 1, 1) tensor, in pixel units, that normalises a batch."""
    return torch.tensor(values, device=device).view(1, 3, 1, 1) * 255


def probabilities(loaded: LoadedRun, x: np.ndarray, device: torch.device, tta: bool = False,
                  shift: int = 0) -> np.ndarray:
    """The run's class probabilities on images ``x`` (N, H, W, C uint8), (N, classes) float32."""
    model = loaded.model.to(device)
    probs = predict(model, x, channel_stats(loaded.mean, device), channel_stats(loaded.std, device), device,
                    eval_batch_size(loaded.run.net, device), tta=tta, shift=shift,
                    bf16=loaded.run.train.bf16).numpy()
    return probs if len(probs) else np.zeros((0, len(loaded.classes)), np.float32)
