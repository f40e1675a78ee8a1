"""The node layout vocabulary: labels, taints, and the scheduling terms each category gets.

These pure functions are the single source of the placement table in the spec; each test here is
one row of it."""

from __future__ import annotations

import itertools
from typing import Any

import kubernetes_validate
import pytest

from components.core.layout import (
    ALLOWED_CLASSES,
    ARCH_LABEL,
    CATEGORY_LABEL,
    CLASS_LABEL,
    CONTROL_PLANE_TAINT,
    EXPERIMENTAL_TAINT,
    HOSTNAME_LABEL,
    LABEL_PREFIX,
    NAMESPACES,
    POD_SECURITY,
    ROLE_LABEL,
    WORKLOAD_LABEL,
    Taint,
    TaintEffect,
    namespace_labels,
    node_affinity,
    node_labels,
    node_taints,
    pod_placement,
    tolerations,
    topology_spread,
    workload_labels,
)
from rack.vocabulary import Arch, Category, NodeClass, Role

# --- what the nodes carry -----------------------------------------------------------------


def test_node_labels_are_under_the_one_prefix() -> None:
    labels = node_labels(node_class=NodeClass.RELIABLE, role=Role.AGENT, arch=Arch.ARM64)
    assert labels == {
        "rack.homelab.io/class": "reliable",
        "rack.homelab.io/role": "agent",
        "rack.homelab.io/arch": "arm64",
    }
    assert all(k.startswith(f"{LABEL_PREFIX}/") for k in labels)
    assert tuple(labels) == (CLASS_LABEL, ROLE_LABEL, ARCH_LABEL)


@pytest.mark.parametrize(
    ("node_class", "role", "want"),
    [
        (NodeClass.CONTROL_PLANE, Role.SERVER, ["node-role.kubernetes.io/control-plane:NoSchedule"]),
        (NodeClass.GENERAL, Role.AGENT, []),
        (NodeClass.RELIABLE, Role.AGENT, []),
        (NodeClass.EXPERIMENTAL, Role.AGENT, ["rack.homelab.io/experimental=true:NoSchedule"]),
    ],
)
def test_node_taints(node_class: NodeClass, role: Role, want: list[str]) -> None:
    assert [t.to_k3s() for t in node_taints(node_class=node_class, role=role)] == want


def test_every_server_is_tainted_whatever_its_class() -> None:
    for node_class in NodeClass:
        assert CONTROL_PLANE_TAINT in node_taints(node_class=node_class, role=Role.SERVER)
        assert CONTROL_PLANE_TAINT not in node_taints(node_class=node_class, role=Role.AGENT)


def test_taint_renders_for_k3s_and_kubernetes() -> None:
    assert CONTROL_PLANE_TAINT.to_k3s() == "node-role.kubernetes.io/control-plane:NoSchedule"
    assert CONTROL_PLANE_TAINT.to_k8s() == {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert EXPERIMENTAL_TAINT.to_k3s() == "rack.homelab.io/experimental=true:NoSchedule"
    assert EXPERIMENTAL_TAINT.to_k8s() == {
        "key": "rack.homelab.io/experimental",
        "value": "true",
        "effect": "NoSchedule",
    }
    assert Taint("k", "v", TaintEffect.NO_EXECUTE).to_k3s() == "k=v:NoExecute"


def test_node_with_labels_and_taints_is_a_valid_kubernetes_node() -> None:
    for node_class, role in ((NodeClass.CONTROL_PLANE, Role.SERVER), (NodeClass.EXPERIMENTAL, Role.AGENT)):
        manifest = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "rack-1", "labels": node_labels(node_class=node_class, role=role, arch=Arch.ARM)},
            "spec": {"taints": [t.to_k8s() for t in node_taints(node_class=node_class, role=role)]},
        }
        kubernetes_validate.validate(manifest, "1.31", strict=True)


# --- where each category may run -------------------------------------------------------------


def test_allowed_classes_is_the_spec_table() -> None:
    assert ALLOWED_CLASSES == {
        Category.INFRASTRUCTURE: (NodeClass.GENERAL, NodeClass.RELIABLE),
        Category.APPLICATION: (NodeClass.GENERAL,),
        Category.DATA: (NodeClass.RELIABLE,),
        Category.EXPERIMENTAL: (NodeClass.EXPERIMENTAL,),
    }
    allowed = set(itertools.chain.from_iterable(ALLOWED_CLASSES.values()))
    assert NodeClass.CONTROL_PLANE not in allowed, "no workload category runs on the control plane"
    assert set(ALLOWED_CLASSES) == set(Category)


