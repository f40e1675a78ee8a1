"""A network namespace on this machine where real database servers run on their default ports.

Real parts: Debian's PostgreSQL, MariaDB and Redis servers and clients, a network namespace of
our own (its loopback only), `/etc/netns/<ns>/hosts` so the in-cluster Service names the CronJob
uses (`postgres.data.svc.cluster.local`) resolve to that loopback, and per-command mount
namespaces that bind temp directories over the pod's paths (`/backup`, `/data`, `/tmp`).

Everything is removed on teardown, also after a failure: processes in the namespace (all started
here), the namespace, its hosts file, and any mount-point directory this module had to create.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.platform.database_manifests import service_host
from rack.config import DatabaseKind

BIND_THEN_EXEC = 'set -e; while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"'


class Sandbox:
    def __init__(self) -> None:
        self.ns = f"hl4db-{os.getpid()}"
        self.root = Path(tempfile.mkdtemp(prefix="hl4db-"))
        self.root.chmod(0o755)
        self.created_dirs: list[Path] = []
        self.etc = Path("/etc/netns") / self.ns
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- lifecycle --

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"], check=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        names = " ".join(service_host(kind) for kind in DatabaseKind)
        (self.etc / "hosts").write_text(f"127.0.0.1 localhost {names}\n")

    def stop(self) -> None:
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        for pid in out.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - killed above
                proc.kill()
        subprocess.run(["ip", "netns", "delete", self.ns], check=False)
        shutil.rmtree(self.etc, ignore_errors=True)
        # Another run of these tests (its own hl4db-* namespace) may still bind over the same
        # mount points: the last one out removes them.
        others = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if not any(line.startswith("hl4db-") for line in others.splitlines()):
            for path in reversed(self.created_dirs):
                with contextlib.suppress(OSError):
                    path.rmdir()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers --

    def dir(self, name: str, owner: str | None = None, mode: int = 0o700) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            shutil.chown(path, owner, owner)
        path.chmod(mode)
        return path

    def mountpoint(self, path: str) -> None:
        """Make sure `path` exists to bind over (created here, removed on teardown); an existing
        file (e.g. /etc/passwd) is bound over as it is."""
        p = Path(path)
        if p.is_file():
            return
        if not p.exists():
            p.mkdir(parents=True, exist_ok=True)
        if p not in self.created_dirs and not any(p.iterdir()):
            self.created_dirs.append(p)  # empty: ours (or another run's) to remove when the last run ends

    def argv(
        self, cmd: Sequence[str], *, mounts: Mapping[str, Path] | None = None, user: str | None = None
    ) -> list[str]:
        """`cmd` inside the namespace, with `mounts` (pod path -> host dir) bound, as `user`."""
        binds: list[str] = []
        for target, source in (mounts or {}).items():
            self.mountpoint(target)
            binds += [str(source), target]
        inner = (["runuser", "-u", user, "--"] if user else []) + list(cmd)
        return ["ip", "netns", "exec", self.ns, "sh", "-c", BIND_THEN_EXEC, "sh", *binds, "--", *inner]

    def run(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        mounts: Mapping[str, Path] | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
        result = subprocess.run(
            self.argv(cmd, mounts=mounts, user=user),
            env=full_env,
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{cmd[0]} exited {result.returncode}\nstdout: {result.stdout.decode()[-2000:]}\n"
                f"stderr: {result.stderr.decode()[-2000:]}"
            )
        return result

    def spawn(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        mounts: Mapping[str, Path] | None = None,
        user: str | None = None,
        log: Path,
    ) -> subprocess.Popen[bytes]:
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
        handle = log.open("wb")
        proc = subprocess.Popen(
            self.argv(cmd, mounts=mounts, user=user), env=full_env, stdout=handle, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc


def pod_env(container: Mapping[str, Any], password: str) -> dict[str, str]:
    """The environment a rendered container would get: literal values as they are, and every
    secretKeyRef (all of them point at the credentials Secret's `password`) as the password."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert item["valueFrom"]["secretKeyRef"]["key"] == "password", item
            env[item["name"]] = password
    return env
