"""The architecture spec's vocabulary: its version, the layer kinds and norm/activation orders it
accepts, and the names of blocks and layers that every message and table uses."""
from __future__ import annotations

ARCH_VERSION = 1

LAYER_KINDS: tuple[str, ...] = ("conv", "sep", "grouped", "maxpool", "avgpool")
KIND_LABELS = {
    "conv": "conv",
    "sep": "depthwise-separable",
    "grouped": "grouped conv",
    "maxpool": "max-pool",
    "avgpool": "avg-pool",
}
ORDERS: tuple[str, ...] = ("bn-relu", "relu-bn", "bn", "relu", "none", "pool-bn-relu")


def block_name(index: int) -> str:
    return f"c{index + 1}"


def layer_label(block: int, layer: int) -> str:
    return f"C{block + 1} layer {layer + 1}"
