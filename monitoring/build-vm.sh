#!/usr/bin/env bash
# Build the VictoriaMetrics single-node store and vmalert from the Go module proxy, at the release
# the rack pins (rack.monitoring.store-version's default), for the real-binary tests: vmalert
# -dryRun checks the alert rules, and the store checks the rendered scrape config and runs.
#
#   monitoring/build-vm.sh [VERSION]     -> ~/.cache/homelab-rack/vm/<VERSION>/bin/{victoria-metrics,vmalert}
#
# Cached: a second run with the binaries present does nothing. Needs Go >= 1.21 and the module
# proxy: VictoriaMetrics follows Go releases closely (v1.153.0 says `go 1.27.1`), so when the
# module asks for a newer Go than the local one, `go` fetches that toolchain from the proxy as the
# module golang.org/toolchain (GOTOOLCHAIN=auto). CGO off (pure-Go zstd), no downloads other than
# Go modules.
set -euo pipefail

# The default is rack.monitoring.store-version's (a test keeps them equal; Renovate moves both).
# renovate: datasource=docker depName=victoriametrics/victoria-metrics extractVersion=^v(?<version>\d+\.\d+\.\d+)$
VERSION="${1:-1.153.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Outside the repo, so a fresh clone (CI) reuses the binaries built before on this machine.
OUT="${HOMELAB_VM_CACHE:-$HOME/.cache/homelab-rack/vm}/$VERSION"
BIN="$OUT/bin"

if [ -x "$BIN/victoria-metrics" ] && [ -x "$BIN/vmalert" ]; then
  echo "build-vm: v$VERSION already built in $BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build-vm: go not found" >&2; exit 1; }
mkdir -p "$OUT/src" "$BIN"
cd "$OUT/src"
printf 'module homelab/vmbuild\n\ngo 1.26\n' > go.mod
rm -f go.sum
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=auto
start=$(date +%s)
go get "github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert@v$VERSION" \
       "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v$VERSION"
go build -trimpath -o "$BIN/vmalert.tmp" github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert
go build -trimpath -o "$BIN/victoria-metrics.tmp" github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics
mv "$BIN/vmalert.tmp" "$BIN/vmalert"
mv "$BIN/victoria-metrics.tmp" "$BIN/victoria-metrics"
echo "build-vm: v$VERSION built in $(( $(date +%s) - start ))s -> $BIN"
