#!/usr/bin/env bash
# Re-vendor the studio's one third-party front-end file set: uPlot (MIT) from the npm registry.
# The studio has no other build step; its own scripts and styles are served as written.
# Usage: scripts/build-studio.sh [VERSION]   (needs npm; the result is committed)
set -euo pipefail
VERSION="${1:-1.6.32}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/src/tunery/server/studio/static/vendor/uplot"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
mkdir -p "$DEST"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" "$TMP/package/LICENSE" "$DEST/"
echo "$VERSION" > "$DEST/VERSION"
echo "vendored uPlot $VERSION into ${DEST#"$ROOT"/}"
