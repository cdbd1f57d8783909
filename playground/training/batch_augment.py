"""The training-time path of an augmentation spec: whole uint8 batches at once.

Albumentations stays the source of truth (the preview, the export and the reference
benchmark use it), but calling it per image costs ~170 us of Python overhead for the
seeds' three transforms, most of an epoch's CPU budget beside a small network. Here
each transform samples its parameters for the whole batch with numpy, from the same
distributions Albumentations 2.x draws from (read off its source, same arguments), and
applies them with the same OpenCV kernels. Transforms without a batched version run
per image through Albumentations, in spec order. Flip, pad-and-crop and CoarseDropout also
apply their draws with torch ops (``on_device``), so on a GPU the whole dataset stays there
as one uint8 tensor and no image passes through host Python; same seed, same pixels. tests/test_batch_augment.py checks
pixel equality for given parameters and equal output distributions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import albumentations as A
import cv2
import numpy as np
import torch

from ..specs.augment import AugSpec, Call, albumentations_calls, checked_aug, instantiate

Where = tuple[np.ndarray, int]  # a batch's indices into the training set, and its epoch (from 1)
_NP_BORDER = {cv2.BORDER_REFLECT_101: "reflect", cv2.BORDER_REPLICATE: "edge"}


def affine_matrices(tx: np.ndarray, ty: np.ndarray, scale: np.ndarray, rotate_deg: np.ndarray,
                    height: int, width: int) -> np.ndarray:
    """(k, 2, 3) matrices equal to Albumentations' create_affine_transformation_matrix
    (no shear, keep_ratio): scale and rotate about the pixel centre, then translate."""
    rad = np.deg2rad(rotate_deg % 360)
    a, b = np.cos(rad) * scale, np.sin(rad) * scale
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    m = np.empty((len(tx), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a, b, -b, a
    m[:, 0, 2] = cx + tx - (a * cx + b * cy)
    m[:, 1, 2] = cy + ty - (-b * cx + a * cy)
    return m


def _chosen(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    return np.flatnonzero(rng.random(n) < p)


@dataclass
class Step:
    """One transform on a whole batch: ``draw`` takes every random number it needs from the batch's
    generator (in a fixed order; ``where``, the batch's image indices and epoch, when the source gives
    them), ``cpu`` applies them to a numpy batch with OpenCV/numpy, and
    ``device`` (where there is one) applies the same draws to a torch batch on the training device,
    so both paths give the same pixels for the same seed."""
    draw: Callable[[tuple[int, ...], np.random.Generator, "Where | None"], Any]
    cpu: Callable[[np.ndarray, Any], np.ndarray]
    device: Callable[[torch.Tensor, Any], torch.Tensor] | None = None


def _index(x: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(idx, device=x.device)


def _flip(kw: dict) -> Step:
    def cpu(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        x[idx] = x[idx, :, ::-1]
        return x

    def device(x: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        i = _index(x, idx)
        x[i] = x[i].flip(2)
        return x
    return Step(lambda shape, rng, where: _chosen(shape[0], kw["p"], rng), cpu, device)


def _alternating_flip(kw: dict, base: np.ndarray) -> Step:
    """airbench's alternating flip: image i is mirrored in epoch 1 if ``base[i]`` (drawn once with the
    flip's p) and in every later epoch the opposite of the one before, so any two epochs in a row show
    each image both ways (with p = 0.5) instead of a fresh coin each epoch."""
    def draw(shape: tuple[int, ...], rng: np.random.Generator, where: Where | None) -> np.ndarray:
        if where is None:
            raise ValueError("an alternating flip needs each batch's image indices and epoch")
        idx, epoch = where
        return np.flatnonzero(base[idx] ^ (epoch % 2 == 0))
    flip = _flip(kw)
    return Step(draw, flip.cpu, flip.device)


def _affine(kw: dict) -> Step:
    t_lo, t_hi = kw["translate_percent"]
    s_lo, s_hi = kw["scale"]
    r_lo, r_hi = kw["rotate"]

    def draw(shape: tuple[int, ...], rng: np.random.Generator, where=None):
        idx = _chosen(shape[0], kw["p"], rng)
        k, (h, w) = len(idx), shape[1:3]
        tx = (rng.uniform(t_lo, t_hi, k) * w).astype(int)  # Albumentations truncates: int(t * width)
        ty = (rng.uniform(t_lo, t_hi, k) * h).astype(int)
        return idx, affine_matrices(tx, ty, rng.uniform(s_lo, s_hi, k), rng.uniform(r_lo, r_hi, k), h, w)

    def cpu(x: np.ndarray, drawn) -> np.ndarray:
        (h, w) = x.shape[1:3]
        for i, m in zip(*drawn):
            x[i] = cv2.warpAffine(x[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=kw["border_mode"],
                                  borderValue=kw["fill"])
        return x
    return Step(draw, cpu)  # OpenCV's bilinear warp has no pixel-equal torch twin: CPU only


def _coarse_dropout(kw: dict) -> Step:
    n_lo, n_hi = kw["num_holes_range"]
    fill = np.asarray(kw["fill"], np.uint8)

    def draw(shape: tuple[int, ...], rng: np.random.Generator, where=None):
        idx = _chosen(shape[0], kw["p"], rng)
        h, w = shape[1:3]
        owner = np.repeat(idx, rng.integers(n_lo, n_hi + 1, len(idx)))
        hh = rng.integers(kw["hole_height_range"][0], min(kw["hole_height_range"][1], h) + 1, len(owner))
        ww = rng.integers(kw["hole_width_range"][0], min(kw["hole_width_range"][1], w) + 1, len(owner))
        y0, x0 = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
        return owner, y0, y0 + hh, x0, x0 + ww

    def cpu(x: np.ndarray, holes) -> np.ndarray:
        for i, a, b, c, d in zip(*holes):
            x[i, a:b, c:d] = fill
        return x

    def device(x: torch.Tensor, holes) -> torch.Tensor:
        owner, y0, y1, x0, x1 = (torch.as_tensor(v, device=x.device) for v in holes)
        if not len(owner):
            return x
        ys, xs = torch.arange(x.shape[1], device=x.device), torch.arange(x.shape[2], device=x.device)
        inside = (((ys >= y0[:, None]) & (ys < y1[:, None]))[:, :, None]
                  & ((xs >= x0[:, None]) & (xs < x1[:, None]))[:, None, :])  # (holes, H, W)
        mask = torch.zeros(x.shape[:3], dtype=torch.int32, device=x.device).index_add_(0, owner, inside.int())
        return torch.where(mask[..., None] > 0, torch.as_tensor(fill, device=x.device), x)
    return Step(draw, cpu, device)


def _pad_crop(kw: dict, children: list[Call]) -> Step:
    pad_kw, crop_kw = children[0][1], children[1][1]
    mode = _NP_BORDER.get(pad_kw["border_mode"])  # None: constant, the fill colour around the image
    fill = np.asarray(pad_kw["fill"], np.uint8)
    ph, pw, ch, cw = pad_kw["min_height"], pad_kw["min_width"], crop_kw["height"], crop_kw["width"]

    def draw(shape: tuple[int, ...], rng: np.random.Generator, where=None):
        idx = _chosen(shape[0], kw["p"], rng)
        h, w = shape[1:3]
        oy = (rng.random(len(idx)) * (max(ph, h) - ch + 1)).astype(int)
        ox = (rng.random(len(idx)) * (max(pw, w) - cw + 1)).astype(int)
        return idx, oy, ox

    def cpu(x: np.ndarray, drawn) -> np.ndarray:
        idx, oy, ox = drawn
        h, w = x.shape[1:3]
        top, left = (ph - h) // 2, (pw - w) // 2  # position="center"
        if mode is None:
            padded = np.empty((len(idx), ph, pw, x.shape[3]), np.uint8)
            padded[:] = fill
            padded[:, top:top + h, left:left + w] = x[idx]
        else:
            padded = np.pad(x[idx], ((0, 0), (top, ph - h - top), (left, pw - w - left), (0, 0)), mode=mode)
        for j, i in enumerate(idx):
            x[i] = padded[j, oy[j]:oy[j] + ch, ox[j]:ox[j] + cw]
        return x

    def device(x: torch.Tensor, drawn) -> torch.Tensor:
        """The crop read straight from the image: each output pixel's source row and column, reflected,
        clamped (edge) or marked outside (constant), gathered in one indexing op; no padded copy."""
        idx, oy, ox = drawn
        if not len(idx):
            return x
        h, w, dev = x.shape[1], x.shape[2], x.device
        top, left = (ph - h) // 2, (pw - w) // 2
        rows = torch.as_tensor(oy - top, device=dev)[:, None] + torch.arange(ch, device=dev)  # (k, ch)
        cols = torch.as_tensor(ox - left, device=dev)[:, None] + torch.arange(cw, device=dev)
        if mode == "reflect":  # numpy's reflect = OpenCV's REFLECT_101, any number of bounces
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        outside = None
        if mode is None:
            outside = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)  # edge, and inside for constant
        i = _index(x, idx)
        crops = x[i[:, None, None], rows[:, :, None], cols[:, None, :]]  # (k, ch, cw, C)
        if outside is not None:
            crops = torch.where(outside[..., None], torch.as_tensor(fill, device=dev), crops)
        x[i] = crops
        return x
    return Step(draw, cpu, device)


def _reflect(j: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into 0..n-1 about the edge pixels (REFLECT_101), however far outside."""
    if n == 1:
        return j.clamp(0, 0)
    period = 2 * (n - 1)
    j = j.remainder(period)
    return torch.where(j > n - 1, period - j, j)


