import copy
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from playground.training.trainer import StopSignal
from playground.results.evaluate import evaluate, gradcam, gradcams
from playground.runs.loading import load_run
from playground.results.export import export
from playground.runs.runner import execute
from playground.faults import CheckpointError
from playground.runs.store import RunStore
from playground.specs.arch import Block, Net, conv, pool, sep
from playground.specs.augment import default_aug
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.serde import SpecError
from playground.training.data import load_dataset
from playground.training.device import DeviceError, pick_device, speed_settings
from playground.training.predict import normalize, predict, tta_views
from playground.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def tiny_net() -> Net:
    return Net(name="tiny", blocks=[Block([conv(8), pool()]), Block([sep(16, dilation=2)])])


def tiny_run(**train) -> RunSpec:
    return RunSpec(tiny_net(), default_aug(), TrainSpec(**{"epochs": 1, "batch_size": 32, "device": "cpu", **train}))


def test_tiny_run_trains_evaluates_and_is_stored(image_folder, tmp_path):
    data = load_dataset(str(image_folder))
    store = RunStore(tmp_path / "runs")
    events = []
    run_id, result = execute(store, tiny_run(epochs=2, max_lr=0.05), data, [events.append])
    assert result.status == "finished" and len(result.epochs) == 2
    assert result.epochs[-1]["test_acc"] >= 0.25  # chance is 0.1; without BN recalibration it collapses to it
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 2 and "batch" in kinds
    batch = next(e.data for e in events if e.kind == "batch")
    assert {"loss", "acc", "lr", "img_per_s", "elapsed"} <= set(batch)
    record = RunStore(tmp_path / "runs").get(run_id)  # a fresh store object: reload after restart
    assert record.status == "finished" and len(record.epochs) == 2 and record.params == tiny_net_params()
    assert record.state_sha is None and not store.state_path(run_id).exists()  # a finished run resumes no more
    loaded = load_run(store, run_id)
    report = evaluate(loaded, data.x_test, data.y_test, tta=True)
    assert report.probs.shape == (40, 10) and report.confusion().sum() == 40
    assert set(report.per_class()) == set(data.classes)
    wrong = report.misclassified("loss")
    losses = report.losses()[wrong]
    assert np.all(np.diff(losses) <= 1e-9)
    cam, cls = gradcam(loaded, data.x_test[0])
    assert cam.shape == (32, 32) and 0 <= cam.min() and cam.max() <= 1 and 0 <= cls < 10


def test_gradcam_is_safe_for_sessions_that_share_a_loaded_run(image_folder, tmp_path):
    """Concurrent Results pages share one loaded model; hooks and gradients must stay private."""
    from concurrent.futures import ThreadPoolExecutor
    data = load_dataset(str(image_folder))
    store = RunStore(tmp_path)
    loaded = load_run(store, execute(store, tiny_run(), data)[0])
    alone = [gradcam(loaded, data.x_test[i])[0] for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: gradcam(loaded, data.x_test[i])[0], range(16)))
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(alone, together))
    assert not loaded.model._forward_hooks and all(p.grad is None for p in loaded.model.parameters())
    targets = np.arange(16) % 10  # the gallery's batch: each image's own class, in one pass
    batch, explained = gradcams(loaded, data.x_test[:16], targets)
    assert list(explained) == list(targets)
    assert all(np.allclose(batch[i], gradcam(loaded, data.x_test[i], int(targets[i]))[0], atol=1e-5) for i in range(16))


