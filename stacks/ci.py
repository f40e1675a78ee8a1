"""The CI layer: Gitea and its runners (built on the platform layer's PostgreSQL and volumes).

Creates nothing until the Gitea components land.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from stacks.loader import Loaded
from stacks.metal import MetalLayer
from stacks.platform import PlatformLayer
from stacks.system import SystemLayer


@dataclass(frozen=True)
class CiLayer:
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """Gitea and its runners, by name."""


def build_ci(loaded: Loaded, metal: MetalLayer, system: SystemLayer, platform: PlatformLayer) -> CiLayer:
    return CiLayer()
