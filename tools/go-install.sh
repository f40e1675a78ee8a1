# shellcheck shell=bash
# Shared by the scripts that build a test binary from the Go module proxy at a pinned release
# (tools/build-coredns.sh, tools/build-actionlint.sh, monitoring/build-vm.sh); sourced, bash.
#
#   go_install_pinned NAME BIN VERSION PACKAGE...
#
# builds each PACKAGE (all of one module) at vVERSION into BIN/<last element of PACKAGE> with
# `go install PACKAGE@vVERSION`: the module's own go.mod decides every dependency (what its release
# build uses; `go install` refuses a module with replace directives, none of the three has one),
# and `-version` reports the release (the main module is the pinned one, not a scratch module).
# Cached: with every binary present it does nothing. Prints the BIN directory as the last word of
# its last line (tests/workflows/test_actionlint.py reads it). CGO off; no downloads other than Go
# modules (and, if the module asks for a newer Go, the toolchain module, GOTOOLCHAIN=auto).
go_install_pinned() {
	local name=$1 bin=$2 version=$3 pkg missing=0 start
	shift 3
	for pkg in "$@"; do [ -x "$bin/${pkg##*/}" ] || missing=1; done
	if [ "$missing" = 0 ]; then
		echo "$name: v$version already built in $bin"
		return 0
	fi
	command -v go >/dev/null 2>&1 || { echo "$name: go not found" >&2; return 1; }
	mkdir -p "$bin"
	rm -rf "$bin.tmp"
	start=$(date +%s)
	(
		export CGO_ENABLED=0 GOTOOLCHAIN=auto GOBIN="$bin.tmp"
		go install -trimpath -ldflags "-s -w" "${@/%/@v$version}"
	)
	for pkg in "$@"; do mv "$bin.tmp/${pkg##*/}" "$bin/${pkg##*/}"; done
	rmdir "$bin.tmp"
	echo "$name: v$version built in $(($(date +%s) - start))s -> $bin"
}
