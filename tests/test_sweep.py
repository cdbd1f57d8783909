"""Sweeps on Optuna, on tiny data: every trial is a run in the store (trained by a worker
process), invalid or over-budget specs are pruned with their reason, the median pruner stops
a clearly worse trial, and two processes share one study without losing or repeating a trial."""
import base64
import json

import numpy as np
import optuna
import plotly.io
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.runs.space import check_trial, load_space, space_from_dict, space_path, trial_spec
from playground.runs.store import RunStore
from playground.specs.config import RunSpec
from playground.specs.serde import SpecError
from tests.test_app import app_env, shown  # noqa: F401 - the AppTest fixture
from tests.test_training import run_cli
from tests.test_trust import json_values


def tiny_space(tmp_path, **extra) -> str:
    space = {"name": "tiny", "base": {"preset": "seed-004", "train": {"epochs": 3, "batch_size": 32}},
             "params": {"train.max_lr": {"choice": [0.05, 0.1]}}, **extra}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    return str(path)


def study(runs, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'sweeps.sqlite'}")


def test_a_sweep_trains_every_trial_as_a_run_and_links_both_ways(image_folder, tmp_path):
    runs = tmp_path / "runs"
    space = tiny_space(tmp_path, params={"train.max_lr": {"choice": [0.05, 0.1]},
                                         "net.blocks.0.layers.*.out": {"choice": [16, 100000]}})
    runs.mkdir()
    ahead = optuna.create_study(study_name="tiny", storage=f"sqlite:///{runs / 'sweeps.sqlite'}", direction="maximize")
    for lr, out in ((0.05, 16), (0.1, 100000), (0.1, 16), (0.05, 100000)):  # fixed, not left to the sampler's draw
        ahead.enqueue_trial({"train.max_lr": lr, "net.blocks.0.layers.*.out": out})
    result = run_cli("sweep", "--space", space, "--trials", "4", "--data", str(image_folder), "--runs", str(runs))
    assert result.returncode == 0, result.stderr
    trials = study(runs).trials
    assert len(trials) == 4 and "best trial" in result.stdout
    assert [bool(t.user_attrs.get("pruned_because")) for t in trials] == [False, True, False, True]
    store = RunStore(runs)
    for t in trials:
        if t.user_attrs.get("pruned_because"):  # 100,000 channels: refused by the validator, never run
            assert t.state == optuna.trial.TrialState.PRUNED and "channels must be between" in t.user_attrs[
                "pruned_because"] and "run_id" not in t.user_attrs
            continue
        record = store.get(t.user_attrs["run_id"])
        assert record.name == f"tiny #{t.number}" and record.owner == "sweep"
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert record.status == "finished" and t.value == max(e["test_acc"] for e in record.epochs)
    listed = run_cli("trials", "--study", "tiny", "--runs", str(runs), "--json")  # the headless view, best first
    rows = json.loads(listed.stdout)
    assert [r["trial"] for r in rows if r["state"] == "complete"][0] == study(runs).best_trial.number
    assert {r["trial"] for r in rows} == {t.number for t in trials}
    assert "tiny" in run_cli("trials", "--runs", str(runs)).stdout.split()


def test_the_median_pruner_stops_a_clearly_worse_trial(image_folder, tmp_path):
    """Two good trials, then one whose learning rate is tiny: it is stopped after its first epochs."""
    from playground.runs.sweep import run_share, storage_for, study_for

    runs = tmp_path / "runs"
    space = tiny_space(tmp_path, base={"preset": "seed-004", "train": {"epochs": 6, "batch_size": 32}},
                       params={"train.max_lr": {"float": [1e-5, 0.1], "log": True}})
    created = study_for(load_space(space), storage_for(None, RunStore(runs).root), None)
    for lr in (0.1, 0.1, 1e-5):
        created.enqueue_trial({"train.max_lr": lr})
    run_share(space, 3, None, None, str(image_folder), str(runs))
    last = study(runs).trials[-1]
    assert last.params["train.max_lr"] == 1e-5
    assert last.state == optuna.trial.TrialState.PRUNED and last.user_attrs["pruned_at"] < 6
    record = RunStore(runs).get(last.user_attrs["run_id"])
    assert record.status == "stopped" and len(record.epochs) < 6


