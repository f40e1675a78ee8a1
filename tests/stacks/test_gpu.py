"""The GPU layer: the whole program under recording mocks builds the ollama container on gpu-3090
and the in-cluster `inference` Service whose endpoint is the GPU host's address; skipping the layer
or having no gpu-host registers nothing; the Service's namespace is created only when no other
layer owns it; the plan's `external` rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.gpu.gpu_container_spec import HOST_LABEL, IMAGE_LABEL
from components.system import new_rack_ca
from plan.engine import Recording
from plan.result import external_containers
from rack.loader import Loaded
from stacks.composition import build
from stacks.gpu import GpuLayer, build_gpu
from stacks.metal import build_metal
from stacks.system import build_system
from tests.conftest import loaded_from

DOCKER_PREFIXES = ("docker:", "pulumi:providers:docker", "homelab:gpu:")


def gpu_layer_only(loaded: Loaded, out: list[GpuLayer]) -> Callable[[], None]:
    def program() -> None:
        metal = build_metal(loaded)
        system = build_system(loaded, metal, new_rack_ca())
        out.append(build_gpu(loaded, metal, system))

    return program


def labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {lab["label"]: lab["value"] for lab in inputs["labels"]}


def test_homelab_plan_has_ollama_on_gpu_3090_and_the_inference_service(
    homelab: Loaded, record: Callable[..., Recording]
) -> None:
    rec = record(lambda: build(homelab))
    # ollama, plus the DCGM exporter the monitoring layer adds on the same host
    containers = {c.inputs["name"]: c for c in rec.of_type("docker:index/container:Container")}
    assert set(containers) == {"ollama", "dcgm-exporter"}
    container = containers["ollama"]
    assert labels(container.inputs)[HOST_LABEL] == "gpu-3090"
    assert labels(container.inputs)[IMAGE_LABEL] == homelab.rack.gpu_host.containers[0].image
    (provider,) = rec.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == "ssh://ops@192.168.10.50"
    assert container.provider.startswith(provider.urn)

    services = [r for r in rec.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "inference"]
    (svc,) = services
    assert svc.inputs["metadata"]["namespace"] == "ai"
    # the Service selects the inference gateway, whose pods proxy to the GPU host while it is healthy
    assert svc.inputs["spec"]["selector"] == {"app.kubernetes.io/name": "inference-gateway"}
    (gw,) = [r for r in rec.of_type("kubernetes:apps/v1:Deployment") if r.inputs["metadata"]["namespace"] == "ai"]
    assert gw.inputs["metadata"]["name"] == "inference-gateway"
    configmaps = rec.of_type("kubernetes:core/v1:ConfigMap")
    (cm,) = [r for r in configmaps if r.inputs["metadata"]["name"] == "inference-gateway"]
    assert "server ollama 192.168.10.50:11434 check" in cm.inputs["data"]["haproxy.cfg"]
    (ns,) = [r for r in rec.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == "ai"]
    assert ns.urn in svc.depends_on and ns.urn in gw.depends_on


def test_layer_reports_its_parts(homelab: Loaded, record: Callable[..., Recording]) -> None:
    out: list[GpuLayer] = []
    record(gpu_layer_only(homelab, out))
    (layer,) = out
    assert layer.enabled and layer.host is not None and layer.namespace is not None
    assert set(layer.host.containers) == {"ollama"}


def test_skip_layers_gpu_creates_nothing(homelab_raw: dict[str, Any], record: Callable[..., Recording]) -> None:
    loaded = loaded_from(homelab_raw, skip=frozenset({"gpu"}))
    out: list[GpuLayer] = []
    rec = record(gpu_layer_only(loaded, out))
    assert out == [GpuLayer(enabled=False)]
    assert not [r for r in rec if r.type.startswith(DOCKER_PREFIXES) or r.name.startswith("gpu-3090")]
    assert not rec.of_type("kubernetes:discovery.k8s.io/v1:EndpointSlice")
    assert not [r for r in rec.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == "ai"]


def test_lab_stack_leaves_the_gpu_layer_out(lab: Loaded, record: Callable[..., Recording]) -> None:
    assert "gpu" in lab.skip_layers
    rec = record(lambda: build(lab))
    assert not [r for r in rec if r.type.startswith(DOCKER_PREFIXES)]


def test_rack_without_gpu_host_is_disabled(homelab_raw: dict[str, Any], record: Callable[..., Recording]) -> None:
    del homelab_raw["gpu-host"]
    for app in homelab_raw["apps"]:
        app["uses"] = [u for u in app.get("uses", []) if u != "inference"]
    out: list[GpuLayer] = []
    rec = record(gpu_layer_only(loaded_from(homelab_raw), out))
    assert out == [GpuLayer(enabled=False)]
    assert not [r for r in rec if r.type.startswith(DOCKER_PREFIXES)]
    assert external_containers(rec, loaded_from(homelab_raw)) == []


def test_service_in_a_namespace_the_system_layer_owns_reuses_it(
    homelab_raw: dict[str, Any], record: Callable[..., Recording]
) -> None:
    homelab_raw["gpu-host"]["service"]["namespace"] = "apps"
    out: list[GpuLayer] = []
    rec = record(gpu_layer_only(loaded_from(homelab_raw), out))
    assert out[0].namespace is None
    namespaces = [r for r in rec.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == "apps"]
    (apps_ns,) = namespaces
    # the GPU layer's Service (the system layer also registers kube-system/coredns-lan)
    services = rec.of_type("kubernetes:core/v1:Service")
    (svc,) = [r for r in services if r.inputs["metadata"]["namespace"] != "kube-system"]
    assert svc.inputs["metadata"]["namespace"] == "apps"
    assert apps_ns.urn in svc.depends_on


def test_external_containers_for_the_plan(homelab: Loaded, record: Callable[..., Recording]) -> None:
    """The plan's `external` rows come from the recorded Docker registrations, not from config."""
    rows = {row["workload"]: row for row in external_containers(record(lambda: build(homelab)), homelab)}
    assert homelab.rack.gpu_host is not None
    stack_image = homelab.rack.gpu_host.containers[0].image
    assert rows["ollama"] == {
        "workload": "ollama", "host": "gpu-3090", "image": stack_image, "gpus": "all", "ports": [11434]
    }
