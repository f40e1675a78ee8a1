"""The inference gateway: how pods reach the GPU host only while its model server is healthy.

Creates nothing (pure renderers; `GpuHost` registers them). Kubernetes never probes the endpoints
of a selector-less Service: an EndpointSlice written by hand says `ready: true` until someone
rewrites it, so pods kept sending to a dead model server. The one component that keeps endpoint
readiness true to health is the EndpointSlice controller, from Pod readiness. So the Service
selects a small HAProxy Deployment in front of the GPU host:

- HAProxy health-checks the model server itself (`option httpchk` on the container's
  `health-path`, every 2 s, down after 2 failures, up after 1 success; a TCP connect for a
  container with `health-cmd`, whose check runs inside the container);
- its second frontend answers `/ready` with 503 while no backend server is up (`monitor fail if
  { nbsrv(...) lt 1 }`), and that is the pods' readiness probe: the Service's endpoints follow the
  model server's health through Kubernetes' own machinery, without a controller of ours or any
  write access to the API;
- traffic is proxied in TCP mode (streamed responses pass untouched).

Two replicas, infrastructure placement, a PodDisruptionBudget (one may be drained at a time) and
a NetworkPolicy: in on the service port from any pod (apps' own egress policies name it), out to
the GPU host's address and port only. Restricted Pod Security, read-only root, HAProxy's own uid.
"""

from __future__ import annotations

from typing import Any

from components.core.layout import (
    CATEGORY_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
)
from components.core.network_policy import cidr_peer, host_network, render_workload_policy, rule, tcp
from rack.config import GpuContainer
from rack.endpoints import ServiceEndpoint
from rack.vocabulary import Category

IMAGE = "docker.io/library/haproxy:3.2.24-alpine"
"""HAProxy 3.2 (LTS), the official image (runs as the `haproxy` user, uid 99)."""
RUN_AS = 99
CONFIG_DIR = "/usr/local/etc/haproxy"
"""Where the official image reads haproxy.cfg."""
HEALTH_PORT = 8405
"""The gateway's own readiness frontend (`/ready`)."""
READY_PATH = "/ready"
REPLICAS = 2
BACKEND = "model-server"
CHECK = "check inter 2s fall 2 rise 1"
"""Backend health timing: down within ~4 s of the model server failing, up on the first success."""
RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "32Mi"},
    "limits": {"cpu": "500m", "memory": "128Mi"},
}


def name_of(endpoint: ServiceEndpoint) -> str:
    assert endpoint.pod_labels is not None, "the inference endpoint names its gateway's pods"
    return endpoint.pod_labels["app.kubernetes.io/name"]


def render_config(endpoint: ServiceEndpoint, container: GpuContainer) -> str:
    """haproxy.cfg (pure): the service port proxied to the GPU host, the model server checked."""
    assert endpoint.external_ip is not None, "the GPU endpoint always has the host's address"
    if container.health_cmd is None:
        check = [
            "  option httpchk",
            f"  http-check send meth GET uri {container.health_path}",
            "  http-check expect status 200-399",
        ]
    else:
        check = ["  # health-cmd runs inside the container: from here a TCP connect is the check"]
    lines = [
        "global",
        "  log stdout format raw local0 notice",
        "  maxconn 2048",
        "",
        "defaults",
        "  log global",
        "  timeout connect 5s",
        "  # model servers stream long answers",
        "  timeout client 1h",
        "  timeout server 1h",
        "  timeout check 5s",
        "",
        "frontend inference",
        "  mode tcp",
        f"  bind :{endpoint.port}",
        f"  default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "  mode tcp",
        *check,
        f"  server {container.name} {endpoint.external_ip}:{container.port} {CHECK}",
        "",
        "frontend health",
        "  mode http",
        f"  bind :{HEALTH_PORT}",
        f"  monitor-uri {READY_PATH}",
        f"  monitor fail if {{ nbsrv({BACKEND}) lt 1 }}",
        "",
    ]
    return "\n".join(lines)


def labels(endpoint: ServiceEndpoint) -> dict[str, str]:
    assert endpoint.pod_labels is not None
    return {**endpoint.pod_labels, CATEGORY_LABEL: str(Category.INFRASTRUCTURE)}


def render_configmap(endpoint: ServiceEndpoint, container: GpuContainer) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name_of(endpoint), "namespace": endpoint.namespace, "labels": labels(endpoint)},
        "data": {"haproxy.cfg": render_config(endpoint, container)},
    }


def render_deployment(endpoint: ServiceEndpoint, config_checksum: str) -> dict[str, Any]:
    """Two HAProxy pods whose readiness is the model server's health (pure)."""
    name = name_of(endpoint)
    pod_security = restricted_pod_security(RUN_AS)
    if endpoint.port < 1024:
        # A safe sysctl (Pod Security baseline/restricted allow it): a non-root HAProxy may bind it.
        pod_security["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    container = {
        "name": "haproxy",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["haproxy", "-W", "-db", "-f", f"{CONFIG_DIR}/haproxy.cfg"],
        "ports": [
            {"name": "inference", "containerPort": endpoint.port, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": "health"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 1,
            "successThreshold": 1,
        },
        "livenessProbe": {"tcpSocket": {"port": "health"}, "periodSeconds": 20, "failureThreshold": 3},
        "resources": RESOURCES,
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": endpoint.namespace, "labels": labels(endpoint)},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": dict(endpoint.pod_labels or {})},
            "template": {
                "metadata": {
                    "labels": labels(endpoint),
                    # A changed haproxy.cfg rolls the pods (they read it at start).
                    "annotations": {"rack.homelab.io/config-checksum": config_checksum},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": name}}],
                    **pod_placement(name, Category.INFRASTRUCTURE),
                },
            },
        },
    }


def render_pdb(endpoint: ServiceEndpoint) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name_of(endpoint), "namespace": endpoint.namespace, "labels": labels(endpoint)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(endpoint.pod_labels or {})}},
    }


def render_network_policy(endpoint: ServiceEndpoint, container: GpuContainer) -> dict[str, Any]:
    """In on the service and health ports; out only to the model server on the GPU host."""
    assert endpoint.external_ip is not None
    return render_workload_policy(
        name=name_of(endpoint),
        namespace=endpoint.namespace,
        pod_labels=dict(endpoint.pod_labels or {}),
        labels=labels(endpoint),
        # any peer: the callers' egress policies are the allow-list; the kubelet probes `health`
        ingress=[rule(None, tcp(endpoint.port, HEALTH_PORT), egress=False)],
        egress=[rule([cidr_peer(host_network(endpoint.external_ip))], tcp(container.port), egress=True)],
    )
