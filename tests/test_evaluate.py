"""Evaluation at the trust boundary (issue 16): its output is strict JSON; a run is never
evaluated on data it was not trained for; a checkpoint that is not what it claims is refused
in one line and never runs code."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import playground.training.checkpoint as checkpoint

from playground.results.evaluate import Report, evaluate, gradcam
from playground.runs.loading import load_run
from playground.training.checkpoint import DataMismatch
from playground.results.export import ExportError, export
from playground.runs.runner import checkpoint_state
from playground.faults import CheckpointError
from playground.runs.store import RunStore
from playground.specs.arch import Net
from playground.specs.augment import default_aug
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.presets import preset_net
from playground.training.builder import build_model
from playground.training.data import Dataset

from .conftest import CLASSES, make_image_folder
from .models import assert_one_line, loaded_run, stored_run, tiny_net

PACKAGE = Path(__file__).resolve().parents[1] / "playground"


# -- evaluation: strict JSON -------------------------------------------------------------------

def test_summary_is_strict_json_with_null_for_undefined_values():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]], np.float32)
    report = Report(probs, np.array([0, 1]), ["a", "b", "c"])  # class c has no test images
    summary = report.summary()
    assert summary == {"accuracy": 1.0, "per_class": {"a": 1.0, "b": 1.0, "c": None}, "n": 2}
    json.dumps(summary, allow_nan=False)
    empty = Report(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), ["a", "b", "c"]).summary()
    assert empty["accuracy"] is None and json.dumps(empty, allow_nan=False)
    nan_probs = Report(np.full((2, 3), np.nan, np.float32), np.array([0, 1]), ["a", "b", "c"])
    assert np.isfinite(nan_probs.losses()).all()  # a NaN prediction is the largest loss, not a NaN loss
    json.dumps(nan_probs.summary(), allow_nan=False)


def test_evaluate_on_no_images_says_null():
    loaded = loaded_run(tiny_net())
    report = evaluate(loaded, np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))
    assert report.probs.shape == (0, 10)
    assert json.dumps(report.summary(), allow_nan=False) == json.dumps(
        {"accuracy": None, "per_class": {c: None for c in loaded.classes}, "n": 0})


# -- evaluation: the run against the data -----------------------------------------------------

def fake_data(classes: list[str], n: int = 4, size: int = 32, channels: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n * len(classes), size, size, channels), dtype=np.uint8)
    y = np.repeat(np.arange(len(classes)), n)
    return Dataset("fake", x, y, x, y, list(classes))


def test_load_run_and_evaluate_refuse_other_data_naming_both_sides(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    hundred = [f"c{i:03d}" for i in range(100)]
    with pytest.raises(DataMismatch, match=re.escape(
            f"run {run_id} was trained on 10 classes (airplane, automobile, bird, …); this data has 100 "
            f"(c000, c001, c002, …)")) as err:
        load_run(store, run_id, fake_data(hundred, 1))
    assert_one_line(err.value)
    renamed = [*CLASSES[:3], "kitten", *CLASSES[4:]]
    with pytest.raises(DataMismatch, match="class 3 is 'cat' in the run and 'kitten' in the data"):
        load_run(store, run_id, fake_data(renamed, 1))
    loaded = load_run(store, run_id, fake_data(CLASSES, 1))  # the run's own classes: fine
    for data, says in [(fake_data(CLASSES, 1, size=64), "takes 32x32 images with 3 channel(s); this data has "
                                                        "64x64 images with 3 channel(s)"),
                       (fake_data(CLASSES, 1, channels=1), "this data has 32x32 images with 1 channel(s)")]:
        with pytest.raises(DataMismatch, match=re.escape(says)) as err:
            evaluate(loaded, data.x_test, data.y_test)
        assert_one_line(err.value)
    with pytest.raises(DataMismatch, match="this data has 64x64 images"):
        gradcam(loaded, fake_data(CLASSES, 1, size=64).x_test[0])
    # without the class names the labels still give a larger data set away
    data = fake_data(hundred, 1)
    with pytest.raises(DataMismatch, match="trained on 10 classes .*; this data has labels from 0 to 99"):
        evaluate(loaded, data.x_test, data.y_test)
    with pytest.raises(DataMismatch, match="this data has 100"):
        evaluate(loaded, data.x_test[:10], data.y_test[:10], classes=hundred)
    assert isinstance(DataMismatch("x"), CheckpointError)  # the CLI and the Results page report it in one line


def test_cli_evaluate_on_data_with_more_classes_is_one_line(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    folder = make_image_folder(tmp_path / "more", n_train=1, n_test=1)
    for extra in ("zebra", "zeppelin"):  # 12 classes: labels 10 and 11 the run has never seen
        for split in ("train", "test"):
            (folder / split / extra).mkdir()
            shutil.copy(folder / split / "cat" / "0000.png", folder / split / extra)
    assert main(["evaluate", run_id, "--runs", str(store.root), "--data", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"run {run_id} was trained on 10 classes" in err, err


def test_cli_evaluate_on_data_with_other_class_names_is_one_line(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    folder = make_image_folder(tmp_path / "same", n_train=1, n_test=1)
    for split in ("train", "test"):
        (folder / split / "cat").rename(folder / split / "cats")  # same place in the sorted classes
    assert main(["evaluate", run_id, "--runs", str(store.root), "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "'cat' in the run and 'cats' in the data" in err and err.count("\n") == 1, err


def test_cli_evaluate_prints_strict_json(tmp_path, capsys, monkeypatch):
    """A class without test images has no accuracy: null, not NaN. (Folders without test images
    of a class are refused by data.py; a data set from elsewhere may still lack one.)"""
    import playground.training.data
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    data = fake_data(CLASSES, 2)
    keep = data.y_test != CLASSES.index("truck")
    data.x_test, data.y_test = data.x_test[keep], data.y_test[keep]
    monkeypatch.setattr(playground.training.data, "load_dataset", lambda *a, **kw: data)
    assert main(["evaluate", run_id, "--runs", str(store.root)]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert out["per_class"]["truck"] is None and out["n"] == 18


# -- checkpoints -------------------------------------------------------------------------------

class Payload:
    """Unpickled with weights_only=False, this creates a file: the proof that code would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_crafted_checkpoint_never_runs_code_and_is_refused_in_one_line(tmp_path):
    store = RunStore(tmp_path / "runs")
    marker = tmp_path / "payload-ran"
    good = checkpoint_state(RunSpec(tiny_net(), default_aug(), TrainSpec(epochs=1)),
                            build_model(tiny_net()), fake_data(CLASSES, 1), 1)
    run_id = stored_run(store, state={**good, "epoch": Payload(marker)})  # the store's hash matches it
    with pytest.raises(CheckpointError) as err:
        load_run(store, run_id)
    text = assert_one_line(err.value)
    assert "objects other than tensors and plain values" in text and "open" in text, text
    assert not marker.exists()
    from playground.runs.distill import TeacherError, load_teachers
    with pytest.raises(TeacherError) as err:
        load_teachers(store, [run_id], "", list(CLASSES))
    assert_one_line(err.value)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(store.checkpoint_path(run_id), weights_only=False)
    assert marker.exists()


