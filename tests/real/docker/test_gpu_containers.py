"""The GPU host's container spec against a real Docker daemon (Debian's docker.io, started here).

Containers are created from `engine_create_body(container_spec(...))`, the same pure spec the
`GpuHost` component hands to pulumi-docker, and the daemon's own report (`GET /containers/<name>/
json`, what `docker inspect` prints) is compared with it: published port, bind mount, restart
policy, healthcheck, log rotation, labels and the dedicated network; the container turns healthy
through the spec's default probe (and unhealthy when the health path is wrong).

GPU requests on this GPU-less machine: the spec's device requests are created on a container as
they are (`HostConfig.DeviceRequests` is read back unchanged), and starting it makes the daemon
answer that it cannot select the `nvidia` (or `cdi`) device driver for those capabilities — the
request reached dockerd in the expected shape; only a real GPU host can go further.

The preflight script runs against the same daemon with the real docker CLI; nvidia-smi and the
NVIDIA hook are named test doubles.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.gpu.gpu_container_spec import (
    NETWORK,
    ContainerSpec,
    HealthTiming,
    container_spec,
    engine_create_body,
    engine_network_body,
)
from components.gpu.gpu_host import preflight_script
from rack.config import GpuContainer, parse_rack
from tests.conftest import stack_raw
from tests.prereq import need

from .engine import ApiError, Daemon, Engine, build_server, import_image, rootfs_tar

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PORT = 11434
HEALTH = "/api/tags"
FAST = HealthTiming(interval="1s", timeout="3s", retries=2, start_period="1s")
"""Same checks, shorter timing, so a test does not wait out the production start period."""


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    return found or need("go", "golang-go")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    dockerd = need("dockerd", "docker.io", root=True)
    need("ip", "iproute2", root=True)
    need("nsenter", "util-linux")
    busybox = need("busybox", "busybox-static")
    bash_static = need("bash-static", "bash-static")
    go = _go()
    d = Daemon()
    try:
        engine = d.start(dockerd)
        server = d.base / "build" / "modelserver"
        build_server(go, server)
        common = {"bin/modelserver": server, "bin/busybox": Path(busybox)}
        # like most model-server images: a shell and wget
        import_image(
            engine,
            "homelab-test/modelserver:wget",
            rootfs_tar(common, {"bin/sh": "busybox", "bin/wget": "busybox"}),
            port=PORT,
            health_path=HEALTH,
        )
        # like ollama/ollama: a shell, bash, head and grep, but neither curl nor wget (sh is bash
        # here: busybox's sh would find its own wget applet without any symlink)
        import_image(
            engine,
            "homelab-test/modelserver:bash",
            rootfs_tar(
                common | {"bin/bash": Path(bash_static)},
                {"bin/sh": "bash", "bin/head": "busybox", "bin/grep": "busybox"},
            ),
            port=PORT,
            health_path=HEALTH,
        )
        net = engine_network_body(NETWORK)
        engine.call("POST", "/networks/create", net)
        yield d
    finally:
        d.stop()
        assert not d.leftovers(), d.leftovers()


@pytest.fixture
def engine(daemon: Daemon) -> Engine:
    return daemon.engine


@pytest.fixture
def models(daemon: Daemon, tmp_path: Path) -> Path:
    path = tmp_path / "srv-ollama"
    path.mkdir()
    return path


def spec_for(
    models: Path, *, image: str = "homelab-test/modelserver:wget", driver: str = "nvidia", **extra: Any
) -> ContainerSpec:
    container = GpuContainer.model_validate(
        {
            "name": "ollama",
            "image": image,
            "gpus": "all",
            "port": PORT,
            "volumes": {str(models): "/root/.ollama"},
            "health-path": HEALTH,
            **extra,
        }
    )
    # The daemon's namespace stands in for the GPU host; 127.0.0.1 for its configured address.
    return container_spec(container, host="gpu-test", bind_ip="127.0.0.1", driver=driver, health=FAST)


def run(engine: Engine, spec: ContainerSpec) -> None:
    engine.call("POST", "/containers/create", engine_create_body(spec), query={"name": spec.name})
    engine.call("POST", f"/containers/{spec.name}/start")


def test_container_from_the_spec_is_what_the_daemon_reports(daemon: Daemon, engine: Engine, models: Path) -> None:
    full = spec_for(models)
    spec = dataclasses.replace(full, device_requests=())  # this daemon has no GPU (see the GPU test)
    body = engine_create_body(spec)
    try:
        run(engine, spec)
        info = engine.wait_health(spec.name, "healthy", timeout=30)
        config, host = info["Config"], info["HostConfig"]

        assert config["Image"] == spec.image
        assert {k: config["Labels"][k] for k, _ in spec.labels} == dict(spec.labels)
        assert config["Healthcheck"] == body["Healthcheck"]
        assert config["Healthcheck"]["Test"][0] == "CMD-SHELL"

        assert host["PortBindings"] == {f"{PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
        assert info["NetworkSettings"]["Ports"][f"{PORT}/tcp"][0]["HostPort"] == str(PORT)
        assert host["Binds"] == [f"{models}:/root/.ollama:rw"]
        (mount,) = info["Mounts"]
        assert (mount["Type"], mount["Source"], mount["Destination"], mount["RW"]) == (
            "bind", str(models), "/root/.ollama", True
        )
        assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "50m", "max-file": "5"}}
        assert set(info["NetworkSettings"]["Networks"]) == {NETWORK}
        network = engine.call("GET", f"/networks/{NETWORK}")
        assert info["NetworkSettings"]["Networks"][NETWORK]["NetworkID"] == network["Id"]
        assert network["Driver"] == "bridge"

        # the published port answers on the configured address of the daemon's host ...
        got = daemon.netns_run("busybox", "wget", "-q", "-O-", f"http://127.0.0.1:{PORT}{HEALTH}")
        assert got.returncode == 0 and got.stdout == "ok\n", got.stderr
        # ... and on no other address of that host (published on 0.0.0.0 it would answer here too)
        gateway = network["IPAM"]["Config"][0]["Gateway"]
        other = daemon.netns_run("busybox", "wget", "-q", "-O-", f"http://{gateway}:{PORT}{HEALTH}", timeout=10)
        assert other.returncode != 0, other.stdout
        # the bind mount is the host path
        assert engine.exec(spec.name, ["sh", "-c", "echo written-in-container > /root/.ollama/probe"]) == 0
        assert (models / "probe").read_text() == "written-in-container\n"
    finally:
        engine.remove(spec.name)


def test_probe_falls_back_to_bash_when_the_image_has_no_curl_or_wget(engine: Engine, models: Path) -> None:
    spec = dataclasses.replace(spec_for(models, image="homelab-test/modelserver:bash"), device_requests=())
    try:
        run(engine, spec)
        assert engine.exec(spec.name, ["sh", "-c", "command -v wget || command -v curl"]) != 0
        info = engine.wait_health(spec.name, "healthy", timeout=30)
        assert info["State"]["Health"]["Log"][-1]["ExitCode"] == 0
    finally:
        engine.remove(spec.name)


def test_probe_checks_the_health_path_not_just_the_process(engine: Engine, models: Path) -> None:
    spec = dataclasses.replace(spec_for(models, **{"health-path": "/missing"}), device_requests=())
    try:
        run(engine, spec)
        info = engine.wait_health(spec.name, "unhealthy", timeout=30)
        assert info["State"]["Running"] is True
        assert all(entry["ExitCode"] != 0 for entry in info["State"]["Health"]["Log"])
    finally:
        engine.remove(spec.name)


@pytest.mark.parametrize(
    ("driver", "expected", "message"),
    [
        (
            "nvidia",
            [{"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}],
            'could not select device driver "nvidia" with capabilities: [[gpu]]',
        ),
        (
            "cdi",
            [{"Driver": "cdi", "Count": 0, "DeviceIDs": ["nvidia.com/gpu=all"], "Capabilities": None, "Options": {}}],
            'could not select device driver "cdi" with capabilities: []',
        ),
    ],
)
def test_gpu_request_reaches_the_daemon_in_the_expected_shape(
    engine: Engine, models: Path, driver: str, expected: list[dict[str, Any]], message: str
) -> None:
    spec = spec_for(models, driver=driver)
    try:
        engine.call("POST", "/containers/create", engine_create_body(spec), query={"name": spec.name})
        requests = engine.inspect(spec.name)["HostConfig"]["DeviceRequests"]
        assert [r | {"Options": r.get("Options") or {}} for r in requests] == expected
        with pytest.raises(ApiError) as refused:
            engine.call("POST", f"/containers/{spec.name}/start")
        assert message in refused.value.message
    finally:
        engine.remove(spec.name)


def _tools(bindir: Path, doubles: dict[str, str]) -> dict[str, str]:
    bindir.mkdir()
    for tool in ("grep", "hostname"):
        real = shutil.which(tool)
        assert real is not None
        (bindir / tool).symlink_to(real)
    (bindir / "docker").symlink_to(need("docker", "docker.io"))
    for name, body in doubles.items():
        path = bindir / name
        path.write_text(f"#!/bin/sh\n# test double of {name}: this machine has no GPU\n{body}\n")
        path.chmod(0o755)
    return {"PATH": str(bindir)}


@pytest.mark.parametrize("ready", [True, False])
def test_preflight_against_the_real_daemon(daemon: Daemon, tmp_path: Path, ready: bool) -> None:
    models = tmp_path / "srv" / "ollama"
    raw = stack_raw("homelab")
    raw["gpu-host"]["containers"][0]["volumes"] = {str(models): "/root/.ollama"}
    gpu = parse_rack(raw).gpu_host
    assert gpu is not None
    doubles = {}
    if ready:
        models.mkdir(parents=True)
        doubles = {
            "nvidia-smi": "echo 'GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-00000000-0000-0000-0000-000000000000)'",
            "nvidia-container-runtime-hook": "exit 0",
        }
    env = _tools(tmp_path / "bin", doubles) | {"DOCKER_HOST": f"unix://{daemon.socket}", "HOME": str(tmp_path)}
    script = tmp_path / "preflight.sh"
    script.write_text(preflight_script(gpu))
    result = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, env=env, timeout=60)
    out = result.stdout
    assert "docker does not answer" not in out, out  # the real daemon answered the real CLI
    if ready:
        assert result.returncode == 0, out + result.stderr
        assert "ok: Docker has the NVIDIA runtime" in out and out.rstrip().endswith("preflight passed")
    else:
        assert result.returncode == 1
        assert "nvidia-smi not found: install the NVIDIA driver" in out
        # the real daemon's runtimes (runc only) are read and found wanting
        assert "Docker has no NVIDIA runtime: install nvidia-container-toolkit" in out
        assert f"volume host path {models} does not exist" in out
