"""KubeStateMetrics: cluster-object metrics (nodes, pods, jobs, CronJobs, volumes) for the store.

Creates, under `homelab:observability:KubeStateMetrics`:
- `ServiceAccount`, `ClusterRole` and `ClusterRoleBinding` `kube-state-metrics`: list/watch on
  exactly the resources it is told to expose (`monitoring_config.KSM_RESOURCES`);
- `Deployment` `kube-state-metrics`: one replica, infrastructure category (general or reliable
  nodes), restricted Pod Security profile; the node class label is exported on `kube_node_labels`
  so dashboards can group cluster objects by class too;
- `Service` `kube-state-metrics` (8080 metrics, 8081 its own telemetry);
- `NetworkPolicy`: in from the store only; out to the API server (the nodes' 6443, where the
  `kubernetes` Service's DNAT leads) and DNS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    CLASS_LABEL,
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.core.network_policy import (
    cidr_peer,
    dns_egress,
    host_network,
    pods_peer,
    render_workload_policy,
    rule,
    tcp,
)
from components.observability import monitoring_config as mc
from rack.config import Rack
from rack.vocabulary import Category

RUN_AS = 65534
API_SERVER_PORT = 6443
"""k3s' API server port on the servers (the `kubernetes` Service's endpoints)."""

_API_GROUPS: dict[str, str] = {
    "cronjobs": "batch",
    "jobs": "batch",
    "daemonsets": "apps",
    "deployments": "apps",
    "replicasets": "apps",
    "statefulsets": "apps",
    "namespaces": "",
    "nodes": "",
    "persistentvolumeclaims": "",
    "persistentvolumes": "",
    "pods": "",
    "services": "",
}


def labels() -> dict[str, str]:
    return workload_labels(mc.KSM_NAME, Category.INFRASTRUCTURE)


def render_rbac(namespace: str = mc.NAMESPACE) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole (list/watch of KSM_RESOURCES only) and the binding (pure)."""
    by_group: dict[str, list[str]] = {}
    for resource in mc.KSM_RESOURCES:
        by_group.setdefault(_API_GROUPS[resource], []).append(resource)
    rules = [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": ["list", "watch"]}
        for group, resources in sorted(by_group.items())
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": mc.KSM_NAME, "namespace": namespace, "labels": labels()},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": mc.KSM_NAME, "labels": labels()},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": mc.KSM_NAME, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": mc.KSM_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": mc.KSM_NAME, "namespace": namespace}],
        },
    ]


def render_deployment(*, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    """The exporter (pure)."""
    probe_port = {"port": "telemetry"}
    container: dict[str, Any] = {
        "name": mc.KSM_NAME,
        "image": mc.IMAGES["kube-state-metrics"],
        "imagePullPolicy": "IfNotPresent",
        "args": [
            f"--port={mc.KSM_PORT}",
            f"--telemetry-port={mc.KSM_TELEMETRY_PORT}",
            f"--resources={','.join(mc.KSM_RESOURCES)}",
            f"--metric-labels-allowlist=nodes=[{CLASS_LABEL}]",
        ],
        "ports": [
            {"name": "http", "containerPort": mc.KSM_PORT, "protocol": "TCP"},
            {"name": "telemetry", "containerPort": mc.KSM_TELEMETRY_PORT, "protocol": "TCP"},
        ],
        "resources": mc.RESOURCES[mc.KSM_NAME].to_k8s(),
        "securityContext": restricted_container_security(),
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe_port}, "periodSeconds": 15, "timeoutSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/livez", **probe_port},
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": mc.KSM_NAME,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(RUN_AS),
        "containers": [container],
        **pod_placement(mc.KSM_NAME, Category.INFRASTRUCTURE),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": mc.KSM_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {WORKLOAD_LABEL: mc.KSM_NAME}},
            "template": {"metadata": {"labels": labels()}, "spec": pod_spec},
        },
    }


def render_service(*, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": mc.KSM_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: mc.KSM_NAME},
            "ports": [
                {"name": "http", "port": mc.KSM_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "telemetry", "port": mc.KSM_TELEMETRY_PORT, "targetPort": "telemetry", "protocol": "TCP"},
            ],
        },
    }


def api_server_egress(rack: Rack) -> dict[str, Any]:
    """Egress to the API server: the servers' addresses on 6443 (after the `kubernetes` Service's DNAT)."""
    return rule([cidr_peer(host_network(n.address)) for n in rack.servers()], tcp(API_SERVER_PORT), egress=True)


def render_network_policy(rack: Rack, *, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    store = pods_peer(namespace, {WORKLOAD_LABEL: mc.STORE_NAME})
    return render_workload_policy(
        name=mc.KSM_NAME,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: mc.KSM_NAME},
        labels=labels(),
        ingress=[rule([store], tcp(mc.KSM_PORT, mc.KSM_TELEMETRY_PORT), egress=False)],
        egress=[dns_egress(), api_server_egress(rack)],
    )


@dataclass(frozen=True, kw_only=True)
class KubeStateMetricsArgs:
    rack: Rack
    """The validated rack (its servers: where the API server answers)."""
    namespace: str = mc.NAMESPACE
    """Namespace of the namespaced objects."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the namespaced objects wait for (the Namespace)."""


class KubeStateMetrics(pulumi.ComponentResource):
    service_account: KubernetesObject
    """Its identity."""
    cluster_role: KubernetesObject
    """list/watch of the exported resources."""
    cluster_role_binding: KubernetesObject
    """Grants it."""
    deployment: KubernetesObject
    """The exporter."""
    service: KubernetesObject
    """What the store scrapes."""
    network_policy: KubernetesObject
    """Its allow-list."""

    def __init__(self, name: str, args: KubeStateMetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:KubeStateMetrics", name, None, opts)
        ns = args.namespace
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        sa, role, binding = render_rbac(ns)
        self.service_account = KubernetesObject(f"{name}-sa", sa, after)
        self.cluster_role = KubernetesObject(f"{name}-clusterrole", role, pulumi.ResourceOptions(parent=self))
        self.cluster_role_binding = KubernetesObject(
            f"{name}-clusterrolebinding",
            binding,
            pulumi.ResourceOptions(parent=self, depends_on=[self.cluster_role, self.service_account]),
        )
        dep = render_deployment(namespace=ns)
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            dep,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, self.cluster_role_binding]),
        )
        svc = render_service(namespace=ns)
        self.service = KubernetesObject(f"{name}-service", svc, after)
        pol = render_network_policy(args.rack, namespace=ns)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, after)
        self.register_outputs(
            {
                "service_account": self.service_account,
                "cluster_role": self.cluster_role,
                "cluster_role_binding": self.cluster_role_binding,
                "deployment": self.deployment,
                "service": self.service,
                "network_policy": self.network_policy,
            }
        )
