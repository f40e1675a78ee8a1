# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared by lab-up.sh, lab-down.sh and lab-host.sh: where the lab keeps its state, the names of
# what it creates, and the per-host start/stop logic. Sourced, never run.

lab_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_REPO="$(cd "$lab_here/.." && pwd)"
LAB_DIR="${HOMELAB_LAB_DIR:-$LAB_REPO/build/lab}"
LAB_STACK="${HOMELAB_LAB_STACK:-$LAB_REPO/Pulumi.lab.yaml}"
# Spare hosts that are up but not in the stack file (the e2e adds one to the config):
# space-separated hostname:address:role.
LAB_EXTRA_HOSTS="${HOMELAB_LAB_EXTRA_HOSTS-lab-gen-4:10.77.0.24:agent}"
LAB_PYTHON="${HOMELAB_LAB_PYTHON:-$LAB_REPO/.venv/bin/python}"
# Who the program logs in as: Raspberry Pi OS's user, with passwordless sudo (lab/rootfs.sh).
LAB_SSH_USER=pi

LAB_BRIDGE=labbr0
LAB_BRIDGE_ADDR=10.77.0.1
LAB_PREFIX_LEN=24
LAB_SUBNET_PREFIX=10.77.0.
LAB_NS_PREFIX=hl-
LAB_API_PORT=6443
LAB_API_URL="https://$LAB_BRIDGE_ADDR:$LAB_API_PORT"
LAB_ETCD_CLIENT=127.0.0.1:12379
LAB_ETCD_PEER=127.0.0.1:12380
LAB_SERVICE_CIDR=10.43.0.0/16
LAB_SERVICE_API_IP=10.43.0.1
LAB_CLUSTER_CIDR=10.42.0.0/16

# Everything lab-up makes under LAB_DIR; lab-down removes exactly these (LAB_DIR itself also
# holds the k3s air-gap folder and build logs, which are not the lab's to delete).
LAB_RUN="$LAB_DIR/run"
LAB_PKI="$LAB_DIR/pki"
LAB_HOSTS_DIR="$LAB_DIR/hosts"
LAB_ETCD_DATA="$LAB_DIR/etcd"
# What the k3s double's servers and joiners share, as k3s servers share their datastore: the
# cluster CA's hash and the supervisor's users (mounted in every host at /var/lib/lab-datastore).
LAB_DATASTORE="$LAB_DIR/datastore"
LAB_MADE_FILES=(env.sh id_ed25519 id_ed25519.pub known_hosts hosts.json admin.kubeconfig agent.sock)

