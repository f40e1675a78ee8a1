"""Restore drills: real servers, real restic, a real SFTP server on another "machine", and the
restore commands of docs/restore.md run as they are written.

Layout (all made here, all removed after, also on failure):
- the database node: the network namespace of tests/real/databases/sandbox.py, where Debian's
  PostgreSQL, MariaDB and Redis run together (one node holds them all, as on the homelab rack),
  and VictoriaMetrics (the release the rack pins, built by monitoring/build-vm.sh) answers as
  `victoria-metrics.monitoring.svc.cluster.local:8428`;
- the NAS: a second network namespace joined to the node by a veth pair only, running Debian's
  OpenSSH server (its own host key) with the restic repositories in a directory of its own. The
  repository URL is `sftp:root@10.240.0.2:<dir>`, so every byte goes over SSH to the other
  namespace: an off-node copy, not a local path.

For each dataset, the CronJob's own rendered containers run: the dump (as before) then the copy,
`offsite_script` as rendered, with the pod's environment, as the pod's uid (numeric, through
`setpriv`), with the rendered `/etc/passwd` line bound over /etc/passwd (what makes OpenSSH's
client work in the restic image) and busybox's `wget` (the image's) on PATH. Each dataset is
copied twice with a small change in between (the figures restic prints are the report's
dedup numbers). Then the node's disk "dies": the data directory *and* the local dumps are
deleted, and the dataset comes back from the NAS alone through docs/restore.md's `fetch-offsite`
block and the existing `restore-<kind>` block (PostgreSQL first, while MariaDB and Redis keep
running: their data, and their repositories' files, must not change). Gitea's files (a real bare
git repository pushed to with git, LFS objects, packages, app.ini) come back through the
`restore-gitea` block. The local fast path (`fetch-local`) is drilled against the node's dumps.

TEST DOUBLES, named: `kubectl` (as in tests/real/databases: `exec` runs in the sandbox with the
pod's environment, everything else is recorded); `ssh "$NODE" CMD` runs CMD as root on the node
namespace instead of logging in as `pi` and using `sudo -n` (any other ssh call, restic's SFTP
transport, is the real OpenSSH client). Differences from the cluster: Debian's restic 0.14 for
the image's 0.17 (the commands use options both have), Debian's servers as in
tests/real/databases.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.ci import gitea_backup
from components.observability import monitoring_config as mc
from components.platform.database_backup import OffsiteCopy, render_backup_cronjob
from components.platform.offsite_backup import METRIC, passwd_line
from rack.config import DatabaseKind, Monitoring, Offsite
from tests.prereq import need
from tests.real.databases.sandbox import Sandbox, pod_env
from tests.real.databases.test_database_backups import (
    DATABASE_NAME,
    PASSWORD,
    Mariadb,
    Postgres,
    Redis,
    db_config,
    server_container,
    write_kubectl_double,
)

pytestmark = [pytest.mark.realdb, pytest.mark.realssh, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
RESTORE_DOC = ROOT / "docs" / "restore.md"
RESTIC_PASSWORD = "RepoPw7Hq2Lx9Vb4Nc6Zt1Kd8Jm3Wr5"  # a test credential
NAS = "10.240.0.2"
NODE_SIDE = "10.240.0.1"
MON = Monitoring.model_validate({"node": "rack-db-1"})
VM_BIN = Path(os.environ.get("HOMELAB_VM_CACHE", Path.home() / ".cache" / "homelab-rack" / "vm")) / MON.store_version
FIGURES: dict[str, Any] = {}


def doc_block(name: str) -> str:
    blocks = re.findall(rf"^ *```sh {name}\n(.*?)^ *```$", RESTORE_DOC.read_text(), re.M | re.S)
    assert len(blocks) == 1, f"docs/restore.md must have exactly one `{name}` block"
    return textwrap.dedent(str(blocks[0]))


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


@dataclass
class Drill:
    sb: Sandbox
    nas_ns: str
    repo_dir: Path
    offsite: Offsite
    tools: Path
    laptop_ssh: Path
    metrics: bool
    outputs: list[str] = field(default_factory=list)

    def copy_env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {"RESTIC_PASSWORD": RESTIC_PASSWORD, "BACKUP_SSH_KEY": (self.tools / "nas_key").read_text()}
        names = {e["name"] for e in container["env"]}
        assert names == set(env), names
        return {**env, "PATH": f"{self.tools}:/usr/sbin:/usr/bin:/sbin:/bin"}

    def run_pod(self, cron: dict[str, Any], user: str, mounts: dict[str, Path]) -> str:
        """The CronJob's pod: init containers, then the containers, each as `user`'s uid (numeric,
        like the pod's runAsUser) with the rendered /etc/passwd line bound over /etc/passwd."""
        spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)
        gid = int(subprocess.run(["id", "-g", user], capture_output=True, text=True, check=True).stdout)
        passwd = self.sb.root / f"passwd-{uid}"
        passwd.write_text(passwd_line(uid))
        out = ""
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if container["name"] == "offsite":
                env = self.copy_env(container)
                binds = {"/etc/passwd": passwd, **mounts}  # before /tmp hides the file
            else:
                env = pod_env(container, PASSWORD)
                binds = mounts
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *container["command"]]
            result = self.sb.run(argv, env=env, mounts=binds, timeout=600)
            out += result.stdout.decode() + result.stderr.decode()
        self.outputs.append(out)
        return out

    def laptop(self, block: str, env: dict[str, str], *, kubectl_pods: dict[str, Any] | None = None) -> str:
        """A docs/restore.md block, verbatim, as the operator's machine runs it (in the node's
        namespace, which is the one with a route to the NAS; its ~/.ssh is the operator's)."""
        bindir, _ = write_kubectl_double(self.sb, kubectl_pods or {})
        full = {
            "PATH": f"{bindir}:{self.tools}/laptop:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "REPOSITORY": self.offsite.repository or "",
            "RESTIC_PASSWORD": RESTIC_PASSWORD,
            "RESTIC_CACHE_DIR": str(self.sb.root / "laptop-cache"),
            "NODE": "pi@rack-db-1",
            **env,
        }
        result = self.sb.run(["bash", "-e", "-c", block], env=full, mounts={"/root/.ssh": self.laptop_ssh}, timeout=600)
        out = result.stdout.decode() + result.stderr.decode()
        self.outputs.append(out)
        return out

    def snapshots(self, dataset: str) -> list[dict[str, Any]]:
        out = self.laptop(f'restic -r "$REPOSITORY/{dataset}" snapshots --json\n', {})
        return list(json.loads(out.strip().splitlines()[-1]))

    def repo_files(self, dataset: str) -> dict[str, float]:
        base = self.repo_dir / dataset
        return {str(p.relative_to(base)): p.stat().st_mtime for p in base.rglob("*") if p.is_file()}


