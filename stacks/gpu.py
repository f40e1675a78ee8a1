"""The GPU layer: model servers on the external GPU machine, reachable as an in-cluster Service.

Creates one `GpuHost` (its Docker provider, the SSH preflight, the network, the pinned images and
containers, the Service and its health-checking gateway) and, when the Service's namespace is
not one the system layer creates, that Namespace. Left out entirely (nothing registered) when
`homelab:skip-layers` names `gpu` or the rack has no `gpu-host`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.core import KubernetesObject, render_namespace
from components.gpu import GpuHost, GpuHostArgs
from rack.endpoints import inference_endpoint
from rack.loader import Loaded
from stacks.metal import MetalLayer
from stacks.system import SystemLayer

NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
"""The GPU Service's own namespace holds only the gateway's pods; it gets the strictest Pod Security level."""


@dataclass(frozen=True)
class GpuLayer:
    enabled: bool
    """False when the rack has no gpu-host or the layer is skipped."""
    host: GpuHost | None = None
    """The GPU host component (None when disabled)."""
    namespace: KubernetesObject | None = None
    """The Namespace this layer created for the Service (None when the system layer owns it)."""


def build_gpu(loaded: Loaded, metal: MetalLayer, system: SystemLayer) -> GpuLayer:
    rack = loaded.rack
    endpoint = inference_endpoint(rack)
    if rack.gpu_host is None or endpoint is None or "gpu" in loaded.skip_layers:
        return GpuLayer(enabled=False)

    system_namespaces = {system.namespace_of(category): ns for category, ns in system.namespaces.items()}
    namespace: KubernetesObject | None = None
    ready: list[pulumi.Resource] = []
    if endpoint.namespace in system_namespaces:
        ready.append(system_namespaces[endpoint.namespace])
    else:
        namespace = KubernetesObject(
            f"ns-{endpoint.namespace}",
            render_namespace(endpoint.namespace, NAMESPACE_LABELS),
            pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready),
        )
        ready.append(namespace)

    host = GpuHost(
        rack.gpu_host.hostname,
        GpuHostArgs(
            host=rack.gpu_host,
            endpoint=endpoint,
            ssh_private_key=loaded.secrets.get("ssh-private-key"),
            k8s_depends_on=ready,
        ),
        pulumi.ResourceOptions(providers=[metal.k8s_provider]),
    )
    return GpuLayer(enabled=True, host=host, namespace=namespace)
