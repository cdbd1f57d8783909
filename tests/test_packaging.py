"""pyproject.toml declares what requirements.txt (the hosted platform's list) and requirements-dev.txt
list, so `pip install .` gives a package that imports; scripts/check_install.sh (run by .ci/run) installs it."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirements(name: str) -> list[str]:
    lines = (line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-r")]


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_package_declares_the_runtime_requirements():
    assert project()["dependencies"] == requirements("requirements.txt")


def test_the_dev_extra_is_the_dev_requirements():
    assert project()["optional-dependencies"]["dev"] == requirements("requirements-dev.txt")


def test_the_shipped_spaces_are_package_data():
    from playground.runs.space import SPACES_DIR

    assert SPACES_DIR.parent == ROOT / "playground" and sorted(SPACES_DIR.glob("*.json"))
