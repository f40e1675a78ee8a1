"""The GPU host: model servers in Docker over SSH on the external RTX box, reachable from pods as an
in-cluster Service through a health-checking HAProxy gateway.
"""

from components.gpu.gpu_host import GpuHost, GpuHostArgs

__all__ = [
    "GpuHost",
    "GpuHostArgs",
]
