"""GpuHost: model servers as Docker containers on the rack's GPU machine, reachable from pods.

Creates, under the component `homelab:gpu:GpuHost`:
- `pulumi:providers:docker`: its own Docker provider at `ssh://<ssh-user>@<address>[:port]`. The
  provider shells out to the system `ssh` (`docker system dial-stdio`): the machine running Pulumi
  needs an OpenSSH client and the key in an agent or `~/.ssh/config` (docs/gpu-host.md).
  `disable_docker_daemon_check` keeps `pulumi preview` from dialling the GPU box at configure time;
- `command:remote:Command` preflight over SSH, before anything touches Docker: the NVIDIA driver
  answers (`nvidia-smi -L`), Docker answers and has the NVIDIA runtime (or CDI GPU devices), and
  every volume host path exists; a failed check names what to install or create;
- `docker:index/network:Network`: the dedicated bridge network of the model servers;
- per container: a pinned `docker:index/remoteImage:RemoteImage` and a `docker:index/container:
  Container` built from `gpu_container_spec.container_spec` (GPUs by device request, published
  port, bind mounts, healthcheck on `health-path`, restart `unless-stopped`, json-file log
  rotation), which `pulumi up` waits on until Docker reports it healthy;
- the inference gateway (`inference_gateway`: ConfigMap, Deployment, PodDisruptionBudget,
  NetworkPolicy `<service>-gateway`) and the `kubernetes:core/v1:Service` selecting it, so pods
  use `http://<service>.<namespace>.svc:<port>` and reach the model server only while it passes
  its health check (name, namespace, port, pod labels and address come from
  `rack.endpoints.inference_endpoint`).

Containers publish their port on the GPU host's configured `address` only, never 0.0.0.0: the
host's other interfaces (docker0, a VPN, a second NIC) do not expose the unauthenticated model
server (docs/gpu-host.md has the firewall rule that limits the LAN side to the Pis).

Manifests and the preflight script are built by pure functions, tested without a cluster or a
GPU. Docker resources get the explicit Docker provider; the Kubernetes objects take the
Kubernetes provider passed in `opts.providers` (as every component in the rack does).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX
from components.core.remote_command import RemoteCommand, connection
from components.gpu import inference_gateway as gateway
from components.gpu.gpu_container_spec import (
    NETWORK,
    ContainerSpec,
    container_spec,
    engine_network_body,
    pulumi_container_args,
)
from rack.config import GpuContainer
from rack.config import GpuHost as GpuHostConfig
from rack.endpoints import ServiceEndpoint

ENDPOINTSLICE_MANAGER = "homelab-gpu-host"
"""`endpointslice.kubernetes.io/managed-by`: not the EndpointSlice controller, which leaves it alone."""

SSH_OPTS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=30")
"""Extra options for the provider's system `ssh`: never prompt (CI has no TTY), fail fast."""


def docker_host_url(gpu: GpuHostConfig) -> str:
    """`ssh://user@address`, with `:port` only when it is not 22."""
    port = "" if gpu.ssh_port == 22 else f":{gpu.ssh_port}"
    return f"ssh://{gpu.ssh_user}@{gpu.address}{port}"


def container_specs(gpu: GpuHostConfig) -> list[ContainerSpec]:
    """The spec of every configured model server (pure), published on the host's address."""
    return [
        container_spec(c, host=gpu.hostname, driver=gpu.gpu_driver, bind_ip=str(gpu.address)) for c in gpu.containers
    ]