def _per_image(pipe: A.Compose) -> Step:
    def cpu(x: np.ndarray, _) -> np.ndarray:
        for i in range(len(x)):
            x[i] = pipe(image=x[i])["image"]
        return x
    return Step(lambda shape, rng, where: None, cpu)


def _step(call: Call, seed: int, pipes: list[A.Compose], flip_base: np.ndarray | None) -> Step:
    """The batched version of a transform, or a per-image Albumentations pipeline (added to ``pipes``);
    ``flip_base``: a HorizontalFlip alternates from these first-epoch draws."""
    name, kw, children = call
    if name == "HorizontalFlip":
        return _flip(kw) if flip_base is None else _alternating_flip(kw, flip_base < kw["p"])
    if name == "Affine":
        return _affine(kw)
    if name == "CoarseDropout" and kw["fill"] != "random":
        return _coarse_dropout(kw)
    if name == "Sequential" and [c[0] for c in children] == ["PadIfNeeded", "RandomCrop"]:
        return _pad_crop(kw, children)
    pipes.append(A.Compose([instantiate(call)], seed=seed))
    return _per_image(pipes[-1])


def _with_generators(t) -> list:
    """A transform or composition and everything inside it: each holds random generators of its own."""
    children = t.transforms if isinstance(t, A.BaseCompose) else []
    return [t, *(x for child in children for x in _with_generators(child))]


