"""The inference gateway's haproxy.cfg, run by a real HAProxy (Debian's `haproxy`) on loopback.

A model server stand-in (Python's HTTP server, answering the health path and a completion path)
plays the GPU host at 127.0.0.1; the rendered config is used as is except its listen addresses,
moved from every interface to 127.0.0.1 and to free ports (the test binds nothing else). What is
checked is what the Service's routing relies on: `/ready` (the pods' readiness probe) answers 200
while the model server passes its health check and 503 within a few seconds of it failing, and
again 200 once it is back; traffic is proxied unchanged while up.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from components.gpu import inference_gateway as gateway
from rack.config import GpuContainer
from rack.endpoints import ServiceEndpoint
from tests.prereq import free_port, need

pytestmark = [pytest.mark.slow]

HEALTH = "/api/tags"


class ModelServer:
    """A stand-in model server whose health can be switched (healthy, 500, gone)."""

    def __init__(self, port: int):
        self.port = port
        self.status = 200
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"models": []}' if self.path == HEALTH else b"completion from the GPU host"
                self.send_response(owner.status if self.path == HEALTH else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def wait_for(url: str, status: int, timeout: float = 15) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if get(url)[0] == status:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[ModelServer, str, str]]:
    haproxy = need("haproxy", "haproxy")
    backend, front, health = free_port(), free_port(), free_port()
    endpoint = ServiceEndpoint(
        name="inference",
        kind="http",
        namespace="ai",
        service="inference",
        port=front,
        pod_labels={"app.kubernetes.io/name": "inference-gateway"},
        external_ip=IPv4Address("127.0.0.1"),
    )
    container = GpuContainer.model_validate(
        {"name": "ollama", "image": "ollama/ollama:0.5.4", "port": backend, "health-path": HEALTH}
    )
    config = gateway.render_config(endpoint, container)
    assert f"bind :{front}" in config and f"bind :{gateway.HEALTH_PORT}" in config
    config = config.replace(f"bind :{front}", f"bind 127.0.0.1:{front}")
    config = config.replace(f"bind :{gateway.HEALTH_PORT}", f"bind 127.0.0.1:{health}")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config)
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    server = ModelServer(backend)
    server.start()
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield server, f"http://127.0.0.1:{front}", f"http://127.0.0.1:{health}{gateway.READY_PATH}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()
        server.stop()


def test_readiness_follows_the_model_servers_health(running: tuple[ModelServer, str, str]) -> None:
    server, front, ready = running
    wait_for(ready, 200)
    assert get(f"{front}/api/generate") == (200, "completion from the GPU host")

    server.status = 500  # the model server answers but fails its health path
    took = wait_for(ready, 503)
    assert took < 10, took  # 2 failed checks 2 s apart, then the next readiness probe

    server.status = 200
    wait_for(ready, 200)
    server.stop()  # the model server is gone
    wait_for(ready, 503)
    assert get(f"{front}/api/generate")[0] != 200
    server.start()
    wait_for(ready, 200)
    assert get(f"{front}/api/generate") == (200, "completion from the GPU host")
