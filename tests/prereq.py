"""Prerequisites of the real-service tests (OpenSSH in namespaces, dockerd, database servers,
Chromium). Locally a missing one skips the test with the install command; in CI
(HOMELAB_REQUIRE_REAL=1, set by .ci/run after installing them) it fails instead, so a green CI
never hides a skipped real test.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest


def need(binary: str, package: str, *, root: bool = False) -> str:
    """Path of `binary`, else skip (locally) or fail (CI) naming the Debian package."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/sbin/{binary}") if os.path.exists(p)), None
    )
    problem = None
    if path is None:
        problem = f"{binary} not found: apt-get install {package}"
    elif root and os.geteuid() != 0:
        problem = f"{binary} needs root"
    if problem is not None:
        unmet(problem)
    assert path is not None
    return path


LOCK_DIR = Path("/run/lock")


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold the machine-wide lock `/run/lock/homelab-rack-<name>.lock` (flock) while the body runs.

    The lab (`labbr0`, 10.77.0.0/24, its namespaces) and the SSH test hosts (10.231.0.0/24) are
    one per machine, whichever checkout starts them: two runs at once (two worktrees, or `make e2e`
    beside `make test`) would tear down each other's. `lab/e2e.sh` takes the same `lab` lock."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"homelab-rack-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unmet(problem: str) -> NoReturn:
    """A prerequisite is missing or unusable: skip (locally) or fail (CI), saying what to do."""
    if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def lab_binary(name: str) -> str:
    """A binary of the lab's build (`make lab-build`: etcd, kube-apiserver, kube-controller-manager,
    kubectl from Go modules, cached outside the repo). In CI (after `make lab-build`) asked of
    `lab/build.sh`, a no-op on a complete cache; locally the newest cached build, else skip."""
    if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
        build = Path(__file__).resolve().parents[1] / "lab" / "build.sh"
        env = dict(os.environ)
        env["PATH"] = f"{env.get('PATH', '')}:/usr/local/go/bin"
        result = subprocess.run(["bash", str(build)], capture_output=True, text=True, env=env, check=False)
        path = Path(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "/nonexistent") / name
        if result.returncode != 0 or not os.access(path, os.X_OK):
            pytest.fail(f"{name} not built by lab/build.sh: {result.stderr.strip()[-300:]}")
        return str(path)
    cache = Path(os.environ.get("HOMELAB_LAB_CACHE", Path.home() / ".cache" / "homelab-rack" / "lab"))
    built = sorted(cache.glob(f"*/bin/{name}"), key=lambda p: p.stat().st_mtime)
    if not built:
        pytest.skip(f"{name} not built: run `make lab-build`")
    return str(built[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (the kernel's pick; a test binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
