"""A database major-version change is refused by the real engine before anything changes.

The real Pulumi CLI and Python host of `make toolchain`, upstream's dynamic-provider host, a local
file backend and a one-resource program: `VersionGuard` as the Database component registers it.
After an `up` at PostgreSQL 16.6, a 17.2 is refused by `pulumi preview` and by
`pulumi up --skip-preview` (the state keeps 16.6, the error names the key and the way through,
no Python traceback), and a minor release (16.15) updates in place.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.prereq import unmet
from tests.toolchain.test_toolchain import REPO, _built_bin

PROGRAM = """\
import pulumi
from components.platform.version_guard import VersionGuard

VersionGuard("postgres-version", "postgres", pulumi.Config().require("version"), pulumi.ResourceOptions())
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = _built_bin()
    if bin_dir is None:
        unmet("toolchain for the current pins not built: run `make toolchain`")
    assert bin_dir is not None
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Pulumi.yaml").write_text(
        f"name: guard\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n"
    )
    (proj / "__main__.py").write_text(PROGRAM)
    (tmp_path / "state").mkdir()
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        # The program and the dynamic-provider host import the project's modules from the checkout.
        "PYTHONPATH": str(REPO),
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    return proj, env


def pulumi(proj: Path, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["pulumi", *args, "--non-interactive", "--color", "never"],
        cwd=proj, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if ok:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def applied(proj: Path, env: dict[str, str]) -> str:
    state = json.loads(pulumi(proj, env, "stack", "export").stdout)
    (guard,) = [r for r in state["deployment"]["resources"] if r["urn"].endswith("::postgres-version")]
    return str(guard["outputs"]["version"])


@pytest.mark.slow
def test_a_major_change_is_refused_before_anything_changes_a_minor_one_applies(
    project: tuple[Path, dict[str, str]],
) -> None:
    proj, env = project
    pulumi(proj, env, "stack", "init", "t")
    pulumi(proj, env, "config", "set", "version", "16.6")
    pulumi(proj, env, "up", "--yes", "--skip-preview")
    assert applied(proj, env) == "16.6"

    pulumi(proj, env, "config", "set", "version", "17.2")
    for argv in (["preview"], ["up", "--yes", "--skip-preview"]):
        refused = pulumi(proj, env, *argv, ok=False)
        text = refused.stdout + refused.stderr
        assert refused.returncode != 0, text[-3000:]
        assert "rack.databases.postgres.version: 16.6 -> 17.2" in text, text[-3000:]
        assert "docs/restore.md#changing-a-database-major-version" in text
        assert "Traceback" not in text
        assert applied(proj, env) == "16.6"

    pulumi(proj, env, "config", "set", "version", "16.15")
    steps = json.loads(pulumi(proj, env, "preview", "--json").stdout)["steps"]
    assert [(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if s["op"] != "same"] == [
        ("update", "postgres-version")
    ]
    pulumi(proj, env, "up", "--yes", "--skip-preview")
    assert applied(proj, env) == "16.15"
