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
