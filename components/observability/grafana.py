"""Grafana: the rack's dashboards, behind the ingress at `<monitoring.host>.<domain>`.

Creates, under `homelab:observability:Grafana`:
- `GeneratedSecret` `<name>-admin-password` (made on the first `up`) unless the user set
  `homelab:grafana-admin-password`, and `Secret` `grafana-admin` holding it (read by secretKeyRef);
- `ConfigMap`s `grafana-datasources` (the store, uid `victoriametrics`), `grafana-dashboard-provider`
  and `grafana-dashboards` (every `monitoring/dashboards/*.json` as it is in the repo);
- `Deployment` `grafana`: one replica, infrastructure category, restricted Pod Security profile,
  read-only root. Stateless by design: the datasource and dashboards are provisioned from the
  repo on every start (read-only in the UI), its own database lives on an emptyDir, so it needs
  no pinned volume (users other than admin, stars and preferences do not survive a restart);
- `Service` `grafana` (3000) and an `Ingress` in the style of `IngressRoutes` (Traefik,
  `websecure`, the host under the domain);
- `NetworkPolicy`: in from Traefik only; out to the store, vmalert and DNS (no update checks,
  no plugin downloads: the image's bundled plugins only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.core.network_policy import dns_egress, from_traefik, pods_peer, render_workload_policy, rule, tcp
from components.observability import monitoring_config as mc
from components.system.ingress_routes import Route, render_ingress
from rack.config import Monitoring
from rack.vocabulary import Category

RUN_AS = 472
"""The `grafana` user of the official image."""
ADMIN_SECRET = "grafana-admin"
PASSWORD_KEY = "password"
DATASOURCES_CONFIGMAP = "grafana-datasources"
PROVIDER_CONFIGMAP = "grafana-dashboard-provider"
DASHBOARDS_CONFIGMAP = "grafana-dashboards"
CHECKSUM_ANNOTATION = "rack.homelab.io/provisioning-checksum"
"""On the pod template: a datasource/provider change restarts Grafana (read at start only;
dashboards themselves are reread every minute)."""


def labels() -> dict[str, str]:
    return workload_labels(mc.GRAFANA_NAME, Category.INFRASTRUCTURE)


def fqdn(monitoring: Monitoring, domain: str) -> str:
    return f"{monitoring.host}.{domain}"


def route(monitoring: Monitoring, domain: str, *, namespace: str = mc.NAMESPACE) -> Route:
    """Grafana's ingress route, the same shape IngressRoutes renders for apps and Gitea."""
    return Route(mc.GRAFANA_NAME, fqdn(monitoring, domain), namespace, mc.GRAFANA_NAME, mc.GRAFANA_PORT)


def render_config_maps(monitoring: Monitoring, *, namespace: str = mc.NAMESPACE) -> list[dict[str, Any]]:
    """Datasource, dashboard provider and dashboards (pure)."""

    def cm(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels()},
            "data": data,
        }

    return [
        cm(DATASOURCES_CONFIGMAP, {"datasources.yaml": mc.to_yaml(mc.render_datasources(monitoring))}),
        cm(PROVIDER_CONFIGMAP, {"dashboards.yaml": mc.to_yaml(mc.render_dashboard_provider())}),
        cm(DASHBOARDS_CONFIGMAP, mc.dashboard_files()),
    ]


def provisioning_checksum(monitoring: Monitoring) -> str:
    text = mc.to_yaml(mc.render_datasources(monitoring)) + mc.to_yaml(mc.render_dashboard_provider())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render_env(monitoring: Monitoring, domain: str) -> list[dict[str, Any]]:
    """Grafana's settings (GF_<SECTION>_<KEY>); the admin password only by secretKeyRef."""
    values = {
        "GF_SECURITY_ADMIN_USER": mc.GRAFANA_ADMIN_USER,
        "GF_SERVER_ROOT_URL": f"https://{fqdn(monitoring, domain)}/",
        "GF_SERVER_HTTP_PORT": str(mc.GRAFANA_PORT),
        "GF_PATHS_DATA": "/var/lib/grafana",
        "GF_PATHS_PROVISIONING": "/etc/grafana/provisioning",
        "GF_LOG_MODE": "console",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_PLUGINS_PREINSTALL_DISABLED": "true",
        "GF_NEWS_NEWS_FEED_ENABLED": "false",
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{mc.GRAFANA_DASHBOARD_DIR}/nodes.json",
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env.append(
        {
            "name": "GF_SECURITY_ADMIN_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": ADMIN_SECRET, "key": PASSWORD_KEY}},
        }
    )
    return env


