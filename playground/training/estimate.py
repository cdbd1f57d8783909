"""How long a training takes, said before it starts: a few batches of the run's own net, augmentation, batch
size and precision on random images measure this machine's speed for it (training, and one test view), and
the run's image counts, epochs, test passes and TTA views scale that up. The net's MACs alone mislead: on a
2-core CPU a depthwise or grouped net trains up to 3x slower per MAC than a plain one."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..specs.config import RunSpec
from .data import Dataset
from .predict import tta_view_count
from .trainer import BATCH, BN_RECALIBRATE_BELOW, BN_CALIBRATION_IMAGES, EPOCH, TESTING, Trainer

WARMUP, TIMED = 1, 2  # batches: the first pays for oneDNN's kernel choices and the allocator
TEST_IMAGES = 256


@dataclass(frozen=True)
class Speed:
    """This machine's speed for one net, augmentation, batch size and precision (images a second)."""
    train_img_per_s: float  # full-size training steps, augmentation and the optimizer included
    test_img_per_s: float  # one test view, forward only
    calibrate_img_per_s: float  # the BatchNorm re-estimate after each epoch of a short run (train-mode forward)


@dataclass(frozen=True)
class Estimate:
    epoch_s: float  # a full-size epoch and one test pass (what the epoch table's "epoch time" counts)
    run_s: float  # every epoch and every test pass of the run

    def to_dict(self) -> dict:
        return asdict(self)


def speed_key(run: RunSpec) -> str:
    """What the speed depends on: the net, the augmentation, the batch size and the precision levers."""
    t = run.train
    return f"{run.net.to_json()}|{run.aug.to_json()}|{t.batch_size}|{t.bf16}|{t.whiten}|{t.device}"


def measure(run: RunSpec) -> Speed:
    """Train ``run``'s net for WARMUP + TIMED batches on random images and test it on TEST_IMAGES of them,
    timing the batches after the warm-up and the test pass (run once per net in a child process: it trains)."""
    net, t = run.net, run.train
    n = (WARMUP + TIMED) * t.batch_size
    rng = np.random.default_rng(0)
    shape = (net.input_size, net.input_size, net.in_channels)
    data = Dataset("calibration", rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                   rng.integers(0, net.num_classes, n), rng.integers(0, 256, (TEST_IMAGES, *shape), dtype=np.uint8),
                   rng.integers(0, net.num_classes, TEST_IMAGES), [f"class {i}" for i in range(net.num_classes)])
    one_epoch = replace(t, epochs=1, eval_every=1, train_subset=None, test_subset=None, tta=False, tta_shift=0,
                        teachers=[], low_res=0, low_res_epochs=0)
    stamps: dict = {}

    def on_event(event) -> None:
        key = event.data["batch"] if event.kind == BATCH else event.kind
        stamps[key] = time.perf_counter()

    Trainer(data, RunSpec(net, run.aug, one_epoch, run.data), [on_event]).fit()
    last = max(k for k in stamps if isinstance(k, int))
    return Speed(train_img_per_s=(last - WARMUP) * t.batch_size / (stamps[last] - stamps[WARMUP]),
                 test_img_per_s=TEST_IMAGES / max(stamps[EPOCH] - stamps[TESTING], 1e-9),
                 calibrate_img_per_s=min(n, BN_CALIBRATION_IMAGES) / max(stamps[TESTING] - stamps[last], 1e-9))


def expected(run: RunSpec, speed: Speed, train_images: int, test_images: int) -> Estimate:
    """The run's time at ``speed`` on a dataset of this many images (its subsets applied): every epoch at its
    resolution (a low-res epoch costs the share of pixels it keeps), the BatchNorm re-estimate that ends each
    epoch of a short run, and every test pass with its TTA views."""
    t = run.train
    n_train = min(train_images, t.train_subset or train_images)
    n_test = min(test_images, t.test_subset or test_images)
    full = n_train / speed.train_img_per_s
    low = full * (t.low_res / run.net.input_size) ** 2 if t.low_res else full
    tested = [e for e in range(1, t.epochs + 1) if e % t.eval_every == 0 or e == t.epochs]
    views = [tta_view_count(t.tta, t.tta_shift if e == t.epochs else 0) for e in tested]
    test_s = [n_test * v / speed.test_img_per_s for v in views]
    steps = -(-n_train // t.batch_size)
    recalibrate = min(n_train, BN_CALIBRATION_IMAGES) / speed.calibrate_img_per_s
    recalibrated = sum(1 for e in range(1, t.epochs + 1) if e * steps < BN_RECALIBRATE_BELOW)
    run_s = full * (t.epochs - t.low_res_epochs) + low * t.low_res_epochs + recalibrate * recalibrated + sum(test_s)
    epoch_s = full + (recalibrate if steps < BN_RECALIBRATE_BELOW else 0) + n_test * tta_view_count(t.tta) / (
        speed.test_img_per_s)
    return Estimate(epoch_s=epoch_s, run_s=run_s)
