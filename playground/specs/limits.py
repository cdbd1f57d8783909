"""What the playground agrees to build and train: every resource limit, in one place.

A spec is validated against these before anything is allocated, written or run, so a
spec that would need gigabytes or hours (a million input channels, 10,000 layers, a 512 px
input, a batch whose activations fill the machine) is refused with a message that names
the field, the value and the limit, with the estimate.

Three tiers. ``hosted`` (PLAYGROUND_HOSTED=1) keeps a demo that strangers share inside
about 1 GB; ``local`` is the default and fits every preset, recipe and experiment in the
repository; ``raised`` (PLAYGROUND_LIMITS=raised) is for a local user with a big machine,
and hosted mode ignores it. The table in docs/untrusted-input.md is printed from ``table()``.

``eval_macs`` caps an evaluation that runs in the process asking for it (the Results page: test
images x TTA views x MACs per image): on the hosted demo that process is the web server every
visitor shares, and flip + shift TTA multiplies the work by 18.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .. import settings
MIB = 2 ** 20
# Training keeps about this many floats per conv output element for the backward pass (the
# output, the norm's and activation's outputs, their gradients): measured 3.9-4.9x on the
# presets (CPU, fp32, the peak RSS of one forward and backward at batch 64).
ACT_FACTOR = 4


@dataclass(frozen=True)
class Limits:
    blocks: int  # C1..Cn
    layers: int  # in all blocks together
    channels: int  # a layer's output channels
    in_channels: int
    classes: int
    input_size: int  # px, square inputs
    kernel: int
    stride: int
    dilation: int
    padding: int
    params: int
    macs: int  # multiply-accumulates per image, forward
    act_mib: float  # activation memory per image kept for the backward pass (estimate)
    train_mib: float  # batch size x activation memory per image
    epochs: int
    batch_size: int
    transforms: int  # augmentation pipeline length
    teachers: int
    name_chars: int
    note_chars: int  # a run's note (its name is within name_chars)
    json_bytes: int  # a spec file, the JSON editor, a share link once inflated
    eval_macs: int  # one evaluation in the asking process (the app's Results page): images x TTA views x MACs
    run_minutes: int  # one start (or resume) of a training's worker, wall clock: then it stops, resumable
    kept_runs: int  # runs the app's store keeps: starting one past it deletes the oldest ended runs


TIERS: dict[str, Limits] = {
    "hosted": Limits(blocks=8, layers=40, channels=512, in_channels=3, classes=100, input_size=32, kernel=9,
                     stride=4, dilation=16, padding=16, params=2_000_000, macs=500_000_000, act_mib=24,
                     train_mib=320, epochs=100, batch_size=512, transforms=16, teachers=4, name_chars=80,
                     note_chars=500, json_bytes=200_000, eval_macs=2 * 10 ** 12, run_minutes=60,
                     kept_runs=100),
    "local": Limits(blocks=8, layers=64, channels=1024, in_channels=4, classes=1000, input_size=64, kernel=15,
                    stride=8, dilation=32, padding=32, params=20_000_000, macs=4_000_000_000, act_mib=256,
                    train_mib=12_288, epochs=1000, batch_size=4096, transforms=32, teachers=8, name_chars=80,
                    note_chars=500, json_bytes=1_000_000, eval_macs=10 ** 15, run_minutes=100_000,
                    kept_runs=10 ** 9),
    "raised": Limits(blocks=32, layers=512, channels=4096, in_channels=64, classes=100_000, input_size=512,
                     kernel=31, stride=32, dilation=256, padding=256, params=500_000_000, macs=200_000_000_000,
                     act_mib=4096, train_mib=262_144, epochs=100_000, batch_size=65_536, transforms=64,
                     teachers=32, name_chars=200, note_chars=2000, json_bytes=20_000_000, eval_macs=10 ** 18,
                     run_minutes=10_000_000, kept_runs=10 ** 9),
}


def tier() -> str:
    if settings.hosted():
        return "hosted"
    return settings.limits_tier()


def current() -> Limits:
    return TIERS[tier()]


def exceeded(what: str, value: float, lim: Limits, name: str, unit: str = "") -> str | None:
    """The one message shape for a limit: what, the value (or estimate), and the limit ``name`` of ``lim``."""
    limit = getattr(lim, name)
    if value <= limit:
        return None
    hint = " (PLAYGROUND_LIMITS=raised lifts it on your own machine)" if lim == TIERS["local"] else ""
    return f"{what} is {_fmt(value)}{unit}; the limit is {_fmt(limit)}{unit}{hint}"


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() or v >= 100 else f"{v:,.1f}"


def table() -> str:
    """The limits as a Markdown table (docs/untrusted-input.md shows it)."""
    names = list(TIERS)
    rows = [f"| limit | {' | '.join(names)} |", f"|---|{'---|' * len(names)}"]
    for f in fields(Limits):
        rows.append(f"| {f.name} | " + " | ".join(_fmt(getattr(TIERS[n], f.name)) for n in names) + " |")
    return "\n".join(rows)
