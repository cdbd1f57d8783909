"""The Sweep page's own chart and trials table: every tested trial, the Pareto front through the finished ones, and
the presets and recipes to read them against, on a percent axis that fits them and with every label inside the chart;
the table says what a trial lacks in words, never "None"."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..runs.sweep import pareto_front
from .axes import percent_axis
from .plots import ABSENT, accuracy_text, figure_text, minutes_seconds
from .sweep_insight import OBJECTIVE_LABELS

EDGE = 0.2  # a label whose point sits in the outer fifth of the x range runs inward from it


def label_positions(xs: list[float], lo: float, hi: float) -> list[str]:
    """Where each point's label goes so that it stays inside the chart: centred above a point in the middle,
    beside it, running inward, for a point near either edge of [lo, hi]."""
    span = (hi - lo) or 1.0
    return ["middle right" if (x - lo) / span < EDGE else "middle left" if (hi - x) / span < EDGE else "top center"
            for x in xs]


def front_figure(table: pd.DataFrame, axis: str, refs: list[dict]) -> go.Figure:
    """``table``: the trials (accuracy, state, trial and the ``axis`` column); ``refs``: points with a name, an x
    and an accuracy (runs.sweep.references)."""
    done = table[table["accuracy"].notna() & table[axis].notna()]
    complete = done[done["state"] == "complete"]
    front = complete.iloc[pareto_front(list(zip(complete[axis], complete["accuracy"])))]
    fig = go.Figure()
    fig.add_scatter(x=done[axis], y=done["accuracy"], mode="markers", name="trials",
                    text=[f"trial {t} ({s})" for t, s in zip(done["trial"], done["state"])],
                    marker=dict(size=9, color=["#d9480f" if s == "complete" else "#adb5bd" for s in done["state"]]))
    if len(front):
        fig.add_scatter(x=front[axis], y=front["accuracy"], mode="lines+markers", name="Pareto front",
                        line=dict(shape="hv", color="#d9480f"), hoverinfo="skip",  # a one-trial front shows too
                        marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(width=2, color="#d9480f")))
    xs = [*done[axis], *(r["x"] for r in refs)]
    for measured, name, symbol in ((True, "recipes, measured here", "diamond"),
                                   (False, "seeds, as their READMEs report", "diamond-open")):
        points = [r for r in refs if r["measured"] == measured]
        if points:
            where = label_positions([r["x"] for r in points], min(xs), max(xs))
            fig.add_scatter(x=[r["x"] for r in points], y=[r["accuracy"] for r in points], mode="markers+text",
                            name=name, text=[r["label"] for r in points], hovertext=[r["name"] for r in points],
                            hoverinfo="text+y", textposition=where,
                            marker=dict(symbol=symbol, size=10, color="#1c7ed6", line=dict(width=2, color="#1c7ed6")),
                            cliponaxis=False)
    accuracies = [*done["accuracy"], *(r["accuracy"] for r in refs)]
    fig.update_layout(height=400, margin=dict(t=40, r=10), xaxis=dict(title=OBJECTIVE_LABELS[axis]),
                      yaxis=dict(title="test accuracy", **percent_axis(accuracies)),
                      legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom"))
    return fig


def trial_table(rows: list[dict]) -> pd.DataFrame:
    """The trials as the page lists them (runs.sweep.trial_rows): accuracy as a percentage or "not tested",
    parameters and MACs as people read them, training time as m:ss, and ABSENT for any figure a trial lacks."""
    fixed = ("trial", "state", "accuracy", "params", "macs", "minutes", "run", "why")
    return pd.DataFrame([{
        "trial": r["trial"], "state": r["state"], "accuracy": accuracy_text(r["accuracy"], 2),
        "params": figure_text(r["params"], ","),
        "MACs": ABSENT if r["macs"] is None else f"{r['macs'] / 1e6:.1f}M",
        "time": ABSENT if r["minutes"] is None else minutes_seconds(r["minutes"] * 60), "run": r["run"],
        "why": r["why"] or "",
        **{k: figure_text(v, ".4g" if isinstance(v, float) else "") for k, v in r.items() if k not in fixed}}
        for r in rows])
