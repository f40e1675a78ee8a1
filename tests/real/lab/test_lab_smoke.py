"""Smoke test of the lab rack itself (lab/lab-up.sh, lab/lab-down.sh; lab/README-interface.md).

Brings the lab up once for the module (real kube-apiserver, kube-controller-manager,
kube-scheduler and etcd built from Go modules, KWOK, one network namespace with a real OpenSSH
server per host of Pulumi.lab.yaml) and proves:
- the API server answers on the bridge, authenticates clients by certificate, and is reachable
  from inside a host (directly, and through the server host's :6443 k3s supervisor double under
  the names in its serving certificate, which answers /cacerts and /ping itself and passes the
  client's own identity on);
- every host answers SSH with its own host key and hostname; a file written on one host under
  the paths k3s uses is invisible on another host and on the machine;
- a host's node identity may register its own Node and not another's (Node authorizer +
  NodeRestriction, as for a kubelet);
- the real scheduler binds a pod to the only node its selector and the taints allow, KWOK marks
  node Ready and pod Running, the ServiceAccount token controller works, a PV binds to a PVC;
- a stopped host refuses SSH and comes back with its disk;
- lab-down removes everything — also from a partial lab (namespace, veth, bridge, process).
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.prereq import machine_lock, need

pytestmark = [pytest.mark.realssh, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
LAB_DIR = REPO / "build" / "lab"
BRIDGE = "labbr0"
NS_PREFIX = "hl-"
API = "https://10.77.0.1:6443"


@dataclass(frozen=True)
class Lab:
    env: dict[str, str]
    hosts: list[dict[str, str]]

    def host(self, name: str) -> dict[str, str]:
        return next(h for h in self.hosts if h["hostname"] == name)

    def ssh(
        self, name: str, command: str, *, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        host = self.host(name)
        return subprocess.run(
            [
                "ssh", "-i", self.env["LAB_SSH_KEY"], "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.env['LAB_KNOWN_HOSTS']}",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"pi@{host['address']}",
                f"sudo -n bash -c {shlex.quote(command)}",
            ],
            capture_output=True, text=True, check=check, timeout=timeout,
        )  # fmt: skip

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *,
            cert: tuple[str, str] | None = None, base: str = API) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """(status, JSON body) of an API request, as the admin unless another cert is given."""
        ctx = ssl.create_default_context(cafile=self.env["LAB_CA_CERT"])
        ctx.load_cert_chain(*(cert or (self.env["LAB_ADMIN_CERT"], self.env["LAB_ADMIN_KEY"])))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def wait_for(self, what: str, probe: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def _lab_sh(script: str, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "lab" / script), *args], capture_output=True, text=True, timeout=timeout)


def _needs() -> None:
    need("systemd-nspawn", "systemd-container", root=True)
    need("mmdebstrap", "mmdebstrap", root=True)
    need("ssh", "openssh-client")
    need("openssl", "openssl")
    need("curl", "curl")
    need("ip", "iproute2", root=True)
    need("go", "golang (the Go toolchain builds the control plane)")


def _leftovers() -> list[str]:
    """What of the lab still exists on the machine."""
    found = []
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"veth {line.split(': ')[1]}" for line in links.splitlines() if line.split(": ")[1].startswith("labv")]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"netns {ns}" for ns in netns if ns.startswith(NS_PREFIX)]
    cache = os.environ.get("HOMELAB_LAB_CACHE", os.path.expanduser("~/.cache/homelab-rack/lab")) + "/"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                exe = os.readlink(proc / "exe")
            except OSError:
                continue
            if exe.startswith(cache):
                found.append(f"process {proc.name} {exe}")
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line}" for line in mounts.splitlines() if str(LAB_DIR) in line]
    found += [f"dir {d}" for d in ("run", "pki", "hosts", "etcd") if (LAB_DIR / d).exists()]
    return found


@pytest.fixture(scope="module", autouse=True)
def _one_lab_per_machine() -> Iterator[None]:
    """Every test here makes or removes the machine's one lab: hold its lock (see machine_lock)."""
    with machine_lock("lab"):
        yield


@pytest.fixture(scope="module")
def lab_rack(_one_lab_per_machine: None) -> Iterator[Lab]:
    _needs()
    up = _lab_sh("lab-up.sh")
    try:
        assert up.returncode == 0, f"lab-up failed:\n{up.stderr[-4000:]}"
        env: dict[str, str] = {}
        for line in (LAB_DIR / "env.sh").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value.strip("'")
        hosts = json.loads(Path(env["LAB_HOSTS_JSON"]).read_text())
        yield Lab(env=env, hosts=hosts)
    finally:
        _lab_sh("lab-down.sh", timeout=300)


