"""The GPU layer: model servers on the external GPU machine, reachable as an in-cluster Service.

Creates nothing until the GPU-host component lands; left out entirely when `homelab:skip-layers`
names `gpu` or the rack has no `gpu-host`.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.loader import Loaded
from stacks.metal import MetalLayer
from stacks.system import SystemLayer


@dataclass(frozen=True)
class GpuLayer:
    enabled: bool
    """False when the rack has no gpu-host or the layer is skipped."""


def build_gpu(loaded: Loaded, metal: MetalLayer, system: SystemLayer) -> GpuLayer:
    enabled = loaded.rack.gpu_host is not None and "gpu" not in loaded.skip_layers
    return GpuLayer(enabled=enabled)
