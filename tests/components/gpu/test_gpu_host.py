"""GpuHost and its pure parts: the container spec and its two adapters, the SSH preflight script
(checked by shellcheck and run by a real /bin/sh against named doubles of nvidia-smi and docker),
the Service and inference gateway manifests (Kubernetes 1.31 OpenAPI), and the component under recording
mocks (provider, ordering, every container input the daemon will see)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.gpu import inference_gateway as gateway
from components.gpu.gpu_container_spec import (
    GPUS_LABEL,
    HOST_LABEL,
    IMAGE_LABEL,
    NETWORK,
    WORKLOAD_LABEL,
    DeviceRequest,
    container_spec,
    device_requests,
    duration_ns,
    engine_create_body,
    http_probe,
    pulumi_container_args,
)
from components.gpu.gpu_host import (
    ENDPOINTSLICE_MANAGER,
    GpuHost,
    GpuHostArgs,
    docker_host_url,
    preflight_script,
    render_endpoint_slice,
    render_inference_service,
    render_service,
    service_container,
)
from plan.engine import Recording, Registration
from rack.config import GpuHost as GpuHostConfig
from rack.config import Rack, parse_rack
from rack.endpoints import inference_endpoint
from tests.conftest import stack_raw

OLLAMA_IMAGE = stack_raw("homelab")["gpu-host"]["containers"][0]["image"]
"""The image the stack file pins for ollama (what every registration must carry)."""

ROOT = Path(__file__).resolve().parents[3]


def rack(**gpu_overrides: Any) -> Rack:
    raw = stack_raw("homelab")
    raw["gpu-host"].update(gpu_overrides)
    return parse_rack(raw)


def gpu_cfg(**overrides: Any) -> GpuHostConfig:
    cfg = rack(**overrides).gpu_host
    assert cfg is not None
    return cfg


# --- the pure container spec ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "driver", "expected"),
    [
        ("all", "nvidia", DeviceRequest(driver="nvidia", count=-1, capabilities=("gpu",))),
        ("2", "nvidia", DeviceRequest(driver="nvidia", count=2, capabilities=("gpu",))),
        (
            "device=0,GPU-3f2a",
            "nvidia",
            DeviceRequest(driver="nvidia", device_ids=("0", "GPU-3f2a"), capabilities=("gpu",)),
        ),
        ("all", "cdi", DeviceRequest(driver="cdi", device_ids=("nvidia.com/gpu=all",))),
        ("2", "cdi", DeviceRequest(driver="cdi", device_ids=("nvidia.com/gpu=0", "nvidia.com/gpu=1"))),
        ("device=1", "cdi", DeviceRequest(driver="cdi", device_ids=("nvidia.com/gpu=1",))),
    ],
)
def test_device_requests(gpus: str, driver: str, expected: DeviceRequest) -> None:
    assert device_requests(gpus, driver) == (expected,)


def test_unknown_gpu_driver_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown GPU driver"):
        device_requests("all", "amd")


@pytest.mark.parametrize(
    ("text", "ns"), [("500ms", 500_000_000), ("15s", 15 * 10**9), ("2m", 120 * 10**9), ("1h", 3600 * 10**9)]
)
def test_duration_ns(text: str, ns: int) -> None:
    assert duration_ns(text) == ns


def test_duration_rejects_compound_values() -> None:
    with pytest.raises(ValueError):
        duration_ns("1m30s")


def test_container_spec_of_the_homelab_ollama() -> None:
    gpu = gpu_cfg()
    spec = container_spec(gpu.containers[0], host=gpu.hostname, bind_ip="192.168.10.50", driver=gpu.gpu_driver)
    assert (spec.name, spec.image, spec.port, spec.host) == ("ollama", OLLAMA_IMAGE, 11434, "gpu-3090")
    mounts = [(m.host_path, m.container_path, m.read_only) for m in spec.mounts]
    assert mounts == [("/srv/ollama", "/root/.ollama", False)]
    assert spec.device_requests == (DeviceRequest(driver="nvidia", count=-1, capabilities=("gpu",)),)
    assert spec.restart == "unless-stopped"
    assert spec.network == NETWORK
    assert dict(spec.log_opts) == {"max-size": "50m", "max-file": "5"}
    assert spec.health_test == http_probe(11434, "/api/tags")
    assert dict(spec.labels) == {
        GPUS_LABEL: "all",
        HOST_LABEL: "gpu-3090",
        IMAGE_LABEL: OLLAMA_IMAGE,
        WORKLOAD_LABEL: "ollama",
    }


def test_default_probe_tries_curl_then_wget_then_bash_on_the_health_path() -> None:
    kind, script = http_probe(8000, "/v1/models")
    assert kind == "CMD-SHELL"
    assert script.index("curl") < script.index("wget") < script.index("/dev/tcp/127.0.0.1/8000")
    assert script.count("http://127.0.0.1:8000/v1/models") == 2
    assert "GET /v1/models HTTP/1.0" in script


def test_health_cmd_replaces_the_http_probe() -> None:
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["health-cmd"] = ["/bin/server", "probe"]
    gpu = parse_rack(raw).gpu_host
    assert gpu is not None
    spec = container_spec(gpu.containers[0], host="x", bind_ip="192.168.10.50")
    assert spec.health_test == ("CMD", "/bin/server", "probe")


def test_the_two_adapters_describe_the_same_container() -> None:
    """What the component asks pulumi-docker for is what the real-daemon test sends to dockerd."""
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["volumes"] = {"/srv/ollama": "/root/.ollama", "/srv/cache": "/cache"}
    gpu = parse_rack(raw).gpu_host
    assert gpu is not None
    spec = container_spec(gpu.containers[0], host=gpu.hostname, bind_ip=str(gpu.address))
    args, body = pulumi_container_args(spec), engine_create_body(spec)
    host = body["HostConfig"]

    (port,) = args["ports"]
    assert body["ExposedPorts"] == {f"{port['internal']}/{port['protocol']}": {}}
    assert host["PortBindings"] == {
        f"{port['internal']}/tcp": [{"HostIp": port["ip"], "HostPort": str(port["external"])}]
    }
    assert port["ip"] == "192.168.10.50"  # the host's configured address, never every interface
    assert host["Binds"] == [
        f"{v['host_path']}:{v['container_path']}:{'ro' if v['read_only'] else 'rw'}" for v in args["volumes"]
    ]
    assert host["RestartPolicy"]["Name"] == args["restart"] == "unless-stopped"
    assert host["LogConfig"] == {"Type": args["log_driver"], "Config": args["log_opts"]}
    hc = args["healthcheck"]
    assert body["Healthcheck"] == {
        "Test": hc["tests"],
        "Interval": duration_ns(hc["interval"]),
        "Timeout": duration_ns(hc["timeout"]),
        "Retries": hc["retries"],
        "StartPeriod": duration_ns(hc["start_period"]),
    }
    assert [(r["Driver"], r["Count"], r["Capabilities"]) for r in host["DeviceRequests"]] == [
        (r["driver"], r["count"], [r["capabilities"]]) for r in args["device_requests"]
    ]
    assert list(body["NetworkingConfig"]["EndpointsConfig"]) == [n["name"] for n in args["networks_advanced"]]
    assert body["Labels"] == {lab["label"]: lab["value"] for lab in args["labels"]}
    assert args["wait"] is True and args["must_run"] is True


def test_docker_host_url() -> None:
    assert docker_host_url(gpu_cfg()) == "ssh://ops@192.168.10.50"
    assert docker_host_url(gpu_cfg(**{"ssh-port": 2222, "ssh-user": "gpu"})) == "ssh://gpu@192.168.10.50:2222"


# --- the preflight script --------------------------------------------------------------------------


def test_preflight_script_passes_shellcheck(tmp_path: Path) -> None:
    for driver in ("nvidia", "cdi"):
        script = tmp_path / f"preflight-{driver}.sh"
        script.write_text(preflight_script(gpu_cfg(**{"gpu-driver": driver})))
        shellcheck = ROOT / ".venv" / "bin" / "shellcheck"
        result = subprocess.run(
            [str(shellcheck) if shellcheck.exists() else "shellcheck", "-s", "sh", str(script)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout


def test_preflight_quotes_host_paths() -> None:
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["volumes"] = {"/srv/it's models": "/models"}
    gpu = parse_rack(raw).gpu_host
    assert gpu is not None
    assert "if [ -d '/srv/it'\"'\"'s models' ]" in preflight_script(gpu)


def test_cdi_preflight_checks_cdi_devices_not_the_runtime() -> None:
    script = preflight_script(gpu_cfg(**{"gpu-driver": "cdi"}))
    assert "nvidia-ctk cdi list" in script and "nvidia-ctk cdi generate" in script
    assert "nvidia-container-runtime-hook" not in script


def _double(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n# test double of {name}\n{body}\n")
    path.chmod(0o755)


def run_preflight(
    tmp_path: Path,
    *,
    nvidia_smi: str | None,
    docker: str | None,
    make_paths: bool,
) -> subprocess.CompletedProcess[str]:
    """Run the real script with /bin/sh; nvidia-smi and docker are doubles (this machine has no
    GPU), everything else is real. Host paths point into tmp_path."""
    models = tmp_path / "srv" / "ollama"
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["volumes"] = {str(models): "/root/.ollama"}
    gpu = parse_rack(raw).gpu_host
    assert gpu is not None
    if make_paths:
        models.mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("grep", "hostname"):
        real = shutil.which(tool)
        assert real is not None
        (bindir / tool).symlink_to(real)
    if nvidia_smi is not None:
        _double(bindir, "nvidia-smi", nvidia_smi)
    if docker is not None:
        _double(bindir, "docker", docker)
    script = tmp_path / "preflight.sh"
    script.write_text(preflight_script(gpu))
    return subprocess.run(
        ["/bin/sh", str(script)], capture_output=True, text=True, env={"PATH": str(bindir)}, timeout=30
    )


SMI_OK = "echo 'GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-00000000-0000-0000-0000-000000000000)'"
DOCKER_NVIDIA = (
    'case "$1" in version) echo 27.3.1;; '
    """info) echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}';; esac"""
)
DOCKER_PLAIN = """case "$1" in version) echo 27.3.1;; info) echo '{"runc":{"path":"runc"}}';; esac"""


