#!/usr/bin/env bash
# Packs what a lent GPU machine (the session's `device` tool) needs to train here's recipes and cannot fetch:
# the Python wheels its image lacks (it has torch, numpy, OpenCV, psutil, tqdm; not Albumentations, its
# pydantic and SIMD helpers, or torchinfo) for its Python 3.12, and the dev data, into .device/ (ignored by
# git, carried by the call: about 24 MiB of the 64 MiB that may travel). Run it here, once a session:
#
#     bash scripts/device_kit.sh [DATA]      # DATA defaults to ../shared/data/cifar10-dev-jpeg.tar.gz
#
# then scripts/device_run.sh there (its header shows the call).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/cifar10-dev-jpeg.tar.gz}
[ -f "$data" ] || { echo "no data at $data (pass the dev data's .tar.gz)" >&2; exit 2; }
mkdir -p .device/wheels
# the versions this repository's CI runs with; --no-deps: the rest is in the machine's image
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d .device/wheels \
    albumentations==2.0.8 albucore==0.0.24 pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 \
    typing-inspection==0.4.2 stringzilla==5.3.2 simsimd==6.5.16 torchinfo==1.8.0 typing_extensions==4.16.0
cp "$data" .device/data.tar.gz
du -sh .device
