"""VmAlert: the alert rules in the repo, evaluated against the metrics store.

Creates, under `homelab:observability:VmAlert`:
- `ConfigMap` `vmalert-rules`: every `monitoring/alerts/*.yaml` file as it is in the repo, plus
  `homelab-settings.yaml`, the recording rules rendered from `rack.monitoring` (the disk threshold);
- `Deployment` `vmalert`: one replica, infrastructure category, restricted Pod Security profile.
  It evaluates every `scrape-interval`, writes alert state and the `ALERTS` series back to the
  store (so state survives a restart and Grafana can show firing alerts) and, unless
  `rack.monitoring.alertmanager-url` is set, sends notifications nowhere (`-notifier.blackhole`);
- `Service` `vmalert` (8880: its UI/API at /vmalert, and its own metrics);
- `NetworkPolicy`: in from the store (scrape) and Grafana; out to the store, DNS and, with an
  Alertmanager configured, to any address on its port.

To route alerts somewhere: run an Alertmanager (in the cluster or on the LAN) and set
`rack.monitoring.alertmanager-url`; its receivers (mail, ntfy, Matrix, ...) are configured there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.core.network_policy import dns_egress, pods_peer, render_workload_policy, rule, tcp
from components.observability import monitoring_config as mc
from rack.config import Monitoring
from rack.vocabulary import Category

RUN_AS = 65534
RULES_CONFIGMAP = "vmalert-rules"
CHECKSUM_ANNOTATION = "rack.homelab.io/rules-checksum"
"""On the pod template: a rules change restarts vmalert (it reads rule files at start)."""


def labels() -> dict[str, str]:
    return workload_labels(mc.VMALERT_NAME, Category.INFRASTRUCTURE)


def rules_checksum(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(files.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()[:16]


def render_rules_configmap(
    monitoring: Monitoring, *, namespace: str = mc.NAMESPACE, backup_periods: Mapping[str, int] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": RULES_CONFIGMAP, "namespace": namespace, "labels": labels()},
        "data": mc.rule_files(monitoring, backup_periods),
    }


def render_deployment(
    monitoring: Monitoring, *, namespace: str = mc.NAMESPACE, backup_periods: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """vmalert (pure)."""
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": mc.VMALERT_NAME,
        "image": mc.vmalert_image(monitoring.store_version),
        "imagePullPolicy": "IfNotPresent",
        "args": mc.vmalert_args(monitoring),
        "ports": [{"name": "http", "containerPort": mc.VMALERT_PORT, "protocol": "TCP"}],
        "resources": mc.RESOURCES[mc.VMALERT_NAME].to_k8s(),
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "rules", "mountPath": mc.RULES_DIR, "readOnly": True}],
        "readinessProbe": {**probe, "periodSeconds": 15},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 6},
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(RUN_AS),
        "containers": [container],
        "volumes": [{"name": "rules", "configMap": {"name": RULES_CONFIGMAP}}],
        **pod_placement(mc.VMALERT_NAME, Category.INFRASTRUCTURE),
    }
    template_meta = {
        "labels": labels(),
        "annotations": {CHECKSUM_ANNOTATION: rules_checksum(mc.rule_files(monitoring, backup_periods))},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": mc.VMALERT_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {WORKLOAD_LABEL: mc.VMALERT_NAME}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def render_service(*, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": mc.VMALERT_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: mc.VMALERT_NAME},
            "ports": [{"name": "http", "port": mc.VMALERT_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def alertmanager_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def render_network_policy(monitoring: Monitoring, *, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    store = pods_peer(namespace, {WORKLOAD_LABEL: mc.STORE_NAME})
    grafana = pods_peer(namespace, {WORKLOAD_LABEL: mc.GRAFANA_NAME})
    egress = [dns_egress(), rule([store], tcp(mc.STORE_PORT), egress=True)]
    if monitoring.alertmanager_url:
        # The receiver may live anywhere (a pod, a LAN box): any address, its port only.
        egress.append(rule(None, tcp(alertmanager_port(monitoring.alertmanager_url)), egress=True))
    return render_workload_policy(
        name=mc.VMALERT_NAME,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: mc.VMALERT_NAME},
        labels=labels(),
        ingress=[rule([store, grafana], tcp(mc.VMALERT_PORT), egress=False)],
        egress=egress,
    )


@dataclass(frozen=True, kw_only=True)
class VmAlertArgs:
    monitoring: Monitoring
    """The validated `rack.monitoring` section."""
    namespace: str = mc.NAMESPACE
    """Namespace of every object."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the objects wait for (the Namespace, the store)."""
    backup_periods: Mapping[str, int] = field(default_factory=dict)
    """Per dataset copied off-node, seconds between its runs (its age alert's threshold is two)."""


class VmAlert(pulumi.ComponentResource):
    config_map: KubernetesObject
    """The rule files."""
    deployment: KubernetesObject
    """vmalert."""
    service: KubernetesObject
    """Its UI/API and metrics."""
    network_policy: KubernetesObject
    """Its allow-list."""

    def __init__(self, name: str, args: VmAlertArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:VmAlert", name, None, opts)
        ns, monitoring = args.namespace, args.monitoring
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        cm = render_rules_configmap(monitoring, namespace=ns, backup_periods=args.backup_periods)
        self.config_map = KubernetesObject(f"{name}-rules", cm, after)
        dep = render_deployment(monitoring, namespace=ns, backup_periods=args.backup_periods)
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            dep,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, self.config_map]),
        )
        svc = render_service(namespace=ns)
        self.service = KubernetesObject(f"{name}-service", svc, after)
        pol = render_network_policy(monitoring, namespace=ns)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, after)
        self.register_outputs(
            {
                "config_map": self.config_map,
                "deployment": self.deployment,
                "service": self.service,
                "network_policy": self.network_policy,
            }
        )
