"""Pure builders of everything k3s runs over SSH: config.yaml and the bash scripts.

Creates nothing. `K3sNode` and `K3sCluster` put these strings into `remote.Command`s; the tests
shellcheck every one and run them over real SSH. Each script is idempotent: run twice it
changes nothing the second time, and re-run after a failure half-way it converges.

Secrets never appear here: the join token arrives on stdin and is written to a 0600 file that
config.yaml names (`token-file`), so neither the command text nor config.yaml carries it.

`HostLayout.root` prefixes every path k3s owns on the host. It is "" on a real host; the
real-SSH tests give each network-namespace host its own root because namespaces share one
filesystem (see tests/real/ssh/conftest.py).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml

from components.core.layout import (
    CATEGORY_LABEL,
    CONTROL_PLANE_TAINT,
    LABEL_PREFIX,
    Taint,
    node_labels,
    node_taints,
)
from rack.config import Datastore, InstallSource, Node, Rack
from rack.vocabulary import Arch, Category, Role

API_PORT = 6443
"""The k3s supervisor/API port servers listen on and agents join through."""

STAGING = "/var/tmp/homelab-k3s"
"""Where CopyToRemote drops the air-gap binary and install.sh (per version), as the SSH user."""

TOKEN_FILE = "/etc/rancher/k3s/join-token"
"""The 0600 file holding the join token that config.yaml's `token-file` names: the cluster token on
the bootstrap server, the server token on the other servers, the agent token on agents."""
AGENT_TOKEN_FILE = "/etc/rancher/k3s/agent-token"
"""Servers only: the 0600 file config.yaml's `agent-token-file` names, the agent token's secret."""

CONFIG_FILE = "/etc/rancher/k3s/config.yaml"
RESOLV_CONF_PATH = "/etc/rancher/k3s/resolv.conf"
"""The resolver file config.yaml's `resolv-conf` names: `dns.upstream`, what the kubelet hands pods
with `dnsPolicy: Default`, CoreDNS among them (its `forward . /etc/resolv.conf`). k3s uses a
file given this way as is, without its loopback checks (k3s docs, advanced: Configuring DNS
Resolution)."""
REGISTRIES_PATH = "/etc/rancher/k3s/registries.yaml"
"""k3s' private registry file (k3s docs, Private Registry Configuration): the rack's own registry
with the pull account's credentials, so it holds a password: 0600, written from stdin. k3s renders
it into containerd's config when it starts, so a change restarts k3s."""
REGISTRY_CA_PATH = "/etc/rancher/k3s/rack-ca.crt"
"""The rack CA's certificate, which registries.yaml's `tls.ca_file` names: containerd verifies the
registry with this file (the system store is the node-trust step's; containerd needs a path)."""
REGISTRIES_HEADER = "# Written by homelab-rack: the rack's own registry (rack.gitea). Changes here are overwritten.\n"
"""The first line of the registries.yaml this program writes: without a registry to configure it
removes only a file that starts with it, never one the user wrote."""
SERVER_TOKEN_FILE = "/var/lib/rancher/k3s/server/token"
"""Written by a k3s server: the full-format token (`K10<ca-hash>::server:<secret>`), which pins the CA."""
SERVER_AGENT_TOKEN_FILE = "/var/lib/rancher/k3s/server/agent-token"
"""Written by a k3s server: the full-format agent token (`K10<ca-hash>::node:<secret>`) when
`agent-token` is set, else a link to the server token (k3s docs, cli/token)."""
KUBECONFIG_FILE = "/etc/rancher/k3s/k3s.yaml"
KUBELET_KUBECONFIG = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
"""Written by every k3s node once its agent has its certificates: the readiness signal."""

MIN_MEMORY_MIB: dict[Role, int] = {Role.SERVER: 1800, Role.AGENT: 450}
"""MemTotal floor: k3s asks 2 GB for a server and 512 MB for an agent (a little slack for firmware)."""
MIN_AVAILABLE_MIB: dict[Role, int] = {Role.SERVER: 768, Role.AGENT: 256}
"""MemAvailable floor before install: a server with a workload measured ~1.6 GB, an agent ~270 MB."""
MIN_DISK_MIB: dict[Role, int] = {Role.SERVER: 4096, Role.AGENT: 2048}
"""Free space under /var/lib/rancher: images, the datastore, local-path volumes."""

ARCH_MACHINES: dict[Arch, tuple[str, ...]] = {
    Arch.ARM64: ("aarch64", "arm64"),
    Arch.AMD64: ("x86_64", "amd64"),
    Arch.ARM: ("armv7l", "armv6l", "armhf"),
}
"""`uname -m` values of each configured arch."""

CGROUP_V2_CONTROLLERS = "/sys/fs/cgroup/cgroup.controllers"
CGROUP_V1_TABLE = "/proc/cgroups"

UNINSTALL_SCRIPTS = ("k3s-uninstall.sh", "k3s-agent-uninstall.sh")
"""What k3s' install.sh leaves in the bin dir: the server's and the agent's uninstaller."""


_MOUNT_HINT = "mount the node's SSD there (and add it to /etc/fstab) so pinned volumes do not land on the SD card"
_NO_MEMCG = "the memory cgroup controller is not active"
_BOOKWORM = "(Raspberry Pi OS Bookworm) and reboot"
_PRE_BOOKWORM = "(Raspberry Pi OS before Bookworm) and reboot"
_GRUB = "(GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot"
_SMALL_BOARD = "use a bigger board or make it an agent"


