#!/usr/bin/env bash
# `pip install .` in a throwaway virtual environment, then the installed commands from another folder:
# the package imports, finds its shipped sweep spaces, and both entry points answer.
# The environment sees this machine's packages (--system-site-packages), so the install resolves every
# declared dependency without downloading one.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
env_dir="$(mktemp -d)"
trap 'rm -rf "$env_dir"' EXIT
python -m venv --system-site-packages "$env_dir/venv"
"$env_dir/venv/bin/pip" install -q "$repo"
cd "$env_dir"
"$env_dir/venv/bin/cifar-playground" --help >/dev/null
"$env_dir/venv/bin/python" -m playground presets >/dev/null
"$env_dir/venv/bin/python" - <<'PY'
import playground
from playground.runs.space import load_space, shipped_spaces
assert "site-packages" in playground.__file__, playground.__file__
assert set(shipped_spaces()) == {"fastest-to-85", "under-200k-seed-rules"}, shipped_spaces()
for path in shipped_spaces().values():
    load_space(path)
PY
echo "install check: pip install . gives working cifar-playground and python -m playground commands"
