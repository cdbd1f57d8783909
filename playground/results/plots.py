"""Plotly figures of runs and their results: the Train, Runs and Results pages and the CLI's ``curves`` command."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..runs.records import RunRecord
from ..specs.seed_logs import SeedLog, log_for
from ..training.lr_find import RangeTest
from .axes import epoch_ticks, integer_axis, percent_axis
from .compare import run_labels


def add_seed_log(fig: go.Figure, log: SeedLog, **where) -> list[float]:
    """The seed's logged test (solid) and training (dotted) accuracy in grey, as a reference; its values."""
    for split, values, dash in (("test", log.test_acc, "solid"), ("training", log.train_acc, "dot")):
        fig.add_scatter(x=log.epochs, y=list(values), name=f"{log.source}, {split}", legendgroup="seed-log",
                        mode="lines", line=dict(color="#9e9e9e", dash=dash, width=2), **where)
    return [*log.train_acc, *log.test_acc]


def live_figure(epochs: list[dict], batches: list[dict], steps_per_epoch: int, eval_every: int = 1,
                reference: SeedLog | None = None) -> go.Figure:
    """Loss (batch and epoch), accuracy and LR of one run, all against epochs (batches at
    their fractional epoch, so the curves line up while the run is in progress). The legend sits above the
    three charts, and an accuracy chart with no test yet says when the first one comes. ``reference``: the
    seed's logged curve, drawn on the accuracy chart over all its epochs."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "learning rate"), horizontal_spacing=0.1)
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
    accuracies = [*ep.get("train_acc", []), *ep.get("test_acc", [])]
    logged = add_seed_log(fig, reference, row=1, col=2) if reference else []
    last = max([*ep.get("epoch", []), *((bt["step"] / max(1, steps_per_epoch)).apply(math.ceil) if len(bt) else []),
                *(reference.epochs if reference else [])], default=1)
    fig.update_xaxes(title_text="epoch", tickmode="array", tickvals=epoch_ticks(last), range=[0.5, last + 0.5])
    fig.update_yaxes(title_text="cross-entropy loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", **percent_axis([*accuracies, *logged]), row=1, col=2)
    if not [a for a in accuracies if a is not None and math.isfinite(a)]:
        fig.add_annotation(text=f"no test yet: the first<br>comes after epoch {max(1, eval_every)}", showarrow=False,
                           x=0.5, y=0.5, xref="x2 domain", yref="y2 domain")
    fig.update_yaxes(title_text="learning rate", row=1, col=3)
    fig.update_layout(height=360, margin=dict(t=70, b=20),
                      legend=dict(orientation="h", x=0, y=1.2, xanchor="left", yanchor="bottom"))
    return fig.update_traces(connectgaps=True)  # epochs without a test pass (eval_every > 1) are None


def minutes_seconds(seconds: float | None) -> str:
    """A duration as people read it: 1:05:09, 12:07, 0:42."""
    if seconds is None:
        return ""
    total = int(round(seconds))
    h, m, s = total // 3600, total // 60 % 60, total % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def accuracy_text(value: float | None, digits: int = 1) -> str:
    """An accuracy as a percentage, or "not tested" for a run with no tested epoch (never "None" or 0%)."""
    return "not tested" if value is None else f"{value:.{digits}%}"


ABSENT = "–"  # a figure a row lacks (an untested epoch, a trial pruned before it trained), as Home writes it


def figure_text(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``ABSENT``: a table cell never reads "None"."""
    return ABSENT if value is None else format(value, spec)


def epoch_table(epochs: list[dict]) -> pd.DataFrame:
    """A run's epochs as the Train page lists them: accuracies as percentages ("not tested" for an epoch without a
    test pass), losses to 3 decimals (ABSENT where untested), LR, images a second, and times as m:ss."""
    return pd.DataFrame([{
        "epoch": e["epoch"], "train acc": accuracy_text(e.get("train_acc"), 2),
        "test acc": accuracy_text(e.get("test_acc"), 2), "train loss": figure_text(e.get("train_loss"), ".3f"),
        "test loss": figure_text(e.get("test_loss"), ".3f"), "LR": figure_text(e.get("lr"), ".4g"),
        "img/s": figure_text(e.get("img_per_s"), ",.0f"),
        "epoch time": minutes_seconds(e.get("epoch_time")), "elapsed": minutes_seconds(e.get("elapsed"))}
        for e in epochs])