@dataclass(frozen=True, kw_only=True)
class HostLayout:
    """Where k3s lives on a host and what supervises it."""

    root: str = ""
    """Prefix of every path k3s owns; "" on a real host (a per-host directory in the SSH tests)."""

    @property
    def systemd(self) -> bool:
        """Check the k3s unit with systemctl: on every real host (the lab's run systemd too); not on
        the directory-rooted hosts of the real-service tests (tests/real/ssh, tests/real/kube),
        which run no init system."""
        return not self.root

    def path(self, absolute: str) -> str:
        return f"{self.root}{absolute}"


def service_name(role: Role) -> str:
    return "k3s" if role == Role.SERVER else "k3s-agent"


def airgap_binary_name(arch: Arch) -> str:
    """The file in `airgap-dir` holding the k3s binary for an arch (`k3s-arm64`)."""
    return f"k3s-{arch}"


def staging_dir(version: str, layout: HostLayout = HostLayout()) -> str:
    """Per-version staging folder on the host: an upgrade never overwrites the running binary's source."""
    return layout.path(f"{STAGING}/{version}")


def api_server_url(rack: Rack) -> str:
    """What joiners dial: the bootstrap server (an api-address may be a VIP that is not up yet)."""
    return f"https://{rack.bootstrap().address}:{API_PORT}"


def api_address(rack: Rack) -> str:
    """The address written into the kubeconfig and tls-san."""
    return str(rack.k3s.api_address or rack.bootstrap().address)


def system_reserved_arg(rack: Rack) -> str:
    reserve = rack.k3s.system_reserved
    return f"system-reserved=cpu={reserve.cpu},memory={reserve.memory}"


def render_resolv_conf(rack: Rack) -> str:
    """The resolv.conf every node writes at RESOLV_CONF_PATH: one `nameserver` per `dns.upstream` (pure)."""
    return "".join(f"nameserver {address}\n" for address in rack.dns.upstream)


def render_registries(
    *, host: str, username: str, password: str, ca_file: str | None, layout: HostLayout = HostLayout()
) -> str:
    """The registries.yaml every node writes at REGISTRIES_PATH (pure): `host` (the rack's own
    registry, `<gitea.host>.<domain>`) over HTTPS with basic auth, verified with `ca_file` when
    given (else with the node's system store). No `mirrors` entry: an image named after the host
    is pulled from the host itself (containerd's default endpoint `https://<host>/v2`); a mirror
    would only add an endpoint for some other registry's names. The result holds the password:
    it travels on stdin only."""
    config: dict[str, Any] = {"auth": {"username": username, "password": password}}
    if ca_file is not None:
        config["tls"] = {"ca_file": layout.path(ca_file)}
    return REGISTRIES_HEADER + yaml.safe_dump({"configs": {host: config}}, sort_keys=True, default_flow_style=False)


def render_config(rack: Rack, node: Node, layout: HostLayout = HostLayout()) -> dict[str, Any]:
    """The k3s config.yaml of one node (pure). Labels and taints come from the layout vocabulary;
    they only apply at first registration, the NodePatch keeps them true afterwards."""
    k3s = rack.k3s
    boot = rack.bootstrap()
    labels = node_labels(node_class=node.node_class, role=node.role, arch=node.arch)
    taints = node_taints(node_class=node.node_class, role=node.role)
    config: dict[str, Any] = {
        "node-name": node.hostname,
        "node-ip": str(node.address),
        "token-file": layout.path(TOKEN_FILE),
        "node-label": sorted(f"{k}={v}" for k, v in labels.items()),
        "kubelet-arg": [system_reserved_arg(rack)],
        "resolv-conf": layout.path(RESOLV_CONF_PATH),
    }
    if taints:
        config["node-taint"] = sorted(t.to_k3s() for t in taints)
    if node.role == Role.SERVER:
        config.update(
            {
                # Agents join with this secret (user `node`), never with the server token.
                "agent-token-file": layout.path(AGENT_TOKEN_FILE),
                "cluster-cidr": str(k3s.cluster_cidr),
                "service-cidr": str(k3s.service_cidr),
                "secrets-encryption": k3s.secrets_encryption,
                "tls-san": sorted({api_address(rack), str(node.address)}),
                "write-kubeconfig-mode": "0600",
            }
        )
        if node.hostname == boot.hostname:
            if k3s.datastore == Datastore.ETCD:
                # etcd is chosen at first start and is effectively one-way: only the bootstrap server initialises it.
                config["cluster-init"] = True
        else:
            config["server"] = api_server_url(rack)
    else:
        config["server"] = api_server_url(rack)
    return config


