"""The Sweep page's own chart and trials table (results/sweep_chart.py): labels inside the chart, percent labels
that differ, and a table that says in words what a trial lacks."""
import pandas as pd

from playground.results.sweep_chart import front_figure, label_positions, trial_table


def test_the_sweep_chart_keeps_its_labels_inside_and_its_percent_labels_distinct():
    """Labels of points at the right edge (the presets near 200k parameters) ran past the chart; a default tick
    format of whole percents repeats labels for trials within a point of each other."""
    assert label_positions([0, 50, 100], 0, 100) == ["middle right", "top center", "middle left"]
    assert label_positions([5, 5], 5, 5) == ["middle right", "middle right"]  # one x: no division by zero
    table = pd.DataFrame(dict(trial=[0, 1, 2], state=["complete"] * 3, accuracy=[0.852, 0.855, 0.858],
                              params=[150_000, 180_000, 196_000]))
    refs = [dict(name="fast recipe (2-core EPYC)", label="fast", measured=True, x=196_480, accuracy=0.8672),
            dict(name="seed-001 (reported)", label="seed-001", measured=False, x=68_992, accuracy=0.871)]
    fig = front_figure(table, "params", refs)
    recipes, seeds = (next(d for d in fig.data if d.name == n)
                      for n in ("recipes, measured here", "seeds, as their READMEs report"))
    assert (list(recipes.textposition), list(seeds.textposition)) == (["middle left"], ["middle right"])
    assert (list(recipes.text), list(recipes.hovertext)) == (["fast"], ["fast recipe (2-core EPYC)"])
    labels = list(fig.layout.yaxis.ticktext)
    assert len(labels) == len(set(labels)) >= 2 and fig.layout.legend.orientation == "h"


def test_the_trials_table_says_what_a_pruned_trial_lacks_in_words():
    """A trial pruned over the budget has no accuracy, size or time: the table read "None" in four columns."""
    rows = [dict(trial=0, state="pruned", accuracy=None, params=None, macs=None, minutes=None, run="",
                 why="314,656 params: over the 200,000 budget", **{"train.max_lr": 0.31}),
            dict(trial=1, state="complete", accuracy=0.4242, params=175_376, macs=11_234_567, minutes=1.8,
                 run="20261208-004758-ffabf6", why="", **{"train.max_lr": None})]
    table = trial_table(rows)
    assert table.to_dict("records") == [
        {"trial": 0, "state": "pruned", "accuracy": "not tested", "params": "–", "MACs": "–", "time": "–", "run": "",
         "why": "314,656 params: over the 200,000 budget", "train.max_lr": "0.31"},
        {"trial": 1, "state": "complete", "accuracy": "42.42%", "params": "175,376", "MACs": "11.2M", "time": "1:48",
         "run": "20261208-004758-ffabf6", "why": "", "train.max_lr": "–"}]
    assert "None" not in table.to_string()
