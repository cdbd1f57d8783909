"""The Inside view's cost on one CPU core (issue 33): for each preset, all layers' activations on one image and
one effective-RF map (the last layer's centre unit), median of repeats, each on its own copy of the model as the
page and the CLI compute them. The goals: under 1 s and under 2 s for a 200k-parameter net.

    python benchmarks/inside.py [--presets seed-004 fast record] [--repeats 5] [--threads 1]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.results import inside  # noqa: E402
from playground.specs.presets import PRESETS, preset_net  # noqa: E402
from playground.training.bench import cpu_description  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--presets", nargs="+", default=list(PRESETS))
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
print(f"CPU: {cpu_description()}; {args.threads} thread(s), median of {args.repeats}", flush=True)
print(f"{'preset':10} {'params':>8} {'activations':>12} {'one ERF map':>12} {'reach':>8}")
image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def timed(fn, *a) -> float:
    """The median wall time of ``fn(*a)`` after one warm-up call."""
    fn(*a)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fn(*a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


for name in args.presets:
    subject = inside.from_net(preset_net(name), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), [str(i) for i in range(10)])
    last = len(subject.trace.rows) - 1
    u = (subject.trace.rows[last].n - 1) // 2
    acts = timed(inside.activations, subject, image)
    erf = timed(inside.effective_rf, subject, image, last, u, u)
    reach = timed(inside.reach, subject.net, last, u, u)
    params = subject.trace.params
    print(f"{name:10} {params:>8,} {acts * 1000:>10.0f} ms {erf * 1000:>10.0f} ms {reach * 1000:>6.1f} ms", flush=True)