def test_eval_every_tests_some_epochs_and_always_the_last(image_folder, tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id, result = execute(store, tiny_run(epochs=3, eval_every=2), load_dataset(str(image_folder)))
    assert [e["test_acc"] is None for e in result.epochs] == [True, False, False]
    record = store.get(run_id)
    assert record.best_acc == max(e["test_acc"] for e in result.epochs[1:]) > 0
    with pytest.raises(SpecError, match="eval_every"):
        TrainSpec.from_json('{"eval_every": 0}')


def tiny_net_params() -> int:
    builder = __import__("playground.training.builder", fromlist=["x"])
    return sum(p.numel() for p in builder.build_model(tiny_net()).parameters())


def test_same_seed_same_first_epoch(image_folder):
    data = load_dataset(str(image_folder))
    a = Trainer(data, tiny_run(seed=3)).fit().epochs[0]
    b = Trainer(data, tiny_run(seed=3)).fit().epochs[0]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert a[key] == pytest.approx(b[key], abs=1e-6)


@pytest.mark.parametrize("alternate_flip", [False, True])
def test_the_data_on_device_path_trains_as_the_host_path_does(image_folder, alternate_flip):
    """The GPU path (whole set on the device, augmentation there with torch ops) run on the CPU:
    same seed, same batches, so the same epoch; and a run resumes from either path's state (with
    the alternating flip too, whose second epoch depends on the first's draws)."""
    from playground.specs.recipes import flip_crop

    data = load_dataset(str(image_folder))
    run = RunSpec(tiny_net(), flip_crop(4, cutout=8), TrainSpec(epochs=2, batch_size=32, device="cpu", seed=3,
                                                                alternate_flip=alternate_flip))
    states = []
    host = Trainer(data, run, data_on_device=False).fit()
    keep = [lambda e: states.append(copy.deepcopy(e.data["state"])) if e.kind == "epoch" else None]
    device = Trainer(data, run, keep, data_on_device=True)
    on_device = device.fit()
    for a, b in zip(host.epochs, on_device.epochs):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    resumed = Trainer(data, run, data_on_device=False).fit(resume=states[0])
    assert resumed.epochs[1]["train_loss"] == pytest.approx(host.epochs[1]["train_loss"], abs=1e-5)


def test_nan_loss_stops_with_advice_and_keeps_store_consistent(image_folder, tmp_path, monkeypatch):
    import playground.training.trainer as trainer_mod
    real, calls = trainer_mod.F.cross_entropy, []

    def diverging(*args, **kwargs):  # the loss blows up on the 6th batch (second epoch)
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(trainer_mod.F, "cross_entropy", diverging)
    data = load_dataset(str(image_folder))
    store = RunStore(tmp_path)
    run_id, result = execute(store, tiny_run(epochs=3), data)
    assert result.status == "diverged" and "lower max LR" in result.message
    rec = store.get(run_id)
    assert rec.status == "diverged" and "lower max LR" in rec.message and "epoch 2" in rec.message
    assert len(rec.epochs) == 1 and load_run(store, run_id).epoch == 1  # the last good epoch survives


def test_stop_mid_epoch_takes_effect_within_one_batch(image_folder, tmp_path):
    data = load_dataset(str(image_folder))
    store, stop, batches = RunStore(tmp_path), StopSignal(), []

    def on_event(event):
        if event.kind == "batch":
            batches.append(event.data["batch"])
            if event.data["batch"] == 2:
                stop.set()

    run_id, result = execute(store, tiny_run(epochs=5, batch_size=8), data, [on_event], stop)
    assert result.status == "stopped" and batches == [1, 2]
    assert store.get(run_id).status == "stopped"
    assert load_run(store, run_id).model is not None  # the last good state is kept


def test_two_trainers_into_one_store(image_folder, tmp_path):
    data = load_dataset(str(image_folder))
    results = {}

    def work(i):
        results[i] = execute(RunStore(tmp_path), tiny_run(seed=i, epochs=2), data)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    store = RunStore(tmp_path)
    assert len(store.list()) == 2
    assert all(r.status == "finished" and len(r.epochs) == 2 for r in store.list())
    for run_id, _ in results.values():
        load_run(store, run_id)


def test_truncated_checkpoint_is_reported(image_folder, tmp_path):
    data = load_dataset(str(image_folder))
    store = RunStore(tmp_path)
    run_id, _ = execute(store, tiny_run(), data)
    path = store.checkpoint_path(run_id)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="damaged"):
        load_run(store, run_id)


def test_invalid_spec_and_device_fail_before_training(image_folder, tmp_path):
    data = load_dataset(str(image_folder))
    bad = tiny_run()
    bad.net.blocks[0].layers[0].out = 0
    with pytest.raises(SpecError, match="architecture: C1 layer 1"):
        execute(RunStore(tmp_path), bad, data)
    assert RunStore(tmp_path).list() == []
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            pick_device("cuda")


