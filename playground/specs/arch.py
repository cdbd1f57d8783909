"""Architecture spec: the one description of a network that every part reads.

A network is an input, blocks C1..Cn of layers, and a head. The spec is plain
data; ``geometry.trace`` checks it and ``builder.build_model`` turns it into
an ``nn.Module``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import serde
from .geometry import validate
from .kinds import ARCH_VERSION

@dataclass
class Layer:
    """One layer. ``sep`` is a depthwise k x k followed by a pointwise 1 x 1.

    ``order`` is what follows the convolution: conv->BN->ReLU ("bn-relu"),
    conv->ReLU->BN ("relu-bn"), only one of them, or nothing; "pool-bn-relu" is
    conv->2x2 max-pool->BN->ReLU (airbench's order): the function of "bn-relu"
    then a max-pool layer, up to the BN statistics, with BN and ReLU on a quarter
    of the pixels. ``mid`` puts the same norm/activation (never the pool) between
    the depthwise and pointwise halves of a ``sep`` layer. Pools keep the channel
    count; their ``out`` and ``order`` are ignored.
    """

    kind: str = "conv"
    out: int = 32
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    order: str = "bn-relu"
    dropout: float = 0.0
    dropout2d: bool = False
    padding_mode: str = "zeros"
    mid: bool = False

    @property
    def k_eff(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    @property
    def is_pool(self) -> bool:
        return self.kind in ("maxpool", "avgpool")

    @property
    def pools(self) -> bool:
        """A conv layer that ends in its own 2x2 max-pool ("pool-..." orders)."""
        return not self.is_pool and self.order.startswith("pool-")

    @property
    def norm_order(self) -> str:
        """The order without its pool: what ``mid`` repeats inside a sep layer."""
        return self.order.removeprefix("pool-")

    @property
    def downscale(self) -> int:
        """How much the layer shrinks the map: its stride, doubled by its own pool."""
        return self.stride * (2 if self.pools else 1)


@dataclass
class Block:
    """Layers applied in order; ``skip`` adds a residual around layers[skip_from:], or with
    ``skip_every`` = k one around each run of k of them (ResNet-style units: depth without
    a deep chain the gradient must pass through)."""

    layers: list[Layer] = field(default_factory=list)
    skip: bool = False
    skip_from: int = 0
    skip_every: int = 0

    def residual_spans(self) -> list[tuple[int, int]]:
        """(first, end) layer ranges, end exclusive, that each have a residual around them."""
        end = len(self.layers)
        if not self.skip or not 0 <= self.skip_from < end:
            return []
        step = self.skip_every if self.skip_every > 0 else end
        return [(i, min(i + step, end)) for i in range(self.skip_from, end, step)]


@dataclass
class Head:
    """Global average pooling (if ``gap``) then a 1x1 conv or a linear layer."""

    kind: str = "conv1x1"
    gap: bool = True
    bias: bool = False
    log_softmax: bool = False


@dataclass
class Net(serde.JsonSpec):
    name: str = "custom"
    blocks: list[Block] = field(default_factory=list)
    head: Head = field(default_factory=Head)
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    version: int = ARCH_VERSION

    SPEC_VERSION = ARCH_VERSION

    @classmethod
    def _validated(cls, spec: "Net") -> "Net":
        return serde.valid_or_raise(spec, validate(spec))

    def copy(self, **changes) -> "Net":
        return Net.parse({**self.to_dict(), **changes})




def conv(out: int, kernel: int = 3, *, padding: int | None = None, **kw) -> Layer:
    """Shorthand used by presets: padding defaults to 'same' for odd kernels."""
    dilation = kw.get("dilation", 1)
    pad = dilation * (kernel - 1) // 2 if padding is None else padding
    return Layer(kind=kw.pop("kind", "conv"), out=out, kernel=kernel, padding=pad, **kw)


def sep(out: int, kernel: int = 3, **kw) -> Layer:
    return conv(out, kernel, kind="sep", **kw)


def pool(kind: str = "maxpool", kernel: int = 2, stride: int = 2, padding: int = 0) -> Layer:
    return Layer(kind=kind, out=0, kernel=kernel, stride=stride, padding=padding, order="none")


__all__ = ["Layer", "Block", "Head", "Net", "conv", "sep", "pool", "replace", "ARCH_VERSION"]