def added(out: str) -> str:
    found = re.findall(r"Added to the repository: (.+)", out)
    assert len(found) == 1, out[-3000:]
    return found[0].strip()


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    need("ip", "iproute2", root=True)
    sshd = need("sshd", "openssh-server", root=True)
    need("ssh", "openssh-client")
    need("restic", "restic")
    need("setpriv", "util-linux")
    need("busybox", "busybox-static")
    need("git", "git")
    sb = Sandbox()
    tmp = tmp_path_factory.mktemp("drill")
    tag = f"{os.getpid() % 100000}"
    nas_ns, veth_node, veth_nas = f"hlnas-{tag}", f"hlnA{tag}", f"hlnB{tag}"
    nas_proc: subprocess.Popen[bytes] | None = None
    try:
        sb.start()
        sh("ip", "netns", "add", nas_ns)
        sh("ip", "link", "add", veth_node, "type", "veth", "peer", "name", veth_nas)
        sh("ip", "link", "set", veth_node, "netns", sb.ns)
        sh("ip", "link", "set", veth_nas, "netns", nas_ns)
        sh("ip", "-n", sb.ns, "addr", "add", f"{NODE_SIDE}/30", "dev", veth_node)
        sh("ip", "-n", nas_ns, "addr", "add", f"{NAS}/30", "dev", veth_nas)
        for ns, dev in ((sb.ns, veth_node), (nas_ns, veth_nas)):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", nas_ns, "link", "set", "lo", "up")
        # The NAS: its own sshd, host key and repository directory.
        nas = tmp / "nas"
        nas.mkdir()
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(nas / "host_key"))
        tools = tmp / "tools"
        (tools / "laptop").mkdir(parents=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "homelab-backup", "-f", str(tools / "nas_key"))
        (nas / "authorized_keys").write_text((tools / "nas_key.pub").read_text())
        repo_dir = nas / "restic"
        repo_dir.mkdir()
        (nas / "sshd_config").write_text(
            f"ListenAddress {NAS}\nPort 22\nHostKey {nas}/host_key\nPidFile {nas}/sshd.pid\n"
            f"AuthorizedKeysFile {nas}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        log = open(nas / "sshd.log", "wb")  # noqa: SIM115 - closed with the process
        nas_proc = subprocess.Popen(
            ["ip", "netns", "exec", nas_ns, sshd, "-D", "-e", "-f", str(nas / "sshd_config")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        host_key = (nas / "host_key.pub").read_text().strip()
        offsite = Offsite.model_validate(
            {"repository": f"sftp:root@{NAS}:{repo_dir}", "host-key": host_key, "retention": {"daily": 7}}
        )
        # The restic image's wget is busybox's: the pods' PATH gets the same.
        (tools / "wget").symlink_to(shutil.which("busybox") or "busybox")
        # The operator's ~/.ssh: their key on the NAS, its host key known.
        laptop_ssh = tmp / "laptop-ssh"
        laptop_ssh.mkdir(mode=0o700)
        shutil.copy(tools / "nas_key", laptop_ssh / "id_ed25519")
        (laptop_ssh / "id_ed25519").chmod(0o600)
        (laptop_ssh / "known_hosts").write_text(f"{NAS} {' '.join(host_key.split()[:2])}\n")
        # TEST DOUBLE of `ssh pi@<node> CMD` (see the module docstring); restic's sftp transport
        # (`ssh ... -s sftp`) goes to the real client.
        (tools / "laptop" / "ssh").write_text(
            "#!/bin/sh\n"
            'for a in "$@"; do [ "$a" = "-s" ] && exec /usr/bin/ssh "$@"; done\n'
            '[ "$1" = "pi@rack-db-1" ] || { echo "ssh double: unexpected $*" >&2; exit 2; }\n'
            'shift; exec sh -c "$*"\n'
        )
        (tools / "laptop" / "ssh").chmod(0o755)
        metrics = (VM_BIN / "bin" / "victoria-metrics").is_file()
        if metrics:
            hosts = sb.etc / "hosts"
            hosts.write_text(hosts.read_text().rstrip("\n") + f" {mc.service_host(mc.STORE_NAME)}\n")
            sb.spawn(
                [str(VM_BIN / "bin" / "victoria-metrics"), f"-storageDataPath={tmp / 'vm'}",
                 "-httpListenAddr=127.0.0.1:8428", "-loggerLevel=WARN"],
                log=tmp / "vm.log",
            )  # fmt: skip
        elif os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
            pytest.fail(f"{VM_BIN}/bin/victoria-metrics missing: run monitoring/build-vm.sh")
        yield Drill(sb, nas_ns, repo_dir, offsite, tools, laptop_ssh, metrics)
    finally:
        if nas_proc is not None:
            nas_proc.terminate()
            nas_proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", nas_ns], check=False, capture_output=True)
        sb.stop()


def vm_metric(drill: Drill, dataset: str) -> float | None:
    """The pushed success metric, read back from the store through its query API."""
    query = f'{METRIC}{{dataset="{dataset}"}}'
    params = urllib.parse.urlencode({"query": query, "latency_offset": "1s", "nocache": "1"})
    out = drill.sb.run(
        # A pushed sample is "now": visible at once only without the default 30 s latency offset.
        ["busybox", "wget", "-q", "-O", "-", f"http://127.0.0.1:8428/api/v1/query?{params}"],
    )
    result = json.loads(out.stdout)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def copy_twice(drill: Drill, name: str, cron: dict[str, Any], user: str, mounts: dict[str, Path], change: Any) -> None:
    first = drill.run_pod(cron, user, mounts)
    change()
    time.sleep(1.1)  # dumps are named by the second
    second = drill.run_pod(cron, user, mounts)
    FIGURES[f"{name} first run added"] = added(first)
    FIGURES[f"{name} second run added"] = added(second)
    assert f"offsite {name}: copied to {drill.offsite.repository}/{name}" in second
    # Two copies on one day: `forget --keep-daily` keeps that day's newest only.
    snaps = drill.snapshots(name)
    assert len(snaps) == 1 and snaps[0]["hostname"] == name and snaps[0]["tags"] == [name], snaps
    if drill.metrics:
        drill.sb.run(["busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8428/internal/force_flush"])
        time.sleep(1.5)  # past the 1 s latency offset the query asks for
        value = vm_metric(drill, name)
        assert value is not None and abs(value - time.time()) < 300, (name, value, second[-1500:])


def dump_mounts(drill: Drill, kind: DatabaseKind, user: str) -> dict[str, Path]:
    backup = drill.sb.dir(f"backup-{kind.value}", owner=user)
    tmp = drill.sb.dir(f"{kind.value}-cron-tmp", owner=user, mode=0o1777)
    return {"/backup": backup, "/tmp": tmp}


def cron_of(drill: Drill, kind: DatabaseKind) -> dict[str, Any]:
    url = mc.store_url() if drill.metrics else None
    cron = render_backup_cronjob(kind, db_config({"postgres": "16.6", "mysql": "8.4.3", "redis": "7.4.1"}[kind.value]),
                                 offsite=OffsiteCopy(drill.offsite, url))  # fmt: skip
    return cron


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root`: sha256 and mode (owner checked separately)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o7777)
    return out


def test_drill_every_dataset_from_the_off_node_copy_alone(drill: Drill) -> None:
    sb = drill.sb
    # --- three servers on one node, with data -----------------------------------------------
    pg = Postgres(sb)
    pg.init()
    pg.sql(DATABASE_NAME, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
    pg.sql(DATABASE_NAME, "INSERT INTO items SELECT g, 'item-' || g || repeat('x', 80) FROM generate_series(1, 5e4) g")
    pg.sql("postgres", "CREATE ROLE gitea LOGIN PASSWORD 'gitea-test'")
    pg.sql("postgres", "CREATE DATABASE gitea OWNER gitea")
    pg.sql("gitea", "CREATE TABLE repos (id serial PRIMARY KEY, name text)")
    pg.sql("gitea", "INSERT INTO repos (name) SELECT 'repo-' || g FROM generate_series(1, 300) g")
    pg.sql("gitea", "ALTER TABLE repos OWNER TO gitea")
    my = Mariadb(sb)
    my.init()
    my.sql(
        "SET SESSION max_recursive_iterations = 100000;"
        f"CREATE TABLE {DATABASE_NAME}.items (id INT PRIMARY KEY, name VARCHAR(120) NOT NULL) ENGINE=InnoDB;"
        f"INSERT INTO {DATABASE_NAME}.items WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g"
        " WHERE n < 50000) SELECT n, CONCAT('item-', n, REPEAT('y', 80)) FROM g;"
    )
    redis = Redis(sb, db_config("7.4.1"))
    redis.start()
    sb.run(["redis-cli", "-h", "127.0.0.1", "--pipe"], env={"REDISCLI_AUTH": PASSWORD},
           stdin="".join(f"SET key:{i} value-{i}-{'z' * 60}\r\n" for i in range(20000)).encode())  # fmt: skip

    # --- each dataset dumped and copied twice, a small change in between ------------------------
    users = {DatabaseKind.POSTGRES: "postgres", DatabaseKind.MYSQL: "mysql", DatabaseKind.REDIS: "redis"}
    mounts = {k: dump_mounts(drill, k, u) for k, u in users.items()}
    more = "INSERT INTO items SELECT g, 'new-' || g FROM generate_series(50001, 50100) g"
    copy_twice(drill, "postgres", cron_of(drill, DatabaseKind.POSTGRES), "postgres", mounts[DatabaseKind.POSTGRES],
               lambda: pg.sql(DATABASE_NAME, more))  # fmt: skip
    copy_twice(drill, "mysql", cron_of(drill, DatabaseKind.MYSQL), "mysql", mounts[DatabaseKind.MYSQL],
               lambda: my.sql(f"INSERT INTO {DATABASE_NAME}.items VALUES (50001, 'new')"))  # fmt: skip
    redis_mounts = {"/backup": mounts[DatabaseKind.REDIS]["/backup"], **redis.mounts}  # /tmp last: it hides /tmp
    copy_twice(drill, "redis", cron_of(drill, DatabaseKind.REDIS), "redis", redis_mounts,
               lambda: redis.cli("set", "key:new", "1"))  # fmt: skip
    before = {"postgres": pg.snapshot(), "mysql": items(my), "redis": redis.snapshot()}
    # The copies are what the repository holds: encrypted (no table name in any file).
    assert not any(b"item-1" in p.read_bytes() for p in drill.repo_dir.rglob("*") if p.is_file())

    # --- the local fast path: the newest dump read from the node through sudo ------------------
    newest = sorted(p.name for p in mounts[DatabaseKind.POSTGRES]["/backup"].iterdir())[-1]
    local = sb.root / "fetched-local"
    drill.laptop(doc_block("fetch-local"), {"BACKUP": str(local), "STORAGE": str(sb.root), "DATASET": "postgres",
                                           "DUMP": newest})  # fmt: skip
    assert tree_digest(local).keys() == tree_digest(mounts[DatabaseKind.POSTGRES]["/backup"] / newest).keys()

    # --- the node's disk dies for PostgreSQL: data and local dumps gone ------------------------
    others = {d: drill.repo_files(d) for d in ("mysql", "redis")}
    pg.stop()
    shutil.rmtree(mounts[DatabaseKind.POSTGRES]["/backup"])
    pg.init()
    started = time.monotonic()
    fetched = sb.root / "restore-postgres"
    drill.laptop(doc_block("fetch-offsite"), {"BACKUP": str(fetched), "DATASET": "postgres"})
    env = {**pod_env(server_container(DatabaseKind.POSTGRES, db_config("16.6")), PASSWORD), "PGHOST": str(pg.sock),
           "PGPORT": "5432"}  # fmt: skip
    pod = {"env": env, "argv": sb.argv([], user="postgres")}
    drill.laptop(doc_block("restore-postgres"), {"BACKUP": str(fetched)}, kubectl_pods={"postgres-0": pod})
    FIGURES["postgres restore (fetch + restore)"] = f"{time.monotonic() - started:.1f}s"
    assert pg.snapshot() == before["postgres"]
    # ...and it touched nothing else: the other servers' data and their repositories' files.
    assert items(my) == before["mysql"] and redis.snapshot() == before["redis"]
    assert {d: drill.repo_files(d) for d in ("mysql", "redis")} == others

    # --- MySQL and Redis, the same way --------------------------------------------------------
    my.stop()
    shutil.rmtree(mounts[DatabaseKind.MYSQL]["/backup"])
    my.init()
    started = time.monotonic()
    fetched = sb.root / "restore-mysql"
    drill.laptop(doc_block("fetch-offsite"), {"BACKUP": str(fetched), "DATASET": "mysql"})
    tmp = sb.dir("my-restore-tmp", owner="mysql", mode=0o1777)
    env = pod_env(server_container(DatabaseKind.MYSQL, db_config("8.4.3")), PASSWORD)
    pod = {"env": env, "argv": sb.argv([], mounts={"/run/mysqld": my.run_dir, "/tmp": tmp}, user="mysql")}
    drill.laptop(doc_block("restore-mysql"), {"BACKUP": str(fetched)}, kubectl_pods={"mysql-0": pod})
    FIGURES["mysql restore (fetch + restore)"] = f"{time.monotonic() - started:.1f}s"
    assert items(my) == before["mysql"]

    redis.cli("shutdown", "nosave", check=False)
    time.sleep(0.5)
    for item in redis.data.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    shutil.rmtree(mounts[DatabaseKind.REDIS]["/backup"])
    redis.start()
    started = time.monotonic()
    fetched = sb.root / "restore-redis"
    drill.laptop(doc_block("fetch-offsite"), {"BACKUP": str(fetched), "DATASET": "redis"})
    pod = {"env": redis.env, "argv": sb.argv([], mounts=redis.mounts, user="redis")}
    drill.laptop(doc_block("restore-redis"), {"BACKUP": str(fetched)}, kubectl_pods={"redis-0": pod})
    FIGURES["redis restore (fetch + restore)"] = f"{time.monotonic() - started:.1f}s"
    assert redis.snapshot() == before["redis"]
    redis.cli("shutdown", "nosave", check=False)
    pg.stop()
    my.stop()


def items(my: Mariadb) -> str:
    return my.sql(f"SELECT count(*), sum(id), max(name) FROM {DATABASE_NAME}.items")


GIT_HOME = Path(tempfile.gettempdir()) / f"hl-drill-git-{os.getpid()}"


def git(*args: str, cwd: Path) -> str:
    GIT_HOME.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(GIT_HOME), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    # The repository belongs to Gitea's stand-in uid; this root-run git (and the receive-pack it
    # starts, which drops GIT_CONFIG_* variables) may use it.
    (GIT_HOME / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_drill_gitea_files_from_the_off_node_copy_alone(drill: Drill) -> None:
    sb = drill.sb
    owner = "redis"  # any unprivileged uid stands in for Gitea's 1000 (what matters: it is kept)
    data = sb.dir("gitea-data", owner=owner, mode=0o750)
    # Gitea's layout under /data (components/ci/gitea.py): a bare repository pushed to with git.
    repos = data / "git" / "gitea-repositories" / "ada"
    repos.mkdir(parents=True)
    git("init", "-q", "--bare", "notes.git", cwd=repos)
    work = sb.root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for i in range(30):
        (work / f"chapter-{i}.md").write_text(f"# Chapter {i}\n" + "lorem ipsum " * 400)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("push", "-q", str(repos / "notes.git"), "main", cwd=work)
    (data / "lfs" / "ab" / "cd").mkdir(parents=True)
    (data / "lfs" / "ab" / "cd" / "abcdef0123").write_bytes(os.urandom(300_000))
    (data / "packages" / "12").mkdir(parents=True)
    (data / "packages" / "12" / "blob").write_bytes(os.urandom(100_000))
    (data / "gitea" / "conf").mkdir(parents=True)
    (data / "gitea" / "conf" / "app.ini").write_text("[server]\nROOT_URL = http://git.lab.home.arpa/\n")
    (data / "gitea" / "conf" / "app.ini").chmod(0o600)
    for transient in ("queues", "indexers", "log"):
        (data / transient).mkdir()
        (data / transient / "junk").write_text("rebuilt by Gitea")
    subprocess.run(["chown", "-R", f"{owner}:{owner}", str(data)], check=True)

    url = mc.store_url() if drill.metrics else None
    cron = gitea_backup.render_cronjob(drill.offsite, schedule="45 3 * * *", node="rack-db-1", namespace="ci",
                                      data_namespace="data", metrics_url=url)  # fmt: skip
    tmp = sb.dir("gitea-cron-tmp", owner=owner, mode=0o1777)

    def push_more() -> None:
        (work / "chapter-new.md").write_text("a new chapter\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", "second", cwd=work)
        git("push", "-q", str(repos / "notes.git"), "main", cwd=work)
        subprocess.run(["chown", "-R", f"{owner}:{owner}", str(data)], check=True)

    copy_twice(drill, "gitea", cron, owner, {"/data": data, "/tmp": tmp}, push_more)
    kept = {k: v for k, v in tree_digest(data).items() if k.split("/")[0] not in gitea_backup.EXCLUDES}
    head = git("rev-parse", "main", cwd=repos / "notes.git")

    shutil.rmtree(data)  # the disk died; `pulumi up` makes an empty volume directory again
    data.mkdir(mode=0o750)
    started = time.monotonic()
    drill.laptop(doc_block("restore-gitea"), {"STORAGE": str(sb.root)})
    FIGURES["gitea restore"] = f"{time.monotonic() - started:.1f}s"
    assert tree_digest(data) == kept
    assert not any((data / t).exists() for t in gitea_backup.EXCLUDES)
    assert {p.stat().st_uid for p in data.rglob("*")} == {int(subprocess.check_output(["id", "-u", owner]))}
    assert git("rev-parse", "main", cwd=repos / "notes.git") == head
    git("fsck", "--strict", cwd=repos / "notes.git")


def test_retention_keeps_what_the_policy_names(drill: Drill) -> None:
    """`forget` with the script's options on snapshots a year apart (restic's --time): daily 7
    keeps the 7 newest days, weekly 4 the newest of the 4 weeks before, monthly 6 likewise."""
    cfg = Offsite.model_validate({**drill.offsite.model_dump(by_alias=True), "retention": {"daily": 3, "weekly": 2,
                                  "monthly": 2}})  # fmt: skip
    src = drill.sb.dir("retention-src")
    (src / "f").write_text("x")
    stamps = [f"2026-0{m}-{d:02d} 03:15:00" for m, d in ((1, 5), (2, 5), (3, 5), (3, 20), (3, 27), (3, 28), (3, 29),
                                                           (3, 30))]  # fmt: skip
    repo = "retention"
    for stamp in stamps:
        drill.laptop(f'cd {src}\nrestic -r "$REPOSITORY/{repo}" cat config >/dev/null 2>&1 || '
                     f'restic -r "$REPOSITORY/{repo}" init\nrestic -r "$REPOSITORY/{repo}" backup --host {repo} '
                     f'--tag {repo} --time "{stamp}" .\n', {})  # fmt: skip
    from components.platform.offsite_backup import offsite_script

    forget = next(line for line in offsite_script(repo, gitea_backup.source(), cfg, data_namespace="data",
                                                  metrics_url=None).splitlines() if " forget " in line)  # fmt: skip
    drill.laptop(forget.replace('restic "$@"', f'restic -r "$REPOSITORY/{repo}"') + "\n", {})
    kept = sorted(s["time"][:10] for s in drill.snapshots(repo))
    # Each rule walks the snapshots newest first and keeps the newest of each of its N periods:
    # daily 3: 03-30, 03-29, 03-28; weekly 2: 03-30 (ISO week 14), 03-29 (week 13); monthly 2:
    # 03-30 (March), 02-05 (February). The rest (01-05, 03-05, 03-20, 03-27) go.
    assert kept == ["2026-02-05", "2026-03-28", "2026-03-29", "2026-03-30"]


def teardown_module() -> None:
    shutil.rmtree(GIT_HOME, ignore_errors=True)
    if FIGURES:
        print("\n" + "\n".join(f"  {k}: {v}" for k, v in FIGURES.items()), file=sys.stderr)
