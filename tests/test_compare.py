"""Runs compared by their settings: only what differs, named as the Architect names layers, and a legend by run
name that tells runs of one name apart."""
from dataclasses import replace

from playground.results.compare import MISSING, run_labels, settings_diff
from playground.results.plots import compare_figure
from playground.runs.records import RunRecord
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.presets import preset_net


def record(run_id: str, name: str, spec: dict, epochs=()) -> RunRecord:
    return RunRecord(id=run_id, name=name, status="finished", created=0.0, updated=0.0, spec=spec, params=1,
                     best_acc=None, elapsed=None, device="cpu", message="", checkpoint_sha=None, owner="", pid=None,
                     pid_start=None, host=None, heartbeat=None, step=0, steps=0, img_per_s=None,
                     stop_requested=None, state_sha=None, started=None, phase="", epochs=list(epochs))


def spec(**train) -> dict:
    return RunSpec(preset_net("seed-004"), train=TrainSpec(**train)).to_dict()


def test_only_the_settings_that_differ_are_listed_with_layers_named_as_the_architect_names_them():
    a = spec(max_lr=0.1)
    b = spec(max_lr=0.2)
    wider = preset_net("seed-004")
    wider.blocks[1].layers[0] = replace(wider.blocks[1].layers[0], out=48)
    c = {**spec(max_lr=0.1), "net": wider.to_dict()}
    rows = settings_diff([record("1", "a", a), record("2", "b", b), record("3", "c", c)])
    assert [r["setting"] for r in rows] == ["net C2.1 out", "train.max_lr"]
    assert rows[1] == {"setting": "train.max_lr", "a": "0.1", "b": "0.2", "c": "0.1"}
    assert settings_diff([record("1", "a", a), record("2", "b", a)]) == []


def test_a_setting_one_spec_lacks_is_shown_as_missing():
    a, b = spec(), spec()
    del b["train"]["ema"]
    rows = settings_diff([record("1", "x", a), record("2", "y", b)])
    assert rows == [{"setting": "train.ema", "x": f"{a['train']['ema']:g}", "y": MISSING}]


def test_runs_of_one_name_are_told_apart_by_id_and_the_overlay_draws_training_dotted():
    runs = [record("r1", "seed-004", spec(), [dict(epoch=1, test_acc=0.4, train_acc=0.5, elapsed=60)]),
            record("r2", "seed-004", spec(), [dict(epoch=1, test_acc=0.3, train_acc=0.6, elapsed=60)]),
            record("r3", "fast", spec(), [dict(epoch=1, test_acc=0.2, train_acc=0.2, elapsed=60)])]
    assert run_labels(runs) == ["seed-004 · r1", "seed-004 · r2", "fast"]
    fig = compare_figure(runs)
    names = [t.name for t in fig.data]
    assert names == ["seed-004 · r1", "seed-004 · r1, training", "seed-004 · r2", "seed-004 · r2, training", "fast",
                     "fast, training"]
    assert [t.line.dash for t in fig.data[:2]] == [None, "dot"] and fig.data[0].line.color == fig.data[1].line.color
    assert fig.data[0].line.color != fig.data[2].line.color
