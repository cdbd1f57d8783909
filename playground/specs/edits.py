"""One layer edited as the Architect's widgets edit it: what else follows from a change of kind, kernel or
dilation (the padding that keeps the size, the order and width a pool does not have, the groups of a
grouped conv), so the page only reads its widgets."""
from __future__ import annotations

from dataclasses import replace

from .arch import Layer


def edited_layer(src: Layer, kind: str, out: int, kernel: int, stride: int, dilation: int, pools: bool) -> Layer:
    """``src`` with these values; only what changed and what follows from it differs from ``src``.
    ``pools`` is the "then a 2x2 max-pool" choice of a conv with BN and ReLU."""
    layer = replace(src, kind=kind, out=out, kernel=kernel, stride=stride, dilation=dilation)
    if src.norm_order == "bn-relu" and not src.is_pool:
        layer.order = "pool-bn-relu" if pools else "bn-relu"
    if kind == src.kind and (kernel, dilation) == (src.kernel, src.dilation):
        return layer
    if layer.is_pool:
        layer.padding, layer.order = 0, "none"
        layer.dilation = dilation if src.is_pool else 1
    else:
        layer.padding = dilation * (kernel - 1) // 2  # "same" padding for odd kernels
        layer.order = "bn-relu" if src.is_pool else src.order
        layer.out = layer.out or 32  # a pool turned conv: pools carry no width
    if kind == "grouped" and src.kind != "grouped" and layer.groups == 1:
        layer.groups = 4
    return without_unused(layer)


def without_unused(layer: Layer) -> Layer:
    """``layer`` without the values its kind ignores, so its JSON holds only what builds the net: a pool's
    width, bias and mid norm; a sep layer's groups; a plain conv's groups other than 1 stay (grouped conv
    is a conv with groups); a 1x1 kernel's dilation (a single tap has no gaps to spread)."""
    if layer.is_pool:
        layer.out, layer.bias, layer.mid, layer.groups = 0, False, False, 1
    elif layer.kind == "sep":
        layer.groups = 1
    else:
        layer.mid = False
    if layer.kernel == 1:
        layer.dilation = 1
    return layer
