"""The k3s commands over real SSH, on OpenSSH servers in network namespaces (see conftest.py).

Every command text run here is taken from the graph K3sCluster registers (recorded under
mocks with the per-host roots), and run the way pulumi-command runs it: one SSH exec request
with the text, stdin piped, as the configured user (root here). Air-gap files go over SFTP like
CopyToRemote. k3s itself is the test double from lab/k3s-double, installed by the real air-gap
path. Each step runs twice (the second changes nothing: every file's content and mtime are
compared), and failures injected half-way converge on a re-run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.core.layout import CONTROL_PLANE_TAINT, EXPERIMENTAL_TAINT, node_labels
from components.metal.k3s_cluster import K3sCluster, K3sClusterArgs
from components.metal.k3s_scripts import remote_command, rewrite_kubeconfig, uninstall_script
from plan.engine import Recording, run_program
from rack.config import parse_rack

from .conftest import DOUBLE, HOSTS, STORAGE, SUBNET, SshLab

pytestmark = [pytest.mark.realssh, pytest.mark.slow]

V1 = "v1.31.4+k3s1"
V2 = "v1.31.5+k3s1"
TOKEN = "real-ssh-cluster-secret-6f1c2a9be04d47d3"
BOOT = "lab-cp-1"
AGENTS = ["lab-db-1", "lab-exp-1", "lab-gen-1"]


def host_arch() -> str:
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, "arm")


def make_airgap(lab: SshLab, version: str) -> Path:
    target = lab.tmp / "airgap" / version
    subprocess.run(["sh", str(DOUBLE / "make-airgap.sh"), str(target), version], check=True)
    return target


def rack_raw(lab: SshLab, version: str = V1, **changes: Any) -> dict[str, Any]:
    arch = host_arch()

    def node(hostname: str, role: str, klass: str, **extra: Any) -> dict[str, Any]:
        return {
            "hostname": hostname,
            "address": f"{SUBNET}.{HOSTS[hostname]}",
            "role": role,
            "class": klass,
            "arch": arch,
            "capacity": {"cpu": "2", "memory": "4Gi"},
            **extra,
        }

    raw: dict[str, Any] = {
        "domain": "lab.test",
        "ssh": {"user": "root", "port": 22},
        "k3s": {
            "version": version,
            "datastore": "sqlite",
            "bootstrap-server": BOOT,
            "install": {"source": "airgap", "airgap-dir": str(make_airgap(lab, version))},
        },
        "nodes": [
            node("lab-cp-1", "server", "control-plane"),
            node("lab-gen-1", "agent", "general"),
            node("lab-db-1", "agent", "reliable", storage={"path": STORAGE, "size": "10Gi"}),
            node("lab-exp-1", "agent", "experimental"),
        ],
        "ingress": {"address": f"{SUBNET}.21"},
    }
    for path, value in changes.items():
        target = raw
        *parents, last = path.split(".")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value  # type: ignore[index]
    return raw


def record_graph(lab: SshLab, raw: dict[str, Any]) -> Recording:
    rack = parse_rack(raw)
    layouts = {h: host.layout for h, host in lab.hosts.items()}
    return run_program(
        lambda: K3sCluster("k3s", K3sClusterArgs(rack=rack, token=pulumi.Output.secret(TOKEN), layouts=layouts))
    )


def text(g: Recording, name: str, field: str = "create") -> str:
    value = g.by_name(name).inputs[field]
    assert isinstance(value, str)
    return value


def host_of(g: Recording, name: str) -> str:
    address = g.by_name(name).inputs["connection"]["host"]
    return next(h for h, octet in HOSTS.items() if f"{SUBNET}.{octet}" == address)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def run_step(lab: SshLab, g: Recording, name: str, field: str = "create", stdin: str | None = None) -> str:
    return ok(lab.run(host_of(g, name), text(g, name, field), stdin=stdin)).stdout


def copy_airgap(lab: SshLab, g: Recording) -> None:
    for r in g.of_type("command:remote:CopyToRemote"):
        lab.copy(host_of(g, r.name), Path(r.inputs["source"]["path"]), r.inputs["remotePath"])


def parallel(fn: Callable[[str], Any], hosts: list[str]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return list(pool.map(fn, hosts))


def join_token(lab: SshLab, g: Recording) -> str:
    return run_step(lab, g, "k3s-join-token").strip()


def install_all(lab: SshLab, g: Recording) -> str:
    """The first `pulumi up`, in the graph's order: bootstrap, token read-back, joiners in parallel."""
    run_step(lab, g, f"k3s-{BOOT}-install", stdin=TOKEN)
    token = join_token(lab, g)
    parallel(lambda h: run_step(lab, g, f"k3s-{h}-install", stdin=token), AGENTS)
    for h in [BOOT, *AGENTS]:
        run_step(lab, g, f"k3s-{h}-registration")
    upgrade_all(lab, g)
    run_step(lab, g, "k3s-dns-upstream")
    return token


