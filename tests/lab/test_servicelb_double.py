"""lab/servicelb-double.py: the addresses it writes into a LoadBalancer Service's status follow
k3s' ServiceLB node selection (pkg/cloudprovider/servicelb.go: `nodeHasDaemonSetLabel`, then
`newDaemonSet`'s nodeSelector `enablelb: "true"` plus the Service's `lbpool` label), with the
labels the program's NodePatch writes (components.metal.k3s_cluster.render_node_layout)."""

from __future__ import annotations

from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

from components.metal.k3s_cluster import render_node_layout
from rack.config import parse_rack
from tests.conftest import stack_raw
from tests.lab import lab_script


def double() -> ModuleType:
    return lab_script("servicelb-double.py")


def api_nodes(dns_address: str | None) -> list[dict[str, Any]]:
    """The homelab's nodes as the API would show them after the NodePatches (Ready, no taints)."""
    rack = parse_rack(stack_raw("homelab"))
    address = IPv4Address(dns_address) if dns_address else None
    return [
        {
            "metadata": render_node_layout(n, lan_dns_address=address)["metadata"],
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": str(n.address)}],
            },
        }
        for n in rack.nodes
    ]


ALL = ["192.168.10.11", "192.168.10.21", "192.168.10.22", "192.168.10.31", "192.168.10.41"]


def test_without_labels_every_node_serves() -> None:
    """k3s with no node carrying `enablelb`: no nodeSelector at all, so a pool is ignored too."""
    nodes = api_nodes(None)
    for n in nodes:
        n["metadata"]["labels"] = {k: v for k, v in n["metadata"]["labels"].items() if "svccontroller" not in k}
    assert double().eligible_ips(nodes) == ALL
    assert double().eligible_ips(nodes, "rack-lan-dns") == ALL


def test_without_a_lan_dns_address_every_node_serves_and_no_node_is_in_the_pool() -> None:
    nodes = api_nodes(None)  # the program's labels: enablelb on every node, the pool on none
    assert double().eligible_ips(nodes) == ALL
    assert double().eligible_ips(nodes, "rack-lan-dns") == []


def test_the_lan_dns_pool_is_the_one_node_and_other_services_keep_every_node() -> None:
    nodes = api_nodes("192.168.10.21")
    assert double().eligible_ips(nodes, "rack-lan-dns") == ["192.168.10.21"]
    assert double().eligible_ips(nodes) == ALL


def tainted(nodes: list[dict[str, Any]], address: str, **spec: Any) -> list[dict[str, Any]]:
    """The nodes with `spec` (taints, unschedulable) set on the one at `address`."""
    for n in nodes:
        if n["status"]["addresses"][0]["address"] == address:
            n["spec"] = spec
    return nodes


def test_taints_follow_the_svclb_pods_tolerations() -> None:
    """k3s `newDaemonSet`: control-plane/master tolerated for NoSchedule only, CriticalAddonsOnly for
    any effect; every other NoSchedule/NoExecute taint (the experimental class's) keeps svclb off."""
    others = [ip for ip in ALL if ip != "192.168.10.11"]
    for taint, serves in [
        ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}, True),
        ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoExecute"}, False),
        ({"key": "CriticalAddonsOnly", "value": "true", "effect": "NoExecute"}, True),
        ({"key": "rack.homelab.io/experimental", "value": "true", "effect": "NoSchedule"}, False),
        ({"key": "rack.homelab.io/experimental", "value": "true", "effect": "PreferNoSchedule"}, True),
    ]:
        nodes = tainted(api_nodes(None), "192.168.10.11", taints=[taint])
        assert double().eligible_ips(nodes) == (ALL if serves else others), taint


def test_a_cordoned_node_keeps_serving() -> None:
    """The DaemonSet controller gives daemon pods `node.kubernetes.io/unschedulable:NoSchedule`
    (kubernetes pkg/controller/daemon/util/daemonset_util.go): `kubectl cordon` (or drain, which
    skips DaemonSet pods) leaves the svclb pod, and the node's address, in place."""
    cordon = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    nodes = tainted(api_nodes("192.168.10.21"), "192.168.10.21", unschedulable=True, taints=[cordon])
    assert double().eligible_ips(nodes) == ALL
    assert double().eligible_ips(nodes, "rack-lan-dns") == ["192.168.10.21"]
