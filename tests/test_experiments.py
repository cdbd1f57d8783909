"""The spec files that the README's experiments cite must keep loading, so their commands stay replayable."""
from pathlib import Path

import pytest

from playground.analysis import analyze
from playground.arch import Net
from playground.augment import AugSpec

EXPERIMENTS = Path(__file__).resolve().parent.parent / "docs" / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.aug.json")), ids=lambda p: p.name)
def test_augmentation_files_load(path: Path) -> None:
    assert AugSpec.from_json(path.read_text()).transforms


def test_cited_architectures_keep_their_figures_and_rules() -> None:
    """The README states params and RF for each of these; every seed rule must hold."""
    stated = {"record-r3.net.json": (198_272, 76), "record-c4at8.net.json": (191_232, 64),
              "record-res.net.json": (193_360, 106)}
    assert {p.name for p in EXPERIMENTS.glob("*.net.json")} == set(stated)
    for name, (params, rf) in stated.items():
        a = analyze(Net.from_json((EXPERIMENTS / name).read_text()), with_summary=False)
        assert (a.params, a.trace.rf) == (params, rf)
        assert all(rule.passed for rule in a.rules), [r.name for r in a.rules if not r.passed]
