"""Everything the Architect page and ``summary`` show for a spec: params,
MACs, the per-layer RF table, the assignment's rule checks and a torchinfo
summary. Cheap enough (well under 150 ms) to run on every slider change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchinfo import summary as torchinfo_summary

from ..specs.arch import Net
from ..specs.geometry import Trace, trace
from ..specs.presets import PRESETS
from ..specs.recipes import RECIPES, settings_line
from .builder import build_model

PARAM_BUDGET = 200_000
RF_TARGET = 44


@dataclass
class Rule:
    name: str
    passed: bool
    reason: str


@dataclass
class Analysis:
    trace: Trace
    rules: list[Rule] = field(default_factory=list)
    macs: int = 0
    summary: str = ""

    @property
    def ok(self) -> bool:
        return self.trace.ok

    @property
    def problems(self) -> list[str]:
        return self.trace.problems

    @property
    def params(self) -> int:
        return self.trace.params

    @property
    def coverage(self) -> float:
        """Share of the input image seen by the centre output unit (clipped to the image)."""
        t, size = self.trace, 32
        centre = t.start + (t.out_size - 1) // 2 * t.jump
        lo, hi = max(0.0, centre - (t.rf - 1) / 2), min(size - 1.0, centre + (t.rf - 1) / 2)
        side = max(0.0, hi - lo + 1)
        return (side / size) ** 2

    def table(self) -> list[dict]:
        """Per-layer rows for display: n, j, r, start, k_eff and params."""
        return [dict(layer=r.name, type=r.kind + ("+pool" if r.pools else ""), c_in=r.c_in, c_out=r.c_out,
                     k=r.kernel, s=r.stride, p=r.padding, d=r.dilation, k_eff=r.k_eff, n=r.n, j=r.j, r=r.r,
                     start=r.start, params=r.params) for r in self.trace.rows]


def _is_separable(net: Net) -> bool:
    """A sep layer, or a grouped conv directly followed by a 1 x 1 conv, each with a spatial (k > 1)
    depthwise kernel: a 1 x 1 depthwise stage only scales channels, which the pointwise conv does anyway."""
    layers = [layer for block in net.blocks for layer in block.layers]
    for a, b in zip(layers, layers[1:] + [None]):
        if a.kernel == 1 or a.is_pool:
            continue
        if a.kind == "sep":
            return True
        if a.kind in ("grouped", "conv") and a.groups > 1 and b is not None and b.kernel == 1 and not b.is_pool:
            return True
    return False


def widening_dilations(t: Trace) -> list[str]:
    """The conv layers whose dilation widens their kernel's reach (k > 1, d > 1): a 1 x 1 kernel is one tap,
    and dilating it changes nothing."""
    return [f"C{r.block + 1}.{r.index + 1}" for r in t.rows
            if r.dilation > 1 and r.kernel > 1 and r.kind not in ("maxpool", "avgpool")]


def check_rules(net: Net, t: Trace) -> list[Rule]:
    """The classic assignment's rules, each pass/fail with a one-line reason."""
    dilated = widening_dilations(t)
    sep_ok = _is_separable(net)
    n_blocks = len(net.blocks)
    return [
        Rule("params < 200k", t.params < PARAM_BUDGET,
             f"{t.params:,} parameters ({t.params / PARAM_BUDGET:.0%} of the 200,000 budget)"),
        Rule("RF > 44", t.rf > RF_TARGET,
             f"receptive field {t.rf:g} px before GAP ({t.rf_with_gap:g} counting GAP as the seeds do)"),
        Rule("dilated + depthwise", bool(dilated) and sep_ok,
             ("dilated: " + (", ".join(dilated) if dilated else "none")) +
             ("; depthwise-separable: yes" if sep_ok else "; depthwise-separable: none")),
        Rule("GAP head", net.head.gap,
             "global average pooling before the classifier" if net.head.gap else "the head flattens instead of GAP"),
        Rule("C1C2C3C4O", n_blocks == 4,
             f"{n_blocks} conv blocks + output" + ("" if n_blocks == 4 else " (the form asks for exactly 4)")),
    ]


def torchinfo_text(net: Net, depth: int = 3) -> tuple[str, int]:
    model = build_model(net).eval()
    stats = torchinfo_summary(model, input_size=(1, net.in_channels, net.input_size, net.input_size),
                              col_names=("output_size", "num_params", "mult_adds"), depth=depth,
                              row_settings=("var_names",), verbose=0, device="cpu")
    return str(stats), int(stats.total_mult_adds)


def analyze(net: Net, with_summary: bool = True) -> Analysis:
    """Trace the spec; if valid, add rule checks, MACs and the torchinfo summary."""
    t = trace(net)
    result = Analysis(trace=t)
    if not t.ok:
        return result
    result.rules = check_rules(net, t)
    if with_summary:
        with torch.no_grad():
            result.summary, result.macs = torchinfo_text(net)
    return result


def markdown_table() -> str:
    """Every preset with its seed's claim and what its recipe measured here: the README's table,
    printed by ``python -m playground presets --markdown`` (a test keeps the README equal to it)."""
    rows = ["| preset | params | RF | MACs | seed's claim | measured here (`--recipe`) | hardware | recipe |",
            "|---|---|---|---|---|---|---|---|"]
    by_preset = {r.preset: r for r in reversed(RECIPES.values())}
    for p in PRESETS.values():
        a = analyze(p.net)  # MACs as `presets` prints them (torchinfo's count)
        r = by_preset.get(p.name)
        m = r.measured if r else None
        measured = (f"**{m.test_acc:.2f}%** @ {m.epochs} ep in {_minutes(m.wall_s)}" if m
                    else f"not yet run ({r.train.epochs} ep)" if r else "-")
        rows.append(f"| {p.name} | {a.params:,} | {a.trace.rf:g} | {a.macs / 1e6:.1f}M | {p.claim} | {measured} | "
                    f"{m.hardware if m else '-'} | {settings_line(r) if r else '-'} |")
    return "\n".join(rows)


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60} h {m % 60} min" if m >= 60 else f"{m} min {s} s"