def test_cuda_path_settings_without_a_gpu():
    cuda = speed_settings(torch.device("cuda"))
    assert cuda.amp_dtype == torch.float16 and cuda.grad_scaler and cuda.channels_last and cuda.data_on_device
    cpu = speed_settings(torch.device("cpu"))
    assert cpu.amp_dtype is None and not cpu.grad_scaler and cpu.channels_last


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_train_evaluate_export(image_folder, tmp_path, capsys):
    """train and the exported script run as processes (the end-to-end paths); evaluate, curves and
    export run in process (the same main(), without a torch start-up each)."""
    import os

    from playground.cli import main

    runs = str(tmp_path / "runs")
    env = {**os.environ, "PLAYGROUND_RUNS": runs}
    spec = tmp_path / "net.json"
    spec.write_text(tiny_net().to_json())
    out = run_cli("train", "--spec", str(spec), "--epochs", "1", "--batch-size", "32", "--data", str(image_folder),
                  "--quiet", env=env)
    assert out.returncode == 0, out.stderr
    assert "epoch   1" in out.stdout
    run_id = out.stdout.strip().splitlines()[-1].removeprefix("run id: ")

    def cli(*args) -> tuple[int, str, str]:
        code = main([*args, "--runs", runs])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, stdout, _ = cli("evaluate", run_id, "--data", str(image_folder))
    result = json.loads(stdout)
    assert code == 0 and {"accuracy", "per_class", "params"} <= set(result) and result["params"] == tiny_net_params()
    shifted = json.loads(cli("evaluate", run_id, "--tta", "--tta-shift", "1", "--data", str(image_folder))[1])
    assert shifted["tta"] and shifted["tta_shift"] == 1 and shifted["n"] == result["n"]
    with pytest.raises(SystemExit) as bad:
        main(["evaluate", run_id, "--tta-shift", "9"])
    assert bad.value.code == 2 and "--tta-shift" in capsys.readouterr().err
    page = tmp_path / "curves.html"
    code, _, err = cli("curves", run_id, "--out", str(page))
    assert code == 0 and "test accuracy by wall-clock minute" in page.read_text(), err
    assert cli("curves", "no-such-run")[0] == 2
    for fmt in ("onnx", "torchscript"):
        target = tmp_path / f"model.{fmt}"
        code, _, err = cli("export", run_id, "--format", fmt, "--out", str(target))
        assert code == 0 and target.stat().st_size > 1000, err
    script = tmp_path / "train_script.py"
    assert cli("export", run_id, "--format", "script", "--out", str(script))[0] == 0
    done = subprocess.run([sys.executable, str(script), "--data", str(image_folder), "--epochs", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epoch 1: loss" in done.stdout and "test accuracy" in done.stdout


def test_cli_recipe_sets_preset_augmentation_and_training_and_flags_override(image_folder, tmp_path):
    import os
    env = {**os.environ, "PLAYGROUND_RUNS": str(tmp_path / "runs")}
    out = run_cli("train", "--recipe", "fast", "--epochs", "1", "--train-subset", "64", "--data", str(image_folder),
                  "--quiet", env=env)
    assert out.returncode == 0, out.stderr
    assert "training fast (196,480 params)" in out.stdout
    assert "note: progressive resizing is off for 1 epoch (the recipe's 8 of 20 round to 0)" in out.stdout
    run_id = out.stdout.strip().splitlines()[-1].removeprefix("run id: ")
    spec = RunStore(tmp_path / "runs").get(run_id).spec
    assert [t["name"] for t in spec["aug"]["transforms"]] == ["HorizontalFlip", "RandomCrop"]
    assert spec["train"]["epochs"] == 1 and spec["train"]["tta"] and spec["train"]["batch_size"] == 256
    out = run_cli("train", "--recipe", "nope", "--data", str(image_folder), env=env)
    assert out.returncode == 2 and "unknown recipe 'nope'" in out.stderr


def test_cli_errors_are_clear(tmp_path):
    out = run_cli("train", "--preset", "fast", "--data", str(tmp_path / "missing"), "--epochs", "1")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("summary", "--preset", "nope")
    assert out.returncode == 2 and "unknown preset" in out.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"blocks": [{"layers": [{"kind": "conv", "out": 0}]}]}')
    out = run_cli("summary", "--spec", str(bad))
    assert out.returncode == 2 and "C1 layer 1: channels" in out.stderr


def test_cli_presets_lists_every_preset():
    out = run_cli("presets")
    assert out.returncode == 0
    for name in ("seed-000", "seed-004", "fast", "record"):
        assert name in out.stdout
    assert "197,413" in out.stdout
    # a measured figure names the hardware it came from: the record recipe ran on a GPU, fast on the CPU
    record_line = next(line for line in out.stdout.splitlines() if line.startswith("record "))
    assert "193,360" in record_line and "90.66% @ 162 ep" in record_line and "on H100 GPU" in record_line
    assert "on 2-core EPYC" in next(line for line in out.stdout.splitlines() if line.startswith("fast "))


def test_shift_tta_averages_the_mirrored_and_moved_views():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    views = list(tta_views(x, flip=True, shift=1))
    assert len(views) == 18 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[4], x) and torch.equal(views[13], torch.flip(x, dims=[3]))  # each grid's centre
    assert torch.equal(views[0][..., 1:, 1:], x[..., :-1, :-1])  # moved one pixel down and right
    assert [len(list(tta_views(x, flip, 0))) for flip in (False, True)] == [1, 2]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 10, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    mean, std, cpu = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 255.0), torch.device("cpu")
    with torch.no_grad():
        expected = sum(model(v).softmax(1) for v in tta_views(normalize(torch.from_numpy(images), mean, std), True, 1))
    probs = predict(model, images, mean, std, cpu, tta=True, shift=1)
    assert torch.allclose(probs, expected / 18, atol=1e-6)
    assert not torch.allclose(probs, predict(model, images, mean, std, cpu, tta=True), atol=1e-4)


