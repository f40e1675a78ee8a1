"""Backups and restores against real servers: the CronJob's dump command, then docs/restore.md.

For each database kind, with Debian's server started by the test in a network namespace of its
own (see sandbox.py):
1. initialise the server as the official image would on an empty volume, load a little data;
2. run the backup CronJob's *rendered* container command and environment (taken from
   `render_backup_cronjob`, the manifest `pulumi up` applies) three times with `keep: 2`, a stale
   `.partial` left in between: exactly the two newest complete dumps must remain;
3. lose the data (stop the server, wipe its directory, initialise it empty again);
4. run the `restore-<kind>` blocks of docs/restore.md verbatim with `BACKUP` pointing at the newest
   dump. `kubectl` there is a TEST DOUBLE: `kubectl ... exec -i <pod> -- CMD` runs CMD inside the
   sandbox with the environment the rendered StatefulSet container would have; other kubectl
   commands are recorded and do nothing;
5. compare row counts / keys / values with what was loaded.

Differences from the cluster, named: Debian's PostgreSQL 15 / MariaDB 10.11 / Redis 7.0 instead
of the images' PostgreSQL 16 / MySQL 8.4 / Redis 7.4 (the dump and restore clients are the same
programs and options); the pod's Unix socket location is passed as PGHOST (PostgreSQL) or bound where the pod has it
(MySQL's /run/mysqld).
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.platform.database_backup import backup_command, render_backup_cronjob
from components.platform.database_manifests import DATABASE_NAME, DATABASE_USER, render_statefulset
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind
from tests.prereq import need

from .sandbox import Sandbox, pod_env

pytestmark = [pytest.mark.realdb, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
RESTORE_DOC = ROOT / "docs" / "restore.md"
PASSWORD = "Rt4xQm9LpZ2vWc7N"  # a test credential, like the generated ones (alphanumeric)
TIMINGS: dict[str, float] = {}


def db_config(version: str) -> DatabaseConfig:
    return DatabaseConfig.model_validate(
        {
            "version": version,
            "node": "rack-db-1",
            "size": "1Gi",
            "cpu": "100m",
            "memory": "256Mi",
            "backup": {"keep": 2},
        }
    )


def restore_block(kind: DatabaseKind) -> str:
    blocks = re.findall(rf"^```sh restore-{kind.value}\n(.*?)^```$", RESTORE_DOC.read_text(), re.M | re.S)
    assert len(blocks) == 1, f"docs/restore.md must have exactly one restore-{kind.value} block"
    return str(blocks[0])


def cron_container(kind: DatabaseKind, cfg: DatabaseConfig) -> dict[str, Any]:
    cron = render_backup_cronjob(kind, cfg)
    container: dict[str, Any] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == backup_command(kind, cfg)
    return container


def server_container(kind: DatabaseKind, cfg: DatabaseConfig) -> dict[str, Any]:
    container: dict[str, Any] = render_statefulset(kind, cfg)["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    need("ip", "iproute2", root=True)
    need("runuser", "util-linux")
    sb = Sandbox()
    try:
        sb.start()
        yield sb
    finally:
        sb.stop()


def run_backups(sb: Sandbox, kind: DatabaseKind, cfg: DatabaseConfig, user: str) -> Path:
    """Three CronJob runs (keep: 2) with a stale partial in between; returns the newest dump."""
    container = cron_container(kind, cfg)
    env = pod_env(container, PASSWORD)
    backup = sb.dir(f"{kind.value}-backup", owner=user)
    tmp = sb.dir(f"{kind.value}-cron-tmp", owner=user, mode=0o1777)
    started = time.monotonic()
    for i in range(3):
        if i:
            time.sleep(1.1)  # dumps are named by the second
        if i == 2:
            stale = backup / "20000101T000000Z.partial"
            stale.mkdir()
            shutil.chown(stale, user, user)
        sb.run(container["command"], env=env, mounts={"/backup": backup, "/tmp": tmp}, user=user)
    TIMINGS[f"{kind.value} 3 backups"] = time.monotonic() - started
    kept = sorted(p.name for p in backup.iterdir())
    assert len(kept) == 2, kept
    assert all(re.fullmatch(r"\d{8}T\d{6}Z", name) for name in kept), kept
    assert not any(p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) for p in backup.iterdir()), "dumps must be 0700"
    return backup / kept[-1]


def write_kubectl_double(sb: Sandbox, pods: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """The kubectl TEST DOUBLE: a script on PATH; returns (bin dir, call log)."""
    bindir = sb.dir("kubectl-double", mode=0o755)
    log = sb.root / "kubectl-calls.jsonl"
    spec = bindir / "spec.json"
    spec.write_text(json.dumps({"log": str(log), "pods": pods}))
    script = bindir / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "# TEST DOUBLE of kubectl: `kubectl ... exec [-i] POD -- CMD` runs CMD in the sandbox with the\n"
        "# pod's environment; any other kubectl command is recorded and does nothing.\n"
        "import json, os, sys\n"
        f"spec = json.load(open({str(spec)!r}))\n"
        "args = sys.argv[1:]\n"
        "with open(spec['log'], 'a') as log:\n"
        "    log.write(json.dumps(args) + '\\n')\n"
        "if 'exec' not in args:\n"
        "    sys.exit(0)\n"
        "cut = args.index('--')\n"
        "pod = [a for a in args[args.index('exec') + 1:cut] if not a.startswith('-')][0]\n"
        "target = spec['pods'][pod]\n"
        "env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C.UTF-8', **target['env']}\n"
        "os.execvpe(target['argv'][0], target['argv'] + args[cut + 1:], env)\n"
    )
    script.chmod(0o755)
    return bindir, log


def run_restore(sb: Sandbox, kind: DatabaseKind, pod: dict[str, Any], dump: Path) -> list[list[str]]:
    bindir, log = write_kubectl_double(sb, {f"{kind.value}-0": pod})
    env = {"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin", "BACKUP": str(dump), "LANG": "C.UTF-8"}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-e", "-c", restore_block(kind)], env=env, capture_output=True, timeout=300, cwd=sb.root
    )
    TIMINGS[f"{kind.value} restore"] = time.monotonic() - started
    assert result.returncode == 0, (
        f"restore failed:\n{result.stdout.decode()[-3000:]}\n{result.stderr.decode()[-3000:]}"
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and all("exec" in c for c in calls), calls
    return calls


# --- PostgreSQL ----------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        need(name, "postgresql")
    return found[-1]


class Postgres:
    def __init__(self, sb: Sandbox):
        self.sb = sb
        self.data = sb.root / "pg-data"
        self.sock = sb.dir("pg-sock", owner="postgres", mode=0o755)
        self.log = sb.dir("pg-log", owner="postgres") / "pg.log"

    def init(self) -> None:
        """As the image's entrypoint on an empty volume: initdb with the bootstrap user, create the db."""
        shutil.rmtree(self.data, ignore_errors=True)
        self.sb.dir("pg-data", owner="postgres")
        pwfile = self.sb.dir("pg-pw", owner="postgres") / "pw"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        self.sb.run(
            [
                pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                DATABASE_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            user="postgres",
        )
        pwfile.unlink()
        self.sb.run(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-o",
                f"-c listen_addresses=127.0.0.1 -c port=5432 -k {self.sock}",
                "start",
            ],
            user="postgres",
        )
        self.sql("postgres", f"CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_USER}")

    def stop(self) -> None:
        self.sb.run([pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], user="postgres")

    def sql(self, db: str, query: str) -> str:
        out = self.sb.run(
            [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.sock),
                "-U",
                DATABASE_USER,
                "-d",
                db,
                "-c",
                query,
            ],
            user="postgres",
        )
        return out.stdout.decode().strip()

    def snapshot(self) -> dict[str, str]:
        return {
            "items": self.sql(DATABASE_NAME, "SELECT count(*), sum(id), max(name) FROM items"),
            "repos": self.sql("gitea", "SELECT count(*), string_agg(name, ',' ORDER BY id) FROM repos"),
            "role": self.sql("postgres", "SELECT rolname FROM pg_roles WHERE rolname = 'gitea'"),
            "owner": self.sql("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'gitea'"),
        }


