"""Augmentation spec: a registry of Albumentations transforms with parameter
schemas (from which the UI generates widgets), and the one function that
turns a spec into the pipeline the preview, the trainer and the exported
script all use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import math

import numpy as np

from . import limits as limits_
from . import serde

if TYPE_CHECKING:
    import albumentations as A

AUG_VERSION = 1


@dataclass(frozen=True)
class Param:
    """Schema of one parameter. ``kind``: float, int, bool, choice, int_range or float_range; a choice's
    ``labels`` say what each choice exports, and ``aliases`` map an old stored name to its current one."""

    name: str
    kind: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    help: str = ""
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()

    def label(self, choice: str) -> str:
        """What the page shows for ``choice``: its name and what it exports."""
        return dict(zip(self.choices, self.labels)).get(choice, choice)

    def check(self, value: Any) -> str | None:
        if self.kind == "bool":
            return None if isinstance(value, bool) else "expected true/false"
        if self.kind == "choice":
            return None if value in self.choices else f"choose one of {', '.join(self.choices)}"
        values = list(value) if self.kind.endswith("range") and isinstance(value, (list, tuple)) else [value]
        if self.kind.endswith("range") and len(values) != 2:
            return "expected [low, high]"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"expected a number, got {serde.short(v)}"
            if not math.isfinite(v):
                return f"expected a finite number, got {v!r}"
            if self.kind.startswith("int") and not float(v).is_integer():
                return f"expected an integer, got {v!r}"
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                return f"{v} is outside [{self.min}, {self.max}]"
        if self.kind.endswith("range") and values[0] > values[1]:
            return f"low {values[0]} is above high {values[1]}"
        return None


# A call is (Albumentations class name, kwargs, child calls); it both builds
# the transform and prints as the code that rebuilds it.
Call = tuple[str, dict, list]
Context = dict  # {"fill": (r, g, b) dataset mean on the 0-255 scale}


@dataclass(frozen=True)
class TransformDef:
    name: str
    help: str
    params: tuple[Param, ...]
    call: Callable[[dict, Context], Call]
    default_p: float = 0.5


def _border(name: str) -> int:
    import cv2  # here, not above: validating a spec needs neither OpenCV nor Albumentations (nor their torch)

    return {"reflect_101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT,
            "replicate": cv2.BORDER_REPLICATE}[name]


def _fill(choice: str, ctx: Context) -> Any:
    return {"mean": tuple(ctx["fill"]), "zero": 0, "random": "random"}[choice]


BORDER = Param("border", "choice", "reflect_101", choices=("reflect_101", "constant", "replicate"),
               labels=("reflect_101 (cv2.BORDER_REFLECT_101)", "constant (cv2.BORDER_CONSTANT)",
                       "replicate (cv2.BORDER_REPLICATE)"),
               aliases=(("reflect", "reflect_101"),),  # the earlier name, which old specs and share links carry
               help="how pixels moved in from outside the image are filled: reflect_101 mirrors the image "
                    "without repeating the edge pixel (dcb|abcd|cba), replicate repeats the edge pixel "
                    "(aaa|abcd|ddd), constant fills with the dataset mean")

REGISTRY: dict[str, TransformDef] = {t.name: t for t in [
    TransformDef("HorizontalFlip", "Mirror the image left-right.", (),
                 lambda p, c: ("HorizontalFlip", {}, [])),
    TransformDef(
        "Affine", "Shift, scale and rotate (replaces the deprecated ShiftScaleRotate).",
        (Param("shift", "float", 0.1, 0.0, 0.5, 0.01, "max shift as a fraction of the image side"),
         Param("scale", "float", 0.1, 0.0, 0.5, 0.01, "zoom range: 1 ± scale"),
         Param("rotate", "int", 15, 0, 180, 1, "max rotation in degrees"),
         BORDER),
        lambda p, c: ("Affine", dict(translate_percent=(-p["shift"], p["shift"]),
                                     scale=(1 - p["scale"], 1 + p["scale"]), keep_ratio=True,
                                     rotate=(-p["rotate"], p["rotate"]),
                                     border_mode=_border(p["border"]), fill=tuple(c["fill"])), [])),
    TransformDef(
        "CoarseDropout", "Cut out rectangular holes (Cutout), filled with the dataset mean by default.",
        (Param("holes", "int_range", (1, 1), 1, 8, 1, "number of holes"),
         Param("size", "int_range", (16, 16), 1, 32, 1, "hole side in pixels"),
         Param("fill", "choice", "mean", choices=("mean", "zero", "random"),
               labels=("mean (fill=(R, G, B): the dataset mean)", "zero (fill=0: black)",
                       "random (fill='random': noise)"),
               help="what fills each hole: the dataset mean colour, black, or random values in every pixel")),
        lambda p, c: ("CoarseDropout", dict(num_holes_range=tuple(p["holes"]), hole_height_range=tuple(p["size"]),
                                            hole_width_range=tuple(p["size"]), fill=_fill(p["fill"], c)), [])),
    TransformDef(
        "RandomCrop", "Pad, then crop a random 32×32 window (the classic CIFAR crop).",
        (Param("padding", "int", 4, 1, 16, 1, "pixels of padding on each side"), BORDER),
        lambda p, c: ("Sequential", {}, [
            ("PadIfNeeded", dict(min_height=32 + 2 * p["padding"], min_width=32 + 2 * p["padding"],
                                 border_mode=_border(p["border"]), fill=tuple(c["fill"]), p=1.0), []),
            ("RandomCrop", dict(height=32, width=32, p=1.0), [])]),
        default_p=1.0),
    TransformDef("ToGray", "Convert to grayscale (kept as 3 channels).", (),
                 lambda p, c: ("ToGray", dict(num_output_channels=3), []), default_p=0.1),
    TransformDef(
        "ColorJitter", "Random brightness, contrast, saturation and hue.",
        (Param("brightness", "float", 0.2, 0.0, 1.0, 0.05, "factor range 1 ± brightness"),
         Param("contrast", "float", 0.2, 0.0, 1.0, 0.05, "factor range 1 ± contrast"),
         Param("saturation", "float", 0.2, 0.0, 1.0, 0.05, "factor range 1 ± saturation"),
         Param("hue", "float", 0.05, 0.0, 0.5, 0.01, "hue shift range ± hue")),
        lambda p, c: ("ColorJitter", dict(brightness=(1 - p["brightness"], 1 + p["brightness"]),
                                          contrast=(1 - p["contrast"], 1 + p["contrast"]),
                                          saturation=(1 - p["saturation"], 1 + p["saturation"]),
                                          hue=(-p["hue"], p["hue"])), [])),
    TransformDef(
        "RandomBrightnessContrast", "Shift brightness and stretch contrast.",
        (Param("brightness", "float", 0.2, 0.0, 1.0, 0.05, "brightness shift limit"),
         Param("contrast", "float", 0.2, 0.0, 1.0, 0.05, "contrast change limit")),
        lambda p, c: ("RandomBrightnessContrast", dict(brightness_limit=(-p["brightness"], p["brightness"]),
                                                       contrast_limit=(-p["contrast"], p["contrast"])), [])),
]}


@dataclass
class TransformSpec:
    name: str
    p: float = 0.5
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        """A whole number written as 4.0 for an integer parameter is read as 4, as every spec's integer
        fields are: the validator accepts it, and NumPy's padding refused the float in mid-training. A
        choice's old name (``reflect``) is read as its current one, so old specs and share links load."""
        schema = {prm.name: prm for prm in REGISTRY[self.name].params} if self.name in REGISTRY else {}
        for key, value in self.params.items():
            if key in schema and schema[key].kind.startswith("int"):
                self.params[key] = [_whole(v) for v in value] if isinstance(value, list) else _whole(value)
            elif key in schema and isinstance(value, str):
                self.params[key] = dict(schema[key].aliases).get(value, value)


