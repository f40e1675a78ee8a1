#!/usr/bin/env bash
# The init of one lab host. lab-up runs it inside the host's network namespace and a fresh,
# private mount + UTS namespace (`ip netns exec NS unshare --mount --uts --propagation private`):
#
#   - hostname: the host's own (UTS namespace);
#   - /etc /usr /var /opt /srv /home: copy-on-write overlays of the machine's directories,
#     whose writes land in <host dir>/upper/<dir> — k3s' /usr/local/bin, /etc/rancher,
#     /var/lib/rancher, /etc/systemd/system, the storage path under /srv... written on one host
#     are invisible to the others and to the machine, and survive a host stop/start (reboot);
#   - /usr/local: the host's own, initially empty directory (k3s installs to /usr/local/bin);
#   - /root: the host's own home, holding only what lab-up put there (.ssh/authorized_keys), as on a
#     fresh Pi: not the machine's /root, whose shell start-up files (a pyenv init that takes a lock
#     on every login) would run in every SSH session the program opens;
#   - /tmp: the host's own directory, emptied at every start; /run: a fresh tmpfs (no view of the machine's /run);
#
# then execs a real OpenSSH server in the foreground (its config and host key were put in the
# upper /etc by lab-up). The mounts exist only in this mount namespace and vanish with its last
# process; nothing is mounted in the machine's namespace.
#   - /opt/lab/bin: the lab's binaries (kubectl, ...), read-only — what k3s' embedded kubectl
#     would be on a real host;
#
#   - the storage path (rack.nodes[].storage.path), if any: <host dir>/storage bind-mounted
#     there, so it is a mounted filesystem like the node's SSD and outlives the host's disk;
#
#   lab-host-init.sh HOSTNAME HOST_DIR LAB_BIN [STORAGE_PATH|-]
set -euo pipefail
name="$1"
hd="$2"
lab_bin="$3"
storage="${4:--}"

hostname "$name"
for d in etc usr var opt srv home; do
    [[ -d "/$d" ]] || continue
    mount -t overlay "lab-$name-$d" \
        -o "lowerdir=/$d,upperdir=$hd/upper/$d,workdir=$hd/work/$d" "/$d"
done
# A fresh host has an empty /usr/local: the machine's own tools there are not the host's.
mount --bind "$hd/usr-local" /usr/local
mkdir -p /opt/lab/bin
mount --bind "$lab_bin" /opt/lab/bin
mount -o remount,bind,ro /opt/lab/bin
# Binds whose sources may live under the machine's /root or /tmp, in that order: the lab's build
# cache (under /root) before /root is the host's own; the host dir (under /tmp for a checkout
# there, as CI's may be) before /tmp is.
if [[ "$storage" != - ]]; then
    mkdir -p "$storage"
    mount --bind "$hd/storage" "$storage"
fi
mount --bind "$hd/upper/root" /root
find "$hd/tmp" -mindepth 1 -delete # /tmp starts empty at every boot
mount --bind "$hd/tmp" /tmp
mount -t tmpfs -o mode=0755,size=64m "lab-$name-run" /run
mkdir -p /run/sshd /run/lock
chmod 0755 /run/sshd
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
