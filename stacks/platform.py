"""The platform layer: stateful services on pinned volumes (databases, Gitea).

Creates nothing until the data-layer components land; its output is the typed hand-over the
apps layer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from stacks.endpoints import ServiceEndpoint
from stacks.loader import Loaded
from stacks.metal import MetalLayer
from stacks.system import SystemLayer


@dataclass(frozen=True)
class PlatformLayer:
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """The platform components by name."""
    endpoints: dict[str, ServiceEndpoint] = field(default_factory=dict)
    """Each database as apps reach it, keyed by the name apps put in `uses`."""


def build_platform(loaded: Loaded, metal: MetalLayer, system: SystemLayer) -> PlatformLayer:
    return PlatformLayer()