def test_hyperband_halves_over_the_epochs_from_the_test_interval(tmp_path):
    """The space's ``"pruner": "hyperband"``: successive halving, the epoch as its resource, from the
    base's test interval on. Stopping a trial (its report, its worker stopped, its run "stopped") is
    one path for every pruner, trained in the median pruner's test above."""
    from playground.runs.sweep import storage_for, study_for

    for every in (1, 2):
        space = tiny_space(tmp_path, base={"preset": "seed-004", "train": {"epochs": 6, "eval_every": every}},
                           pruner="hyperband")
        created = study_for(load_space(space), storage_for(None, RunStore(tmp_path / f"runs-{every}").root), None)
        assert isinstance(created.pruner, optuna.pruners.HyperbandPruner)
        assert created.pruner._min_resource == every and created.pruner._reduction_factor == 3


def test_refused_sweeps_and_workers_make_no_run_store(tmp_path, capsys):
    from playground.cli import main

    runs = tmp_path / "runs"
    assert main(["sweep", "--space", "fastest-to-85", "--storage", "nope://x", "--runs", str(runs)]) == 2
    assert "storage nope://x: cannot open it" in capsys.readouterr().err
    worker = run_cli("worker", "20260101-120000-abc123", "--runs", str(runs))  # a process of its own, as always
    assert worker.returncode == 1 and "no run store" in worker.stderr, worker.stderr
    assert not runs.exists()


@pytest.mark.parametrize("value", ["5", "3601", "ten", "-5", "1e3", "²"])
def test_a_bad_heartbeat_grace_setting_is_one_line_naming_it(tmp_path, monkeypatch, value):
    from playground.runs.sweep import storage_for
    from playground.settings import SettingError

    monkeypatch.setenv("PLAYGROUND_SWEEP_GRACE_S", value)
    with pytest.raises(SettingError, match="PLAYGROUND_SWEEP_GRACE_S must be a whole number from 6 to 3,600"):
        storage_for(None, RunStore(tmp_path / "runs").root)
    monkeypatch.setenv("PLAYGROUND_SWEEP_GRACE_S", "9")
    storage = storage_for(None, RunStore(tmp_path / "runs").root)
    assert (storage.grace_period, storage.heartbeat_interval) == (9, 3)


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0, 1)), max_size=30))
def test_the_pareto_front_is_exactly_the_points_nothing_beats(points):
    from playground.runs.sweep import pareto_front

    def beaten(p):
        return any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)

    front = pareto_front(points)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)  # drawn left to right
    assert all(not beaten(points[i]) for i in front)
    assert all(beaten(p) or p in [points[i] for i in front] for p in points)


def test_two_worker_processes_share_one_study_without_losing_or_repeating_a_trial(image_folder, tmp_path):
    runs = tmp_path / "runs"
    space = tiny_space(tmp_path, base={"preset": "seed-004", "train": {"epochs": 1, "batch_size": 32}},
                       params={"train.max_lr": {"float": [0.01, 0.2]}})
    result = run_cli("sweep", "--space", space, "--trials", "4", "--workers", "2", "--data", str(image_folder),
                     "--runs", str(runs))
    assert result.returncode == 0, result.stderr
    heads = [ln for ln in result.stdout.splitlines() if ln.startswith("study ")]  # one per process, each true
    assert sorted(h.split(": ")[1].split(",")[0] for h in heads) == [
        "4 trials in 2 process(es)", "a worker process for 2 of its 4 trials"], heads
    trials = study(runs).trials
    assert sorted(t.number for t in trials) == list(range(4))
    run_ids = [t.user_attrs["run_id"] for t in trials]
    assert len(set(run_ids)) == 4 and all(RunStore(runs).get(i).status == "finished" for i in run_ids)