def test_postgres_backup_and_restore_round_trip(sandbox: Sandbox) -> None:
    need("pg_dump", "postgresql")
    pg_bin("initdb")
    kind, cfg = DatabaseKind.POSTGRES, db_config("16.6")
    pg = Postgres(sandbox)
    pg.init()
    pg.sql(DATABASE_NAME, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
    pg.sql(DATABASE_NAME, "INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 5000) g")
    pg.sql("postgres", "CREATE ROLE gitea LOGIN PASSWORD 'gitea-test'")
    pg.sql("postgres", "CREATE DATABASE gitea OWNER gitea")
    pg.sql("gitea", "CREATE TABLE repos (id serial PRIMARY KEY, name text)")
    pg.sql("gitea", "INSERT INTO repos (name) SELECT 'repo-' || g FROM generate_series(1, 300) g")
    pg.sql("gitea", "ALTER TABLE repos OWNER TO gitea")
    before = pg.snapshot()
    assert before["items"].startswith("5000|") and before["role"] == "gitea"

    dump = run_backups(sandbox, kind, cfg, "postgres")
    assert sorted(p.name for p in dump.iterdir()) == ["gitea.dump", "globals.sql", "homelab.dump", "postgres.dump"]

    pg.stop()
    pg.init()  # the volume is lost: an empty server, as the image makes it
    assert pg.sql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'gitea'") == "0"

    env = {**pod_env(server_container(kind, cfg), PASSWORD), "PGHOST": str(pg.sock), "PGPORT": "5432"}
    run_restore(sandbox, kind, {"env": env, "argv": sandbox.argv([], user="postgres")}, dump)
    assert pg.snapshot() == before
    pg.stop()


# --- MySQL (MariaDB) ---------------------------------------------------------------------------


class Mariadb:
    def __init__(self, sb: Sandbox):
        self.sb = sb
        self.data = sb.root / "my-data"
        self.run_dir = sb.dir("my-run", owner="mysql", mode=0o755)
        self.sock = self.run_dir / "mysqld.sock"

    def init(self) -> None:
        """As the image's entrypoint on an empty volume: root with the password, the app user and db."""
        shutil.rmtree(self.data, ignore_errors=True)
        self.sb.dir("my-data", owner="mysql")
        self.sb.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        )
        self.sb.spawn(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.sock}",
                "--port=3306",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.run_dir}/mysqld.pid",
            ],
            user="mysql",
            log=self.sb.root / "mariadb.log",
        )
        for _ in range(120):
            if (
                self.sb.run(["mysqladmin", "--no-defaults", "-S", str(self.sock), "ping"], check=False).returncode
                == 0
            ):
                break
            time.sleep(0.5)
        self.sql(
            f"ALTER USER root@localhost IDENTIFIED BY '{PASSWORD}';"
            f"CREATE USER root@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;"
            f"CREATE DATABASE {DATABASE_NAME}; CREATE USER {DATABASE_USER}@'%' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT ALL ON {DATABASE_NAME}.* TO {DATABASE_USER}@'%'; FLUSH PRIVILEGES;",
            password=None,
        )

    def stop(self) -> None:
        self.sb.run(
            ["mysqladmin", "--no-defaults", "-S", str(self.sock), "-uroot", "shutdown"], env={"MYSQL_PWD": PASSWORD}
        )
        for _ in range(60):
            if not self.sock.exists():
                break
            time.sleep(0.5)

    def sql(self, query: str, password: str | None = PASSWORD) -> str:
        env = {"MYSQL_PWD": password} if password else {}
        out = self.sb.run(
            ["mysql", "--no-defaults", "-S", str(self.sock), "-uroot", "-N", "-B", "-e", query], env=env
        )
        return out.stdout.decode().strip()

    def snapshot(self) -> dict[str, str]:
        return {
            "items": self.sql(f"SELECT count(*), sum(id), max(name) FROM {DATABASE_NAME}.items"),
            "orders": self.sql("SELECT count(*), sum(total) FROM shop.orders"),
            "view": self.sql("SELECT count(*) FROM shop.big_orders"),
        }


