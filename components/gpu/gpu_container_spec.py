"""The container spec of a model server on the GPU host: one pure source of truth.

Creates nothing. `container_spec` turns one `gpu-host.containers[]` entry into a `ContainerSpec`
(image, published port, bind mounts, GPU device requests, healthcheck, restart policy, log
rotation, network, labels). Two adapters read that one spec:

- `pulumi_container_args(spec)`: the keyword arguments of `pulumi_docker.Container` (what the
  `GpuHost` component passes);
- `engine_create_body(spec)`: the Docker Engine API `POST /containers/create` body that the
  provider (terraform-provider-docker under pulumi-docker) builds from those arguments — ports
  to `ExposedPorts`/`PortBindings`, volumes to `Binds` (`host:container:rw`), healthcheck
  durations through Go's `time.ParseDuration`, `restart` to `RestartPolicy.Name`, `log_driver`/
  `log_opts` to `LogConfig`, device requests to `HostConfig.DeviceRequests`.

The real-daemon tests create containers from `engine_create_body` of the same spec and read back
what the daemon reports, so the spec is checked against a real `dockerd`, not a second copy.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from components.core.layout import LABEL_PREFIX
from rack.config import GpuContainer

NETWORK = "homelab-gpu"
"""The dedicated Docker network of the model servers (not the default bridge)."""

RESTART = "unless-stopped"
"""Restart policy: back after a reboot or crash, but a deliberate `docker stop` sticks."""

LOG_DRIVER = "json-file"
LOG_MAX_SIZE = "50m"
LOG_MAX_FILE = "5"
"""Log rotation: at most 5 x 50 MB of logs per container (model servers are chatty)."""

WAIT_TIMEOUT_SECONDS = 600
"""How long `pulumi up` waits for a container to turn healthy (a first start may load models)."""

HOST_LABEL = f"{LABEL_PREFIX}/gpu-host"
IMAGE_LABEL = f"{LABEL_PREFIX}/image"
GPUS_LABEL = f"{LABEL_PREFIX}/gpus"
WORKLOAD_LABEL = f"{LABEL_PREFIX}/workload"
"""Labels on every container: `docker ps --filter label=...` and the offline plan read them."""

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def duration_ns(value: str) -> int:
    """A Go duration of one unit (`30s`, `2m`) in nanoseconds, as the Engine API stores it."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration like 30s or 2m")
    return int(match[1]) * _UNIT_NS[match[2]]


@dataclass(frozen=True)
class HealthTiming:
    """When Docker runs the healthcheck (the component uses the defaults; tests shorten them)."""

    interval: str = "15s"
    """Time between probes."""
    timeout: str = "5s"
    """A probe slower than this fails."""
    retries: int = 5
    """Consecutive failures before the container is unhealthy."""
    start_period: str = "120s"
    """Grace period after start in which failures do not count (model loading)."""


@dataclass(frozen=True)
class DeviceRequest:
    """One `HostConfig.DeviceRequests` entry."""

    driver: str
    """nvidia | cdi."""
    count: int | None = None
    """Number of GPUs (-1: all); nvidia only."""
    device_ids: tuple[str, ...] = ()
    """GPU indexes/UUIDs (nvidia) or CDI names (`nvidia.com/gpu=0`)."""
    capabilities: tuple[str, ...] = ()
    """Requested capabilities (nvidia: `gpu`)."""


