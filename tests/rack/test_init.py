"""`python -m rack.init`: the stack it writes plans clean with `python -m plan`, holds exactly what
the flags (or the answers at a terminal) said, is never written over an existing file, and bad
input exits 2 naming the flag and the key path. `--scan-host-keys` is run against real OpenSSH
servers on loopback: the key it pins is the host key the server was started with."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rack import init
from rack.loader import StackFile
from tests.conftest import ROOT, stack_raw
from tests.prereq import need
from tests.test_architecture import imported_packages


def run_init(*args: str, cwd: Path = ROOT, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    """The module as a process (`.venv/bin/python -m rack.init` under `make test`), stdin not a
    terminal (as in CI)."""
    return subprocess.run(
        [sys.executable, "-m", "rack.init", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rack_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["config"]["homelab:rack"]


FULL = [
    "--stack", "mine",
    "--domain", "rack.example.org",
    "--node", "cp-1,10.20.0.11",
    "--node", "pi-1,10.20.0.21",
    "--node", "pi-2,10.20.0.22,general,cpu=2,memory=4Gi",
    "--node", "db-1,10.20.0.31,reliable,storage=/mnt/ssd:460Gi",
    "--node", "lab-1,10.20.0.41,experimental,arch=arm",
    "--gpu-host", "10.20.0.50",
    "--gpu-hostname", "gpu-3090",
]  # fmt: skip


def test_the_written_stack_plans_clean_and_says_what_the_flags_said(tmp_path: Path) -> None:
    done = run_init(*FULL, "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    path = tmp_path / "Pulumi.mine.yaml"
    assert f"wrote {path}" in done.stdout
    rack = rack_of(path)
    assert rack["domain"] == "rack.example.org"
    got = [(n["hostname"], n["address"], n["class"], n["role"]) for n in rack["nodes"]]
    assert got == [
        ("cp-1", "10.20.0.11", "control-plane", "server"),  # the first node: the server
        ("pi-1", "10.20.0.21", "general", "agent"),  # the others: general agents
        ("pi-2", "10.20.0.22", "general", "agent"),
        ("db-1", "10.20.0.31", "reliable", "agent"),
        ("lab-1", "10.20.0.41", "experimental", "agent"),
    ]
    assert rack["nodes"][2]["capacity"] == {"cpu": "2", "memory": "4Gi"}
    assert rack["nodes"][3]["storage"] == {"path": "/mnt/ssd", "size": "460Gi"}
    assert rack["nodes"][4]["arch"] == "arm"
    assert rack["ingress"]["address"] == "10.20.0.21"  # the first general node
    assert (rack["gpu-host"]["hostname"], rack["gpu-host"]["address"]) == ("gpu-3090", "10.20.0.50")
    assert all("host-key" not in n for n in rack["nodes"])  # no scan: nothing made up
    text = path.read_text()
    assert "# host-key: not pinned; the real one: ssh-keyscan -t ed25519 10.20.0.11" in text
    # the plan, as a user runs it: exit 0, every pod placed
    plan = subprocess.run(
        [sys.executable, "-m", "plan", "--config", str(path), "--picture", str(tmp_path / "picture")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert "layout OK" in plan.stdout
    assert "Plan for stack mine" in plan.stdout


def test_three_servers_get_etcd_and_a_bootstrap_server(tmp_path: Path) -> None:
    nodes = [a for i in (1, 2, 3) for a in ("--node", f"cp-{i},10.20.0.1{i},control-plane")]
    done = run_init("--stack", "ha", "--domain", "ha.example.org", *nodes, "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    k3s = StackFile.read(tmp_path / "Pulumi.ha.yaml").load().rack.k3s
    assert (k3s.datastore.value, k3s.bootstrap_server) == ("etcd", "cp-1")


def test_never_overwrites_a_stack_file(tmp_path: Path) -> None:
    existing = tmp_path / "Pulumi.mine.yaml"
    existing.write_text("# the user's own rack\n")
    done = run_init(*FULL, "--dir", str(tmp_path))
    assert done.returncode == 1
    assert f"{existing} exists: init never overwrites a stack file" in done.stderr
    assert existing.read_text() == "# the user's own rack\n"
    assert "Traceback" not in done.stderr


BASE = ["--stack", "bad", "--domain", "rack.example.org", "--node", "cp-1,10.20.0.11"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stack", "bad", "--domain", "rack.example.org", "--node", "cp-1,10.20.0.300"],
         ["--node #1 ('cp-1,10.20.0.300')", "rack.nodes[0].address", "'10.20.0.300' is not an IPv4 address"]),
        ([*BASE, "--node", "cp-1,10.20.0.12"],
         ["--node #2 ('cp-1,10.20.0.12')", "rack.nodes[1].hostname", "'cp-1' is also nodes[0].hostname"]),
        ([*BASE, "--node", "pi-1,10.20.0.11"],
         ["--node #2 ('pi-1,10.20.0.11')", "rack.nodes[1].address", "is also nodes[0].address"]),
        ([*BASE, "--node", "Pi_1,10.20.0.12"], ["--node #2", "rack.nodes[1].hostname", "RFC 1123"]),
        ([*BASE, "--node", "pi-1,10.20.0.12,gpu"], ["--node #2", "rack.nodes[1].class"]),
        ([*BASE, "--node", "pi-1,10.20.0.12,general,cpu=lots"], ["--node #2", "rack.nodes[1].capacity.cpu"]),
        ([*BASE, "--node", "pi-1,10.20.0.12,general,disk=1Ti"], ["--node #2 ('pi-1,10.20.0.12,general,disk=1Ti')",
                                                                  "unknown part 'disk'"]),
        ([*BASE, "--node", "pi-1"], ["--node #2 ('pi-1'): expected HOSTNAME,ADDRESS"]),
        ([*BASE, "--node", "cp-2,10.20.0.12,control-plane"], ["rack.k3s.datastore", "odd number of servers"]),
        ([*BASE, "--node", "pi-1,10.42.0.9"], ["--node #2", "rack.nodes[1].address", "inside k3s.cluster-cidr"]),
        (["--stack", "bad", "--domain", "Not A Domain", "--node", "cp-1,10.20.0.11"], ["--domain", "rack.domain"]),
        (["--stack", "a b", "--domain", "rack.example.org", "--node", "cp-1,10.20.0.11"],
         ["--stack: 'a b' is not a stack name"]),
        ([*BASE, "--gpu-host", "10.20.0.11"], ["--gpu-host", "rack.gpu-host.address", "is also nodes[0].address"]),
        ([*BASE, "--gpu-host", "10.20.0.50", "--gpu-hostname", "cp-1"], ["--gpu-hostname", "rack.gpu-host.hostname"]),
        ([*BASE, "--ssh-port", "70000"], ["--ssh-port", "rack.ssh.port"]),
        ([*BASE, "--k3s-version", "1.31"], ["--k3s-version", "rack.k3s.version", "not a pinned k3s release"]),
        ([*BASE, "--ingress-address", "ingress"], ["--ingress-address", "rack.ingress.address"]),
        (["--stack", "bad"], ["--domain: required (stdin is not a terminal", "--node: required"]),
    ],
)  # fmt: skip
def test_invalid_input_exits_2_naming_the_flag_and_key(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    done = run_init(*args, "--dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("init: invalid input, nothing written:\n")
    for fragment in expected:
        assert fragment in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_bad_flag_value_is_argparse_s_exit_2_naming_the_flag(tmp_path: Path) -> None:
    done = run_init(*BASE, "--ssh-port", "twenty-two", "--dir", str(tmp_path))
    assert done.returncode == 2
    assert "argument --ssh-port: invalid int value: 'twenty-two'" in done.stderr
    assert "Traceback" not in done.stderr


def test_prompts_at_a_terminal(tmp_path: Path) -> None:
    """`make init` at a real pseudo-terminal: a wrong address is asked again, empty answers take
    the defaults."""
    answers = [
        "",  # stack: home
        "",  # domain: lab.home.arpa
        "",  # node 1 hostname: rack-cp-1
        "192.168.10.300",  # not an address: asked again
        "192.168.10.11",
        "",  # class: control-plane
        "rack-db-1",
        "192.168.10.31",
        "reliable",
        "",  # no more nodes
        "192.168.10.50",  # the GPU host
    ]
    main, child = pty.openpty()
    # An outer `make test` exports MAKEFLAGS: this make is the user's own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "init", f"INIT_ARGS=--dir {tmp_path}"],
        cwd=ROOT,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    os.write(main, ("\n".join(answers) + "\n").encode())
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    assert proc.wait(timeout=10) == 0, output.decode(errors="replace")
    text = output.decode()
    assert "'192.168.10.300' is not an IPv4 address" in text  # the prompt said why and asked again
    rack = rack_of(tmp_path / "Pulumi.home.yaml")
    assert rack["domain"] == "lab.home.arpa"
    assert [(n["hostname"], n["address"], n["class"], n["role"]) for n in rack["nodes"]] == [
        ("rack-cp-1", "192.168.10.11", "control-plane", "server"),
        ("rack-db-1", "192.168.10.31", "reliable", "agent"),
    ]
    assert rack["ingress"]["address"] == "192.168.10.31"  # no general node: the reliable one
    assert rack["gpu-host"]["address"] == "192.168.10.50"
    StackFile.read(tmp_path / "Pulumi.home.yaml").load()


def test_the_starter_pins_what_the_sample_stack_pins() -> None:
    """One k3s release and one model-server image across the starter and the sample stack."""
    sample = stack_raw("homelab")
    assert sample["k3s"]["version"] == init.K3S_VERSION
    assert sample["gpu-host"]["containers"][0] == init.GPU_CONTAINER
    assert sample["gpu-host"]["service"] == init.GPU_SERVICE


def test_init_imports_only_the_config_contract_and_its_libraries() -> None:
    allowed = {"rack", "pydantic", "yaml", "__future__"} | set(sys.stdlib_module_names)
    assert imported_packages(ROOT / "rack" / "init.py") - allowed == set()


# --- --scan-host-keys against real OpenSSH servers on loopback -------------------------------------


def _free_port(*addresses: str) -> int:
    """A port free on every one of `addresses`."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def _wait_for_banner(address: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((address, port), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd on {address}:{port} did not start")
        time.sleep(0.1)


