"""The Inside view as one PNG (what ``python -m playground inside --out`` writes): the image with the unit's
theoretical RF, its effective RF for the trained weights and the initialisation, and every layer's top channels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import write_atomic
from .inside import Box, Look
from .inside_plots import coloured, mosaic

PANEL, TOP = 320, 8  # the side of a top-row picture in px; channels shown per layer
PAD_GREY, BOX_RGB, CLIP_RGB = (190, 190, 190), (255, 45, 85), (255, 214, 10)


def _panel(rgb: np.ndarray, box: Box, margin: int, title: str, font) -> Image.Image:
    """``rgb`` (size, size, 3) scaled up, on a grey padding margin, with the box's outline and a title."""
    size = rgb.shape[0]
    scale = max(1, PANEL // (size + 2 * margin))  # whole pixels: each image pixel stays a square
    side = (size + 2 * margin) * scale
    im = Image.new("RGB", (max(side, PANEL), side + 22), "white")
    im.paste(Image.new("RGB", (side, side), PAD_GREY), (0, 22))
    im.paste(Image.fromarray(rgb).resize((size * scale, size * scale), Image.NEAREST),
             (margin * scale, 22 + margin * scale))
    draw = ImageDraw.Draw(im)
    draw.text((2, 2), title, fill="black", font=font)
    for b, colour in ((box, BOX_RGB), (box.clipped(size), CLIP_RGB)):
        draw.rectangle([(b.left + margin) * scale, 22 + (b.top + margin) * scale,
                        (b.right + margin + 1) * scale - 1, 22 + (b.bottom + margin + 1) * scale - 1],
                       outline=colour, width=2)
    return im


def picture(view: Look) -> Image.Image:
    font = ImageFont.load_default(size=14)
    size = view.acts.image.shape[0]
    b = view.box
    margin = max(0, -b.top, -b.left, b.bottom - size + 1, b.right - size + 1)
    s = view.summary()
    title = f"{s['layer']} at row {view.at[0]}, col {view.at[1]}: RF {s['rf_px']:g} px"
    panels = [_panel(view.acts.image, b, margin, title, font)]
    for key, title in (("trained", "effective RF, trained"), ("init", "effective RF, initialisation")):
        if key in view.grads:
            panels.append(_panel(coloured(view.grads[key]), b, margin, title, font))
    rows = []
    for layer in view.acts.layers:
        tiles = mosaic(layer.maps[layer.top(TOP)], cols=TOP, tile=32)
        label = f"{layer.name} {'x'.join(map(str, layer.maps.shape))}"
        rows.append((label, Image.fromarray(tiles)))
    top_h = max(p.height for p in panels)
    guess = ", ".join(f"{t['label']} {t['p']:.0%}" for t in s["top3"])
    lines = [f"{view.subject.label}. Top 3: {guess}.",
             "Red: the theoretical RF; yellow: its part on the image; grey: padding. "
             "Tiles: each scaled to its own range."]
    text_w = max(int(font.getlength(line)) for line in lines) + 4
    width = max(sum(p.width + 10 for p in panels), 130 + max(t.width for _, t in rows), text_w)
    height = top_h + 50 + sum(t.height + 6 for _, t in rows)
    out = Image.new("RGB", (width, height), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 10
    draw = ImageDraw.Draw(out)
    for k, line in enumerate(lines):
        draw.text((2, top_h + 6 + 20 * k), line, fill="black", font=font)
    y = top_h + 50
    for label, tiles in rows:
        draw.text((2, y + 2), label, fill="black", font=font)
        out.paste(tiles, (130, y))
        y += tiles.height + 6
    return out


def write_png(view: Look, path: str | Path) -> Path:
    """The picture, written whole or not at all."""
    im = picture(view)
    return write_atomic(Path(path), lambda tmp: im.save(tmp, format="PNG"))
