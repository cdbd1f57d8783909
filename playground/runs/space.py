"""Search spaces: the JSON files a sweep reads, checked key by key, and the run spec of one trial.

A space file holds a base run (a preset or recipe, with optional ``train`` overrides) and
distributions over paths into the run spec, e.g. ``"train.max_lr": {"float": [0.02, 0.4],
"log": true}``, ``"net.blocks.1.layers.*.out": {"int": [32, 128], "step": 16}`` (``*`` sets
every layer of the block), ``"net.blocks.2.depth": {"int": [1, 3]}`` (repeat or drop the block's
last conv layers; pools stay), ``"net.blocks.0.skip": {"choice": [true, false]}``. ``objectives`` is
``["accuracy"]`` (with a parameter budget and the seed rules as constraints), or two:
``["accuracy", "params"]``, ``["accuracy", "minutes"]`` or ``["accuracy", "macs"]``.

A file goes through ``space_from_dict`` (one line naming the key for anything wrong); a trial's
values are written into the base by ``apply`` and the result goes through the one door
(``check_trial``: the validator, its limits, the data, the budget and the rules), so an invalid
trial is pruned with its reason and never run.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..specs.config import RunSpec, data_problems, low_res_share
from ..specs.geometry import trace
from ..specs.limits import current
from ..specs.presets import preset_net
from ..specs.recipes import get_recipe
from ..specs.serde import SpecError, parse_json, read_spec_file, short

OBJECTIVES = (("accuracy",), ("accuracy", "params"), ("accuracy", "minutes"), ("accuracy", "macs"))
PRUNERS = ("median", "hyperband", "none")
KINDS = ("float", "int", "choice")


@dataclass
class Space:
    name: str
    base: dict  # {"preset": NAME} or {"recipe": NAME}; optional "train" overrides
    params: dict[str, dict]
    objectives: tuple[str, ...] = ("accuracy",)
    max_params: int | None = None
    rules: bool = False  # the seed assignment's rules (RF > 44, dilated + depthwise, GAP, C1C2C3C4O)
    description: str = ""
    pruner: str = "median"  # stops poor single-objective trials early; Optuna prunes no multi-objective study


SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"  # package data: found from an installed package too


def shipped_spaces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SPACES_DIR.glob("*.json"))}


def space_path(name_or_path: str) -> Path:
    """A shipped space's file by its name (``fastest-to-85``), else the path as given."""
    return shipped_spaces().get(name_or_path, Path(name_or_path))


def load_space(path: str | Path) -> Space:
    """A space file, checked key by key; SpecError names the key (one line)."""
    path, raw = Path(path), read_spec_file(path)
    try:
        data = parse_json(raw)
    except SpecError as e:
        raise SpecError([f"{path.name}: {p}" for p in e.problems]) from None
    return space_from_dict(data, path.name)


MAX_PARAMS_IN_SPACE = 64  # distributions in one space
MAX_CHOICES = 64
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.#+-]{0,79}")