def test_preflight_passes_on_a_ready_host(tmp_path: Path) -> None:
    result = run_preflight(tmp_path, nvidia_smi=SMI_OK, docker=DOCKER_NVIDIA, make_paths=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: NVIDIA driver answers: 1 GPU(s)" in result.stdout
    assert "ok: Docker has the NVIDIA runtime" in result.stdout
    assert result.stdout.rstrip().endswith("preflight passed")


def test_preflight_names_what_to_install_for_every_failed_check(tmp_path: Path) -> None:
    result = run_preflight(tmp_path, nvidia_smi=None, docker=DOCKER_PLAIN, make_paths=False)
    assert result.returncode == 1
    out = result.stdout
    assert "nvidia-smi not found: install the NVIDIA driver" in out
    assert "Docker has no NVIDIA runtime: install nvidia-container-toolkit" in out
    assert "nvidia-ctk runtime configure --runtime=docker" in out
    assert f"volume host path {tmp_path}/srv/ollama does not exist: create it (sudo mkdir -p" in out
    assert "3 preflight check(s) failed" in out


def test_preflight_reports_a_driver_that_does_not_answer(tmp_path: Path) -> None:
    broken = "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9"
    result = run_preflight(tmp_path, nvidia_smi=broken, docker=DOCKER_NVIDIA, make_paths=True)
    assert result.returncode == 1
    assert "nvidia-smi does not answer (NVIDIA-SMI has failed" in result.stdout
    assert "1 preflight check(s) failed" in result.stdout


def test_preflight_reports_docker_not_answering(tmp_path: Path) -> None:
    result = run_preflight(tmp_path, nvidia_smi=SMI_OK, docker="echo 'permission denied' >&2; exit 1", make_paths=True)
    assert result.returncode == 1
    assert "docker does not answer for user ops: install Docker (apt install docker.io)" in result.stdout
    assert '"sudo usermod -aG docker ops"' in result.stdout


# --- the in-cluster Service, its gateway, and the exporter's selector-less Service -----------------


def test_the_selector_less_renderers_validate_and_point_at_the_gpu_host() -> None:
    """Kept for scrape targets on the GPU host (the metrics exporter)."""
    endpoint = inference_endpoint(rack())
    assert endpoint is not None
    svc = render_service(endpoint)
    eps = render_endpoint_slice(endpoint, hostname="gpu-3090")
    for manifest in (svc, eps):
        kubernetes_validate.validate(copy.deepcopy(manifest), "1.31", strict=True)
    assert "selector" not in svc["spec"]
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == ENDPOINTSLICE_MANAGER
    assert eps["endpoints"][0]["addresses"] == ["192.168.10.50"]


def gateway_manifests(r: Rack) -> dict[str, dict[str, Any]]:
    endpoint = inference_endpoint(r)
    assert endpoint is not None and r.gpu_host is not None
    container = service_container(r.gpu_host)
    return {
        "service": render_inference_service(endpoint),
        "configmap": gateway.render_configmap(endpoint, container),
        "deployment": gateway.render_deployment(endpoint, "sum"),
        "pdb": gateway.render_pdb(endpoint),
        "netpol": gateway.render_network_policy(endpoint, container),
    }


def test_the_inference_service_selects_gateway_pods_ready_only_with_a_healthy_model_server() -> None:
    m = gateway_manifests(rack())
    for manifest in m.values():
        kubernetes_validate.validate(copy.deepcopy(manifest), "1.31", strict=True)
    svc, dep = m["service"], m["deployment"]
    assert (svc["metadata"]["name"], svc["metadata"]["namespace"]) == ("inference", "ai")
    pod = dep["spec"]["template"]
    selector = {"app.kubernetes.io/name": "inference-gateway"}
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == selector
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert svc["spec"]["ports"][0] == {"name": "http", "port": 11434, "protocol": "TCP", "targetPort": "inference"}
    assert ports == {"inference": 11434, "health": gateway.HEALTH_PORT}
    # readiness = HAProxy's monitor of the model server (a 503 while no backend is up)
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "health"}
    cfg = m["configmap"]["data"]["haproxy.cfg"]
    assert "server ollama 192.168.10.50:11434 check" in cfg
    assert "http-check send meth GET uri /api/tags" in cfg  # the container's health-path
    assert "monitor fail if { nbsrv(model-server) lt 1 }" in cfg and "monitor-uri /ready" in cfg
    assert dep["spec"]["replicas"] == 2 and m["pdb"]["spec"]["minAvailable"] == 1
    egress = m["netpol"]["spec"]["egress"]
    gpu_host = {"ipBlock": {"cidr": "192.168.10.50/32"}}
    assert egress == [{"to": [gpu_host], "ports": [{"protocol": "TCP", "port": 11434}]}]


