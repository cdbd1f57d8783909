"""Spec -> nn.Module, with module names (c1.0, c1.1, ..., head) that read well in summaries."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..specs.arch import Block, Layer, Net
from ..specs.kinds import block_name
from ..specs.geometry import trace
from ..specs.serde import SpecError
from .fastops import FastDropout, PolyphaseConv2d, SubsampledConv2d, ZeroPadConv2d


def _post(order: str, channels: int) -> list[tuple[str, nn.Module]]:
    mods: list[tuple[str, nn.Module]] = []
    for part in order.split("-"):
        if part == "pool":
            mods.append(("pool", nn.MaxPool2d(2, 2)))
        elif part == "bn":
            mods.append(("bn", nn.BatchNorm2d(channels)))
        elif part == "relu":
            mods.append(("relu", nn.ReLU(inplace=True)))
    return mods


def _conv_class(layer: Layer) -> type[nn.Conv2d]:
    """The exact fast equivalent of the layer's conv (see fastops), else nn.Conv2d."""
    if SubsampledConv2d.applies(layer.stride, layer.dilation, layer.padding, layer.padding_mode):
        return SubsampledConv2d
    if PolyphaseConv2d.applies(layer.kernel, layer.stride, layer.dilation, layer.padding, layer.padding_mode):
        return PolyphaseConv2d
    if ZeroPadConv2d.applies(layer.padding, layer.padding_mode):
        return ZeroPadConv2d
    return nn.Conv2d


class Unit(nn.Sequential):
    """One spec layer: conv (or depthwise+pointwise, or pool), norm/act, dropout."""

    def __init__(self, layer: Layer, c_in: int, fast: bool = True):
        mods: list[tuple[str, nn.Module]] = []
        kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                  bias=layer.bias, padding_mode=layer.padding_mode)
        conv = _conv_class(layer) if fast else nn.Conv2d
        dropout = FastDropout if fast else nn.Dropout
        if layer.kind == "maxpool":
            mods.append(("pool", nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)))
        elif layer.kind == "avgpool":
            mods.append(("pool", nn.AvgPool2d(layer.kernel, layer.stride, layer.padding)))
        elif layer.kind == "sep":
            mods.append(("dw", conv(c_in, c_in, layer.kernel, groups=c_in, **kw)))
            if layer.mid:
                mods += [(f"dw_{n}", m) for n, m in _post(layer.norm_order, c_in)]
            mods.append(("pw", nn.Conv2d(c_in, layer.out, 1, bias=layer.bias)))
        else:
            mods.append(("conv", conv(c_in, layer.out, layer.kernel, groups=layer.groups, **kw)))
        if not layer.is_pool:
            mods += _post(layer.order, layer.out)
        if layer.dropout > 0:
            mods.append(("drop", nn.Dropout2d(layer.dropout) if layer.dropout2d else dropout(layer.dropout)))
        super().__init__()
        for name, mod in mods:
            self.add_module(name, mod)


class ConvBlock(nn.Module):
    """Layers named 0..n-1 and a residual around each of the spec's spans; a span that changes
    channels or size goes through a 1x1 projection, ``proj`` for the first span (the name
    checkpoints from before ``skip_every`` use) and ``proj<i>`` for one starting at layer i."""

    def __init__(self, block: Block, c_in: int, channels: list[int], fast: bool = True):
        super().__init__()
        bounds = [c_in, *channels]
        for i, layer in enumerate(block.layers):
            self.add_module(str(i), Unit(layer, bounds[i], fast))
        self.n_layers = len(block.layers)
        self.spans: dict[int, tuple[int, str | None]] = {}
        for first, end in block.residual_spans():
            stride = math.prod(layer.downscale for layer in block.layers[first:end])
            name = None
            if bounds[first] != bounds[end] or stride != 1:
                name = "proj" if first == block.skip_from else f"proj{first}"
                self.add_module(name, nn.Conv2d(bounds[first], bounds[end], 1, stride=stride, bias=False))
            self.spans[first] = (end, name)

    def forward(self, x: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``taps``, when given, receives each layer's output as the next layer sees it (after a residual's add)."""
        shortcut, end, proj = None, -1, None
        for i in range(self.n_layers):
            if i in self.spans:
                shortcut, (end, proj) = x, self.spans[i]
            x = self._modules[str(i)](x)
            if i + 1 == end:
                x = x + (self._modules[proj](shortcut) if proj else shortcut)
            if taps is not None:
                taps.append(x)
        return x


class Head(nn.Module):
    def __init__(self, kind: str, gap: bool, c: int, n: int, classes: int, bias: bool, log_softmax: bool):
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1) if gap else None
        self.fc = (nn.Conv2d(c, classes, 1, bias=bias) if kind == "conv1x1"
                   else nn.Linear(c if gap else c * n * n, classes, bias=bias))
        self.log_softmax = nn.LogSoftmax(dim=1) if log_softmax else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gap is not None:
            x = self.gap(x)
        x = self.fc(x) if isinstance(self.fc, nn.Conv2d) else self.fc(torch.flatten(x, 1))
        x = torch.flatten(x, 1)
        return self.log_softmax(x) if self.log_softmax is not None else x


class SpecNet(nn.Module):
    """A network built from a spec; ``features`` is the conv stack before GAP."""

    def __init__(self, net: Net, fast: bool = True):
        super().__init__()
        t = trace(net)
        if t.problems:
            raise SpecError(t.problems)
        self.spec_name = net.name
        self.block_names: list[str] = []
        rows = iter(t.rows)
        c = net.in_channels
        for b, block in enumerate(net.blocks):
            channels = [next(rows).c_out for _ in block.layers]
            self.add_module(block_name(b), ConvBlock(block, c, channels, fast))
            self.block_names.append(block_name(b))
            c = channels[-1]
        self.head = Head(net.head.kind, net.head.gap, c, t.out_size, net.num_classes,
                         net.head.bias, net.head.log_softmax)
        self.outputs_log_probs = net.head.log_softmax

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.block_names:
            x = self._modules[name](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def layer_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every spec layer's output, in the trace's row order, and the logits."""
        taps: list[torch.Tensor] = []
        for name in self.block_names:
            x = self._modules[name](x, taps)
        return taps, self.head(x)


def build_model(net: Net, fast: bool = True) -> SpecNet:
    """Build the module; raises SpecError (listing every problem) for an invalid spec.

    ``fast=False`` uses plain torch modules throughout (the seed-style reference);
    both give the same function and the same state dict keys.
    """
    return SpecNet(net, fast)


def last_conv(model: nn.Module) -> nn.Conv2d:
    """The last Conv2d before the head: the default Grad-CAM target."""
    found = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and not name.startswith("head"):
            found = mod
    if found is None:
        raise ValueError("the model has no convolution layer")
    return found