def upgrade_waves(g: Recording) -> list[list[str]]:
    """The upgrade commands grouped into waves by their recorded depends_on among each other."""
    upgrades = {r.name: r for r in g.of_type("command:remote:Command") if r.name.endswith("-upgrade")}
    deps = {n: {d.split("::")[-1] for d in r.depends_on} & set(upgrades) for n, r in upgrades.items()}
    waves: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(upgrades):
        wave = sorted(n for n in upgrades if n not in done and deps[n] <= done)
        assert wave, "cycle among upgrades"
        waves.append(wave)
        done |= set(wave)
    return waves


def upgrade_all(lab: SshLab, g: Recording, field: str = "create") -> None:
    for wave in upgrade_waves(g):
        parallel(lambda name: run_step(lab, g, name, field), wave)


def snapshot(lab: SshLab, hosts: list[str] | None = None) -> dict[str, tuple[str, int, int]]:
    """Every file of the given host roots (and the node registry): content hash, mode, mtime."""
    roots = [lab.hosts[h].root for h in (hosts or list(lab.hosts))]
    if hosts is None:
        roots.append(lab.registry)
    out: dict[str, tuple[str, int, int]] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                st = path.stat()
                out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns)
    return out


def starts(lab: SshLab, host: str) -> list[str]:
    path = lab.hosts[host].root / "var/lib/rancher/k3s/double/starts"
    return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


def registration(lab: SshLab, host: str) -> list[str]:
    return (lab.hosts[host].root / "var/lib/rancher/k3s/double/registration").read_text().splitlines()


def inject(lab: SshLab, host: str, point: str) -> None:
    (lab.hosts[host].root / f".k3s-double-fail-{point}").touch()


def remote_version(lab: SshLab, host: str) -> str:
    root = lab.hosts[host].root
    return ok(lab.run(host, f"{root}/usr/local/bin/k3s --version")).stdout.split()[2]


# --- preflight -------------------------------------------------------------------------------


def test_preflight_passes_twice_and_changes_nothing(lab: SshLab) -> None:
    g = record_graph(lab, rack_raw(lab))
    before = snapshot(lab)
    for _ in range(2):
        for host in HOSTS:
            out = run_step(lab, g, f"k3s-{host}-preflight")
            assert out.startswith(f"{host}: preflight ok ({host_arch()}, memory cgroup on,"), out
    assert snapshot(lab) == before


def test_preflight_stops_a_bad_host_with_what_to_fix(lab: SshLab) -> None:
    wrong_arch = "arm" if host_arch() != "arm" else "amd64"
    (lab.hosts["lab-db-1"].root / "srv" / "not-mounted").mkdir(exist_ok=True)
    g = record_graph(
        lab,
        rack_raw(lab, **{"nodes.2.storage": {"path": "/srv/not-mounted", "size": "10Gi"}, "nodes.3.arch": wrong_arch}),
    )
    db = lab.run("lab-db-1", text(g, "k3s-lab-db-1-preflight"))
    assert db.returncode == 1
    assert "lab-db-1: preflight: storage path /srv/not-mounted is not a mounted filesystem: mount the node's SSD" in (
        db.stderr
    )
    exp = lab.run("lab-exp-1", text(g, "k3s-lab-exp-1-preflight"))
    assert exp.returncode == 1
    assert f"but rack.nodes[].arch says {wrong_arch}: fix the arch in the config" in exp.stderr
    ok(lab.run("lab-gen-1", text(g, "k3s-lab-gen-1-preflight")))  # the others are unaffected


# --- install ---------------------------------------------------------------------------------


