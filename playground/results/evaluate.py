"""Analysis of a finished run: predictions, accuracies, confusion, misclassified
images and Grad-CAM.

A checkpoint is input like any other: ``load_run`` gets it from the store (which verifies
its hash and unpickles tensors and plain values only) and then checks that it is what it
claims, that its state dict fits its own spec key for key and shape for shape, its weights
are finite, its classes and statistics are well formed, and refuses anything else with a
one-line CheckpointError. ``check_data`` refuses data the run cannot be evaluated on
(other classes, another image size or channel count) with a one-line DataMismatch that
names both sides. ``Report.summary`` is strict JSON: an undefined value is None, never NaN.

Evaluations in the asking process (``budget=True``) take turns: on the hosted demo that process is
the web server, and two visitors evaluating at once would each get half its cores and together
hold twice the memory that ``eval_macs`` and the test batch size were sized for.
"""
from __future__ import annotations

import copy
import io
import math
import re
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runs.faults import CheckpointError
from ..runs.records import RunRecord
from ..runs.store import RunStore
from ..specs import limits as limits_
from ..specs.config import RunSpec
from ..specs.geometry import trace
from ..specs.serde import SpecError
from ..training.builder import build_model, last_conv
from ..training.data import decode_image
from ..training.sources import DataError
from ..training.trainer import eval_batch_size, predict, tta_view_count

CHECKPOINT_KEYS = ("spec", "state_dict", "classes", "mean", "std", "epoch")


class DataMismatch(CheckpointError):
    """The run and the data do not fit together (other classes, image size or channels); the
    message names both sides. A CheckpointError, so every caller that reports a run it cannot
    use in one line reports this too."""


class Busy(RuntimeError):
    """Another evaluation held this process for longer than a visitor should wait; one line."""


TURN = threading.Lock()  # one evaluation at a time in this process (the web server, on the demo)
TURN_WAIT_S = 180.0  # eval_macs keeps one evaluation near a minute of a hosted server's CPU


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


def finite_or_none(v):
    """A float as itself, or None where it is NaN or infinite (strict JSON has no NaN)."""
    return float(v) if v is not None and math.isfinite(v) else None


def strict_json(value):
    """``value`` with every NaN or infinite float, however deep, replaced by None, so that
    ``json.dumps(..., allow_nan=False)`` succeeds."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _stats(values, device) -> torch.Tensor:
    return torch.tensor(values, device=device).view(1, 3, 1, 1) * 255


@dataclass
class Report:
    probs: np.ndarray  # (N, C)
    labels: np.ndarray
    classes: list[str]

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def accuracy(self) -> float:
        """NaN without test images (``summary`` says None)."""
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")

    def confusion(self) -> np.ndarray:
        """Rows: true class, columns: predicted class."""
        n = len(self.classes)
        return np.bincount(self.labels * n + self.preds, minlength=n * n).reshape(n, n)

    def per_class(self) -> dict[str, float]:
        """NaN for a class without test images (``summary`` says None)."""
        cm = self.confusion()
        totals = cm.sum(1)
        return {c: float(cm[i, i] / totals[i]) if totals[i] else float("nan") for i, c in enumerate(self.classes)}

    def losses(self) -> np.ndarray:
        """Cross-entropy per image; a NaN probability counts as 0 (the largest loss), never as NaN."""
        p = np.nan_to_num(self.probs[np.arange(len(self.labels)), self.labels], nan=0.0)
        return -np.log(np.clip(p, 1e-12, None))

    def misclassified(self, sort: str = "loss", true_class: int | None = None,
                      pred_class: int | None = None) -> np.ndarray:
        """Indices of wrong predictions, filtered, most-wrong first (by loss or by confidence)."""
        wrong = np.flatnonzero(self.preds != self.labels)
        if true_class is not None:
            wrong = wrong[self.labels[wrong] == true_class]
        if pred_class is not None:
            wrong = wrong[self.preds[wrong] == pred_class]
        key = self.losses()[wrong] if sort == "loss" else self.probs[wrong].max(1)
        return wrong[np.argsort(-key, kind="stable")]

    def summary(self) -> dict:
        """Accuracy, per-class accuracy and the number of images, as strict JSON: None where undefined."""
        return strict_json(dict(accuracy=self.accuracy, per_class=self.per_class(), n=int(len(self.labels))))


def check_cost(loaded: LoadedRun, images: int, tta: bool, shift: int) -> None:
    """Refuse (SpecError, one line) an evaluation over the tier's ``eval_macs``: it runs in the asking
    process, which for the Results page is the web server that every visitor shares."""
    lim = limits_.current()
    macs, views = trace(loaded.run.net, lim).macs, tta_view_count(tta, shift)
    what = (f"evaluating {loaded.label} ({images:,} images × {views} TTA view{'s' * (views != 1)} × "
            f"{macs:,} MACs)")
    if problem := limits_.exceeded(what, images * views * macs, lim, "eval_macs", " multiply-accumulates"):
        raise SpecError([f"eval_macs: {problem}; use fewer TTA views" if views > 1 else f"eval_macs: {problem}"])


def evaluate(loaded: LoadedRun, x: np.ndarray, y: np.ndarray, tta: bool = False,
             device: torch.device | None = None, shift: int = 0,
             classes: Sequence[str] | None = None, budget: bool = True) -> Report:
    """Predictions on ``x``; DataMismatch first if the images, the labels or (given) the data's
    ``classes`` are not what the run was trained on, and with ``budget`` (everywhere but inside a
    training's worker, which its slot bounds) a SpecError where ``check_cost`` refuses the work and
    a turn after any other budgeted evaluation in this process (Busy after ``TURN_WAIT_S``)."""
    check_data(loaded, x, y, classes)
    if budget:
        check_cost(loaded, len(x), tta, shift)
    device = device or torch.device("cpu")
    model = loaded.model.to(device)
    if budget and not TURN.acquire(timeout=TURN_WAIT_S):
        raise Busy(f"the server has been evaluating other runs for {TURN_WAIT_S:.0f} s; try again in a minute")
    try:
        probs = predict(model, x, _stats(loaded.mean, device), _stats(loaded.std, device), device,
                        eval_batch_size(loaded.run.net, device), tta=tta, shift=shift,
                        bf16=loaded.run.train.bf16).numpy()
    finally:
        if budget:
            TURN.release()
    if len(probs) == 0:
        probs = np.zeros((0, len(loaded.classes)), np.float32)
    return Report(probs, np.asarray(y, dtype=np.int64), loaded.classes)


def gradcam(loaded: LoadedRun, image: np.ndarray, target: int | None = None,
            layer: nn.Module | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM heat map in [0, 1] at image resolution, and the class it explains.

    It works on a private copy of the model (hooks, gradients): the app's sessions share one
    loaded run, and two maps computed at once must not see each other's hooks."""
    check_data(loaded, np.asarray(image)[None])
    model = copy.deepcopy(loaded.model).float().eval()
    layer = last_conv(model) if layer is None else dict(zip(loaded.model.modules(), model.modules()))[layer]
    store: dict = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    try:
        x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
        x = (x - _stats(loaded.mean, "cpu")) / _stats(loaded.std, "cpu")
        with torch.enable_grad():
            logits = model(x)
            target = int(logits.argmax(1)) if target is None else int(target)
            logits[0, target].backward()
    finally:
        handle.remove()
    act, grad = store["act"], store["act"].grad
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].detach()
    cam = cam - cam.min()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam.numpy(), target