def config_yaml(config: dict[str, Any]) -> str:
    """Deterministic YAML (sorted keys, block style): the same config always renders the same bytes."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


# --- scripts -----------------------------------------------------------------------------------

_PRELUDE = """\
set -euo pipefail
umask 022
NODE={node}
R={root}
say() {{ printf '%s: %s\\n' "$NODE" "$*"; }}
fail() {{ printf '%s: %s\\n' "$NODE" "$*" >&2; exit 1; }}
"""


def _prelude(hostname: str, layout: HostLayout) -> str:
    return _PRELUDE.format(node=shlex.quote(hostname), root=shlex.quote(layout.root))


def remote_command(script: str, *, user: str) -> str:
    """The command text for pulumi-command: the script under bash, through sudo unless the SSH
    user is root. Quoted as one word, so the remote login shell never re-parses it."""
    runner = "bash -c" if user == "root" else "sudo -n bash -c"
    return f"{runner} {shlex.quote(script)}"


def preflight_script(
    *,
    hostname: str,
    role: Role,
    arch: Arch,
    storage_path: str | None = None,
    layout: HostLayout = HostLayout(),
    cgroup_v2: str = CGROUP_V2_CONTROLLERS,
    cgroup_v1: str = CGROUP_V1_TABLE,
    min_memory_mib: int | None = None,
    min_available_mib: int | None = None,
    min_disk_mib: int | None = None,
) -> str:
    """Read-only checks before installing; every failed check is listed with what to do about it."""
    q = shlex.quote
    machines = "|".join(ARCH_MACHINES[arch])
    total = MIN_MEMORY_MIB[role] if min_memory_mib is None else min_memory_mib
    avail = MIN_AVAILABLE_MIB[role] if min_available_mib is None else min_available_mib
    disk = MIN_DISK_MIB[role] if min_disk_mib is None else min_disk_mib
    storage = ""
    if storage_path is not None:
        storage = f"""
STORAGE="$R"{q(storage_path)}
if [ ! -d "$STORAGE" ]; then
  problems+=("storage path {storage_path} does not exist: mount the node's SSD there (and add it to /etc/fstab)")
elif ! mountpoint -q "$STORAGE"; then
  problems+=("storage path {storage_path} is not a mounted filesystem: {_MOUNT_HINT}")
fi
"""
    return (
        _prelude(hostname, layout)
        + f"""problems=()

machine="$(uname -m)"
case "$machine" in
  {machines}) ;;
  *) problems+=("architecture is $machine but rack.nodes[].arch says {arch}: fix the arch in the config") ;;
esac

memory_cgroup=no
if [ -r {q(cgroup_v2)} ]; then
  if grep -qw memory {q(cgroup_v2)}; then memory_cgroup=yes; fi
elif [ -r {q(cgroup_v1)} ]; then
  if awk '$1 == "memory" && $4 == "1" {{ found = 1 }} END {{ exit !found }}' {q(cgroup_v1)}; then memory_cgroup=yes; fi
fi
if [ "$memory_cgroup" != yes ]; then
  flags="cgroup_memory=1 cgroup_enable=memory"
  if [ -f "$R/boot/firmware/cmdline.txt" ]; then
    problems+=("{_NO_MEMCG}: append '$flags' to the single line in /boot/firmware/cmdline.txt {_BOOKWORM}")
  elif [ -f "$R/boot/cmdline.txt" ]; then
    problems+=("{_NO_MEMCG}: append '$flags' to the single line in /boot/cmdline.txt {_PRE_BOOKWORM}")
  else
    problems+=("{_NO_MEMCG}: add '$flags' to the kernel command line {_GRUB}")
  fi
fi

total_mib="$(awk '/^MemTotal:/ {{ print int($2 / 1024) }}' /proc/meminfo)"
avail_mib="$(awk '/^MemAvailable:/ {{ print int($2 / 1024) }}' /proc/meminfo)"
if [ "$total_mib" -lt {total} ]; then
  problems+=("only $total_mib MiB of memory; a k3s {role} needs at least {total} MiB: {_SMALL_BOARD}")
fi
if [ "$avail_mib" -lt {avail} ]; then
  problems+=("only $avail_mib MiB of memory available (need {avail} MiB): stop what else runs on this host")
fi

data="$R/var/lib/rancher"
while [ ! -d "$data" ]; do data="$(dirname "$data")"; done
free_mib="$(df -Pm "$data" | awk 'NR == 2 {{ print $4 }}')"
if [ "$free_mib" -lt {disk} ]; then
  problems+=("only $free_mib MiB free for /var/lib/rancher (need {disk} MiB): free space or use a bigger card/SSD")
fi
{storage}
if [ "${{#problems[@]}}" -gt 0 ]; then
  for p in "${{problems[@]}}"; do printf '%s: preflight: %s\\n' "$NODE" "$p" >&2; done
  exit 1
fi
say "preflight ok ({arch}, memory cgroup on, ${{total_mib}} MiB, ${{free_mib}} MiB free)"
"""
    )


def _converge_script(
    *,
    mode: str,
    hostname: str,
    role: Role,
    version: str,
    config_text: str,
    resolv_conf_text: str,
    source: InstallSource,
    layout: HostLayout,
    timeout_s: int,
) -> str:
    q = shlex.quote
    uninstall = UNINSTALL_SCRIPTS[0] if role == Role.SERVER else UNINSTALL_SCRIPTS[1]
    ready_checks = [f'[ -s "$R"{q(KUBELET_KUBECONFIG)} ]']
    if role == Role.SERVER:
        ready_checks += [f'[ -s "$R"{q(SERVER_TOKEN_FILE)} ]', f'[ -s "$R"{q(KUBECONFIG_FILE)} ]']
    if layout.systemd:
        ready_checks.append(f"systemctl is-active --quiet {service_name(role)}")
    ready = " && ".join(ready_checks)
    if source == InstallSource.AIRGAP:
        fetch = """\
  [ -f "$STAGE/k3s" ] && [ -f "$STAGE/install.sh" ] || fail "air-gap files missing in $STAGE: the copy step did not run"
  if [ "$(installed_version)" != "$VERSION" ]; then
    cp "$STAGE/k3s" "$BIN/.k3s.new"
    chmod 0755 "$BIN/.k3s.new"
    mv -f "$BIN/.k3s.new" "$BIN/k3s"
  fi
  say "running the air-gap installer for $VERSION"
  INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_BIN_DIR="$BIN" INSTALL_K3S_EXEC="$ROLE" \\
    INSTALL_K3S_VERSION="$VERSION" sh "$STAGE/install.sh"
