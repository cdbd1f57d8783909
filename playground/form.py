"""The Train page's form as a training spec: its widget keys, the bounds its widgets are drawn with, and
the conversions both ways.

Three places turn one into the other: the form's Start button (values to a TrainSpec, which the launcher
validates), Load recipe (a recipe's TrainSpec to values) and the visitor's draft (values saved as a TrainSpec
through its JSON round trip; restored through its types, then fitted to the widgets: a form is a working
copy, like the Architect's net, and may be one that Start refuses). Plain data, nothing of Streamlit: the
page draws the widgets with these options and bounds, so a restored value that a widget cannot show is
left out rather than failing the widget and the page.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from .specs import limits
from .specs.config import DEVICES, OPTIMIZERS, SCHEDULES, TrainSpec

# widget key: the TrainSpec field it sets (the train subset is apart: 0 on the form is None in the spec)
FIELDS = {"t_epochs": "epochs", "t_batch": "batch_size", "t_opt": "optimizer", "t_lr": "max_lr",
          "t_sched": "schedule", "t_ls": "label_smoothing", "t_device": "device", "t_tta": "tta",
          "t_shift": "tta_shift", "t_eval": "eval_every", "t_bf16": "bf16", "t_ema": "ema",
          "t_altflip": "alternate_flip", "t_whiten": "whiten", "t_fixbn": "fixed_bn_scale", "t_lowres": "low_res",
          "t_lowres_ep": "low_res_epochs", "t_teachers": "teachers"}
# Streamlit forgets a widget's value once a page without that widget has run (and, with the live view's
# fragment rerunning, even a value written back on every run is lost), so the page keeps a copy of these
# under a key of its own (ui/widget_memory.py). Buttons are not among them.
KEPT = ("t_recipe", "t_subset", *FIELDS)

BATCHES = (32, 64, 128, 256, 512)
SHIFTS = range(5)
CHOICES = {"t_batch": BATCHES, "t_opt": OPTIMIZERS, "t_sched": SCHEDULES, "t_device": DEVICES, "t_shift": SHIFTS}
_FIXED = {"t_lr": (1e-5, 5.0), "t_ls": (0.0, 0.3), "t_ema": (0.0, 0.9999), "t_eval": (1, 50)}
# the values a new form starts with; the page writes them to the widgets' keys before drawing them (a widget
# drawn with a default value whose key is also set through Session State makes Streamlit log a warning)
DEFAULTS = {"t_subset": 2000, "t_epochs": 2, "t_batch": 128, "t_lr": 0.05, "t_ls": 0.1, "t_ema": 0.0, "t_eval": 1,
            "t_lowres": 0, "t_lowres_ep": 0}
_CASTS = {"ema": float, "eval_every": int, "low_res": int, "low_res_epochs": int, "max_lr": float,
          "label_smoothing": float, "epochs": int}


def spec(values: dict[str, Any], base: TrainSpec | None = None) -> TrainSpec:
    """The TrainSpec the form's ``values`` describe, over ``base`` (the loaded recipe's: seed-001's 30%
    warm-up has no widget, and a run started from the loaded recipe trained with the default 20%), else
    the defaults. Unchecked: the launcher validates what it starts."""
    fields = {f: _CASTS.get(f, lambda v: v)(values[k]) for k, f in FIELDS.items() if k in values}
    return replace(base or TrainSpec(), **fields, train_subset=int(values.get("t_subset") or 0) or None)


def values(train: TrainSpec) -> dict[str, Any]:
    """The form's values for ``train``, each one its widget can show (one it cannot is left out, and the
    widget keeps what it had). ``train`` needs only the right types: a form as a visitor left it may be
    refused at Start (low-res epochs that a shortened run cannot hold) and is still theirs to correct."""
    out = {k: getattr(train, f) for k, f in FIELDS.items()} | {"t_subset": train.train_subset or 0}
    return {k: v for k, v in out.items() if fits(k, v)}


def fits(key: str, value: Any) -> bool:
    """Whether the widget ``key`` can show ``value`` (of the field's type): a value outside a widget's
    options or bounds fails the widget, and with it the page. The subset's highest and the teachers, which
    depend on the data and the store, are fitted by the page (widget_memory.fit_kept_values)."""
    if key in CHOICES:
        return value in CHOICES[key]
    if key == "t_subset":
        return value >= 0
    low, high = bounds(key) if key in (*_FIXED, *_LIMITED) else (None, None)
    return low is None or low <= value <= high


_LIMITED = ("t_epochs", "t_lowres_ep", "t_lowres")


def bounds(key: str) -> tuple:
    """(lowest, highest) of a number widget as the page draws it: the epoch counts and the low-res size stop
    at this server's limits, so a widget never offers what Start would refuse."""
    lim = limits.current()
    return {"t_epochs": (1, lim.epochs), "t_lowres_ep": (0, lim.epochs), "t_lowres": (0, lim.input_size)}.get(
        key) or _FIXED[key]


def batches(most: int) -> tuple[int, ...]:
    """The batch sizes the form offers when ``most`` is the largest this net and server allow."""
    return tuple(b for b in BATCHES if b <= most) or BATCHES[:1]


def changes(current: dict[str, Any], train: TrainSpec) -> list[str]:
    """What loading ``train`` would change on the form holding ``current``, each as "field old → new"
    (the device and the teachers stay as the visitor set them)."""
    new = values(train)
    return [f"{FIELDS.get(k, 'train_subset')} {_shown(k, current[k])} → {_shown(k, v)}" for k, v in new.items()
            if k not in ("t_device", "t_teachers") and current.get(k) is not None and current[k] != v]


def _shown(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "all" if key == "t_subset" and not value else f"{value:g}" if isinstance(value, float) else str(value)

