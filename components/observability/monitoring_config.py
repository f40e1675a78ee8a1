"""What the monitoring stack runs and how it is configured: pure data and functions, creates nothing.

The components (VictoriaMetrics, NodeExporter, KubeStateMetrics, VmAlert, Grafana, GpuExporter)
read their images, names, ports, scrape config, rules and dashboards from here, and the tests
check the same values against the real `victoria-metrics` and `vmalert` binaries.

- Images: the store and vmalert share one VictoriaMetrics release and Grafana has its own, both
  from `rack.monitoring`; the exporters are pinned in `IMAGES` (one table).
- Scrape targets are static, rendered from the rack config (`render_scrape_config`): every node's
  node-exporter (`<address>:9100`) and kubelet/cAdvisor (`<address>:10250`, the pod's service
  account token, `nodes/metrics` only), kube-state-metrics and the GPU host's DCGM exporter by
  their in-cluster Service names. Static targets need no list/watch rights on the API, and each
  carries the node's `node`, `class`, `role` and `pinned_volumes` labels from the config, so
  dashboards group by class and the pinned-volume alert knows its nodes without a join.
- Alert rules and dashboards are files in the repo (`monitoring/alerts/*.yaml`,
  `monitoring/dashboards/*.json`); the only config-dependent rule, the disk threshold, is a
  recording rule rendered here (`homelab:disk_alert_percent`), so the rule files stay static.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rack.config import GPU_EXPORTER_NAME as _GPU_EXPORTER_NAME
from rack.config import GPU_EXPORTER_PORT as _GPU_EXPORTER_PORT
from rack.config import Monitoring, Rack

MONITORING_DIR = Path(__file__).resolve().parents[2] / "monitoring"
"""The repo folder holding the alert rules and the dashboards."""
ALERTS_DIR = MONITORING_DIR / "alerts"
DASHBOARDS_DIR = MONITORING_DIR / "dashboards"

NAMESPACE = "monitoring"
"""The store, vmalert, kube-state-metrics and Grafana (Pod Security `restricted`)."""
NODE_NAMESPACE = "monitoring-node"
"""node-exporter alone: host network, host PID and host paths need Pod Security `privileged`."""

IMAGES: dict[str, str] = {
    "node-exporter": "quay.io/prometheus/node-exporter:v1.12.1",
    "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
    "dcgm-exporter": "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04",
}
"""The exporters' pinned images (the store, vmalert and Grafana follow `rack.monitoring`)."""

STORE_NAME = "victoria-metrics"
STORE_PORT = 8428
STORE_VOLUME = "metrics-store"
"""PV/PVC name of the store's data (stable: never derived from a version)."""
STORE_DATA_DIR = "/storage"
STORE_CONFIG_DIR = "/etc/victoria-metrics"
SCRAPE_FILE = "scrape.yaml"
VMALERT_NAME = "vmalert"
VMALERT_PORT = 8880
RULES_DIR = "/etc/vmalert/rules"
SETTINGS_RULES_FILE = "homelab-settings.yaml"
KSM_NAME = "kube-state-metrics"
KSM_PORT = 8080
KSM_TELEMETRY_PORT = 8081
NODE_EXPORTER_NAME = "node-exporter"
NODE_EXPORTER_PORT = 9100
KUBELET_PORT = 10250
GRAFANA_NAME = "grafana"
GRAFANA_PORT = 3000
GRAFANA_ADMIN_USER = "admin"
DATASOURCE_UID = "victoriametrics"
"""The uid every provisioned dashboard names its datasource by."""
GPU_EXPORTER_NAME = _GPU_EXPORTER_NAME
GPU_EXPORTER_PORT = _GPU_EXPORTER_PORT
GPU_METRICS_SERVICE = "gpu-metrics"
"""The selector-less Service in `monitoring` in front of the GPU host's DCGM exporter."""
GPU_JOB = "gpu-host"

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KSM_RESOURCES = (
    "cronjobs",
    "daemonsets",
    "deployments",
    "jobs",
    "namespaces",
    "nodes",
    "persistentvolumeclaims",
    "persistentvolumes",
    "pods",
    "replicasets",
    "services",
    "statefulsets",
)
"""What kube-state-metrics watches (and so what its ClusterRole lists): only what the dashboards
and alerts read."""


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str

    def to_k8s(self) -> dict[str, Any]:
        """Requests equal to limits (Guaranteed QoS, as every workload of the rack)."""
        amounts = {"cpu": self.cpu, "memory": self.memory}
        return {"requests": dict(amounts), "limits": dict(amounts)}


RESOURCES: dict[str, Resources] = {
    VMALERT_NAME: Resources("50m", "64Mi"),
    KSM_NAME: Resources("50m", "96Mi"),
    NODE_EXPORTER_NAME: Resources("50m", "48Mi"),
    GRAFANA_NAME: Resources("250m", "256Mi"),
}
"""Requests (and limits) of the fixed-size parts; the store's come from `rack.monitoring`."""


