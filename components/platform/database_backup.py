"""Scheduled logical dumps of a database: pure functions, creates nothing.

`backup_script` is the one source of the dump commands: the CronJob runs exactly its text, and
tests/real/databases runs the CronJob's rendered command against real PostgreSQL, MariaDB and
Redis servers, then restores with docs/restore.md.

None of the dumps blocks writers:
- PostgreSQL: `pg_dump --format=custom` per database (an MVCC snapshot, ACCESS SHARE locks only)
  plus `pg_dumpall --globals-only` for roles;
- MySQL: `mysqldump --single-transaction` (one consistent InnoDB snapshot, no table locks);
- Redis: `redis-cli --rdb` (the server forks a BGSAVE-style snapshot and streams it).

Each run writes `<backup dir>/<UTC timestamp>.partial/`, renames it to `<timestamp>/` only once
every dump succeeded, then keeps the newest `keep` complete dumps and removes stale partials.

With an off-node target (`rack.backup.offsite`) the dump runs as the pod's init container and the
copy (components/platform/offsite_backup.py) as its container: the copy starts only after a
complete dump, and the Job succeeds only when both did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.core.layout import (
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.platform.database_manifests import (
    DATABASE_USER,
    FLAVORS,
    NAMESPACE,
    RUN_AS,
    backup_volume_name,
    secret_env,
    server_image,
    service_host,
    workload_name,
)
from components.platform.offsite_backup import Source, offsite_container, passwd_volume
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind, Offsite
from rack.vocabulary import Category

BACKUP_MOUNT = "/backup"
"""Where the backup claim is mounted in the CronJob's pod."""

SECRET_ENV: dict[DatabaseKind, str] = {
    DatabaseKind.POSTGRES: "PGPASSWORD",
    DatabaseKind.MYSQL: "MYSQL_ROOT_PASSWORD",
    DatabaseKind.REDIS: "REDISCLI_AUTH",
}
"""The env var carrying the password into the dump (from the Secret; never on a command line)."""

MYSQL_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
"""Schemas a logical dump leaves out (the server recreates them; users come from the Secret)."""


def backup_name(kind: DatabaseKind) -> str:
    """Name of the CronJob and label of its pods."""
    return f"{workload_name(kind)}-backup"


def _dump_lines(kind: DatabaseKind, *, host: str, port: int) -> list[str]:
    if kind == DatabaseKind.POSTGRES:
        conn = f'-h "{host}" -p {port} -U {DATABASE_USER}'
        return [
            f"dbs=$(psql {conn} -d postgres -At -c "
            "'SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')",
            '[ -n "$dbs" ] || { echo "backup: no databases listed" >&2; exit 1; }',
            'mkdir -p "$work"',
            f'pg_dumpall {conn} --globals-only --file="$work/globals.sql"',
            "for db in $dbs; do",
            f'  pg_dump {conn} --format=custom --file="$work/$db.dump" "$db"',
            "done",
        ]
    if kind == DatabaseKind.MYSQL:
        system = "|".join(MYSQL_SYSTEM_SCHEMAS)
        return [
            'cnf="$(mktemp /tmp/backup-my.XXXXXX)"',
            "trap 'rm -f \"$cnf\"' EXIT",
            # The password goes into a 0600 option file through a shell builtin, never into argv.
            f"printf '[client]\\nuser=root\\npassword=\"%s\"\\nhost={host}\\nport={port}\\n' "
            '"$MYSQL_ROOT_PASSWORD" > "$cnf"',
            "dbs=$(mysql --defaults-extra-file=\"$cnf\" -N -B -e 'SHOW DATABASES')",
            'list=""',
            "for db in $dbs; do",
            f'  case "$db" in {system}) ;; *) list="$list $db" ;; esac',
            "done",
            '[ -n "$list" ] || { echo "backup: no databases listed" >&2; exit 1; }',
            'mkdir -p "$work"',
            'mysqldump --defaults-extra-file="$cnf" --single-transaction --quick --routines --triggers --events'
            ' --hex-blob --no-tablespaces --databases $list --result-file="$work/all.sql"',
        ]
    return [
        'mkdir -p "$work"',
        f'redis-cli -h "{host}" -p {port} --rdb "$work/dump.rdb"',
        '[ -s "$work/dump.rdb" ] || { echo "backup: empty RDB" >&2; exit 1; }',
    ]


