"""The system layer: what every workload namespace and service relies on.

Creates one Namespace per workload category in use, with its Pod Security admission labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.layout import NAMESPACES, Category, namespace_labels
from stacks.loader import Loaded
from stacks.metal import MetalLayer


@dataclass(frozen=True)
class SystemLayer:
    namespaces: dict[Category, k8s.core.v1.Namespace]
    """The namespace object of each category in use."""

    def namespace_of(self, category: Category) -> str:
        return NAMESPACES[category]


def categories_in_use(loaded: Loaded) -> list[Category]:
    rack = loaded.rack
    used = {app.category for app in rack.apps}
    if rack.databases.configured() or rack.gitea is not None:
        used.add(Category.DATA)
    if rack.gitea is not None:
        used.add(Category.INFRASTRUCTURE)
    return [c for c in Category if c in used]


def build_system(loaded: Loaded, metal: MetalLayer) -> SystemLayer:
    opts = pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready)
    namespaces = {
        category: k8s.core.v1.Namespace(
            f"ns-{NAMESPACES[category]}",
            metadata={"name": NAMESPACES[category], "labels": namespace_labels(category)},
            opts=opts,
        )
        for category in categories_in_use(loaded)
    }
    return SystemLayer(namespaces=namespaces)
