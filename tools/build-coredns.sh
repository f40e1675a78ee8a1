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
# Cached: a second run with the binary present does nothing (tools/go-install.sh).
set -euo pipefail

# Renovate proposes the newest CoreDNS that Rancher mirrors for k3s; take it when the pinned k3s
# release's notes list it (a newer CoreDNS than k3s ships tests a server the rack does not run).
# renovate: datasource=docker depName=rancher/mirrored-coredns-coredns
VERSION="${1:-1.14.4}"
BIN="${HOMELAB_COREDNS_CACHE:-$HOME/.cache/homelab-rack/coredns}/$VERSION/bin"

# shellcheck source=tools/go-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-install.sh"
go_install_pinned build-coredns "$BIN" "$VERSION" github.com/coredns/coredns