@pytest.mark.parametrize("space, words", [
    ({"params": {}}, "params: expected an object"),
    ({"params": {"train.max_lr": {"float": [0.4, 0.1]}}}, "params.train.max_lr.float: expected [low, high]"),
    ({"params": {"train.max_lr": {"uniform": [0, 1]}}}, "params.train.max_lr: expected one of float, int, choice"),
    ({"params": {"x.y": {"int": [1, 2]}}}, "params.x.y: a path starts with net., aug. or train."),
    ({"base": {"preset": "nope"}, "params": {"train.epochs": {"int": [1, 2]}}}, "base:"),
    ({"objectives": ["speed"], "params": {"train.epochs": {"int": [1, 2]}}}, "objectives: choose one of"),
    ({"parms": {}}, "parms: unknown key"),
    ({"pruner": "asha", "params": {"train.epochs": {"int": [1, 2]}}}, "pruner: choose one of median, hyperband"),
    ({"params": {"train.max_lr": {"float": [-1e308, 1e308]}}}, "params.train.max_lr.float: the range must lie within"),
    ({"params": {"net.blocks.9.skip": {"choice": [True]}}}, "params.net.blocks.9.skip: the base spec has no '9' there"),
    ({"params": {"train.max_lrr": {"float": [0.1, 0.2]}}}, "params.train.max_lrr: the base spec has no 'max_lrr'"),
])
def test_an_invalid_space_file_names_the_key(space, words):
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace(".", r"\.")):
        space_from_dict(space)


PATHS = ["net.blocks.0.depth", "net.blocks.1.layers.*.out", "net.blocks.2.layers.0.kind", "net.blocks.9.skip",
         "net.blocks.*.layers.*.dilation", "train.max_lr", "train.epochs", "train.batch_size", "aug.transforms.1.p",
         "aug.transforms.*.params.padding", "net", "train", "train.nope", "x.y", "net.blocks.-1.layers", "train.depth",
         "net.blocks.*.depth",
         "net.blocks.0.layers.0.depth", "aug.transforms.*.p", "train.low_res", "train.low_res_epochs"]
numbers = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True))
distributions = st.one_of(
    st.fixed_dictionaries({"int": st.lists(numbers, min_size=0, max_size=3)},
                          optional={"step": st.one_of(numbers, st.booleans()),
                                    "log": st.one_of(st.booleans(), numbers)}),
    st.fixed_dictionaries({"float": st.lists(numbers, min_size=0, max_size=3)}, optional={"log": st.booleans()}),
    st.fixed_dictionaries({"choice": st.lists(st.one_of(json_values, numbers), max_size=5)}),
    json_values)
spaces = st.fixed_dictionaries(
    {"params": st.dictionaries(st.one_of(st.sampled_from(PATHS), st.text(max_size=20)), distributions, max_size=4)},
    optional={"base": st.one_of(st.sampled_from([{"preset": "seed-004"}, {"recipe": "fast"}, {"preset": "nope"},
                                                 {"recipe": "fast", "train": {"epochs": 0}},
                                                 {"recipe": "fast", "train": {"epochs": 6.5}},
                                                 {"recipe": "fast", "train": {"epochs": 5, "low_res": "big"}}]),
                                json_values),
              "objectives": st.one_of(st.sampled_from([["accuracy"], ["accuracy", "minutes"]]), json_values),
              "pruner": st.one_of(st.sampled_from(["median", "hyperband", "asha"]), json_values),
              "name": st.one_of(st.sampled_from(["ok", "../x", ""]), st.text(max_size=100)),
              "max_params": st.one_of(st.integers(-5, 10**6), json_values), "rules": json_values})
