"""VictoriaMetrics: the rack's metrics store (single node), its data on a pinned volume.

Creates, under `homelab:observability:VictoriaMetrics` (protected by construction, like every
stateful service: `protect=True` on the component flows to every child):
- `ServiceAccount` `victoria-metrics`, `ClusterRole`/`ClusterRoleBinding`
  `homelab-metrics-scraper`: `get` on `nodes/metrics` only — what the kubelet asks of the token
  the store scrapes `/metrics` and `/metrics/cadvisor` with. No list/watch: the targets are static;
- `ConfigMap` `victoria-metrics-scrape`: the scrape config rendered from the rack
  (`monitoring_config.render_scrape_config`), reread every 30 s;
- `PinnedVolume` `metrics-store` on `rack.monitoring.node` (Retain, node affinity);
- `Service` `victoria-metrics` (8428) and `StatefulSet` `victoria-metrics`: one replica, data
  category, pinned to the volume's node, restricted Pod Security profile, read-only root,
  requests/limits from config, retention from config;
- `NetworkPolicy` `victoria-metrics`: in from Grafana, vmalert and the off-node copy jobs (their
  success metric, `/api/v1/import/prometheus`) only; out to the scrape targets
  only (every node's node-exporter and kubelet ports, kube-state-metrics, vmalert, the GPU host's
  exporter address) and DNS.

Why VictoriaMetrics: a Prometheus-compatible store (PromQL/MetricsQL, the Prometheus scrape
config and rule format) with a small, bounded footprint — the numbers are in
monitoring/README.md, measured by tests/real/monitoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
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
from components.metal.k3s_cluster import NodeAccess
from components.observability import monitoring_config as mc
from components.platform.pinned_volume import PinnedVolume, PinnedVolumeArgs
from rack.config import Monitoring, Rack
from rack.vocabulary import Category

RUN_AS = 65534
"""uid/gid the store runs as (`nobody`): the image does not need root, the volume gets fsGroup."""
SCRAPE_CONFIGMAP = f"{mc.STORE_NAME}-scrape"
SCRAPER_ROLE = "homelab-metrics-scraper"


def labels() -> dict[str, str]:
    return workload_labels(mc.STORE_NAME, Category.DATA)


def render_service_account(namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": mc.STORE_NAME, "namespace": namespace, "labels": labels()},
    }


def render_cluster_role() -> dict[str, Any]:
    """Only what the kubelet checks for its metrics endpoints."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": SCRAPER_ROLE, "labels": labels()},
        "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}],
    }


def render_cluster_role_binding(namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": SCRAPER_ROLE, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SCRAPER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": mc.STORE_NAME, "namespace": namespace}],
    }


def render_scrape_configmap(rack: Rack, *, gpu: bool, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SCRAPE_CONFIGMAP, "namespace": namespace, "labels": labels()},
        "data": {mc.SCRAPE_FILE: mc.to_yaml(mc.render_scrape_config(rack, gpu=gpu))},
    }


def render_service(namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": mc.STORE_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: mc.STORE_NAME},
            "ports": [{"name": "http", "port": mc.STORE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_statefulset(monitoring: Monitoring, *, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    """The store (pure). Its identity (name, selector, claim) never depends on version or sizes."""
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": mc.STORE_NAME,
        "image": mc.store_image(monitoring.store_version),
        "imagePullPolicy": "IfNotPresent",
        "args": mc.store_args(monitoring),
        "ports": [{"name": "http", "containerPort": mc.STORE_PORT, "protocol": "TCP"}],
        "resources": mc.Resources(monitoring.store_cpu, monitoring.store_memory).to_k8s(),
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": mc.STORE_DATA_DIR},
            {"name": "config", "mountPath": mc.STORE_CONFIG_DIR, "readOnly": True},
        ],
        # Opening a large index after a crash can take minutes on a Pi's SSD.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 6},
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": mc.STORE_NAME,
        # The token is the scrape credential for the kubelets (nodes/metrics, nothing else).
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(RUN_AS, fs_group=True),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": mc.STORE_VOLUME}},
            {"name": "config", "configMap": {"name": SCRAPE_CONFIGMAP}},
        ],
        **pod_placement(mc.STORE_NAME, Category.DATA, hostname=monitoring.node),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": mc.STORE_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "replicas": 1,
            "serviceName": mc.STORE_NAME,
            "selector": {"matchLabels": {WORKLOAD_LABEL: mc.STORE_NAME}},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels()}, "spec": pod_spec},
        },
    }