def compare_figure(runs: list[RunRecord], minutes: bool = False) -> go.Figure:
    """Test (solid) and training (dotted) accuracy of several runs in one colour per run, by epoch or by
    wall-clock minutes: a training curve far above the test one is a run that overfits. The legend names runs
    by name (with the id where two share one). By epoch, a run of a seed's own network has that seed's logged
    curve beside it in grey (the log has no times, so it is not drawn against minutes)."""
    fig = go.Figure()
    colours = px.colors.qualitative.Plotly
    for k, (r, label) in enumerate(zip(runs, run_labels(runs))):
        if r.epochs:
            x = [e["elapsed"] / 60 for e in r.epochs] if minutes else [e["epoch"] for e in r.epochs]
            colour = colours[k % len(colours)]
            fig.add_scatter(x=x, y=[e["test_acc"] for e in r.epochs], name=label, legendgroup=r.id,
                            mode="lines+markers", line=dict(color=colour))
            fig.add_scatter(x=x, y=[e.get("train_acc") for e in r.epochs], name=f"{label}, training",
                            legendgroup=r.id, mode="lines", line=dict(color=colour, dash="dot"))
    logs = [] if minutes else seed_logs(runs)
    logged = [v for log in logs for v in add_seed_log(fig, log)]
    last = max([*(e["epoch"] for r in runs for e in r.epochs), *(len(log.test_acc) for log in logs)], default=1)
    shown = [e.get(k) for r in runs for e in r.epochs for k in ("test_acc", "train_acc")] + logged
    fig.update_layout(height=380, xaxis_title="wall-clock minutes" if minutes else "epoch",
                      yaxis=dict(title="accuracy (solid: test, dotted: training)", **percent_axis(shown)),
                      margin=dict(t=20), showlegend=True)
    if not minutes:
        fig.update_xaxes(tickmode="array", tickvals=epoch_ticks(last))
    return fig.update_traces(connectgaps=True)


def seed_log(run: RunRecord) -> SeedLog | None:
    """The logged curve of the seed whose network ``run`` trained, if it is one."""
    return log_for(run.spec.get("net"))


def seed_logs(runs: list[RunRecord]) -> list[SeedLog]:
    """The logged curves of the seeds these runs trained, each once."""
    logs = [log for log in map(seed_log, runs) if log]
    return [log for k, log in enumerate(logs) if log not in logs[:k]]


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
    last = max((e["epoch"] for r in runs for e in r.epochs), default=1)
    fig.update_xaxes(title_text="epoch", tickmode="array", tickvals=epoch_ticks(last), row=1, col=2)
    tested = [e["test_acc"] for r in runs for e in r.epochs] + [0.85, 0.90]
    fig.update_yaxes(title_text="test accuracy", **percent_axis(tested), row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy loss", row=1, col=2)
    fig.update_layout(height=420, margin=dict(t=40, b=20))
    return fig.update_traces(connectgaps=True)


def confusion_figure(cm: np.ndarray, classes: list[str], true: str, pred: str) -> go.Figure:
    """A heatmap, and over each cell an invisible square marker: a click in plotly selects scatter points,
    never heatmap cells, so the markers are what a click on a cell selects. A frame marks the cells that the
    gallery shows (the filters ``true`` and ``pred``); as the figure changes with them, a changed filter also
    clears the chart's selection, so the next click on any cell is a new selection."""
    true_idx, pred_idx = np.indices(cm.shape).reshape(2, -1)
    fig = go.Figure(go.Heatmap(z=cm, x=classes, y=classes, colorscale="Oranges", texttemplate="%{z}",
                               hoverinfo="skip", colorbar=dict(title="count")))
    fig.add_scatter(x=[classes[j] for j in pred_idx], y=[classes[i] for i in true_idx], customdata=cm.ravel(),
                    mode="markers", marker=dict(symbol="square", size=30, color="rgba(0,0,0,0)"), showlegend=False,
                    hovertemplate="true %{y}, predicted %{x}: %{customdata} images<extra>click to filter</extra>")

    def span(name: str) -> tuple[float, float]:  # one class, or all of them for "any"
        return (classes.index(name) - 0.5, classes.index(name) + 0.5) if name in classes else (-0.5, len(classes) - 0.5)

    if (true, pred) != ("any", "any"):
        (y0, y1), (x0, x1) = span(true), span(pred)
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color="black", width=2))
    fig.update_layout(height=480, margin=dict(t=20), xaxis=dict(title="predicted", constrain="domain"),
                      yaxis=dict(title="true", autorange="reversed", scaleanchor="x", constrain="domain"))
    return fig


