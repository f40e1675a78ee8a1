"""The observability layer: metrics, alerts and dashboards sized for Pis — and the vector
extension of the rack's PostgreSQL (issue 11's other half, built on the platform layer).

Creates, when `rack.monitoring` is present and `enabled` (nothing otherwise):
- `Namespace` `monitoring` (Pod Security `restricted`) and `monitoring-node` (`privileged`, for
  node-exporter alone), both of category infrastructure, each with a default-deny NetworkPolicy;
- `VictoriaMetrics` (protected): the store on a pinned volume on `monitoring.node`, data category;
- `NodeExporter`: a DaemonSet on every node (control plane and experimental nodes included);
- `KubeStateMetrics`, `VmAlert` and `Grafana` (infrastructure: general or reliable nodes);
- `GpuExporter`, when the rack has a `gpu-host` and the GPU layer is built in this run: the DCGM
  exporter container on the GPU host (through the GPU layer's Docker provider) and the in-cluster
  Service + EndpointSlice the store scrapes.

And, when `databases.postgres.vector` is true (whatever the monitoring section says):
`VectorExtension` — the idempotent Job enabling `vector` in the apps' database.

Everything is placed by the layout vocabulary, so the offline plan and the rack picture show it
like any other workload (the DaemonSet: one placement per node).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.core import KubernetesObject, pod_security_labels, render_default_deny, render_namespace
from components.observability import (
    GpuExporter,
    GpuExporterArgs,
    Grafana,
    GrafanaArgs,
    KubeStateMetrics,
    KubeStateMetricsArgs,
    NodeExporter,
    NodeExporterArgs,
    VictoriaMetrics,
    VictoriaMetricsArgs,
    VmAlert,
    VmAlertArgs,
)
from components.observability import monitoring_config as mc
from components.platform import VectorExtension, VectorExtensionArgs
from rack.config import Rack, cron_period_seconds
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.gpu import GpuLayer
from stacks.metal import MetalLayer
from stacks.platform import PlatformLayer, backup_pod_peers
from stacks.system import SystemLayer


@dataclass(frozen=True)
class ObservabilityLayer:
    enabled: bool
    """True when `rack.monitoring` is present and enabled."""
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """The monitoring components by name (store, node-exporter, kube-state-metrics, vmalert,
    grafana, gpu-exporter) and `vector` when the vector extension is on."""
    namespaces: dict[str, KubernetesObject] = field(default_factory=dict)
    """The monitoring namespaces, by name."""
    default_deny: dict[str, KubernetesObject] = field(default_factory=dict)
    """The default-deny policy of each monitoring namespace, by namespace."""
    grafana_url: str | None = None
    """Where a browser opens Grafana (None when monitoring is off)."""


def monitoring_on(rack: Rack) -> bool:
    return rack.monitoring is not None and rack.monitoring.enabled


def namespace_labels() -> dict[str, dict[str, str]]:
    """Pod Security per monitoring namespace: restricted, and privileged only for node-exporter."""
    return {
        mc.NAMESPACE: pod_security_labels(Category.INFRASTRUCTURE, enforce="restricted"),
        mc.NODE_NAMESPACE: pod_security_labels(Category.INFRASTRUCTURE, enforce="privileged", warn="privileged"),
    }


def backup_periods(rack: Rack) -> dict[str, int]:
    """Per dataset copied off-node, the seconds between its scheduled runs (empty without a target)."""
    if rack.backup.offsite is None:
        return {}
    return {ds.name: cron_period_seconds(ds.schedule) for ds in rack.backup_datasets()}


def gpu_exporter_wanted(rack: Rack, gpu: GpuLayer | None) -> bool:
    """The DCGM exporter exists when there is a GPU host and its layer is built in this run."""
    return rack.gpu_host is not None and gpu is not None and gpu.enabled and gpu.host is not None


def build_observability(
    loaded: Loaded,
    metal: MetalLayer,
    system: SystemLayer,
    platform: PlatformLayer,
    gpu: GpuLayer | None = None,
) -> ObservabilityLayer:
    rack = loaded.rack
    components: dict[str, pulumi.ComponentResource] = {}

    pg = rack.databases.postgres
    pg_component = platform.components.get("postgres")
    if pg is not None and pg.vector:
        data_ns = system.namespaces.get(Category.DATA)
        components["vector"] = VectorExtension(
            "postgres-vector",
            VectorExtensionArgs(
                config=pg,
                depends_on=[*([pg_component] if pg_component is not None else []), *([data_ns] if data_ns else [])],
            ),
            pulumi.ResourceOptions(providers=[metal.k8s_provider]),
        )

    monitoring = rack.monitoring
    if monitoring is None or not monitoring.enabled:
        return ObservabilityLayer(enabled=False, components=components)

    k8s_opts = pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready)
    namespaces: dict[str, KubernetesObject] = {}
    default_deny: dict[str, KubernetesObject] = {}
    for ns, labels in namespace_labels().items():
        namespaces[ns] = KubernetesObject(f"ns-{ns}", render_namespace(ns, labels), k8s_opts)
        deny = render_default_deny(ns)
        default_deny[ns] = KubernetesObject(
            f"netpol-{ns}-default-deny",
            deny,
            pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=[namespaces[ns]]),
        )
    component_opts = pulumi.ResourceOptions(providers=[metal.k8s_provider])
    ns_main = [namespaces[mc.NAMESPACE]]

    node = rack.node(monitoring.node)
    assert node is not None and node.storage is not None, "validated by rack_problems"
    with_gpu = gpu_exporter_wanted(rack, gpu)
    storage_class = [platform.storage_class] if platform.storage_class is not None else []
    store = VictoriaMetrics(
        "metrics-store",
        VictoriaMetricsArgs(
            rack=rack,
            storage_path=node.storage.path,
            gpu=with_gpu,
            depends_on=ns_main,
            node_access=metal.node_access.get(node.hostname),
            pushers=backup_pod_peers(rack) if rack.backup.offsite is not None else [],
        ),
        pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=storage_class),
    )
    components["store"] = store
    components["node-exporter"] = NodeExporter(
        "node-exporter", NodeExporterArgs(depends_on=[namespaces[mc.NODE_NAMESPACE]]), component_opts
    )
    components["kube-state-metrics"] = KubeStateMetrics(
        "kube-state-metrics", KubeStateMetricsArgs(rack=rack, depends_on=ns_main), component_opts
    )
    components["vmalert"] = VmAlert(
        "vmalert",
        VmAlertArgs(monitoring=monitoring, depends_on=[*ns_main, store], backup_periods=backup_periods(rack)),
        component_opts,
    )
    grafana = Grafana(
        "grafana",
        GrafanaArgs(
            monitoring=monitoring,
            domain=rack.domain,
            admin_password=loaded.secrets.get("grafana-admin-password"),
            depends_on=ns_main,
        ),
        component_opts,
    )
    components["grafana"] = grafana
    if with_gpu and gpu is not None and gpu.host is not None and rack.gpu_host is not None:
        components["gpu-exporter"] = GpuExporter(
            f"{rack.gpu_host.hostname}-metrics",
            GpuExporterArgs(host=rack.gpu_host, gpu_host=gpu.host, k8s_depends_on=ns_main),
            component_opts,
        )
    return ObservabilityLayer(
        enabled=True,
        components=components,
        namespaces=namespaces,
        default_deny=default_deny,
        grafana_url=grafana.url,
    )