small = st.integers(-3, 70)
plausible = st.fixed_dictionaries(  # mostly loadable: its trials reach apply and the validator
    {"base": st.sampled_from([{"preset": "seed-004"}, {"recipe": "fast"}]),
     "params": st.dictionaries(st.sampled_from(PATHS), st.one_of(
         st.tuples(small, small).map(lambda t: {"int": sorted(t)}),
         st.tuples(small, small, st.integers(1, 9)).map(lambda t: {"int": sorted(t[:2]), "step": t[2]}),
         st.tuples(st.floats(0, 2), st.floats(0, 2)).map(lambda t: {"float": sorted(t)}),
         st.lists(st.one_of(small, st.booleans(), st.sampled_from(["conv", "sep", "maxpool", "x"])), min_size=1,
                  max_size=4).map(lambda v: {"choice": v})), min_size=1, max_size=4)},
    optional={"objectives": st.sampled_from([["accuracy"], ["accuracy", "params"]]), "rules": st.booleans(),
              "max_params": st.integers(1, 300_000)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(spaces, plausible))
def test_any_space_loads_or_is_refused_in_one_line_and_every_trial_builds_or_is_pruned(data):
    """Hostile space files: a Space or one line naming the key; a loaded space's trials are valid runs or
    a SpecError (the reason a trial is pruned), never another exception, an Optuna error or a huge spec."""
    from playground.runs.space import sample

    try:
        space = space_from_dict(data)
    except SpecError as e:
        assert len(e.problems) == 1 and "\n" not in e.problems[0] and len(e.problems[0]) < 400
        return
    study_ = optuna.create_study(directions=["maximize"] * len(space.objectives))
    for _ in range(2):
        trial = study_.ask()
        try:
            check_trial(space, trial_spec(space, sample(trial, space)), [str(i) for i in range(10)], (32, 32, 3))
        except SpecError as e:
            assert len(e.problems) >= 1


def test_shipped_spaces_load_and_their_lowest_values_make_valid_runs():
    from playground.runs.space import shipped_spaces

    assert set(shipped_spaces()) == {"fastest-to-85", "under-200k-seed-rules"}
    for path in shipped_spaces().values():
        space = load_space(path)
        spec = trial_spec(space, {k: (d.get("choice") or d.get("int") or d.get("float"))[0]
                                  for k, d in space.params.items()})
        check_trial(space, spec, [str(i) for i in range(10)], (32, 32, 3))  # fastest-to-85 at 4 epochs was refused


def test_the_docker_sweep_workers_copy_only_what_exists_and_search_a_shipped_space():
    """The compose file's build failed on a COPY of a folder that had been removed (recipes/)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    docker = root / "docs" / "sweeps"
    copied = re.findall(r"^COPY (\S+) ", (docker / "Dockerfile").read_text(), re.M)
    assert copied and [c for c in copied if not (root / c).exists()] == []
    spaces = re.findall(r'"--space", "([\w.-]+)"', (docker / "docker-compose.yml").read_text())
    assert spaces and all(load_space(space_path(s)) for s in spaces)


@pytest.mark.parametrize("epochs, expected", [
    (2, (0, 0)), (4, (24, 1)), (6, (24, 2)), (8, (24, 3)), (20, (24, 8)), (30, (24, 12))])
def test_a_searched_epoch_count_keeps_the_recipes_share_of_low_res_epochs(epochs, expected):
    """fast trains 8 of 20 epochs at 24 px; a trial of 6 epochs was refused for it before."""
    space = space_from_dict({"base": {"recipe": "fast"}, "params": {"train.epochs": {"int": [4, 30]}}})
    run = check_trial(space, trial_spec(space, {"train.epochs": epochs}), [str(i) for i in range(10)], (32, 32, 3))
    assert (run.train.epochs, run.train.low_res, run.train.low_res_epochs) == (epochs, *expected)


def test_a_base_with_fewer_epochs_keeps_the_recipes_share_and_odd_values_reach_the_validator():
    space = space_from_dict({"base": {"recipe": "fast", "train": {"epochs": 6}}, "params": {"train.max_lr": {
        "float": [0.1, 0.2]}}})
    run = check_trial(space, trial_spec(space, {"train.max_lr": 0.1}), [str(i) for i in range(10)], (32, 32, 3))
    assert (run.train.epochs, run.train.low_res, run.train.low_res_epochs) == (6, 24, 2)
    space = space_from_dict({"base": {"recipe": "fast"}, "params": {"train.epochs": {"int": [2, 20]},
                                                                    "train.low_res": {"choice": ["big", 7]}}})
    spec = trial_spec(space, {"train.epochs": 2, "train.low_res": "big"})  # not hidden by a share that rounds to 0
    with pytest.raises(SpecError, match="low_res"):
        check_trial(space, spec, [str(i) for i in range(10)], (32, 32, 3))
    spec = trial_spec(space, {"train.epochs": 2, "train.low_res": 7})  # a whole size: no low-res epochs left, so off
    assert (spec["train"]["low_res"], spec["train"]["low_res_epochs"]) == (0, 0)


def test_searched_low_res_epochs_are_kept_as_drawn_and_checked():
    space = space_from_dict({"base": {"recipe": "fast"}, "params": {"train.epochs": {"int": [4, 30]},
                                                                    "train.low_res_epochs": {"int": [0, 12]}}})
    spec = trial_spec(space, {"train.epochs": 6, "train.low_res_epochs": 8})
    assert spec["train"]["low_res_epochs"] == 8
    with pytest.raises(SpecError, match="fewer than the 6 epochs"):
        check_trial(space, spec, [str(i) for i in range(10)], (32, 32, 3))


def values(array) -> list:
    """A plotly trace's numbers, which Plotly 6 sends as base64 ``bdata`` for numpy arrays."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_the_sweep_page_shows_a_study_and_refuses_a_bad_space(app_env, monkeypatch):
    from playground.ui import server
    from playground.runs.sweep import storage_for
    from tests.test_app import open_page

    store = server.store()
    created = optuna.create_study(study_name="demo", storage=storage_for(None, store.root), direction="maximize")
    for n, (acc, params) in enumerate(((0.61, 90_000), (0.66, 150_000))):
        t = created.ask()
        t.set_user_attr("run_id", f"20261125-00000{n}-abcdef")
        t.set_user_attr("params", params)
        created.tell(t, acc)
    at = open_page("sweep")
    assert not at.exception
    chart = plotly.io.from_json(at.get("plotly_chart")[0].proto.spec)
    front = next(d for d in chart.data if d.name == "Pareto front")
    assert values(front.x) == [90_000, 150_000] and values(front.y) == [0.61, 0.66]  # more params, more accuracy
    assert any(d.name == "recipes, measured here" and any("fast recipe" in t for t in d.hovertext) for d in chart.data)
    table = [d.value for d in at.dataframe][0]
    assert table["trial"].tolist() == [0, 1] and table["run"].tolist()[1] == "20261125-000001-abcdef"
    at.selectbox(key="sw_space").set_value("fastest-to-85").run()
    at.text_area(key="sw_text_fastest-to-85").set_value('{"params": {"train.max_lr": {"float": [1, 0]}}}').run()
    at.button(key="sw_start").click().run()
    assert not at.exception and any("params.train.max_lr.float" in shown(e.value) for e in at.error), \
        [shown(e.value) for e in at.error]
    at.text_area(key="sw_text_fastest-to-85").set_value('{"params": ' * 40).run()  # not JSON, deep
    at.button(key="sw_start").click().run()
    assert not at.exception and any("Not started" in shown(e.value) and "JSON" in shown(e.value) for e in at.error), \
        [shown(e.value) for e in at.error]
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    hosted = open_page("sweep")
    assert any("Sweeps are off in this hosted demo" in shown(i.value) for i in hosted.info)


def test_the_pages_start_runs_the_sweep_in_a_process_of_its_own(image_folder, tmp_path):
    from playground.runs.sweep import start_sweep, trial_rows

    store = RunStore(tmp_path / "runs")
    space = load_space(tiny_space(tmp_path, base={"preset": "seed-004", "train": {"epochs": 1, "batch_size": 32}}))
    proc = start_sweep(space, 1, 1, str(image_folder), store, "from-the-page")
    assert proc.wait(120) == 0, (store.root / "logs" / "sweep-from-the-page.log").read_text()
    (row,) = trial_rows(store, "from-the-page")
    assert row["state"] == "complete" and store.get(row["run"]).status == "finished"


@pytest.mark.parametrize("url, words", [
    ("foo://host/db", "cannot open it: Can't load plugin"),
    ("sqlite:////proc/nowhere/x.db", "cannot open it: unable to open database file"),
    ("postgresql://sweep:hunter2@127.0.0.1:1/db", "cannot open it: connection to server"),
    ("sqlite://", "an in-memory database is not shared"),
    ("sqlite:///:memory:", "an in-memory database is not shared"),
])
def test_a_storage_that_cannot_be_opened_is_one_line_without_the_password(url, words, image_folder, tmp_path,
                                                                           capsys):
    from playground.cli import main  # in process: the CLI's own error handling, without a torch start-up each

    code = main(["sweep", "--space", tiny_space(tmp_path), "--trials", "1", "--storage", url,
                 "--data", str(image_folder), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1 and "hunter2" not in err
    assert not (tmp_path / "runs" / "sweeps.sqlite").exists()


def test_a_damaged_sweeps_file_is_one_error_on_the_sweep_page(app_env):
    from playground.ui import server
    from tests.test_app import open_page

    server.store().root.mkdir(parents=True, exist_ok=True)
    (server.store().root / "sweeps.sqlite").write_bytes(b"not a database " * 400)
    at = open_page("sweep")
    assert not at.exception
    assert any("cannot be read" in shown(e.value) and "not a database" in shown(e.value) for e in at.error), \
        [shown(e.value) for e in at.error]


def test_a_two_objective_study_keeps_accuracy_against_macs_and_says_so(image_folder, tmp_path):
    from playground.runs.sweep import study_objectives, trial_rows
    from playground.specs.geometry import trace

    runs = tmp_path / "runs"
    space = tiny_space(tmp_path, base={"preset": "seed-004", "train": {"epochs": 1, "batch_size": 32}},
                       objectives=["accuracy", "macs"])
    result = run_cli("sweep", "--space", space, "--trials", "1", "--data", str(image_folder), "--runs", str(runs))
    assert result.returncode == 0, result.stderr
    (trial,) = study(runs).trials
    record = RunStore(runs).get(trial.user_attrs["run_id"])
    macs = trace(RunSpec.from_dict(record.spec).net).macs
    assert trial.values[1] == macs and study(runs).directions[1] == optuna.study.StudyDirection.MINIMIZE
    assert study_objectives(RunStore(runs), "tiny") == ("accuracy", "macs")
    assert trial_rows(RunStore(runs), "tiny")[0]["macs"] == macs


class QuietWorker:
    """A trial's worker process as _train sees it: it runs until its ``codes`` are used up."""

    def __init__(self, codes):
        self.codes, self.killed, self.pid = list(codes), False, 0

    def poll(self):
        return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]  # an ended process keeps its code

    def kill(self):
        self.killed = True

    def wait(self):
        return -9


def trial_training(tmp_path, monkeypatch, worker):
    from playground.runs import lifecycle, sweep

    monkeypatch.setattr(sweep, "POLL_S", 0.0)
    monkeypatch.setattr(lifecycle, "start_worker", lambda *a, **k: worker)
    store = RunStore(tmp_path / "runs")
    space = load_space(tiny_space(tmp_path))
    run_id = store.create("tiny #0", {"train": {"epochs": 1}}, owner="sweep")
    trial = optuna.create_study().ask()
    return sweep.Sweep(space, store, "", [], (3, 32, 32)), trial, run_id


def test_a_trial_whose_run_is_deleted_while_it_trains_fails_alone(tmp_path, monkeypatch):
    """A visitor deleted a trial's run on the Runs page: the sweep process ended with an AttributeError
    (Optuna catches RuntimeError only) and the rest of its trials never ran."""
    worker = QuietWorker([None, None])
    sweep, trial, run_id = trial_training(tmp_path, monkeypatch, worker)
    sweep.store.delete(run_id)
    with pytest.raises(RuntimeError, match="deleted while it trained"):
        sweep._train(trial, run_id)
    assert worker.killed and "deleted" in trial.user_attrs["failed_because"]


def test_a_run_store_that_cannot_be_read_for_a_moment_does_not_kill_the_trials_worker(tmp_path, monkeypatch):
    """A lock held over 30 s or a passing I/O error in the sweep's poll killed a healthy trial's worker."""
    from playground.faults import StoreError

    worker = QuietWorker([None, None, 0])
    sweep, trial, run_id = trial_training(tmp_path, monkeypatch, worker)
    real_get, calls = RunStore.get, []

    def get(self, run_id, **kw):  # the second look fails, and the look right after the worker ended
        calls.append(run_id)
        if len(calls) in (2, 4):
            raise StoreError("the run store is locked")
        return real_get(self, run_id, **kw)
    monkeypatch.setattr(RunStore, "get", get)
    assert sweep._train(trial, run_id).id == run_id and not worker.killed and len(calls) == 6

