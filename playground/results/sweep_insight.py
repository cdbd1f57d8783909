"""What a sweep learned, in Optuna's own plots (``optuna.visualization``): one function per view.

Each view takes a study from ``snapshot`` and returns the Plotly figure Optuna draws for it, or one line
naming what the view needs and what the study has so far. Importances use PED-ANOVA, Optuna's default
evaluator, which needs only NumPy (fANOVA and mean decrease impurity need scikit-learn).
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna import visualization
from optuna.trial import TrialState

from .axes import epoch_ticks, percent_axis

OBJECTIVE_LABELS = {"accuracy": "test accuracy", "params": "parameters", "macs": "multiply-accumulates per image",
                    "minutes": "training minutes"}
IMPORTANCE_TRIALS = 4  # PED-ANOVA compares the best tenth of the finished trials with all: fewer are mostly noise
STATE_WORDS = {TrialState.RUNNING: "running", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.WAITING: "waiting"}
HEIGHT = 460


def snapshot(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study`` whose metric names are its objectives (``"objectives"``, kept by the
    sweep), so every view reads the trials once from memory and labels its axes with them."""
    kept = [OBJECTIVE_LABELS.get(o, str(o)) for o in study.user_attrs.get("objectives", ["accuracy"])]
    names = kept[:len(study.directions)] + [f"objective {i}" for i in range(len(kept), len(study.directions))]
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(study.get_trials(deepcopy=False))
    with warnings.catch_warnings():  # Optuna calls metric names experimental; its plots read them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        copy.set_metric_names(names)
    return copy