def test_a_legacy_pickle_checkpoint_is_refused_in_one_line_without_torchs_warnings(tmp_path, recwarn):
    """A checkpoint that is a plain pickle (not torch's zip) made torch warn in two lines before the refusal."""
    import hashlib
    import pickle
    import sqlite3

    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    data = pickle.dumps({"epoch": 1}, protocol=4)
    store.checkpoint_path(run_id).write_bytes(data)
    with sqlite3.connect(store.db) as c:
        c.execute("UPDATE runs SET checkpoint_sha = ? WHERE id = ?", (hashlib.sha256(data).hexdigest(), run_id))
    with pytest.raises(CheckpointError) as err:
        load_run(store, run_id)
    assert_one_line(err.value)
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("damage, says", [
    (lambda s: s["state_dict"].pop("c1.0.conv.weight"), "weights missing 1 (c1.0.conv.weight)"),
    (lambda s: s["state_dict"].update({"c9.0.conv.weight": torch.zeros(1)}), "1 not in the spec (c9.0.conv.weight)"),
    (lambda s: s["state_dict"].update({"c1.0.conv.weight": torch.zeros(8, 3, 5, 5)}),
     "c1.0.conv.weight is (8, 3, 5, 5), the net has (8, 3, 3, 3)"),
    (lambda s: s["state_dict"]["c1.0.bn.weight"].fill_(float("nan")), "not finite (NaN or inf in c1.0.bn.weight)"),
    (lambda s: s["state_dict"].update({"c1.0.bn.weight": [1.0] * 8}), "holds no state dict of named tensors"),
    (lambda s: s.update(classes=["a", "b"]), "names 2 classes but its net predicts 10"),
    (lambda s: s.update(std=[0.2, 0.0, 0.2]), "no valid channel std"),
    (lambda s: s.pop("mean"), "it lacks mean"),
    (lambda s: s["spec"]["net"]["blocks"][0]["layers"][0].update(kernel=-3), "holds an invalid spec"),
    (lambda s: s.update(spec=[1, 2]), "spec: "),
])
def test_a_checkpoint_that_does_not_fit_its_spec_is_one_line(damage, says, tmp_path):
    store = RunStore(tmp_path / "runs")
    state = checkpoint_state(RunSpec(tiny_net(), default_aug(), TrainSpec(epochs=1)),
                             build_model(tiny_net()), fake_data(CLASSES, 1), 1)
    damage(state)
    run_id = stored_run(store, state=state)
    with pytest.raises(CheckpointError, match=re.escape(says)) as err:
        load_run(store, run_id)
    assert_one_line(err.value)


