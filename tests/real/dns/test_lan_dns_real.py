"""The rack's DNS for real: CoreDNS at the release k3s v1.36 bundles (built from the Go module
proxy by tools/build-coredns.sh, ~/.cache/homelab-rack/coredns/<version>/bin), running k3s'
packaged Corefile (data/k3s-coredns.Corefile) with the rendered `coredns-custom` server blocks of
the sample stack (Pulumi.homelab.yaml) mounted the way k3s mounts them, answering real queries over
UDP and TCP.

Two network namespaces joined by a veth pair, so that nothing can reach a real network and the
stack's own addresses are used as they are:
- `rack`: the node at `rack.dns.address` (192.168.10.21). CoreDNS as k3s runs it: the Corefile's
  `/etc/coredns/...` paths moved into a temp dir (NodeHosts, `custom/<domain>.server`), and the
  node's k3s `resolv-conf` pointing at `dns.upstream`;
- `lan`: a LAN client (192.168.10.100) and a second CoreDNS standing in for the upstream resolvers
  at `dns.upstream`'s own addresses (1.1.1.1, 9.9.9.9), serving a small zone file: a name outside
  the domain (www.example.org) and one under the domain that the rack does not list
  (minio.lab.home.arpa, the LAN's state backend).

The pods' view is asked on 192.168.10.21:53 from inside `rack` (where the cluster DNS Service's
cluster IP would send pods); the LAN view on 192.168.10.21:1053 from `lan`. What cannot be real
here: k3s' ServiceLB (a svclb pod forwarding the node's :53 to the Service, then kube-proxy to the
pods' port 1053), so the LAN client asks the pods' port directly; and the `kubernetes` stanza of
the packaged Corefile is dropped (it needs an API server and answers only cluster.local and the
reverse zones).

Oracles: the names and addresses are read from the stack file's YAML (plus literal spot checks),
never from the program's `domain_records`; the forwarded answers are the zone file's literals.
Both CoreDNS processes and both namespaces are removed afterwards, also on failure.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from components.metal.k3s_scripts import render_resolv_conf
from components.system.coredns_config import render_configmap
from rack.config import parse_rack
from tests.conftest import ROOT, stack_raw
from tests.prereq import need, unmet

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).resolve().parent
K3S_COREFILE = HERE / "data" / "k3s-coredns.Corefile"
BUILD = ROOT / "tools" / "build-coredns.sh"


def coredns_version() -> str:
    m = re.search(r'^VERSION="\$\{1:-([^}]+)\}"$', BUILD.read_text(), re.M)
    assert m is not None, "tools/build-coredns.sh has no VERSION default"
    return m.group(1)


def coredns_binary() -> Path:
    cache = Path(os.environ.get("HOMELAB_COREDNS_CACHE", Path.home() / ".cache" / "homelab-rack" / "coredns"))
    path = cache / coredns_version() / "bin" / "coredns"
    if not os.access(path, os.X_OK):
        unmet(f"{path} missing: run tools/build-coredns.sh (builds CoreDNS v{coredns_version()} from Go modules)")
    return path


def test_the_recorded_corefile_and_the_build_name_the_same_coredns() -> None:
    """The packaged Corefile is k3s' at the release whose CoreDNS tools/build-coredns.sh builds."""
    header = "\n".join(line for line in K3S_COREFILE.read_text().splitlines() if line.startswith("#"))
    assert f"CoreDNS v{coredns_version()} " in header


RAW = stack_raw("homelab")
DOMAIN = RAW["domain"]
NODE_ADDRESS = RAW["dns"]["address"]
UPSTREAMS = [str(a) for a in RAW["dns"]["upstream"]]
CLIENT_ADDRESS = "192.168.10.100"
LAN_PORT = 1053
"""The pods' port the `coredns-lan` Service targets (components/system/coredns_config.py)."""

UPSTREAM_ZONE_RECORDS = {"www.example.org": "192.0.2.80", f"minio.{DOMAIN}": "192.168.10.60"}
"""What the stand-in upstream resolvers hold: one name outside the domain, one unlisted inside."""


def served_names() -> dict[str, str]:
    """Every name the stack says the rack serves, read from its YAML: each ingress host (apps,
    Gitea, Grafana) -> ingress.address, each dns.records name, the GPU host."""
    ingress = RAW["ingress"]["address"]
    names = {f"{app['host']}.{DOMAIN}": ingress for app in RAW["apps"] if "host" in app}
    names[f"{RAW['gitea']['host']}.{DOMAIN}"] = ingress
    names[f"{RAW['monitoring']['host']}.{DOMAIN}"] = ingress
    names |= {f"{name}.{DOMAIN}": address for name, address in RAW["dns"]["records"].items()}
    names[f"{RAW['gpu-host']['hostname']}.{DOMAIN}"] = RAW["gpu-host"]["address"]
    return names


