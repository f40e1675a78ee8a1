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

# The toolchain is built in parts, each cached under its own key, so that a
# change to one part (say command/main.go) rebuilds that part only: the CLI
# alone takes ~18 minutes cold on 2 cores.
#   cli         pulumi                                   (cli/)
#   python      pulumi-language-python, -exec, pulumi-resource-pulumi-python (python/)
#   command     pulumi-resource-command                  (command/)
#   kubernetes  pulumi-resource-kubernetes               (kubernetes/)
TOOLCHAIN_PARTS="cli python command kubernetes"

# The versions.env keys each part is built from.
toolchain_part_pins() {
	case "$1" in
	cli) echo "TOOLCHAIN_PULUMI" ;;
	python) echo "TOOLCHAIN_PULUMI_LANGUAGE_PYTHON" ;;
	command) echo "TOOLCHAIN_PULUMI TOOLCHAIN_PULUMI_COMMAND" ;;
	kubernetes) echo "TOOLCHAIN_PULUMI_KUBERNETES_MODULE TOOLCHAIN_PULUMI_KUBERNETES" ;;
	*) return 1 ;;
	esac
}

# The files that decide what one part is: its folder's module files and
# hand-written main, plus the build script and this file (how it is built).
toolchain_part_inputs() {
	(cd "$TOOLCHAIN_DIR" && ls build.sh lib.sh "$1"/go.mod "$1"/go.sum && if [ -f "$1/main.go" ]; then ls "$1/main.go"; fi)
}

# Short content hash of one part's inputs and its pin lines.
toolchain_part_key() {
	local part=$1 pins key
	pins=$(toolchain_part_pins "$part") || return 1
	{
		echo "part $part"
		(cd "$TOOLCHAIN_DIR" && toolchain_part_inputs "$part" | xargs sha256sum)
		for key in $pins; do grep -E "^$key=" "$TOOLCHAIN_DIR/versions.env"; done
	} | sha256sum | cut -c1-16
}

# Where a part is cached: <root>/parts/<part>-<part key>/bin.
toolchain_part_dir() {
	printf '%s/parts/%s-%s\n' "$(toolchain_cache_root)" "$1" "$(toolchain_part_key "$1")"
}

# The assembled toolchain's key: a hash of the part keys, so it changes when
# any part does. <root>/<key>/bin holds hard links to the parts' binaries.
toolchain_key() {
	local part
	for part in $TOOLCHAIN_PARTS; do
		printf '%s %s\n' "$part" "$(toolchain_part_key "$part")"
	done | sha256sum | cut -c1-16
}

toolchain_bin() {
	printf '%s/%s/bin\n' "$(toolchain_cache_root)" "$(toolchain_key)"
}
