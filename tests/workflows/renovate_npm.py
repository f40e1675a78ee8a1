"""Install Renovate from npm into ~/.cache/homelab-rack/renovate/<version> (stdlib only).

Shared by tests/workflows/test_renovate.py's fixture (on first use) and .ci/run, which starts it in
the background at the beginning so the 400 MB install overlaps the Go builds instead of holding
up `make test` (the fixture then finds it done). One install per version, under a lock.

    python3 tests/workflows/renovate_npm.py      (exit 0: installed; else the problem on stderr)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# renovate: datasource=npm depName=renovate
RENOVATE_VERSION = "39.264.1"
"""The newest Renovate whose engines include Node 20 (what CI has); .gitea/workflows/renovate.yml
runs the same release, so the config is validated by the Renovate that runs it."""

CACHE = Path(os.environ.get("HOMELAB_RENOVATE_CACHE", Path.home() / ".cache" / "homelab-rack" / "renovate"))


class InstallError(Exception):
    """The install failed (`prerequisite`: for want of something on this machine)."""

    def __init__(self, message: str, *, prerequisite: bool = False) -> None:
        super().__init__(message)
        self.prerequisite = prerequisite


def install(node: str, npm: str) -> Path:
    """The install prefix of renovate@RENOVATE_VERSION (its node_modules), installing it first
    unless a finished install is there."""
    prefix = CACHE / RENOVATE_VERSION
    done = prefix / ".complete"
    if done.exists():
        return prefix
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers, and CI's background install, install once
        if done.exists():
            return prefix
        partial = CACHE / f"{RENOVATE_VERSION}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)
        cmd = [npm, "install", "--prefix", str(partial), "--no-audit", "--no-fund", "--omit=dev"]
        cmd += ["--loglevel=error", f"renovate@{RENOVATE_VERSION}"]
        env = {**os.environ, "npm_config_update_notifier": "false"}
        # Renovate's optional `re2` is built by node-gyp, which needs this Node's headers: those of
        # its own installation (<prefix>/include/node) when present, else node-gyp downloads them
        # from nodejs.org (unreachable offline) and npm drops re2 silently.
        node_prefix = Path(node).resolve().parent.parent
        if (node_prefix / "include" / "node" / "node_api.h").exists():
            env["npm_config_nodedir"] = str(node_prefix)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
        if result.returncode != 0:
            raise InstallError(f"npm install renovate@{RENOVATE_VERSION} failed:\n{result.stderr[-3000:]}")
        # Without re2 Renovate checks regexes with JavaScript's RegExp, which refuses the `(?m)`
        # flags of renovate.json's custom managers (RE2 syntax, as Renovate documents them): the
        # tests would fail for the test machine, not for the config.
        re2 = subprocess.run([node, "-e", "require('re2')"], cwd=partial, capture_output=True, text=True)
        if re2.returncode != 0:
            raise InstallError(
                f"renovate@{RENOVATE_VERSION}'s optional re2 did not build (node-gyp found no Node "
                f"headers: install them under {node_prefix}/include/node, or set npm's nodedir)",
                prerequisite=True,
            )
        partial.rename(prefix)
        done.write_text(f"renovate@{RENOVATE_VERSION}\n")
    return prefix


if __name__ == "__main__":
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("renovate_npm: node and npm are needed")
    try:
        print(f"renovate_npm: {install(node, npm)}")
    except InstallError as err:
        sys.exit(f"renovate_npm: {err}")
