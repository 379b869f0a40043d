#!/usr/bin/env bash
# Create (or reuse) .venv at the repo root and install echojax with its pinned dependencies.
# Used by quickstart.sh and .ci/run so that both install the same way.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "[setup] installing echojax and pinned dependencies into .venv (first time: ~2 minutes)"
.venv/bin/python -m pip install -q -e ".[torch,dev,cloud]"
echo "[setup] done: $(.venv/bin/python -c 'import jax; print("jax", jax.__version__, jax.devices())')"
