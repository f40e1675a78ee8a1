#!/usr/bin/env bash
# Tear the lab down (root): processes, host namespaces (and with them their mounts), veths, the
# bridge, and everything lab-up wrote under build/lab. Idempotent; works after a failed or
# partial lab-up. Exits non-zero if something it made is still there afterwards.
set -uo pipefail
# shellcheck source=lab/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

[[ $EUID -eq 0 ]] || die "lab-down needs root"
start=$SECONDS

# Control plane and agent, by recorded pid (only if still the same binary).
pidfiles=()
for name in servicelb-double kwok kube-scheduler kube-controller-manager kube-apiserver etcd ssh-agent; do
    pidfiles+=("$LAB_RUN/$name.pid")
done
kill_pidfiles "${pidfiles[@]}"
# Anything else of this lab still running one of the lab's binaries (a pid file lost to a
# crash). The binary cache is shared by every checkout on the machine, so a process counts as
# this lab's only if its command line names a file under this lab's LAB_DIR (every daemon
# lab-up starts is given its data dir, certificates or kubeconfigs there): another checkout's
# lab, or a test's own API server run from the cache, is left alone.
cache_root="${HOMELAB_LAB_CACHE:-$HOME/.cache/homelab-rack/lab}/"
while read -r exe_link; do
    pid="${exe_link#/proc/}"
    pid="${pid%/exe}"
    args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || continue
    [[ "$args" == *"$LAB_DIR/"* ]] || continue
    log "killing leftover $(readlink "$exe_link") (pid $pid)"
    kill -KILL "$pid" 2>/dev/null
done < <(find /proc/[0-9]*/exe -maxdepth 0 -lname "$cache_root*" 2>/dev/null)

# Hosts: every namespace with the lab's prefix.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$LAB_NS_PREFIX"); do
    kill_netns_pids "$ns"
    host_cgroups_remove "${ns#"$LAB_NS_PREFIX"}"
    ip netns del "$ns" 2>/dev/null || log "WARNING: could not delete netns $ns"
done
for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    [[ ! -d "$hierarchy/lab-hosts" ]] || find "$hierarchy/lab-hosts" -depth -type d -exec rmdir {} + 2>/dev/null ||
        log "WARNING: $hierarchy/lab-hosts is not empty"
done
for veth in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^labv'); do
    ip link del "$veth" 2>/dev/null
done
ip link show "$LAB_BRIDGE" >/dev/null 2>&1 && ip link del "$LAB_BRIDGE"

rm -rf "$LAB_RUN" "$LAB_PKI" "$LAB_HOSTS_DIR" "$LAB_ETCD_DATA" "$LAB_DATASTORE"
for f in "${LAB_MADE_FILES[@]}"; do rm -f "${LAB_DIR:?}/$f"; done

left=()
ip link show "$LAB_BRIDGE" >/dev/null 2>&1 && left+=("bridge $LAB_BRIDGE")
ip netns list 2>/dev/null | grep -q "^$LAB_NS_PREFIX" && left+=("namespaces")
grep -q " ${LAB_DIR}/" /proc/mounts && left+=("mounts under $LAB_DIR")
[[ -e "$LAB_HOSTS_DIR" ]] && left+=("$LAB_HOSTS_DIR")
for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    [[ -d "$hierarchy/lab-hosts" ]] && left+=("cgroup $hierarchy/lab-hosts")
done
if ((${#left[@]})); then
    die "left behind: ${left[*]}"
fi
log "down in $((SECONDS - start)) s"
