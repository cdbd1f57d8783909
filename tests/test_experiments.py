"""The spec files that docs/experiments.md cites must keep loading, so its commands stay replayable."""
from pathlib import Path

import pytest

from playground.training.analysis import analyze
from playground.specs.arch import Net
from playground.specs.augment import AugSpec
from playground.specs.config import TrainSpec
from playground.specs.presets import preset_net
from playground.specs.recipes import get_recipe

EXPERIMENTS = Path(__file__).resolve().parent.parent / "docs" / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.aug.json")), ids=lambda p: p.name)
def test_augmentation_files_load(path: Path) -> None:
    assert AugSpec.from_json(path.read_text()).transforms


def test_cited_architectures_keep_their_figures_and_rules() -> None:
    """docs/experiments.md and docs/sweeps.md state params and RF for each of these; every seed rule
    must hold, except for the distillation teacher: it is meant to be large and dense."""
    stated = {"record-r3.net.json": (198_272, 76, set()), "record-c4at8.net.json": (191_232, 64, set()),
              "record-v1.net.json": (191_232, 84, set()),
              "sweep-best.net.json": (149_824, 78, set()),
              "teacher-wide.net.json": (5_244_992, 106, {"params < 200k", "dilated + depthwise"})}
    assert {p.name for p in EXPERIMENTS.glob("*.net.json")} == set(stated)
    for name, (params, rf, failing) in stated.items():
        a = analyze(Net.from_json((EXPERIMENTS / name).read_text()), with_summary=False)
        assert (a.params, a.trace.rf) == (params, rf)
        assert {rule.name for rule in a.rules if not rule.passed} == failing, name


def test_the_first_record_recipe_stays_replayable() -> None:
    """record-v1.*.json are the 35-epoch recipe that docs/experiments.md starts from; the current
    record differs from it in exactly the three things that page names."""
    train = TrainSpec.from_json((EXPERIMENTS / "record-v1.train.json").read_text())
    aug = AugSpec.from_json((EXPERIMENTS / "record-v1.aug.json").read_text())
    assert (train.epochs, train.eval_every) == (35, 5)
    assert [t.name for t in aug.transforms] == ["HorizontalFlip", "RandomCrop"]
    new_aug, new_train = get_recipe("record").copy_specs()
    assert [t.name for t in new_aug.transforms] == ["HorizontalFlip", "RandomCrop", "CoarseDropout"]
    assert new_aug.transforms[:2] == aug.transforms and new_aug.transforms[2].params["fill"] == "mean"
    assert (new_train.epochs, new_train.eval_every) == (162, 10)
    new_train.epochs, new_train.eval_every = train.epochs, train.eval_every
    assert new_train == train
    assert Net.from_json((EXPERIMENTS / "record-v1.net.json").read_text()).blocks != preset_net("record").blocks
    assert all(b.skip_every == 2 for b in preset_net("record").blocks)


def test_the_readme_table_is_the_recipes_table() -> None:
    """The README's presets-and-results table is `presets --markdown`, generated from the recipes'
    Measured entries: a new measurement changes both or the test fails."""
    from playground.specs.recipes import RECIPES
    from playground.training.analysis import markdown_table

    readme = (EXPERIMENTS.parent.parent / "README.md").read_text()
    assert markdown_table() in readme
    assert all(r.measured.test_acc > 0 and r.measured.wall_s > 0 for r in RECIPES.values() if r.measured)
    assert all("not yet run here" in r.goal for r in RECIPES.values() if not r.measured)
