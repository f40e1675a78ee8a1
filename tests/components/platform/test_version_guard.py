"""The version rules of VersionGuard, each case a fact from the server's own upgrade docs (cited in
components/platform/version_guard.py), and the provider's check answering as the engine reads it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.platform.version_guard import _VersionGuardProvider, refusal
from tests.prereq import unmet

# (kind, applied, configured, refused?) — PostgreSQL: majors never in place, minors both ways;
# MySQL: same series, or the next LTS series only, never down a series; Redis: never down a major.minor.
CASES = [
    ("postgres", "16.6", "16.15", False),
    ("postgres", "16.15", "16.6", False),
    ("postgres", "16.15", "17.2", True),
    ("postgres", "17.2", "16.15", True),
    ("mysql", "8.4.3", "8.4.11", False),
    ("mysql", "8.4.11", "8.4.3", False),
    ("mysql", "8.0.40", "8.4.3", False),
    ("mysql", "5.7.44", "8.0.40", False),
    ("mysql", "5.7.44", "8.4.3", True),
    ("mysql", "8.4.3", "8.0.40", True),
    ("mysql", "8.4.3", "9.1.0", True),
    ("redis", "7.2.5", "7.4.11", False),
    ("redis", "7.4.11", "8.0.2", False),
    ("redis", "7.4.11", "7.4.1", False),
    ("redis", "7.4.11", "7.2.5", True),
    ("redis", "8.0.2", "7.4.11", True),
]


@pytest.mark.parametrize(("kind", "old", "new", "refused"), CASES)
def test_rules(kind: str, old: str, new: str, refused: bool) -> None:
    reason = refusal(kind, old, new)
    assert (reason is not None) == refused, reason
    if reason is not None:
        assert reason.startswith(f"rack.databases.{kind}.version: {old} -> {new} ")
        assert "docs/restore.md#changing-a-database-major-version" in reason


def test_check_fails_on_the_version_property_only_against_an_applied_version() -> None:
    provider = _VersionGuardProvider()
    news = {"kind": "postgres", "version": "17.2"}
    first = provider.check({}, news)
    assert first.failures == [] and first.inputs == news
    refused = provider.check({"kind": "postgres", "version": "16.6"}, news)
    assert [f.property for f in refused.failures] == ["version"]
    minor = provider.diff("postgres", {"kind": "postgres", "version": "16.6"}, {**news, "version": "16.15"})
    assert minor.changes and minor.replaces == []


def test_pgvector_pods_start_only_on_the_configured_postgres_release(tmp_path: Path) -> None:
    """pgvector's tags (`0.8.6-pg16`) do not name PostgreSQL's minor: the StatefulSet's first step
    runs the rendered check against the image's own `postgres`. Here the image is Debian's
    PostgreSQL (the real binary, its release read from dpkg as the oracle)."""
    from components.platform.database_manifests import render_statefulset
    from rack.config import Database as DatabaseConfig
    from rack.config import DatabaseKind

    binary = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not binary:
        unmet("postgres not found: apt-get install postgresql")
    dpkg = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", f"postgresql-{binary[-1].parts[-3]}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    release = dpkg.split("-")[0]  # 15.18-0+deb12u1 -> 15.18
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "postgres").symlink_to(binary[-1])
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}

    def first_step(version: str) -> subprocess.CompletedProcess[str]:
        db = DatabaseConfig.model_validate({"version": version, "node": "db-1", "size": "1Gi", "vector": True})
        (check,) = render_statefulset(DatabaseKind.POSTGRES, db)["spec"]["template"]["spec"]["initContainers"]
        assert check["image"].endswith(f"-pg{version.split('.')[0]}")
        return subprocess.run(check["command"], env=env, capture_output=True, text=True, timeout=30)

    assert first_step(release).returncode == 0
    other = f"{release.split('.')[0]}.{int(release.split('.')[1]) + 1}"
    refused = first_step(other)
    assert refused.returncode == 1
    assert f"carries PostgreSQL {release}; rack.databases.postgres.version says {other}" in refused.stderr
    plain = DatabaseConfig.model_validate({"version": release, "node": "db-1", "size": "1Gi"})
    assert "initContainers" not in render_statefulset(DatabaseKind.POSTGRES, plain)["spec"]["template"]["spec"]
