"""Taints owned, not overwritten, against a real API server and node lifecycle controller.

The Node is registered as k3s registers it (its `node-taint`s), the program's NodePatch is
applied as pulumi-kubernetes applies it (server-side apply, forced, its own field manager), and
the program's taints step (`taints_script`, run by bash with `k3s kubectl` = the real kubectl)
does the rest. A cordon's `node.kubernetes.io/unschedulable` and the lifecycle's
`not-ready`/`unreachable` taints are added by the real kube-controller-manager (no kubelet
reports for these Nodes, so after the grace period the controller marks them unreachable).

The first test shows what the NodePatch did before (apply `spec.taints`: the atomic list is
replaced, the cordon's taint gone); the others that the program now keeps every taint it does not
own, on every `up`, and still converges its own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.layout import CONTROL_PLANE_TAINT, EXPERIMENTAL_TAINT, node_labels, node_taints
from components.metal.k3s_cluster import render_node_layout
from components.metal.k3s_scripts import HostLayout, taints_script
from rack.config import Node
from rack.vocabulary import Arch, NodeClass, Role

from .conftest import KubeApi

pytestmark = [pytest.mark.realkube, pytest.mark.slow]

MANAGER = "pulumi-homelab-homelab"
"""The field manager the program's NodePatch names, the stack's (`pulumi.com/patchFieldManager`:
pulumi-<project>-<stack>, components/core/kubernetes_object.py), apart from k3s' and kubectl's."""
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
LIFECYCLE = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}


def node(hostname: str, role: Role, klass: NodeClass) -> Node:
    return Node.model_validate(
        {
            "hostname": hostname,
            "address": "192.168.10.21",
            "role": role,
            "class": klass,
            "capacity": {"cpu": "4", "memory": "8Gi"},
        }
    )


def register(api: KubeApi, n: Node) -> None:
    """What k3s' kubelet sends at first registration: its labels and `node-taint`s."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.hostname, "labels": node_labels(node_class=n.node_class, role=n.role, arch=Arch.ARM64)},
        "spec": {"taints": [t.to_k8s() for t in node_taints(node_class=n.node_class, role=n.role)]},
    }
    api.kubectl("create", "--field-manager", "k3s", "-f", "-", stdin=json.dumps(manifest))


def apply_patch(api: KubeApi, manifest: dict[str, Any]) -> dict[str, Any]:
    """A NodePatch as pulumi-kubernetes applies it: server-side apply, forced; the object after it."""
    out = api.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager", MANAGER, "-o", "json", "-f", "-",
        stdin=yaml.safe_dump(manifest),
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def taints(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(t["key"], t.get("value", ""), t["effect"]) for t in obj.get("spec", {}).get("taints", [])}


def keys(obj: dict[str, Any]) -> set[str]:
    return {t[0] for t in taints(obj)}


def run_taints(api: KubeApi, n: Node, want: list[Any]) -> str:
    root = api.k3s_root("boot")
    script = taints_script(hostname=n.hostname, taints=want, layout=HostLayout(root=str(root)))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cordoned_and_lifecycle(api: KubeApi, name: str) -> dict[str, Any]:
    """Wait until the controller has added the cordon's and the lifecycle's taints."""

    def tainted() -> dict[str, Any] | None:
        obj = api.get("node", name)
        return obj if {UNSCHEDULABLE} <= keys(obj) and LIFECYCLE & keys(obj) else None

    return dict(api.wait(f"{name}: {UNSCHEDULABLE} and a lifecycle taint", tainted, timeout=90))


def old_node_patch(n: Node) -> dict[str, Any]:
    """The NodePatch before this change: labels and `spec.taints`."""
    manifest = render_node_layout(n)
    manifest["spec"] = {"taints": [t.to_k8s() for t in node_taints(node_class=n.node_class, role=n.role)]}
    return manifest


def test_applying_spec_taints_replaces_the_whole_list(kube_api: KubeApi) -> None:
    """Why taints left the NodePatch: what the old patch did to a cordoned node."""
    n = node("taint-old-1", Role.AGENT, NodeClass.EXPERIMENTAL)
    register(kube_api, n)
    apply_patch(kube_api, old_node_patch(n))
    kube_api.kubectl("cordon", n.hostname)
    cordoned_and_lifecycle(kube_api, n.hostname)
    after = apply_patch(kube_api, old_node_patch(n))  # the next `up`
    assert keys(after) == {EXPERIMENTAL_TAINT.key}, taints(after)  # the cordon's and lifecycle's: gone
    assert after["spec"]["unschedulable"] is True  # still cordoned, but schedulable by taints