def test_install_joins_every_node_and_a_second_run_changes_nothing(lab: SshLab) -> None:
    raw = rack_raw(lab)
    rack = parse_rack(raw)
    g = record_graph(lab, raw)
    copy_airgap(lab, g)
    token = install_all(lab, g)

    # the full-format token pins the cluster CA, and every joiner checked it against the CA
    ca_hash = (lab.registry / ".ca-hash").read_text().strip()
    assert token.startswith(f"K10{ca_hash}::server:{TOKEN}")
    assert sorted(p.name for p in (lab.registry / "nodes").iterdir()) == sorted(HOSTS)
    for node in rack.nodes:
        record = registration(lab, node.hostname)
        labels = node_labels(node_class=node.node_class, role=node.role, arch=node.arch)
        assert {f"label={k}={v}" for k, v in labels.items()} <= set(record)
        assert f"version={V1}" in record
        assert "kubelet-arg=system-reserved=cpu=250m,memory=512Mi" in record
        token_file = lab.hosts[node.hostname].root / "etc/rancher/k3s/join-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
    assert f"taint={CONTROL_PLANE_TAINT.to_k3s()}" in registration(lab, BOOT)
    assert f"taint={EXPERIMENTAL_TAINT.to_k3s()}" in registration(lab, "lab-exp-1")
    assert not [x for x in registration(lab, "lab-gen-1") if x.startswith("taint=")]

    kubeconfig = run_step(lab, g, "k3s-kubeconfig")
    assert "https://127.0.0.1:6443" in kubeconfig
    assert f"https://{SUBNET}.11:6443" in rewrite_kubeconfig(kubeconfig, f"{SUBNET}.11")

    # a second run of every command (what a re-run by hand would do) changes nothing at all
    before = snapshot(lab)
    second = [
        run_step(lab, g, f"k3s-{BOOT}-install", stdin=TOKEN),
        *parallel(lambda h: run_step(lab, g, f"k3s-{h}-install", stdin=token), AGENTS),
    ]
    assert all("is already installed (" + V1 + ")" in out for out in second), second
    assert join_token(lab, g) == token
    for h in [BOOT, *AGENTS]:
        assert run_step(lab, g, f"k3s-{h}-registration").strip() == f"{h}: registered"
        assert run_step(lab, g, f"k3s-{h}-upgrade").strip() == f"{h}: already at {V1} with this config"
    assert snapshot(lab) == before
    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1] for h in HOSTS}

    # the token travelled on stdin only: no command printed it, except the read-back of it
    for output in lab.outputs:
        if output.strip() != token:
            assert TOKEN not in output and token not in output


def test_install_converges_after_a_failure_half_way(lab: SshLab) -> None:
    g = record_graph(lab, rack_raw(lab))
    copy_airgap(lab, g)
    inject(lab, BOOT, "install")
    failed = lab.run(BOOT, text(g, f"k3s-{BOOT}-install"), stdin=TOKEN)
    assert failed.returncode != 0
    assert "injected failure half-way through install.sh" in failed.stderr
    root = lab.hosts[BOOT].root
    assert (root / "usr/local/bin/k3s").exists() and not (root / "usr/local/bin/k3s-uninstall.sh").exists()
    assert "installed and ready" in run_step(lab, g, f"k3s-{BOOT}-install", stdin=TOKEN)

    token = join_token(lab, g)
    inject(lab, "lab-gen-1", "install")
    assert lab.run("lab-gen-1", text(g, "k3s-lab-gen-1-install"), stdin=token).returncode != 0
    parallel(lambda h: run_step(lab, g, f"k3s-{h}-install", stdin=token), AGENTS)
    for h in [BOOT, *AGENTS]:
        run_step(lab, g, f"k3s-{h}-registration")
    upgrade_all(lab, g)

    before = snapshot(lab)
    install_all(lab, g)
    assert snapshot(lab) == before
    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1] for h in HOSTS}


# --- upgrade ---------------------------------------------------------------------------------