def _stack_hosts() -> list[str]:
    import yaml

    rack = yaml.safe_load((REPO / "Pulumi.lab.yaml").read_text())["config"]["homelab:rack"]
    return [n["hostname"] for n in rack["nodes"]]


def test_lab_down_cleans_a_partial_lab() -> None:
    """As if lab-up died half-way: a bridge, a host namespace with a veth and a live process."""
    _needs()
    _lab_sh("lab-down.sh", timeout=300)
    assert _leftovers() == [], "starts from a clean machine"
    ns = f"{NS_PREFIX}partial"
    sleeper = None
    try:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", "labv99", "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "link", "set", "labv99", "master", BRIDGE], check=True)
        sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"])
        (LAB_DIR / "run").mkdir(parents=True, exist_ok=True)
        assert len(_leftovers()) >= 4
        down = _lab_sh("lab-down.sh", timeout=300)
        assert down.returncode == 0, down.stderr
        assert sleeper.wait(timeout=10) != 0, "the process in the host namespace was killed"
        assert _leftovers() == []
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
        _lab_sh("lab-down.sh", timeout=300)


def test_failed_lab_up_tears_down_what_it_made(tmp_path: Path) -> None:
    """lab-up dies half-way (a stack naming one host twice: its namespace exists already, after
    the certificates, the bridge, etcd, the API server and the first host were made)."""
    _needs()
    stack = tmp_path / "Pulumi.broken.yaml"
    node = {"hostname": "lab-dup-1", "address": "10.77.0.51", "role": "server"}
    stack.write_text(json.dumps({"config": {"homelab:rack": {"domain": "lab.test", "nodes": [node, node]}}}))
    hardware = tmp_path / "hosts.env"  # the lab's hardware table (lab/hosts.env) for this host
    hardware.write_text("lab-dup-1 2 4Gi\n")
    up = subprocess.run(
        [str(REPO / "lab" / "lab-up.sh")],
        capture_output=True, text=True, timeout=7200,
        env={**os.environ, "HOMELAB_LAB_STACK": str(stack), "HOMELAB_LAB_EXTRA_HOSTS": "",
             "HOMELAB_LAB_HARDWARE": str(hardware)},
    )  # fmt: skip
    try:
        assert up.returncode != 0
        assert "lab-up failed" in up.stderr and "etcd healthy" in up.stderr, up.stderr[-2000:]
        assert _leftovers() == []
    finally:
        _lab_sh("lab-down.sh", timeout=300)


