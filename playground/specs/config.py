"""Training spec and the run bundle (architecture + augmentation + training + data).

The bundle is what a saved run, the CLI, the share link and the exported
script all carry, so a run can always be reproduced from its record.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from . import limits as limits_
from . import serde
from .arch import Net
from .augment import AugSpec, default_aug, validate_aug
from .geometry import trace
from .ids import is_run_id
from .limits import Limits

TRAIN_VERSION = 1
MAX_SEED = 2 ** 32 - 1
MAX_SUBSET = 100_000_000
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
MIN_LOW_RES = 8  # px: below it a CIFAR image keeps too little to learn from


@dataclass
class TrainSpec(serde.JsonSpec):
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"  # SGD uses nesterov momentum
    schedule: str = "onecycle"
    max_lr: float = 0.2
    warmup: float = 0.2  # fraction of steps spent warming up (onecycle, cosine)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    train_subset: int | None = None
    test_subset: int | None = None
    tta: bool = False  # flip test-time augmentation at evaluation
    alternate_flip: bool = False  # the pipeline's HorizontalFlip draws once per image, then alternates each epoch
    whiten: bool = False  # the first conv starts as a frozen whitening of the training patches (airbench)
    fixed_bn_scale: bool = False  # every BatchNorm's scale stays 1 and only its shift learns (airbench)
    tta_shift: int = 0  # the last epoch's test also averages the views moved this many px (3x3 grid); 0: off
    ema: float = 0.0  # EMA decay of the weights; 0 turns it off
    low_res: int = 0  # progressive resizing: the first low_res_epochs train on images scaled to this many px
    low_res_epochs: int = 0  # (0 and 0: off); the later epochs and every test use the full size
    bf16: bool = False  # bf16 autocast where the CPU has bf16 matrix units (AMX, AVX512-BF16); else fp32
    loader_threads: int = 1  # 0: augment inline; 1: augment the next batch in a background thread
    eval_every: int = 1  # test every N epochs and always after the last (a test pass costs ~5% of a CPU epoch)
    teachers: list[str] = field(default_factory=list)  # finished run ids to distil from (same store, same data)
    distill_weight: float = 0.9  # share of the loss that is the teachers' soft targets
    distill_temperature: float = 4.0
    version: int = TRAIN_VERSION

    SPEC_VERSION = TRAIN_VERSION

    @classmethod
    def _validated(cls, spec: "TrainSpec") -> "TrainSpec":
        return serde.valid_or_raise(spec, validate_train(spec))


def validate_train(t: TrainSpec, limits: Limits | None = None) -> list[str]:
    lim = limits or limits_.current()
    p = []
    if t.version != TRAIN_VERSION:
        p.append(f"version: this playground reads training spec version {TRAIN_VERSION}, got {t.version}")
    if not (1 <= t.epochs <= lim.epochs):
        p.append(f"epochs must be between 1 and {lim.epochs}, got {t.epochs}")
    if not (2 <= t.batch_size <= lim.batch_size):  # BatchNorm cannot train on one image with a 1×1 map
        p.append(f"batch size must be between 2 and {lim.batch_size}, got {t.batch_size}")
    if not (0 <= t.seed <= MAX_SEED):
        p.append(f"seed must be between 0 and {MAX_SEED} (2^32 - 1), got {serde.short(t.seed)}")
    if not (1 <= t.eval_every <= 1000):
        p.append(f"eval_every must be between 1 and 1000 epochs, got {t.eval_every}")
    if t.optimizer not in OPTIMIZERS:
        p.append(f"unknown optimizer {serde.short(t.optimizer)} (choose one of {', '.join(OPTIMIZERS)})")
    if t.schedule not in SCHEDULES:
        p.append(f"unknown schedule {serde.short(t.schedule)} (choose one of {', '.join(SCHEDULES)})")
    if not (0 < t.max_lr <= 10):
        p.append(f"max LR must be in (0, 10], got {t.max_lr}")
    if not (0 <= t.warmup < 1):
        p.append(f"warmup must be a fraction in [0, 1), got {t.warmup}")
    if not (0 <= t.momentum < 1):
        p.append(f"momentum must be in [0, 1), got {t.momentum}")
    if not (0 <= t.weight_decay < 1):
        p.append(f"weight decay must be in [0, 1), got {t.weight_decay}")
    if not (0 <= t.label_smoothing < 1):
        p.append(f"label smoothing must be in [0, 1), got {t.label_smoothing}")
    if t.device not in DEVICES:
        p.append(f"unknown device {serde.short(t.device)} (choose one of {', '.join(DEVICES)})")
    for name, least in (("train_subset", 2), ("test_subset", 1)):  # training batches need 2 images (above)
        v = getattr(t, name)
        if v is not None and not (least <= v <= MAX_SUBSET):
            p.append(f"{name.replace('_', ' ')} must be between {least} and {MAX_SUBSET:,} images, "
                     f"got {serde.short(v)}")
    if not (0 <= t.tta_shift <= 4):
        p.append(f"TTA shift must be between 0 and 4 px, got {t.tta_shift}")
    if not (0 <= t.ema < 1):
        p.append(f"EMA decay must be in [0, 1), got {t.ema}")
    # each mistake said once: a bad epoch count (above) or low-res size is not blamed on the pairing too
    if not (t.low_res == 0 or MIN_LOW_RES <= t.low_res <= lim.input_size):
        p.append(f"progressive resizing: the low-res size must be between {MIN_LOW_RES} and {lim.input_size} px "
                 f"(or 0 for off), got {serde.short(t.low_res)}")
    elif t.low_res_epochs < 0 or (t.low_res_epochs > 0) != (t.low_res > 0) or 0 < t.epochs <= t.low_res_epochs:
        p.append(f"progressive resizing: low-res epochs must be set with a low-res size and fewer than the "
                 f"{t.epochs} epochs (the last ones train at full size), got {serde.short(t.low_res_epochs)} at "
                 f"{serde.short(t.low_res)} px; set both to 0 to train at full size throughout")
    if not (0 <= t.distill_weight <= 1):
        p.append(f"distillation weight must be in [0, 1], got {t.distill_weight}")
    if not (0.1 <= t.distill_temperature <= 100):  # 1e-300 overflowed the softened logits: a NaN loss
        p.append(f"distillation temperature must be between 0.1 and 100, got {t.distill_temperature}")
    if len(t.teachers) > lim.teachers:
        p.append(f"at most {lim.teachers} teachers, got {len(t.teachers)}")
    elif bad := [serde.short(i) for i in t.teachers if not is_run_id(i)]:
        p.append(f"teachers must be run ids like 20260101-120000-abc123, got {', '.join(bad)}")
    if len(set(t.teachers)) != len(t.teachers):
        p.append("teachers are listed more than once")
    if t.loader_threads not in (0, 1):
        p.append(f"loader threads must be 0 or 1, got {t.loader_threads}")
    return p


@dataclass
class RunSpec(serde.JsonSpec):
    net: Net
    aug: AugSpec = field(default_factory=default_aug)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: str = ""  # the data source the run was trained on

    @classmethod
    def _validated(cls, spec: "RunSpec") -> "RunSpec":
        return checked(spec)


def problems(run: RunSpec, limits: Limits | None = None) -> list[str]:
    """Every problem across the three specs, prefixed by which spec it is in, and what they cost
    together (the batch's activation memory)."""
    lim = limits or limits_.current()
    t = trace(run.net, lim)
    out = [f"architecture: {p}" for p in t.problems]
    out += [f"augmentation: {p}" for p in validate_aug(run.aug, lim)]
    out += [f"training: {p}" for p in validate_train(run.train, lim)]
    if run.train.whiten and not t.problems and (why := whitening_problem(run.net)):
        out.append(f"training: {why}")
    low_res = run.train.low_res
    if low_res >= MIN_LOW_RES and not t.problems and (why := low_res_problem(run.net, low_res, lim)):
        out.append(f"training: {why}")
    if len(run.data) > 4096 or not serde.is_text(run.data):
        out.append(f"data: not a data source: {serde.short(run.data)}")
    if not out:
        mib = t.act_mib * run.train.batch_size
        if too_much := limits_.exceeded(f"training: a batch of {run.train.batch_size} needs about {t.act_mib:.1f} MiB "
                                        f"per image; its activation memory (estimate)", mib, lim, "train_mib", " MiB"):
            out.append(f"{too_much}; a batch of at most {t.batch_that_fits(lim)} fits")
    return out


def low_res_share(low_res: Any, low_res_epochs: Any, planned_epochs: Any, epochs: Any) -> tuple[Any, Any]:
    """(low_res, low_res_epochs) for a run of ``epochs`` of a recipe that trains its first ``low_res_epochs``
    of ``planned_epochs`` at ``low_res`` px: the same share, rounded down (8 of 20 become 3 of 8), and off
    when it rounds to 0. So a shortened recipe is not refused for low-res epochs that no longer fit. Callers
    apply it only where the user left the low-res epochs as the recipe set them; anything but whole numbers
    passes through unchanged, for the validator to name."""
    values = (low_res, low_res_epochs, planned_epochs, epochs)
    if not all(_whole(v) for v in values):
        return low_res, low_res_epochs
    low_res, low_res_epochs, planned_epochs, epochs = (int(v) for v in values)
    if not (low_res > 0 and low_res_epochs > 0 and 0 < epochs != planned_epochs > 0):
        return low_res, low_res_epochs
    share = low_res_epochs * epochs // planned_epochs
    return (low_res if share else 0), share


def _whole(v: Any) -> bool:
    """A whole number as the validator reads one (6 or 6.0, not True, "6" or 6.5)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def keep_low_res_share(t: TrainSpec, planned_epochs: int) -> str | None:
    """``low_res_share`` applied to ``t``; what changed, in one line, or None."""
    before = t.low_res_epochs
    t.low_res, t.low_res_epochs = low_res_share(t.low_res, t.low_res_epochs, planned_epochs, t.epochs)
    if t.low_res_epochs == before:
        return None
    if not t.low_res_epochs:
        return (f"progressive resizing is off for {t.epochs} epoch{'s' * (t.epochs != 1)} (the recipe's {before} "
                f"of {planned_epochs} round to 0)")
    return (f"progressive resizing keeps the recipe's share: the first {t.low_res_epochs} of {t.epochs} epochs at "
            f"{t.low_res} px ({before} of {planned_epochs} in the recipe)")


def whitening_problem(net: Net) -> str | None:
    """Why ``net``'s first layer cannot hold a whitening (training.whitening), or None: a full conv (no
    groups) with an even number of filters, at most twice the patch's size (each direction and its negative)."""
    first = net.blocks[0].layers[0] if net.blocks and net.blocks[0].layers else None
    if first is None or first.kind != "conv" or first.groups != 1:
        return "whitening needs the first layer to be a conv (not separable, pooled or grouped)"
    window = first.dilation * (first.kernel - 1) + 1
    if window > net.input_size:
        return (f"whitening needs the first conv's window ({window} px with dilation {first.dilation}) to fit in "
                f"the {net.input_size} px image, where its patches are taken")
    dims = net.in_channels * first.kernel * first.kernel
    if first.out % 2 or first.out > 2 * dims:
        return (f"whitening needs an even number of first-layer filters, at most {2 * dims} for a "
                f"{first.kernel}x{first.kernel} conv on {net.in_channels} channel(s); it has {first.out}")
    return None


