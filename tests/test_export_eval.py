"""Export and evaluation at the trust boundary (issue 16): every preset exports in every
format or is refused up front in one line; a failed export leaves no file; evaluation output
is strict JSON; a run is never evaluated on data it was not trained for; a checkpoint that
is not what it claims is refused in one line and never runs code."""
from __future__ import annotations

import json
import re
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import playground.atomic as atomic_mod
from playground.results import export as export_mod
from playground.results.evaluate import DataMismatch, LoadedRun, Report, evaluate, gradcam, load_run
from playground.results.export import FORMATS, ExportError, default_filename, export
from playground.runs.runner import checkpoint_state
from playground.runs.faults import CheckpointError
from playground.runs.store import RunStore
from playground.specs.arch import Block, Net, conv, pool, sep
from playground.specs.augment import default_aug
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.presets import PRESETS, preset_net
from playground.training.builder import build_model
from playground.training.data import Dataset

from .conftest import CLASSES, make_image_folder

PACKAGE = Path(__file__).resolve().parents[1] / "playground"


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Untrained, but with weights and BN statistics far from their defaults, so that a wrong
    export computes visibly different numbers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=g)
            t.copy_(r.abs() * 0.5 + 0.5 if name.endswith("running_var") else r * 0.3)
    return model.eval()


def loaded_run(net: Net, seed: int = 0, classes: list[str] | None = None) -> LoadedRun:
    classes = classes or [f"class{i}" for i in range(net.num_classes)]
    return LoadedRun(RunSpec(net, default_aug(), TrainSpec(epochs=1)), randomized(build_model(net), seed),
                     classes, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 1, "20261125-000000-abcdef")


def assert_one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and len(text) < 400, text
    return text


def tiny_net(**kw) -> Net:
    return Net(name="tiny", blocks=[Block([conv(8), pool()]), Block([sep(16, dilation=2)])], **kw)


# -- export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_exports_in_every_format(preset, fmt, tmp_path):
    loaded = loaded_run(preset_net(preset))
    out = export(loaded, fmt, tmp_path / default_filename("x", fmt), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left beside it
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = loaded.model(x)
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(out))(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    elif fmt == "onnx":
        onnx = pytest.importorskip("onnx")
        onnx.checker.check_model(str(out))
        try:
            import onnxruntime
            got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
                None, {"image": x.numpy()})[0]
        except ImportError:  # the reference implementation that ships with onnx: slower, same answer
            from onnx.reference import ReferenceEvaluator
            got = ReferenceEvaluator(str(out)).run(None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-3, atol=1e-4)
    else:  # the standalone script builds the same network (parameter for parameter) without the playground
        module = runpy.run_path(str(out), run_name="exported_script")
        net = module["Net"](module["ARCH"])
        assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in loaded.model.parameters())


def test_export_leaves_the_shared_model_as_it_was(tmp_path):
    """The app's sessions share one loaded run: an export must not retype or rebuild it."""
    loaded = loaded_run(preset_net("seed-004"))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    kinds = [type(m) for m in loaded.model.modules()]
    export(loaded, "torchscript", tmp_path / "m.ts.pt")
    assert [type(m) for m in loaded.model.modules()] == kinds
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def _partial_then(exc: BaseException):
    """A writer that writes half a file to where it was told, then fails."""
    def write(path) -> None:
        Path(path).write_bytes(b"half a file")
        raise exc
    return write


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_leaves_no_file_and_keeps_the_old_one(fmt, tmp_path, monkeypatch):
    loaded = loaded_run(tiny_net())
    if fmt == "onnx":
        failing = _partial_then(RuntimeError("exporter crashed\nwith a long torch message"))
        monkeypatch.setattr(torch.onnx, "export", lambda model, args, f, **kw: failing(f))
    elif fmt == "torchscript":
        real_trace = torch.jit.trace

        class Traced:  # computes like the real trace, then dies half way through saving
            def __init__(self, *a, **kw):
                self.traced = real_trace(*a, **kw)

            def __call__(self, x):
                return self.traced(x)

            def save(self, f):
                _partial_then(OSError(28, "No space left on device"))(f)

        monkeypatch.setattr(torch.jit, "trace", Traced)
    else:
        monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **kw: _partial_then(
            OSError(28, "No space left on device"))(self))
    fresh, old = tmp_path / "fresh.out", tmp_path / "old.out"
    old.write_bytes(b"an earlier complete export")
    for target in (fresh, old):
        with pytest.raises((ExportError, OSError)) as err:
            export(loaded, fmt, target, "x")
        assert_one_line(err.value)
    assert not fresh.exists()
    assert old.read_bytes() == b"an earlier complete export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.out"]  # and no temp file


