"""A throwaway Docker daemon for the GPU-host tests, and a small Engine API client.

Real parts: Debian's `dockerd` (docker.io) with its own containerd, started by the test inside a
network namespace of its own (`nsenter --net`, not `ip netns exec`, which remounts /sys and hides
the cgroup mounts dockerd needs), with its socket, data-root, exec-root and pidfile in one temp
directory. Its bridges, iptables rules and published ports live in that namespace only.

The image is built here without a registry: a static Go HTTP server (compiled by the test with
CGO_ENABLED=0) plus static busybox (and, for the ollama-like image, static bash) from Debian,
imported FROM scratch through `POST /images/create?fromSrc=-`.

Teardown (also after a failure): dockerd gets SIGTERM (it stops its containers and its
containerd), then anything still running from our directory is killed by pid, leftover mounts
under it are unmounted, the namespace and the directory are removed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

API = "/v1.41"
"""Docker 20.10's API version (DeviceRequests exist since 1.40)."""

SERVER_GO = """package main

import (
	"flag"
	"net/http"
)

// A stand-in model server: answers 200 on the health path, 404 elsewhere.
func main() {
	listen := flag.String("listen", ":11434", "listen address")
	health := flag.String("health", "/api/tags", "health path")
	flag.Parse()
	http.HandleFunc(*health, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\\n")) })
	_ = http.ListenAndServe(*listen, nil)
}
"""


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Engine:
    """The Docker Engine API over a unix socket (what `docker inspect` and friends print)."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = API + path + (("?" + urllib.parse.urlencode(query, doseq=True)) if query else "")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = _UnixConnection(self.socket_path)
        try:
            headers = {"Content-Type": content_type} if data is not None else {}
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(payload).get("message", "")
            except ValueError:
                message = payload.decode(errors="replace")
            raise ApiError(resp.status, message)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload

    def inspect(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/containers/{name}/json")

    def remove(self, name: str) -> None:
        try:
            self.call("DELETE", f"/containers/{name}", query={"force": "1", "v": "1"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def wait_health(self, name: str, want: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        info = self.inspect(name)
        while time.monotonic() < deadline:
            info = self.inspect(name)
            if (info["State"].get("Health") or {}).get("Status") == want:
                return info
            time.sleep(0.25)
        raise AssertionError(f"{name} not {want} after {timeout}s: {json.dumps(info['State'])}")

    def exec(self, name: str, cmd: list[str]) -> int:
        request = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True}
        created = self.call("POST", f"/containers/{name}/exec", request)
        self.call("POST", f"/exec/{created['Id']}/start", {"Detach": False, "Tty": False})
        for _ in range(100):
            info = self.call("GET", f"/exec/{created['Id']}/json")
            if not info["Running"]:
                return int(info["ExitCode"])
            time.sleep(0.05)
        raise AssertionError(f"exec {cmd} in {name} did not finish")


class Daemon:
    """One dockerd in one network namespace, all state in one temp directory."""

    def __init__(self) -> None:
        # unix socket paths are limited to 108 bytes: keep the directory short, under /tmp
        self.base = Path(tempfile.mkdtemp(prefix="hlgpu-", dir="/tmp"))
        self.ns = f"hlgpu-{os.getpid()}"
        self.socket = str(self.base / "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.base / "dockerd.log"
        self.engine = Engine(self.socket)
        self.netns_made = False

    def start(self, dockerd: str, timeout: float = 60) -> Engine:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.netns_made = True
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        for sub in ("data", "exec"):
            (self.base / sub).mkdir()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    "nsenter", f"--net=/run/netns/{self.ns}",
                    dockerd,
                    "--host", f"unix://{self.socket}",
                    "--data-root", str(self.base / "data"),
                    "--exec-root", str(self.base / "exec"),
                    "--pidfile", str(self.base / "docker.pid"),
                    "--bridge=none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log.read_text()[-3000:]}")
            try:
                self.engine.call("GET", "/_ping")
                return self.engine
            except (OSError, ApiError):
                time.sleep(0.25)
        raise RuntimeError(f"dockerd did not answer in {timeout}s: {self.log.read_text()[-3000:]}")

    def netns_run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A command in the daemon's network namespace (its loopback holds the published ports)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.ns}", *cmd], capture_output=True, text=True, timeout=timeout
        )

    def _our_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(self.base) in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            for pid in self._our_pids():  # containerd and shims started for our daemon only
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            mounts = []
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4]
                if point.startswith(str(self.base)):
                    mounts.append(point)
            for point in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], check=False)
        finally:
            if self.netns_made:
                subprocess.run(["ip", "netns", "del", self.ns], check=False)
            shutil.rmtree(self.base, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What teardown failed to remove (empty when clean)."""
        out = [f"pid {p}" for p in self._our_pids()]
        if self.base.exists():
            out.append(str(self.base))
        if Path(f"/run/netns/{self.ns}").exists():
            out.append(f"netns {self.ns}")
        return out


def build_server(go: str, out: Path) -> None:
    """Compile the stand-in model server, statically, without the network."""
    src = out.parent / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(SERVER_GO)
    (src / "go.mod").write_text("module modelserver\n\ngo 1.21\n")
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod")
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
        cwd=src, env=env, check=True, capture_output=True, timeout=300,
    )


def rootfs_tar(files: dict[str, Path], links: dict[str, str]) -> bytes:
    """A FROM-scratch root filesystem: executables at their paths, symlinks, an empty /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for path, source in files.items():
            data = source.read_bytes()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def import_image(engine: Engine, ref: str, rootfs: bytes, *, port: int, health_path: str) -> None:
    repo, tag = ref.rsplit(":", 1)
    changes = [
        'ENTRYPOINT ["/bin/modelserver"]',
        f'CMD ["-listen", ":{port}", "-health", "{health_path}"]',
        "ENV PATH=/bin",
    ]
    engine.call(
        "POST",
        "/images/create",
        query=[("fromSrc", "-"), ("repo", repo), ("tag", tag), *[("changes", c) for c in changes]],
        raw=rootfs,
        content_type="application/x-tar",
    )