def test_api_server_answers_and_authenticates(lab_rack: Lab) -> None:
    ctx = ssl.create_default_context(cafile=lab_rack.env["LAB_CA_CERT"])
    with urllib.request.urlopen(API + "/readyz", context=ctx, timeout=10) as resp:
        assert resp.read() == b"ok"
    status, nodes = lab_rack.api("GET", "/api/v1/nodes")
    assert status == 200 and nodes["kind"] == "NodeList"
    status, version = lab_rack.api("GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "31")
    # No client certificate: anonymous, who may not list nodes.
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(API + "/api/v1/nodes", context=ctx, timeout=10)
    assert denied.value.code == 403


def test_every_host_answers_ssh_as_itself(lab_rack: Lab) -> None:
    names = [h["hostname"] for h in lab_rack.hosts]
    assert set(_stack_hosts()) <= set(names), "every node of Pulumi.lab.yaml is a lab host"
    for name in names:
        out = lab_rack.ssh(name, "hostname; cat /etc/hostname; ip -4 -o addr show eth0").stdout.split("\n")
        assert out[0] == name and out[1] == name
        assert f"inet {lab_rack.host(name)['address']}/24" in out[2]


def test_host_filesystems_are_isolated(lab_rack: Lab) -> None:
    a, b = "lab-gen-1", "lab-gen-2"
    write = (
        "set -e; mkdir -p /etc/rancher/k3s /var/lib/rancher/k3s/server /srv/lab-storage; "
        "echo only-on-$(hostname) > /usr/local/bin/k3s-smoke-probe; chmod +x /usr/local/bin/k3s-smoke-probe; "
        "echo a > /etc/rancher/k3s/smoke; echo a > /var/lib/rancher/k3s/server/smoke; echo a > /srv/lab-storage/smoke; "
        "echo a > /root/smoke; echo a > /tmp/smoke"
    )
    lab_rack.ssh(a, write)
    paths = ["/usr/local/bin/k3s-smoke-probe", "/etc/rancher/k3s/smoke", "/var/lib/rancher/k3s/server/smoke",
             "/srv/lab-storage/smoke", "/root/smoke", "/tmp/smoke"]  # fmt: skip
    assert lab_rack.ssh(a, "cat /usr/local/bin/k3s-smoke-probe").stdout.strip() == f"only-on-{a}"
    for path in paths:
        assert lab_rack.ssh(a, f"test -e {path}", check=False).returncode == 0, f"{path} on {a}"
        assert lab_rack.ssh(b, f"test -e {path}", check=False).returncode == 1, f"{path} leaked to {b}"
        assert not Path(path).exists(), f"{path} leaked to the machine"
    # The machine's own /usr/local/bin is not part of a host.
    if any(Path("/usr/local/bin").iterdir()):
        assert lab_rack.ssh(b, "ls -A /usr/local/bin").stdout == ""


def test_sftp_copies_to_one_host(lab_rack: Lab, tmp_path: Path) -> None:
    """The SFTP subsystem pulumi-command's CopyToRemote uses, into the air-gap staging folder."""
    src = tmp_path / "k3s-amd64"
    src.write_text("#!/bin/sh\necho sftp-copied\n")
    host = lab_rack.host("lab-db-1")
    lab_rack.ssh("lab-db-1", "install -d -o pi -g pi /var/tmp/homelab-k3s/smoke")
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} /var/tmp/homelab-k3s/smoke/k3s-amd64\n")
    subprocess.run(
        ["sftp", "-b", str(batch), "-i", lab_rack.env["LAB_SSH_KEY"], "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={lab_rack.env['LAB_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
         f"pi@{host['address']}"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert lab_rack.ssh("lab-db-1", "sh /var/tmp/homelab-k3s/smoke/k3s-amd64").stdout == "sftp-copied\n"
    assert lab_rack.ssh("lab-gen-1", "test -e /var/tmp/homelab-k3s/smoke", check=False).returncode == 1


def _node_manifest(name: str, address: str, labels: dict[str, str], taints: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **labels}},
        "spec": {"taints": taints},
        "status": {
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        },
    }