def test_mysql_backup_and_restore_round_trip(sandbox: Sandbox) -> None:
    need("mariadbd", "mariadb-server")
    need("mysqldump", "mariadb-client")
    kind, cfg = DatabaseKind.MYSQL, db_config("8.4.3")
    my = Mariadb(sandbox)
    my.init()
    my.sql(
        "SET SESSION max_recursive_iterations = 100000;"  # MariaDB's CTE limit (test data only)
        f"CREATE TABLE {DATABASE_NAME}.items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL) ENGINE=InnoDB;"
        f"INSERT INTO {DATABASE_NAME}.items"
        " WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)"
        " SELECT n, CONCAT('item-', n) FROM g;"
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, total INT) ENGINE=InnoDB;"
        "INSERT INTO shop.orders WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 250)"
        " SELECT n, n * 3 FROM g;"
        "CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 300;"
    )
    before = my.snapshot()
    assert before["items"].startswith("5000\t") and before["view"] == "150"

    dump = run_backups(sandbox, kind, cfg, "mysql")
    assert [p.name for p in dump.iterdir()] == ["all.sql"]

    my.stop()
    my.init()
    assert my.sql("SHOW DATABASES LIKE 'shop'") == ""

    tmp = sandbox.dir("my-restore-tmp", owner="mysql", mode=0o1777)
    env = pod_env(server_container(kind, cfg), PASSWORD)
    # The server's socket directory appears where the pod has it (the client's default path).
    mounts = {"/run/mysqld": my.run_dir, "/tmp": tmp}
    run_restore(sandbox, kind, {"env": env, "argv": sandbox.argv([], mounts=mounts, user="mysql")}, dump)
    assert my.snapshot() == before
    my.stop()


