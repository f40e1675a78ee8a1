#!/usr/bin/env bash
# Build the lab's control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd),
# kubectl and KWOK from Go modules into a cache outside the repo, keyed by a hash of the pinned versions
# (lab/versions.env) and the wrapper modules (lab/go/*/go.mod, go.sum) and the Go version.
# A second run with the same inputs is a no-op. Prints the bin directory on stdout (last line).
#
#   HOMELAB_LAB_CACHE   cache root (default: $HOME/.cache/homelab-rack/lab)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lab/versions.env
source "$here/versions.env"

log() { echo "lab/build: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go not found on PATH"
export GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=0

# The wrapper modules must require exactly the versions pinned in versions.env.
cp_mod="$here/go/control-plane/go.mod"
kwok_mod="$here/go/kwok/go.mod"
grep -Eq "^\s*k8s\.io/kubernetes ${KUBERNETES_VERSION}( // indirect)?\$" "$cp_mod" ||
    die "$cp_mod does not require k8s.io/kubernetes $KUBERNETES_VERSION"
grep -Eq "^\s*go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION}( // indirect)?\$" "$cp_mod" ||
    die "$cp_mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
grep -Eq "^\s*(require )?sigs\.k8s\.io/kwok ${KWOK_VERSION}( // indirect)?\$" "$kwok_mod" ||
    die "$kwok_mod does not require sigs.k8s.io/kwok $KWOK_VERSION"
while read -r mod arrow target version; do
    [[ "$arrow" == "=>" ]] || continue
    want="$KUBERNETES_STAGING_VERSION"
    for fb in $KUBERNETES_STAGING_FALLBACK_MODULES; do
        [[ "$mod" == "k8s.io/$fb" ]] && want="$KUBERNETES_STAGING_FALLBACK_VERSION"
    done
    [[ "$target" == "$mod" && "$version" == "$want" ]] ||
        die "$cp_mod: replace $mod => $target $version, expected $mod $want"
done < <(sed -n '/^replace (/,/^)/p' "$cp_mod")

key="$( { cat "$here/build.sh" "$here/versions.env" "$cp_mod" "$here/go/control-plane/go.sum" \
    "$kwok_mod" "$here/go/kwok/go.sum"; go version; } | sha256sum | cut -c1-16)"
cache="${HOMELAB_LAB_CACHE:-$HOME/.cache/homelab-rack/lab}/$key"
bin="$cache/bin"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete() {
    local b
    for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
    [[ -f "$cache/.complete" ]]
}

if complete; then
    log "cached: $bin"
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
ldflags="-s -w"
# What the Kubernetes release build stamps (hack/lib/version.sh): /version and clients report it.
k8s_ldflags="$ldflags"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    k8s_ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION") -X $pkg.gitTreeState=clean"
done
start=$SECONDS

log "building control plane (k8s.io/kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION)"
(
    cd "$here/go/control-plane"
    go build -ldflags "$k8s_ldflags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl
    go build -ldflags "$ldflags" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
log "control plane built after $((SECONDS - start)) s"

log "building kwok $KWOK_VERSION"
(cd "$here/go/kwok" && go build -ldflags "$ldflags" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
log "kwok built after $((SECONDS - start)) s"

rm -rf "$bin"
chmod 0755 "$tmp"
mv "$tmp" "$bin"
trap - EXIT
{ echo "built=$(date -u +%FT%TZ)"; echo "seconds=$((SECONDS - start))"; go version; } > "$cache/.complete"
log "done in $((SECONDS - start)) s: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
