#!/usr/bin/env bash
# Boot one lab host. lab-up runs it in a fresh, private mount namespace
# (`unshare --mount --propagation private`); nspawn puts the host in its network namespace:
#
#   - the host's disk: a copy-on-write overlay of the lab's Debian root filesystem
#     (lab/rootfs.sh: systemd, stock openssh-server, sudo, user pi), whose writes land in
#     <host dir>/upper — k3s' /usr/local/bin, /etc/rancher, /var/lib/rancher,
#     /etc/systemd/system... written on one host are invisible to the others and to the machine,
#     and survive a host stop/start (reboot). lab-up put the host's own files in the upper dir
#     (hostname, hosts, host keys, pi's authorized_keys, /etc/lab);
#   - its own cgroup (lab-hosts/<hostname> in every cgroup hierarchy the machine mounts), under
#     which the host's systemd keeps its units;
#
# then execs systemd-nspawn, which boots /lib/systemd/systemd as PID 1 of a new PID, mount, UTS
# and IPC namespace over that disk, in the host's network namespace. systemd starts ssh.service
# (Debian's unit and sshd_config) and, once installed, k3s.service / k3s-agent.service.
# The mounts exist only in this mount namespace and vanish with its last process.
#   - /opt/lab/bin: the lab's binaries (kubectl, ...), read-only — what k3s' embedded kubectl
#     would be on a real host;
#   - the storage path (rack.nodes[].storage.path), if any: <host dir>/storage bind-mounted
#     there, so it is a mounted filesystem like the node's SSD and outlives the host's disk.
#
#   - /var/lib/lab-datastore: the directory the k3s double's servers and joiners share (k3s: the
#     servers' datastore; the CA hash and the supervisor's users, lab/k3s-double/README.md);
#
#   lab-host-init.sh HOSTNAME HOST_DIR LAB_BIN ROOTFS DATASTORE [STORAGE_PATH|-]
set -euo pipefail
name="$1"
hd="$2"
lab_bin="$3"
rootfs="$4"
datastore="$5"
storage="${6:--}"

for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    [[ -f "$hierarchy/cgroup.procs" ]] || continue
    mkdir -p "$hierarchy/lab-hosts/$name"
    echo $$ >"$hierarchy/lab-hosts/$name/cgroup.procs"
done
mkdir -p "$hd/root"
mount -t overlay "lab-$name" -o "lowerdir=$rootfs,upperdir=$hd/upper,workdir=$hd/work" "$hd/root"
binds=(--bind-ro="$lab_bin:/opt/lab/bin" --bind="$datastore:/var/lib/lab-datastore")
[[ "$storage" == - ]] || binds+=(--bind="$hd/storage:$storage")
# --register=no --keep-unit: the machine runs no systemd of its own to register with.
exec systemd-nspawn --quiet --boot --register=no --keep-unit --machine="$name" \
    --network-namespace-path="/run/netns/${LAB_HOST_NETNS:?}" \
    --directory="$hd/root" --console=read-only --link-journal=no "${binds[@]}"
