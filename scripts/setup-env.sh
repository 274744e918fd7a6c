#!/usr/bin/env bash
# Create (or reuse) .venv and install tunery into it. Sourced by quickstart.sh and test.sh.
# torch is pinned: an unpinned torch pulls gigabytes of CUDA packages on a CPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -e "$ROOT${TUNERY_EXTRAS:-}"