def test_the_oracle_reads_the_stack_file() -> None:
    """Spot checks with literals, so an empty or misread oracle cannot pass the tests below."""
    names = served_names()
    assert names["git.lab.home.arpa"] == "192.168.10.21"
    assert names["grafana.lab.home.arpa"] == "192.168.10.21"
    assert names["api.lab.home.arpa"] == "192.168.10.21"
    assert names["gpu.lab.home.arpa"] == "192.168.10.50"
    assert names["gpu-3090.lab.home.arpa"] == "192.168.10.50"
    assert len(names) == 8
    assert NODE_ADDRESS == "192.168.10.21" and UPSTREAMS == ["1.1.1.1", "9.9.9.9"]


# --- namespaces ---------------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread that has joined network namespace `ns` (setns(2) acts on the
    calling thread only; the sockets it opens stay in that namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[Any] = []

    def run() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                result.append(OSError(ctypes.get_errno(), "setns"))
                return
        finally:
            os.close(fd)
        try:
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread
            result.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[no-any-return]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Net:
    rack: str
    lan: str


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    need("ip", "iproute2", root=True)
    need("nsenter", "util-linux")
    tag = f"hrdns{os.getpid()}"
    n = Net(rack=f"{tag}-rack", lan=f"{tag}-lan")
    made: list[str] = []
    try:
        for ns in (n.rack, n.lan):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{tag}r", "netns", n.rack, "type", "veth", "peer", "name", f"{tag}l", "netns", n.lan)
        sh("ip", "-n", n.rack, "addr", "add", f"{NODE_ADDRESS}/24", "dev", f"{tag}r")
        sh("ip", "-n", n.lan, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", f"{tag}l")
        for upstream in UPSTREAMS:
            sh("ip", "-n", n.lan, "addr", "add", f"{upstream}/32", "dev", f"{tag}l")
        sh("ip", "-n", n.rack, "link", "set", f"{tag}r", "up")
        sh("ip", "-n", n.lan, "link", "set", f"{tag}l", "up")
        for upstream in UPSTREAMS:
            sh("ip", "-n", n.rack, "route", "add", f"{upstream}/32", "dev", f"{tag}r")
        yield n
    finally:
        for ns in made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# --- CoreDNS processes --------------------------------------------------------------------------


def start_coredns(ns: str, corefile: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", str(coredns_binary()), "-conf", str(corefile)],
            cwd=corefile.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def upstream_corefile(directory: Path) -> Path:
    """The stand-in upstream: authoritative for example.org and (its part of) the domain."""
    serial = "2026120601"
    zones = {"example.org": {"www": UPSTREAM_ZONE_RECORDS["www.example.org"]}}
    zones[DOMAIN] = {"minio": UPSTREAM_ZONE_RECORDS[f"minio.{DOMAIN}"]}
    blocks = []
    for zone, records in zones.items():
        text = [
            f"$ORIGIN {zone}.",
            f"@ 60 IN SOA ns.{zone}. admin.{zone}. {serial} 3600 600 86400 60",
            f"@ 60 IN NS ns.{zone}.",
            f"ns 60 IN A {UPSTREAMS[0]}",
        ]
        text += [f"{name} 60 IN A {address}" for name, address in records.items()]
        (directory / f"{zone}.zone").write_text("\n".join(text) + "\n")
        blocks.append(f"{zone}:53 {{\n    bind {' '.join(UPSTREAMS)}\n    file {directory / (zone + '.zone')}\n}}\n")
    path = directory / "Corefile"
    path.write_text("".join(blocks))
    return path


def rack_corefile(directory: Path) -> Path:
    """k3s' packaged Corefile with its /etc/coredns paths in `directory`, the rendered
    coredns-custom keys in `directory/custom`, and the node's resolv-conf from dns.upstream."""
    rack = parse_rack(RAW)
    custom = directory / "custom"
    custom.mkdir()
    for key, text in render_configmap(rack)["data"].items():
        # The same move as for the packaged Corefile: k3s mounts the keys at /etc/coredns/custom.
        (custom / key).write_text(text.replace("/etc/coredns/custom/", f"{custom}/"))
    # NodeHosts as k3s writes it: one `<address> <hostname>` line per node.
    (directory / "NodeHosts").write_text("".join(f"{n['address']} {n['hostname']}\n" for n in RAW["nodes"]))
    (directory / "resolv.conf").write_text(render_resolv_conf(rack))
    text = "\n".join(line for line in K3S_COREFILE.read_text().splitlines() if not line.startswith("#"))
    kubernetes_stanza = re.compile(r"\n    kubernetes %\{CLUSTER_DOMAIN\}% [^{]*\{[^}]*\}")
    assert kubernetes_stanza.search(text), "the packaged Corefile changed shape: re-read k3s' manifests/coredns.yaml"
    text = kubernetes_stanza.sub("", text)
    for old in ("/etc/coredns/NodeHosts", "/etc/coredns/custom/", "/etc/resolv.conf"):
        assert old in text, old
    text = text.replace("/etc/coredns/NodeHosts", str(directory / "NodeHosts"))
    text = text.replace("/etc/coredns/custom/", f"{custom}/")
    text = text.replace("/etc/resolv.conf", str(directory / "resolv.conf"))
    path = directory / "Corefile"
    path.write_text(text + "\n")
    return path


def query(
    ns: str, name: str, port: int, *, tcp: bool, server: str = NODE_ADDRESS, rdtype: str = "A"
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    ask = dns.query.tcp if tcp else dns.query.udp
    return in_netns(ns, lambda: ask(q, server, port=port, timeout=3))


def wait_answering(ns: str, name: str, port: int, server: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"CoreDNS exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            query(ns, name, port, tcp=False, server=server)
            return
        except (OSError, dns.exception.Timeout):
            if time.monotonic() > deadline:
                pytest.fail(f"CoreDNS not answering on {server}:{port}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    coredns_binary()  # skip (or fail under CI) before starting anything when it is not built
    up_dir = tmp_path_factory.mktemp("upstream")
    rack_dir = tmp_path_factory.mktemp("rack")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_coredns(net.lan, upstream_corefile(up_dir), up_dir / "log"))
        wait_answering(net.lan, "www.example.org", 53, UPSTREAMS[0], procs[0], up_dir / "log")
        procs.append(start_coredns(net.rack, rack_corefile(rack_dir), rack_dir / "log"))
        wait_answering(net.rack, f"git.{DOMAIN}", 53, NODE_ADDRESS, procs[1], rack_dir / "log")
        wait_answering(net.lan, f"git.{DOMAIN}", LAN_PORT, NODE_ADDRESS, procs[1], rack_dir / "log")
        yield net
    finally:
        for proc in procs:
            stop(proc)


def a_records(msg: dns.message.Message) -> list[str]:
    return sorted(rr.address for rrset in msg.answer for rr in rrset if rr.rdtype == dns.rdatatype.A)


VIEWS = {"pods": (lambda n: n.rack, 53), "lan": (lambda n: n.lan, LAN_PORT)}
"""The pods' view (asked from the node itself, :53) and the LAN view (asked from the LAN, LAN_PORT)."""


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_every_served_name_answers_with_the_stack_files_address(servers: Net, view: str, tcp: bool) -> None:
    ns_of, port = VIEWS[view]
    for name, address in served_names().items():
        msg = query(ns_of(servers), name, port, tcp=tcp)
        assert dns.rcode.to_text(msg.rcode()) == "NOERROR", name
        assert a_records(msg) == [address], name
        assert msg.flags & dns.flags.AA, f"{name}: the rack answers its names itself"


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_a_served_name_has_no_aaaa_but_exists(servers: Net, view: str) -> None:
    """Resolvers ask A and AAAA together: AAAA of a served name is NOERROR with no answer (the name
    exists), never NXDOMAIN, and never a question for upstream (which holds no such name)."""
    ns_of, port = VIEWS[view]
    for name in served_names():
        msg = query(ns_of(servers), name, port, tcp=False, rdtype="AAAA")
        assert dns.rcode.to_text(msg.rcode()) == "NOERROR", name
        assert msg.answer == [], name


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_a_name_outside_the_domain_is_forwarded_upstream(servers: Net, view: str, tcp: bool) -> None:
    ns_of, port = VIEWS[view]
    msg = query(ns_of(servers), "www.example.org", port, tcp=tcp)
    assert dns.rcode.to_text(msg.rcode()) == "NOERROR"
    assert a_records(msg) == ["192.0.2.80"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_pods_get_an_unlisted_name_under_the_domain_from_upstream(servers: Net, tcp: bool) -> None:
    """`hosts ... fallthrough` then `forward`: the LAN's minio.<domain> resolves in a CI job."""
    msg = query(servers.rack, f"minio.{DOMAIN}", 53, tcp=tcp)
    assert dns.rcode.to_text(msg.rcode()) == "NOERROR"
    assert a_records(msg) == ["192.168.10.60"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_the_lan_view_never_sends_a_name_under_the_domain_back_upstream(servers: Net, tcp: bool) -> None:
    """The router that forwards the domain to the rack is often dns.upstream too: the LAN view
    answers NXDOMAIN itself (authoritative) for a name it does not list, though upstream has it."""
    msg = query(servers.lan, f"minio.{DOMAIN}", LAN_PORT, tcp=tcp)
    assert dns.rcode.to_text(msg.rcode()) == "NXDOMAIN"
    assert msg.flags & dns.flags.AA
    assert a_records(msg) == []


def test_the_lan_view_does_not_show_the_nodes_hosts(servers: Net) -> None:
    """NodeHosts (k3s' node names) answer pods; the LAN view only knows the domain and upstream."""
    node = RAW["nodes"][0]
    pods = query(servers.rack, node["hostname"], 53, tcp=False)
    assert a_records(pods) == [node["address"]]
    lan = query(servers.lan, node["hostname"], LAN_PORT, tcp=False)
    assert a_records(lan) == []
