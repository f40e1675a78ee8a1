"""NetworkPolicies as data: pure renderers, and a small evaluator of their semantics.

Creates nothing. The renderers build `networking.k8s.io/v1` NetworkPolicy manifests (camelCase
dicts, the API shape) for the namespaces this project governs: a default deny per namespace, and
one allow-list policy per workload (who may connect to it, whom it may connect to). The
components that own a workload (AppWorkload, Gitea, GiteaRunners) create them.

`Cluster.allowed` evaluates a set of rendered policies the way the API defines them (a pod is
isolated for a direction once any policy with that policy type selects it; the rules of every
such policy are OR-ed; a connection needs both the source's egress and the destination's ingress
to allow it). The reachability tests and anyone auditing a plan read the matrix from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (since 1.21): lets a policy select a namespace by name."""

SYSTEM_NAMESPACE = "kube-system"
DNS_POD_LABELS: dict[str, str] = {"k8s-app": "kube-dns"}
"""The k3s-bundled CoreDNS pods."""
TRAEFIK_POD_LABELS: dict[str, str] = {"app.kubernetes.io/name": "traefik"}
"""The k3s-bundled Traefik pods (HelmChart `traefik` in kube-system)."""
TRAEFIK_PORTS: tuple[str, ...] = ("web", "websecure")
"""Named container ports of the bundled Traefik (8000/8443 behind the 80/443 LoadBalancer)."""

PRIVATE_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
)
"""Addresses that are never "the internet": the LAN, the pod and service networks, link-local."""

Port = int | str


def tcp(*ports: Port) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def dns_ports() -> list[dict[str, Any]]:
    return [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def pods_peer(namespace: str, pod_labels: Mapping[str, str]) -> dict[str, Any]:
    """Pods with these labels in the namespace of this name."""
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
        "podSelector": {"matchLabels": dict(pod_labels)},
    }


