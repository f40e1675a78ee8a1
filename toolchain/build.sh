#!/usr/bin/env bash
# Builds the offline Pulumi toolchain from Go modules into a cache directory
# keyed by the pins (see versions.env), outside the repository. Each part
# (cli, python, command, kubernetes: lib.sh) is built and cached under its own
# key, so a change to one part rebuilds that part only; <key>/bin assembles
# them (hard links):
#
#   ${HOMELAB_TOOLCHAIN_CACHE:-$HOME/.cache/homelab-rack/toolchain}/parts/<part>-<part key>/bin
#   ${HOMELAB_TOOLCHAIN_CACHE:-$HOME/.cache/homelab-rack/toolchain}/<key>/bin
#     pulumi                           CLI + engine          (pkg/v3 + sdk/v3)
#     pulumi-language-python           Python language host  (toolchain/python)
#     pulumi-language-python-exec      program shim          (sdk/v3 python/cmd)
#     pulumi-resource-pulumi-python    dynamic-provider shim (sdk/v3 python/dist)
#     pulumi-resource-command          command provider      (toolchain/command)
#     pulumi-resource-kubernetes       kubernetes provider   (provider/v4 module)
#
# A second run with the same pins is a no-op. If a `pulumi` CLI other than
# ours is already on PATH, nothing is built (set HOMELAB_TOOLCHAIN_FORCE=1 to
# build anyway); the plugins that CLI would lack are listed.
#
# Environment: HOMELAB_TOOLCHAIN_CACHE (cache root), HOMELAB_TOOLCHAIN_FORCE,
# GOPROXY/GOMODCACHE/GOCACHE as usual for Go.
set -euo pipefail

# shellcheck source=toolchain/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=toolchain/versions.env
. "$TOOLCHAIN_DIR/versions.env"

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf 'toolchain: %s\n' "$*"; }
die() { printf 'toolchain: error: %s\n' "$*" >&2; exit 1; }

root=$(toolchain_cache_root)
key=$(toolchain_key)
dest="$root/$key"
bin="$dest/bin"

if [[ -f "$dest/.complete" ]]; then
	say "cached at $bin ($(elapsed)s warm)"
	exit 0
fi

