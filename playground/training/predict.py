"""Predictions of a model on uint8 images: normalised as in training, in batches the tier allows, averaged
over the test-time-augmentation views; the trainer's test pass and every evaluation share it."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..specs import limits as limits_
from ..specs.arch import Net
from ..specs.geometry import trace
from .device import speed_settings


def normalize(x_uint8_nhwc: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in channels_last memory (a permute, no copy of layout)."""
    x = x_uint8_nhwc.permute(0, 3, 1, 2).to(dtype)
    return x.sub_(mean).div_(std)


def tta_view_count(flip: bool, shift: int = 0) -> int:
    """How many views ``tta_views`` yields per image: the evaluation's cost as a multiple of one pass."""
    return (2 if flip else 1) * (9 if shift else 1)


def tta_views(x: torch.Tensor, flip: bool, shift: int = 0) -> Iterator[torch.Tensor]:
    """The batch, its mirror image (``flip``) and, with ``shift``, each of those moved to the
    3x3 grid of offsets in {-shift, 0, shift}^2 px (reflect padding, as the training crops use)."""
    for view in ([x, torch.flip(x, dims=[3])] if flip else [x]):
        if not shift:
            yield view
            continue
        padded = F.pad(view, (shift,) * 4, mode="reflect")
        h, w = view.shape[-2:]
        for dy in (0, shift, 2 * shift):
            for dx in (0, shift, 2 * shift):
                yield padded[..., dy:dy + h, dx:dx + w]


def eval_batch_size(net: Net, device: torch.device) -> int:
    """The test pass's batch: the device's, but never more than the tier allows a training batch of
    ``net`` (its activation memory, estimated): at the CPU's 256, a wide net that hosted mode trains in
    batches of 13 would take 1.5 GiB of the web server's memory in one Results evaluation, past the demo's 1 GB."""
    lim = limits_.current()
    return min(speed_settings(device).eval_batch, trace(net, lim).batch_that_fits(lim))


@torch.inference_mode()
def predict(model: nn.Module, x: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device,
            batch: int = 1000, tta: bool = False, shift: int = 0, bf16: bool = False) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 NHWC images, averaged over the TTA views.

    ``bf16``: under bf16 autocast where the CPU has bf16 units, as a run that trained so is tested
    (the trainer and the Results page pass the run's own setting, so both agree)."""
    settings = speed_settings(device, bf16)
    model.eval()
    probs = []
    for i in range(0, len(x), batch):
        xb = normalize(torch.from_numpy(x[i:i + batch]).to(device), mean, std)
        with torch.autocast(device.type, settings.amp_dtype, enabled=settings.amp_dtype is not None):
            views = [model(v).float().softmax(1) for v in tta_views(xb, tta, shift)]
        probs.append((sum(views) / len(views)).cpu())
    return torch.cat(probs) if probs else torch.empty(0)
