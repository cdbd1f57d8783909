"""Divergence (issue 16): a run whose loss goes non-finite or stays far above its start ends
"diverged" with a hint, a spike does not, and a run that learned nothing says so. Divergence is
real tiny training at a huge learning rate, or a loss bent by a spy."""

import pytest

from playground.runs.runner import execute
from playground.runs.records import ACTIVE, RESUMABLE, STATUSES
from playground.runs.store import RunStore
from playground.training.data import load_dataset
from playground.training.divergence import DivergenceWatch
from tests.test_training import tiny_run


def test_diverged_is_a_status_that_is_neither_active_nor_resumable():
    assert "diverged" in STATUSES and "diverged" not in ACTIVE + RESUMABLE


def test_a_huge_learning_rate_ends_diverged_with_a_hint(image_folder, tmp_path):
    """A real tiny training at max LR 10: its units die within two epochs and it predicts one
    class for every image; before, it ran all its epochs and ended "finished" at chance."""
    store = RunStore(tmp_path)
    run_id, result = execute(store, tiny_run(epochs=6, batch_size=16, max_lr=10.0), load_dataset(str(image_folder)))
    record = store.get(run_id)
    assert result.status == record.status == "diverged"
    assert "collapsed" in record.message and "try a lower max LR than 10, e.g. 1" in record.message
    assert "at epoch " in record.message and " step " in record.message
    assert len(record.epochs) < 6 and not record.active
    if record.epochs:  # the last good epoch is what it keeps
        assert store.load_checkpoint(run_id)["epoch"] == len(record.epochs)


def bend_the_loss(monkeypatch, factor_at):
    """The training loss times ``factor_at(call)`` (1-based), as a diverging run's would be."""
    import playground.training.trainer as trainer_mod
    real, calls = trainer_mod.F.cross_entropy, []

    def bent(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) * factor_at(len(calls))
    monkeypatch.setattr(trainer_mod.F, "cross_entropy", bent)


def test_a_non_finite_loss_ends_diverged_at_once(image_folder, tmp_path, monkeypatch):
    bend_the_loss(monkeypatch, lambda call: float("inf") if call >= 6 else 1.0)
    store = RunStore(tmp_path)
    run_id, result = execute(store, tiny_run(epochs=3), load_dataset(str(image_folder)))
    record = store.get(run_id)
    assert result.status == record.status == "diverged"
    assert record.message.startswith("the loss went to inf at epoch 2 step 6 (batch 2, LR ")
    assert "try a lower max LR than 0.2, e.g. 0.02" in record.message
    assert len(record.epochs) == 1 and store.load_checkpoint(run_id)["epoch"] == 1


def test_a_loss_that_stays_far_above_its_start_ends_diverged_but_a_spike_does_not(image_folder, tmp_path,
                                                                                  monkeypatch):
    store, data = RunStore(tmp_path), load_dataset(str(image_folder))
    bend_the_loss(monkeypatch, lambda call: 10.0 if call in (7, 9, 10) else 1.0)  # spikes, never 4 in a row
    assert execute(store, tiny_run(epochs=3), data)[1].status == "finished"
    bend_the_loss(monkeypatch, lambda call: 10.0 if call >= 7 else 1.0)  # 4 batches an epoch: patience 4
    run_id, result = execute(store, tiny_run(epochs=3), data)
    assert result.status == "diverged" and "stayed above 3x its starting value" in result.message
    assert "at epoch 3 step 10" in result.message, result.message


def test_the_divergence_watch_rules():
    watch = DivergenceWatch(batches_per_epoch=100)
    assert watch.patience == 20
    for _ in range(5):
        assert watch.check(2.3, 1.0, 3.0, 32) is None
    assert watch.reference == pytest.approx(2.3)
    assert all(watch.check(7.0, 1.0, 3.0, 32) is None for _ in range(19))
    assert "stayed above 3x" in watch.check(7.0, 1.0, 3.0, 32)
    flat = DivergenceWatch(batches_per_epoch=100, reference=2.3)  # resumed: the start comes from the state
    assert all(flat.check(2.3, 0.0, 5.0, 32) is None for _ in range(19))
    assert flat.check(2.3, 0.0, 5.0, 1) is None  # a batch of one image proves nothing
    assert "collapsed" in flat.check(2.3, 0.0, 5.0, 32)
    assert "went to nan" in DivergenceWatch(4).check(float("nan"), 0.0, 0.0, 32)


def test_a_run_that_learned_nothing_says_so_when_it_finishes(tmp_path):
    """Images that say nothing about their class (the same grey noise for all): the run finishes at chance
    on every CPU. (On learnable images a max LR of 5 ended at chance on one CPU and at 30% on another.)"""
    from tests.conftest import make_image_folder

    noise = make_image_folder(tmp_path / "noise", n_train=40, n_test=30, learnable=False)
    store = RunStore(tmp_path / "runs")
    run_id, result = execute(store, tiny_run(epochs=6, batch_size=16, max_lr=5.0), load_dataset(str(noise)))
    record = store.get(run_id)
    assert result.status == record.status == "finished" and len(record.epochs) == 6
    assert "learned nothing" in record.message and "try a lower max LR than 5, e.g. 0.5" in record.message
