"""Real OpenSSH hosts for the k3s scripts: one network namespace per host, Debian's sshd in each.

Layout, all created here and removed after (also when a test fails):
- a bridge in the root namespace holding 10.231.0.1/24 (the "laptop" the tests ssh from);
- per host a namespace `hl3k-<pid>-<n>` with a veth into the bridge and its own address
  (10.231.0.11, .21, ...), running `sshd -D` on that address with its own ed25519 host key;
- the client pins every host key in a private known_hosts (StrictHostKeyChecking=yes), as the
  program pins `nodes[].host-key`, and logs in as root with a key generated for the session.

The namespaces share the machine's filesystem, so each host gets its own root directory under
the session's temp dir and the scripts are built with `HostLayout(root=<that dir>)` (a rooted
layout never asks systemctl): every path k3s owns (/etc/rancher, /var/lib/rancher, /usr/local/bin, the
staging folder, the storage mount) is prefixed with it. /proc, /sys and the tools (bash, awk,
mountpoint, df) are the real ones. There is no init system in a namespace, so the k3s test
double (lab/k3s-double) stands in for k3s and its service and `systemctl` is not consulted: that
part, and a real k3s starting, are what these tests do not prove.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components.metal.k3s_scripts import HostLayout
from tests.prereq import machine_lock, need

SUBNET = "10.231.0"
HOSTS: dict[str, int] = {"lab-cp-1": 11, "lab-gen-1": 21, "lab-db-1": 31, "lab-exp-1": 41}
"""Hostname -> last octet of its address."""
STORAGE = "/srv/lab-storage"
"""lab-db-1's storage path; a tmpfs is mounted there (under its root) before its sshd starts."""
ROOT = Path(__file__).resolve().parents[3]
DOUBLE = ROOT / "lab" / "k3s-double"


@dataclass
class SshHost:
    hostname: str
    address: str
    netns: str
    root: Path

    @property
    def layout(self) -> HostLayout:
        return HostLayout(root=str(self.root))