def _finished(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _so_far(study: optuna.Study) -> str:
    """How many trials finished, and what the others are doing: '2 so far (1 pruned, 1 running)'."""
    counts = Counter(t.state for t in study.get_trials(deepcopy=False))
    others = ", ".join(f"{counts[s]} {word}" for s, word in STATE_WORDS.items() if counts[s])
    return f"{counts[TrialState.COMPLETE] or 'none'} so far" + (f" ({others})" if others else "")


def _searched(trials: list) -> set[str]:
    """The parameters the finished trials drew from a range of more than one value."""
    return {name for t in trials for name, d in t.distributions.items() if not d.single()}


def _sized(fig: go.Figure, **layout) -> go.Figure:
    return fig.update_layout(height=HEIGHT, margin=dict(t=60, b=50, l=70), **layout)  # l: the first axis's ticks


def history(study: optuna.Study) -> go.Figure | str:
    """Each finished trial's test accuracy in trial order, with the best so far (single objective)."""
    if not _finished(study):
        return f"The optimisation history needs 1 finished trial; {_so_far(study)}."
    if len(study.directions) == 1:
        fig = visualization.plot_optimization_history(study, target_name=study.metric_names[0])
    else:  # Optuna draws a chosen objective of a multi-objective study, without a best-so-far line
        fig = visualization.plot_optimization_history(study, target=lambda t: t.values[0],
                                                      target_name=study.metric_names[0])
    return _sized(fig, yaxis=percent_axis(t.values[0] for t in _finished(study)))


def parallel(study: optuna.Study) -> go.Figure | str:
    """One line per finished trial through its objectives and searched parameters."""
    done = _finished(study)
    if len(done) < 2 or not _searched(done):
        return f"Parallel coordinates need 2 finished trials with a searched parameter; {_so_far(study)}."
    if len(study.directions) == 1:
        return _sized(visualization.plot_parallel_coordinate(study, target_name=study.metric_names[0]))
    return _sized(visualization.plot_parallel_coordinate(study))  # every objective, coloured by Pareto rank


def importances(study: optuna.Study) -> go.Figure | str:
    """How much each searched parameter mattered for reaching the best test accuracies (PED-ANOVA)."""
    done = _finished(study)
    if len(done) < IMPORTANCE_TRIALS:
        return f"Importances need {IMPORTANCE_TRIALS} finished trials; {_so_far(study)}."
    if len(searched := _searched(done)) < 2:
        return f"Importances compare 2 or more searched parameters; the finished trials searched {len(searched)}."
    if len({t.values[0] for t in done}) == 1:
        return f"Importances need finished trials that differ in test accuracy; all {len(done)} reached the same."
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    if len(study.directions) == 1:
        return _sized(visualization.plot_param_importances(study, evaluator=evaluator))
    with warnings.catch_warnings():  # PED-ANOVA takes a low target as good: the accuracy is negated, knowingly
        warnings.filterwarnings("ignore", message=".*achieve low `target` values")
        return _sized(visualization.plot_param_importances(study, evaluator=evaluator, target=lambda t: -t.values[0],
                                                           target_name=study.metric_names[0]))


def curves(study: optuna.Study) -> go.Figure | str:
    """Every trial's tested accuracy per epoch, pruned trials included, each pruned one marked where it stopped."""
    if len(study.directions) > 1:
        return ("Learning curves need each trial's tested accuracy per epoch, which a sweep reports only with "
                f"one objective (Optuna prunes no multi-objective study); this one also minimises "
                f"{study.metric_names[1]}.")
    reported = study.get_trials(deepcopy=False, states=(TrialState.PRUNED, TrialState.COMPLETE, TrialState.RUNNING))
    if not any(t.intermediate_values for t in reported):
        return f"Learning curves need a trial that has reported a tested epoch; {_so_far(study)}."
    fig = visualization.plot_intermediate_values(study)
    stops = [(t.number, *max(t.intermediate_values.items())) for t in reported
             if t.state == TrialState.PRUNED and t.intermediate_values]
    if stops:
        fig.add_scatter(x=[e for _, e, _ in stops], y=[v for _, _, v in stops], mode="markers", name="pruned",
                        marker=dict(symbol="x", size=11, color="#212529"), customdata=[n for n, _, _ in stops],
                        hovertemplate="trial %{customdata} pruned after epoch %{x}<extra></extra>")
    values = [v for t in reported for v in t.intermediate_values.values()]
    last = max(e for t in reported for e in t.intermediate_values)
    return _sized(fig, xaxis=dict(title="epoch", tickmode="array", tickvals=epoch_ticks(last)),
                  yaxis=dict(title="tested accuracy", **percent_axis(values)))


def timeline(study: optuna.Study) -> go.Figure | str:
    """When each trial ran and how it ended: the workers' parallelism and the pruner's early stops."""
    if not any(t.datetime_start for t in study.get_trials(deepcopy=False)):
        return f"The timeline needs 1 started trial; {_so_far(study)}."
    return _sized(visualization.plot_timeline(study))


def pareto(study: optuna.Study) -> go.Figure | str:
    """The finished trials on both objectives, the Pareto-optimal ones highlighted (multi-objective)."""
    if len(study.directions) == 1:
        return ("A Pareto front needs a second objective (parameters, MACs or minutes); this study maximises "
                f"{study.metric_names[0]} alone.")
    if not _finished(study):
        return f"The Pareto front needs 1 finished trial; {_so_far(study)}."
    return _sized(visualization.plot_pareto_front(study, target_names=study.metric_names))


class View(NamedTuple):
    """A view of a study: its tab label, the function that draws it and a line on how to read it."""

    label: str
    draw: Callable[[optuna.Study], go.Figure | str]
    note: str


VIEWS = (
    View("Optimisation history", history, "Each finished trial's test accuracy in the order the trials ran, "
         "and (with one objective) the best so far."),
    View("Parallel coordinates", parallel, "One line per finished trial through its objectives and searched "
         "parameters, coloured by test accuracy (by Pareto rank with two objectives)."),
    View("Parameter importances", importances, "PED-ANOVA, Optuna's default evaluator (NumPy only): how much the "
         "best tenth of the finished trials narrows each parameter compared with all finished trials."),
    View("Learning curves", curves, "Every trial's tested accuracy per epoch, pruned trials included: ✕ marks "
         "where the pruner stopped one."),
    View("Timeline", timeline, "When each trial ran and how it ended: trials side by side ran at once."),
    View("Pareto front", pareto, "Optuna's Pareto front: the finished trials no other beats on both objectives "
         "are highlighted."),
)