def _whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


@dataclass
class AugSpec(serde.JsonSpec):
    transforms: list[TransformSpec] = field(default_factory=list)
    version: int = AUG_VERSION

    SPEC_VERSION = AUG_VERSION

    @classmethod
    def _validated(cls, spec: "AugSpec") -> "AugSpec":
        return checked_aug(spec)


def make_transform(name: str, p: float | None = None, **params: Any) -> TransformSpec:
    """A transform with every parameter at its schema default unless given."""
    if name not in REGISTRY:
        raise serde.SpecError([f"unknown transform {serde.short(name)} (choose one of {', '.join(REGISTRY)})"])
    d = REGISTRY[name]
    values = {prm.name: params.get(prm.name, prm.default) for prm in d.params}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return TransformSpec(name, d.default_p if p is None else p, values)


def default_aug() -> AugSpec:
    """The seeds' pipeline: flip, shift-scale-rotate, one 16x16 hole filled with the mean."""
    return AugSpec([make_transform("HorizontalFlip", 0.5), make_transform("Affine", 0.5),
                    make_transform("CoarseDropout", 0.5)])


def validate_aug(spec: AugSpec, limits: limits_.Limits | None = None) -> list[str]:
    lim = limits or limits_.current()
    problems = []
    if spec.version != AUG_VERSION:
        problems.append(f"version: this playground reads augmentation spec version {AUG_VERSION}, got {spec.version}")
    if len(spec.transforms) > lim.transforms:
        return problems + [f"the pipeline has {len(spec.transforms)} transforms; the limit is {lim.transforms}"]
    for i, t in enumerate(spec.transforms):
        where = f"transform {i + 1} ({serde.short(t.name, 30)[1:-1]})"
        if t.name not in REGISTRY:
            problems.append(f"{where}: unknown transform (choose one of {', '.join(REGISTRY)})")
            continue
        if not (0.0 <= t.p <= 1.0):
            problems.append(f"{where}: p must be in [0, 1], got {t.p}")
        schema = {prm.name: prm for prm in REGISTRY[t.name].params}
        for key in t.params:
            if key not in schema:
                problems.append(f"{where}: unknown parameter {serde.short(key)}")
        for prm in schema.values():
            if prm.name not in t.params:
                problems.append(f"{where}: missing parameter {prm.name!r}")
            elif (msg := prm.check(t.params[prm.name])) is not None:
                problems.append(f"{where}: {prm.name}: {msg}")
    return problems