def render_deployment(monitoring: Monitoring, domain: str, *, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    """Grafana (pure)."""
    probe = {"httpGet": {"path": "/api/health", "port": "http"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": mc.GRAFANA_NAME,
        "image": mc.grafana_image(monitoring.grafana_version),
        "imagePullPolicy": "IfNotPresent",
        "env": render_env(monitoring, domain),
        "ports": [{"name": "http", "containerPort": mc.GRAFANA_PORT, "protocol": "TCP"}],
        "resources": mc.RESOURCES[mc.GRAFANA_NAME].to_k8s(),
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/grafana"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "datasources", "mountPath": "/etc/grafana/provisioning/datasources", "readOnly": True},
            {"name": "provider", "mountPath": "/etc/grafana/provisioning/dashboards", "readOnly": True},
            {"name": "dashboards", "mountPath": mc.GRAFANA_DASHBOARD_DIR, "readOnly": True},
        ],
        # First start migrates its database: give a Pi time.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 30},
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 6},
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(RUN_AS, fs_group=True),
        "containers": [container],
        "volumes": [
            {"name": "data", "emptyDir": {"sizeLimit": "512Mi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "datasources", "configMap": {"name": DATASOURCES_CONFIGMAP}},
            {"name": "provider", "configMap": {"name": PROVIDER_CONFIGMAP}},
            {"name": "dashboards", "configMap": {"name": DASHBOARDS_CONFIGMAP}},
        ],
        **pod_placement(mc.GRAFANA_NAME, Category.INFRASTRUCTURE),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": mc.GRAFANA_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {WORKLOAD_LABEL: mc.GRAFANA_NAME}},
            "template": {
                "metadata": {
                    "labels": labels(),
                    "annotations": {CHECKSUM_ANNOTATION: provisioning_checksum(monitoring)},
                },
                "spec": pod_spec,
            },
        },
    }


def render_service(*, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": mc.GRAFANA_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: mc.GRAFANA_NAME},
            "ports": [{"name": "http", "port": mc.GRAFANA_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_secret(*, password: Any, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    """The admin password Secret; `password` is the (secret) Output in the component."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ADMIN_SECRET, "namespace": namespace, "labels": labels()},
        "type": "Opaque",
        "stringData": {PASSWORD_KEY: password},
    }


def render_network_policy(*, namespace: str = mc.NAMESPACE) -> dict[str, Any]:
    store = pods_peer(namespace, {WORKLOAD_LABEL: mc.STORE_NAME})
    vmalert = pods_peer(namespace, {WORKLOAD_LABEL: mc.VMALERT_NAME})
    return render_workload_policy(
        name=mc.GRAFANA_NAME,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: mc.GRAFANA_NAME},
        labels=labels(),
        ingress=[from_traefik("http")],
        egress=[
            dns_egress(),
            rule([store], tcp(mc.STORE_PORT), egress=True),
            rule([vmalert], tcp(mc.VMALERT_PORT), egress=True),
        ],
    )


@dataclass(frozen=True, kw_only=True)
class GrafanaArgs:
    monitoring: Monitoring
    """The validated `rack.monitoring` section."""
    domain: str
    """`rack.domain` (Grafana's host lives under it)."""
    admin_password: pulumi.Input[str] | None = None
    """The user's `homelab:grafana-admin-password`; None: generated on the first `up`."""
    namespace: str = mc.NAMESPACE
    """Namespace of every object."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the objects wait for (the Namespace)."""


class Grafana(pulumi.ComponentResource):
    admin_password: pulumi.Output[str]
    """The admin password (always a Pulumi secret)."""
    secret: KubernetesObject
    """The Secret holding it."""
    config_maps: dict[str, KubernetesObject]
    """Datasources, dashboard provider and dashboards, by ConfigMap name."""
    deployment: KubernetesObject
    """Grafana."""
    service: KubernetesObject
    """Its ClusterIP Service."""
    ingress: KubernetesObject
    """`https://<host>.<domain>/` through Traefik."""
    network_policy: KubernetesObject
    """Its allow-list."""
    url: str
    """Where a browser opens it."""

    def __init__(self, name: str, args: GrafanaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:Grafana", name, None, opts)
        ns, monitoring = args.namespace, args.monitoring
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        generated = GeneratedSecret(
            f"{name}-admin-password",
            GeneratedSecretArgs(override=args.admin_password),
            pulumi.ResourceOptions(parent=self),
        )
        self.admin_password = generated.value
        sec = render_secret(password=self.admin_password, namespace=ns)
        self.secret = KubernetesObject(f"{name}-admin", sec, after)
        self.config_maps = {}
        for cm in render_config_maps(monitoring, namespace=ns):
            key = cm["metadata"]["name"]
            self.config_maps[key] = KubernetesObject(f"{name}-{key.removeprefix('grafana-')}", cm, after)
        dep = render_deployment(monitoring, args.domain, namespace=ns)
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            dep,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, self.secret, *self.config_maps.values()]),
        )
        svc = render_service(namespace=ns)
        self.service = KubernetesObject(f"{name}-service", svc, after)
        ing = render_ingress(route(monitoring, args.domain, namespace=ns))
        self.ingress = KubernetesObject(f"{name}-ingress", ing, after)
        pol = render_network_policy(namespace=ns)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, after)
        self.url = f"https://{fqdn(monitoring, args.domain)}/"
        self.register_outputs(
            {
                "admin_password": self.admin_password,
                "secret": self.secret,
                "config_maps": self.config_maps,
                "deployment": self.deployment,
                "service": self.service,
                "ingress": self.ingress,
                "network_policy": self.network_policy,
                "url": self.url,
            }
        )
