"""GpuExporter: NVIDIA's DCGM exporter on the GPU host, scraped through an in-cluster Service.

Creates, under `homelab:observability:GpuExporter`:
- on the GPU host, through the `GpuHost` component's own Docker provider and after its SSH
  preflight and network: a pinned `RemoteImage` and a `Container` `dcgm-exporter`, built by the
  same pure spec as the model servers (`gpu_container_spec.container_spec`: GPUs by device
  request, published port 9400, healthcheck on /metrics, restart `unless-stopped`, log rotation,
  the model servers' network). It gets no extra capability: GPU utilisation, memory, power and
  temperature (the `DCGM_FI_DEV_*` fields) need none; only the profiling (`DCGM_FI_PROF_*`)
  fields would need SYS_ADMIN;
- in the cluster, the inference pattern of `GpuHost`: a selector-less `Service` `gpu-metrics`
  in `monitoring` plus an `EndpointSlice` pointing at the host's address and port 9400
  (`gpu_host.render_service` / `render_endpoint_slice`, the same renderers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.core.kubernetes_object import KubernetesObject
from components.gpu.gpu_container_spec import ContainerSpec, container_spec, pulumi_container_args
from components.gpu.gpu_host import GpuHost, render_endpoint_slice, render_service
from components.observability import monitoring_config as mc
from rack.config import GpuContainer
from rack.config import GpuHost as GpuHostConfig
from rack.endpoints import ServiceEndpoint


def exporter_container() -> GpuContainer:
    """The exporter as a GPU-host container entry (validated like a user's)."""
    return GpuContainer(
        name=mc.GPU_EXPORTER_NAME,
        image=mc.IMAGES["dcgm-exporter"],
        gpus="all",
        port=mc.GPU_EXPORTER_PORT,
        health_path="/metrics",
    )


def exporter_spec(gpu: GpuHostConfig) -> ContainerSpec:
    """The exporter's container spec on this GPU host (pure)."""
    return container_spec(exporter_container(), host=gpu.hostname, bind_ip=str(gpu.address), driver=gpu.gpu_driver)


def metrics_endpoint(gpu: GpuHostConfig, *, namespace: str = mc.NAMESPACE) -> ServiceEndpoint:
    """The exporter as pods see it: `gpu-metrics.monitoring.svc:9400`, backed by the host's address."""
    return ServiceEndpoint(
        name=mc.GPU_METRICS_SERVICE,
        kind="http",
        namespace=namespace,
        service=mc.GPU_METRICS_SERVICE,
        port=mc.GPU_EXPORTER_PORT,
        external_ip=gpu.address,
    )


@dataclass(frozen=True, kw_only=True)
class GpuExporterArgs:
    host: GpuHostConfig
    """The validated `gpu-host` section."""
    gpu_host: GpuHost
    """The GPU layer's component: its Docker provider, preflight and network are reused."""
    namespace: str = mc.NAMESPACE
    """Namespace of the Service and EndpointSlice."""
    k8s_depends_on: Sequence[pulumi.Resource] = ()
    """What the Kubernetes objects wait for (the Namespace)."""


class GpuExporter(pulumi.ComponentResource):
    image: docker.RemoteImage
    """The pinned exporter image on the GPU host."""
    container: docker.Container
    """The exporter."""
    service: KubernetesObject
    """The selector-less Service the store scrapes."""
    endpoint_slice: KubernetesObject
    """The host's address and port 9400 behind it."""

    def __init__(self, name: str, args: GpuExporterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:GpuExporter", name, None, opts)
        gpu, host = args.host, args.gpu_host
        spec = exporter_spec(gpu)
        docker_opts = pulumi.ResourceOptions(parent=self, provider=host.provider, depends_on=[host.preflight])
        self.image = docker.RemoteImage(f"{name}-image", name=spec.image, keep_locally=True, opts=docker_opts)
        kwargs = pulumi_container_args(spec)
        kwargs["networks_advanced"] = [{"name": host.network.name}]
        self.container = docker.Container(
            f"{name}-container",
            image=self.image.image_id,
            **kwargs,
            opts=pulumi.ResourceOptions(
                parent=self, provider=host.provider, depends_on=[host.preflight, host.network, self.image]
            ),
        )
        endpoint = metrics_endpoint(gpu, namespace=args.namespace)
        k8s_opts = pulumi.ResourceOptions(parent=self, depends_on=list(args.k8s_depends_on))
        svc = render_service(endpoint)
        self.service = KubernetesObject(f"{name}-service", svc, k8s_opts)
        eps = render_endpoint_slice(endpoint, hostname=gpu.hostname)
        self.endpoint_slice = KubernetesObject(
            f"{name}-endpoints",
            eps,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.k8s_depends_on, self.service, self.container]),
        )
        self.register_outputs(
            {
                "image": self.image,
                "container": self.container,
                "service": self.service,
                "endpoint_slice": self.endpoint_slice,
            }
        )
