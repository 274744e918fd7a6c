#!/usr/bin/env bash
# One command from a fresh clone to the whole story: set up, pull the default model, validate the
# bundled travel dataset, fine-tune, preference-tune (DPO), compare with the base model, and serve the studio.
# Extra arguments go to `tunery quickstart` (e.g. --no-serve).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup-env.sh"
exec "$ROOT/.venv/bin/tunery" quickstart "$@"
