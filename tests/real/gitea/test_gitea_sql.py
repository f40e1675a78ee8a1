"""Gitea's SQL scripts against a real PostgreSQL (Debian's, started here on loopback).

Runs the exact shell scripts the init Job and the Gitea pod's init container run (`/bin/sh -c`,
connection in PG* variables, secrets in the environment), twice each, and checks the database
afterwards. Real: PostgreSQL server and psql. Double: the `action_runner_token` table, created
here with the columns and unique index Gitea 1.22's xorm model gives it (Gitea itself is not
packaged for Debian).

The server listens on 127.0.0.1 on a free port with its socket in a temp dir; it is stopped and
its directory removed after the test, also on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.ci.gitea import render_db_init_script, render_runner_token_script
from tests.prereq import free_port, need

pytestmark = [pytest.mark.realdb]

ADMIN_PASSWORD = "admin-pw-7d1f"

RUNNER_TOKEN_TABLE_DOUBLE = """
CREATE TABLE action_runner_token (
  id BIGSERIAL PRIMARY KEY NOT NULL,
  token VARCHAR(255) NULL,
  owner_id BIGINT NULL,
  repo_id BIGINT NULL,
  is_active BOOLEAN NULL,
  created BIGINT NULL,
  updated BIGINT NULL,
  deleted BIGINT NULL
);
CREATE UNIQUE INDEX "UQE_action_runner_token_token" ON action_runner_token (token);
CREATE INDEX "IDX_action_runner_token_owner_id" ON action_runner_token (owner_id);
CREATE INDEX "IDX_action_runner_token_repo_id" ON action_runner_token (repo_id);
"""


def pg_bin(name: str) -> str:
    for version in ("17", "16", "15"):
        path = f"/usr/lib/postgresql/{version}/bin/{name}"
        if os.path.exists(path):
            return path
    return need(name, "postgresql")


@dataclass
class Server:
    port: int
    root: Path

    def env(self, user: str, password: str, database: str, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGDATABASE": database,
            **extra,
        }

    def sh(self, script: str, env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=False)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def sql(self, query: str, *, user: str = "postgres", password: str = ADMIN_PASSWORD, db: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query],
            env=self.env(user, password, db),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout.strip()


@pytest.fixture
def server() -> Iterator[Server]:
    need("psql", "postgresql-client")
    need("runuser", "util-linux")
    if os.geteuid() != 0:
        need("runuser", "util-linux", root=True)
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="hl5pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    shutil.chown(root, "postgres")
    shutil.chown(sock, "postgres")
    shutil.chown(pwfile, "postgres")
    port = free_port()

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True)

    started = False
    try:
        as_postgres(
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "-E",
            "UTF8",
        )
        as_postgres(
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock}",
            "start",
        )
        started = True
        yield Server(port, root)
    finally:
        if started:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


def test_db_init_creates_role_and_database_idempotently(server: Server) -> None:
    script = render_db_init_script(database="gitea", user="gitea")
    first = server.env("postgres", ADMIN_PASSWORD, "postgres", GITEA_DB_PASSWORD="gitea-pw-1")
    out1 = server.sh(script, first)
    out2 = server.sh(script, first)
    for out in (out1, out2):
        assert "gitea-pw-1" not in out.stdout + out.stderr
    assert server.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'gitea'") == "1"
    assert server.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'gitea'") == "gitea"
    assert server.sql("SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = 'gitea'") == "f"
    # Gitea can log in and create its tables
    server.sql("CREATE TABLE probe (id int)", user="gitea", password="gitea-pw-1", db="gitea")
    # PUBLIC cannot connect to Gitea's database
    server.sql("CREATE ROLE other LOGIN PASSWORD 'other-pw'")
    with pytest.raises(RuntimeError, match="permission denied"):
        server.sql("SELECT 1", user="other", password="other-pw", db="gitea")
    # a new password is re-asserted on the next run; the old one stops working; data stays
    server.sh(script, server.env("postgres", ADMIN_PASSWORD, "postgres", GITEA_DB_PASSWORD="gitea-pw-2"))
    with pytest.raises(RuntimeError, match="password authentication failed"):
        server.sql("SELECT 1", user="gitea", password="gitea-pw-1", db="gitea")
    assert server.sql("SELECT count(*) FROM probe", user="gitea", password="gitea-pw-2", db="gitea") == "0"


def test_db_init_fails_loudly_with_a_wrong_admin_password(server: Server) -> None:
    out = server.sh(
        render_db_init_script(database="gitea", user="gitea"),
        server.env("postgres", "wrong", "postgres", GITEA_DB_PASSWORD="gitea-pw-1"),
        check=False,
    )
    assert out.returncode != 0 and "password authentication failed" in out.stderr


def test_runner_token_becomes_the_newest_active_global_token(server: Server) -> None:
    server.sh(
        render_db_init_script(database="gitea", user="gitea"),
        server.env("postgres", ADMIN_PASSWORD, "postgres", GITEA_DB_PASSWORD="gitea-pw"),
    )

    def q(query: str) -> str:
        return server.sql(query, user="gitea", password="gitea-pw", db="gitea")

    q(RUNNER_TOKEN_TABLE_DOUBLE)
    # history as Gitea would leave it: our token once, then one generated in the web UI, and a
    # repository-scoped token that must not be touched
    q(
        "INSERT INTO action_runner_token (token, owner_id, repo_id, is_active) VALUES "
        "('shared-token', 0, 0, false), ('ui-token', 0, 0, true), ('repo-token', 0, 7, true)"
    )
    env = server.env("gitea", "gitea-pw", "gitea", GITEA_RUNNER_REGISTRATION_TOKEN="shared-token")
    script = render_runner_token_script()

    def state() -> list[str]:
        return q(
            "SELECT token || ':' || is_active FROM action_runner_token WHERE owner_id = 0 AND repo_id = 0 "
            "ORDER BY id DESC"
        ).splitlines()

    out = server.sh(script, env)
    assert "shared-token" not in out.stdout + out.stderr
    assert state() == ["shared-token:true", "ui-token:false"]
    newest = q("SELECT max(id) FROM action_runner_token WHERE owner_id = 0 AND repo_id = 0")
    server.sh(script, env)  # idempotent: same row, same id
    assert state() == ["shared-token:true", "ui-token:false"]
    assert q("SELECT id FROM action_runner_token WHERE token = 'shared-token'") == newest
    # someone resets the token in the UI; the next Gitea start takes it back
    q("UPDATE action_runner_token SET is_active = false WHERE owner_id = 0 AND repo_id = 0")
    q("INSERT INTO action_runner_token (token, owner_id, repo_id, is_active) VALUES ('reset-token', 0, 0, true)")
    server.sh(script, env)
    assert state()[0] == "shared-token:true"
    assert all(s.endswith(":false") for s in state()[1:])
    assert q("SELECT is_active FROM action_runner_token WHERE token = 'repo-token'") == "t"
