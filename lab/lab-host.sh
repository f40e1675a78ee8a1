#!/usr/bin/env bash
# Take one lab host down or bring it back (root), for the "host is down" step of the e2e:
#   lab-host.sh stop HOSTNAME    kill everything in the host (sshd, sessions, k3s supervisor):
#                                ssh to it is refused, like a host whose sshd is gone
#   lab-host.sh start HOSTNAME   boot it again: same network, same disk (its overlay upper dirs
#                                keep what was written, like a reboot), fresh /tmp and /run
#   lab-host.sh status HOSTNAME  prints up or down
set -euo pipefail
# shellcheck source=lab/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

[[ $# -eq 2 ]] || die "usage: $0 stop|start|status HOSTNAME"
[[ $EUID -eq 0 ]] || die "lab-host needs root"
verb="$1"
want="$2"
line=""
while read -r name addr role _ _ storage; do
    [[ "$name" == "$want" ]] && line="$name $addr $role $storage"
done < <(lab_hosts)
[[ -n "$line" ]] || die "no lab host $want"
read -r name addr role storage <<<"$line"
ns="$(ns_of "$name")"
ip netns list | grep -q "^$ns\b" || die "host $name has no namespace: is the lab up?"
case "$verb" in
    stop) host_stop "$name"; log "host $name stopped" ;;
    start)
        host_start "$name" "$addr" "$role" "$storage"
        host_wait_ssh "$name" "$addr"
        # Booted: systemd has started every enabled unit (k3s among them, as after a reboot).
        ssh -i "$LAB_DIR/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=yes \
            -o UserKnownHostsFile="$LAB_DIR/known_hosts" -o IdentitiesOnly=yes -o LogLevel=ERROR \
            "$LAB_SSH_USER@$addr" timeout 120 systemctl is-system-running --wait >/dev/null || true
        log "host $name started"
        ;;
    status) if [[ -n "$(ip netns pids "$ns")" ]]; then echo up; else echo down; fi ;;
    *) die "usage: $0 stop|start|status HOSTNAME" ;;
esac
