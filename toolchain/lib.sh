# shellcheck shell=bash
# Shared by toolchain/build.sh and toolchain/env.sh (sourced, bash).
# Computes where the toolchain for the current pins lives.

# Directory of this file, and of the repository above it.
TOOLCHAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLCHAIN_REPO="$(cd "$TOOLCHAIN_DIR/.." && pwd)"
export TOOLCHAIN_DIR TOOLCHAIN_REPO

# Root of the per-user cache; outside the repository so fresh clones reuse it.
toolchain_cache_root() {
	printf '%s\n' "${HOMELAB_TOOLCHAIN_CACHE:-${HOME:-/root}/.cache/homelab-rack/toolchain}"
}

# The inputs that decide what gets built: pins, Go module files, the
# hand-written mains and the build script itself.
toolchain_inputs() {
	(cd "$TOOLCHAIN_DIR" && ls versions.env build.sh lib.sh \
		cli/go.mod cli/go.sum \
		python/go.mod python/go.sum python/main.go \
		command/go.mod command/go.sum command/main.go \
		kubernetes/go.mod kubernetes/go.sum kubernetes/main.go)
}

# Short content hash of those inputs: the cache directory name.
toolchain_key() {
	(cd "$TOOLCHAIN_DIR" && toolchain_inputs | xargs sha256sum | sha256sum | cut -c1-16)
}

toolchain_bin() {
	printf '%s/%s/bin\n' "$(toolchain_cache_root)" "$(toolchain_key)"
}