def test_shifted_views_test_only_the_last_epoch(image_folder, tmp_path):
    """The 9x dearer shift TTA gives the run's result; the per-epoch tests before it use flip TTA only,
    and the result is what evaluating the final model with the run's TTA gives."""
    store, data, events = RunStore(tmp_path), load_dataset(str(image_folder)), []
    run_id, result = execute(store, tiny_run(epochs=3, tta=True, tta_shift=1), data, [events.append])
    assert [e.data["views"] for e in events if e.kind == "testing"] == [2, 2, 18]
    report = evaluate(load_run(store, run_id, data), data.x_test, data.y_test, tta=True, shift=1)
    assert report.accuracy == pytest.approx(result.epochs[-1]["test_acc"])


def test_onnx_matches_torch(image_folder, tmp_path):
    onnx = pytest.importorskip("onnx")
    data = load_dataset(str(image_folder))
    store = RunStore(tmp_path)
    run_id, _ = execute(store, tiny_run(), data)
    path = export(load_run(store, run_id), "onnx", tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(path)))


def test_train_spec_json_round_trip_and_validation():
    t = TrainSpec(epochs=3, optimizer="adamw", ema=0.99, train_subset=100, tta_shift=2)
    assert TrainSpec.from_json(t.to_json()) == t
    with pytest.raises(SpecError, match="TTA shift must be between 0 and 4 px, got 5"):
        TrainSpec.from_json('{"tta_shift": 5}')
    with pytest.raises(SpecError, match="unknown optimizer 'lamb'"):
        TrainSpec.from_json('{"optimizer": "lamb"}')


def test_a_test_pass_is_announced_in_the_store_and_cleared_after(image_folder, tmp_path):
    """The batch points pause while the model is tested; the Train page shows the store's message."""
    store, data, seen = RunStore(tmp_path), load_dataset(str(image_folder)), []

    def watch(event):
        if event.kind in ("testing", "epoch"):
            record = store.get(event_run[0]) if event_run else None
            seen.append((event.kind, event.data["epoch"], record.message if record else None))

    event_run: list[str] = []
    from playground.runs.runner import create_run
    run = tiny_run(epochs=3, eval_every=2)
    event_run.append(create_run(store, run))
    execute(store, run, data, [watch], run_id=event_run[0])
    assert seen == [("epoch", 1, ""), ("testing", 2, "testing epoch 2 on 40 images"), ("epoch", 2, ""),
                    ("testing", 3, "testing epoch 3 on 40 images"), ("epoch", 3, "")]


def test_charts_have_axis_titles_and_tables_read_as_people_read():
    from playground.results.plots import compare_figure, live_figure, minutes_seconds, report_figure

    epochs = [dict(epoch=1, train_loss=2.0, test_loss=1.9, train_acc=0.3, test_acc=0.35, lr=0.1, elapsed=70.0)]
    live = live_figure(epochs, [dict(step=5, epoch=1, loss=2.1, acc=0.3, lr=0.1, img_per_s=900)], 10)
    layout = live.layout
    assert [layout.yaxis.title.text, layout.yaxis2.title.text, layout.yaxis3.title.text] == [
        "cross-entropy loss", "accuracy", "learning rate"] and all(t.endswith("%") for t in layout.yaxis2.ticktext)
    from types import SimpleNamespace
    run = SimpleNamespace(epochs=epochs, name="fast", id="x", params=1000, spec={"net": tiny_net().to_dict()})
    for fig in (compare_figure([run]), compare_figure([run], minutes=True), report_figure([run])):
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and all(t.endswith("%") for t in fig.layout.yaxis.ticktext)
    assert [minutes_seconds(x) for x in (None, 0, 42.4, 727, 3909)] == ["", "0:00", "0:42", "12:07", "1:05:09"]