def test_a_container_with_health_cmd_is_checked_by_tcp_connect() -> None:
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["health-cmd"] = ["/bin/server", "probe"]
    cfg = gateway_manifests(parse_rack(raw))["configmap"]["data"]["haproxy.cfg"]
    assert "httpchk" not in cfg and "server ollama 192.168.10.50:11434 check" in cfg


# --- the component under recording mocks -----------------------------------------------------------


def gpu_program(gpu: GpuHostConfig, r: Rack, *, key: bool = False) -> Callable[[], None]:
    def program() -> None:
        endpoint = inference_endpoint(r)
        assert endpoint is not None
        provider = k8s.Provider("k8s", kubeconfig="{}", cluster_identifier="test")
        GpuHost(
            gpu.hostname,
            GpuHostArgs(
                host=gpu,
                endpoint=endpoint,
                ssh_private_key=pulumi.Output.secret("-----BEGIN OPENSSH PRIVATE KEY-----") if key else None,
            ),
            pulumi.ResourceOptions(providers=[provider]),
        )

    return program


@pytest.fixture
def homelab_gpu(record: Callable[..., Recording]) -> Recording:
    r = rack()
    assert r.gpu_host is not None
    return record(gpu_program(r.gpu_host, r))


def one(rec: Recording, type_: str) -> Registration:
    (reg,) = rec.of_type(type_)
    return reg


