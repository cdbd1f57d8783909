"""Our trainer's images/s against the seed-style reference, same network, same run.

    python benchmarks/throughput.py --data PATH [--preset seed-004] [--steps 60] [--batch-size 128] [--bf16]

``--bf16``: our side under bf16 autocast where the CPU has bf16 matrix units (the reference stays fp32,
as the seeds train).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playground.training.bench import bench_trainer, cpu_description  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--preset", default="seed-004")
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--batch-size", type=int, default=128)
ap.add_argument("--bf16", action="store_true")
args = ap.parse_args()
result = bench_trainer(args.preset, args.data, args.steps, args.batch_size, bf16=args.bf16)
print(f"CPU: {cpu_description()}")
print(f"ours      {result['img_per_s']:8.1f} img/s ({result['precision']})")
print(f"reference {result['reference_img_per_s']:8.1f} img/s (DataLoader, 2 workers, per-image Albumentations, NCHW)")
print(f"ratio     {result['ratio']:8.2f}x")
print(json.dumps(result))
