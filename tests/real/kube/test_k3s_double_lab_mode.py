"""The k3s double's lab mode against a real API server: a start registers the Node as a kubelet
does, and a restart on another version reports that version in the Node's status (what the
upgrade gate waits for), leaving labels and taints alone. The lab (`make lab-up`) is not needed:
the double's host files point at this test's API server (admin credentials stand in for the
host's kubelet identity, which only this test lacks), and its `server:` at a k3s supervisor double
(lab/k3s-supervisor.py) whose /cacerts the join token pins."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k3s_supervisor import make_pki, supervisor, token

from .conftest import KubeApi

pytestmark = [pytest.mark.realkube, pytest.mark.slow]

DOUBLE = Path(__file__).resolve().parents[3] / "lab" / "k3s-double"


def host(api: KubeApi, tmp: Path, version: str, server: str, pki: Path) -> Path:
    root = tmp / "host"
    binary = root / "usr/local/bin/k3s"
    if not binary.exists():
        (root / "etc/rancher/k3s").mkdir(parents=True)
        (root / "etc/lab").mkdir(parents=True)
        (root / "etc/k3s-double.env").write_text(f"K3S_DOUBLE_KUBECONFIG={api.kubeconfig}\n")
        (root / "etc/lab/apiserver.env").write_text(
            f"LAB_NODE_KUBECONFIG={api.kubeconfig}\nLAB_NODE_ADDRESS=10.77.0.21\nLAB_KUBECTL={api.kubectl_bin}\n"
        )
        (root / "etc/rancher/k3s/join-token").write_text(token(pki, "node", "secret") + "\n")
        (root / "etc/rancher/k3s/config.yaml").write_text(
            "node-name: double-lab-1\n"
            f"token-file: {root}/etc/rancher/k3s/join-token\n"
            f"server: {server}\n"
            "node-label:\n- rack.homelab.io/class=general\n"
            "node-taint:\n- rack.homelab.io/experimental=true:NoSchedule\n"
        )
    subprocess.run(["sh", str(DOUBLE / "make-airgap.sh"), str(tmp / version), version], check=True)
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_bytes((tmp / version / "k3s-amd64").read_bytes())
    binary.chmod(0o755)
    return root


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    pki = make_pki(tmp_path, "cluster")
    with supervisor(pki) as url:
        yield url, pki


def test_a_restart_on_a_new_version_reports_it_and_keeps_the_nodes_taints(
    kube_api: KubeApi, tmp_path: Path, server: tuple[str, Path]
) -> None:
    root = host(kube_api, tmp_path, "v1.35.8+k3s1", *server)
    first = subprocess.run([str(root / "usr/local/bin/k3s"), "agent"], capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    node = kube_api.get("node", "double-lab-1")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.8+k3s1"
    assert node["metadata"]["labels"]["rack.homelab.io/class"] == "general"
    kube_api.kubectl("taint", "node", "double-lab-1", "example.com/theirs=1:NoSchedule")

    root = host(kube_api, tmp_path, "v1.36.4+k3s1", *server)
    again = subprocess.run([str(root / "usr/local/bin/k3s"), "agent"], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    node = kube_api.get("node", "double-lab-1")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.4+k3s1"
    assert {t["key"] for t in node["spec"]["taints"]} >= {
        "rack.homelab.io/experimental",
        "example.com/theirs",
    }
