"""Analysis of a finished run: predictions, accuracies, confusion, misclassified
images and Grad-CAM. ``Report.summary`` is strict JSON: an undefined value is None, never NaN.

Evaluations in the asking process (``budget=True``) take turns: on the hosted demo that process is
the web server, and two visitors evaluating at once would each get half its cores and together
hold twice the memory that ``eval_macs`` and the test batch size were sized for.
"""
from __future__ import annotations

import copy
import io
import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runs.records import RunRecord
from ..specs import limits as limits_
from ..specs.geometry import trace
from ..specs.serde import SpecError
from ..training.builder import last_conv
from ..training.checkpoint import LoadedRun, channel_stats, check_data, probabilities
from ..training.data import decode_image
from ..training.sources import DataError
from ..training.predict import tta_view_count

class Busy(RuntimeError):
    """Another evaluation held this process for longer than a visitor should wait; one line."""


TURN = threading.Lock()  # one evaluation at a time in this process (the web server, on the demo)
TURN_WAIT_S = 180.0  # eval_macs keeps one evaluation near a minute of a hosted server's CPU


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
    if budget and not TURN.acquire(timeout=TURN_WAIT_S):
        raise Busy(f"the server has been evaluating other runs for {TURN_WAIT_S:.0f} s; try again in a minute")
    try:
        probs = probabilities(loaded, x, device or torch.device("cpu"), tta=tta, shift=shift)
    finally:
        if budget:
            TURN.release()
    return Report(probs, np.asarray(y, dtype=np.int64), loaded.classes)


def gradcam(loaded: LoadedRun, image: np.ndarray, target: int | None = None,
            layer: nn.Module | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM heat map in [0, 1] at image resolution, and the class it explains (the predicted one by default)."""
    cams, targets = gradcams(loaded, np.asarray(image)[None], None if target is None else [target], layer)
    return cams[0], int(targets[0])


def gradcams(loaded: LoadedRun, images: np.ndarray, targets=None, layer: nn.Module | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N, H, W) in [0, 1], each scaled to its own maximum, for a batch of uint8 images in one
    forward and backward pass, and the classes they explain (the predicted ones by default). In eval mode no
    image's map depends on another's.

    It works on a private copy of the model (hooks, gradients): the app's sessions share one
    loaded run, and two maps computed at once must not see each other's hooks."""
    check_data(loaded, images)
    model = copy.deepcopy(loaded.model).float().eval()
    layer = last_conv(model) if layer is None else dict(zip(loaded.model.modules(), model.modules()))[layer]
    store: dict = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    try:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        x = (x - channel_stats(loaded.mean, "cpu")) / channel_stats(loaded.std, "cpu")
        with torch.enable_grad():
            logits = model(x)
            chosen = logits.argmax(1) if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.long)
            logits.gather(1, chosen[:, None]).sum().backward()  # each image's own class, summed: one backward
    finally:
        handle.remove()
    act, grad = store["act"], store["act"].grad
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0].detach()
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), cam)
    return cam.numpy(), chosen.numpy()


def accuracy_note(record: RunRecord, epoch: int, accuracy: float, n_test: int, tta: bool, shift: int,
                  source: str) -> str:
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


def read_photo(raw: bytes) -> np.ndarray:
    """A visitor's photo as the data's images are made (RGB, resized to 32x32 bilinearly); DataError (one
    line) for a file that is too large or not a usable image."""
    if len(raw) > MAX_PHOTO_BYTES:
        raise DataError(f"the photo is {len(raw) / 1e6:.1f} MB; the limit is {MAX_PHOTO_BYTES / 1e6:.0f} MB")
    image, why = decode_image(io.BytesIO(raw))
    if image is None:
        raise DataError(f"the photo cannot be used: {why}")
    return image


def classify_photo(loaded: LoadedRun, raw: bytes, k: int = 3, tta: bool = False
                   ) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """A visitor's photo (``read_photo``) and the run's top ``k`` classes with their probabilities."""
    image = read_photo(raw)
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
