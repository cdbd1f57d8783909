"""The Sweep page's insight views (issue 34, part 2): each is the figure optuna.visualization draws for the
study, or one line saying what it needs; small real studies made in memory, and the page on a stored one."""
import optuna
import plotly.io
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from optuna import visualization

from playground.results import sweep_insight as si
from tests.test_app import app_env, shown  # noqa: F401 - the AppTest fixture

SPACE = {"train.max_lr": FloatDistribution(0.01, 1.0, log=True), "net.width": IntDistribution(16, 64),
         "augment": CategoricalDistribution(["flip", "crop"])}
PEDANOVA = optuna.importance.PedAnovaImportanceEvaluator


def trial(n: int, state=TrialState.COMPLETE, epochs: int = 4, second=None):
    """A trial whose accuracy grows with its width and whose curve climbs to it over ``epochs`` epochs."""
    params = {"train.max_lr": 0.02 * (n + 1), "net.width": 16 + 5 * n, "augment": ("flip", "crop")[n % 2]}
    accuracy = 0.5 + 0.04 * n
    curve = {e: accuracy * e / epochs for e in range(1, epochs + 1)}
    values = None if state != TrialState.COMPLETE else [accuracy] if second is None else [accuracy, second(n)]
    return create_trial(state=state, values=values, params=params, distributions=SPACE, intermediate_values=curve)


def made(trials, objectives=("accuracy",)) -> optuna.Study:
    directions = ["maximize"] + ["minimize"] * (len(objectives) - 1)
    study = optuna.create_study(directions=directions)
    study.set_user_attr("objectives", list(objectives))
    study.add_trials(trials)
    return si.snapshot(study)


@pytest.fixture
def single():
    """Six finished trials, two pruned after epoch 2, one failed and one waiting retry."""
    return made([trial(n) for n in range(6)] + [trial(6, TrialState.PRUNED, 2), trial(7, TrialState.PRUNED, 2),
                                                create_trial(state=TrialState.FAIL), create_trial(state=TrialState.WAITING)])


@pytest.fixture
def double():
    return made([trial(n, second=lambda n: 90_000 + 20_000 * (n % 3)) for n in range(5)], ("accuracy", "params"))


def same(fig, optuna_fig) -> bool:
    """``fig`` holds Optuna's figure: its title and every trace Optuna drew, in order, unchanged."""
    ours, theirs = fig.to_plotly_json(), optuna_fig.to_plotly_json()
    return (ours["layout"]["title"] == theirs["layout"]["title"] and len(theirs["data"]) > 0
            and ours["data"][:len(theirs["data"])] == theirs["data"])


def test_every_view_of_a_one_objective_study_is_optunas_figure(single):
    assert same(si.history(single), visualization.plot_optimization_history(single, target_name="test accuracy"))
    assert same(si.parallel(single), visualization.plot_parallel_coordinate(single, target_name="test accuracy"))
    assert same(si.importances(single), visualization.plot_param_importances(single, evaluator=PEDANOVA()))
    assert same(si.curves(single), visualization.plot_intermediate_values(single))
    assert same(si.timeline(single), visualization.plot_timeline(single))
    assert si.history(single).layout.title.text == "Optimization History Plot"
    assert si.pareto(single) == ("A Pareto front needs a second objective (parameters, MACs or minutes); this "
                                 "study maximises test accuracy alone.")


def test_the_learning_curves_mark_where_the_pruner_stopped_each_pruned_trial(single):
    fig = si.curves(single)
    curves = [d for d in fig.data if d.name != "pruned"]
    assert len(curves) == 8  # the six finished and the two pruned trials: the failed and waiting ones reported nothing
    (stops,) = [d for d in fig.data if d.name == "pruned"]
    assert list(stops.x) == [2, 2] and list(stops.customdata) == [6, 7]
    assert list(stops.y) == pytest.approx([0.5 + 0.04 * 6, 0.5 + 0.04 * 7])
    assert fig.layout.xaxis.title.text == "epoch" and list(fig.layout.xaxis.tickvals) == [1, 2, 3, 4]  # whole epochs
    assert len(set(fig.layout.yaxis.ticktext)) == len(fig.layout.yaxis.ticktext)  # no two percent labels alike


def test_a_two_objective_study_names_its_objectives_and_gets_optunas_pareto_front(double):
    assert double.metric_names == ["test accuracy", "parameters"]
    pareto = si.pareto(double)
    assert same(pareto, visualization.plot_pareto_front(double, target_names=["test accuracy", "parameters"]))
    assert (pareto.layout.xaxis.title.text, pareto.layout.yaxis.title.text) == ("test accuracy", "parameters")
    parallel = si.parallel(double)
    assert same(parallel, visualization.plot_parallel_coordinate(double))
    assert list(parallel.layout.xaxis.ticktext[:2]) == ["test accuracy", "parameters"]  # both objectives, named
    assert same(si.history(double), visualization.plot_optimization_history(
        double, target=lambda t: t.values[0], target_name="test accuracy"))
    assert si.curves(double).startswith("Learning curves need each trial's tested accuracy per epoch")
    assert "parameters" in si.curves(double)


