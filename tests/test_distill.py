"""Distillation: the loss, the teacher checks that keep test images out of the targets, and the cache."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import playground.runs.distill as distill
from playground.runs.loading import load_run
from playground.results.export import export
from playground.runs.runner import StoreWriter, create_run, execute
from playground.runs.store import RunStore
from playground.specs.config import TrainSpec
from playground.specs.serde import SpecError
from playground.training.data import load_dataset
from playground.runs.distill import TeacherError, candidates, load_teachers, teacher_targets
from playground.training.trainer import Event, Trainer, train_loss
from tests.test_training import run_cli, tiny_run


def test_loss_limits():
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 10), torch.randint(0, 10, (16,))
    one_hot = F.one_hot(labels, 10).float()
    plain = TrainSpec(label_smoothing=0.0)
    ce = F.cross_entropy(logits, labels)
    assert train_loss(logits, labels, plain) == pytest.approx(float(ce))
    # all weight on one-hot teachers at T=1 is cross-entropy again (KL = CE - H(one-hot) = CE)
    assert train_loss(logits, labels, TrainSpec(distill_weight=1.0, distill_temperature=1.0),
                      teacher_probs=one_hot) == pytest.approx(float(ce), rel=1e-4)
    # weight 0 ignores the teachers; a student that already matches them pays nothing for the soft part
    assert train_loss(logits, labels, TrainSpec(distill_weight=0.0, label_smoothing=0.0),
                      teacher_probs=torch.rand(16, 10)) == pytest.approx(float(ce))
    matched = train_loss(logits, labels, TrainSpec(distill_weight=1.0), teacher_probs=logits.softmax(1))
    assert float(matched) == pytest.approx(0.0, abs=1e-5)


def test_spec_round_trip_and_validation():
    a, b = "20260101-120000-abc123", "20260101-120001-def456"
    t = TrainSpec(teachers=[a, b], distill_weight=0.5, distill_temperature=2.0)
    assert TrainSpec.from_json(t.to_json()) == t
    assert TrainSpec.from_json(json.dumps({"epochs": 2})).teachers == []  # older specs still load
    with pytest.raises(SpecError) as e:
        TrainSpec.from_json(json.dumps({"teachers": [a, a], "distill_weight": 1.5, "distill_temperature": 0}))
    assert len(e.value.problems) == 3
    with pytest.raises(SpecError, match="teachers must be run ids"):
        TrainSpec.from_json(json.dumps({"teachers": ["../../etc"]}))


@pytest.fixture(scope="module")
def teacher(image_folder, tmp_path_factory):
    """A store with one finished teacher trained on ``image_folder``."""
    store = RunStore(tmp_path_factory.mktemp("teacher-store"))
    run = tiny_run(epochs=2, max_lr=0.05)
    run.data = str(image_folder)
    run_id, result = execute(store, run, load_dataset(str(image_folder)))
    assert result.status == "finished"
    return store, run_id


def test_student_learns_from_teacher_and_records_it(image_folder, teacher, tmp_path):
    store, teacher_id = teacher
    data = load_dataset(str(image_folder))
    student = tiny_run(epochs=2, max_lr=0.05, teachers=[teacher_id], distill_weight=0.5, distill_temperature=1.0)
    student.data = str(image_folder)
    events = []
    run_id, result = execute(store, student, data, [events.append])
    assert result.status == "finished" and result.epochs[-1]["test_acc"] >= 0.25
    assert [e.kind for e in events][:2] == ["teachers", "start"]
    assert store.get(run_id).spec["train"]["teachers"] == [teacher_id]
    script = export(load_run(store, run_id), "script", tmp_path / "train.py").read_text()
    assert f"Not reproduced here: distillation from runs {teacher_id}" in script
    cached = list((store.root / "teachers").glob("*.npy"))
    assert len(cached) == 1
    probs = np.load(cached[0])
    assert probs.shape == (len(data.y_train), 10) and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_a_relative_and_an_absolute_path_are_the_same_data(image_folder, teacher, monkeypatch):
    store, teacher_id = teacher
    monkeypatch.chdir(image_folder.parent)
    assert teacher_id in [r.id for r in candidates(store, image_folder.name)]  # the store also holds students
    assert load_teachers(store, [teacher_id], image_folder.name, list(load_dataset(str(image_folder)).classes))
    assert candidates(store, "cifar10") == []


def test_targets_are_cached_per_checkpoint_and_images(image_folder, teacher, monkeypatch):
    store, teacher_id = teacher
    data = load_dataset(str(image_folder))
    teachers = load_teachers(store, [teacher_id], str(image_folder), list(data.classes))
    first = teacher_targets(store, [teacher_id], teachers, data.x_train, torch.device("cpu"))
    class Recomputed(Exception):
        pass

    def recompute(*args, **kwargs):
        raise Recomputed

    monkeypatch.setattr(distill, "probabilities", recompute)
    again = teacher_targets(store, [teacher_id], teachers, data.x_train, torch.device("cpu"))
    assert np.array_equal(first, again)
    with pytest.raises(Recomputed):  # other images: other targets
        teacher_targets(store, [teacher_id], teachers, data.x_train[:5], torch.device("cpu"))


def test_teachers_that_cannot_teach_are_refused_before_a_record_exists(image_folder, teacher, tmp_path):
    store, teacher_id = teacher
    data = load_dataset(str(image_folder))
    before = len(store.list())

    def student(source, *ids):
        run = tiny_run(teachers=list(ids))
        run.data = source
        return run

    with pytest.raises(TeacherError, match="not in the run store"):
        execute(store, student(str(image_folder), "no-such-run"), data)
    with pytest.raises(TeacherError, match="may have seen this run's test images"):
        execute(store, student(str(tmp_path / "other-data"), teacher_id), data)
    with pytest.raises(TeacherError, match="may have seen this run's test images"):
        execute(store, student("", teacher_id), data)
    unfinished = store.create("tiny", tiny_run().to_dict())
    with pytest.raises(TeacherError, match="queued, not finished"):
        execute(store, student(str(image_folder), unfinished), data)
    store.delete(unfinished)
    assert len(store.list()) == before
    with pytest.raises(ValueError, match="runner.execute"):  # the trainer alone has no store to read
        Trainer(data, student(str(image_folder), teacher_id))


def test_cli_teachers_flag_and_its_errors(image_folder, teacher, capsys):
    """The refusals and the ensemble evaluation in process (the CLI's main, no torch start-up each);
    the distilled training as a process."""
    from playground.cli import main

    store, teacher_id = teacher
    common = ["train", "--preset", "seed-004", "--data", str(image_folder), "--runs", str(store.root),
              "--epochs", "1", "--batch-size", "32", "--quiet"]
    assert main([*common, "--teachers", "nope"]) == 2
    err = capsys.readouterr().err
    assert "teachers must be run ids like" in err and "'nope'" in err
    before = [r.id for r in store.list()]
    assert main([*common, "--teachers", "20260101-120000-abc123"]) == 2
    out = capsys.readouterr()
    assert "teacher 20260101-120000-abc123 is not in the run store" in out.err
    assert "run id" not in out.out and [r.id for r in store.list()] == before  # refused before a record
    ok = run_cli(*common, "--teachers", teacher_id, "--distill-weight", "0.5")
    assert ok.returncode == 0, ok.stderr
    assert "teachers: averaging 1 runs' predictions" in ok.stdout
    student_id = ok.stdout.strip().splitlines()[-1].removeprefix("run id: ")
    assert main(["evaluate", teacher_id, student_id, "--runs", str(store.root), "--data", str(image_folder)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_ids"] == [teacher_id, student_id] and len(result["member_accuracy"]) == 2
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 40
    assert result["params"] == sum(store.get(i).params for i in (teacher_id, student_id))


def test_the_store_says_a_run_is_computing_teacher_predictions(image_folder, tmp_path):
    """The Train page reads this message from the store while the worker computes the targets."""
    store, run = RunStore(tmp_path), tiny_run()
    data = load_dataset(str(image_folder))
    run_id = create_run(store, run)
    writer = StoreWriter(store, run, data, run_id)
    writer(Event("teachers", {"count": 2, "images": 1000}))
    assert store.get(run_id).message == "computing 2 teachers' predictions on 1,000 training images"
    writer(Event("start", {"steps": 5, "first_epoch": 1}))
    writer(Event("batch", {"step": 1, "epoch": 1, "batch": 1, "steps": 5, "loss": 2.0, "acc": 0.1, "lr": 0.1,
                           "img_per_s": 100.0}))
    writer.flush()
    record = store.get(run_id)
    assert record.message == "" and record.step == 1 and record.steps == 5
    assert store.batches(run_id)[0]["loss"] == 2.0


def test_teacher_targets_are_not_held_to_the_apps_evaluation_budget(image_folder, teacher, monkeypatch):
    """They are computed in the student's worker, whose training slot bounds the work."""
    from dataclasses import replace

    from playground.specs import limits

    store, teacher_id = teacher
    data = load_dataset(str(image_folder))
    teachers = load_teachers(store, [teacher_id], str(image_folder), list(data.classes))
    monkeypatch.setitem(limits.TIERS, "local", replace(limits.TIERS["local"], eval_macs=1))
    assert teacher_targets(store, [teacher_id], teachers, data.x_train, torch.device("cpu")).shape[0] == len(
        data.x_train)