def test_upgrade_goes_servers_first_converges_after_a_failure_and_never_downgrades(lab: SshLab) -> None:
    g1 = record_graph(lab, rack_raw(lab))
    copy_airgap(lab, g1)
    install_all(lab, g1)

    g2 = record_graph(lab, rack_raw(lab, version=V2))
    assert upgrade_waves(g2) == [[f"k3s-{BOOT}-upgrade"], [f"k3s-{h}-upgrade" for h in AGENTS]]
    copy_airgap(lab, g2)
    inject(lab, "lab-gen-1", "install")
    [server_wave, agent_wave] = upgrade_waves(g2)
    run_step(lab, g2, server_wave[0], "update")
    assert remote_version(lab, BOOT) == V2
    assert all(remote_version(lab, h) == V1 for h in AGENTS)  # agents wait for the servers

    results = parallel(lambda name: lab.run(host_of(g2, name), text(g2, name, "update")), agent_wave)
    by_host = dict(zip(AGENTS, results, strict=True))
    assert by_host["lab-gen-1"].returncode != 0
    assert "injected failure" in by_host["lab-gen-1"].stderr
    assert all(by_host[h].returncode == 0 for h in ("lab-db-1", "lab-exp-1"))
    # half-way: the new binary is in place, k3s was not restarted; the re-run must still restart it
    assert remote_version(lab, "lab-gen-1") == V2 and starts(lab, "lab-gen-1") == [V1]
    assert "installed and ready" in run_step(lab, g2, "k3s-lab-gen-1-upgrade", "update")

    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1, V2] for h in HOSTS}
    assert all(f"version={V2}" in registration(lab, h) for h in HOSTS)

    before = snapshot(lab)
    upgrade_all(lab, g2, "update")
    # a stale install text (what a connection change would re-run) never downgrades
    for h in HOSTS:
        out = run_step(lab, g1, f"k3s-{h}-install", stdin=TOKEN)
        assert f"k3s {V2} is installed; changing versions is the upgrade step's job" in out
    assert snapshot(lab) == before
    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1, V2] for h in HOSTS}
    assert "https://127.0.0.1:6443" in run_step(lab, g2, "k3s-kubeconfig")


# --- removal ---------------------------------------------------------------------------------


def test_removing_a_node_drains_it_then_uninstalls_that_host_only(lab: SshLab) -> None:
    raw = rack_raw(lab)
    g = record_graph(lab, raw)
    copy_airgap(lab, g)
    install_all(lab, g)
    without = rack_raw(lab)
    without["nodes"] = [n for n in without["nodes"] if n["hostname"] != "lab-gen-1"]
    g_after = record_graph(lab, without)
    gone = {r.name for r in g} - {r.name for r in g_after}
    with_delete = sorted(n for n in gone if g.by_name(n).inputs.get("delete"))
    assert with_delete == ["k3s-lab-gen-1-membership", "k3s-lab-gen-1-registration"]
    others = [h for h in HOSTS if h != "lab-gen-1"]
    before_others = snapshot(lab, others)

    # 1. the registration's delete, on the bootstrap server: cordon, drain, delete the Node
    out = run_step(lab, g, "k3s-lab-gen-1-registration", "delete")
    assert "lab-gen-1: drained and deleted from the cluster" in out
    assert not (lab.registry / "nodes" / "lab-gen-1").exists()
    assert "nothing to drain" in run_step(lab, g, "k3s-lab-gen-1-registration", "delete")

    # 2. the membership's delete, on that host: uninstall (fails half-way once, then converges)
    inject(lab, "lab-gen-1", "uninstall")
    failed = lab.run("lab-gen-1", text(g, "k3s-lab-gen-1-membership", "delete"))
    assert failed.returncode != 0 and "injected failure half-way" in failed.stderr
    assert "k3s uninstalled" in run_step(lab, g, "k3s-lab-gen-1-membership", "delete")
    assert "not installed here: nothing to do" in run_step(lab, g, "k3s-lab-gen-1-membership", "delete")
    root = lab.hosts["lab-gen-1"].root
    for path in ("etc/rancher/k3s", "var/lib/rancher/k3s", "usr/local/bin/k3s", "usr/local/bin/k3s-agent-uninstall.sh"):
        assert not (root / path).exists(), path

    # a host that now runs k3s under another name keeps it
    guard = remote_command(uninstall_script(hostname="lab-gen-1", layout=lab.hosts["lab-exp-1"].layout), user="root")
    assert "belongs to node 'lab-exp-1'" in ok(lab.run("lab-exp-1", guard)).stdout

    assert snapshot(lab, others) == before_others
    assert sorted(p.name for p in (lab.registry / "nodes").iterdir()) == sorted(others)


