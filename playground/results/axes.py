"""Ticks that tell the truth: epochs, pixels and map sizes are whole numbers, and a percent axis spans what an
accuracy can be around the data, with as many decimals as its step needs, so no two labels read the same."""
from __future__ import annotations

import math

PERCENT_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25)
MAX_TICKS = 8


def epoch_ticks(last_epoch: int) -> list[int]:
    """Whole epochs from 1 to ``last_epoch``, at most about ten of them (every 1, 2, 5, 10, … epochs)."""
    last = max(1, int(last_epoch))
    step = next(s for m in (1, 10, 100, 1000, 10_000) for s in (m, 2 * m, 5 * m) if last / s <= 10)
    return [1, *range(step, last + 1, step)] if step > 1 else list(range(1, last + 1))


def integer_axis(values) -> dict:
    """A y axis for whole numbers (pixels, map sizes): ticks at a round whole step from 0 past the largest value,
    so no label is fractional."""
    top = max([int(math.ceil(v)) for v in values if v is not None and math.isfinite(v)], default=1)
    step = next(s for m in (1, 10, 100, 1000, 10_000) for s in (m, 2 * m, 5 * m) if top / s <= MAX_TICKS)
    ticks = list(range(0, top + step, step))
    return dict(range=[0, ticks[-1] * 1.05], tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks])


def percent_axis(values) -> dict:
    """A y axis for shares in [0, 1] (accuracies): its range padded around the finite values and clipped to
    [0, 1], and its ticks (tickvals, ticktext) at a round step with the decimals that step needs."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max(0.01, (hi - lo) * 0.1)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    step = next((s for s in PERCENT_STEPS if (hi - lo) / s <= MAX_TICKS), 0.25)
    decimals = max(0, -math.floor(math.log10(step * 100) + 1e-9)) if step < 0.01 else 0
    first = math.ceil(lo / step - 1e-9)
    ticks = [round(k * step, 6) for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]
    return dict(range=[lo, hi], tickmode="array", tickvals=ticks, ticktext=[f"{t * 100:.{decimals}f}%" for t in ticks])