"""
    else:
        url = "https://raw.githubusercontent.com/k3s-io/k3s/" + version.replace("+", "%2B") + "/install.sh"
        fetch = f"""\
  if [ ! -s "$STAGE/install.sh" ]; then
    curl -sfL --retry 3 {q(url)} -o "$STAGE/install.sh.part"
    mv -f "$STAGE/install.sh.part" "$STAGE/install.sh"
  fi
  say "running the official installer pinned to $VERSION"
  INSTALL_K3S_VERSION="$VERSION" INSTALL_K3S_BIN_DIR="$BIN" INSTALL_K3S_EXEC="$ROLE" sh "$STAGE/install.sh"
"""
    if mode == "install":
        # This text stays in state for the node's lifetime (ignore_changes) and re-runs if the
        # connection changes: on an installed node it must never change the version or config.
        head = """\
if [ -x "$BIN/k3s" ] && [ -f "$UNINSTALL" ]; then
  current="$(installed_version)"
  if [ "$current" != "$VERSION" ]; then
    say "k3s $current is installed; changing versions is the upgrade step's job"
    exit 0
  fi
  if [ ! -e "$PENDING" ] && ready; then
    say "k3s is already installed ($current)"
    exit 0
  fi
fi
read_secrets
# Joined before: the tokens never change here (the upgrade step moves an agent to the agent token).
if [ ! -s "$TOKEN_FILE" ]; then secret_to 1 "$TOKEN_FILE" "join token" || :; fi
""" + (
            'if [ ! -s "$AGENT_TOKEN" ]; then secret_to 2 "$AGENT_TOKEN" "agent token" || :; fi\n'
            if role == Role.SERVER
            else ""
        ) + """# Not complete (first run, or a run that failed half-way): finish with the installer.
touch "$PENDING"
"""
        # Config changes are the upgrade's job: here the files are written only where missing.
        config_guard = 'if [ ! -f "$CONFIG" ] && write_if_changed "$CONFIG"'
        resolv_guard = 'if [ ! -f "$RESOLV" ] && write_if_changed "$RESOLV"'
        # Written where missing (a first join starts k3s with them); changed by the upgrade step.
        registries_guard = "if write_missing_from_stdin"
    else:
        head = """\
[ -x "$BIN/k3s" ] && [ -f "$UNINSTALL" ] || fail "k3s is not installed here: the install step must succeed first"
[ -s "$TOKEN_FILE" ] || fail "$TOKEN_FILE is missing: re-run the install step"
read_secrets
""" + (
            # A server keeps its join token; agent-token-file is set (again) here, so an existing
            # cluster gets an agent token on its next `up` (k3s: it may be set after the cluster
            # started, on every server; docs, cli/token).
            '# The agent token: agents join with it (user node), never with the server token.\n'
            'if secret_to 2 "$AGENT_TOKEN" "agent token"; then touch "$PENDING"; fi\n'
            if role == Role.SERVER
            # An agent that joined with the server token (before agent tokens) is moved to the
            # agent token: the file is rewritten, so no agent keeps the server token on disk.
            else 'if secret_to 1 "$TOKEN_FILE" "agent token"; then touch "$PENDING"; fi\n'
        )
        config_guard = 'if write_if_changed "$CONFIG"'
        resolv_guard = 'if write_if_changed "$RESOLV"'
        registries_guard = "if file_from_stdin"
    agent_token_var = f'AGENT_TOKEN="$R"{q(AGENT_TOKEN_FILE)}\n' if role == Role.SERVER else ""
    return (
        _prelude(hostname, layout)
        + f"""ROLE={role}
VERSION={q(version)}
BIN="$R/usr/local/bin"
ETC="$R/etc/rancher/k3s"
CONFIG="$R"{q(CONFIG_FILE)}
RESOLV="$R"{q(RESOLV_CONF_PATH)}
REGISTRIES="$R"{q(REGISTRIES_PATH)}
REGISTRY_CA="$R"{q(REGISTRY_CA_PATH)}
TOKEN_FILE="$R"{q(TOKEN_FILE)}
{agent_token_var}UNINSTALL="$BIN/{uninstall}"
STAGE="$R"{q(STAGING)}/"$VERSION"
PENDING="$ETC/.homelab-restart-pending"

