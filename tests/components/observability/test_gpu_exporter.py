"""GpuExporter: the DCGM exporter is a GPU-host container built by the model servers' own spec
(GPUs, port, healthcheck, restart, log rotation), created through the GPU host's Docker provider
after its preflight and on its network, and scraped through a selector-less Service plus
EndpointSlice (the inference pattern), both valid against the 1.31 schema."""

from __future__ import annotations

import kubernetes_validate

from components.gpu.gpu_container_spec import pulumi_container_args
from components.gpu.gpu_host import GpuHost, GpuHostArgs, render_endpoint_slice, render_service
from components.observability import monitoring_config as mc
from components.observability.gpu_exporter import GpuExporter, GpuExporterArgs, exporter_spec, metrics_endpoint
from plan.engine import Recording, run_program
from rack.endpoints import inference_endpoint
from rack.loader import Loaded


def test_exporter_spec_is_a_gpu_container_like_the_model_servers(homelab: Loaded) -> None:
    gpu = homelab.rack.gpu_host
    assert gpu is not None
    spec = exporter_spec(gpu)
    assert spec.image == mc.IMAGES["dcgm-exporter"] and spec.port == 9400 and spec.gpus == "all"
    args = pulumi_container_args(spec)
    assert args["ports"] == [{"internal": 9400, "external": 9400, "ip": str(gpu.address), "protocol": "tcp"}]
    assert args["device_requests"] == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]
    assert "http://127.0.0.1:9400/metrics" in args["healthcheck"]["tests"][1]
    assert args["restart"] == "unless-stopped" and args["log_opts"] == {"max-size": "50m", "max-file": "5"}


def test_service_and_slice_point_at_the_gpu_host(homelab: Loaded) -> None:
    gpu = homelab.rack.gpu_host
    assert gpu is not None
    ep = metrics_endpoint(gpu)
    svc, eps = render_service(ep), render_endpoint_slice(ep, hostname=gpu.hostname)
    for m in (svc, eps):
        kubernetes_validate.validate(m, "1.31", strict=True)
    assert "selector" not in svc["spec"] and svc["metadata"] == {
        **svc["metadata"],
        "name": "gpu-metrics",
        "namespace": "monitoring",
    }
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "gpu-metrics"
    assert eps["endpoints"][0]["addresses"] == ["192.168.10.50"] and eps["ports"][0]["port"] == 9400


def build(homelab: Loaded) -> Recording:
    rack = homelab.rack
    assert rack.gpu_host is not None

    def program() -> None:
        endpoint = inference_endpoint(rack)
        assert endpoint is not None
        host = GpuHost(rack.gpu_host.hostname, GpuHostArgs(host=rack.gpu_host, endpoint=endpoint))
        GpuExporter("gpu-3090-metrics", GpuExporterArgs(host=rack.gpu_host, gpu_host=host))

    return run_program(program)


def test_container_goes_through_the_gpu_host_s_provider_after_its_preflight(homelab: Loaded) -> None:
    rec = build(homelab)
    container = rec.by_name("gpu-3090-metrics-container")
    provider = rec.by_name("gpu-3090-docker")
    assert container.provider.startswith(provider.urn)
    assert rec.by_name("gpu-3090-preflight").urn in container.depends_on
    assert rec.by_name("gpu-3090-network").urn in container.depends_on
    assert rec.by_name("gpu-3090-metrics-image").urn in container.depends_on
    assert container.inputs["name"] == "dcgm-exporter"
    image = rec.by_name("gpu-3090-metrics-image")
    assert image.inputs["name"] == mc.IMAGES["dcgm-exporter"] and image.provider.startswith(provider.urn)
    slice_ = rec.by_name("gpu-3090-metrics-endpoints")
    assert container.urn in slice_.depends_on