@dataclass(frozen=True)
class BindMount:
    host_path: str
    """Directory on the GPU host (checked by the preflight)."""
    container_path: str
    """Where the container sees it."""
    read_only: bool = False
    """Mount read-only."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the GPU host is asked to run for one model server."""

    name: str
    """Container name (also the plan's workload name)."""
    image: str
    """Pinned image reference."""
    port: int
    """Port the server listens on inside the container, published on the same host port."""
    bind_ip: str
    """The host address the port is published on: the GPU host's configured address, never
    0.0.0.0 (Docker's default publishes on every interface and its rules bypass the host's INPUT
    chain: docs/gpu-host.md)."""
    mounts: tuple[BindMount, ...]
    """Bind mounts (model stores)."""
    device_requests: tuple[DeviceRequest, ...]
    """GPUs requested the modern way (HostConfig.DeviceRequests)."""
    gpus: str
    """The config's `gpus` value, kept for labels and the plan."""
    health_test: tuple[str, ...]
    """Healthcheck command, Docker's `Test` form (`CMD-SHELL`, ...) or (`CMD`, ...)."""
    health: HealthTiming
    """Healthcheck timing."""
    host: str
    """Hostname of the GPU machine (labels, plan)."""
    network: str = NETWORK
    """The Docker network it joins (only this one)."""
    restart: str = RESTART
    """Restart policy name."""
    log_driver: str = LOG_DRIVER
    """Docker log driver."""
    log_opts: tuple[tuple[str, str], ...] = (("max-size", LOG_MAX_SIZE), ("max-file", LOG_MAX_FILE))
    """Log driver options (rotation)."""
    labels: tuple[tuple[str, str], ...] = field(default=())
    """Container labels."""


def device_requests(gpus: str, driver: str) -> tuple[DeviceRequest, ...]:
    """`gpus` (all | a count | device=<ids>) as device requests for the nvidia or cdi driver.

    nvidia: what `docker run --gpus ...` sends, with the driver named so a host without the
    NVIDIA hook fails loudly instead of matching another driver. cdi: fully qualified CDI names
    (`nvidia.com/gpu=all`, `nvidia.com/gpu=0`), as `nvidia-ctk cdi generate` names them."""
    if driver == "nvidia":
        if gpus == "all":
            return (DeviceRequest(driver="nvidia", count=-1, capabilities=("gpu",)),)
        if gpus.isdigit():
            return (DeviceRequest(driver="nvidia", count=int(gpus), capabilities=("gpu",)),)
        ids = tuple(gpus.removeprefix("device=").split(","))
        return (DeviceRequest(driver="nvidia", device_ids=ids, capabilities=("gpu",)),)
    if driver == "cdi":
        if gpus == "all":
            names: tuple[str, ...] = ("all",)
        elif gpus.isdigit():
            names = tuple(str(i) for i in range(int(gpus)))
        else:
            names = tuple(gpus.removeprefix("device=").split(","))
        return (DeviceRequest(driver="cdi", device_ids=tuple(f"nvidia.com/gpu={n}" for n in names)),)
    raise ValueError(f"unknown GPU driver {driver!r} (nvidia | cdi)")


def http_probe(port: int, path: str) -> tuple[str, ...]:
    """The default healthcheck: GET http://127.0.0.1:<port><path> from inside the container with
    whatever the image has — curl, else wget, else bash's /dev/tcp (the ollama image ships neither
    curl nor wget). Needs `/bin/sh` in the image; otherwise set `health-cmd`. No `wget -T`: Docker's
    healthcheck timeout bounds the probe, and busybox's static wget crashes on -T (found by the
    real-daemon test)."""
    url = f"http://127.0.0.1:{port}{path}"
    raw = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && "
        "head -n 1 <&3 | grep -q ' 200 '"
    )
    script = (
        f"if command -v curl >/dev/null 2>&1; then curl -fsS -m 4 -o /dev/null {shlex.quote(url)}; "
        f"elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null {shlex.quote(url)}; "
        f"else bash -c {shlex.quote(raw)}; fi"
    )
    return ("CMD-SHELL", script)


def container_spec(
    container: GpuContainer,
    *,
    host: str,
    bind_ip: str,
    driver: str = "nvidia",
    network: str = NETWORK,
    health: HealthTiming | None = None,
) -> ContainerSpec:
    """The spec of one configured model server (pure)."""
    test = ("CMD", *container.health_cmd) if container.health_cmd else http_probe(container.port, container.health_path)
    return ContainerSpec(
        name=container.name,
        image=container.image,
        port=container.port,
        bind_ip=bind_ip,
        mounts=tuple(BindMount(h, c) for h, c in sorted(container.volumes.items())),
        device_requests=device_requests(container.gpus, driver),
        gpus=container.gpus,
        health_test=test,
        health=health or HealthTiming(),
        host=host,
        network=network,
        labels=(
            (GPUS_LABEL, container.gpus),
            (HOST_LABEL, host),
            (IMAGE_LABEL, container.image),
            (WORKLOAD_LABEL, container.name),
        ),
    )


