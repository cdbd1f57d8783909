"""What a network does to one image: every layer's activations, and where one unit of a layer looks.

The theoretical receptive field is the analytic trace's box (start, jump and size); ``reach`` is the exact
set of pixels that can influence the unit (a dilated or strided stack leaves holes in its box); the
effective receptive field is |d unit / d input| summed over the colour channels (Luo et al., 2016). Every
computation works on its own copy of the model, so that the sessions sharing a loaded run never see each
other's gradients.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ..errors import UserError
from ..specs.arch import Layer, Net
from ..specs.geometry import Row, Trace, trace
from ..training.builder import SpecNet, build_model
from ..training.checkpoint import LoadedRun, channel_stats


class InsideError(UserError, ValueError):
    """A layer, position or image the view cannot show; one line that names the valid range."""


def layer_id(row: Row) -> str:
    """The name a student types and reads: C3.2 is block C3's second layer."""
    return f"C{row.block + 1}.{row.index + 1}"


@dataclass
class Subject:
    """A network to look inside: its weights (``model``, never hooked or changed) and, for a trained run,
    a fresh initialisation of the same net to compare against (``init``)."""

    net: Net
    model: SpecNet
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: list[str]
    label: str
    init: SpecNet | None = None

    @cached_property
    def trace(self) -> Trace:
        """The net's trace, once: the layers, positions and boxes all read it."""
        return trace(self.net)

    def layer_index(self, name: str | None) -> int:
        """The trace row of a layer named like C3.2; None is the last layer, the RF the rule counts."""
        rows = self.trace.rows
        if name is None:
            return len(rows) - 1
        names = [layer_id(r) for r in rows]
        wanted = name.strip().upper()
        if wanted not in names:
            raise InsideError(f"layer: {name[:40]!r} is not a layer of {self.net.name}; choose one of "
                              f"{names[0]} … {names[-1]} ({', '.join(names)})")
        return names.index(wanted)

    def check_position(self, index: int, row: int, col: int) -> None:
        n = self.trace.rows[index].n
        for what, v in (("row", row), ("column", col)):
            if not 0 <= v < n:
                raise InsideError(f"position: {what} {v} is outside {layer_id(self.trace.rows[index])}'s "
                                  f"{n}×{n} map; choose 0 to {n - 1}")

    def check_image(self, image: np.ndarray) -> None:
        n, c = self.net.input_size, self.net.in_channels
        if image.dtype != np.uint8 or image.shape != (n, n, c):
            raise InsideError(f"image: {self.net.name} takes {n}×{n} images with {c} channel(s); this one is "
                              f"{'×'.join(map(str, image.shape))}")