log() { echo "lab: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# "hostname address role cpu memory storage-path" per line: the stack file's nodes, then the
# spare hosts; cpu/memory: the simulated hardware from lab/hosts.env (not the config's capacity);
# storage "-" if none.
LAB_HARDWARE="${HOMELAB_LAB_HARDWARE:-$lab_here/hosts.env}"
lab_hosts() {
    [[ -f "$LAB_STACK" ]] || die "no stack file $LAB_STACK"
    local name addr role storage cpu memory extra
    while read -r name addr role storage; do
        read -r cpu memory < <(awk -v h="$name" '$1 == h { print $2, $3; found = 1 } END { exit !found }' "$LAB_HARDWARE") ||
            die "host $name has no hardware line in $LAB_HARDWARE"
        echo "$name $addr $role $cpu $memory $storage"
    done < <(
        "$LAB_PYTHON" - "$LAB_STACK" <<'PY'
import sys
import yaml
with open(sys.argv[1]) as f:
    rack = yaml.safe_load(f)["config"]["homelab:rack"]
for node in rack["nodes"]:
    storage = (node.get("storage") or {}).get("path") or "-"
    print(node["hostname"], node["address"], node["role"], storage)
PY
        for extra in $LAB_EXTRA_HOSTS; do
            echo "${extra//:/ } -"
        done
    )
}

ns_of() { echo "$LAB_NS_PREFIX$1"; }
# veth names are limited to 15 characters: use the address's last octet.
veth_of() { echo "labv${1##*.}"; }

# A process that exists and is not a zombie (an exited daemon whose parent is gone stays a
# zombie until PID 1 reaps it).
alive() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Stop the processes recorded in pid files ("PID BINARY"), only those still running the binary
# they were started as: TERM to all at once, KILL whatever is left after 10 s.
kill_pidfiles() {
    local file pid want exe pids=()
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        pid="" want=""
        read -r pid want <"$file" || true
        if [[ -n "$pid" ]] && alive "$pid"; then
            exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
            if [[ -z "$want" || "$exe" == "$want" ]]; then
                kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
            fi
        fi
        rm -f "$file"
    done
    for _ in $(seq 100); do
        for pid in "${pids[@]}"; do alive "$pid" && break; pid=""; done
        [[ -n "${pid:-}" ]] || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# Kill every process inside a network namespace (the host's sshd, its sessions, whatever they
# started, the k3s supervisor). The host's mount namespace dies with its last process.
kill_netns_pids() {
    local ns="$1" pids round
    for round in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        [[ -n "$pids" ]] || return 0
        # shellcheck disable=SC2086
        if ((round < 5)); then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
        sleep 0.3
    done
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    [[ -z "$pids" ]] || log "WARNING: processes left in $ns: $pids"
}

# Start a host: systemd-nspawn booting the host's Debian root (lab-host-init.sh) inside the host's
# network namespace and a private mount namespace (its "SSD" mounted at the storage path, if it
# has one); the k3s supervisor (lab/k3s-supervisor.py) on servers.
host_start() {
    local name="$1" addr="$2" role="$3" storage="${4:--}" ns hd
    ns="$(ns_of "$name")"
    hd="$LAB_HOSTS_DIR/$name"
    [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] || die "host $name is already running"
    # Not `ip netns exec`: it remounts /sys without the cgroup hierarchies nspawn needs; nspawn
    # joins the namespace itself (--network-namespace-path).
    LAB_HOST_NETNS="$ns" setsid unshare --mount --propagation private -- \
        "$lab_here/lab-host-init.sh" "$name" "$hd" "$(cat "$LAB_RUN/bin")" "$(cat "$LAB_RUN/rootfs")" "$LAB_DATASTORE" "$storage" \
        </dev/null >>"$hd/console.log" 2>&1 &
    if [[ "$role" == server ]]; then
        # A k3s server serves its supervisor (/cacerts, /ping) and the API on :6443 of its own
        # address (and 127.0.0.1 inside the host). The lab's one kube-apiserver sits on the
        # bridge: lab/k3s-supervisor.py answers as the server and passes the rest to it.
        setsid ip netns exec "$ns" "$(readlink -f "$LAB_PYTHON")" "$lab_here/k3s-supervisor.py" \
            "0.0.0.0:$LAB_API_PORT" "$LAB_BRIDGE_ADDR:$LAB_API_PORT" "$LAB_PKI" \
            </dev/null >>"$hd/k3s-supervisor.log" 2>&1 &
    fi
}

host_stop() {
    kill_netns_pids "$(ns_of "$1")"
    host_cgroups_remove "$1"
}

# The cgroups lab-host-init.sh made for a host (and what its systemd made under them): whatever
# still runs in them (systemd-nspawn, which lives outside the host's network namespace) is
# killed, then they are removed.
host_cgroups_remove() {
    local hierarchy dir pids
    for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
        dir="$hierarchy/lab-hosts/${1:-}"
        [[ -d "$dir" ]] || continue
        for _ in $(seq 50); do
            pids="$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
            [[ -n "${pids// /}" ]] || break
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            sleep 0.1
        done
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || log "WARNING: cgroup $dir is not empty"
    done
    rm -rf "/run/systemd/nspawn/propagate/${1:-}"
}

# Wait until a host has booted: its sshd answers with its own host key, the lab key logs in as
# pi, and pi's sudo works without a password.
host_wait_ssh() {
    local name="$1" addr="$2"
    for _ in $(seq 300); do
        if ssh -i "$LAB_DIR/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
            -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$LAB_DIR/known_hosts" \
            -o IdentitiesOnly=yes -o LogLevel=ERROR "$LAB_SSH_USER@$addr" sudo -n true 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    log "console of $name:"
    tail -n 20 "$LAB_HOSTS_DIR/$name/console.log" >&2 || true
    die "host $name ($addr) does not answer on ssh"
}