def _expressions(affinity: dict[str, Any]) -> dict[str, list[str]]:
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 1, "one term: its expressions are ANDed"
    assert all(e["operator"] == "In" for e in terms[0]["matchExpressions"])
    return {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}


@pytest.mark.parametrize("category", list(Category))
def test_node_affinity_follows_allowed_classes(category: Category) -> None:
    assert _expressions(node_affinity(category)) == {CLASS_LABEL: [str(c) for c in ALLOWED_CLASSES[category]]}


def test_data_affinity_pins_the_hostname_of_its_volume() -> None:
    assert _expressions(node_affinity(Category.DATA, hostname="rack-db-1")) == {
        CLASS_LABEL: ["reliable"],
        HOSTNAME_LABEL: ["rack-db-1"],
    }


def test_only_experimental_tolerates_the_experimental_taint() -> None:
    for category in Category:
        keys = {t["key"] for t in tolerations(category)}
        assert (EXPERIMENTAL_TAINT.key in keys) == (category == Category.EXPERIMENTAL)
        assert CONTROL_PLANE_TAINT.key not in keys
    (toleration,) = tolerations(Category.EXPERIMENTAL)
    assert toleration == {
        "key": "rack.homelab.io/experimental",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    }


def test_failover_seconds_shortens_the_not_ready_wait() -> None:
    out = tolerations(Category.APPLICATION, failover_seconds=30)
    assert out == [
        {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    assert tolerations(Category.APPLICATION) == []
    assert len(tolerations(Category.EXPERIMENTAL, failover_seconds=60)) == 3


def test_only_applications_are_spread_by_hostname() -> None:
    (spread,) = topology_spread("web", Category.APPLICATION)
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {WORKLOAD_LABEL: "web"}},
    }
    for category in (Category.INFRASTRUCTURE, Category.DATA, Category.EXPERIMENTAL):
        assert topology_spread("x", category) == []


def test_workload_labels_select_by_name_and_carry_the_category() -> None:
    assert workload_labels("web", Category.APPLICATION) == {
        "app.kubernetes.io/name": "web",
        CATEGORY_LABEL: "application",
    }
    # the spread's selector matches the pods' labels
    (spread,) = topology_spread("web", Category.APPLICATION)
    assert spread["labelSelector"]["matchLabels"].items() <= workload_labels("web", Category.APPLICATION).items()


@pytest.mark.parametrize("category", list(Category))
def test_pod_placement_is_a_valid_pod_spec(category: Category) -> None:
    hostname = "rack-db-1" if category == Category.DATA else None
    placement = pod_placement("web", category, hostname=hostname, failover_seconds=45)
    assert set(placement) >= {"affinity", "tolerations"}
    assert ("topologySpreadConstraints" in placement) == (category == Category.APPLICATION)
    assert placement["affinity"] == node_affinity(category, hostname=hostname)
    assert placement["tolerations"] == tolerations(category, failover_seconds=45)
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": workload_labels("web", category)},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27.3"}], **placement},
    }
    kubernetes_validate.validate(manifest, "1.31", strict=True)


# --- namespaces ----------------------------------------------------------------------------


def test_every_category_has_a_namespace_and_a_pod_security_level() -> None:
    assert NAMESPACES == {
        Category.INFRASTRUCTURE: "infra",
        Category.APPLICATION: "apps",
        Category.DATA: "data",
        Category.EXPERIMENTAL: "experimental",
    }
    assert set(POD_SECURITY) == set(Category)
    assert set(POD_SECURITY.values()) <= {"privileged", "baseline", "restricted"}


@pytest.mark.parametrize("category", list(Category))
def test_namespace_labels_are_a_valid_namespace(category: Category) -> None:
    labels = namespace_labels(category)
    assert labels[CATEGORY_LABEL] == str(category)
    assert labels["pod-security.kubernetes.io/enforce"] == POD_SECURITY[category]
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACES[category], "labels": labels}}
    kubernetes_validate.validate(manifest, "1.31", strict=True)
