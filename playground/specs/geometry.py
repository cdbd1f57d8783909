"""Shape, parameter and receptive-field tracing of an architecture spec.

This is the single validator: anything ``trace`` reports as a problem would
otherwise build a broken model or crash inside PyTorch. It is pure Python so
it can run on every slider change.

Receptive-field convention (per layer, with k_eff = d(k-1)+1):
    n_out = floor((n_in + 2p - k_eff) / s) + 1
    j_out = j_in * s
    r_out = r_in + (k_eff - 1) * j_in
    start_out = start_in + ((k_eff - 1) / 2 - p) * j_in
``rf`` is the conv stack's RF *before* global average pooling. The seed
repositories also count GAP as one more layer with kernel n (adding
(n-1)*j); that figure is reported as ``rf_with_gap``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import limits as limits_
from .kinds import ARCH_VERSION, KIND_LABELS, LAYER_KINDS, ORDERS, block_name, layer_label
from .limits import ACT_FACTOR, MIB, Limits, exceeded
from .serde import hidden_char, short

if TYPE_CHECKING:  # arch imports this module: its validator is validate()
    from .arch import Block, Layer, Net

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
HEAD_KINDS = ("conv1x1", "linear")


@dataclass
class Row:
    """Geometry after one layer (or the head)."""

    name: str
    block: int
    index: int
    kind: str
    c_in: int
    c_out: int
    n_in: int
    n: int
    j: float
    r: float
    start: float
    k_eff: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    params: int
    pools: bool = False  # the conv's own 2x2 max-pool ("pool-bn-relu") is in n, j, r and start


@dataclass
class Trace:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    params: int = 0
    out_channels: int = 0
    out_size: int = 0
    rf: float = 0
    jump: float = 1
    start: float = 0
    rf_with_gap: float = 0
    skip_params: dict[int, int] = field(default_factory=dict)
    head_params: int = 0
    macs: int = 0  # forward multiply-accumulates per image (convolutions, projections and the head)
    activations: int = 0  # conv output elements per image (training keeps about ACT_FACTOR floats each)
    pool_floats: int = 0  # what pooling layers keep per image: their output, and a max-pool's int64 indices

    @property
    def act_mib(self) -> float:
        """Estimated training memory per image for the activations, in MiB."""
        return (self.activations * ACT_FACTOR + self.pool_floats) * 4 / MIB

    @property
    def ok(self) -> bool:
        return not self.problems

    def batch_that_fits(self, lim: Limits) -> int:
        """The largest batch whose activation memory (estimate) stays within ``lim.train_mib``: the bound of
        a training batch, and of a test batch too (inference keeps less per image than training)."""
        return max(1, int(lim.train_mib // self.act_mib)) if self.act_mib else lim.batch_size


def _has_bn(order: str) -> bool:
    return "bn" in order


def _field_problems(where: str, layer: Layer, lim: Limits) -> list[str]:
    p: list[str] = []
    out_of_range: set[str] = set()  # said once: the checks that combine fields skip them
    if layer.kind not in LAYER_KINDS:
        return [f"{where}: unknown layer kind {short(layer.kind)} (choose one of {', '.join(LAYER_KINDS)})"]
    for name, value, low, high in (("channels", layer.out, 1, lim.channels), ("kernel", layer.kernel, 1, lim.kernel),
                                   ("stride", layer.stride, 1, lim.stride),
                                   ("dilation", layer.dilation, 1, lim.dilation),
                                   ("padding", layer.padding, 0, lim.padding),
                                   ("groups", layer.groups, 1, lim.channels)):
        # bounded where they are ignored too (a pool's channels and groups, a separable conv's groups; 0 is
        # the presets' "none"): the pages show every field, and a pool with channels 2**53 + 1 broke the Architect
        ignored = name == "channels" and layer.is_pool or name == "groups" and (layer.is_pool or layer.kind == "sep")
        low = 0 if ignored else low
        if not (low <= value <= high):
            p.append(f"{where}: {name} must be between {low} and {high}, got {value}"
                     + (f" (a {layer.kind} layer ignores it)" if ignored else ""))
            out_of_range.add(name)
    if layer.order not in ORDERS:
        p.append(f"{where}: unknown norm/activation order {short(layer.order)} (choose one of {', '.join(ORDERS)})")
    if not (0.0 <= layer.dropout < 1.0):
        p.append(f"{where}: dropout must be in [0, 1), got {layer.dropout}")
    if layer.padding_mode not in PADDING_MODES:
        p.append(f"{where}: unknown padding mode {short(layer.padding_mode)} "
                 f"(choose one of {', '.join(PADDING_MODES)})")
    if layer.is_pool:
        if layer.dilation != 1 and "dilation" not in out_of_range:
            p.append(f"{where}: pooling layers cannot be dilated")
        if layer.padding * 2 > layer.kernel and not out_of_range & {"padding", "kernel"}:
            p.append(f"{where}: pool padding {layer.padding} must be at most half the kernel {layer.kernel}")
    return p


def _layer_params(layer: Layer, c_in: int) -> int:
    bias = 1 if layer.bias else 0
    bn = 2 if _has_bn(layer.order) else 0
    k2 = layer.kernel * layer.kernel
    if layer.is_pool:
        return 0
    if layer.kind == "sep":
        dw = c_in * k2 + bias * c_in + (bn * c_in if layer.mid else 0)
        return dw + layer.out * c_in + bias * layer.out + bn * layer.out
    return layer.out * (c_in // layer.groups) * k2 + bias * layer.out + bn * layer.out


def _shape_problem(where: str, layer: Layer, c_in: int, n_in: int) -> str | None:
    k_eff = layer.k_eff
    if not layer.is_pool:
        g = layer.groups
        if layer.kind != "sep" and (c_in % g or layer.out % g):
            return (f"{where}: groups {g} must divide both the input channels ({c_in}) "
                    f"and the output channels ({layer.out})")
    if n_in + 2 * layer.padding < k_eff:
        dil = f" at dilation {layer.dilation}" if layer.dilation > 1 else ""
        pad = f" (with padding {layer.padding})" if layer.padding else ""
        return (f"{where}: kernel {layer.kernel}{dil} needs at least {k_eff} px of input{pad} "
                f"but the map is {n_in}×{n_in}")
    n_out = (n_in + 2 * layer.padding - k_eff) // layer.stride + 1
    if layer.pools and n_out < 2:
        return f"{where}: the order {short(layer.order)} max-pools 2×2, but the conv's output is only {n_out}×{n_out}"
    if (o := padding_only_output(layer.kernel, layer.stride, layer.padding, layer.dilation, n_in, n_out)) is not None:
        return (f"{where}: with dilation {layer.dilation} and padding {layer.padding}, output pixel {o} "
                f"sees only padding of the {n_in}×{n_in} map; lower the dilation or the padding")
    if layer.padding_mode in ("reflect", "circular") and layer.padding >= n_in and not layer.is_pool:
        return f"{where}: {layer.padding_mode} padding {layer.padding} needs a map larger than {n_in}×{n_in}"
    return None


def padding_only_output(k: int, s: int, p: int, d: int, n_in: int, n_out: int) -> int | None:
    """The first output pixel none of whose taps (o*s - p + t*d, t < k) falls on the map, or None.
    Output o's taps span [o*s - p, o*s - p + (k-1)*d], between the first's and the last's; when
    d <= n_in no two taps can straddle the map, so only the first and the last output can miss it. A
    wider dilation checks each output in O(1): that walk is what a 47 KB spec of 512 layers, each
    growing its map by 512 px, took minutes over when it looped over every tap of every pixel."""
    def misses(o: int) -> bool:
        a = o * s - p
        return max(0, -(a // d)) > min(k - 1, (n_in - 1 - a) // d)  # no t with 0 <= a + t*d < n_in

    return next((o for o in ((0, n_out - 1) if d <= n_in else range(n_out)) if misses(o)), None)


def _check_residuals(t: Trace, b: int, block: Block, bounds: list[tuple[int, int]]) -> bool:
    """Each residual adds its input to its output, through a strided 1x1 projection when
    channels or size change; one that cannot line up the sizes is explained."""
    name = block_name(b).upper()
    for first, end in block.residual_spans():
        (c_a, n_a), (c, n) = bounds[first], bounds[end]
        s = math.prod(layer.downscale for layer in block.layers[first:end])
        n_proj = (n_a - 1) // s + 1
        whole = first == block.skip_from and end == len(block.layers)
        layers = f"layer {first + 1}" if end - first == 1 else f"layers {first + 1}-{end}"
        which = "the skip" if whole else f"the skip around {layers}"
        if n_proj != n:
            t.problems.append(
                f"{name}: {which} cannot match shapes: the layers map {n_a}×{n_a} to {n}×{n}, "
                f"but a 1×1 projection with stride {s} gives {n_proj}×{n_proj}; pad to keep the size")
            return False
        if c_a != c or s != 1:
            t.skip_params[b] = t.skip_params.get(b, 0) + c_a * c
            t.params += c_a * c
            t.macs += c_a * c * n * n
    return True


def _layer_macs(layer: Layer, c_in: int, n_out: int) -> int:
    if layer.is_pool:
        return 0
    k2, area = layer.kernel * layer.kernel, n_out * n_out
    if layer.kind == "sep":
        return c_in * k2 * area + layer.out * c_in * area
    return layer.out * (c_in // max(1, layer.groups)) * k2 * area


def _net_problems(net: Net, lim: Limits) -> list[str]:
    """The spec's own fields and its size, checked before any layer is walked."""
    p = []
    if net.version != ARCH_VERSION:
        p.append(f"version: this playground reads architecture spec version {ARCH_VERSION}, got {net.version}")
    if len(net.name) > lim.name_chars:
        p.append(f"name: at most {lim.name_chars} characters, got {len(net.name)}")
    elif bad := hidden_char(net.name):
        p.append(f"name: control and invisible characters are not allowed, got {bad}")
    elif not net.name.strip():  # the pages list runs by name: a blank one is a row nobody can tell apart
        p.append("name: a network needs a name that is not blank")
    if not (1 <= net.in_channels <= lim.in_channels):
        p.append(f"input: channels must be between 1 and {lim.in_channels}, got {net.in_channels}")
    if not (4 <= net.input_size <= lim.input_size):
        p.append(f"input: size must be between 4 and {lim.input_size} px, got {net.input_size}")
    if not (2 <= net.num_classes <= lim.classes):
        p.append(f"head: classes must be between 2 and {lim.classes}, got {net.num_classes}")
    if not net.blocks:
        p.append("the network has no blocks; add at least C1")
    if len(net.blocks) > lim.blocks:
        p.append(f"the network has {len(net.blocks)} blocks; the limit is {lim.blocks}")
    layers = sum(len(b.layers) for b in net.blocks)
    if layers > lim.layers:
        p.append(f"the network has {layers:,} layers; the limit is {lim.layers}")
    return p