installed_version() {{
  if [ -x "$BIN/k3s" ]; then "$BIN/k3s" --version 2>/dev/null | awk 'NR == 1 {{ print $3 }}'; fi
}}
ready() {{ {ready}; }}
# Writes stdin to $1 (mode $2) only when it differs; true when it wrote.
write_if_changed() {{
  local tmp
  # Called as a condition, so errexit is off in here: every step checks itself.
  tmp="$(mktemp "$1.XXXXXX")" || fail "cannot write $1"
  cat >"$tmp" || fail "cannot write $1"
  chmod "$2" "$tmp" || fail "cannot chmod $1"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$1" || fail "cannot replace $1"
}}
# Secrets come on stdin, one per line, into a 0600 file: never an argument, a variable or a log.
read_secrets() {{
  mkdir -p "$ETC"
  SECRETS="$(mktemp "$ETC/.stdin.XXXXXX")"
  trap 'rm -f "$SECRETS"' EXIT
  cat >"$SECRETS"
}}
# True when line $1 of stdin is there and not empty.
has_line() {{ awk -v n="$1" 'NR == n && length($0) > 0 {{ found = 1 }} END {{ exit !found }}' "$SECRETS"; }}
# Line $1 of stdin into file $2 (0600), only when it differs; true when it wrote. $3 names it.
secret_to() {{
  has_line "$1" || fail "no $3 on stdin (line $1)"
  write_if_changed "$2" 0600 < <(sed -n "$1p" "$SECRETS")
}}
# Line $1 of stdin, base64, decoded into file $2 (mode $3) when it differs; an empty line removes
# the file when it is ours ($4: a first line to recognise it by, "" for any). True when it changed.
file_from_stdin() {{
  if ! has_line "$1"; then
    [ -f "$2" ] || return 1
    if [ -n "$4" ] && [ "$(head -n 1 "$2")" != "$4" ]; then return 1; fi
    rm -f "$2" || fail "cannot remove $2"
    return 0
  fi
  write_if_changed "$2" "$3" < <(sed -n "$1p" "$SECRETS" | base64 -d)
}}
write_missing_from_stdin() {{ [ ! -f "$2" ] && file_from_stdin "$@"; }}

{head}mkdir -p "$ETC" "$BIN" "$STAGE"
# The pending marker survives a failure half-way, so a re-run restarts k3s even though the files
# it changed already match.
{config_guard} 0600 <<'HOMELAB_K3S_CONFIG'
{config_text.rstrip()}
HOMELAB_K3S_CONFIG
then touch "$PENDING"; fi
# dns.upstream: the kubelet reads it when it starts, so a change restarts k3s too.
{resolv_guard} 0644 <<'HOMELAB_K3S_RESOLV'
{resolv_conf_text.rstrip()}
HOMELAB_K3S_RESOLV
then touch "$PENDING"; fi
# The rack's registry (stdin line 3) and its CA (line 4): containerd gets them when k3s starts.
{registries_guard} 3 "$REGISTRIES" 0600 {q(REGISTRIES_HEADER.rstrip(chr(10)))}; then touch "$PENDING"; fi
{registries_guard} 4 "$REGISTRY_CA" 0644 ""; then touch "$PENDING"; fi
if [ "$(installed_version)" != "$VERSION" ]; then touch "$PENDING"; fi

if [ -e "$PENDING" ]; then
{fetch}  [ "$(installed_version)" = "$VERSION" ] || fail "installed k3s is $(installed_version), expected $VERSION"
  rm -f "$PENDING"
  changed=yes
else
  changed=no
fi

waited=0
until ready; do
  [ "$waited" -lt {timeout_s} ] || fail "k3s not ready after {timeout_s} s: see journalctl -u {service_name(role)}"
  sleep 2
  waited=$((waited + 2))
done
if [ "$changed" = yes ]; then
  say "k3s $VERSION ({role}) installed and ready"
else
  say "already at $VERSION with this config"
fi
"""
    )


def install_script(
    *,
    hostname: str,
    role: Role,
    version: str,
    config_text: str,
    resolv_conf_text: str,
    source: InstallSource,
    layout: HostLayout = HostLayout(),
    timeout_s: int = 300,
) -> str:
    """First join (token on stdin); re-run on a half-installed node, it finishes the job. On an
    installed node it never changes the version, the token or config.yaml, so the stale copy kept
    in state for the node's lifetime can never downgrade or reconfigure it."""
    return _converge_script(
        mode="install",
        hostname=hostname,
        role=role,
        version=version,
        config_text=config_text,
        resolv_conf_text=resolv_conf_text,
        source=source,
        layout=layout,
        timeout_s=timeout_s,
    )


def upgrade_script(
    *,
    hostname: str,
    role: Role,
    version: str,
    config_text: str,
    resolv_conf_text: str,
    source: InstallSource,
    layout: HostLayout = HostLayout(),
    timeout_s: int = 300,
) -> str:
    """In-place upgrade/reconfigure: brings binary and config.yaml to the wanted ones and restarts
    k3s only if one changed. Never uninstalls anything."""
    return _converge_script(
        mode="upgrade",
        hostname=hostname,
        role=role,
        version=version,
        config_text=config_text,
        resolv_conf_text=resolv_conf_text,
        source=source,
        layout=layout,
        timeout_s=timeout_s,
    )


def membership_script(*, hostname: str, layout: HostLayout = HostLayout()) -> str:
    """The create of the membership command: reads nothing, changes nothing."""
    return (
        _prelude(hostname, layout)
        + 'say "member of the rack (k3s root: ${R:-/}): removing it from rack.nodes uninstalls k3s here"\n'
    )


def uninstall_script(*, hostname: str, layout: HostLayout = HostLayout()) -> str:
    """Uninstall k3s from this host, and only if the k3s here is this node's (a host re-added under
    a new name keeps the install made for the new name)."""
    q = shlex.quote
    uninstallers = " ".join(f'"$BIN/{u}"' for u in UNINSTALL_SCRIPTS)
    return (
        _prelude(hostname, layout)
        + f"""BIN="$R/usr/local/bin"
CONFIG="$R"{q(CONFIG_FILE)}
if [ -f "$CONFIG" ]; then
  owner="$(awk '$1 == "node-name:" {{ print $2 }}' "$CONFIG" | tr -d "\\"'")"
  if [ -n "$owner" ] && [ "$owner" != "$NODE" ]; then
    say "k3s here belongs to node '$owner', not '$NODE': leaving it installed"
    exit 0
  fi
fi
found=no
for uninstaller in {uninstallers}; do
  if [ -f "$uninstaller" ]; then
    found=yes
    say "running $(basename "$uninstaller")"
    sh "$uninstaller"
  fi
done
# Leftovers of an uninstaller interrupted half-way.
rm -f "$BIN/k3s"
rm -rf "$R/etc/rancher/k3s" "$R/var/lib/rancher/k3s" "$R"{q(STAGING)}
if [ "$found" = yes ]; then say "k3s uninstalled"; else say "k3s is not installed here: nothing to do"; fi
"""
    )


