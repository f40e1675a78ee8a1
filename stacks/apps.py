"""The apps layer: every app of `rack.apps` as an AppWorkload in its category's namespace."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.app_workload import AppWorkload, AppWorkloadArgs
from stacks.loader import Loaded
from stacks.metal import MetalLayer
from stacks.platform import PlatformLayer
from stacks.system import SystemLayer


@dataclass(frozen=True)
class AppsLayer:
    workloads: dict[str, AppWorkload]
    """Each app's component, by app name."""


def build_apps(loaded: Loaded, metal: MetalLayer, system: SystemLayer, platform: PlatformLayer) -> AppsLayer:
    rack = loaded.rack
    workloads = {}
    for app in rack.apps:
        namespace = system.namespaces[app.category]
        workloads[app.name] = AppWorkload(
            f"app-{app.name}",
            AppWorkloadArgs(
                app=app,
                namespace=system.namespace_of(app.category),
                failover_seconds=rack.failover_seconds,
            ),
            pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=[namespace]),
        )
    return AppsLayer(workloads=workloads)