def test_a_two_objective_study_ranks_parameters_for_high_accuracy_as_one_objective_would(double):
    """PED-ANOVA takes a low target as good: the two-objective view negates the accuracy, so its importances are
    those of the same trials in a one-objective study that maximises it."""
    alone = made([trial(n) for n in range(5)])
    fig = si.importances(double)
    with pytest.warns(UserWarning, match="low `target` values"):
        negated = visualization.plot_param_importances(double, evaluator=PEDANOVA(), target=lambda t: -t.values[0],
                                                       target_name="test accuracy")
    assert same(fig, negated)
    with pytest.warns(UserWarning, match="low `target` values"):  # Optuna's own caution, which the view heeds
        visualization.plot_param_importances(double, evaluator=PEDANOVA(), target=lambda t: t.values[0],
                                             target_name="test accuracy")
    expected = visualization.plot_param_importances(alone, evaluator=PEDANOVA()).data[0]
    assert list(fig.data[0].y) == list(expected.y) and list(fig.data[0].x) == pytest.approx(list(expected.x))


def test_each_view_of_a_too_small_study_says_what_it_needs_and_what_the_study_has():
    tiny = made([trial(0), trial(1, TrialState.PRUNED, 2), create_trial(state=TrialState.WAITING)])
    assert si.history(tiny).layout.title.text == "Optimization History Plot"  # one finished trial is enough
    assert si.parallel(tiny) == ("Parallel coordinates need 2 finished trials with a searched parameter; "
                                 "1 so far (1 pruned, 1 waiting).")
    assert si.importances(tiny) == "Importances need 4 finished trials; 1 so far (1 pruned, 1 waiting)."
    waiting = made([create_trial(state=TrialState.WAITING)])
    assert si.history(waiting) == "The optimisation history needs 1 finished trial; none so far (1 waiting)."
    assert si.timeline(waiting) == "The timeline needs 1 started trial; none so far (1 waiting)."
    assert si.curves(waiting) == "Learning curves need a trial that has reported a tested epoch; none so far (1 waiting)."
    assert si.pareto(made([trial(0, TrialState.PRUNED)], ("accuracy", "macs"))) == \
        "The Pareto front needs 1 finished trial; none so far (1 pruned)."
    one_lr = made([create_trial(value=0.5 + n / 10, params={"lr": n / 10}, distributions={"lr": FloatDistribution(0, 1)})
                   for n in range(4)])
    assert si.importances(one_lr) == "Importances compare 2 or more searched parameters; the finished trials searched 1."
    flat = made([create_trial(value=0.6, params=t.params, distributions=SPACE) for t in (trial(n) for n in range(4))])
    assert si.importances(flat) == "Importances need finished trials that differ in test accuracy; all 4 reached the same."


def test_the_sweep_page_draws_every_view_of_a_stored_study_and_says_what_a_small_one_needs(app_env):
    from playground.ui import server
    from playground.runs.sweep import storage_for
    from tests.test_app import open_page

    storage = storage_for(None, server.store().root)
    stored = optuna.create_study(study_name="demo", storage=storage, direction="maximize")
    stored.set_user_attr("objectives", ["accuracy"])
    stored.add_trials([trial(n) for n in range(5)] + [trial(5, TrialState.PRUNED, 2)])
    small = optuna.create_study(study_name="small", storage=storage, directions=["maximize", "minimize"])
    small.set_user_attr("objectives", ["accuracy", "macs"])
    small.add_trials([trial(0, second=lambda n: 1e6), trial(1, TrialState.PRUNED, 2)])
    at = open_page("sweep")
    at.selectbox(key="sw_watch").set_value("demo").run()
    titles = {}
    for view in si.VIEWS:
        at.session_state["sw_insight"] = view.label
        at.run()
        assert not at.exception, at.exception
        charts = at.get("plotly_chart")  # the page's own chart of accuracy against size, then this view's
        titles[view.label] = plotly.io.from_json(charts[1].proto.spec).layout.title.text if len(charts) > 1 else None
    assert any("second objective" in shown(i.value) for i in at.info)  # the last tab: a one-objective study
    assert titles == {"Optimisation history": "Optimization History Plot", "Parallel coordinates": "Parallel "
                      "Coordinate Plot", "Parameter importances": "Hyperparameter Importances", "Learning curves":
                      "Intermediate Values Plot", "Timeline": "Timeline Plot", "Pareto front": None}
    at.selectbox(key="sw_watch").set_value("small").run()
    for view, needs in (("Parameter importances", "Importances need 4 finished trials; 1 so far (1 pruned)."),
                        ("Learning curves", "which a sweep reports only with one objective"),
                        ("Pareto front", None)):
        at.session_state["sw_insight"] = view
        at.run()
        if needs is None:
            assert plotly.io.from_json(at.get("plotly_chart")[1].proto.spec).layout.title.text == "Pareto-front Plot"
        else:
            assert any(needs in shown(i.value) for i in at.info), [i.value for i in at.info]