def checked_aug(spec: AugSpec) -> AugSpec:
    return serde.valid_or_raise(spec, validate_aug(spec))


def albumentations_calls(spec: AugSpec, mean: tuple[float, float, float]) -> list[Call]:
    """The spec as (class name, kwargs, children) calls: what both training paths build from."""
    ctx = {"fill": tuple(int(round(m * 255)) for m in mean)}
    calls = []
    for t in spec.transforms:
        params = {k: [x + 0 for x in v] if isinstance(v, list) else v + 0 if isinstance(v, float) else v
                  for k, v in t.params.items()}  # + 0: a negative zero would turn a range (-0.0, 0.0) upside down
        name, kwargs, children = REGISTRY[t.name].call(params, ctx)
        calls.append((name, {**kwargs, "p": t.p}, children))
    return calls


def instantiate(call: Call) -> A.BasicTransform:
    import albumentations as A

    name, kwargs, children = call
    if children:
        return getattr(A, name)([instantiate(c) for c in children], **kwargs)
    return getattr(A, name)(**kwargs)


def build_pipeline(spec: AugSpec, mean: tuple[float, float, float], seed: int | None = None,
                   replay: bool = False) -> A.Compose:
    """The spec as an A.Compose (or ReplayCompose, which records what each image drew)."""
    import albumentations as A

    checked_aug(spec)
    transforms = [instantiate(c) for c in albumentations_calls(spec, mean)]
    pipe = A.ReplayCompose(transforms) if replay else A.Compose(transforms)
    if seed is not None:
        seed_pipeline(pipe, seed)
    return pipe


def seed_pipeline(pipe: A.BaseCompose, seed: int) -> None:
    """Seed a Compose so that each transform has a random stream of its own.

    Albumentations 2.0 gives every transform of a seeded Compose the same seed, so two
    transforms that draw equally often make the same choices (each ToGray(p=0.3) came
    with a flip)."""
    pipe.set_random_seed(seed)
    for t, s in zip(pipe.transforms, np.random.SeedSequence(seed).generate_state(len(pipe.transforms))):
        t.set_random_seed(int(s))


def _code(call: Call, indent: int) -> str:
    name, kwargs, children = call
    pad = " " * indent
    args = [repr_arg(k, v) for k, v in kwargs.items()]
    if children:
        inner = ",\n".join(_code(c, indent + 4) for c in children)
        return f"{pad}A.{name}([\n{inner},\n{pad}], {', '.join(args)})"
    return f"{pad}A.{name}({', '.join(args)})"


def repr_arg(key: str, value: Any) -> str:
    if key == "border_mode":
        import cv2

        names = {cv2.BORDER_REFLECT_101: "cv2.BORDER_REFLECT_101", cv2.BORDER_CONSTANT: "cv2.BORDER_CONSTANT",
                 cv2.BORDER_REPLICATE: "cv2.BORDER_REPLICATE"}
        return f"{key}={names[value]}"
    if isinstance(value, float):
        value = round(value, 6)
    if isinstance(value, tuple):
        value = tuple(round(v, 6) if isinstance(v, float) else v for v in value)
    return f"{key}={value!r}"


def to_python(spec: AugSpec, mean: tuple[float, float, float]) -> str:
    """Readable code that rebuilds the same pipeline with plain Albumentations."""
    body = ",\n".join(_code(c, 4) for c in albumentations_calls(spec, mean))
    return ("import albumentations as A\nimport cv2\n\n"
            f"# dataset mean (0-1): {tuple(round(m, 4) for m in mean)}\n"
            f"train_transform = A.Compose([\n{body},\n])\n")


def draw_samples(images: np.ndarray, labels: np.ndarray, spec: AugSpec, mean: tuple[float, float, float], n: int,
                 seed: int, label: int | None = None) -> list[tuple[int, dict]]:
    """``n`` images (of class ``label``, or any) as (index, ReplayCompose output), picked and augmented
    from ``seed`` alone: the same seed draws the same samples."""
    idx = np.arange(len(labels)) if label is None else np.flatnonzero(labels == label)
    picks = np.random.default_rng(seed).choice(idx, size=min(n, len(idx)), replace=False)
    pipe = build_pipeline(spec, mean, seed=seed, replay=True)
    return [(int(i), pipe(image=images[i])) for i in picks]


