"""The node layout: labels, taints and scheduling terms built from the rack's vocabulary
(`rack.vocabulary`: classes, roles, categories).

Creates nothing. These pure functions are the single source of the pod layout: k3s registration
(`--node-label`/`--node-taint` in config.yaml, and the NodePatch that reconciles them after join),
every Kubernetes workload's placement terms, and the offline plan's checks all call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rack.vocabulary import Arch, Category, NodeClass, Role

LABEL_PREFIX = "rack.homelab.io"
"""The one label/taint prefix this project owns: `kubectl get nodes -L rack.homelab.io/class`."""

CLASS_LABEL = f"{LABEL_PREFIX}/class"
ROLE_LABEL = f"{LABEL_PREFIX}/role"
ARCH_LABEL = f"{LABEL_PREFIX}/arch"
CATEGORY_LABEL = f"{LABEL_PREFIX}/category"
WORKLOAD_LABEL = "app.kubernetes.io/name"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CONTROL_PLANE_TAINT_KEY = "node-role.kubernetes.io/control-plane"
EXPERIMENTAL_TAINT_KEY = f"{LABEL_PREFIX}/experimental"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True)
class Taint:
    """A node taint, renderable for the Kubernetes API and for k3s' `node-taint` option."""

    key: str
    value: str
    effect: TaintEffect

    def to_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "effect": str(self.effect)}
        if self.value:
            out["value"] = self.value
        return out

    def to_k3s(self) -> str:
        """`key=value:Effect`, or `key:Effect` without a value (the k3s/kubelet flag syntax)."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


CONTROL_PLANE_TAINT = Taint(CONTROL_PLANE_TAINT_KEY, "", TaintEffect.NO_SCHEDULE)
EXPERIMENTAL_TAINT = Taint(EXPERIMENTAL_TAINT_KEY, "true", TaintEffect.NO_SCHEDULE)

ALLOWED_CLASSES: dict[Category, tuple[NodeClass, ...]] = {
    Category.INFRASTRUCTURE: (NodeClass.GENERAL, NodeClass.RELIABLE),
    Category.APPLICATION: (NodeClass.GENERAL,),
    Category.DATA: (NodeClass.RELIABLE,),
    Category.EXPERIMENTAL: (NodeClass.EXPERIMENTAL,),
}
"""Which node classes each workload category may run on (the spec's placement table)."""


def node_labels(*, node_class: NodeClass, role: Role, arch: Arch) -> dict[str, str]:
    """The labels every node carries under the project's prefix."""
    return {CLASS_LABEL: str(node_class), ROLE_LABEL: str(role), ARCH_LABEL: str(arch)}


SERVICELB_ENABLE_LABEL = "svccontroller.k3s.cattle.io/enablelb"
"""k3s ServiceLB: once any node carries this label, svclb pods run only on nodes labelled `true`."""
SERVICELB_POOL_LABEL = "svccontroller.k3s.cattle.io/lbpool"
"""k3s ServiceLB: a Service with this label gets svclb pods only on nodes with the same value."""
LAN_DNS_POOL = "rack-lan-dns"
"""The ServiceLB pool of the LAN DNS Service: the one node at `rack.dns.address`."""


def servicelb_labels(*, lan_dns: bool) -> dict[str, str]:
    """ServiceLB node labels (pure): every node `enablelb=true`, and the node at `rack.dns.address`
    (`lan_dns`) also the LAN DNS pool.

    Every node, always: k3s' `newDaemonSet` (pkg/cloudprovider/servicelb.go) sets an svclb
    DaemonSet's nodeSelector to `enablelb: "true"` once some node has the enablelb label, and
    resets it only on a change to a node that still carries the label (`onChangeNode`). Labels that
    came and went with `rack.dns.address` would leave Traefik's and Gitea's SSH svclb DaemonSets
    selecting no node after the key is removed; labelled always, every LoadBalancer Service keeps
    every node, and the pool (`lbpool: <the Service's lbpool label>`, added to the selector of a
    Service carrying it) pins the LAN DNS Service to its node (docs.k3s.io/networking/
    networking-services, "ServiceLB node selection")."""
    labels = {SERVICELB_ENABLE_LABEL: "true"}
    if lan_dns:
        labels[SERVICELB_POOL_LABEL] = LAN_DNS_POOL
    return labels


def node_taints(*, node_class: NodeClass, role: Role) -> list[Taint]:
    """Servers keep the control plane free of workloads; experimental nodes repel all but experiments."""
    taints: list[Taint] = []
    if role == Role.SERVER:
        taints.append(CONTROL_PLANE_TAINT)
    if node_class == NodeClass.EXPERIMENTAL:
        taints.append(EXPERIMENTAL_TAINT)
    return taints


def workload_labels(name: str, category: Category) -> dict[str, str]:
    """Pod/selector labels of a workload: its name (selector) and its category (for the plan)."""
    return {WORKLOAD_LABEL: name, CATEGORY_LABEL: str(category)}


def node_affinity(category: Category, *, hostname: str | None = None) -> dict[str, Any]:
    """Required node affinity on the class label (and the hostname, for a pinned data pod)."""
    expressions: list[dict[str, Any]] = [
        {"key": CLASS_LABEL, "operator": "In", "values": [str(c) for c in ALLOWED_CLASSES[category]]}
    ]
    if hostname is not None:
        expressions.append({"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]})
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
        }
    }


def tolerations(category: Category, *, failover_seconds: int | None = None) -> list[dict[str, Any]]:
    """Only experimental workloads tolerate the experimental taint; nothing here tolerates the
    control plane. `failover_seconds` shortens the default 300 s not-ready/unreachable wait."""
    out: list[dict[str, Any]] = []
    if category == Category.EXPERIMENTAL:
        out.append(
            {
                "key": EXPERIMENTAL_TAINT.key,
                "operator": "Equal",
                "value": EXPERIMENTAL_TAINT.value,
                "effect": str(EXPERIMENTAL_TAINT.effect),
            }
        )
    if failover_seconds is not None:
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            out.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": str(TaintEffect.NO_EXECUTE),
                    "tolerationSeconds": failover_seconds,
                }
            )
    return out