def backup_script(kind: DatabaseKind, *, host: str, port: int, keep: int, backup_dir: str = BACKUP_MOUNT) -> str:
    """The POSIX sh script of one backup run (pure). Credentials come from `SECRET_ENV[kind]`."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    lines = [
        "set -eu",
        "umask 077",
        f'dir="{backup_dir}"',
        'ts="$(date -u +%Y%m%dT%H%M%SZ)"',
        'work="$dir/$ts.partial"',
        *_dump_lines(kind, host=host, port=port),
        'mv "$work" "$dir/$ts"',
        "n=0",
        'for old in $(ls -1 "$dir" | sort -r); do',
        '  case "$old" in',
        '    *.partial) rm -rf "${dir:?}/$old" ;;',
        f'    [0-9]*T*Z) n=$((n + 1)); if [ "$n" -gt {keep} ]; then rm -rf "${{dir:?}}/$old"; fi ;;',
        "  esac",
        "done",
        f'echo "backup {kind.value} $ts complete; keeping the newest {keep}"',
    ]
    return "\n".join(lines) + "\n"


def backup_command(kind: DatabaseKind, db: DatabaseConfig, *, namespace: str = NAMESPACE) -> list[str]:
    """The CronJob container's command: the script against the in-cluster Service."""
    script = backup_script(kind, host=service_host(kind, namespace), port=FLAVORS[kind].port, keep=db.backup.keep)
    return ["sh", "-c", script]


@dataclass(frozen=True)
class OffsiteCopy:
    """Where a dump is copied after it is taken."""

    offsite: Offsite
    """`rack.backup.offsite`."""
    metrics_url: str | None = None
    """The metrics store's base URL (the success metric is pushed there); None: no monitoring."""


def render_backup_cronjob(
    kind: DatabaseKind, db: DatabaseConfig, *, namespace: str = NAMESPACE, offsite: OffsiteCopy | None = None
) -> dict[str, Any]:
    """The CronJob dumping a database onto its backup claim, on the database's node, then (with
    `offsite`) copying the dump off the node (pure)."""
    name = backup_name(kind)
    labels = workload_labels(name, Category.DATA)
    container = {
        "name": "dump",
        # The server's own image (pgvector's with `vector: true`): the dump client is exactly the
        # server's build, never a second image that could drift from it.
        "image": server_image(kind, db),
        "imagePullPolicy": "IfNotPresent",
        "command": backup_command(kind, db, namespace=namespace),
        "env": [secret_env(SECRET_ENV[kind], kind)],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "backup", "mountPath": BACKUP_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": restricted_pod_security(RUN_AS, fs_group=True),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [
            {"name": "backup", "persistentVolumeClaim": {"claimName": backup_volume_name(kind)}},
            {"name": "tmp", "emptyDir": {}},
        ],
        **pod_placement(name, Category.DATA, hostname=db.node),
    }
    if offsite is not None:
        copy = offsite_container(
            kind.value,
            Source(BACKUP_MOUNT, newest_dump=True),
            offsite.offsite,
            data_namespace=namespace,
            metrics_url=offsite.metrics_url,
            source_mount={"name": "backup", "mountPath": BACKUP_MOUNT},
        )
        pod_spec["initContainers"] = [container]
        pod_spec["containers"] = [copy]
        pod_spec["volumes"].append(passwd_volume())
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": db.backup.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 6 * 3600,
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
        },
    }
