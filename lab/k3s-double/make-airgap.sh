#!/bin/sh
# Fill an air-gap folder (k3s.install.airgap-dir) with the k3s-double standing in for VERSION:
# k3s-amd64, k3s-arm64, k3s-arm (the double, stamped with the version and the config keys
# `k3s agent` accepts, from flags-agent.txt) and install.sh.
#   lab/k3s-double/make-airgap.sh DIR VERSION
set -eu
[ $# -eq 2 ] || { echo "usage: $0 DIR VERSION" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
dir="$1"
version="$2"
mkdir -p "$dir"
flags="$(grep -v '^#' "$here/flags-agent.txt" | tr '\n' ' ' | sed 's/ *$//')"
[ -n "$flags" ] || { echo "no flags in $here/flags-agent.txt" >&2; exit 1; }
for arch in amd64 arm64 arm; do
  sed -e "s/^K3S_DOUBLE_VERSION=.*/K3S_DOUBLE_VERSION=\"$version\"/" \
    -e "s/^K3S_DOUBLE_AGENT_FLAGS=.*/K3S_DOUBLE_AGENT_FLAGS=\"$flags\"/" "$here/k3s" >"$dir/k3s-$arch.tmp"
  chmod 0755 "$dir/k3s-$arch.tmp"
  mv -f "$dir/k3s-$arch.tmp" "$dir/k3s-$arch"
done
cp "$here/install.sh" "$dir/install.sh.tmp"
chmod 0755 "$dir/install.sh.tmp"
mv -f "$dir/install.sh.tmp" "$dir/install.sh"