@contextlib.contextmanager
def sshds(tmp_path: Path, addresses: list[str], port: int) -> Iterator[dict[str, Path]]:
    """One real sshd per address (Debian's openssh-server), each with its own new ed25519 host key.

    Yields each address's public key file: the oracle of what ssh-keyscan must read."""
    sshd = need("sshd", "openssh-server", root=True)
    keygen = need("ssh-keygen", "openssh-client")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    procs: list[subprocess.Popen[bytes]] = []
    pubs: dict[str, Path] = {}
    try:
        for i, address in enumerate(addresses):
            home = tmp_path / f"sshd-{i}"
            home.mkdir()
            key = home / "ssh_host_ed25519_key"
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
            config = home / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        f"ListenAddress {address}",
                        f"HostKey {key}",
                        f"PidFile {home / 'sshd.pid'}",
                        "AuthorizedKeysFile none",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "",
                    ]
                )
            )
            log = open(home / "sshd.log", "wb")  # noqa: SIM115 - lives as long as sshd
            procs.append(subprocess.Popen([sshd, "-D", "-e", "-f", str(config), "-p", str(port)], stderr=log))
            pubs[address] = key.with_suffix(".pub")
        deadline = time.monotonic() + 20
        for address in addresses:
            _wait_for_banner(address, port, deadline)
        yield pubs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _fingerprint_by_ssh_keygen(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], check=True, capture_output=True, text=True, timeout=30)
    return out.stdout.split()[1]