def accuracy_note(record: RunRecord, epoch: int, accuracy: float, n_test: int, tta: bool, shift: int, source: str) -> str:
    """Why this accuracy is, or is not, the one the run recorded: the checkpoint holds the last epoch
    (the run list shows the best), and the test set and the TTA views may differ from the run's."""
    train = record.spec.get("train", {})
    recorded = next((e.get("test_acc") for e in record.epochs if e.get("epoch") == epoch), None)
    if recorded is None:
        return f"Epoch {epoch} recorded no test accuracy."
    if abs(accuracy - recorded) < 5e-4:
        note = f"Equal to the accuracy the run recorded at epoch {epoch}."
    else:
        why = []
        if (tta, shift) != (bool(train.get("tta")), int(train.get("tta_shift", 0))):
            why.append("the TTA views above differ from the run's")
        if train.get("test_subset") and train["test_subset"] < n_test:
            why.append(f"the run tested on {train['test_subset']:,} random images, this is all {n_test:,}")
        if record.spec.get("data") and record.spec["data"] != source:
            why.append("the run was tested on another data source")
        note = (f"The run recorded {recorded:.2%} at epoch {epoch}" +
                (f"; the difference: {'; '.join(why)}." if why else " (the same images and views: a difference "
                 "this small comes from the order of floating-point sums in another batch size)."))
    if record.best_acc and record.best_acc > recorded + 5e-4:
        best = max(record.epochs, key=lambda e: e.get("test_acc") or 0)
        note += (f" Its best, {record.best_acc:.2%} at epoch {best['epoch']}, is what the run list shows; the "
                 f"checkpoint holds the last epoch.")
    return note


MAX_PHOTO_BYTES = 10_000_000


def classify_photo(loaded: LoadedRun, raw: bytes, k: int = 3, tta: bool = False
                   ) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """A visitor's photo as the data's images are made (RGB, resized to 32x32 bilinearly), and the
    run's top ``k`` classes with their probabilities. DataError (one line) for a file that is too
    large or not a usable image."""
    if len(raw) > MAX_PHOTO_BYTES:
        raise DataError(f"the photo is {len(raw) / 1e6:.1f} MB; the limit is {MAX_PHOTO_BYTES / 1e6:.0f} MB")
    image, why = decode_image(io.BytesIO(raw))
    if image is None:
        raise DataError(f"the photo cannot be used: {why}")
    net = loaded.run.net
    if (net.in_channels, net.input_size) != (3, 32):
        raise DataError(f"this run's net takes {net.input_size}×{net.input_size} with {net.in_channels} channel(s); "
                        f"photos are read as 32×32 RGB")
    probs = evaluate(loaded, image[None], np.zeros(1, np.int64), tta=tta).probs[0]
    top = np.argsort(-probs)[:k]
    return image, [(loaded.classes[i], float(probs[i])) for i in top]


def disagreements(a: Report, b: Report) -> tuple[np.ndarray, np.ndarray]:
    """Test images that run A gets right and run B gets wrong, and the reverse (indices), each
    sorted by how sure the wrong run was. Both reports must be on the same test images."""
    if len(a.labels) != len(b.labels) or not np.array_equal(a.labels, b.labels) or a.classes != b.classes:
        raise DataError("the two runs were evaluated on different test images or classes; compare runs on the "
                         "same data")
    a_right, b_right = a.preds == a.labels, b.preds == b.labels
    only_a, only_b = np.flatnonzero(a_right & ~b_right), np.flatnonzero(b_right & ~a_right)
    return only_a[np.argsort(-b.probs[only_a].max(1))], only_b[np.argsort(-a.probs[only_b].max(1))]
