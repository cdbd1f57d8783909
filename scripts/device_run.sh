#!/usr/bin/env bash
# The measurements a 2-core CPU cannot make in a session, as one call on a lent GPU machine. After
# scripts/device_kit.sh here:
#
#     run(command="bash scripts/device_run.sh seeds", carry=[".device"], timeout_s=590)
#
# JOB is `seeds` (the recipes of seed-001, seed-002 and seed-003, each `python -m playground train
# --recipe NAME --device cuda`, all at once: one GPU runs several small trainings at nearly full speed
# each, docs/performance.md "GPU timings") or one or more recipe names. Each training's log (per-epoch lines, the
# final test accuracy, its wall time) lands in $OUT/NAME.log, so what finished comes back even when the
# call runs out of time; every training stops at $BUDGET_S seconds (default 540) and says so. EXTRA
# adds flags to every training (a dry run here: DEVICE=cpu EXTRA="--train-subset 256 --test-subset 128
# --epochs 1" OUT=/tmp/out bash scripts/device_run.sh seeds).
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${OUT:?set OUT to a folder for the logs}
mkdir -p "$out" || exit 4
budget=${BUDGET_S:-540}
device=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 PLAYGROUND_CACHE=${PLAYGROUND_CACHE:-/tmp/playground-cache}
if ! "$py" -c "import albumentations, torchinfo" 2>/dev/null; then  # the machine's image lacks them
    "$py" -m pip install --quiet --no-index --no-deps --target /tmp/playground-deps .device/wheels/*.whl || exit 3
    export PYTHONPATH=/tmp/playground-deps${PYTHONPATH:+:$PYTHONPATH}
fi
data=${DATA:-.device/data.tar.gz}
jobs=("$@"); [ "${jobs[*]:-seeds}" = seeds ] && jobs=(seed-001 seed-002 seed-003)
"$py" -m playground data --data "$data" > "$out/data.log" 2>&1 || { cat "$out/data.log"; exit 4; }
"$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
for name in "${jobs[@]}"; do
    ( start=$SECONDS
      # shellcheck disable=SC2086  # EXTRA is a list of flags
      timeout "$budget" "$py" -m playground train --recipe "$name" --device "$device" --data "$data" \
          --runs /tmp/playground-runs --quiet ${EXTRA:-} > "$out/$name.log" 2>&1
      echo "exit $? after $((SECONDS - start)) s (124: stopped at the ${budget} s budget)" >> "$out/$name.log" ) &
done
wait
for name in "${jobs[@]}"; do echo "== $name"; tail -n 4 "$out/$name.log"; done
