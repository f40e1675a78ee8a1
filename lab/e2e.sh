#!/usr/bin/env bash
# `make e2e` (root): a fresh lab (lab-up), the steps of the lab guide (lab/e2e.py) with the
# real Pulumi engine and providers, then lab-down — also when a step fails or the run is
# interrupted. Exit status is the e2e's. HOMELAB_E2E_KEEP=1 leaves the lab up for debugging.
# `lab/e2e.sh e2e_faults.py` (`make e2e-faults`) runs the fault steps in a fresh lab the same way.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
[[ $EUID -eq 0 ]] || { echo "e2e: needs root (the lab's namespaces)" >&2; exit 1; }

# shellcheck source=toolchain/env.sh
. "$repo/toolchain/env.sh"
command -v pulumi >/dev/null || { echo "e2e: no pulumi CLI: run \`make toolchain\`" >&2; exit 1; }

# One lab per machine (labbr0, 10.77.0.0/24): wait for any other e2e or lab test to finish
# (the same lock as tests/prereq.py machine_lock("lab")).
mkdir -p /run/lock
exec 8>/run/lock/homelab-rack-lab.lock
flock 8

teardown() {
    local rc=$?
    if [[ "${HOMELAB_E2E_KEEP:-}" == 1 ]]; then
        echo "e2e: HOMELAB_E2E_KEEP=1: the lab stays up (make lab-down removes it)" >&2
    else
        "$here/lab-down.sh" >&2 || rc=1
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

start=$SECONDS
"$here/lab-up.sh"
echo "e2e: lab up in $((SECONDS - start)) s"
# shellcheck source=/dev/null
. "$repo/build/lab/env.sh"
script="${1:-e2e.py}"
[[ "$script" == e2e.py || "$script" == e2e_faults.py ]] || { echo "e2e: unknown script $script" >&2; exit 2; }
"$repo/.venv/bin/python" "$here/$script"