def store_image(version: str) -> str:
    return f"docker.io/victoriametrics/victoria-metrics:v{version}"


def vmalert_image(version: str) -> str:
    return f"docker.io/victoriametrics/vmalert:v{version}"


def grafana_image(version: str) -> str:
    return f"docker.io/grafana/grafana:{version}"


def service_host(name: str, namespace: str = NAMESPACE) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def store_url() -> str:
    """Where Grafana and vmalert reach the store."""
    return f"http://{service_host(STORE_NAME)}:{STORE_PORT}"


# --- scrape targets ----------------------------------------------------------------------------


def pinned_volume_nodes(rack: Rack) -> list[str]:
    """Nodes holding a pinned volume (Gitea's, a database's, the metrics store's): their pods
    cannot move elsewhere, so losing one is its own alert."""
    nodes = {db.node for db in rack.databases.configured().values()}
    if rack.gitea is not None:
        nodes.add(rack.gitea.volume.node)
    if rack.monitoring is not None and rack.monitoring.enabled:
        nodes.add(rack.monitoring.node)
    return sorted(nodes)


def node_target_labels(rack: Rack) -> dict[str, dict[str, str]]:
    """Per node address, the labels its targets carry: node, class, role, pinned_volumes."""
    pinned = set(pinned_volume_nodes(rack))
    return {
        str(n.address): {
            "node": n.hostname,
            "class": str(n.node_class),
            "role": str(n.role),
            "pinned_volumes": "true" if n.hostname in pinned else "false",
        }
        for n in rack.nodes
    }


def _per_node(rack: Rack, port: int) -> list[dict[str, Any]]:
    return [
        {"targets": [f"{address}:{port}"], "labels": labels} for address, labels in node_target_labels(rack).items()
    ]


def _kubelet_job(rack: Rack, name: str, path: str) -> dict[str, Any]:
    # k3s signs every kubelet's serving certificate (SANs: the node's name and address) with its
    # server CA, the same CA a pod's service account carries: verification stays on.
    return {
        "job_name": name,
        "scheme": "https",
        "metrics_path": path,
        "bearer_token_file": f"{SA_DIR}/token",
        "tls_config": {"ca_file": f"{SA_DIR}/ca.crt"},
        "static_configs": _per_node(rack, KUBELET_PORT),
    }


def render_scrape_config(rack: Rack, *, gpu: bool) -> dict[str, Any]:
    """The store's `-promscrape.config` (pure). `gpu`: whether the GPU host's exporter exists."""
    monitoring = rack.monitoring
    if monitoring is None:
        raise ValueError("rack.monitoring is not configured")
    jobs: list[dict[str, Any]] = [
        {"job_name": NODE_EXPORTER_NAME, "static_configs": _per_node(rack, NODE_EXPORTER_PORT)},
        _kubelet_job(rack, "kubelet", "/metrics"),
        _kubelet_job(rack, "cadvisor", "/metrics/cadvisor"),
        {
            "job_name": KSM_NAME,
            # Its namespace/pod/node labels describe the objects, not the exporter's own pod.
            "honor_labels": True,
            "static_configs": [{"targets": [f"{service_host(KSM_NAME)}:{KSM_PORT}"]}],
        },
        {"job_name": VMALERT_NAME, "static_configs": [{"targets": [f"{service_host(VMALERT_NAME)}:{VMALERT_PORT}"]}]},
    ]
    if gpu and rack.gpu_host is not None:
        jobs.append(
            {
                "job_name": GPU_JOB,
                "static_configs": [
                    {
                        "targets": [f"{service_host(GPU_METRICS_SERVICE)}:{GPU_EXPORTER_PORT}"],
                        "labels": {"node": rack.gpu_host.hostname, "class": "gpu-host"},
                    }
                ],
            }
        )
    return {"global": {"scrape_interval": monitoring.scrape_interval, "scrape_timeout": "10s"}, "scrape_configs": jobs}


def to_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)


# --- the store and vmalert ---------------------------------------------------------------------


def store_args(monitoring: Monitoring) -> list[str]:
    """Command-line flags of the single-node store."""
    return [
        f"-storageDataPath={STORE_DATA_DIR}",
        f"-retentionPeriod={monitoring.retention}",
        f"-httpListenAddr=:{STORE_PORT}",
        f"-promscrape.config={STORE_CONFIG_DIR}/{SCRAPE_FILE}",
        # The ConfigMap's new content reaches the mounted file within a minute; reread it.
        "-promscrape.configCheckInterval=30s",
        f"-selfScrapeInterval={monitoring.scrape_interval}",
        # Caches size themselves to this share of the container's memory limit.
        "-memory.allowedPercent=60",
        "-loggerLevel=WARN",
    ]


