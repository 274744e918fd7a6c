#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser of its own). Skipped when already present. If it cannot be installed,
# the browser tests skip themselves; this script warns instead of failing the whole run.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; browser tests will be skipped" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! { $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; }; then
  echo "install-browser: could not install chromium; browser tests will be skipped" >&2
fi
exit 0
