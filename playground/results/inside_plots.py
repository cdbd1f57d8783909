"""Pictures of the Inside view: activation mosaics (arrays, for the page and the CLI's PNG) and Plotly figures of
the receptive field on the image, the effective RF and a dilated kernel's taps. Image axes count pixels from the
top-left, as the trace does; a box is drawn on pixel edges (index ± 0.5)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale, unlabel_rgb
from plotly.subplots import make_subplots

from .inside import Box, Taps

BOX_COLOUR, CLIP_COLOUR, PAD_COLOUR = "#ff2d55", "#ffd60a", "rgba(120, 120, 120, 0.35)"


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """Viridis as 256 RGB rows (the heatmaps' colour scale)."""
    return np.array([unlabel_rgb(c) for c in sample_colorscale("Viridis", np.linspace(0, 1, 256))], np.uint8)


def coloured(values: np.ndarray) -> np.ndarray:
    """A 2-D array scaled to its own range and coloured with Viridis: (h, w, 3) uint8; a constant map is dark."""
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return _lut()[np.clip(scaled * 255, 0, 255).astype(np.uint8)]


def mosaic(maps: np.ndarray, cols: int = 8, tile: int = 48, gap: int = 2) -> np.ndarray:
    """Channels (k, h, w) as a grid of coloured tiles of ``tile`` px (nearest-neighbour, so each unit stays a
    square), each scaled to its own range, on a white background."""
    k = len(maps)
    cols = max(1, min(cols, k))
    rows = -(-k // cols)
    out = np.full((rows * (tile + gap) - gap, cols * (tile + gap) - gap, 3), 255, np.uint8)
    for i, m in enumerate(maps):
        f = max(1, tile // m.shape[0])
        img = np.kron(coloured(m), np.ones((f, f, 1), np.uint8))[:tile, :tile]
        y, x = (i // cols) * (tile + gap), (i % cols) * (tile + gap)
        out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def _rect(fig: go.Figure, b: Box, name: str, colour: str, dash: str = "solid", **where) -> None:
    fig.add_shape(type="rect", x0=b.left - 0.5, x1=b.right + 0.5, y0=b.top - 0.5, y1=b.bottom + 0.5,
                  line=dict(color=colour, width=3, dash=dash), name=name, **where)


def field_figure(image: np.ndarray, box: Box, reach: np.ndarray) -> go.Figure:
    """The image, the theoretical RF (dashed where it reaches into the padding, which is shaded) and the part
    of it on the image (solid); the pixels of the box the unit cannot reach are dimmed."""
    size = image.shape[0]
    clipped = box.clipped(size)
    margin = max(0, -box.top, -box.left, box.bottom - size + 1, box.right - size + 1)
    shown = image.copy()
    region = np.zeros_like(reach)
    region[clipped.top:clipped.bottom + 1, clipped.left:clipped.right + 1] = True
    holes = region & ~reach
    shown[holes] = (shown[holes] * 0.35).astype(np.uint8)
    fig = go.Figure(go.Image(z=shown, hovertemplate="row %{y}, column %{x}<extra></extra>"))
    if margin:
        fig.add_shape(type="rect", x0=-margin - 0.5, x1=size - 0.5 + margin, y0=-margin - 0.5,
                      y1=size - 0.5 + margin, fillcolor=PAD_COLOUR, line_width=0, layer="below", name="padding")
    _rect(fig, box, "theoretical RF", BOX_COLOUR, "dash")
    _rect(fig, clipped, "theoretical RF on the image", CLIP_COLOUR)
    lim = [-margin - 0.5, size - 0.5 + margin]
    fig.update_xaxes(range=lim, title="column (px)", constrain="domain")
    fig.update_yaxes(range=lim[::-1], title="row (px)", scaleanchor="x", constrain="domain")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white")
    return fig


def erf_figure(maps: list[tuple[str, np.ndarray]], box: Box) -> go.Figure:
    """Each effective RF (|d unit / d input|, scaled to its own maximum) as a heatmap beside the others, with
    the theoretical box on each."""
    fig = make_subplots(1, len(maps), subplot_titles=[t for t, _ in maps], horizontal_spacing=0.08)
    size = maps[0][1].shape[0]
    clipped = box.clipped(size)
    for i, (_, grad) in enumerate(maps, start=1):
        peak = float(grad.max())
        fig.add_trace(go.Heatmap(z=grad / peak if peak > 0 else grad, zmin=0, zmax=1, colorscale="Viridis",
                                 showscale=i == len(maps), colorbar=dict(title="share of peak"),
                                 hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"), 1, i)
        _rect(fig, clipped, "theoretical RF on the image", BOX_COLOUR, row=1, col=i)
        fig.update_xaxes(range=[-0.5, size - 0.5], constrain="domain", row=1, col=i)
        fig.update_yaxes(range=[size - 0.5, -0.5], scaleanchor=f"x{i if i > 1 else ''}", constrain="domain",
                         row=1, col=i)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def taps_figure(t: Taps, k_eff: int) -> go.Figure:
    """A dilated kernel's taps on its input map (the grey ring is padding): the marked cells are what one output
    pixel reads, the outline the k_eff × k_eff square they span."""
    ys, xs = [y for y, _ in t.points], [x for _, x in t.points]
    lo = min(0, min(ys), min(xs)) - 0.5
    hi = max(t.n_in - 1, max(ys), max(xs)) + 0.5
    fig = go.Figure()
    fig.add_shape(type="rect", x0=lo, x1=hi, y0=lo, y1=hi, fillcolor=PAD_COLOUR, line_width=0, layer="below")
    fig.add_shape(type="rect", x0=-0.5, x1=t.n_in - 0.5, y0=-0.5, y1=t.n_in - 0.5, fillcolor="white",
                  line=dict(color="#888", width=1), layer="below", name="input map")
    inside_map = [0 <= y < t.n_in and 0 <= x < t.n_in for y, x in t.points]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(
        size=12, symbol="square", color=[BOX_COLOUR if ok else "#999" for ok in inside_map]),
        hovertemplate="tap at row %{y}, column %{x}<extra></extra>", showlegend=False))
    _rect(fig, Box(min(ys), min(xs), min(ys) + k_eff - 1, min(xs) + k_eff - 1), "kernel reach", CLIP_COLOUR)
    fig.update_xaxes(range=[lo, hi], title="column of the layer's input map", constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_yaxes(range=[hi, lo], title="row", scaleanchor="x", constrain="domain", showgrid=False, zeroline=False)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white")
    return fig