class BatchAugment:
    """Augment a uint8 NHWC batch (returns a new array); one generator drives every draw.

    ``alternate_flip``: the number of training images; when given, each HorizontalFlip draws once per
    image and then alternates every epoch (see _alternating_flip), and every batch must come with its
    ``where`` (image indices, epoch)."""

    def __init__(self, spec: AugSpec, mean: tuple[float, float, float], seed: int | None = None,
                 alternate_flip: int = 0):
        checked_aug(spec)
        self.rng = np.random.default_rng(seed)
        self.pipes: list[A.Compose] = []
        self.steps = [_step(call, int(self.rng.integers(2**31)), self.pipes,
                            self.rng.random(alternate_flip) if alternate_flip and call[0] == "HorizontalFlip" else None)
                      for call in albumentations_calls(spec, mean)]

    def _generators(self) -> list:
        return [t for pipe in self.pipes for t in _with_generators(pipe)]

    def state(self) -> dict:
        """Every generator's position, so a resumed run draws what it would have drawn."""
        return dict(rng=self.rng.bit_generator.state,
                    pipes=[(p.random_generator.bit_generator.state, p.py_random.getstate())
                           for p in self._generators()])

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for p, (np_state, py_state) in zip(self._generators(), state["pipes"], strict=True):
            p.random_generator.bit_generator.state = np_state
            p.py_random.setstate(py_state)

    def __call__(self, x: np.ndarray, where: Where | None = None) -> np.ndarray:
        out = np.array(x, np.uint8, copy=True)
        for step in self.steps:
            out = step.cpu(out, step.draw(out.shape, self.rng, where))
        return out

    @property
    def runs_on_device(self) -> bool:
        """Every step has a torch version: the batch can stay on the training device (a GPU)."""
        return all(step.device is not None for step in self.steps)

    def on_device(self, x: torch.Tensor, where: Where | None = None) -> torch.Tensor:
        """The same as ``__call__`` (same draws, same pixels) for a uint8 NHWC torch tensor on any
        device: no per-image Python, no copy back to the host."""
        out = x.clone()
        for step in self.steps:
            out = step.device(out, step.draw(tuple(out.shape), self.rng, where))
        return out