def low_res_problem(net: Net, size: int, lim: Limits) -> str | None:
    """Why ``net`` cannot train on ``size`` px images (progressive resizing), or None: a size that is not
    smaller than its input, or one at which its layers run out of pixels (valid convs, strides)."""
    if size >= net.input_size:
        return (f"progressive resizing: the low-res size ({size} px) must be smaller than the net's "
                f"{net.input_size} px input")
    small = trace(replace(net, input_size=size), lim)
    if small.problems:
        return f"progressive resizing: at {size} px the net fails: {small.problems[0]}"
    if not net.head.gap:  # the head's weights are sized for the full image's last map
        full = trace(net, lim)
        if (small.out_size, small.out_channels) != (full.out_size, full.out_channels):
            return (f"progressive resizing needs a head with global average pooling: without it the head reads "
                    f"the {full.out_size}×{full.out_size} last map, which is {small.out_size}×{small.out_size} "
                    f"at {size} px")
    return None


def data_problems(net: Net, classes: list[str], image_shape: tuple[int, ...]) -> list[str]:
    """Whether a network fits a dataset: its input (size, channels) and its classes. A run, a
    teacher or a checkpoint meets data here before anything trains or evaluates."""
    h, w, c = image_shape
    out = []
    if (net.input_size, net.input_size) != (h, w):
        out.append(f"architecture: the input is {net.input_size}×{net.input_size} px but the data's images are "
                   f"{h}×{w}")
    if net.in_channels != c:
        out.append(f"architecture: the input has {net.in_channels} channel(s) but the data's images have {c}")
    if net.num_classes != len(classes):
        out.append(f"architecture: the head has {net.num_classes} classes but the data has {len(classes)} "
                   f"({', '.join(serde.short(x, 20) for x in classes[:4])}{', …' if len(classes) > 4 else ''})")
    return out


def checked(run: RunSpec) -> RunSpec:
    return serde.valid_or_raise(run, problems(run))