def test_a_class_change_reconfigures_that_node_only_without_reinstalling(lab: SshLab) -> None:
    g = record_graph(lab, rack_raw(lab))
    copy_airgap(lab, g)
    install_all(lab, g)
    g2 = record_graph(lab, rack_raw(lab, **{"nodes.1.class": "experimental"}))  # lab-gen-1
    others = [h for h in HOSTS if h != "lab-gen-1"]
    before_others = snapshot(lab, others)
    # state an uninstall would wipe (k3s' data dir) must survive a reconfiguration
    sentinel = lab.hosts["lab-gen-1"].root / "var/lib/rancher/k3s/agent/sentinel-pod-data"
    sentinel.write_text("kept")
    for _ in range(2):
        upgrade_all(lab, g2, "update")
    config = (lab.hosts["lab-gen-1"].root / "etc/rancher/k3s/config.yaml").read_text()
    assert f"- {EXPERIMENTAL_TAINT.to_k3s()}" in config
    assert "rack.homelab.io/class=experimental" in config
    assert starts(lab, "lab-gen-1") == [V1, V1]  # one restart to pick up config.yaml, then none
    assert sentinel.read_text() == "kept"
    assert snapshot(lab, others) == before_others


# --- dns.upstream ----------------------------------------------------------------------------


def coredns(lab: SshLab) -> dict[str, Any]:
    return json.loads((lab.registry / "deployments" / "kube-system" / "coredns").read_text())


def test_dns_upstream_lands_on_every_node_restarts_k3s_and_coredns_only_when_it_changes(lab: SshLab) -> None:
    raw = rack_raw(lab)
    g = record_graph(lab, raw)
    copy_airgap(lab, g)
    # k3s' packaged CoreDNS, as the API stand-in holds it (the double has no deploy controller)
    (lab.registry / "deployments" / "kube-system").mkdir(parents=True)
    (lab.registry / "deployments" / "kube-system" / "coredns").write_text(
        json.dumps({"kind": "Deployment", "spec": {"template": {"metadata": {"labels": {"k8s-app": "kube-dns"}}}}})
    )
    install_all(lab, g)
    default = [str(a) for a in parse_rack(raw).dns.upstream]  # the model's default: 1.1.1.1, 9.9.9.9
    for h in HOSTS:
        root = lab.hosts[h].root
        assert (root / "etc/rancher/k3s/resolv.conf").read_text() == "".join(f"nameserver {a}\n" for a in default)
        assert f"resolv-conf: {root}/etc/rancher/k3s/resolv.conf" in (root / "etc/rancher/k3s/config.yaml").read_text()
        assert [x for x in registration(lab, h) if x.startswith("nameserver=")] == [f"nameserver={a}" for a in default]
    annotations = coredns(lab)["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"rack.homelab.io/dns-upstream": ",".join(default)}
    assert coredns(lab)["status"]["rollouts"] == 1

    # a second run of the upgrade steps and the CoreDNS check changes nothing
    before = snapshot(lab)
    upgrade_all(lab, g, "update")
    assert "CoreDNS already forwards to 1.1.1.1,9.9.9.9" in run_step(lab, g, "k3s-dns-upstream")
    assert snapshot(lab) == before
    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1] for h in HOSTS}

    # new upstreams: every node rewrites the file and restarts k3s once, CoreDNS rolls once
    g2 = record_graph(lab, rack_raw(lab, **{"dns": {"upstream": ["192.168.10.1", "9.9.9.9"]}}))
    # (the install steps' text changes too, but they ignore changes to it: a node joins once)
    changed = {r.name for r in g2 if r.inputs != g.by_name(r.name).inputs and not r.name.endswith("-install")}
    assert changed == {f"k3s-{h}-upgrade" for h in HOSTS} | {"k3s-dns-upstream"}
    upgrade_all(lab, g2, "update")
    assert "CoreDNS restarted to forward to 192.168.10.1,9.9.9.9" in run_step(lab, g2, "k3s-dns-upstream", "create")
    for h in HOSTS:
        assert (lab.hosts[h].root / "etc/rancher/k3s/resolv.conf").read_text() == (
            "nameserver 192.168.10.1\nnameserver 9.9.9.9\n"
        )
        assert [x for x in registration(lab, h) if x.startswith("nameserver=")] == [
            "nameserver=192.168.10.1",
            "nameserver=9.9.9.9",
        ]
    assert {h: starts(lab, h) for h in HOSTS} == {h: [V1, V1] for h in HOSTS}
    assert coredns(lab)["status"]["rollouts"] == 2
    before = snapshot(lab)
    upgrade_all(lab, g2, "update")
    run_step(lab, g2, "k3s-dns-upstream")
    assert snapshot(lab) == before