def registration_script(*, hostname: str, layout: HostLayout = HostLayout(), timeout_s: int = 300) -> str:
    """Runs on the bootstrap server: waits until the node is registered with the API server."""
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
waited=0
until [ -n "$("$K" kubectl get node "$NODE" --ignore-not-found -o name)" ]; do
  [ "$waited" -lt {timeout_s} ] || fail "not registered after {timeout_s} s: check k3s on it (journalctl -u k3s-agent)"
  sleep 2
  waited=$((waited + 2))
done
say "registered"
"""
    )


def drain_script(*, hostname: str, layout: HostLayout = HostLayout(), timeout_s: int = 300) -> str:
    """Runs on the bootstrap server when a node leaves the config: cordon, drain, delete the Node.
    A failing API call fails the step (and so keeps k3s installed): only "not found" is a no-op."""
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
present="$("$K" kubectl get node "$NODE" --ignore-not-found -o name)"
if [ -z "$present" ]; then
  say "no Node object: nothing to drain"
  exit 0
fi
"$K" kubectl cordon "$NODE"
"$K" kubectl drain "$NODE" --ignore-daemonsets --delete-emptydir-data --timeout={timeout_s}s
"$K" kubectl delete node "$NODE" --ignore-not-found
say "drained and deleted from the cluster"
"""
    )


OWNED_TAINT_KEYS = (f"{LABEL_PREFIX}/*", CONTROL_PLANE_TAINT.key)
"""The taint keys this program manages (shell patterns): its own prefix and the control-plane
taint it sets. Every other taint (a cordon's `node.kubernetes.io/unschedulable`, the node
lifecycle's `not-ready`/`unreachable`, anyone else's) is left alone."""


def taints_script(*, hostname: str, taints: list[Taint], layout: HostLayout = HostLayout()) -> str:
    """Runs on the bootstrap server: makes the Node's taints among OWNED_TAINT_KEYS exactly
    `taints`, one `kubectl taint` per difference, leaving every other taint as it is.

    Not through the NodePatch: `spec.taints` is an atomic list, so a server-side apply owns the
    whole list and replaces the taints others add (Kubernetes server-side apply: merge strategy).
    `kubectl taint` reads the list and writes it back with only its own change."""
    q = shlex.quote

    def shown(t: Taint) -> str:  # as the jsonpath below prints it
        return f"{t.key}={t.value}:{t.effect}"

    want_shown = " ".join(q(shown(t)) for t in taints)
    want_args = " ".join(q(t.to_k3s()) for t in taints)
    want_ke = " ".join(q(f"{t.key}:{t.effect}") for t in taints)
    owned = "|".join(OWNED_TAINT_KEYS)
    jsonpath = '{range .spec.taints[*]}{.key}{"="}{.value}{":"}{.effect}{"\\n"}{end}'
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
want_shown=({want_shown})
want_args=({want_args})
want_ke=({want_ke})
current="$("$K" kubectl get node "$NODE" -o jsonpath={q(jsonpath)})"
changes=0
for i in "${{!want_shown[@]}}"; do
  if ! grep -qxF -- "${{want_shown[$i]}}" <<<"$current"; then
    "$K" kubectl taint node "$NODE" "${{want_args[$i]}}" --overwrite >/dev/null
    say "taint ${{want_args[$i]}} set"
    changes=$((changes + 1))
  fi
done
while IFS= read -r line; do
  [ -n "$line" ] || continue
  key="${{line%%=*}}"
  effect="${{line##*:}}"
  case "$key" in
    {owned}) ;;
    *) continue ;;  # not ours: a cordon's, the node lifecycle's, anyone else's
  esac
  if [ "${{#want_ke[@]}}" -gt 0 ] && printf '%s\n' "${{want_ke[@]}}" | grep -qxF -- "$key:$effect"; then continue; fi
  "$K" kubectl taint node "$NODE" "$key:$effect-" >/dev/null
  say "stale taint $key:$effect removed"
  changes=$((changes + 1))
done <<<"$current"
[ "$changes" -gt 0 ] || say "taints already as configured"
"""
    )


DNS_UPSTREAM_ANNOTATION = f"{LABEL_PREFIX}/dns-upstream"
"""On CoreDNS's pod template: the `dns.upstream` its pods were started with."""


def dns_upstream_script(*, hostname: str, upstream: list[str], layout: HostLayout = HostLayout()) -> str:
    """Runs on the bootstrap server after every node wrote its resolv.conf: CoreDNS reads the file
    the kubelet gave its pod at start, so its pods restart (a pod-template annotation naming the
    upstreams) when they were started with other upstreams, and only then. k3s' deploy controller
    merges its manifest over the live object and keeps an annotation it never set."""
    want = ",".join(upstream)
    patch = {"spec": {"template": {"metadata": {"annotations": {DNS_UPSTREAM_ANNOTATION: want}}}}}
    path = "{.spec.template.metadata.annotations." + DNS_UPSTREAM_ANNOTATION.replace(".", "\\.") + "}"
    q = shlex.quote
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
WANT={q(want)}
if [ -z "$("$K" kubectl -n kube-system get deployment coredns --ignore-not-found -o name)" ]; then
  say "no CoreDNS deployment yet: its pods will start with dns.upstream $WANT"
  exit 0