def preflight_script(gpu: GpuHostConfig) -> str:
    """A read-only POSIX sh script checking what the containers need; exits 1 listing every
    failed check with what to install or create (pure)."""
    user = gpu.ssh_user
    paths = sorted({host for c in gpu.containers for host in c.volumes})
    lines = [
        "#!/bin/sh",
        "# homelab GPU host preflight: read-only checks before any container is created.",
        "set -u",
        "problems=0",
        "fail() { problems=$((problems + 1)); printf 'PREFLIGHT FAILED: %s\\n' \"$*\"; }",
        "ok() { printf 'ok: %s\\n' \"$*\"; }",
        "",
        "# 1. the NVIDIA driver answers",
        "if ! command -v nvidia-smi >/dev/null 2>&1; then",
        "  fail 'nvidia-smi not found: install the NVIDIA driver (Debian: apt install nvidia-driver"
        " firmware-misc-nonfree; Ubuntu: ubuntu-drivers install) and reboot'",
        "elif ! gpus=$(nvidia-smi -L 2>&1) || ! printf '%s\\n' \"$gpus\" | grep -q '^GPU '; then",
        '  fail "nvidia-smi does not answer ($gpus): the driver is not loaded - reboot after installing it,'
        " check 'dkms status' and Secure Boot\"",
        "else",
        "  ok \"NVIDIA driver answers: $(printf '%s\\n' \"$gpus\" | grep -c '^GPU ') GPU(s)\"",
        "fi",
        "",
        "# 2. Docker answers for this user and can hand out GPUs",
        "if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then",
        f"  fail 'docker does not answer for user {user}: install Docker (apt install docker.io) and run"
        f' "sudo usermod -aG docker {user}", then log in again\'',
    ]
    if gpu.gpu_driver == "nvidia":
        lines += [
            "elif docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '\"nvidia\"' \\",
            "    || command -v nvidia-container-runtime-hook >/dev/null 2>&1; then",
            "  ok 'Docker has the NVIDIA runtime'",
            "else",
            "  fail 'Docker has no NVIDIA runtime: install nvidia-container-toolkit, then run"
            ' "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"\'',
            "fi",
        ]
    else:
        lines += [
            "elif command -v nvidia-ctk >/dev/null 2>&1 \\",
            "    && nvidia-ctk cdi list 2>/dev/null | grep -q '^nvidia.com/gpu='; then",
            "  ok 'CDI GPU devices are defined'",
            "else",
            "  fail 'no CDI GPU devices: install nvidia-container-toolkit, run \"sudo nvidia-ctk cdi generate"
            " --output=/etc/cdi/nvidia.yaml\" and use Docker 25+ with the cdi feature enabled'",
            "fi",
        ]
    lines += ["", "# 3. the volume host paths exist (never created here: they hold the models)"]
    for path in paths:
        q = shlex.quote(path)
        missing = f"volume host path {path} does not exist: create it (sudo mkdir -p {q} && sudo chown {user} {q})"
        found = f"{path} exists"
        lines.append(f"if [ -d {q} ]; then ok {shlex.quote(found)}; else fail {shlex.quote(missing)}; fi")
    lines += [
        "",
        'if [ "$problems" -gt 0 ]; then',
        '  printf \'%s preflight check(s) failed on %s\\n\' "$problems" "$(hostname)"',
        "  exit 1",
        "fi",
        "echo 'preflight passed'",
        "",
    ]
    return "\n".join(lines)


def render_inference_service(endpoint: ServiceEndpoint) -> dict[str, Any]:
    """The Service pods address (pure): it selects the inference gateway's pods, which are ready
    only while the model server behind them is healthy."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": endpoint.service,
            "namespace": endpoint.namespace,
            "labels": {f"{LABEL_PREFIX}/external": "gpu-host"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(endpoint.pod_labels or {}),
            "ports": [{"name": "http", "port": endpoint.port, "protocol": "TCP", "targetPort": "inference"}],
        },
    }


def render_service(endpoint: ServiceEndpoint) -> dict[str, Any]:
    """A selector-less Service (pure): its endpoints come from `render_endpoint_slice`. For scrape
    targets on the GPU host (the metrics exporter), not for traffic that needs health."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": endpoint.service,
            "namespace": endpoint.namespace,
            "labels": {f"{LABEL_PREFIX}/external": "gpu-host"},
        },
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": endpoint.port, "protocol": "TCP", "targetPort": endpoint.port}],
        },
    }


def render_endpoint_slice(endpoint: ServiceEndpoint, *, hostname: str) -> dict[str, Any]:
    """The EndpointSlice behind the Service (pure): the GPU host's address and published port."""
    assert endpoint.external_ip is not None, "the GPU endpoint always has the host's address"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{endpoint.service}-{hostname}",
            "namespace": endpoint.namespace,
            "labels": {
                "kubernetes.io/service-name": endpoint.service,
                "endpointslice.kubernetes.io/managed-by": ENDPOINTSLICE_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [str(endpoint.external_ip)], "conditions": {"ready": True}, "hostname": hostname}],
        "ports": [{"name": "http", "port": endpoint.port, "protocol": "TCP"}],
    }


def service_container(gpu: GpuHostConfig) -> GpuContainer:
    """The container the Service's port is published by (validated to exist)."""
    container = next((c for c in gpu.containers if c.port == gpu.service.port), None)
    assert container is not None, "validated by rack_problems"
    return container