def describe_replay(replay: dict) -> list[str]:
    """One line per transform of a ReplayCompose record: what was applied and with which draws, each
    named (a hole's and a crop's corners as x and y pixel ranges, a shift as (x right, y down) px)."""
    lines, pad = [], None
    for t in replay.get("transforms", []):
        name = t["__class_fullname__"].split(".")[-1]
        if not t.get("applied"):
            lines.append(f"{name}: skipped")
            continue
        params = t.get("params") or {}
        shown = {k: v for k, v in params.items() if k in ("angle", "rotate", "scale")}
        if isinstance(shown.get("scale"), dict) and len(set(shown["scale"].values())) == 1:
            shown["scale"] = next(iter(shown["scale"].values()))  # keep_ratio: one factor for both axes
        if name in AFFINE_RECORDS and (shift := affine_shift(params)) is not None:
            shown["shift"] = f"({_px(shift[0])}, {_px(shift[1])}) px"
        drawn = [f"{k}={_short(v)}" for k, v in shown.items()] + _named_draws(params)
        if "pad_left" in params:
            pad = params["pad_left"], params["pad_top"]
        if "crop_coords" in params and pad is not None:
            x1, y1 = params["crop_coords"][:2]
            drawn.append(f"shift=({_px(pad[0] - x1)}, {_px(pad[1] - y1)}) px")
        children = t.get("transforms")
        if children:
            lines += [f"{name} > {line}" for line in describe_replay({"transforms": children})]
        else:
            lines.append(f"{name}: " + (", ".join(drawn) or "applied"))
    return lines


def _named_draws(params: dict) -> list[str]:
    """The draws that a record keeps as bare numbers or tuples, each with its name and unit."""
    drawn = [f"hole {k}: {_span(box)}" for k, box in enumerate(np.asarray(params.get("holes", [])).tolist(), 1)]
    if "crop_coords" in params:
        drawn.append(f"window {_span(params['crop_coords'])} of the {params['shape'][1]}×{params['shape'][0]} "
                     "padded image")
    if "pad_left" in params:
        sides = [params[f"pad_{side}"] for side in ("top", "bottom", "left", "right")]
        drawn.append(f"pad={sides[0]} px on each side" if len(set(sides)) == 1
                     else "pad=(top {}, bottom {}, left {}, right {}) px".format(*sides))
    drawn += [f"{k}=×{_short(params[k])}" for k in ("brightness", "contrast", "saturation")
              if k in params]  # ColorJitter: factors
    if "hue" in params:
        drawn.append(f"hue={params['hue'] * 360:+.3g}°")
    if "alpha" in params and "beta" in params:  # RandomBrightnessContrast
        drawn += [f"contrast=×{_short(params['alpha'])}", f"brightness={params['beta']:+.3g} (of 255)"]
    return drawn


def _span(box) -> str:
    """A box (x1, y1, x2, y2), the ends excluded, as the pixels it covers: x 3–18, y 8–23 (16×16 px)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return f"x {x1}–{x2 - 1}, y {y1}–{y2 - 1} ({x2 - x1}×{y2 - y1} px)"


AFFINE_RECORDS = ("Affine", "ShiftScaleRotate")  # ShiftScaleRotate is an Affine in Albumentations 2


def affine_shift(params: dict) -> tuple[float, float] | None:
    """The shift (x right, y down, in px) that an Affine record applied, or None if the record has no matrix.

    Albumentations 2 records the draw as a 3x3 matrix, not a translate entry: M = C·T·L·C⁻¹, with L the
    scale-rotate-shear part, T the translation and C a move to the image centre c. So M's last column is
    t + c − L·c, and t = M[:2, 2] − c + L·c."""
    matrix, shape = params.get("matrix"), params.get("shape") or params.get("output_shape")
    if matrix is None or shape is None or len(shape) < 2:
        return None
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        return None
    height, width = shape[:2]
    centre = np.array([width / 2 - 0.5, height / 2 - 0.5])  # albumentations' geometric center()
    tx, ty = m[:2, 2] - centre + m[:2, :2] @ centre
    return float(tx), float(ty)


def _px(v: float) -> str:
    """A shift in px, signed, to 0.1 px (whole pixels, as Albumentations draws them, without a decimal)."""
    v = round(v, 1) + 0.0  # + 0.0: no "-0"
    return f"{v:+.0f}" if v.is_integer() else f"{v:+.1f}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, np.ndarray):
        return str(v.tolist())
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)
