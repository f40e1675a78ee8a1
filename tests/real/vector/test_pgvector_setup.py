"""The vector store for real: the setup Job's own script against a real PostgreSQL with pgvector.

Real parts: the PostgreSQL 16 server, `psql` and the `vector` extension (pgvector, `vector.so`)
shipped in the PyPI wheel `pgserver` (Debian has no pgvector package); the server is started
here on 127.0.0.1 with scram-sha-256 password authentication, as the pgvector image runs it, and
stopped (its files removed) afterwards, also on failure.

What runs is what the component renders: the Job container's command (`render_job`) with the
Job's environment, the password resolved from the Secret reference. Only `PGHOST`/`PGPORT` point
at the test server instead of the in-cluster Service name. It runs twice (idempotence), then a
similarity search uses the extension, with and without an HNSW index. (The update path of
`ALTER EXTENSION ... UPDATE` after an image bump cannot be exercised here: the wheel ships only
pgvector 0.6.2's install script, so no older version can be created to update from.)
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.platform.database_manifests import DATABASE_NAME, DATABASE_USER, secret_name
from components.platform.vector_store import EXTENSION, render_job, setup_statements
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind
from tests.prereq import free_port, need

pytestmark = [pytest.mark.realdb]

PASSWORD = "vector-test-Passw0rd"
PG = DatabaseConfig(version="16.6", node="rack-db-1", size="30Gi", vector=True)
PG_KIND = DatabaseKind.POSTGRES


def pg_bin() -> Path:
    """The PostgreSQL binaries of the pgserver wheel (skip locally without it, fail in CI)."""
    try:
        import pgserver
    except ImportError:
        problem = "pgserver not installed: pip install pgserver==0.1.4 (PostgreSQL 16 with pgvector)"
        if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@dataclass
class Server:
    bin: Path
    port: int
    root: Path
    user: str | None
    """The unprivileged user the server runs as when the tests run as root (PostgreSQL refuses root)."""

    def as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def psql(self, sql: str, *, database: str = DATABASE_NAME, user: str = DATABASE_USER) -> str:
        """A query over TCP with the password, as the Job connects."""
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"}
        out = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def job_env(self) -> dict[str, str]:
        """The Job container's environment as the kubelet would build it (Secret resolved), with
        the server's test address in place of the Service name."""
        container = render_job(PG)["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.root)}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret_name(PG_KIND) and ref["key"] == "password"
                env[item["name"]] = PASSWORD
        env["PGHOST"], env["PGPORT"] = "127.0.0.1", str(self.port)
        return env

    def run_job(self) -> subprocess.CompletedProcess[str]:
        command = render_job(PG)["spec"]["template"]["spec"]["containers"][0]["command"]
        return subprocess.run(command, env=self.job_env(), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    need("runuser", "util-linux")
    binary = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="hl-pgvector-"))
    root.chmod(0o755)
    user = None
    if os.geteuid() == 0:
        user = "nobody"
        pwd.getpwnam(user)
    if user:
        # The unprivileged server user must reach the binaries; the checkout (and its .venv) may
        # sit under a 0700 directory (`mktemp -d`). PostgreSQL is relocatable: use a copy of the
        # install and of the wheel's libraries its RPATH names ($ORIGIN/../../../pgserver.libs).
        site = binary.parent.parent.parent
        copy = root / "site"
        shutil.copytree(site / "pgserver.libs", copy / "pgserver.libs", symlinks=True)
        binary = Path(shutil.copytree(binary.parent, copy / "pgserver" / "pginstall", symlinks=True)) / "bin"
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if user:
        shutil.chown(root, user)
        shutil.chown(sock, user)
        shutil.chown(pwfile, user)
    srv = Server(binary, free_port(), root, user)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            srv.as_user(
                [
                    str(binary / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        proc = subprocess.Popen(
            srv.as_user(
                [
                    str(binary / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(sock),
                    "-p",
                    str(srv.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(root / "server.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(binary / "pg_isready"), "-h", "127.0.0.1", "-p", str(srv.port)], capture_output=True
            ).returncode
            != 0
        ):
            assert proc.poll() is None, (root / "server.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not start within 60 s"
            time.sleep(0.2)
        # What the postgres image's entrypoint does with POSTGRES_USER/POSTGRES_DB: the bootstrap
        # user is a superuser and owns the apps' database.
        srv.psql(
            f"CREATE ROLE {DATABASE_USER} SUPERUSER LOGIN PASSWORD '{PASSWORD}'", database="postgres", user="postgres"
        )
        srv.psql(f"CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_USER}", database="postgres", user="postgres")
        yield srv
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def test_the_job_enables_the_extension_and_is_idempotent(server: Server) -> None:
    assert server.psql(f"SELECT count(*) FROM pg_extension WHERE extname = '{EXTENSION}'") == "0"
    first = server.run_job()
    assert first.returncode == 0, first.stderr
    installed = server.psql(f"SELECT extversion FROM pg_extension WHERE extname = '{EXTENSION}'")
    default = server.psql(f"SELECT default_version FROM pg_available_extensions WHERE name = '{EXTENSION}'")
    assert installed == default, (installed, default)
    assert f"vector extension {installed} in {DATABASE_NAME}" in first.stdout
    second = server.run_job()
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert server.psql(f"SELECT count(*) FROM pg_extension WHERE extname = '{EXTENSION}'") == "1"
    assert "PASSW" not in first.stdout + first.stderr + second.stdout + second.stderr


def test_similarity_search_finds_the_nearest(server: Server) -> None:
    assert server.run_job().returncode == 0
    server.psql("DROP TABLE IF EXISTS passages")
    server.psql("CREATE TABLE passages (id int PRIMARY KEY, ref text NOT NULL, embedding vector(3) NOT NULL)")
    server.psql(
        "INSERT INTO passages VALUES"
        " (1, 'Genesis 1:1', '[1, 0, 0]'), (2, 'John 1:1', '[0.9, 0.1, 0]'),"
        " (3, 'Psalm 23:1', '[0, 1, 0]'), (4, 'Romans 8:28', '[0, 0, 1]'), (5, 'Ruth 1:16', '[0, 0.7, 0.7]')"
    )
    # Nearest is John 1:1 (L2 0.028), then Genesis 1:1 (0.113): no tie, so the order is the answer.
    # ([0.95, 0.05, 0] was equidistant from both and HNSW returned them either way round.)
    query = "[0.92, 0.08, 0.0]"
    nearest = server.psql(f"SELECT id FROM passages ORDER BY embedding <-> '{query}' LIMIT 2")
    assert nearest.splitlines() == ["2", "1"]
    cosine = server.psql("SELECT ref FROM passages ORDER BY embedding <=> '[0, 0.6, 0.8]' LIMIT 1")
    assert cosine == "Ruth 1:16"
    # The same answer through an HNSW index (what a RAG service would build), the planner forced onto it.
    server.psql("CREATE INDEX IF NOT EXISTS passages_hnsw ON passages USING hnsw (embedding vector_l2_ops)")
    plan_and_rows = server.psql(
        "SET enable_seqscan = off; "
        f"EXPLAIN (COSTS OFF) SELECT id FROM passages ORDER BY embedding <-> '{query}' LIMIT 2"
    )
    assert "passages_hnsw" in plan_and_rows
    indexed = server.psql(f"SET enable_seqscan = off; SELECT id FROM passages ORDER BY embedding <-> '{query}' LIMIT 2")
    assert [line for line in indexed.splitlines() if line != "SET"] == ["2", "1"]


def test_the_script_runs_exactly_the_setup_statements() -> None:
    """The statements above are the component's: the Job's script carries each, in order, once."""
    command = render_job(PG)["spec"]["template"]["spec"]["containers"][0]["command"]
    script = command[-1]
    positions = [script.index(f"{s};") for s in setup_statements()]
    assert positions == sorted(positions)
    assert all(script.count(f"{s};") == 1 for s in setup_statements())