def test_node_identity_registers_only_its_own_node(lab_rack: Lab) -> None:
    """From inside lab-gen-3 with /etc/lab/node.kubeconfig, as a kubelet would (curl + python3)."""
    me, other = "lab-gen-3", "lab-gen-2"
    script = r"""
set -e
. /etc/lab/apiserver.env
python3 - <<'PY'
import base64, re
text = open("/etc/lab/node.kubeconfig").read()
for key, out in (("client-certificate-data", "/tmp/node.crt"), ("client-key-data", "/tmp/node.key")):
    open(out, "wb").write(base64.b64decode(re.search(key + r": (\S+)", text).group(1)))
PY
post() { curl -sS -o /dev/null -w '%{http_code}\n' --cacert "$LAB_CA_CERT" --cert /tmp/node.crt --key /tmp/node.key \
  -H 'Content-Type: application/json' -X POST --data-binary @- "$LAB_API_SERVER/api/v1/nodes"; }
"""
    mine = json.dumps(_node_manifest(me, "10.77.0.23", {"rack.homelab.io/class": "general"}, []))
    theirs = json.dumps(_node_manifest(other, "10.77.0.22", {}, []))
    role_label = json.dumps(_node_manifest(me, "10.77.0.23", {"node-role.kubernetes.io/worker": "true"}, []))
    out = lab_rack.ssh(me, script + f"post <<'J'\n{role_label}\nJ\npost <<'J'\n{theirs}\nJ\npost <<'J'\n{mine}\nJ\n")
    assert out.stdout.split() == ["403", "403", "201"], out.stdout + out.stderr
    try:
        node = lab_rack.wait_for(
            "KWOK to mark the node Ready",
            lambda: next(
                (n for n in [lab_rack.api("GET", f"/api/v1/nodes/{me}")[1]]
                 for c in n.get("status", {}).get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"),
                None,
            ),
        )  # fmt: skip
        assert node["status"]["capacity"]["cpu"] == "2", "KWOK keeps the registered capacity"
    finally:
        lab_rack.api("DELETE", f"/api/v1/nodes/{me}")


def test_api_reachable_from_hosts_and_through_the_server_supervisor(lab_rack: Lab) -> None:
    server = next(h for h in lab_rack.hosts if h["role"] == "server")
    ca = lab_rack.env["LAB_CA_CERT"]
    ctx = ssl.create_default_context(cafile=ca)
    supervisor = f"https://{server['address']}:6443"
    # From the machine, under the server host's address (the program's rewritten k3s.yaml).
    with urllib.request.urlopen(f"{supervisor}/readyz", context=ctx, timeout=10) as resp:
        assert resp.read() == b"ok"
    # What a k3s server answers itself (k3s pkg/server/handlers/router.go): the CA bundle's bytes
    # on /cacerts (what a token's hash pins), "pong" on /ping.
    with urllib.request.urlopen(f"{supervisor}/cacerts", context=ctx, timeout=10) as resp:
        assert resp.read() == Path(ca).read_bytes()
    with urllib.request.urlopen(f"{supervisor}/ping", context=ctx, timeout=10) as resp:
        assert resp.read() == b"pong"
    # The rest reaches the API server as the client: the admin certificate's identity (lab-up:
    # CN=lab-admin, O=system:masters), whatever X-Remote-* headers the client adds; no
    # certificate: anonymous, who may not list nodes (403, not refused outright).
    status, _ = lab_rack.api("GET", "/api/v1/nodes", base=supervisor)
    assert status == 200
    admin = ssl.create_default_context(cafile=ca)
    admin.load_cert_chain(lab_rack.env["LAB_ADMIN_CERT"], lab_rack.env["LAB_ADMIN_KEY"])
    review = urllib.request.Request(
        f"{supervisor}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Content-Type": "application/json", "X-Remote-User": "someone-else", "X-Remote-Group": "forged"},
        method="POST",
    )
    with urllib.request.urlopen(review, context=admin, timeout=10) as resp:
        user = json.loads(resp.read())["status"]["userInfo"]
    assert user["username"] == "lab-admin"
    assert "system:masters" in user["groups"] and "forged" not in user["groups"]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{supervisor}/api/v1/nodes", context=ctx, timeout=10)
    assert denied.value.code == 403
    # Inside the server host, the k3s.yaml address; inside an agent, the bridge address.
    assert (
        lab_rack.ssh(server["hostname"], "curl -sS --cacert /etc/lab/ca.crt https://127.0.0.1:6443/readyz").stdout
        == "ok"
    )
    assert lab_rack.ssh("lab-exp-1", "curl -sS --cacert /etc/lab/ca.crt https://10.77.0.1:6443/readyz").stdout == "ok"
    k3s_yaml = lab_rack.ssh(server["hostname"], "cat /etc/lab/k3s.yaml").stdout
    assert "server: https://127.0.0.1:6443" in k3s_yaml
    # The real kubectl, as `k3s kubectl` would run it on the server host, and on the machine.
    ready = lab_rack.ssh(
        server["hostname"], ". /etc/lab/apiserver.env; $LAB_KUBECTL --kubeconfig $LAB_K3S_YAML get --raw /readyz"
    )
    assert ready.stdout == "ok"
    version = subprocess.run(
        [lab_rack.env["LAB_KUBECTL"], "--kubeconfig", lab_rack.env["LAB_KUBECONFIG"], "version", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    versions = json.loads(version.stdout)
    assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"] == "v1.31.14"
    assert lab_rack.ssh("lab-exp-1", "test -e /etc/lab/admin.kubeconfig", check=False).returncode == 1, (
        "agents hold no admin credentials"
    )


def test_real_scheduler_binds_and_kwok_runs_pods(lab_rack: Lab) -> None:
    nodes = {
        "smoke-general": ("10.77.0.201", {"rack.homelab.io/class": "general"}, []),
        "smoke-reliable": ("10.77.0.202", {"rack.homelab.io/class": "reliable"}, []),
        "smoke-tainted": ("10.77.0.203", {"rack.homelab.io/class": "general"},
                          [{"key": "rack.homelab.io/experimental", "value": "true", "effect": "NoSchedule"}]),
    }  # fmt: skip
    ns = "smoke"
    try:
        for name, (address, labels, taints) in nodes.items():
            status, body = lab_rack.api("POST", "/api/v1/nodes", _node_manifest(name, address, labels, taints))
            assert status == 201, body
        status, body = lab_rack.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        assert status == 201, body
        lab_rack.wait_for(
            "the ServiceAccount controller to create smoke/default",
            lambda: lab_rack.api("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200,
        )
        pods = []
        for i in range(4):
            pod = {
                "metadata": {"name": f"web-{i}"},
                "spec": {
                    "nodeSelector": {"rack.homelab.io/class": "general"},
                    "containers": [{"name": "web", "image": "registry.lab.test/web:1.0.0",
                                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                },
            }  # fmt: skip
            status, body = lab_rack.api("POST", f"/api/v1/namespaces/{ns}/pods", pod)
            assert status == 201, body
            pods.append(body["metadata"]["name"])

        def all_running() -> list[dict[str, Any]] | None:
            items = lab_rack.api("GET", f"/api/v1/namespaces/{ns}/pods")[1]["items"]
            ok = len(items) == 4 and all(p["status"].get("phase") == "Running" for p in items)
            return items if ok else None

        items = lab_rack.wait_for("pods bound and Running", all_running, timeout=90)
        for pod in items:
            assert pod["spec"]["nodeName"] == "smoke-general", "selector excludes reliable, taint excludes tainted"
            assert pod["status"]["podIP"].startswith("10.42."), "KWOK assigns pod IPs from the k3s pod CIDR"
            assert any(v.get("projected") for v in pod["spec"]["volumes"]), "ServiceAccount token projected"
        events = lab_rack.api("GET", f"/api/v1/namespaces/{ns}/events")[1]["items"]
        scheduled = [e for e in events if e["reason"] == "Scheduled"]
        assert len(scheduled) == 4 and all(
            "default-scheduler" in (e.get("reportingComponent"), e.get("source", {}).get("component"))
            for e in scheduled
        ), "bound by the real kube-scheduler"

        # Volume binding by the real PV controller.
        pv = {
            "metadata": {"name": "smoke-pv"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "smoke",
                     "hostPath": {"path": "/srv/lab-storage/smoke"}},
        }  # fmt: skip
        pvc = {
            "metadata": {"name": "smoke-pvc"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "smoke", "volumeName": "smoke-pv",
                     "resources": {"requests": {"storage": "1Gi"}}},
        }  # fmt: skip
        assert lab_rack.api("POST", "/api/v1/persistentvolumes", pv)[0] == 201
        assert lab_rack.api("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", pvc)[0] == 201
        lab_rack.wait_for(
            "the PVC to bind",
            lambda: lab_rack.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/smoke-pvc")[1]
            .get("status", {}).get("phase") == "Bound",
        )  # fmt: skip
    finally:
        lab_rack.api("DELETE", f"/api/v1/namespaces/{ns}")
        lab_rack.api("DELETE", "/api/v1/persistentvolumes/smoke-pv")
        for name in nodes:
            lab_rack.api("DELETE", f"/api/v1/nodes/{name}")


def test_stopped_host_refuses_ssh_and_comes_back_with_its_disk(lab_rack: Lab) -> None:
    name = "lab-exp-1"
    lab_rack.ssh(name, "echo kept > /var/lib/rancher-smoke; echo gone > /tmp/smoke-tmp")
    stop = _lab_sh("lab-host.sh", "stop", name, timeout=60)
    assert stop.returncode == 0, stop.stderr
    down = lab_rack.ssh(name, "true", check=False)
    assert down.returncode == 255 and "refused" in down.stderr
    assert lab_rack.ssh("lab-gen-1", "hostname").stdout.strip() == "lab-gen-1", "the others stay up"
    start = _lab_sh("lab-host.sh", "start", name, timeout=60)
    assert start.returncode == 0, start.stderr
    assert lab_rack.ssh(name, "cat /var/lib/rancher-smoke").stdout.strip() == "kept"
    assert lab_rack.ssh(name, "test -e /tmp/smoke-tmp", check=False).returncode == 1


def test_lab_down_removes_everything(lab_rack: Lab) -> None:
    before = _leftovers()
    assert {"bridge labbr0", "dir hosts", "netns hl-lab-cp-1"} <= set(before), "the lab is up before"
    assert any(x.startswith("process") for x in before) and any(x.startswith("veth") for x in before)
    first = _lab_sh("lab-down.sh", timeout=300)
    assert first.returncode == 0, first.stderr
    assert _leftovers() == []
    again = _lab_sh("lab-down.sh", timeout=300)
    assert again.returncode == 0, "idempotent: " + again.stderr
