"""Each seed preset has a recipe that follows what the seed's README states about its training."""
import pytest

from playground.specs.presets import PRESETS
from playground.specs.recipes import RECIPES, get_recipe
from playground.training.optim import lr_factor

# seed-001's training log: the learning rate printed at the start of epochs 71 to 80
SEED_001_LOGGED_LR = {71: 0.015324502257075004, 72: 0.012474937988473146, 73: 0.009900761204661693,
                      74: 0.007610071218156189, 75: 0.005610075387127873, 76: 0.003907066438388321,
                      77: 0.0025064026681429217, 78: 0.0014124910828085392, 79: 0.0006287735329409451,
                      80: 0.00015771588389959499}


def test_every_seed_preset_has_a_recipe():
    seeds = {p for p in PRESETS if p.startswith("seed-")}
    assert seeds == {r.preset for r in RECIPES.values() if r.preset.startswith("seed-")}


def test_seed_001_recipe_replays_the_learning_rates_of_its_log():
    """The seed logs its LR per epoch; the recipe's schedule must give the same numbers at the same
    points of training (to 0.5%), whatever the steps per epoch (782 there, 704 on 45k images)."""
    t = get_recipe("seed-001").train
    assert (t.epochs, t.batch_size, t.optimizer) == (80, 64, "sgd")
    for steps_per_epoch in (782, 704):
        total = t.epochs * steps_per_epoch
        for epoch, logged in SEED_001_LOGGED_LR.items():
            lr = t.max_lr * lr_factor(t.schedule, (epoch - 1) * steps_per_epoch, total, t.warmup)
            assert lr == pytest.approx(logged, rel=5e-3), (steps_per_epoch, epoch)


def test_seed_003_recipe_keeps_its_stated_epochs_batch_and_transforms():
    """30 epochs of 391 batches (batch 128); Cutout, flip and affine transforms; no label smoothing or TTA."""
    r = get_recipe("seed-003")
    assert (r.train.epochs, r.train.batch_size, r.train.label_smoothing, r.train.tta) == (30, 128, 0.0, False)
    assert [x.name for x in r.aug.transforms] == ["HorizontalFlip", "Affine", "CoarseDropout"]


@pytest.mark.parametrize("axis", ["params", "macs", "minutes"])
def test_sweep_references_show_measured_recipes_and_the_other_seeds_as_reported(axis):
    """The sweep page's reference points: a measured recipe at its accuracy; a seed whose recipe is not
    measured yet at its reported accuracy (not on the minutes axis: no wall time)."""
    from playground.runs.sweep import references

    names = {r["name"] for r in references(axis)}
    measured = [r for r in RECIPES.values() if r.measured]
    assert {n for n in names if " recipe (" in n} == {f"{r.name} recipe ({r.measured.where})" for r in measured}
    unmeasured_seeds = {r.preset for r in RECIPES.values() if not r.measured and PRESETS[r.preset].reported_accuracy}
    assert {n for n in names if n.endswith("(reported)")} == (
        set() if axis == "minutes" else {f"{p} (reported)" for p in unmeasured_seeds})