fi
have="$("$K" kubectl -n kube-system get deployment coredns -o jsonpath={q(path)})"
if [ "$have" = "$WANT" ]; then
  say "CoreDNS already forwards to $WANT"
  exit 0
fi
"$K" kubectl -n kube-system patch deployment coredns --type merge -p {q(json.dumps(patch, sort_keys=True))} >/dev/null
say "CoreDNS restarted to forward to $WANT (was: ${{have:-the resolvers of the nodes}})"
"""
    )


def agent_token_script(*, hostname: str, layout: HostLayout = HostLayout(), timeout_s: int = 120) -> str:
    """Runs on the bootstrap server after its upgrade step: prints the full-format agent token
    (`K10<ca-hash>::node:<secret>`) agents join with. Until `agent-token` is set, k3s keeps that
    file as a link to the server token: this step waits for the real one and never prints that."""
    q = shlex.quote
    why = (
        f"{SERVER_AGENT_TOKEN_FILE} is not an agent token after {timeout_s} s (k3s links it to the server token "
        "until agent-token is set): check agent-token-file in config.yaml and restart k3s"
    )
    return (
        _prelude(hostname, layout)
        + f"""FILE="$R"{q(SERVER_AGENT_TOKEN_FILE)}
waited=0
until [ -f "$FILE" ] && [ ! -L "$FILE" ] && grep -q '::node:' "$FILE"; do
  [ "$waited" -lt {timeout_s} ] || fail {q(why)}
  sleep 2
  waited=$((waited + 2))
done
cat "$FILE"
"""
    )


PROGRAM_ACCOUNT = "homelab-pulumi"
"""The ServiceAccount (kube-system) and ClusterRoleBinding (cluster-admin) the program's
Kubernetes provider authenticates as: revocable (delete the binding) and audited by name, unlike
k3s' admin client certificate (`system:masters`, which no RBAC rule can restrict)."""
TOKEN_DAYS = 365
"""Lifetime of the provider's token (TokenRequest `--duration`)."""
RENEW_EVERY_DAYS = 300
"""A new token is minted on the first `up` of every such period (fewer days than TOKEN_DAYS)."""
_EPOCH = date(2024, 1, 1)


def credential_period(today: date) -> str:
    """The trigger of the kubeconfig step (pure): it changes once every RENEW_EVERY_DAYS days.

    A token is minted when the step runs and lives TOKEN_DAYS > RENEW_EVERY_DAYS, so a token in
    use is never older than one period unless no `up` ran for a whole period, and a token that
    has expired was minted in an earlier period: its step is due and re-runs over SSH (which needs
    no Kubernetes credential) before the provider is configured. Within a period a second `up`
    plans no change."""
    return f"credential-period-{(today - _EPOCH).days // RENEW_EVERY_DAYS}"


def program_kubeconfig_script(*, hostname: str, layout: HostLayout = HostLayout()) -> str:
    """Runs on the bootstrap server (logging off, stdout a secret): makes sure the program's
    ServiceAccount and its cluster-admin binding exist, mints a token for it valid TOKEN_DAYS
    (TokenRequest API) and prints a kubeconfig with it and the cluster CA from k3s.yaml (server
    `https://127.0.0.1:6443`, rewritten by the caller). The k3s.yaml client certificate is never
    handed out: it lasts a year and k3s renews it only when it restarts."""
    q = shlex.quote
    account = PROGRAM_ACCOUNT
    manifest = "\n".join(
        [
            "apiVersion: v1",
            "kind: ServiceAccount",
            "metadata:",
            f"  name: {account}",
            "  namespace: kube-system",
            "---",
            "apiVersion: rbac.authorization.k8s.io/v1",
            "kind: ClusterRoleBinding",
            "metadata:",
            f"  name: {account}",
            "roleRef:",
            "  apiGroup: rbac.authorization.k8s.io",
            "  kind: ClusterRole",
            "  name: cluster-admin",
            "subjects:",
            "- kind: ServiceAccount",
            f"  name: {account}",
            "  namespace: kube-system",
        ]
    )
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
ADMIN="$R"{q(KUBECONFIG_FILE)}
[ -s "$ADMIN" ] || fail "{KUBECONFIG_FILE} is missing: is k3s running here?"
ca="$(awk '$1 == "certificate-authority-data:" {{ print $2; exit }}' "$ADMIN")"
[ -n "$ca" ] || fail "{KUBECONFIG_FILE} has no certificate-authority-data"
"$K" kubectl apply --server-side --field-manager=homelab-rack -f - >/dev/null <<'HOMELAB_ACCOUNT'
{manifest}
HOMELAB_ACCOUNT
token="$("$K" kubectl -n kube-system create token {account} --duration={TOKEN_DAYS * 24}h)"
[ -n "$token" ] || fail "no token for {account}"
cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $ca
    server: https://127.0.0.1:{API_PORT}
  name: default
contexts:
- context:
    cluster: default
    user: {account}
  name: default
current-context: default
users:
- name: {account}
  user:
    token: $token