def initialised(net: Net, seed: int = 0) -> SpecNet:
    """``net`` as training starts it (PyTorch's default initialisation, drawn from ``seed``), leaving the
    global random state as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(net).float().eval()


def from_net(net: Net, mean, std, classes: list[str], seed: int = 0) -> Subject:
    return Subject(net, initialised(net, seed), tuple(mean), tuple(std), list(classes),
                   f"{net.name} at initialisation (seed {seed}), untrained")


def from_run(loaded: LoadedRun) -> Subject:
    model = copy.deepcopy(loaded.model).float().eval()
    return Subject(loaded.run.net, model, loaded.mean, loaded.std, loaded.classes,
                   f"{loaded.label}'s weights (epoch {loaded.epoch})",
                   initialised(loaded.run.net, loaded.run.train.seed))


def _input(subject: Subject, image: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    subject.check_image(image)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(dtype)
    return (x - channel_stats(subject.mean, "cpu").to(dtype)) / channel_stats(subject.std, "cpu").to(dtype)


@dataclass
class LayerMaps:
    """One layer's output on the image, (channels, n, n), and for a depthwise-separable layer the output of
    its depthwise stage too."""

    name: str
    row: Row
    maps: np.ndarray
    depthwise: np.ndarray | None = None

    def top(self, k: int) -> np.ndarray:
        """The ``k`` channels with the highest mean activation, highest first."""
        return np.argsort(-self.maps.mean(axis=(1, 2)), kind="stable")[:k]

    @property
    def stats(self) -> dict[str, float]:
        m = self.maps
        return dict(mean=float(m.mean()), std=float(m.std()), max=float(m.max()), zero=float((m == 0).mean()))


@dataclass
class Activations:
    image: np.ndarray
    layers: list[LayerMaps]
    probs: np.ndarray

    def top_classes(self, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
        return [(classes[i], float(self.probs[i])) for i in np.argsort(-self.probs)[:k]]


def activations(subject: Subject, image: np.ndarray) -> Activations:
    """Every layer's output on ``image`` (as the next layer sees it: after a residual's add) and the class
    probabilities, from one forward pass of a private copy of the model."""
    model, x = copy.deepcopy(subject.model), _input(subject, image)
    depthwise: dict[str, torch.Tensor] = {}
    rows = subject.trace.rows
    for row in rows:  # hooks on the copy only; the depthwise stage ends with its last dw_* module
        unit = model.get_submodule(row.name)
        if row.kind == "sep":
            last = [name for name, _ in unit.named_children() if name.startswith("dw")][-1]
            unit.get_submodule(last).register_forward_hook(
                lambda _m, _i, out, key=row.name: depthwise.__setitem__(key, out.detach().clone()))
    with torch.no_grad():
        taps, logits = model.layer_outputs(x)
        probs = logits.float().exp() if subject.net.head.log_softmax else logits.float().softmax(1)
    layers = [LayerMaps(layer_id(r), r, t[0].numpy().copy(),
                        depthwise[r.name][0].numpy() if r.name in depthwise else None) for r, t in zip(rows, taps)]
    return Activations(image, layers, probs[0].numpy())


@dataclass(frozen=True)
class Box:
    """A receptive field on the input, in pixel indices, first and last inclusive; it may reach past the
    image into the padding."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def side(self) -> int:
        return self.bottom - self.top + 1

    def clipped(self, size: int) -> Box:
        return Box(max(0, self.top), max(0, self.left), min(size - 1, self.bottom), min(size - 1, self.right))

    @property
    def area(self) -> int:
        return max(0, self.bottom - self.top + 1) * max(0, self.right - self.left + 1)


def centre(row: Row, r: int, c: int) -> tuple[float, float]:
    """The input pixel (fractional for an even field) at the centre of unit (r, c)'s field."""
    return row.start + r * row.j, row.start + c * row.j


def theoretical_box(row: Row, r: int, c: int) -> Box:
    """The analytic trace's field of unit (r, c): centred at start + index * jump, ``row.r`` px wide."""
    (cy, cx), half = centre(row, r, c), (row.r - 1) / 2
    return Box(round(cy - half), round(cx - half), round(cy + half), round(cx + half))


