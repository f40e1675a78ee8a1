"""The rollout's drain and gate against a real API server, controller manager and kubectl.

The scripts run by bash with `k3s kubectl` = the real kubectl. Node status (Ready, kubelet
version) is written through the status subresource as a kubelet reports it: no kubelet runs here.
What is shown with Kubernetes' own semantics: the drain goes through the eviction API and a
PodDisruptionBudget that allows no disruption stops it within its timeout (the error names the
budget); without the budget the pod is evicted and the drain completes; the gate waits for Ready
on the new version and uncordons only the node the drain cordoned, and fails naming what it saw.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from components.core.layout import workload_labels
from components.metal.k3s_scripts import (
    UPGRADE_CORDON_ANNOTATION,
    HostLayout,
    upgrade_drain_script,
    upgrade_gate_script,
)
from rack.vocabulary import Category

from .conftest import KubeApi

pytestmark = [pytest.mark.realkube, pytest.mark.slow]

OLD, NEW = "v1.35.8+k3s1", "v1.36.4+k3s1"


def report_status(api: KubeApi, name: str, *, version: str, ready: bool) -> None:
    """What a kubelet reports: its version and the Ready condition, with a fresh heartbeat."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "status": {
            "nodeInfo": {"kubeletVersion": version},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "test",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        }
    }
    api.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def register(api: KubeApi, name: str) -> None:
    api.kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    report_status(api, name, version=OLD, ready=True)


def run(api: KubeApi, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False)


def layout(api: KubeApi) -> HostLayout:
    return HostLayout(root=str(api.k3s_root("gate")))


def node(api: KubeApi, name: str) -> dict[str, Any]:
    return api.get("node", name)


def test_the_drain_honours_a_disruption_budget_and_the_gate_uncordons_when_ready(kube_api: KubeApi) -> None:
    name = "gate-node-1"
    register(kube_api, name)
    kube_api.kubectl("create", "namespace", "gate-test")
    # A pod with a controller, as every workload of the program has one (drain refuses bare pods).
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "db", "namespace": "gate-test"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(owner))
    uid = kube_api.get("replicaset", "db", "-n", "gate-test")["metadata"]["uid"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "db-0",
            "namespace": "gate-test",
            "labels": {"app": "db"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "db", "uid": uid, "controller": True}
            ],
        },
        "spec": {
            "nodeName": name,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "db", "image": "registry.k8s.io/pause:3.10"}],
        },
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    # Running and Ready, as its kubelet would report (a Pending pod may be evicted whatever the budget)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    running = {
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}
    }
    kube_api.kubectl(
        "-n", "gate-test", "patch", "pod", "db-0", "--subresource=status", "--type=merge", "-p", json.dumps(running)
    )
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "gate-test"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(pdb))
    # the disruption controller has counted the budget: 1 healthy pod, 1 required, none may go
    kube_api.wait(
        "the budget's status",
        lambda: kube_api.get("pdb", "db", "-n", "gate-test").get("status", {}).get("currentHealthy") == 1,
    )

    drain = upgrade_drain_script(hostname=name, version=NEW, timeout_s=8, layout=layout(kube_api))
    blocked = run(kube_api, drain)
    assert blocked.returncode == 1
    assert "Cannot evict pod as it would violate the pod's disruption budget" in blocked.stderr
    assert f"{name}: drain before the upgrade to {NEW} did not finish in 8 s" in blocked.stderr
    cordoned = node(kube_api, name)
    assert cordoned["spec"]["unschedulable"] is True
    assert cordoned["metadata"]["annotations"][UPGRADE_CORDON_ANNOTATION] == NEW

    kube_api.kubectl("-n", "gate-test", "delete", "pdb", "db")
    done = run(kube_api, drain)  # the next `up`: the same step again
    assert done.returncode == 0, done.stderr
    assert f"cordoned and drained: {OLD} -> {NEW}" in done.stdout
    assert kube_api.kubectl("-n", "gate-test", "get", "pods", "-o", "name").stdout.strip() == ""

    gate = upgrade_gate_script(hostname=name, version=NEW, converges="x", timeout_s=20, layout=layout(kube_api))
    report_status(kube_api, name, version=NEW, ready=True)  # k3s restarted on the new version
    passed = run(kube_api, gate)
    assert passed.returncode == 0, passed.stderr
    assert f"Ready on {NEW}: uncordoned" in passed.stdout
    after = node(kube_api, name)
    assert not after["spec"].get("unschedulable")
    assert UPGRADE_CORDON_ANNOTATION not in (after["metadata"].get("annotations") or {})


def test_the_drain_leaves_data_pods_which_cannot_move_and_their_budgets_alone(kube_api: KubeApi) -> None:
    name = "gate-node-4"
    register(kube_api, name)
    kube_api.kubectl("create", "namespace", "gate-data")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "postgres-0",
            "namespace": "gate-data",
            "labels": workload_labels("postgres", Category.DATA),
        },
        "spec": {"nodeName": name, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    drained = run(kube_api, upgrade_drain_script(hostname=name, version=NEW, timeout_s=8, layout=layout(kube_api)))
    assert drained.returncode == 0, drained.stderr
    kept = kube_api.kubectl("-n", "gate-data", "get", "pod", "postgres-0", "-o", "name").stdout.strip()
    assert kept == "pod/postgres-0"


def test_the_drain_refuses_a_pod_without_a_controller(kube_api: KubeApi) -> None:
    name = "gate-node-3"
    register(kube_api, name)
    kube_api.kubectl("create", "namespace", "gate-bare")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "gate-bare"},
        "spec": {"nodeName": name, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    refused = run(kube_api, upgrade_drain_script(hostname=name, version=NEW, timeout_s=8, layout=layout(kube_api)))
    assert refused.returncode == 1
    assert "Pods that declare no controller" in refused.stderr and "a pod has no controller" in refused.stderr


def test_the_gate_stops_on_a_node_that_is_not_ready_and_leaves_a_foreign_cordon(kube_api: KubeApi) -> None:
    name = "gate-node-2"
    register(kube_api, name)
    kube_api.kubectl("cordon", name)  # an operator's cordon, before the rollout
    drain = upgrade_drain_script(hostname=name, version=NEW, timeout_s=8, layout=layout(kube_api))
    assert run(kube_api, drain).returncode == 0
    assert UPGRADE_CORDON_ANNOTATION not in (node(kube_api, name)["metadata"].get("annotations") or {})

    report_status(kube_api, name, version=NEW, ready=False)  # upgraded, but the kubelet is not Ready
    gate = upgrade_gate_script(hostname=name, version=NEW, converges="x", timeout_s=10, layout=layout(kube_api))
    failed = run(kube_api, gate)
    assert failed.returncode == 1
    assert f"{name}: not Ready on {NEW} after 10 s (Ready: False, kubelet: {NEW})" in failed.stderr

    report_status(kube_api, name, version=NEW, ready=True)
    passed = run(kube_api, gate)
    assert passed.returncode == 0 and f"{name}: Ready on {NEW}\n" in passed.stdout
    assert node(kube_api, name)["spec"]["unschedulable"] is True  # not ours to undo
