"""Plotly figures shared by the Train and Runs pages and the CLI's ``curves`` command."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..runs.records import RunRecord


def live_figure(epochs: list[dict], batches: list[dict], steps_per_epoch: int) -> go.Figure:
    """Loss (batch and epoch), accuracy and LR of one run, all against epochs (batches at
    their fractional epoch, so the curves line up while the run is in progress)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "learning rate"))
    ep, bt = pd.DataFrame(epochs), pd.DataFrame(batches)
    if len(bt):
        x = bt["step"] / max(1, steps_per_epoch)
        fig.add_scatter(x=x, y=bt["loss"], name="batch loss", line=dict(width=1), opacity=0.4, row=1, col=1)
        fig.add_scatter(x=x, y=bt["lr"], name="lr", row=1, col=3)
    if len(ep):
        for col, key in ((1, "loss"), (2, "acc")):
            for split in ("train", "test"):
                fig.add_scatter(x=ep["epoch"], y=ep[f"{split}_{key}"], name=f"{split} {key}", mode="lines+markers",
                                row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", row=1, col=2)
    fig.update_yaxes(title_text="learning rate", row=1, col=3)
    fig.update_layout(height=340, margin=dict(t=40, b=20))
    return fig.update_traces(connectgaps=True)  # epochs without a test pass (eval_every > 1) are None


def minutes_seconds(seconds: float | None) -> str:
    """A duration as people read it: 1:05:09, 12:07, 0:42."""
    if seconds is None:
        return ""
    total = int(round(seconds))
    h, m, s = total // 3600, total // 60 % 60, total % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def compare_figure(runs: list[RunRecord], minutes: bool = False) -> go.Figure:
    """Test accuracy of several runs, by epoch or by wall-clock minutes."""
    fig = go.Figure()
    for r in runs:
        if r.epochs:
            x = [e["elapsed"] / 60 for e in r.epochs] if minutes else [e["epoch"] for e in r.epochs]
            fig.add_scatter(x=x, y=[e["test_acc"] for e in r.epochs], name=f"{r.name} {r.id}", mode="lines+markers")
    fig.update_layout(height=360, xaxis_title="wall-clock minutes" if minutes else "epoch",
                      yaxis=dict(title="test accuracy", tickformat=".0%"), margin=dict(t=20))
    return fig.update_traces(connectgaps=True)


def report_figure(runs: list[RunRecord]) -> go.Figure:
    """For docs/: test accuracy by minute and train/test loss by epoch, with the 85% and 90% lines."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy by wall-clock minute", "loss by epoch"))
    for r in runs:
        if not r.epochs:
            continue
        label = f"{r.name} ({r.params:,} params)"
        fig.add_scatter(x=[e["elapsed"] / 60 for e in r.epochs], y=[e["test_acc"] for e in r.epochs], name=label,
                        mode="lines+markers", row=1, col=1)
        for split, dash in (("train", "dot"), ("test", "solid")):
            fig.add_scatter(x=[e["epoch"] for e in r.epochs], y=[e[f"{split}_loss"] for e in r.epochs],
                            name=f"{r.name} {split} loss", line=dict(dash=dash), row=1, col=2)
    for level in (0.85, 0.90):
        fig.add_hline(y=level, line=dict(color="grey", dash="dash"), row=1, col=1)
    fig.update_xaxes(title_text="wall-clock minutes", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy loss", row=1, col=2)
    fig.update_layout(height=420, margin=dict(t=40, b=20))
    return fig.update_traces(connectgaps=True)