@dataclass(frozen=True, kw_only=True)
class GpuHostArgs:
    host: GpuHostConfig
    """The validated `gpu-host` config."""
    endpoint: ServiceEndpoint
    """How pods reach it (`rack.endpoints.inference_endpoint`): the single source of the
    Service's name, namespace, port and address."""
    ssh_private_key: pulumi.Input[str] | None = None
    """Key for the preflight over SSH (secret); None: the running ssh-agent. The Docker provider
    has no key input: it always uses the system ssh (agent or ~/.ssh/config)."""
    k8s_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What the in-cluster Service and EndpointSlice wait for (their Namespace)."""


class GpuHost(pulumi.ComponentResource):
    provider: docker.Provider
    """The Docker provider of the GPU host (ssh://)."""
    preflight: RemoteCommand
    """The SSH preflight every Docker resource waits for."""
    network: docker.Network
    """The dedicated Docker network."""
    images: dict[str, docker.RemoteImage]
    """Pinned image per container name."""
    containers: dict[str, docker.Container]
    """Model server per container name."""
    service: KubernetesObject
    """The in-cluster Service (selects the gateway)."""
    gateway: dict[str, KubernetesObject]
    """The inference gateway's ConfigMap, Deployment, PodDisruptionBudget and NetworkPolicy, by kind."""

    def __init__(self, name: str, args: GpuHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:gpu:GpuHost", name, None, opts)
        gpu = args.host
        specs = container_specs(gpu)

        self.provider = docker.Provider(
            f"{name}-docker",
            host=docker_host_url(gpu),
            ssh_opts=list(SSH_OPTS),
            # The provider would otherwise ping the daemon (over ssh) when it is configured, which
            # the engine does on every preview; resources still dial when they are created or read.
            disable_docker_daemon_check=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

        # No delete: the checks change nothing on the host. Re-run whenever the containers change.
        self.preflight = RemoteCommand(
            f"{name}-preflight",
            connection=connection(
                host=str(gpu.address),
                port=gpu.ssh_port,
                user=gpu.ssh_user,
                private_key=args.ssh_private_key,
                host_key=gpu.host_key,
            ),
            create=preflight_script(gpu),
            triggers=[json.dumps([pulumi_container_args(s) | {"image": s.image} for s in specs], sort_keys=True)],
            opts=pulumi.ResourceOptions(parent=self),
        )

        docker_opts = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.preflight])
        net = engine_network_body(NETWORK)
        self.network = docker.Network(
            f"{name}-network",
            name=net["Name"],
            driver=net["Driver"],
            labels=[{"label": k, "value": v} for k, v in net["Labels"].items()],
            opts=docker_opts,
        )

        self.images = {}
        self.containers = {}
        for spec in specs:
            image = docker.RemoteImage(
                f"{name}-{spec.name}-image",
                name=spec.image,
                # Model server images are large; a replaced container should not re-download them.
                keep_locally=True,
                opts=docker_opts,
            )
            kwargs = pulumi_container_args(spec)
            kwargs["networks_advanced"] = [{"name": self.network.name}]
            self.images[spec.name] = image
            self.containers[spec.name] = docker.Container(
                f"{name}-{spec.name}",
                image=image.image_id,
                **kwargs,
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.provider, depends_on=[self.preflight, self.network, image]
                ),
            )

        k8s_opts = pulumi.ResourceOptions(parent=self, depends_on=list(args.k8s_depends_on))
        container = service_container(gpu)
        config = gateway.render_configmap(args.endpoint, container)
        checksum = hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()
        self.gateway = {}
        for kind, manifest in (
            ("configmap", config),
            ("deployment", gateway.render_deployment(args.endpoint, checksum)),
            ("pdb", gateway.render_pdb(args.endpoint)),
            ("netpol", gateway.render_network_policy(args.endpoint, container)),
        ):
            self.gateway[kind] = KubernetesObject(f"{name}-gateway-{kind}", manifest, k8s_opts)
        self.service = KubernetesObject(f"{name}-service", render_inference_service(args.endpoint), k8s_opts)

        self.register_outputs(
            {
                "provider": self.provider,
                "preflight": self.preflight,
                "network": self.network,
                "images": self.images,
                "containers": self.containers,
                "service": self.service,
                "gateway": self.gateway,
            }
        )
