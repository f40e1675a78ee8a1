"""What an app can name in `uses`, and how it reaches it: the hand-over between layers.

Creates nothing. The platform layer fills `PlatformLayer.endpoints` with one `ServiceEndpoint`
per database (carrying its credentials as secret Outputs); the GPU service's endpoint is a pure
function of the config, so the apps layer can wire it before the GPU layer exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi

from rack.config import Rack


@dataclass(frozen=True)
class ServiceEndpoint:
    name: str
    """The name apps put in `uses` (postgres, mysql, redis, inference, ...)."""
    kind: str
    """postgres | mysql | redis | http."""
    namespace: str
    """Namespace of the in-cluster Service."""
    service: str
    """Name of the in-cluster Service."""
    port: int
    """Service port."""
    pod_labels: dict[str, str] | None = None
    """Labels of the serving pods (None: outside the cluster, reached through `external_ip`)."""
    external_ip: IPv4Address | None = None
    """Outside the cluster: the real address behind the Service (its pods proxy to it, or, with no
    pod labels, a selector-less Service's endpoint, allowed by egress policies as a /32)."""
    database: str | None = None
    """Database name, where the kind has one."""
    user: str | None = None
    """User name, where the kind has one."""
    password: pulumi.Output[str] | None = None
    """Password (a secret Output), where the kind has one."""

    @property
    def host(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    @property
    def url(self) -> str:
        scheme = "http" if self.kind == "http" else self.kind
        return f"{scheme}://{self.host}:{self.port}"


GATEWAY_SUFFIX = "-gateway"
"""The inference gateway's name: the Service's name plus this."""


def inference_endpoint(rack: Rack) -> ServiceEndpoint | None:
    """The GPU host's model servers as pods see them: an in-cluster Service whose pods are the
    inference gateway (components/gpu/inference_gateway.py), ready only while the model server
    behind `external_ip` answers its health check."""
    gpu = rack.gpu_host
    if gpu is None:
        return None
    return ServiceEndpoint(
        name=gpu.service.name,
        kind="http",
        namespace=gpu.service.namespace,
        service=gpu.service.name,
        port=gpu.service.port,
        pod_labels={"app.kubernetes.io/name": f"{gpu.service.name}{GATEWAY_SUFFIX}"},
        external_ip=gpu.address,
    )
