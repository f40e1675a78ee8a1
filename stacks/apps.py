"""The apps layer: every app of `rack.apps` as an AppWorkload in its category's namespace.

Creates, per namespace that holds apps, a default-deny NetworkPolicy (each app's own policy then
allows exactly its traffic), and per app an AppWorkload wired to what it `uses`: the databases
the platform layer hands over (`PlatformLayer.endpoints`) and the GPU service
(`rack.endpoints.inference_endpoint`, a pure function of the config); its rollout report (images
of the rack's own registry) runs over SSH on the bootstrap server (`MetalLayer.node_access`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.apps import AppWorkload, AppWorkloadArgs
from components.core import KubernetesObject, render_default_deny
from rack.config import App, Rack
from rack.endpoints import ServiceEndpoint, inference_endpoint
from rack.loader import Loaded
from stacks.metal import MetalLayer
from stacks.platform import PlatformLayer
from stacks.system import SystemLayer


@dataclass(frozen=True)
class AppsLayer:
    workloads: dict[str, AppWorkload]
    """Each app's component, by app name."""
    default_deny: dict[str, KubernetesObject] = field(default_factory=dict)
    """The default-deny policy of each namespace that holds apps, by namespace."""
    unwired: dict[str, list[str]] = field(default_factory=dict)
    """Per app, the `uses` names no endpoint was handed over for (left out, with a warning)."""


def available_endpoints(rack: Rack, platform: PlatformLayer) -> dict[str, ServiceEndpoint]:
    """Everything an app may name in `uses`, as it is reached."""
    out = dict(platform.endpoints)
    inference = inference_endpoint(rack)
    if inference is not None:
        out[inference.name] = inference
    return out


def resolve_uses(app: App, available: dict[str, ServiceEndpoint]) -> tuple[list[ServiceEndpoint], list[str]]:
    """(endpoints in `uses` order, names with no endpoint)."""
    found = [available[u] for u in app.uses if u in available]
    missing = [u for u in app.uses if u not in available]
    return found, missing


def build_apps(loaded: Loaded, metal: MetalLayer, system: SystemLayer, platform: PlatformLayer) -> AppsLayer:
    rack = loaded.rack
    available = available_endpoints(rack, platform)
    k8s_opts = pulumi.ResourceOptions(provider=metal.k8s_provider)

    default_deny: dict[str, KubernetesObject] = {}
    for category in sorted({app.category for app in rack.apps}):
        ns = system.namespace_of(category)
        manifest = render_default_deny(ns)
        default_deny[ns] = KubernetesObject(
            f"netpol-{ns}-default-deny",
            manifest,
            pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[system.namespaces[category]])),
        )

    workloads: dict[str, AppWorkload] = {}
    unwired: dict[str, list[str]] = {}
    for app in rack.apps:
        namespace = system.namespaces[app.category]
        endpoints, missing = resolve_uses(app, available)
        if missing:
            # The config is valid (rack_problems checked `uses`), so the platform layer owes an
            # endpoint: say so loudly rather than wire half an app silently.
            unwired[app.name] = missing
            pulumi.log.warn(
                f"app {app.name}: no endpoint handed over for {', '.join(missing)}; "
                "its env and egress leave them out until the platform layer provides them"
            )
        workloads[app.name] = AppWorkload(
            f"app-{app.name}",
            AppWorkloadArgs(
                app=app,
                namespace=system.namespace_of(app.category),
                failover_seconds=rack.failover_seconds,
                endpoints=endpoints,
                registry_host=rack.registry_host(),
                rollout_access=metal.node_access.get(rack.bootstrap().hostname),
            ),
            pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=[namespace]),
        )
    return AppsLayer(workloads=workloads, default_deny=default_deny, unwired=unwired)