KUBECONFIG
"""
    )


UPGRADE_CORDON_ANNOTATION = f"{LABEL_PREFIX}/upgrade-cordon"
"""Set on a Node the upgrade cordoned (value: the target version): the gate uncordons only those,
never a node someone cordoned for their own reasons."""
_KUBELET_VERSION = "{.status.nodeInfo.kubeletVersion}"
_DRAIN_FAILED = (
    " (a PodDisruptionBudget allows no eviction, or a pod has no controller): the node stays cordoned"
    " and the rollout stops here; fix it and run pulumi up again"
)
_GATE_FAILED = (
    ": the rollout stops here, the nodes after it keep their version;"
    " fix this node and run pulumi up again to resume"
)
_READY = '{.status.conditions[?(@.type=="Ready")].status}'


def upgrade_drain_script(*, hostname: str, version: str, timeout_s: int, layout: HostLayout = HostLayout()) -> str:
    """Runs on the bootstrap server before a node's upgrade step: when the node's kubelet is not on
    `version` yet, cordon it (marked with UPGRADE_CORDON_ANNOTATION) and drain it through the
    eviction API, which honours PodDisruptionBudgets, for at most `timeout_s`; data pods (pinned
    to the node's disk, they cannot move) are not evicted. Nothing to do for a
    node already on `version` (a config-only change restarts k3s without moving pods: stopping
    k3s leaves the containers running) or not registered yet (a first install)."""
    q = shlex.quote
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
WANT={q(version)}
if [ -z "$("$K" kubectl get node "$NODE" --ignore-not-found -o name)" ]; then
  say "not registered yet: nothing to drain before $WANT"
  exit 0
fi
have="$("$K" kubectl get node "$NODE" -o jsonpath={q(_KUBELET_VERSION)})"
if [ "$have" = "$WANT" ]; then
  say "already runs $WANT: no drain"
  exit 0
fi
# Cordoned already: by someone else (it stays so: no annotation, the gate leaves it) or by an
# earlier run of this step (its annotation is still there).
if [ "$("$K" kubectl get node "$NODE" -o jsonpath='{{.spec.unschedulable}}')" != true ]; then
  "$K" kubectl annotate node "$NODE" --overwrite {q(UPGRADE_CORDON_ANNOTATION)}="$WANT" >/dev/null
  "$K" kubectl cordon "$NODE" >/dev/null
fi
# Data pods stay: pinned to this node's disk they cannot move, and k3s restarting leaves their
# containers running; their budgets (minAvailable 1) exist so that nothing evicts them silently.
if ! "$K" kubectl drain "$NODE" --ignore-daemonsets --delete-emptydir-data --timeout={timeout_s}s \
  --pod-selector={q(f"{CATEGORY_LABEL}!={Category.DATA}")}; then
  fail "drain before the upgrade to $WANT did not finish in {timeout_s} s"{q(_DRAIN_FAILED)}
fi
say "cordoned and drained: $have -> $WANT"
"""
    )


def upgrade_gate_script(
    *, hostname: str, version: str, converges: str, timeout_s: int, layout: HostLayout = HostLayout()
) -> str:
    """Runs on the bootstrap server after a node's upgrade step: waits until the Node reports Ready
    with its kubelet on `version`, then uncordons it if the upgrade cordoned it. A node that does
    not get there in `timeout_s` fails the step, naming what it waited for: the nodes after it in
    the rollout do not start (they depend on this step) and the next `up` resumes here.
    `converges` (a digest of what the upgrade step converges to) makes this text change whenever
    the upgrade step's does, so the gate follows every restart."""
    q = shlex.quote
    annotation_path = "{.metadata.annotations." + UPGRADE_CORDON_ANNOTATION.replace(".", "\\.") + "}"
    return (
        _prelude(hostname, layout)
        + f"""K="$R/usr/local/bin/k3s"
WANT={q(version)}
# gate for the upgrade step converging to {converges}
waited=0
while :; do
  ver="$("$K" kubectl get node "$NODE" -o jsonpath={q(_KUBELET_VERSION)} 2>/dev/null || true)"
  ready="$("$K" kubectl get node "$NODE" -o jsonpath={q(_READY)} 2>/dev/null || true)"
  if [ "$ver" = "$WANT" ] && [ "$ready" = True ]; then break; fi
  [ "$waited" -lt {timeout_s} ] ||
    fail "not Ready on $WANT after {timeout_s} s (Ready: ${{ready:-unknown}}," \
      "kubelet: ${{ver:-unknown}})"{q(_GATE_FAILED)}
  sleep 2
  waited=$((waited + 2))
done
if [ -n "$("$K" kubectl get node "$NODE" -o jsonpath={q(annotation_path)})" ]; then
  "$K" kubectl uncordon "$NODE" >/dev/null
  "$K" kubectl annotate node "$NODE" {q(UPGRADE_CORDON_ANNOTATION + "-")} >/dev/null
  say "Ready on $WANT: uncordoned"
else
  say "Ready on $WANT"
fi
"""
    )


def read_file_script(*, hostname: str, path: str, layout: HostLayout = HostLayout()) -> str:
    """Print a file k3s wrote (token, kubeconfig); its command runs with logging off."""
    q = shlex.quote
    return (
        _prelude(hostname, layout)
        + f"""FILE="$R"{q(path)}
[ -s "$FILE" ] || fail "{path} is missing: is k3s running here?"
cat "$FILE"
"""
    )


def rewrite_kubeconfig(text: str, address: str) -> str:
    """Point a k3s kubeconfig at the API address instead of 127.0.0.1 (pure)."""
    return text.replace(f"https://127.0.0.1:{API_PORT}", f"https://{address}:{API_PORT}")
