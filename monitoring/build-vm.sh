#!/usr/bin/env bash
# Build the VictoriaMetrics single-node store and vmalert from the Go module proxy, at the release
# the rack pins (rack.monitoring.store-version's default), for the real-binary tests: vmalert
# -dryRun checks the alert rules, and the store checks the rendered scrape config and runs.
#
#   monitoring/build-vm.sh [VERSION]     -> ~/.cache/homelab-rack/vm/<VERSION>/bin/{victoria-metrics,vmalert}
#
# Cached: a second run with the binaries present does nothing (tools/go-install.sh). Needs Go >= 1.21
# and the module proxy: VictoriaMetrics follows Go releases closely (v1.153.0 says `go 1.27.1`), so
# when the module asks for a newer Go than the local one, `go` fetches that toolchain from the proxy
# as the module golang.org/toolchain (GOTOOLCHAIN=auto). CGO off (pure-Go zstd).
set -euo pipefail

# The default is rack.monitoring.store-version's (a test keeps them equal; Renovate moves both).
# renovate: datasource=docker depName=victoriametrics/victoria-metrics extractVersion=^v(?<version>\d+\.\d+\.\d+)$
VERSION="${1:-1.153.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Outside the repo, so a fresh clone (CI) reuses the binaries built before on this machine.
BIN="${HOMELAB_VM_CACHE:-$HOME/.cache/homelab-rack/vm}/$VERSION/bin"

# shellcheck source=tools/go-install.sh
source "$ROOT/tools/go-install.sh"
go_install_pinned build-vm "$BIN" "$VERSION" \
  github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert \
  github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics
