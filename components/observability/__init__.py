"""Observability: VictoriaMetrics, vmalert, Grafana, node-exporter, kube-state-metrics and the
GPU exporter, with the scrape and alert config they share (`monitoring_config`).
"""

from components.observability.gpu_exporter import GpuExporter, GpuExporterArgs
from components.observability.grafana import Grafana, GrafanaArgs
from components.observability.kube_state_metrics import KubeStateMetrics, KubeStateMetricsArgs
from components.observability.monitoring_config import GRAFANA_ADMIN_USER
from components.observability.node_exporter import NodeExporter, NodeExporterArgs
from components.observability.victoria_metrics import VictoriaMetrics, VictoriaMetricsArgs
from components.observability.vmalert import VmAlert, VmAlertArgs

__all__ = [
    "GRAFANA_ADMIN_USER",
    "GpuExporter",
    "GpuExporterArgs",
    "Grafana",
    "GrafanaArgs",
    "KubeStateMetrics",
    "KubeStateMetricsArgs",
    "NodeExporter",
    "NodeExporterArgs",
    "VictoriaMetrics",
    "VictoriaMetricsArgs",
    "VmAlert",
    "VmAlertArgs",
]