def check_study_name(name: str) -> str:
    """A study name is a label and a file name part: letters, digits, space and ``_.#+-``, 1..80."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise SpecError([f"study name {short(name, 40)}: use 1 to 80 letters, digits, spaces or _.#+- "
                         "(starting with a letter or digit)"])
    return name


def with_train(data: Any, **train: int) -> Any:
    """Parsed space JSON with these fields set in its base's training overrides (the Sweep form's train subset
    and epochs), for ``space_from_dict`` to check; anything but an object with an object base is left as it is."""
    if isinstance(data, dict) and isinstance(data.get("base", {}), dict) and train:
        base = dict(data.get("base", {"preset": "fast"}))
        base["train"] = {**(base["train"] if isinstance(base.get("train"), dict) else {}), **train}
        return {**data, "base": base}
    return data


def space_from_dict(data: Any, where: str = "space") -> Space:
    """A space from parsed JSON: every key checked, the base resolved and validated, each distribution
    bounded (Optuna's own errors would otherwise surface mid-sweep as tracebacks)."""
    def bad(key: str, why: str) -> SpecError:
        return SpecError([f"{where}: {short(key, 80)[1:-1]}: {why}"])

    if not isinstance(data, dict):
        raise bad("(top)", "expected an object")
    known = {"name", "description", "base", "params", "objectives", "max_params", "rules", "pruner"}
    if unknown := sorted(set(data) - known):
        raise bad(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    base = data.get("base", {"preset": "fast"})
    if (not isinstance(base, dict) or len({"preset", "recipe"} & set(base)) != 1
            or set(base) - {"preset", "recipe", "train"}
            or not isinstance(base.get("preset", base.get("recipe")), str)):
        raise bad("base", 'expected {"preset": NAME} or {"recipe": NAME}, with an optional "train" object')
    if not isinstance(base.get("train", {}), dict):
        raise bad("base.train", "expected an object of training settings")
    objectives = data.get("objectives", ["accuracy"])
    if not isinstance(objectives, list) or tuple(objectives) not in OBJECTIVES:
        raise bad("objectives", f"choose one of {', '.join(json.dumps(list(o)) for o in OBJECTIVES)}")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise bad("params", "expected an object of path: distribution")
    if len(params) > MAX_PARAMS_IN_SPACE:
        raise bad("params", f"{len(params)} distributions; at most {MAX_PARAMS_IN_SPACE}")
    for key, dist in params.items():
        check_distribution(key, dist, bad)
    max_params = data.get("max_params")
    if max_params is not None and (not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1):
        raise bad("max_params", "expected a positive whole number")
    pruner = data.get("pruner", "median")
    if not isinstance(pruner, str) or pruner not in PRUNERS:
        raise bad("pruner", f"choose one of {', '.join(PRUNERS)}")
    if not isinstance(data.get("rules", False), bool):
        raise bad("rules", "expected true or false")
    name = data.get("name", Path(where).stem)
    try:
        check_study_name(name)
    except SpecError as e:
        raise bad("name", e.problems[0]) from None
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise bad("description", "expected text of at most 2,000 characters")
    space = Space(name, base, params, tuple(objectives), max_params, data.get("rules", False), description, pruner)
    try:
        RunSpec.from_dict(base := base_run(space))  # the base itself must exist and be a valid run
    except SpecError as e:
        raise bad("base", e.problems[0].removeprefix("base: ")) from None
    for key, dist in params.items():  # a path the base does not have would prune every trial, and train none
        kind = next(k for k in KINDS if k in dist)
        try:
            apply(base, {key: dist[kind][0]})
        except SpecError as e:
            raise SpecError([f"{where}: {e.problems[0]}"]) from None
    return space


def check_distribution(key: str, dist: Any, bad) -> None:
    """One ``path: distribution`` entry: a path into net., aug. or train., and a bounded distribution."""
    if not isinstance(key, str) or not key or len(key) > 120 or key.split(".")[0] not in ("net", "aug", "train"):
        raise bad(f"params.{key}", "a path starts with net., aug. or train. (at most 120 characters)")
    if not isinstance(dist, dict) or len(set(dist) & set(KINDS)) != 1 or set(dist) - {*KINDS, "log", "step"}:
        raise bad(f"params.{key}", f"expected one of {', '.join(KINDS)} (with log or step)")
    kind = next(k for k in KINDS if k in dist)
    values = dist[kind]
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if kind == "choice":
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_CHOICES:
            raise bad(f"params.{key}.choice", f"expected a list of 1 to {MAX_CHOICES} values")
        if not all(v is None or isinstance(v, (bool, str)) or numeric(v) for v in values) or \
                any(isinstance(v, str) and len(v) > 80 for v in values):
            raise bad(f"params.{key}.choice", "values must be numbers, true/false, null or short text")
    elif (not isinstance(values, list) or len(values) != 2 or not all(numeric(v) for v in values)
          or values[0] > values[1] or (kind == "int" and not all(float(v).is_integer() for v in values))):
        raise bad(f"params.{key}.{kind}", "expected [low, high] with low <= high")
    if kind in ("int", "float") and not all(abs(v) <= 10**9 for v in values):  # Optuna overflowed on ±1e308
        raise bad(f"params.{key}.{kind}", "the range must lie within ±1,000,000,000")
    if key.endswith(".depth") and (kind != "int" or values[0] < 1 or values[1] > current().layers):
        raise bad(f"params.{key}", f"a block's depth is an int range within 1..{current().layers}")
    if "log" in dist and (not isinstance(dist["log"], bool) or (dist["log"] and (kind == "choice" or values[0] <= 0))):
        raise bad(f"params.{key}.log", "a log scale needs a positive numeric range")
    if "step" in dist:
        step = dist["step"]
        if kind != "int" or not isinstance(step, int) or isinstance(step, bool) or step < 1 or dist.get("log"):
            raise bad(f"params.{key}.step", "a step is a positive whole number, for an int range without log")


def base_run(space: Space) -> dict:
    """The base run spec as a plain dict, which the trial's values are written into."""
    try:
        if "recipe" in space.base:
            recipe = get_recipe(space.base["recipe"])
            aug, train = recipe.copy_specs()
            run = RunSpec(preset_net(recipe.preset), aug, train)
        else:
            run = RunSpec(preset_net(space.base["preset"]))
    except KeyError as e:
        raise SpecError([f"base: {e.args[0]}"]) from None
    spec = run.to_dict()
    planned = spec["train"]
    overrides = space.base.get("train", {})
    spec["train"] = {**planned, **overrides}
    _keep_low_res_share(spec["train"], planned, "epochs" in overrides and "low_res_epochs" not in overrides)
    return spec


def _keep_low_res_share(train: Any, planned: dict, epochs_only: bool) -> None:
    """Where the epochs changed but not the low-res epochs (``epochs_only``), ``train`` keeps ``planned``'s
    share of low-res epochs (``fast``'s 8 of 20 become 2 of 6), so a trial of fewer epochs than the
    planned low-res ones is still a valid run."""
    if epochs_only and isinstance(train, dict):
        train["low_res"], train["low_res_epochs"] = low_res_share(
            train.get("low_res"), planned.get("low_res_epochs"), planned.get("epochs"), train.get("epochs"))


def sample(trial, space: Space) -> dict[str, Any]:
    """The trial's value for every path of the space."""
    values = {}
    for key, dist in space.params.items():
        if "choice" in dist:
            values[key] = trial.suggest_categorical(key, dist["choice"])
        elif "int" in dist:
            low, high = (int(v) for v in dist["int"])
            values[key] = trial.suggest_int(key, low, high, step=int(dist.get("step", 1)), log=bool(dist.get("log")))
        else:
            low, high = dist["float"]
            values[key] = trial.suggest_float(key, low, high, log=bool(dist.get("log")))
    return values


def trial_spec(space: Space, values: dict[str, Any]) -> dict:
    """The base run with the trial's values; a searched epoch count keeps the base's share of low-res
    epochs unless the space searches the low-res epochs too."""
    base = base_run(space)
    spec = apply(base, values)
    _keep_low_res_share(spec.get("train"), base["train"], "train.epochs" in values and
                        "train.low_res_epochs" not in values)
    return spec


def apply(spec: dict, values: dict[str, Any]) -> dict:
    """``spec`` with each path set; ``*`` sets every item of a list, ``depth`` resizes a block."""
    spec = copy.deepcopy(spec)
    for key, value in sorted(values.items(), key=lambda kv: not kv[0].endswith(".depth")):  # depth first
        parts = key.split(".")
        if parts[-1] == "depth":  # the number of conv layers; pools stay where they are
            layers = _child(_walk(spec, parts[:-1], key), "layers", key)
            if not isinstance(layers, list) or not all(isinstance(x, dict) and isinstance(x.get("kind"), str)
                                                       for x in layers):
                raise SpecError([f"params.{key}: depth is a block's (net.blocks.N.depth)"])
            convs = [i for i, layer in enumerate(layers) if not layer["kind"].endswith("pool")]
            if not convs or value < 1:
                raise SpecError([f"params.{key}: a block needs at least one conv layer"])
            last = convs[-1]
            if value >= len(convs):
                layers[last + 1:last + 1] = [copy.deepcopy(layers[last]) for _ in range(value - len(convs))]
            else:
                for i in reversed(convs[value:]):
                    del layers[i]
            continue
        targets = [spec]
        for part in parts[:-1]:
            targets = [t for item in targets for t in (_every(item, key) if part == "*" else [_child(item, part, key)])]
        for target in targets:
            if isinstance(target, dict):
                if parts[-1] not in target and parts[0] != "aug":  # an augmentation's unset parameter may be set
                    _child(target, parts[-1], key)  # a misspelt field: refused, not added
                target[parts[-1]] = value
            else:
                _child(target, parts[-1], key)  # the item must exist: a path never grows a list
                target[int(parts[-1])] = value
    return spec


def _every(item: Any, key: str) -> list:
    if not isinstance(item, list):
        raise SpecError([f"params.{key}: '*' stands for every item of a list, and the base spec has none there"])
    return item


def _child(item: Any, part: str, key: str) -> Any:
    try:
        if isinstance(item, list):
            if not part.isdigit():
                raise ValueError(part)
            return item[int(part)]
        if isinstance(item, dict):
            return item[part]
    except (KeyError, IndexError, ValueError):
        pass
    raise SpecError([f"params.{key}: the base spec has no {short(part, 40)} there"])


def _walk(spec: dict, parts: list[str], key: str) -> Any:
    for part in parts:
        spec = _child(spec, part, key)
    return spec


def check_trial(space: Space, spec: dict, classes: list[str], image_shape: tuple[int, ...]) -> RunSpec:
    """The trial's run through the one door, then the space's constraints; SpecError says why not."""
    run = RunSpec.from_dict(spec)
    if problems := data_problems(run.net, classes, image_shape):
        raise SpecError(problems)
    t = trace(run.net)
    if space.max_params is not None and t.params > space.max_params:
        raise SpecError([f"{t.params:,} params: over the {space.max_params:,} budget"])
    from ..training.analysis import check_rules  # torchinfo and torch: a space file is checked without them

    if space.rules and (broken := [r.name for r in check_rules(run.net, t) if not r.passed]):
        raise SpecError([f"breaks the rules: {', '.join(broken)}"])
    return run
