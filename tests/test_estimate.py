"""The time estimate before Start (issue 32 F): its arithmetic, its measurement and the CLI's line."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from playground.specs.arch import Block, Layer, Net
from playground.specs.augment import AugSpec
from playground.specs.config import RunSpec, TrainSpec
from playground.training.estimate import Speed, expected, measure, speed_key

from .browser import ROOT

TINY = Net(name="tiny", blocks=[Block([Layer(out=8)])])
SPEED = Speed(train_img_per_s=1000.0, test_img_per_s=4000.0, calibrate_img_per_s=2048.0)


def run(**train) -> RunSpec:
    return RunSpec(TINY, AugSpec([]), TrainSpec(**{"epochs": 2, "batch_size": 32, "device": "cpu", **train}))


def test_the_run_is_its_epochs_and_each_test_pass_with_its_views():
    e = expected(run(epochs=4, eval_every=2, train_subset=2000, tta=True, tta_shift=1), SPEED, 45_000, 5_000)
    # 4 epochs of 2,000 images at 1,000 img/s, each ending with BN's re-estimate on them (63 steps an epoch,
    # under 300 in all); tests after epochs 2 and 4: 2 flip views, then 2 x 9 on the last
    assert e.run_s == pytest.approx(4 * 2.0 + 4 * 2000 / 2048 + 5000 * 2 / 4000 + 5000 * 18 / 4000)
    assert e.epoch_s == pytest.approx(2.0 + 2000 / 2048 + 5000 * 2 / 4000)
    long = expected(run(epochs=2, batch_size=32), SPEED, 20_000, 0)  # 625 steps an epoch: no re-estimate
    assert long.run_s == pytest.approx(2 * 20.0)


def test_low_res_epochs_cost_the_share_of_pixels_they_keep_and_subsets_cap_at_the_data():
    e = expected(run(epochs=4, low_res=16, low_res_epochs=2, train_subset=100_000, test_subset=10), SPEED, 1000, 50)
    assert e.run_s == pytest.approx(2 * 1.0 + 2 * 0.25 + 4 * 1000 / 2048 + 4 * 10 / 4000)


def test_the_speed_is_measured_on_the_run_itself_and_keyed_by_what_it_depends_on():
    speed = measure(run())
    assert speed.train_img_per_s > 0 and speed.test_img_per_s > 0
    assert speed_key(run(epochs=9, train_subset=100)) == speed_key(run())  # counts scale the speed, not change it
    assert speed_key(run(batch_size=64)) != speed_key(run())
    assert speed_key(replace(run(), net=Net(name="tiny", blocks=[Block([Layer(out=12)])]))) != speed_key(run())


def test_train_estimate_prints_one_json_line_and_writes_nothing(image_folder, tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "playground", "train", "--preset", "seed-004", "--epochs", "3",
                           "--batch-size", "8", "--data", str(image_folder), "--runs", str(runs), "--estimate"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["epochs"] == 3 and line["run_s"] > line["epoch_s"] > 0 and "torch" in line["cpu"]
    assert not runs.exists()


def test_the_apps_child_refuses_a_bad_spec_in_one_line():
    done = subprocess.run([sys.executable, "-m", "playground", "estimate"], input='{"net": 1}', cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
