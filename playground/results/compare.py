"""How runs differ: the settings that are not the same in every one of them, and a label per run that tells
runs of the same name apart."""
from __future__ import annotations

from collections import Counter

from ..runs.records import RunRecord

MISSING = "—"  # a setting one run's spec does not hold (an older spec, a shorter pipeline)


def run_labels(runs: list[RunRecord]) -> list[str]:
    """Each run's name, with its id where another of the runs has the same name."""
    names = Counter(r.name for r in runs)
    return [f"{r.name} · {r.id}" if names[r.name] > 1 else r.name for r in runs]


def _flat(value, path: str, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            _flat(v, f"{path}[{i}]", out)
    else:
        out[path] = value


def _readable(path: str) -> str:
    """net.blocks[1].layers[0].out reads as "net C2.1 out", as the Architect names layers."""
    if not path.startswith("net.blocks["):
        return path
    parts = path.removeprefix("net.blocks[").split("]", 1)
    block, rest = int(parts[0]) + 1, parts[1]
    if rest.startswith(".layers["):
        layer, field = rest.removeprefix(".layers[").split("]", 1)
        return f"net C{block}.{int(layer) + 1} {field.lstrip('.')}"
    return f"net C{block} {rest.lstrip('.')}"


def flat_settings(record: RunRecord) -> dict[str, object]:
    """A run's spec (net, augmentation, training, data) as readable setting names and plain values."""
    out: dict = {}
    _flat(record.spec, "", out)
    return {_readable(k): v for k, v in out.items()}


def settings_diff(runs: list[RunRecord]) -> list[dict]:
    """One row per setting whose value is not the same in every run (in the specs' order), with a column per
    run under its label; empty when the runs share every setting."""
    flats = [flat_settings(r) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    labels = run_labels(runs)
    rows = []
    for k in keys:
        values = [f.get(k, MISSING) for f in flats]
        if any(v != values[0] for v in values[1:]):
            rows.append({"setting": k, **{label: _shown(v) for label, v in zip(labels, values)}})
    return rows


def _shown(value) -> str:
    """A value as one table cell: the columns mix numbers, names and lists, so each is text."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)