# --- adapter 1: pulumi_docker.Container keyword arguments ---------------------------------------


def pulumi_container_args(spec: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments of `pulumi_docker.Container` (all but `image`, which the component wires
    to its `RemoteImage`, so a re-pulled image replaces the container)."""
    requests = []
    for req in spec.device_requests:
        entry: dict[str, Any] = {"driver": req.driver}
        if req.count is not None:
            entry["count"] = req.count
        if req.device_ids:
            entry["device_ids"] = list(req.device_ids)
        if req.capabilities:
            entry["capabilities"] = list(req.capabilities)
        requests.append(entry)
    return {
        "name": spec.name,
        "ports": [{"internal": spec.port, "external": spec.port, "ip": spec.bind_ip, "protocol": "tcp"}],
        "volumes": [
            {"host_path": m.host_path, "container_path": m.container_path, "read_only": m.read_only}
            for m in spec.mounts
        ],
        "device_requests": requests,
        "healthcheck": {
            "tests": list(spec.health_test),
            "interval": spec.health.interval,
            "timeout": spec.health.timeout,
            "retries": spec.health.retries,
            "start_period": spec.health.start_period,
        },
        "restart": spec.restart,
        "log_driver": spec.log_driver,
        "log_opts": dict(spec.log_opts),
        "networks_advanced": [{"name": spec.network}],
        "labels": [{"label": k, "value": v} for k, v in spec.labels],
        "must_run": True,
        "wait": True,
        "wait_timeout": WAIT_TIMEOUT_SECONDS,
    }


# --- adapter 2: the Docker Engine API body the provider sends ------------------------------------


def engine_create_body(spec: ContainerSpec) -> dict[str, Any]:
    """`POST /containers/create?name=<spec.name>` body (Engine API >= 1.40), as the provider
    builds it from `pulumi_container_args(spec)`. The provider creates on the default bridge and
    then connects `networks_advanced`; creating straight on the network ends in the same state."""
    port_key = f"{spec.port}/tcp"
    return {
        "Image": spec.image,
        "ExposedPorts": {port_key: {}},
        "Labels": dict(spec.labels),
        "Healthcheck": {
            "Test": list(spec.health_test),
            "Interval": duration_ns(spec.health.interval),
            "Timeout": duration_ns(spec.health.timeout),
            "Retries": spec.health.retries,
            "StartPeriod": duration_ns(spec.health.start_period),
        },
        "HostConfig": {
            "PortBindings": {port_key: [{"HostIp": spec.bind_ip, "HostPort": str(spec.port)}]},
            "Binds": [f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts],
            "RestartPolicy": {"Name": spec.restart, "MaximumRetryCount": 0},
            "LogConfig": {"Type": spec.log_driver, "Config": dict(spec.log_opts)},
            "DeviceRequests": [
                {
                    "Driver": req.driver,
                    "Count": req.count if req.count is not None else 0,
                    "DeviceIDs": list(req.device_ids) or None,
                    "Capabilities": [list(req.capabilities)] if req.capabilities else None,
                    "Options": {},
                }
                for req in spec.device_requests
            ],
            "NetworkMode": spec.network,
        },
        "NetworkingConfig": {"EndpointsConfig": {spec.network: {}}},
    }


def engine_network_body(network: str = NETWORK) -> dict[str, Any]:
    """`POST /networks/create` body of the dedicated network (the component's `docker.Network`)."""
    return {"Name": network, "Driver": "bridge", "CheckDuplicate": True, "Labels": {f"{LABEL_PREFIX}/network": "gpu"}}