def heat_overlay(image: np.ndarray, cam: np.ndarray, alpha: float) -> np.ndarray:
    """``image`` with the heat map ``cam`` (values in [0, 1]) blended over it in the Jet colours."""
    heat = px.colors.sample_colorscale("Jet", cam.ravel().tolist())
    rgb = np.array([[int(v) for v in c[4:-1].split(",")] for c in heat], np.float32).reshape(*cam.shape, 3)
    return ((1 - alpha) * image + alpha * rgb).clip(0, 255).astype(np.uint8)


def per_class_figure(per_class: dict[str, float]) -> go.Figure:
    """Test accuracy of each class, as horizontal bars from the first class at the top down, in the confusion
    matrix's row order."""
    fig = px.bar(x=list(per_class.values()), y=list(per_class), orientation="h", labels=dict(x="accuracy", y=""))
    ticks = [k / 5 for k in range(6)]  # 0 to 100%, with room for the last label: a range cut at the data's top
    # left its last tick at 80% under bars near 95%, and one ending at 100% hid that label at the edge
    return fig.update_layout(yaxis=dict(autorange="reversed"), margin=dict(r=30), xaxis=dict(
        range=[0, 1.06], tickmode="array", tickvals=ticks, ticktext=[f"{t:.0%}" for t in ticks]))


def rf_figure(rows: list[dict]) -> go.Figure:
    """The Architect's chart: each layer's receptive field (px) and its output map's size n, both whole numbers,
    with the rule's 44 px line."""
    layers = [r["layer"] for r in rows]
    fig = go.Figure()
    fig.add_scatter(x=layers, y=[r["r"] for r in rows], name="receptive field (px)", mode="lines+markers")
    fig.add_bar(x=layers, y=[r["n"] for r in rows], name="feature map size n (px)", yaxis="y2", opacity=0.4)
    fig.add_hline(y=44, line_dash="dot", annotation_text="RF 44")
    fig.update_layout(height=320, margin=dict(t=20, b=20), legend=dict(orientation="h"),
                      yaxis=dict(title="receptive field (px)", **integer_axis([45, *(r["r"] for r in rows)])),
                      yaxis2=dict(title="map size n (px)", overlaying="y", side="right",
                                  **integer_axis([r["n"] for r in rows])))
    return fig


def lr_figure(result: RangeTest) -> go.Figure:
    """The LR range test: each batch's loss and its smoothed curve against the LR on a log axis, with the
    suggested max LR (the smoothed minimum / 10) and the steepest descent marked."""
    fig = go.Figure()
    fig.add_scatter(x=result.lrs, y=result.losses, mode="markers", name="batch loss", opacity=0.35,
                    marker=dict(size=4, color="#868e96"))
    fig.add_scatter(x=result.lrs, y=result.smoothed, mode="lines", name="smoothed loss", line=dict(color="#1c7ed6"))
    for lr, label, colour in ((result.suggested_max_lr, "suggested max LR (minimum / 10)", "#d9480f"),
                              (result.steepest_lr, "steepest descent", "#2b8a3e")):
        if lr is not None:
            fig.add_vline(x=lr, line=dict(color=colour, dash="dash"))
            fig.add_scatter(x=[lr], y=[None], mode="lines", name=f"{label}: {lr:.2g}",
                            line=dict(color=colour, dash="dash"))
    finite = [s for s in result.smoothed if s is not None and math.isfinite(s)]
    low, high = (min(finite), min(max(finite), 4 * min(finite))) if finite else (0.0, 1.0)
    pad = max(0.05, (high - low) * 0.15)  # the smoothed curve fills the chart; a batch far above it is cut
    fig.update_xaxes(type="log", title="learning rate (log scale)", exponentformat="power", dtick=1)
    fig.update_yaxes(title="training loss", range=[max(0.0, low - pad), high + pad])
    fig.update_layout(height=340, margin=dict(t=30, b=20), legend=dict(orientation="h", y=1.12, x=0))
    return fig