@pytest.mark.realssh
def test_scan_pins_each_host_s_own_key(tmp_path: Path) -> None:
    need("ssh-keyscan", "openssh-client")
    node, gpu = "127.0.0.1", "127.0.0.2"
    port = _free_port(node, gpu)
    with sshds(tmp_path, [node, gpu], port) as pubs:
        out = tmp_path / "out"
        out.mkdir()
        started = time.monotonic()
        done = run_init(
            "--stack", "scanned", "--domain", "rack.example.org",
            "--node", f"cp-1,{node}", "--ssh-port", str(port),
            "--gpu-host", gpu, "--gpu-ssh-port", str(port),
            "--scan-host-keys", "--dir", str(out),
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    rack = rack_of(out / "Pulumi.scanned.yaml")
    # the oracle: the public halves of the keys the two servers were started with (type and base64)
    expected = {address: " ".join(pub.read_text().split()[:2]) for address, pub in pubs.items()}
    assert expected[node] != expected[gpu]
    assert rack["nodes"][0]["host-key"] == expected[node]
    assert rack["gpu-host"]["host-key"] == expected[gpu]
    # the fingerprints it prints are ssh-keygen's
    assert f"cp-1 ({node}): {_fingerprint_by_ssh_keygen(pubs[node])}" in done.stdout
    assert f"gpu ({gpu}): {_fingerprint_by_ssh_keygen(pubs[gpu])}" in done.stdout
    assert elapsed < 30
    StackFile.read(out / "Pulumi.scanned.yaml").load()


@pytest.mark.realssh
def test_scan_names_each_host_that_does_not_answer(tmp_path: Path) -> None:
    """One real sshd; one address where nothing listens (refused); one that accepts TCP and never
    speaks (ssh-keyscan's -T timeout has to end it)."""
    need("ssh-keyscan", "openssh-client")
    up, refused, silent = "127.0.0.1", "127.0.0.3", "127.0.0.4"
    port = _free_port(up, refused, silent)
    with socket.socket() as mute, sshds(tmp_path, [up], port):
        mute.bind((silent, port))
        mute.listen(8)  # the kernel completes the handshake; nobody ever sends a banner
        out = tmp_path / "out"
        out.mkdir()
        started = time.monotonic()
        done = run_init(
            "--stack", "half", "--domain", "rack.example.org",
            "--node", f"cp-1,{up}", "--node", f"pi-1,{refused}", "--node", f"pi-2,{silent}",
            "--ssh-port", str(port), "--scan-host-keys", "--scan-timeout", "2", "--dir", str(out),
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "init: nothing written: no ed25519 host key from:" in done.stderr
    assert f"pi-1 ({refused}): did not answer on port {port} within 2s" in done.stderr
    assert f"pi-2 ({silent}): did not answer on port {port} within 2s" in done.stderr
    assert "cp-1" not in done.stderr  # the host that answered is not blamed
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []
    assert elapsed < 20  # bounded: the silent host costs the 2 s timeout, not forever