# A pulumi CLI that is not ours: use it, build nothing.
if [[ -z "${HOMELAB_TOOLCHAIN_FORCE:-}" ]] && existing=$(command -v pulumi 2>/dev/null); then
	case "$(readlink -f "$existing")" in
	"$(readlink -f "$root" 2>/dev/null || echo "$root")"/*) ;; # an older build of ours: rebuild
	*)
		say "using pulumi already on PATH: $existing ($("$existing" version 2>/dev/null || echo '?'))"
		say "building nothing (HOMELAB_TOOLCHAIN_FORCE=1 builds our own)"
		dir=$(dirname "$existing")
		missing=()
		for p in pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python \
			pulumi-resource-command pulumi-resource-kubernetes; do
			[[ -x "$dir/$p" ]] || command -v "$p" >/dev/null 2>&1 || missing+=("$p")
		done
		if ((${#missing[@]})); then
			say "not on PATH (the CLI will need them installed as plugins): ${missing[*]}"
		else
			say "all plugins found on PATH"
		fi
		exit 0
		;;
	esac
fi

command -v go >/dev/null || die "go not found (need >= $TOOLCHAIN_GO_MIN)"
gover=$(go env GOVERSION | sed 's/^go//')
[[ "$(printf '%s\n%s\n' "$TOOLCHAIN_GO_MIN" "$gover" | sort -V | head -1)" == "$TOOLCHAIN_GO_MIN" ]] ||
	die "go $gover is older than $TOOLCHAIN_GO_MIN"

# The go.mod files must agree with versions.env.
need() { grep -qE "^\s*(require )?$2( // indirect)?\$" "$TOOLCHAIN_DIR/$1" || die "$1 does not pin $3 (versions.env says so)"; }
need cli/go.mod "github.com/pulumi/pulumi/pkg/v3 v$TOOLCHAIN_PULUMI" "pkg/v3 v$TOOLCHAIN_PULUMI"
need cli/go.mod "github.com/pulumi/pulumi/sdk/v3 v$TOOLCHAIN_PULUMI" "sdk/v3 v$TOOLCHAIN_PULUMI"
need python/go.mod "github.com/pulumi/pulumi/sdk/v3 v$TOOLCHAIN_PULUMI_LANGUAGE_PYTHON" \
	"sdk/v3 v$TOOLCHAIN_PULUMI_LANGUAGE_PYTHON"
need command/go.mod "github.com/pulumi/pulumi/sdk/v3 v$TOOLCHAIN_PULUMI" "sdk/v3 v$TOOLCHAIN_PULUMI"
need kubernetes/go.mod "github.com/pulumi/pulumi-kubernetes/provider/v4 $TOOLCHAIN_PULUMI_KUBERNETES_MODULE" \
	"provider/v4 $TOOLCHAIN_PULUMI_KUBERNETES_MODULE"

export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export GOTOOLCHAIN=local
ldflags="-s -w"
modcache=$(go env GOMODCACHE)
# What this run fetched: the module cache's download files written since it started (one walk
# of cache/download, ~7k files here, not a `du` of the ~250k extracted files before and after).
downloaded_mb() {
	find "$modcache/cache/download" -type f -newermt "@${t0%.*}" -printf '%s\n' 2>/dev/null |
		awk '{ s += $1 } END { printf "%d", s / 1048576 }'
}

mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
	say "another build holds $root/.lock; waiting"
	flock 9
fi
if [[ -f "$dest/.complete" ]]; then # built while we waited
	say "cached at $bin ($(elapsed)s warm)"
	exit 0
fi

say "assembling $dest (key $key, go $gover, GOMODCACHE $modcache)"

step() {
	local name=$1
	shift
	local s
	s=$(date +%s)
	say "  $name ..."
	"$@" || die "building $name failed"
	say "  $name done in $(($(date +%s) - s))s"
}

# 1. CLI + engine.
build_cli() {
	step pulumi go -C "$TOOLCHAIN_DIR/cli" build \
		-ldflags "$ldflags -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$TOOLCHAIN_PULUMI" \
		-o "$1/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

# 2. Python language host, plus the two Python shims from the sdk/v3 module.
build_python() {
	local out=$1 sdkdir
	step pulumi-language-python go -C "$TOOLCHAIN_DIR/python" build \
		-ldflags "$ldflags -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$TOOLCHAIN_PULUMI_LANGUAGE_PYTHON" \
		-o "$out/pulumi-language-python" .
	sdkdir=$(go -C "$TOOLCHAIN_DIR/python" list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
	[[ -n "$sdkdir" && -d "$sdkdir/python" ]] || die "sdk/v3 module has no python/ folder ($sdkdir)"
	install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$out/pulumi-language-python-exec"
	install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$out/pulumi-resource-pulumi-python"
}

# 3. Command provider (stand-in, see toolchain/command/main.go).
build_command() {
	step pulumi-resource-command go -C "$TOOLCHAIN_DIR/command" build \
		-ldflags "$ldflags -X main.Version=$TOOLCHAIN_PULUMI_COMMAND" \
		-o "$1/pulumi-resource-command" .
}

# 4. Kubernetes provider: upstream's main embeds generated files, so build our
# main in a staging copy next to schema/mapping files made from the module's
# committed schema.json and terraform-mapping.json (as upstream's generate.go
# does: schema version set, both minified).
build_kubernetes() {
	local out=$1 k8s_src k8sdir
	k8s_src="$(dirname "$out")/src/kubernetes"
	mkdir -p "$k8s_src"
	cp "$TOOLCHAIN_DIR/kubernetes/go.mod" "$TOOLCHAIN_DIR/kubernetes/go.sum" "$TOOLCHAIN_DIR/kubernetes/main.go" "$k8s_src/"
	k8sdir=$(go -C "$k8s_src" list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
	[[ -f "$k8sdir/cmd/pulumi-resource-kubernetes/schema.json" ]] || go -C "$k8s_src" mod download github.com/pulumi/pulumi-kubernetes/provider/v4
	k8sdir=$(go -C "$k8s_src" list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
	python3 - "$k8sdir/cmd/pulumi-resource-kubernetes" "$k8s_src" "$TOOLCHAIN_PULUMI_KUBERNETES" <<'PY' ||
import json, sys
src, dst, version = sys.argv[1:4]
schema = json.load(open(f"{src}/schema.json"))
schema["version"] = version
json.dump(schema, open(f"{dst}/schema-embed.json", "w"), separators=(",", ":"))
mapping = json.load(open(f"{src}/terraform-mapping.json"))
json.dump(mapping, open(f"{dst}/terraform-mapping-embed.json", "w"), separators=(",", ":"))
PY
		die "preparing kubernetes schema files"
	step pulumi-resource-kubernetes go -C "$k8s_src" build \
		-ldflags "$ldflags -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$TOOLCHAIN_PULUMI_KUBERNETES" \
		-o "$out/pulumi-resource-kubernetes" .
	rm -rf "$(dirname "$out")/src"
}

# Each part: reused when its key's folder is complete, else built there.
work="$dest.partial"
rm -rf "$work"
mkdir -p "$work/bin"
built=()
for part in $TOOLCHAIN_PARTS; do
	pdir=$(toolchain_part_dir "$part")
	if [[ -f "$pdir/.complete" ]]; then
		say "  $part: cached at $pdir"
	else
		rm -rf "$pdir.partial"
		mkdir -p "$pdir.partial/bin"
		ps=$(date +%s)
		"build_$part" "$pdir.partial/bin"
		echo "# $part built $(date -u +%Y-%m-%dT%H:%M:%SZ) with go $gover in $(($(date +%s) - ps))s" >"$pdir.partial/built"
		touch "$pdir.partial/.complete"
		rm -rf "$pdir"
		mv "$pdir.partial" "$pdir"
		built+=("$part")
	fi
	# Hard links (same file system), else copies: not symlinks, because the CLI finds the
	# language host next to its own resolved path.
	cp -l "$pdir/bin/"* "$work/bin/" 2>/dev/null || cp -p "$pdir/bin/"* "$work/bin/"
done

{
	cat "$TOOLCHAIN_DIR/versions.env"
	echo "# assembled $(date -u +%Y-%m-%dT%H:%M:%SZ) with go $gover in $(elapsed)s; built: ${built[*]:-nothing}"
} >"$work/versions.env"
touch "$work/.complete"
rm -rf "$dest"
mv "$work" "$dest"

say "built ${built[*]:-nothing} in $(elapsed)s (each part cached under its own key; Go build cache $(go env GOCACHE) is reused across keys)"
say "Go module cache $modcache: +$(downloaded_mb) MB downloaded"
say "bin size $(du -sh "$bin" | cut -f1): $bin"
say "cached at $bin"
