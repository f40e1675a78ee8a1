#!/usr/bin/env bash
# Build CoreDNS from the Go module proxy, at the release the pinned k3s bundles, for the
# real-binary DNS test (tests/real/dns/test_lan_dns_real.py): k3s' packaged Corefile plus the rendered
# `coredns-custom` server block, queried over UDP and TCP.
#
#   tools/build-coredns.sh [VERSION]     -> ~/.cache/homelab-rack/coredns/<VERSION>/bin/coredns
#
# VERSION defaults to the CoreDNS of k3s v1.36 (rack.k3s.version's line): k3s' release notes list
# it under "Embedded Component Versions" (v1.36.2+k3s1: CoreDNS v1.14.4,
# github.com/k3s-io/k3s/releases/tag/v1.36.2%2Bk3s1) and manifests/coredns.yaml pins the image
# rancher/mirrored-coredns-coredns at the same version. The test data
# tests/real/dns/data/k3s-coredns.Corefile names the same version; a test keeps them equal.
#
# Cached: a second run with the binary present does nothing. CGO off; no downloads other than Go
# modules (and, if the module asks for a newer Go, the toolchain module, GOTOOLCHAIN=auto).
set -euo pipefail

# Renovate proposes the newest CoreDNS that Rancher mirrors for k3s; take it when the pinned k3s
# release's notes list it (a newer CoreDNS than k3s ships tests a server the rack does not run).
# renovate: datasource=docker depName=rancher/mirrored-coredns-coredns
VERSION="${1:-1.14.4}"
OUT="${HOMELAB_COREDNS_CACHE:-$HOME/.cache/homelab-rack/coredns}/$VERSION"
BIN="$OUT/bin"

if [ -x "$BIN/coredns" ]; then
  echo "build-coredns: v$VERSION already built in $BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build-coredns: go not found" >&2; exit 1; }
mkdir -p "$OUT/src" "$BIN"
cd "$OUT/src"
printf 'module homelab/corednsbuild\n\ngo 1.24\n' > go.mod
rm -f go.sum
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=auto
start=$(date +%s)
go get "github.com/coredns/coredns@v$VERSION"
go build -trimpath -ldflags "-s -w" -o "$BIN/coredns.tmp" github.com/coredns/coredns
mv "$BIN/coredns.tmp" "$BIN/coredns"
echo "build-coredns: v$VERSION built in $(( $(date +%s) - start ))s -> $BIN"
