#!/usr/bin/env bash
# The root filesystem every lab host boots (root): Debian bookworm from Debian's own packages
# (mmdebstrap), systemd as init, the stock openssh-server (Debian's sshd_config, untouched), sudo,
# and a `pi` user with passwordless sudo as Raspberry Pi OS sets it up
# (/etc/sudoers.d/010_pi-nopasswd). Host keys are removed: lab-up gives every host its own
# ed25519, ECDSA and RSA keys, as first boot does on a Pi.
#
# Cached under ${HOMELAB_LAB_CACHE:-~/.cache/homelab-rack/lab}/rootfs-<hash>, the hash over this
# file (the package list and the set-up steps are in it): a cached build is a no-op. Prints the
# directory. Needs the Debian mirror (apt) the first time, ~75 s.
set -euo pipefail
[[ $EUID -eq 0 ]] || { echo "rootfs: needs root (mmdebstrap in root mode)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "rootfs: no mmdebstrap (apt-get install mmdebstrap systemd-container)" >&2; exit 1; }

SUITE=bookworm
MIRROR="${HOMELAB_LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What a Raspberry Pi OS Lite host has that the program and the k3s double use: systemd (init,
# systemctl, logind through PAM as on a Pi), OpenSSH, sudo, curl, python3 and python3-yaml (the
# double), iproute2,
# procps, util-linux (mountpoint, for the preflight).
PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,sudo,curl,ca-certificates,python3,python3-yaml,iproute2,procps,util-linux

cache="${HOMELAB_LAB_CACHE:-$HOME/.cache/homelab-rack/lab}"
key="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
out="$cache/rootfs-$key"
if [[ -f "$out/.complete" ]]; then
    echo "$out/rootfs"
    exit 0
fi
rm -rf "$out"
mkdir -p "$out"
start=$SECONDS
# Set-up in the new root, as Raspberry Pi OS's first boot leaves it:
#   - user pi (uid 1000), groups as on Raspberry Pi OS where they exist here, password locked
#     (key login only), passwordless sudo in /etc/sudoers.d/010_pi-nopasswd (mode 0440);
#   - no host keys (lab-up writes each host's own), no machine-id (systemd makes one at boot);
#   - journald forwards to the console: the lab keeps each host's console as its log
#     (build/lab/hosts/<hostname>/console.log). Only lab plumbing; sshd is left as Debian ships it.
mmdebstrap --variant=minbase --include="$PACKAGES" \
    --customize-hook='chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash --groups adm,sudo,users pi' \
    --customize-hook='chroot "$1" passwd --lock pi >/dev/null' \
    --customize-hook='echo "pi ALL=(ALL) NOPASSWD: ALL" >"$1/etc/sudoers.d/010_pi-nopasswd"; chmod 0440 "$1/etc/sudoers.d/010_pi-nopasswd"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*; : >"$1/etc/machine-id"' \
    --customize-hook='mkdir -p "$1/etc/systemd/journald.conf.d"; printf "[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\n" >"$1/etc/systemd/journald.conf.d/lab-console.conf"' \
    "$SUITE" "$out/rootfs" "$MIRROR" >"$out/mmdebstrap.log" 2>&1 ||
    { tail -n 20 "$out/mmdebstrap.log" >&2; echo "rootfs: mmdebstrap failed (log: $out/mmdebstrap.log)" >&2; exit 1; }
touch "$out/.complete"
echo "rootfs: built $out/rootfs in $((SECONDS - start)) s" >&2
echo "$out/rootfs"
