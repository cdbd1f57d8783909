"""Frozen whitening of the first convolution (airbench, Page's DAWNBench notes).

The first layer's filters are set, before training, to the principal directions of the training
images' patches scaled to unit variance, each with its negative (so a ReLU after it keeps both
signs), and are not trained. The net then starts from decorrelated input features, which is worth
most in short schedules. The rest of the net, the BN after the layer included, trains as usual.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PATCH_IMAGES = 2000  # enough for a stable 27x27 covariance
CHUNK_BYTES = 32 * 2 ** 20  # one chunk's patches, as float32 and float64 copies: bounded whatever the kernel
EPS = 5e-4  # airbench's: keeps the weakest directions from being blown up


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The conv of the first layer of the first block (a SpecNet's; not a skip's projection)."""
    return model.get_submodule(f"{model.block_names[0]}.0.conv")


@torch.no_grad()
def whitening_filters(x_uint8: np.ndarray, mean: torch.Tensor, std: torch.Tensor, conv: nn.Conv2d,
                      seed: int) -> torch.Tensor:
    """(out, C, k, k) filters: the top out/2 eigenvectors of the patch covariance of up to PATCH_IMAGES
    normalised training images (valid patches, the conv's dilation), over sqrt(eigenvalue + EPS), then
    their negatives."""
    pick = np.random.default_rng(seed).permutation(len(x_uint8))[:PATCH_IMAGES]
    k, d = conv.kernel_size, conv.dilation
    dims = conv.in_channels * k[0] * k[1]
    total, outer, count = torch.zeros(dims, dtype=torch.float64), torch.zeros(dims, dims, dtype=torch.float64), 0
    side = [n - di * (ki - 1) for n, di, ki in zip(x_uint8.shape[1:3], d, k)]  # valid patch positions per image
    step = max(1, CHUNK_BYTES // (side[0] * side[1] * dims * 16))  # 250 images for 3x3 on RGB took 45 MB; 15x15, 640
    for i in range(0, len(pick), step):
        xb = torch.from_numpy(np.ascontiguousarray(x_uint8[np.sort(pick[i:i + step])])).permute(0, 3, 1, 2)
        xb = (xb.float() - mean.cpu()) / std.cpu()
        patches = F.unfold(xb, k, dilation=d).transpose(1, 2).reshape(-1, dims).double()
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    centred = total / count
    cov = outer / count - torch.outer(centred, centred)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    half = conv.out_channels // 2
    top = (vectors[:, -half:] / (values[-half:].clamp_min(0) + EPS).sqrt()).T.flip(0)
    filters = top.reshape(half, conv.in_channels, k[0], k[1]).float()
    return torch.cat([filters, -filters])


@torch.no_grad()
def whiten_first_conv(model: nn.Module, x_uint8: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                      seed: int) -> None:
    """Set the first conv's filters to the whitening and freeze them (bias, if any, stays trainable);
    the run spec's validator has checked that the first layer can hold it (config.whitening_problem)."""
    conv = first_conv(model)
    conv.weight.copy_(whitening_filters(x_uint8, mean, std, conv, seed).to(conv.weight))
    conv.weight.requires_grad_(False)
