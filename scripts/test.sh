#!/usr/bin/env bash
# One command from a fresh clone to the full test suite (lint, then pytest).
# Extra arguments go to pytest (e.g. -k data, -m "not slow").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TUNERY_EXTRAS="[test]" bash "$ROOT/scripts/setup-env.sh"
if [ -x "$ROOT/scripts/install-browser.sh" ]; then bash "$ROOT/scripts/install-browser.sh"; fi
cd "$ROOT"
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