def test_every_up_keeps_taints_the_program_does_not_own(kube_api: KubeApi) -> None:
    n = node("taint-new-1", Role.AGENT, NodeClass.EXPERIMENTAL)
    register(kube_api, n)
    first = apply_patch(kube_api, render_node_layout(n))
    assert "rack.homelab.io/class" in first["metadata"]["labels"]
    assert "set" not in run_taints(kube_api, n, [EXPERIMENTAL_TAINT])  # registered with it already
    kube_api.kubectl("cordon", n.hostname)
    before = taints(cordoned_and_lifecycle(kube_api, n.hostname))
    assert ("rack.homelab.io/experimental", "true", "NoSchedule") in before

    # a second `up`: the NodePatch (forced) and the taints step; nothing of others' is touched
    after_patch = apply_patch(kube_api, render_node_layout(n))
    assert taints(after_patch) == before
    assert "taints already as configured" in run_taints(kube_api, n, [EXPERIMENTAL_TAINT])
    assert taints(kube_api.get("node", n.hostname)) >= before

    # a class change (experimental -> general): only the program's own stale taint goes
    general = node("taint-new-1", Role.AGENT, NodeClass.GENERAL)
    apply_patch(kube_api, render_node_layout(general))
    out = run_taints(kube_api, general, node_taints(node_class=general.node_class, role=general.role))
    assert "stale taint rack.homelab.io/experimental:NoSchedule removed" in out
    now = kube_api.get("node", n.hostname)
    assert EXPERIMENTAL_TAINT.key not in keys(now)
    assert {UNSCHEDULABLE} <= keys(now) and LIFECYCLE & keys(now)
    assert now["metadata"]["labels"]["rack.homelab.io/class"] == "general"


def test_the_taints_step_puts_back_what_the_old_patch_dropped_and_fixes_values(kube_api: KubeApi) -> None:
    """The first `up` after this change: the NodePatch stops applying `spec.taints`, which
    server-side apply removes once (the patch owned the list); the taints step, ordered after it,
    puts the program's back. A wrong value of an owned taint is corrected in place."""
    n = node("taint-move-1", Role.SERVER, NodeClass.CONTROL_PLANE)
    register(kube_api, n)
    apply_patch(kube_api, old_node_patch(n))
    # Any taint someone else added since (a cordon's, the lifecycle's) made the old forced apply
    # change the list, and so its only owner. Done within the new Node's startup grace period, so
    # the lifecycle controller does not take the list over in between.
    kube_api.kubectl("taint", "node", n.hostname, "example.com/other=1:NoSchedule")
    owned = apply_patch(kube_api, old_node_patch(n))
    assert keys(owned) == {CONTROL_PLANE_TAINT.key}
    migrated = apply_patch(kube_api, render_node_layout(n))
    assert CONTROL_PLANE_TAINT.key not in keys(migrated)  # the one-time drop, as documented
    assert "taint node-role.kubernetes.io/control-plane:NoSchedule set" in run_taints(
        kube_api, n, [CONTROL_PLANE_TAINT]
    )
    kube_api.kubectl("taint", "node", n.hostname, "rack.homelab.io/experimental=maybe:NoSchedule")
    kube_api.kubectl("taint", "node", n.hostname, "example.com/theirs=1:PreferNoSchedule")
    out = run_taints(kube_api, n, [CONTROL_PLANE_TAINT])
    assert "stale taint rack.homelab.io/experimental:NoSchedule removed" in out
    final = kube_api.get("node", n.hostname)
    assert {(CONTROL_PLANE_TAINT.key, "", "NoSchedule"), ("example.com/theirs", "1", "PreferNoSchedule")} <= (
        taints(final)
    )
    assert EXPERIMENTAL_TAINT.key not in keys(final)
    assert Path(kube_api.k3s_root("boot") / "usr/local/bin/k3s").exists()