# --- Redis -------------------------------------------------------------------------------------


class Redis:
    """Started with the StatefulSet's own rendered command and environment."""

    def __init__(self, sb: Sandbox, cfg: DatabaseConfig):
        self.sb = sb
        self.container = server_container(DatabaseKind.REDIS, cfg)
        self.env = pod_env(self.container, PASSWORD)
        self.data = sb.dir("redis-data", owner="redis")
        self.tmp = sb.dir("redis-tmp", owner="redis", mode=0o1777)

    @property
    def mounts(self) -> dict[str, Path]:
        return {"/data": self.data, "/tmp": self.tmp}  # /tmp last: it hides the host's /tmp

    def start(self) -> None:
        self.sb.spawn(
            self.container["command"], env=self.env, mounts=self.mounts, user="redis", log=self.sb.root / "redis.log"
        )
        for _ in range(100):
            if self.cli("ping", check=False) == "PONG":
                return
            time.sleep(0.1)
        raise AssertionError("redis did not start: " + (self.sb.root / "redis.log").read_text()[-2000:])

    def cli(self, *args: str, check: bool = True) -> str:
        out = self.sb.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], env={"REDISCLI_AUTH": PASSWORD}, check=check
        )
        return out.stdout.decode().strip()

    def snapshot(self) -> dict[str, str]:
        return {
            "dbsize": self.cli("dbsize"),
            "k1": self.cli("get", "key:1"),
            "k1999": self.cli("get", "key:1999"),
            "hash": self.cli("hgetall", "user:1"),
            "list": self.cli("lrange", "queue", "0", "-1"),
        }


def test_redis_backup_and_restore_round_trip(sandbox: Sandbox) -> None:
    need("redis-server", "redis-server")
    need("redis-cli", "redis-tools")
    kind, cfg = DatabaseKind.REDIS, db_config("7.4.1")
    redis = Redis(sandbox, cfg)
    redis.start()
    # The password never reaches the server's command line (it goes into a 0600 file on /tmp).
    assert all(PASSWORD not in part for part in redis.container["command"])
    assert redis.cli("config", "get", "appendonly").split() == ["appendonly", "yes"]
    commands = "".join(f"SET key:{i} value-{i}\r\n" for i in range(2000)).encode()
    sandbox.run(["redis-cli", "-h", "127.0.0.1", "--pipe"], env={"REDISCLI_AUTH": PASSWORD}, stdin=commands)
    redis.cli("hset", "user:1", "name", "ada", "role", "admin")
    redis.cli("rpush", "queue", "a", "b", "c")
    before = redis.snapshot()
    assert before["dbsize"] == "2002"

    dump = run_backups(sandbox, kind, cfg, "redis")
    assert [p.name for p in dump.iterdir()] == ["dump.rdb"]

    redis.cli("shutdown", "nosave", check=False)
    time.sleep(0.5)
    for item in redis.data.iterdir():  # the volume is lost
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    redis.start()
    assert redis.cli("dbsize") == "0"

    run_restore(sandbox, kind, {"env": redis.env, "argv": sandbox.argv([], mounts=redis.mounts, user="redis")}, dump)
    assert redis.snapshot() == before
    assert not (redis.data / "restore").exists(), "the restore cleans up after itself"
    # Restored data survives a restart: the AOF was rewritten from the synced dataset.
    redis.cli("shutdown", check=False)
    time.sleep(0.5)
    redis.start()
    assert redis.snapshot() == before
    redis.cli("shutdown", "nosave", check=False)


def teardown_module() -> None:
    if TIMINGS:
        print("\n" + "\n".join(f"  {k}: {v:.2f}s" for k, v in TIMINGS.items()), file=sys.stderr)