def test_a_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(atomic_mod.os, "replace", refuse)
    with pytest.raises(PermissionError):
        export(loaded_run(tiny_net()), "script", tmp_path / "train_x.py", "x")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_up_front_in_one_line(tmp_path, monkeypatch):
    loaded = loaded_run(tiny_net())
    calls = []
    monkeypatch.setattr(export_mod, "_plain_model", lambda *a: calls.append(a))  # nothing may be built
    for fmt, path, says in [("pickle", tmp_path / "m.pkl", "unknown export format 'pickle'; choose one of onnx"),
                            ("onnx", tmp_path / "missing" / "m.onnx", "the folder"),
                            ("torchscript", tmp_path, "it is a folder")]:
        with pytest.raises(ExportError, match=re.escape(says)) as err:
            export(loaded, fmt, path)
        assert_one_line(err.value)
    big = loaded_run(tiny_net(input_size=64, in_channels=1))
    with pytest.raises(ExportError, match="the standalone script reads 32x32 RGB images; this run's net takes "
                                          "64x64 with 1 channel") as err:
        export(big, "script", tmp_path / "train_x.py")
    assert_one_line(err.value)
    assert calls == [] and sorted(tmp_path.iterdir()) == []


def test_onnx_and_torchscript_take_any_input_the_spec_allows(tmp_path):
    """Not only the presets: another input size and channel count, every padding mode, a linear head."""
    net = Net(name="odd", in_channels=1, input_size=40, num_classes=12, blocks=[
        Block([conv(8, padding_mode="reflect"), conv(8, dilation=2, padding=2, padding_mode="circular"),
               conv(8, stride=2, dilation=2, padding=2)]),
        Block([pool("avgpool"), sep(16, mid=True, dilation=2, padding=2, padding_mode="replicate")], skip=True)])
    net.head.kind, net.head.gap = "linear", False
    loaded = loaded_run(net)
    ts = export(loaded, "torchscript", tmp_path / "m.ts.pt")
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts))(x), loaded.model(x), rtol=1e-4, atol=1e-4)
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(str(export(loaded, "onnx", tmp_path / "m.onnx")))


def test_cli_exports_seed_004_as_torchscript(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store, preset_net("seed-004"))
    out = tmp_path / "m.ts.pt"
    assert main(["export", run_id, "--runs", str(store.root), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}" and torch.jit.load(str(out)) is not None


def test_cli_export_refusal_is_a_one_line_error(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    out = tmp_path / "missing" / "m.onnx"
    assert main(["export", run_id, "--runs", str(store.root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the export to") and err.count("\n") == 1, err
    assert not out.parent.exists()


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

def stored_run(store: RunStore, net: Net | None = None, classes: list[str] | None = None,
               state: dict | None = None) -> str:
    """A finished run with a checkpoint, without training (a randomised untrained model)."""
    net = net or tiny_net()
    run = RunSpec(net, default_aug(), TrainSpec(epochs=1, device="cpu"))
    run_id = store.create(net.name, run.to_dict(), params=1)
    if state is None:
        classes = classes or list(CLASSES)
        data = Dataset("d", np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64),
                       np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64), classes,
                       stats=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
        state = checkpoint_state(run, randomized(build_model(net)), data, 1)
    store.save_checkpoint(run_id, state)
    store.finish(run_id, "finished")
    return run_id


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
    from playground.training.distill import TeacherError, load_teachers
    with pytest.raises(TeacherError) as err:
        load_teachers(store, [run_id], "", list(CLASSES))
    assert_one_line(err.value)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(store.checkpoint_path(run_id), weights_only=False)
    assert marker.exists()


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
    ort = pytest.importorskip("onnxruntime")
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