def topology_spread(name: str, category: Category) -> list[dict[str, Any]]:
    """Spread replicas of an application across hosts; other categories are not spread."""
    if category != Category.APPLICATION:
        return []
    return [
        {
            "maxSkew": 1,
            "topologyKey": HOSTNAME_LABEL,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {WORKLOAD_LABEL: name}},
        }
    ]


def pod_placement(
    name: str,
    category: Category,
    *,
    hostname: str | None = None,
    failover_seconds: int | None = None,
) -> dict[str, Any]:
    """The scheduling fields of a pod spec (affinity, tolerations, spread) for a category."""
    out: dict[str, Any] = {
        "affinity": node_affinity(category, hostname=hostname),
        "tolerations": tolerations(category, failover_seconds=failover_seconds),
    }
    spread = topology_spread(name, category)
    if spread:
        out["topologySpreadConstraints"] = spread
    return out


NAMESPACES: dict[Category, str] = {
    Category.INFRASTRUCTURE: "infra",
    Category.APPLICATION: "apps",
    Category.DATA: "data",
    Category.EXPERIMENTAL: "experimental",
}
"""The namespace of each workload category (workloads are named `<namespace>/<name>`)."""

POD_SECURITY: dict[Category, str] = {
    Category.INFRASTRUCTURE: "baseline",
    Category.APPLICATION: "restricted",
    Category.DATA: "baseline",
    Category.EXPERIMENTAL: "restricted",
}
"""Pod Security admission level enforced in each category's namespace."""


def render_namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Namespace manifest (pure)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def namespace_labels(category: Category) -> dict[str, str]:
    level = POD_SECURITY[category]
    return {
        CATEGORY_LABEL: str(category),
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/warn": "restricted",
    }


def pod_security_labels(category: Category, *, enforce: str, warn: str = "restricted") -> dict[str, str]:
    """Namespace labels for a namespace outside NAMESPACES (e.g. CI's): its category and an explicit
    Pod Security admission level, for when the category's default level does not fit its pods."""
    return {
        CATEGORY_LABEL: str(category),
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/warn": warn,
    }


def node_agent_tolerations() -> list[dict[str, Any]]:
    """Tolerations of a per-node agent (a DaemonSet that must run on every node, e.g. a metrics
    exporter): every taint `node_taints` can put on a node, whatever its class and role."""
    taints = {t for c in NodeClass for r in Role for t in node_taints(node_class=c, role=r)}
    return [
        {"key": t.key, "operator": "Exists", "effect": str(t.effect)}
        for t in sorted(taints, key=lambda t: (t.key, t.value, str(t.effect)))
    ]


def restricted_container_security() -> dict[str, Any]:
    """The container half of the restricted Pod Security profile, plus a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security(uid: int, *, fs_group: bool = False) -> dict[str, Any]:
    """The pod half: a fixed non-root uid/gid and RuntimeDefault seccomp; with `fs_group`, volumes
    are given to that group (only when their root does not match yet: cheap on big data dirs)."""
    out: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}
    if fs_group:
        out |= {"fsGroup": uid, "fsGroupChangePolicy": "OnRootMismatch"}
    out["seccompProfile"] = {"type": "RuntimeDefault"}
    return out
