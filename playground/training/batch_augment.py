"""The training-time path of an augmentation spec: whole uint8 batches at once.

Albumentations stays the source of truth (the preview, the export and the reference
benchmark use it), but calling it per image costs ~170 us of Python overhead for the
seeds' three transforms, most of an epoch's CPU budget beside a small network. Here
each transform samples its parameters for the whole batch with numpy, from the same
distributions Albumentations 2.x draws from (read off its source, same arguments), and
applies them with the same OpenCV kernels. Transforms without a batched version run
per image through Albumentations, in spec order. tests/test_batch_augment.py checks
pixel equality for given parameters and equal output distributions.
"""
from __future__ import annotations

from typing import Callable

import albumentations as A
import cv2
import numpy as np

from ..specs.augment import AugSpec, Call, albumentations_calls, checked_aug, instantiate

Step = Callable[[np.ndarray, np.random.Generator], np.ndarray]
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


def _flip(kw: dict) -> Step:
    def run(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = _chosen(len(x), kw["p"], rng)
        x[idx] = x[idx, :, ::-1]
        return x
    return run


def _affine(kw: dict) -> Step:
    t_lo, t_hi = kw["translate_percent"]
    s_lo, s_hi = kw["scale"]
    r_lo, r_hi = kw["rotate"]

    def run(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = _chosen(len(x), kw["p"], rng)
        k, (h, w) = len(idx), x.shape[1:3]
        tx = (rng.uniform(t_lo, t_hi, k) * w).astype(int)  # Albumentations truncates: int(t * width)
        ty = (rng.uniform(t_lo, t_hi, k) * h).astype(int)
        mats = affine_matrices(tx, ty, rng.uniform(s_lo, s_hi, k), rng.uniform(r_lo, r_hi, k), h, w)
        for i, m in zip(idx, mats):
            x[i] = cv2.warpAffine(x[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=kw["border_mode"],
                                  borderValue=kw["fill"])
        return x
    return run


def _coarse_dropout(kw: dict) -> Step:
    n_lo, n_hi = kw["num_holes_range"]

    def run(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = _chosen(len(x), kw["p"], rng)
        h, w = x.shape[1:3]
        owner = np.repeat(idx, rng.integers(n_lo, n_hi + 1, len(idx)))
        hh = rng.integers(kw["hole_height_range"][0], min(kw["hole_height_range"][1], h) + 1, len(owner))
        ww = rng.integers(kw["hole_width_range"][0], min(kw["hole_width_range"][1], w) + 1, len(owner))
        y0, x0 = rng.integers(0, h - hh + 1), rng.integers(0, w - ww + 1)
        fill = np.asarray(kw["fill"], np.uint8)
        for i, a, b, c, d in zip(owner, y0, y0 + hh, x0, x0 + ww):
            x[i, a:b, c:d] = fill
        return x
    return run


def _pad_crop(kw: dict, children: list[Call]) -> Step:
    pad_kw, crop_kw = children[0][1], children[1][1]

    def run(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = _chosen(len(x), kw["p"], rng)
        h, w = x.shape[1:3]
        top, left = (pad_kw["min_height"] - h) // 2, (pad_kw["min_width"] - w) // 2  # position="center"
        widths = ((0, 0), (top, pad_kw["min_height"] - h - top), (left, pad_kw["min_width"] - w - left), (0, 0))
        mode = _NP_BORDER.get(pad_kw["border_mode"])
        if mode is None:  # constant: the fill colour around the image
            padded = np.empty((len(idx), pad_kw["min_height"], pad_kw["min_width"], x.shape[3]), np.uint8)
            padded[:] = np.asarray(pad_kw["fill"], np.uint8)
            padded[:, top:top + h, left:left + w] = x[idx]
        else:
            padded = np.pad(x[idx], widths, mode=mode)
        ch, cw = crop_kw["height"], crop_kw["width"]
        oy = (rng.random(len(idx)) * (padded.shape[1] - ch + 1)).astype(int)
        ox = (rng.random(len(idx)) * (padded.shape[2] - cw + 1)).astype(int)
        for j, i in enumerate(idx):
            x[i] = padded[j, oy[j]:oy[j] + ch, ox[j]:ox[j] + cw]
        return x
    return run


def _per_image(pipe: A.Compose) -> Step:
    def run(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for i in range(len(x)):
            x[i] = pipe(image=x[i])["image"]
        return x
    return run


def _step(call: Call, seed: int, pipes: list[A.Compose]) -> Step:
    """The batched version of a transform, or a per-image Albumentations pipeline (added to ``pipes``)."""
    name, kw, children = call
    if name == "HorizontalFlip":
        return _flip(kw)
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
    """Augment a uint8 NHWC batch (returns a new array); one generator drives every draw."""

    def __init__(self, spec: AugSpec, mean: tuple[float, float, float], seed: int | None = None):
        checked_aug(spec)
        self.rng = np.random.default_rng(seed)
        self.pipes: list[A.Compose] = []
        self.steps = [_step(call, int(self.rng.integers(2**31)), self.pipes)
                      for call in albumentations_calls(spec, mean)]

    def _generators(self) -> list:
        return [t for pipe in self.pipes for t in _with_generators(pipe)]

    def state(self) -> dict:
        """Every generator's position, so a resumed run draws what it would have drawn."""
        return dict(rng=self.rng.bit_generator.state,
                    pipes=[(p.random_generator.bit_generator.state, p.py_random.getstate()) for p in self._generators()])

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for p, (np_state, py_state) in zip(self._generators(), state["pipes"], strict=True):
            p.random_generator.bit_generator.state = np_state
            p.py_random.setstate(py_state)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, np.uint8, copy=True)
        for step in self.steps:
            out = step(out, self.rng)
        return out