def trace(net: Net, limits: Limits | None = None) -> Trace:
    """Walk the spec once: every problem, plus per-layer shapes, params, MACs and RF.
    ``limits`` defaults to the tier in force (see limits.py)."""
    lim = limits or limits_.current()
    t = Trace()
    t.problems = _net_problems(net, lim)
    if len(net.blocks) > lim.blocks or sum(len(b.layers) for b in net.blocks) > lim.layers:
        return t  # not worth walking (and listing a problem per layer of 10,000)
    # start: centre of output unit 0 in input pixel indices (pixel 0 is at 0).
    c, n, j, r, start = net.in_channels, net.input_size, 1, 1, 0.0
    geometry_ok = not t.problems
    for b, block in enumerate(net.blocks):
        name = block_name(b).upper()
        if not block.layers:
            t.problems.append(f"{name}: has no layers; add one or remove the block")
            continue
        if block.skip_from < 0 or (block.skip and block.skip_from >= len(block.layers)):
            t.problems.append(f"{name}: skip_from (the layer its residual starts at, from 0) must be between 0 and "
                              f"{len(block.layers) - 1}, got {block.skip_from}")
        if block.skip_every < 0:
            t.problems.append(f"{name}: a residual every {block.skip_every} layers is impossible; "
                              "use 0 for one residual around the block, or a positive count")
        bounds = [(c, n)]  # (channels, size) before each layer and after the last
        for i, layer in enumerate(block.layers):
            where = layer_label(b, i)
            field_probs = _field_problems(where, layer, lim)
            t.problems.extend(field_probs)
            if field_probs or not geometry_ok:
                geometry_ok = False
                continue
            shape_prob = _shape_problem(where, layer, c, n)
            if shape_prob:
                t.problems.append(shape_prob)
                geometry_ok = False
                continue
            k_eff = layer.k_eff
            n_out = (n + 2 * layer.padding - k_eff) // layer.stride + 1
            c_out = c if layer.is_pool else layer.out
            params = _layer_params(layer, c)
            r = r + (k_eff - 1) * j
            start = start + ((k_eff - 1) / 2 - layer.padding) * j
            t.macs += _layer_macs(layer, c, n_out)
            if layer.is_pool:  # no norm or activation of its own; a max-pool's indices are two floats' worth
                t.pool_floats += (3 if layer.kind == "maxpool" else 1) * c_out * n_out * n_out
            else:
                kept = c_out + (c if layer.kind == "sep" else 0)  # sep: the depthwise output too
                t.activations += kept * n_out * n_out
            j *= layer.stride
            if layer.pools:  # its own 2x2 max-pool, stride 2, no padding
                r, start, j, n_out = r + j, start + j / 2, j * 2, n_out // 2
                t.activations += c_out * n_out * n_out
            t.rows.append(Row(f"{block_name(b)}.{i}", b, i, layer.kind, c, c_out, n, n_out, j,
                              r, start, k_eff, layer.kernel, layer.stride, layer.padding, layer.dilation, params,
                              layer.pools))
            t.params += params
            c, n = c_out, n_out
            bounds.append((c, n))
        if geometry_ok:
            geometry_ok = _check_residuals(t, b, block, bounds)
    if net.head.kind not in HEAD_KINDS:
        t.problems.append(f"head: unknown kind {short(net.head.kind)} (choose one of {', '.join(HEAD_KINDS)})")
    elif net.head.kind == "conv1x1" and not net.head.gap:
        t.problems.append("head: a 1×1 conv head needs global average pooling first")
    if geometry_ok and net.head.kind in HEAD_KINDS and net.blocks:
        features = c if net.head.gap else c * n * n
        t.head_params = features * net.num_classes + (net.num_classes if net.head.bias else 0)
        t.params += t.head_params
        t.macs += features * net.num_classes
        for problem in (exceeded("the parameter count", t.params, lim, "params"),
                        exceeded("the forward pass per image", t.macs, lim, "macs", " MACs"),
                        exceeded("the training memory per image for activations (estimate)", t.act_mib, lim,
                                 "act_mib", " MiB")):
            if problem:
                t.problems.append(problem)
    t.out_channels, t.out_size, t.rf, t.jump, t.start = c, n, r, j, start
    t.rf_with_gap = r + (n - 1) * j
    return t


def validate(net: Net) -> list[str]:
    """Every problem with the spec, each naming its block and layer; empty if it builds."""
    return trace(net).problems


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)