def cidr_peer(cidr: str, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
    block: dict[str, Any] = {"cidr": cidr}
    if exclude:
        block["except"] = list(exclude)
    return {"ipBlock": block}


def rule(
    peers: Sequence[dict[str, Any]] | None, ports: Sequence[dict[str, Any]] | None, *, egress: bool
) -> dict[str, Any]:
    """One ingress (`from`) or egress (`to`) rule; None peers = any peer, None ports = any port."""
    out: dict[str, Any] = {}
    if peers is not None:
        out["to" if egress else "from"] = list(peers)
    if ports is not None:
        out["ports"] = list(ports)
    return out


def dns_egress() -> dict[str, Any]:
    """Name lookups through the cluster's CoreDNS (UDP and TCP 53)."""
    return rule([pods_peer(SYSTEM_NAMESPACE, DNS_POD_LABELS)], dns_ports(), egress=True)


def from_traefik(port: Port) -> dict[str, Any]:
    """Ingress from the bundled Traefik only, to one port."""
    return rule([pods_peer(SYSTEM_NAMESPACE, TRAEFIK_POD_LABELS)], tcp(port), egress=False)


def internet_egress() -> dict[str, Any]:
    """Any public address, any port; never the LAN, the pods or the services."""
    return rule([cidr_peer("0.0.0.0/0", exclude=PRIVATE_NETWORKS)], None, egress=True)


def render_default_deny(namespace: str) -> dict[str, Any]:
    """Isolates every pod of the namespace both ways: only what a workload policy allows passes."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def render_workload_policy(
    *,
    name: str,
    namespace: str,
    pod_labels: Mapping[str, str],
    ingress: Sequence[dict[str, Any]],
    egress: Sequence[dict[str, Any]],
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The allow-list of one workload: both directions are always listed, so an empty list means
    "nothing", never "not restricted"."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": dict(pod_labels)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": list(ingress),
            "egress": list(egress),
        },
    }


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerPort:
    number: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Endpoint:
    """Something that sends or receives traffic: a pod (namespace + labels) or an outside address."""

    key: str
    """How the matrix names it (`apps/bible-api`, `external/gpu-3090`)."""
    ip: IPv4Address
    """Its address (a pod's: any address inside the cluster CIDR)."""
    namespace: str | None = None
    """None: outside the cluster, reached only through ipBlock rules."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Pod labels."""
    ports: tuple[ContainerPort, ...] = ()
    """Ports it listens on."""


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels AND every matchExpression; {} matches all."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(
    peer: Mapping[str, Any],
    policy_namespace: str,
    other: Endpoint,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if other.ip not in ip_network(block["cidr"]):
            return False
        return not any(other.ip in ip_network(ex) for ex in block.get("except") or [])
    if other.namespace is None:  # pod selectors never select anything outside the cluster
        return False
    if "namespaceSelector" in peer:
        ns_labels = namespace_labels.get(other.namespace, {NAMESPACE_NAME_LABEL: other.namespace})
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_namespace:  # a bare podSelector means the policy's namespace
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _port_matches(ports: Sequence[Mapping[str, Any]] | None, dest: Endpoint, port: ContainerPort) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != port.protocol:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            if port.name == want:
                return True
            continue
        end = p.get("endPort", want)
        if want <= port.number <= end:
            return True
    return False


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


@dataclass
class Cluster:
    """A set of policies and the namespaces they live in, queried for reachability."""

    policies: list[Mapping[str, Any]]
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def _selecting(self, endpoint: Endpoint, direction: str) -> list[Mapping[str, Any]]:
        if endpoint.namespace is None:
            return []
        out = []
        for policy in self.policies:
            spec = policy["spec"]
            if policy["metadata"]["namespace"] != endpoint.namespace:
                continue
            if direction not in _policy_types(spec):
                continue
            if selector_matches(spec.get("podSelector") or {}, endpoint.labels):
                out.append(policy)
        return out

    def _direction_allows(
        self, owner: Endpoint, other: Endpoint, dest: Endpoint, port: ContainerPort, direction: str
    ) -> bool:
        policies = self._selecting(owner, direction)
        if not policies:
            return True  # not isolated in this direction
        key = "egress" if direction == "Egress" else "ingress"
        peer_key = "to" if direction == "Egress" else "from"
        for policy in policies:
            for r in policy["spec"].get(key) or []:
                peers = r.get(peer_key)
                peer_ok = not peers or any(
                    _peer_matches(p, policy["metadata"]["namespace"], other, self.namespace_labels) for p in peers
                )
                if peer_ok and _port_matches(r.get("ports"), dest, port):
                    return True
        return False

    def allowed(self, src: Endpoint, dst: Endpoint, port: ContainerPort) -> bool:
        """Would a connection from `src` to `dst` on `port` pass every policy?"""
        return self._direction_allows(src, dst, dst, port, "Egress") and self._direction_allows(
            dst, src, dst, port, "Ingress"
        )

    def isolated(self, endpoint: Endpoint) -> tuple[bool, bool]:
        """(ingress isolated, egress isolated)."""
        return bool(self._selecting(endpoint, "Ingress")), bool(self._selecting(endpoint, "Egress"))


def reachability(
    cluster: Cluster, sources: Iterable[Endpoint], destinations: Iterable[Endpoint]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """For every (source, destination) pair, the destination ports the policies let through."""
    dests = list(destinations)
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for src in sources:
        for dst in dests:
            if src.key == dst.key:
                continue
            out[(src.key, dst.key)] = tuple(port_label(p) for p in dst.ports if cluster.allowed(src, dst, p))
    return out


def port_label(port: ContainerPort) -> str:
    base = f"{port.number}" if port.protocol == "TCP" else f"{port.number}/{port.protocol.lower()}"
    return base


def host_network(address: IPv4Address | str) -> str:
    """A single address as a /32 CIDR."""
    return str(IPv4Network(f"{ip_address(address)}/32"))