def test_docker_provider_dials_the_gpu_host_over_ssh_without_a_daemon_check(homelab_gpu: Recording) -> None:
    provider = one(homelab_gpu, "pulumi:providers:docker")
    assert provider.inputs["host"] == "ssh://ops@192.168.10.50"
    assert provider.inputs["disableDockerDaemonCheck"] == "true"
    assert "BatchMode=yes" in provider.inputs["sshOpts"]
    docker_regs = [r for r in homelab_gpu if r.type.startswith("docker:")]
    assert {r.type for r in docker_regs} == {
        "docker:index/network:Network",
        "docker:index/remoteImage:RemoteImage",
        "docker:index/container:Container",
    }
    assert all(r.provider.startswith(provider.urn + "::") for r in docker_regs)


def test_preflight_runs_over_ssh_before_every_docker_resource(homelab_gpu: Recording) -> None:
    preflight = one(homelab_gpu, "command:remote:Command")
    r = rack()
    assert r.gpu_host is not None
    assert preflight.inputs["create"] == preflight_script(r.gpu_host)
    assert "delete" not in preflight.inputs
    conn = preflight.inputs["connection"]
    assert (conn["host"], conn["user"], conn["port"]) == ("192.168.10.50", "ops", 22)
    for reg in homelab_gpu:
        if reg.type.startswith("docker:"):
            assert preflight.urn in reg.depends_on, reg.name


