# shellcheck shell=bash
# Source this file (bash) to use the offline Pulumi toolchain:
#
#   . toolchain/env.sh
#
# It puts the cached toolchain (built by toolchain/build.sh, `make toolchain`)
# first on PATH when it exists, and points Pulumi at this checkout's ignored
# build/ directory, so nothing touches ~/.pulumi or any service:
#
#   PULUMI_HOME=$REPO/build/pulumi-home       plugins/credentials of this checkout
#   PULUMI_BACKEND_URL=file://$REPO/build/state   local state backend
#   PULUMI_CONFIG_PASSPHRASE=""               only if neither it nor
#                                             PULUMI_CONFIG_PASSPHRASE_FILE is set:
#                                             an empty passphrase is fine for the
#                                             lab, never for a real rack
#   PULUMI_SKIP_UPDATE_CHECK=true
#   PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true   fail fast, never download
#   PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
#   HOMELAB_TOOLCHAIN_BIN=<cache>/<key>/bin   (exported for scripts; may not exist yet)

# shellcheck source=toolchain/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOMELAB_TOOLCHAIN_BIN="$(toolchain_bin)"
export HOMELAB_TOOLCHAIN_BIN
if [ -d "$HOMELAB_TOOLCHAIN_BIN" ]; then
	case ":$PATH:" in
	*":$HOMELAB_TOOLCHAIN_BIN:"*) ;;
	*) PATH="$HOMELAB_TOOLCHAIN_BIN:$PATH" ;;
	esac
	export PATH
fi

mkdir -p "$TOOLCHAIN_REPO/build/pulumi-home" "$TOOLCHAIN_REPO/build/state"
export PULUMI_HOME="$TOOLCHAIN_REPO/build/pulumi-home"
export PULUMI_BACKEND_URL="file://$TOOLCHAIN_REPO/build/state"
if [ -z "${PULUMI_CONFIG_PASSPHRASE+set}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
	export PULUMI_CONFIG_PASSPHRASE=""
fi
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