def render_network_policy(
    rack: Rack,
    *,
    gpu_address: IPv4Address | None,
    namespace: str = mc.NAMESPACE,
    pushers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """In: Grafana and vmalert (HTTP), and `pushers` (the off-node copy jobs pushing their success
    metric). Out: exactly the scrape targets, and DNS.

    Policies see destinations after a Service's DNAT: the nodes' exporter and kubelet ports are
    allowed by node address, the GPU exporter by the GPU host's address, kube-state-metrics and
    vmalert by their pods."""
    nodes = [cidr_peer(host_network(n.address)) for n in rack.nodes]
    egress = [
        dns_egress(),
        rule(nodes, tcp(mc.NODE_EXPORTER_PORT, mc.KUBELET_PORT), egress=True),
        rule([pods_peer(namespace, {WORKLOAD_LABEL: mc.KSM_NAME})], tcp(mc.KSM_PORT), egress=True),
        rule([pods_peer(namespace, {WORKLOAD_LABEL: mc.VMALERT_NAME})], tcp(mc.VMALERT_PORT), egress=True),
    ]
    if gpu_address is not None:
        egress.append(rule([cidr_peer(host_network(gpu_address))], tcp(mc.GPU_EXPORTER_PORT), egress=True))
    clients = [pods_peer(namespace, {WORKLOAD_LABEL: name}) for name in (mc.GRAFANA_NAME, mc.VMALERT_NAME)]
    clients += list(pushers)
    return render_workload_policy(
        name=mc.STORE_NAME,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: mc.STORE_NAME},
        labels=labels(),
        ingress=[rule(clients, tcp(mc.STORE_PORT), egress=False)],
        egress=egress,
    )


@dataclass(frozen=True, kw_only=True)
class VictoriaMetricsArgs:
    rack: Rack
    """The validated rack (`rack.monitoring` set and enabled; nodes for the scrape targets)."""
    storage_path: str
    """`storage.path` of `rack.monitoring.node` (where its pinned volume lives)."""
    gpu: bool = False
    """Whether the GPU host's DCGM exporter exists (adds the `gpu-host` scrape job and egress)."""
    namespace: str = mc.NAMESPACE
    """Namespace of every namespaced object."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the namespaced objects wait for (the Namespace)."""
    node_access: NodeAccess | None = None
    """SSH to the volume's node (the metal layer's), so its directory is created before use."""
    pushers: Sequence[dict[str, Any]] = ()
    """Pod peers admitted to push samples (the off-node copy jobs' success metric)."""


class VictoriaMetrics(pulumi.ComponentResource):
    service_account: KubernetesObject
    """The store's identity (its token scrapes the kubelets)."""
    cluster_role: KubernetesObject
    """`get nodes/metrics`."""
    cluster_role_binding: KubernetesObject
    """Grants it to the service account."""
    config_map: KubernetesObject
    """The scrape config."""
    volume: PinnedVolume
    """The store's data on the reliable node."""
    service: KubernetesObject
    """ClusterIP Service (8428) Grafana and vmalert use."""
    statefulset: KubernetesObject
    """The store."""
    network_policy: KubernetesObject
    """Its allow-list."""
    url: str
    """In-cluster URL of the store."""

    def __init__(self, name: str, args: VictoriaMetricsArgs, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True))
        super().__init__("homelab:observability:VictoriaMetrics", name, None, opts)
        rack, ns = args.rack, args.namespace
        monitoring = rack.monitoring
        if monitoring is None:
            raise ValueError("VictoriaMetrics needs rack.monitoring")
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        child = pulumi.ResourceOptions(parent=self)

        sa = render_service_account(ns)
        self.service_account = KubernetesObject(f"{name}-sa", sa, after)
        role = render_cluster_role()
        self.cluster_role = KubernetesObject(f"{name}-clusterrole", role, child)
        binding = render_cluster_role_binding(ns)
        self.cluster_role_binding = KubernetesObject(
            f"{name}-clusterrolebinding",
            binding,
            pulumi.ResourceOptions(parent=self, depends_on=[self.cluster_role, self.service_account]),
        )
        cm = render_scrape_configmap(rack, gpu=args.gpu, namespace=ns)
        self.config_map = KubernetesObject(f"{name}-scrape", cm, after)

        self.volume = PinnedVolume(
            f"{name}-data",
            PinnedVolumeArgs(
                volume_name=mc.STORE_VOLUME,
                namespace=ns,
                node=monitoring.node,
                storage_path=args.storage_path,
                size=monitoring.size,
                access=args.node_access,
            ),
            after,
        )
        svc = render_service(ns)
        self.service = KubernetesObject(f"{name}-service", svc, after)
        sts = render_statefulset(monitoring, namespace=ns)
        self.statefulset = KubernetesObject(
            f"{name}-statefulset",
            sts,
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    self.service,
                    self.config_map,
                    self.cluster_role_binding,
                    self.volume.claim,
                ],
            ),
        )
        gpu_address = rack.gpu_host.address if args.gpu and rack.gpu_host is not None else None
        pol = render_network_policy(rack, gpu_address=gpu_address, namespace=ns, pushers=args.pushers)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, after)
        self.url = mc.store_url()
        self.register_outputs(
            {
                "service_account": self.service_account,
                "cluster_role": self.cluster_role,
                "cluster_role_binding": self.cluster_role_binding,
                "config_map": self.config_map,
                "volume": self.volume,
                "service": self.service,
                "statefulset": self.statefulset,
                "network_policy": self.network_policy,
                "url": self.url,
            }
        )