def test_only_the_store_unpickles():
    """Every checkpoint goes through RunStore._load (store_files.py: hash check, weights_only=True);
    nothing else in the package unpickles."""
    unsafe = re.compile(r"torch\.(jit\.)?load\(|pickle\.loads?\(|allow_pickle=True|weights_only=False")
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted(PACKAGE.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if unsafe.search(line)]
    assert len(found) == 1 and found[0].startswith("store_files.py:") and "weights_only=True" in found[0], found


def test_onnx_carries_its_preprocessing_and_classes_and_can_bake_the_normalisation(tmp_path):
    """What a program needs to use the file with onnxruntime alone: the classes, the mean and
    std (or the normalisation inside the graph), and the same answers as the run's model."""
    import onnxruntime as ort
    loaded = loaded_run(preset_net("fast"))
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x01 = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    mean, std = (np.array(v, np.float32).reshape(1, 3, 1, 1) for v in (loaded.mean, loaded.std))
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy((x01 - mean) / std)).numpy()
    for baked in (False, True):
        path = export(loaded, "onnx", tmp_path / f"m{baked}.onnx", loaded.run_id, baked=baked)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["classes"]) == loaded.classes and meta["run_id"] == loaded.run_id
        assert json.loads(meta["normalization_baked_in"]) is baked
        m, s = (np.array(json.loads(meta[k]), np.float32).reshape(1, 3, 1, 1) for k in ("mean", "std"))
        feed = x01 if baked else (x01 - m) / s
        logits = session.run(None, {"image": feed})[0]
        assert np.allclose(logits, expected, atol=1e-4)
        assert RunSpec.from_json(meta["spec"]) == loaded.run
    ts = export(loaded, "torchscript", tmp_path / "m.ts.pt", loaded.run_id, baked=True)
    extra = {"playground.json": ""}
    model = torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(json.loads(extra["playground.json"])["classes"]) == loaded.classes
    with torch.no_grad():
        assert np.allclose(model(torch.from_numpy(x01)).numpy(), expected, atol=1e-4)
    with pytest.raises(ExportError, match="baked into onnx and torchscript exports only"):
        export(loaded, "script", tmp_path / "train.py", baked=True)