def test_container_inputs(homelab_gpu: Recording) -> None:
    container = one(homelab_gpu, "docker:index/container:Container")
    image = one(homelab_gpu, "docker:index/remoteImage:RemoteImage")
    network = one(homelab_gpu, "docker:index/network:Network")
    inputs = container.inputs
    assert image.inputs["name"] == OLLAMA_IMAGE
    assert {image.urn, network.urn} <= set(container.depends_on)
    assert inputs["name"] == "ollama"
    assert inputs["deviceRequests"] == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]
    assert inputs["ports"] == [{"internal": 11434, "external": 11434, "ip": "192.168.10.50", "protocol": "tcp"}]
    assert inputs["volumes"] == [{"hostPath": "/srv/ollama", "containerPath": "/root/.ollama", "readOnly": False}]
    assert inputs["restart"] == "unless-stopped"
    assert (inputs["logDriver"], inputs["logOpts"]) == ("json-file", {"max-size": "50m", "max-file": "5"})
    assert inputs["networksAdvanced"] == [{"name": network.inputs["name"]}] == [{"name": NETWORK}]
    assert network.inputs["driver"] == "bridge"
    hc = inputs["healthcheck"]
    assert hc["tests"] == list(http_probe(11434, "/api/tags"))
    assert (hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"]) == ("15s", "5s", 5, "120s")
    assert inputs["wait"] is True and inputs["mustRun"] is True
    labels = {lab["label"]: lab["value"] for lab in inputs["labels"]}
    assert (labels[HOST_LABEL], labels[IMAGE_LABEL], labels[GPUS_LABEL]) == ("gpu-3090", OLLAMA_IMAGE, "all")


def test_service_and_gateway_are_registered_with_the_kubernetes_provider(homelab_gpu: Recording) -> None:
    svc = one(homelab_gpu, "kubernetes:core/v1:Service")
    assert homelab_gpu.of_type("kubernetes:discovery.k8s.io/v1:EndpointSlice") == []
    k8s_regs = [r for r in homelab_gpu if r.type.startswith("kubernetes:") and r.custom]
    assert {r.type for r in k8s_regs} == {
        "kubernetes:core/v1:Service",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:policy/v1:PodDisruptionBudget",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    }
    for reg in k8s_regs:
        assert reg.provider.split("::")[-2] == "k8s"
    assert svc.inputs["spec"]["selector"] == {"app.kubernetes.io/name": "inference-gateway"}
    cm = one(homelab_gpu, "kubernetes:core/v1:ConfigMap")
    dep = one(homelab_gpu, "kubernetes:apps/v1:Deployment")
    checksum = dep.inputs["spec"]["template"]["metadata"]["annotations"]["rack.homelab.io/config-checksum"]
    assert checksum == hashlib.sha256(json.dumps(cm.inputs["data"], sort_keys=True).encode()).hexdigest()


def test_every_child_is_parented_to_the_component(homelab_gpu: Recording) -> None:
    component = one(homelab_gpu, "homelab:gpu:GpuHost")
    children = [r for r in homelab_gpu if r is not component and r.name != "k8s"]
    assert children and all(r.parent == component.urn for r in children)


def test_ssh_key_stays_secret(record: Callable[..., Recording]) -> None:
    r = rack()
    assert r.gpu_host is not None
    rec = record(gpu_program(r.gpu_host, r, key=True))
    preflight = one(rec, "command:remote:Command")
    # RemoteCommand marks the whole connection secret, as pulumi-command's typed class does
    assert preflight.secret_paths == ["connection"]
    assert "BEGIN OPENSSH" not in repr(preflight.redacted)


def test_cdi_driver_and_ssh_port_reach_the_registrations(record: Callable[..., Recording]) -> None:
    r = rack(**{"gpu-driver": "cdi", "ssh-port": 2222})
    assert r.gpu_host is not None
    rec = record(gpu_program(r.gpu_host, r))
    assert one(rec, "pulumi:providers:docker").inputs["host"] == "ssh://ops@192.168.10.50:2222"
    assert one(rec, "command:remote:Command").inputs["connection"]["port"] == 2222
    assert one(rec, "docker:index/container:Container").inputs["deviceRequests"] == [
        {"driver": "cdi", "deviceIds": ["nvidia.com/gpu=all"]}
    ]
