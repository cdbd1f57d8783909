"""The package's stages import one way only: base -> specs -> training -> runs -> results -> app.

Every import in the package is read from its source (module level and inside functions; only the
names under ``if TYPE_CHECKING:``, which never run, are left out), and the test fails on an import
from a later stage, on an import cycle between modules, and on streamlit outside the app layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "playground"
BASE = {"playground", "playground.errors", "playground.settings", "playground.atomic", "playground.faults"}
STAGES = ("specs", "training", "runs", "results")
APP = "app (ui/, app.py, cli, form, drafts)"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(package.rglob("*.py"))}


def layer(module: str) -> int:
    """0 for the base modules, 1.. for the stages in their order, then the app layer."""
    if module in BASE:
        return 0
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return 1 + STAGES.index(parts[1])
    return 1 + len(STAGES)


def layer_name(module: str) -> str:
    n = layer(module)
    return "base" if n == 0 else STAGES[n - 1] if n <= len(STAGES) else APP


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path`` that names a module of the package, or
    'streamlit'."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "streamlit":
                found.append(("streamlit", node.lineno))
            elif target.split(".")[0] == "playground":
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target != module:
                    found.append((target, node.lineno))
    return found


def graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    known = modules(package)
    return {m: imports(m, p, known) for m, p in known.items()}


def upward(g: dict[str, list[tuple[str, int]]]) -> list[str]:
    return [f"{m}:{line} imports {t} ({layer_name(m)} -> {layer_name(t)})"
            for m, deps in g.items() for t, line in deps if t != "streamlit" and layer(t) > layer(m)]


def cycles(g: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Each strongly connected set of two or more modules (Tarjan), sorted."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _ in g.get(v, []):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def streamlit_outside_app(g: dict[str, list[tuple[str, int]]]) -> list[str]:
    return [f"{m}:{line} imports streamlit" for m, deps in g.items() for t, line in deps
            if t == "streamlit" and layer(m) <= len(STAGES) or t == "streamlit" and m == "playground"]


def test_every_import_follows_the_order_of_the_stages():
    assert upward(graph()) == []


def test_no_modules_import_each_other():
    assert cycles(graph()) == []


def test_only_the_app_layer_imports_streamlit():
    assert streamlit_outside_app(graph()) == []


def test_the_package_docstring_states_the_order():
    import playground

    assert "specs -> training -> runs -> results -> app" in " ".join(playground.__doc__.split())


@pytest.mark.parametrize("source, expected", [
    ("from ..runs.store import RunStore\n", "upward"),
    ("def f():\n    from ..results import evaluate\n", "upward"),
    ("from . import trainer\n", "cycle"),  # builder <- trainer already
    ("import streamlit as st\n", "streamlit"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..runs.store import RunStore\n", None),
])
def test_the_checks_catch_what_they_look_for(tmp_path, source, expected):
    """A copy of the package with one import added to training/builder.py fails the check it should."""
    import shutil

    copy = tmp_path / "playground"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    builder = copy / "training" / "builder.py"
    builder.write_text(builder.read_text() + "\n" + source)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        g = graph(copy)
    finally:
        ROOT = saved
    found = {"upward": bool(upward(g)), "cycle": bool(cycles(g)), "streamlit": bool(streamlit_outside_app(g))}
    if expected is None:
        assert not any(found.values())
    else:
        assert found[expected]
        assert not found["streamlit"] or expected == "streamlit"