def test_the_epoch_table_says_not_tested_for_an_epoch_without_a_test_pass():
    """A recipe that tests every 4th epoch listed None as the test accuracy and loss of the others."""
    from playground.results.plots import epoch_table

    epochs = [dict(epoch=1, train_loss=2.0412, test_loss=None, train_acc=0.3012, test_acc=None, lr=0.1, img_per_s=1234.5,
                   epoch_time=70.2, elapsed=71.0),
              dict(epoch=2, train_loss=1.5, test_loss=1.4321, train_acc=0.45, test_acc=0.4811, lr=0.05, img_per_s=1300,
                   epoch_time=69.0, elapsed=140.4)]
    table = epoch_table(epochs)
    assert table.to_dict("records")[0] == {"epoch": 1, "train acc": "30.12%", "test acc": "not tested",
                                           "train loss": "2.041", "test loss": "–", "LR": "0.1", "img/s": "1,234",
                                           "epoch time": "1:10", "elapsed": "1:11"}
    assert table["test acc"].tolist()[1] == "48.11%" and "None" not in table.to_string()


def test_batches_never_end_with_a_single_image():
    from playground.training.batches import spans

    assert [(s.start, s.stop) for s in spans(10, 4)] == [(0, 4), (4, 8), (8, 10)]
    assert [(s.start, s.stop) for s in spans(9, 4)] == [(0, 4), (4, 9)]  # the 9th joins the batch before
    assert [(s.start, s.stop) for s in spans(1, 4)] == [(0, 1)] and spans(0, 4) == []


def test_a_net_whose_map_shrinks_to_one_pixel_trains_when_an_epoch_leaves_one_image_over(image_folder):
    """BatchNorm on a 1×1 map cannot normalise one image: the last batch of 120 images at batch 7 held
    one and stopped the run with a ValueError; it now joins the batch before it."""
    data = load_dataset(str(image_folder))
    assert len(data.y_train) % 7 == 1
    net = Net(name="one-pixel", blocks=[Block([conv(8, stride=4), conv(8, stride=8)])])
    result = Trainer(data, RunSpec(net, default_aug(), TrainSpec(epochs=1, batch_size=7, device="cpu"))).fit()
    assert result.status == "finished" and result.epochs[0]["train_acc"] is not None


@pytest.mark.parametrize("train, words", [(dict(batch_size=1), "batch size must be between 2 and"),
                                          (dict(train_subset=1), "train subset must be between 2 and")])
def test_a_batch_or_training_set_of_one_image_is_refused_in_one_line(train, words):
    from playground.specs.config import checked

    with pytest.raises(SpecError) as e:
        checked(RunSpec(tiny_net(), default_aug(), TrainSpec(**train)))
    assert len(e.value.problems) == 1 and words in e.value.problems[0]


@pytest.mark.parametrize("argv, says", [
    (["train", "--epochs", "-1"], "epochs must be between 1 and 1000"),
    (["train", "--preset", "nope"], "nope"),
    (["evaluate", "nope"], "nope"),
    (["export", "nope"], "nope"),
    (["sweep", "--space", "no-such-space.json"], "no-such-space.json"),
    (["runs"], ""),
])
def test_a_refused_command_answers_without_loading_torch(tmp_path, argv, says):
    """A typo is answered at once: torch (and Albumentations, which loads it) is imported only once a
    command has something to train, evaluate or export (its import is about 2.5 s of a 3.5 s start)."""
    from playground.runs.store import RunStore

    RunStore(tmp_path / "runs")  # an empty store: the run ids are what is refused
    code = ("import sys\nfrom playground.cli import main\ncode = main(sys.argv[1:])\n"
            "print('torch' in sys.modules, 'albumentations' in sys.modules, code)")
    result = subprocess.run([sys.executable, "-c", code, *argv, "--runs", str(tmp_path / "runs")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split()[-3:] == ["False", "False", "0" if argv == ["runs"] else "2"], result.stderr
    assert says in result.stderr
