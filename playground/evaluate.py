"""Analysis of a finished run: predictions, accuracies, confusion, misclassified
images and Grad-CAM."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .builder import build_model, last_conv
from .config import RunSpec
from .device import speed_settings
from .store import RunStore
from .trainer import predict


@dataclass
class LoadedRun:
    run: RunSpec
    model: nn.Module
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    epoch: int


def load_run(store: RunStore, run_id: str) -> LoadedRun:
    """Rebuild a run's model from its verified checkpoint (CheckpointError if damaged)."""
    state = store.load_checkpoint(run_id)
    run = RunSpec.from_dict(state["spec"])
    model = build_model(run.net)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return LoadedRun(run, model, state["classes"], tuple(state["mean"]), tuple(state["std"]), state["epoch"])


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
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")

    def confusion(self) -> np.ndarray:
        """Rows: true class, columns: predicted class."""
        n = len(self.classes)
        return np.bincount(self.labels * n + self.preds, minlength=n * n).reshape(n, n)

    def per_class(self) -> dict[str, float]:
        cm = self.confusion()
        totals = cm.sum(1)
        return {c: float(cm[i, i] / totals[i]) if totals[i] else float("nan") for i, c in enumerate(self.classes)}

    def losses(self) -> np.ndarray:
        return -np.log(np.clip(self.probs[np.arange(len(self.labels)), self.labels], 1e-12, None))

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
        return dict(accuracy=self.accuracy, per_class=self.per_class(), n=int(len(self.labels)))


def evaluate(loaded: LoadedRun, x: np.ndarray, y: np.ndarray, tta: bool = False,
             device: torch.device | None = None, shift: int = 0) -> Report:
    device = device or torch.device("cpu")
    model = loaded.model.to(device)
    probs = predict(model, x, _stats(loaded.mean, device), _stats(loaded.std, device), device,
                    speed_settings(device).eval_batch, tta=tta, shift=shift)
    return Report(probs.numpy(), np.asarray(y), loaded.classes)


def gradcam(loaded: LoadedRun, image: np.ndarray, target: int | None = None,
            layer: nn.Module | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM heat map in [0, 1] at image resolution, and the class it explains.

    It works on a private copy of the model (hooks, gradients): the app's sessions share one
    loaded run, and two maps computed at once must not see each other's hooks."""
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
