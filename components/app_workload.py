"""AppWorkload: one app of `rack.apps` as a Deployment, a Service and (replicas >= 2) a PDB.

Creates, under the component `homelab:apps:AppWorkload`:
- `Deployment` placed by its category (layout.pod_placement), with requests from config and a
  pinned image;
- `Service` (ClusterIP) on the app port;
- `PodDisruptionBudget` (minAvailable: replicas - 1) when replicas >= 2.

The manifests are built by pure `render_*` functions so tests can validate them against the
Kubernetes OpenAPI schema without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.layout import Category, pod_placement, workload_labels
from stacks.config import App


def render_deployment(
    app: App,
    *,
    namespace: str,
    failover_seconds: int | None = None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Deployment manifest of an app (pure)."""
    labels = workload_labels(app.name, app.category)
    container: dict[str, Any] = {
        "name": app.name,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port}],
        "resources": {
            "requests": {"cpu": app.cpu, "memory": app.memory},
            "limits": {"memory": app.memory},
        },
    }
    if env:
        container["env"] = env
    pod_spec: dict[str, Any] = {
        "containers": [container],
        **pod_placement(app.name, app.category, failover_seconds=failover_seconds),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app.name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_service(app: App, *, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service in front of an app (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app.name, "namespace": namespace, "labels": workload_labels(app.name, app.category)},
        "spec": {
            "selector": {"app.kubernetes.io/name": app.name},
            "ports": [{"name": "http", "port": app.port, "targetPort": "http"}],
        },
    }


def render_pdb(app: App, *, namespace: str) -> dict[str, Any] | None:
    """A PodDisruptionBudget keeping all but one replica up during drains; none below 2 replicas."""
    if app.replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app.name, "namespace": namespace, "labels": workload_labels(app.name, app.category)},
        "spec": {
            "minAvailable": app.replicas - 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app.name}},
        },
    }


@dataclass(frozen=True, kw_only=True)
class AppWorkloadArgs:
    app: App
    """The validated app config."""
    namespace: str
    """Namespace of the app's category."""
    failover_seconds: int | None = None
    """Not-ready/unreachable toleration for stateless pods (None: Kubernetes' 300 s)."""
    env: list[dict[str, Any]] = field(default_factory=list)
    """Environment wired from `uses` (secret values only by secretKeyRef)."""


class AppWorkload(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment
    """The app's Deployment."""
    service: k8s.core.v1.Service
    """Its ClusterIP Service."""
    pdb: k8s.policy.v1.PodDisruptionBudget | None
    """Its disruption budget (replicas >= 2), else None."""

    def __init__(self, name: str, args: AppWorkloadArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:apps:AppWorkload", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        app, ns = args.app, args.namespace
        failover = args.failover_seconds if app.category != Category.DATA else None

        dep = render_deployment(app, namespace=ns, failover_seconds=failover, env=args.env)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment", metadata=dep["metadata"], spec=dep["spec"], opts=child
        )
        svc = render_service(app, namespace=ns)
        self.service = k8s.core.v1.Service(f"{name}-service", metadata=svc["metadata"], spec=svc["spec"], opts=child)
        pdb = render_pdb(app, namespace=ns)
        self.pdb = (
            k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=pdb["metadata"], spec=pdb["spec"], opts=child)
            if pdb is not None
            else None
        )
        self.register_outputs(
            {"deployment": self.deployment, "service": self.service, "pdb": self.pdb}
        )