def test_the_scripts_limit_takes_a_random_subset_with_every_class_in_its_share(tmp_path):
    """--limit N used to take the first N images: all airplanes in an ImageFolder."""
    import importlib.util

    path = export(loaded_run(preset_net("fast")), "script", tmp_path / "train_x.py")
    spec = importlib.util.spec_from_file_location("exported_limit", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    y = np.repeat(np.arange(10), [50, 50, 50, 50, 50, 50, 50, 50, 30, 70])  # sorted by class, as ImageFolder is
    rng = np.random.default_rng(0)
    keep = script.stratified(y, 100, rng)
    assert len(set(keep.tolist())) == 100 and np.bincount(y[keep]).tolist() == [10] * 8 + [6, 14]
    odd = script.stratified(y, 7, rng)
    assert len(odd) == 7 and len(set(y[odd].tolist())) == 7
    assert keep.tolist() != list(range(100)) and script.stratified(y, 100, np.random.default_rng(1)).tolist() != keep.tolist()
    assert "stratified(y_train, args.limit, rng)" in path.read_text()


def test_results_say_why_an_accuracy_differs_from_the_recorded_one():
    from types import SimpleNamespace

    from playground.results.evaluate import accuracy_note

    record = SimpleNamespace(spec={"train": {"tta": False, "tta_shift": 0, "test_subset": 500}, "data": "cifar10"},
                             epochs=[{"epoch": 1, "test_acc": 0.61}, {"epoch": 2, "test_acc": 0.58}], best_acc=0.61)
    same = accuracy_note(record, 2, 0.58, 500, False, 0, "cifar10")
    assert same.startswith("Equal to the accuracy the run recorded at epoch 2.") and "best, 61.00% at epoch 1" in same
    other = accuracy_note(record, 2, 0.6, 5000, True, 0, "elsewhere")
    assert "recorded 58.00% at epoch 2" in other and "TTA views" in other and "500 random images" in other
    assert "another data source" in other


def test_a_photo_is_read_as_the_data_is_and_a_hostile_one_is_one_line():
    import io

    from PIL import Image

    from playground.results.evaluate import classify_photo
    from playground.training.sources import DataError

    loaded = loaded_run(preset_net("fast"))
    big = io.BytesIO()
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(big, "PNG")
    image, top = classify_photo(loaded, big.getvalue())
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and (image == 200).all()
    assert len(top) == 3 and abs(sum(p for _, p in top)) <= 1 + 1e-6 and top[0][1] >= top[1][1] >= top[2][1]
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")  # a few kB that decode to 400 M pixels
    for raw, words in ((bomb.getvalue(), "decompression bomb"), (b"GIF89a garbage", "cannot be used"),
                       (b"x" * 10_000_001, "the limit is 10 MB")):
        with pytest.raises(DataError, match=words) as e:
            classify_photo(loaded, raw)
        assert_one_line(e.value)


def test_the_images_one_run_gets_right_and_the_other_wrong():
    from playground.results.evaluate import disagreements
    from playground.training.sources import DataError

    labels = np.array([0, 1, 2, 0])
    a = Report(np.eye(3)[[0, 1, 0, 1]] * 0.9 + 0.03, labels, ["a", "b", "c"])  # right on 0, 1
    b = Report(np.eye(3)[[1, 1, 2, 0]] * 0.9 + 0.03, labels, ["a", "b", "c"])  # right on 1, 2, 3
    only_a, only_b = disagreements(a, b)
    assert only_a.tolist() == [0] and sorted(only_b.tolist()) == [2, 3]
    with pytest.raises(DataError, match="different test images"):
        disagreements(a, Report(b.probs[:3], labels[:3], b.classes))


def test_an_evaluation_over_the_tiers_budget_is_refused_in_one_line_before_any_work(monkeypatch):
    """On the hosted demo the Results page evaluates in the web server that every visitor shares: the
    record net on 5,000 images with flip + shift TTA (18 views, 2.6T MACs) is over hosted's eval_macs;
    flip alone (0.3T) is not, and the local tier allows both."""
    import playground.results.evaluate as ev
    from playground.specs.serde import SpecError

    def no_work(*args, **kwargs):
        raise AssertionError("predict ran")

    monkeypatch.setattr(checkpoint, "predict", no_work)
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    loaded = loaded_run(preset_net("record"))
    x, y = np.zeros((5000, 32, 32, 3), np.uint8), np.zeros(5000, np.int64)
    with pytest.raises(SpecError) as e:
        evaluate(loaded, x, y, tta=True, shift=1)
    text = assert_one_line(e.value)
    assert text.startswith("eval_macs: ") and "5,000 images × 18 TTA views × 29,341,088 MACs" in text
    assert "the limit is 2,000,000,000,000 multiply-accumulates; use fewer TTA views" in text
    ev.check_cost(loaded, 5000, tta=True, shift=0)
    monkeypatch.delenv("PLAYGROUND_HOSTED")
    ev.check_cost(loaded, 5000, tta=True, shift=1)


def test_a_trainings_own_evaluations_are_bounded_by_its_slot_not_the_budget(monkeypatch):
    """Teachers' targets are computed in the student's worker: ``budget=False`` skips the check there."""
    from dataclasses import replace

    from playground.specs import limits
    from playground.specs.serde import SpecError

    monkeypatch.setitem(limits.TIERS, "local", replace(limits.TIERS["local"], eval_macs=1))
    loaded = loaded_run(tiny_net())
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(SpecError, match="eval_macs"):
        evaluate(loaded, x, y)
    assert evaluate(loaded, x, y, tta=True, budget=False).probs.shape == (4, 10)


def test_evaluations_in_one_process_take_turns_and_a_long_wait_is_one_line(monkeypatch):
    """Two visitors' evaluations on the hosted web server run one after the other, never at once (each was
    sized, by eval_macs and the test batch, as if it had the server to itself); a visitor kept waiting past
    TURN_WAIT_S is told so in one line; a training's own evaluations (budget=False) do not queue."""
    import threading
    import time

    import playground.results.evaluate as ev

    real, inside, overlap = checkpoint.predict, [], []

    def slow_predict(*args, **kwargs):
        inside.append(1)
        overlap.append(len(inside))
        time.sleep(0.3)
        inside.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "predict", slow_predict)
    loaded = loaded_run(tiny_net())
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)
    threads = [threading.Thread(target=evaluate, args=(loaded_run(tiny_net()), x, y)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [1, 1, 1]
    monkeypatch.setattr(ev, "TURN_WAIT_S", 0.2)
    with ev.TURN:  # another visitor's evaluation, still going
        with pytest.raises(ev.Busy) as e:
            evaluate(loaded, x, y)
        assert_one_line(e.value)
        assert evaluate(loaded, x, y, budget=False).probs.shape == (4, 10)
    assert evaluate(loaded, x, y).probs.shape == (4, 10)


def _wide_net() -> Net:
    """Hosted mode trains it in batches of at most 13 (24 MiB of activations per image, estimated)."""
    from playground.specs.arch import Block, Layer

    return Net(name="wide", blocks=[Block([Layer("conv", 512, kernel=1, padding=0),
                                           Layer("conv", 512, kernel=3, groups=512),
                                           Layer("conv", 512, kernel=3, groups=512)])])


def test_test_batches_never_hold_more_activations_than_a_training_batch_may(monkeypatch, image_folder, tmp_path):
    """At the CPU's usual 256 images, one Results evaluation of this hosted-legal net grew the server's
    memory by 1.5 GiB (1 GB is the demo's whole budget); at 13 by 140 MiB. The Results page and a
    training's own test pass both use the bound; the presets keep 256 outside hosted mode."""
    import playground.training.trainer as trainer
    from playground.runs.runner import execute
    from playground.training.data import load_dataset
    from playground.training.predict import eval_batch_size

    cpu = torch.device("cpu")
    assert eval_batch_size(preset_net("fast"), cpu) == eval_batch_size(preset_net("seed-002"), cpu) == 256
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    assert eval_batch_size(_wide_net(), cpu) == 13 and eval_batch_size(preset_net("fast"), cpu) == 133
    batches = []

    def spy(real):
        def predict(model, x, mean, std, device, batch, *args, **kwargs):
            batches.append(batch)
            return real(model, x, mean, std, device, batch, *args, **kwargs)
        return predict

    monkeypatch.setattr(checkpoint, "predict", spy(checkpoint.predict))
    evaluate(loaded_run(_wide_net()), np.zeros((40, 32, 32, 3), np.uint8), np.zeros(40, np.int64))
    monkeypatch.setattr(trainer, "predict", spy(trainer.predict))
    run = RunSpec(_wide_net(), default_aug(), TrainSpec(epochs=1, batch_size=8, device="cpu", train_subset=16,
                                                        test_subset=20))
    execute(RunStore(tmp_path / "runs"), run, load_dataset(str(image_folder)))
    assert batches == [13, 13]
