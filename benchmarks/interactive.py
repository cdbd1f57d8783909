"""Server-side latency of the interactive paths: architecture analysis per spec
change, a 16-sample augmentation preview, and app start to first page.

    python benchmarks/interactive.py [--data PATH]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from playground.training.analysis import analyze  # noqa: E402
from playground.specs.augment import build_pipeline, default_aug  # noqa: E402
from playground.specs.presets import PRESETS, preset_net  # noqa: E402
from playground.training.data import load_dataset  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data")
args = ap.parse_args()


def median_ms(fn, n=15) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


for name in PRESETS:
    net = preset_net(name)
    print(f"analysis {name:9} {median_ms(lambda net=net: analyze(net)):6.1f} ms (budget 150)")
data = load_dataset(args.data)
idx = np.random.default_rng(0).choice(len(data.y_train), 16, replace=False)


def preview():
    pipe = build_pipeline(default_aug(), data.mean, seed=0, replay=True)
    return [pipe(image=data.x_train[i]) for i in idx]


print(f"augment preview 16 samples {median_ms(preview):6.1f} ms (budget 200)")
from streamlit.testing.v1 import AppTest  # noqa: E402

AppTest.from_file(str(ROOT / "playground" / "app.py"), default_timeout=60).run()  # warm imports and caches
t = time.perf_counter()
AppTest.from_file(str(ROOT / "playground" / "app.py"), default_timeout=60).run()
print(f"app start to first page rendered (imports warm) {time.perf_counter() - t:.2f} s (budget 5)")
