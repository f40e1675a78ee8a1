"""Why an ssh-rsa pin is a config error, shown with real OpenSSH on loopback.

pulumi-command (v1.2.1, provider/pkg/provider/remote/connection.go) turns a `hostKey` pin into
`HostKeyCallback: ssh.FixedHostKey(key)` and `HostKeyAlgorithms: []string{key.Type()}`. The
OpenSSH client does the same with a pinned known_hosts line plus `-o HostKeyAlgorithms=<type>`,
so this test connects that way to a real Debian sshd holding an ed25519, an ECDSA and an RSA host
key: the ed25519 and ECDSA pins connect, the RSA pin (type `ssh-rsa`: SHA-1 signatures) is
refused by the server, which offers only rsa-sha2-256/512 since OpenSSH 8.8. The config accepts
exactly the pins that connect (`rack.config._host_key`).

The sshd runs as root on 127.0.0.1 on a free port, for this module only.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rack.config import _host_key
from tests.prereq import free_port, need

pytestmark = [pytest.mark.realssh]

TYPES = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256", "rsa": "ssh-rsa"}


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, dict[str, str]]]:
    binary = need("sshd", "openssh-server", root=True)
    need("ssh", "openssh-client")
    tmp = tmp_path_factory.mktemp("pins")
    keys: dict[str, str] = {}
    lines = []
    for name in TYPES:
        path = tmp / f"ssh_host_{name}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", name, "-N", "", "-f", str(path)], check=True)
        keys[name] = " ".join(path.with_suffix(".pub").read_text().split()[:2])
        lines.append(f"HostKey {path}")
    client_key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                *lines,
                f"PidFile {tmp / 'sshd.pid'}",
                f"AuthorizedKeysFile {client_key}.pub",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield client_key, port, keys
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()


def connect_pinned(client_key: Path, port: int, pin: str) -> subprocess.CompletedProcess[str]:
    """What pulumi-command does with a pin: accept only that key, negotiate only its type."""
    known = client_key.parent / f"known_hosts-{pin.split()[0]}"
    known.write_text(f"[127.0.0.1]:{port} {pin}\n")
    return subprocess.run(
        [
            "ssh", "-i", str(client_key), "-p", str(port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlgorithms={pin.split()[0]}",
            "root@127.0.0.1", "echo connected",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["ed25519", "ecdsa"])
def test_ed25519_and_ecdsa_pins_connect_and_the_config_accepts_them(
    sshd: tuple[Path, int, dict[str, str]], name: str
) -> None:
    client_key, port, keys = sshd
    result = connect_pinned(client_key, port, keys[name])
    assert result.returncode == 0 and result.stdout.strip() == "connected", result.stderr
    assert _host_key(keys[name]) == keys[name]


def test_an_rsa_pin_cannot_connect_and_the_config_refuses_it(sshd: tuple[Path, int, dict[str, str]]) -> None:
    client_key, port, keys = sshd
    result = connect_pinned(client_key, port, keys["rsa"])
    assert result.returncode == 255
    assert "no matching host key type found" in result.stderr, result.stderr
    with pytest.raises(ValueError, match="is an ssh-rsa pin"):
        _host_key(keys["rsa"])