@dataclass
class SshLab:
    tmp: Path
    key: Path
    known_hosts: Path
    registry: Path
    hosts: dict[str, SshHost] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    """stdout+stderr of every command run, to check no secret ever shows up."""

    def ssh_args(self, host: SshHost) -> list[str]:
        return [
            "-i", str(self.key),
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5",
            "-o", "LogLevel=ERROR",
            # One multiplexed connection per host: every command is still its own SSH exec
            # request (a session with its own stdin/exit status, as pulumi-command makes), but the
            # key exchange is not repeated hundreds of times on a busy 2-core machine.
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.tmp}/cm-%h",
            "-o", "ControlPersist=120",
        ]  # fmt: skip

    def run(
        self, hostname: str, command_text: str, *, stdin: str | None = None, record: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command text exactly as pulumi-command does: one SSH exec request, stdin piped."""
        host = self.hosts[hostname]
        result = subprocess.run(
            ["ssh", *self.ssh_args(host), f"root@{host.address}", command_text],
            input=stdin if stdin is not None else "",
            text=True,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if record:
            self.outputs.append(result.stdout + result.stderr)
        return result

    def copy(self, hostname: str, local: Path, remote_path: str) -> None:
        """CopyToRemote's job over SFTP: parents created, file replaced."""
        host = self.hosts[hostname]
        parent = os.path.dirname(remote_path)
        batch = "".join(f"-mkdir {p}\n" for p in _parents(parent)) + f"put {local} {remote_path}\n"
        subprocess.run(
            ["sftp", *self.ssh_args(host), "-b", "-", f"root@{host.address}"],
            input=batch,
            text=True,
            capture_output=True,
            check=True,
            timeout=60,
        )

    def reset(self) -> None:
        """Every host back to a machine without k3s (the storage mount stays)."""
        for host in self.hosts.values():
            for child in host.root.iterdir():
                if child.name == "srv":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            (host.root / "etc").mkdir()
            (host.root / "etc" / "k3s-double.env").write_text(f"K3S_DOUBLE_REGISTRY={self.registry}\n")
        shutil.rmtree(self.registry, ignore_errors=True)
        self.registry.mkdir()
        self.outputs.clear()


def _parents(path: str) -> list[str]:
    parts: list[str] = []
    while path not in ("", "/"):
        parts.append(path)
        path = os.path.dirname(path)
    return list(reversed(parts))


def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


def _wait_for_port(address: str, port: int = 22, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[SshLab]:
    with machine_lock("ssh-hosts"):
        yield from _ssh_lab()


def _ssh_lab() -> Iterator[SshLab]:
    sshd = need("sshd", "openssh-server", root=True)
    need("ip", "iproute2", root=True)
    need("ssh", "openssh-client")
    need("sftp", "openssh-client")
    need("mountpoint", "util-linux")
    tag = f"{os.getpid() % 100000}"
    bridge = f"hl3kbr{tag}"[:15]
    tmp = Path(tempfile.mkdtemp(prefix="hl3k-ssh-"))
    procs: list[subprocess.Popen[bytes]] = []
    namespaces: list[str] = []
    mounts: list[Path] = []
    bridge_made = False
    try:
        key = tmp / "id_ed25519"
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        authorized = tmp / "authorized_keys"
        authorized.write_text(key.with_suffix(".pub").read_text())
        lab = SshLab(tmp=tmp, key=key, known_hosts=tmp / "known_hosts", registry=tmp / "registry")
        _sh("ip", "link", "add", bridge, "type", "bridge")
        bridge_made = True
        _sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        known: list[str] = []
        for index, (hostname, octet) in enumerate(HOSTS.items()):
            netns = f"hl3k-{tag}-{index}"
            veth = f"hl3k{tag}v{index}"[:15]
            address = f"{SUBNET}.{octet}"
            _sh("ip", "netns", "add", netns)
            namespaces.append(netns)
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _sh("ip", "link", "set", veth, "master", bridge, "up")
            _sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _sh("ip", "-n", netns, "link", "set", "eth0", "up")
            _sh("ip", "-n", netns, "link", "set", "lo", "up")
            home = tmp / "sshd" / hostname
            home.mkdir(parents=True)
            host_key = home / "ssh_host_ed25519_key"
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
            known.append(f"{address} {' '.join(host_key.with_suffix('.pub').read_text().split()[:2])}")
            root = tmp / "roots" / hostname
            root.mkdir(parents=True)
            if hostname == "lab-db-1":
                storage = root / STORAGE.lstrip("/")
                storage.mkdir(parents=True)
                _sh("mount", "-t", "tmpfs", "-o", "size=16m", "hl3k-storage", str(storage))
                mounts.append(storage)
            config = home / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        "Port 22",
                        f"ListenAddress {address}",
                        f"HostKey {host_key}",
                        f"PidFile {home / 'sshd.pid'}",
                        f"AuthorizedKeysFile {authorized}",
                        "PermitRootLogin prohibit-password",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "StrictModes no",
                        "Subsystem sftp internal-sftp",
                        "",
                    ]
                )
            )
            log = open(home / "sshd.log", "wb")  # noqa: SIM115 - lives as long as sshd
            procs.append(
                subprocess.Popen(["ip", "netns", "exec", netns, sshd, "-D", "-e", "-f", str(config)], stderr=log)
            )
            lab.hosts[hostname] = SshHost(hostname=hostname, address=address, netns=netns, root=root)
        lab.known_hosts.write_text("\n".join(known) + "\n")
        for host in lab.hosts.values():
            _wait_for_port(host.address)
        lab.reset()
        yield lab
    finally:
        for host in lab.hosts.values() if "lab" in locals() else ():
            subprocess.run(
                ["ssh", *lab.ssh_args(host), "-O", "exit", f"root@{host.address}"],
                check=False, capture_output=True, timeout=10,
            )  # fmt: skip
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        for mount in mounts:
            subprocess.run(["umount", str(mount)], check=False, capture_output=True)
        for netns in namespaces:
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        if bridge_made:
            subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def lab(ssh_lab: SshLab) -> SshLab:
    """The session's hosts, reset to machines without k3s."""
    ssh_lab.reset()
    return ssh_lab