def vmalert_args(monitoring: Monitoring) -> list[str]:
    """vmalert's flags: rules from the mounted files, state and `ALERTS` series written back to
    the store. Without `alertmanager-url` notifications are dropped (`-notifier.blackhole`):
    alerts are evaluated and shown (vmalert UI, Grafana's firing-alerts panel), sent nowhere."""
    url = store_url()
    args = [
        f"-rule={RULES_DIR}/*.yaml",
        f"-datasource.url={url}",
        f"-remoteWrite.url={url}",
        f"-remoteRead.url={url}",
        f"-evaluationInterval={monitoring.scrape_interval}",
        f"-httpListenAddr=:{VMALERT_PORT}",
        "-loggerLevel=WARN",
    ]
    if monitoring.alertmanager_url:
        args.append(f"-notifier.url={monitoring.alertmanager_url}")
    else:
        args.append("-notifier.blackhole")
    return args


BACKUP_MAX_AGE = "homelab:backup_max_age_seconds"
"""Per dataset copied off-node: two schedule periods, what its newest good copy may be old."""


def settings_rules(monitoring: Monitoring, backup_periods: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The config-dependent part of the rules: thresholds as recording rules the static alert
    files compare against (`> on() group_left() homelab:disk_alert_percent`), and per dataset
    copied off-node (`backup_periods`: dataset -> seconds between runs) its longest allowed age,
    two periods, plus an alert for a dataset that has never been copied within that time."""
    rules: list[dict[str, Any]] = [
        {"record": "homelab:disk_alert_percent", "expr": f"vector({monitoring.disk_alert_percent})"}
    ]
    for dataset, period in sorted((backup_periods or {}).items()):
        rules.append({"record": BACKUP_MAX_AGE, "expr": f"vector({2 * period})", "labels": {"dataset": dataset}})
    for dataset, period in sorted((backup_periods or {}).items()):
        rules.append(
            {
                "alert": "OffsiteBackupMissing",
                # No success recorded within the metrics' retention: never copied, or not for weeks.
                "expr": f'absent(last_over_time({BACKUP_METRIC}{{dataset="{dataset}"}}[{RETENTION_LOOKBACK}]))',
                "for": f"{2 * period}s",
                "labels": {"severity": "critical", "dataset": dataset},
                "annotations": {
                    "summary": f"No off-node copy of {dataset} has succeeded",
                    "description": "Its copy job has not recorded a success within two schedule periods; "
                    "see docs/restore.md (Off-node copies) and the job's logs.",
                },
            }
        )
    return {"groups": [{"name": "homelab-settings", "rules": rules}]}


BACKUP_METRIC = "homelab_backup_last_success_timestamp_seconds"
"""Pushed by each off-node copy after it succeeded (components/platform/offsite_backup.py)."""
RETENTION_LOOKBACK = "400d"
"""How far back the backup rules look for a success (bounded in practice by the store's retention)."""


def alert_rule_files() -> dict[str, str]:
    """The rule files in the repo: file name -> text (sorted)."""
    return _repo_files(ALERTS_DIR, "*.yaml")


def rule_files(monitoring: Monitoring, backup_periods: Mapping[str, int] | None = None) -> dict[str, str]:
    """Everything vmalert loads: the repo's alert files plus the rendered settings group."""
    files = alert_rule_files()
    if SETTINGS_RULES_FILE in files:
        raise ValueError(f"monitoring/alerts/{SETTINGS_RULES_FILE} would shadow the rendered settings rules")
    return {**files, SETTINGS_RULES_FILE: to_yaml(settings_rules(monitoring, backup_periods))}


# --- Grafana -----------------------------------------------------------------------------------


def dashboard_files() -> dict[str, str]:
    """The dashboards in the repo: file name -> JSON text (sorted)."""
    return _repo_files(DASHBOARDS_DIR, "*.json")


def _repo_files(directory: Path, pattern: str) -> dict[str, str]:
    """File name -> text of the repo's files in `directory` (sorted); a missing directory is an
    error, not an empty ConfigMap."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is missing: the monitoring files ship with the program")
    return {p.name: p.read_text() for p in sorted(directory.glob(pattern))}


def render_datasources(monitoring: Monitoring) -> dict[str, Any]:
    """Grafana's provisioned datasource: the store, through its Prometheus-compatible API."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "VictoriaMetrics",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": store_url(),
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": monitoring.scrape_interval, "httpMethod": "POST"},
            }
        ],
    }


GRAFANA_DASHBOARD_DIR = "/var/lib/grafana/dashboards"


def render_dashboard_provider() -> dict[str, Any]:
    """Grafana's dashboard provider: the mounted files, read-only in the UI (the repo is the source)."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "homelab",
                "folder": "Homelab",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": GRAFANA_DASHBOARD_DIR, "foldersFromFilesStructure": False},
            }
        ],
    }