def _back(mask: np.ndarray, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """The input pixels any of a layer's k×k taps reads for the output pixels in ``mask``."""
    out = np.zeros((n_in, n_in), bool)
    ys, xs = np.nonzero(mask)
    for ty in range(k):
        y = ys * s - p + ty * d
        for tx in range(k):
            x = xs * s - p + tx * d
            ok = (y >= 0) & (y < n_in) & (x >= 0) & (x < n_in)
            out[y[ok], x[ok]] = True
    return out


def _back_layer(mask: np.ndarray, layer: Layer, row: Row) -> np.ndarray:
    if row.pools:  # its own 2x2 max-pool after the conv
        n_conv = (row.n_in + 2 * row.padding - row.k_eff) // row.stride + 1
        mask = _back(mask, n_conv, 2, 2, 0, 1)
    return _back(mask, row.n_in, row.kernel, row.stride, row.padding, row.dilation)


def reach(net: Net, index: int, r: int, c: int, traced: Trace | None = None) -> np.ndarray:
    """Exactly the input pixels that can change unit (r, c) of layer ``index`` (every tap, every residual),
    as a boolean (size, size) mask: its bounding box is the clipped theoretical box, or smaller where the
    holes of a dilated or strided stack meet the image border."""
    rows, blocks = (traced or trace(net)).rows, net.blocks
    mask = np.zeros((rows[index].n, rows[index].n), bool)
    mask[r, c] = True
    pending: dict[tuple[int, int], np.ndarray] = {}  # (block, layer) -> what a shortcut adds to its input
    for i in range(index, -1, -1):
        row = rows[i]
        block = blocks[row.block]
        for first, end in block.residual_spans():
            if row.index == end - 1:
                stride = math.prod(layer.downscale for layer in block.layers[first:end])
                n_first = rows[i - (end - 1 - first)].n_in
                add = _back(mask, n_first, 1, stride, 0, 1)
                pending[(row.block, first)] = pending.get((row.block, first), add) | add
        mask = _back_layer(mask, block.layers[row.index], row)
        if (key := (row.block, row.index)) in pending:
            mask |= pending.pop(key)
    return mask


def effective_rf(subject: Subject, image: np.ndarray, index: int, r: int, c: int,
                 weights: SpecNet | None = None) -> np.ndarray:
    """|d unit / d input| summed over the colour channels, (size, size); the unit is the sum of the layer's
    channels at (r, c). ``weights`` is the model to differentiate (the subject's own by default)."""
    model = copy.deepcopy(weights if weights is not None else subject.model)
    x = _input(subject, image, next(model.parameters()).dtype).requires_grad_(True)
    with torch.enable_grad():
        taps, _ = model.layer_outputs(x)
        taps[index][0, :, r, c].sum().backward()
    return x.grad[0].abs().sum(0).numpy()


@dataclass
class Spread:
    """How the gradient mass of an effective RF lies against the theoretical box; None where the gradient is
    zero (every path to the unit is switched off, for instance by ReLUs, for this image)."""

    inside: float | None
    side50: int | None
    side95: int | None

    def to_dict(self) -> dict:
        return dict(inside_share=self.inside, side50_px=self.side50, side95_px=self.side95)


def spread(grad: np.ndarray, row: Row, r: int, c: int) -> Spread:
    """The share of ``grad``'s mass inside the clipped theoretical box, and the sides of the squares centred
    on the unit's field that hold 50% and 95% of it (clipped at the border, of the box's parity)."""
    grad = grad.astype(np.float64)
    total = float(grad.sum())
    if not total > 0:
        return Spread(None, None, None)
    size = grad.shape[0]
    b = theoretical_box(row, r, c).clipped(size)
    inside = min(1.0, float(grad[b.top:b.bottom + 1, b.left:b.right + 1].sum()) / total)
    cy, cx = centre(row, r, c)
    sides: list[int | None] = []
    for share in (0.5, 0.95):
        for side in range(1 if row.r % 2 else 2, 2 * size + 2, 2):
            half = (side - 1) / 2
            top, left = max(0, round(cy - half)), max(0, round(cx - half))
            if grad[top:round(cy + half) + 1, left:round(cx + half) + 1].sum() >= share * total - 1e-12:
                sides.append(side)
                break
        else:
            sides.append(None)
    return Spread(inside, *sides)


@dataclass(frozen=True)
class Taps:
    """Where a conv's k×k taps fall on its input map for one output pixel: ``points`` (y, x), some of them
    in the padding (outside 0..n_in-1)."""

    n_in: int
    points: tuple[tuple[int, int], ...]

    @property
    def reach(self) -> int:
        """The side the taps span: the kernel's effective size d(k-1)+1."""
        ys = [y for y, _ in self.points]
        return max(ys) - min(ys) + 1


def taps(row: Row, r: int, c: int) -> Taps:
    """The taps of unit (r, c) of a conv layer on its input map (for a layer with its own pool, those of the
    conv output at the pooled unit's top-left)."""
    f = 2 if row.pools else 1
    y0, x0 = r * f * row.stride - row.padding, c * f * row.stride - row.padding
    pts = tuple((y0 + ty * row.dilation, x0 + tx * row.dilation) for ty in range(row.kernel)
                for tx in range(row.kernel))
    return Taps(row.n_in, pts)


def stages(layer: Layer, row: Row) -> list[dict]:
    """A depthwise-separable layer as its two steps: what each maps and what it costs in parameters."""
    k, c_in, bias = layer.kernel, row.c_in, int(layer.bias)
    bn = 2 if "bn" in layer.order else 0
    n_dw = (row.n_in + 2 * row.padding - row.k_eff) // row.stride + 1
    dw = c_in * k * k + bias * c_in + (bn * c_in if layer.mid else 0)
    return [dict(step="depthwise", does=f"one {k}×{k} filter per channel" + (f", dilation {row.dilation}"
                                                                             if row.dilation > 1 else ""),
                 shape=f"{c_in}×{row.n_in}×{row.n_in} → {c_in}×{n_dw}×{n_dw}", params=dw),
            dict(step="pointwise", does=f"1×1 conv mixing {c_in} channels into {row.c_out}",
                 shape=f"{c_in}×{n_dw}×{n_dw} → {row.c_out}×{row.n}×{row.n}", params=row.params - dw)]


@dataclass
class Look:
    """Everything the view shows for one image and one unit: the CLI's figures and pictures."""

    subject: Subject
    acts: Activations
    index: int
    at: tuple[int, int]
    box: Box
    reach: np.ndarray
    grads: dict[str, np.ndarray]  # "trained" and "init", or "init" alone for an untrained net

    @property
    def row(self) -> Row:
        return self.subject.trace.rows[self.index]

    def summary(self) -> dict:
        """The figures as plain JSON values: the layer, its theoretical RF (the trace's, as ``summary`` prints
        it), the box on the image, the pixels the unit reaches and the effective RF's spread."""
        row, size = self.row, self.acts.image.shape[0]
        clipped = self.box.clipped(size)
        return dict(subject=self.subject.label, layer=layer_id(row), shape=[row.c_out, row.n, row.n],
                    at=list(self.at), rf_px=row.r, jump_px=row.j,
                    box=dict(top=self.box.top, left=self.box.left, bottom=self.box.bottom, right=self.box.right),
                    box_on_image=dict(top=clipped.top, left=clipped.left, bottom=clipped.bottom, right=clipped.right),
                    reach_px=int(self.reach.sum()), box_on_image_px=clipped.area,
                    effective={k: spread(g, row, *self.at).to_dict() for k, g in self.grads.items()},
                    top3=[dict(label=c, p=round(p, 4)) for c, p in self.acts.top_classes(self.subject.classes)])


def look(subject: Subject, image: np.ndarray, layer: str | None = None, at: tuple[int, int] | None = None,
         acts: Activations | None = None) -> Look:
    """All of the view for ``image``: ``layer`` defaults to the last (the RF the rule counts), ``at`` to the
    centre of its map; ``acts``, the image's activations where they are at hand. InsideError (one line) for a
    layer, position or image the net does not have."""
    subject.check_image(image)
    index = subject.layer_index(layer)
    row = subject.trace.rows[index]
    r, c = at if at is not None else ((row.n - 1) // 2, (row.n - 1) // 2)
    subject.check_position(index, r, c)
    grads = {"trained": effective_rf(subject, image, index, r, c)} if subject.init is not None else {}
    grads["init"] = effective_rf(subject, image, index, r, c, subject.init or subject.model)
    return Look(subject, acts or activations(subject, image), index, (r, c), theoretical_box(row, r, c),
                reach(subject.net, index, r, c), grads)
