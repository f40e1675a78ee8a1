"""Pure manifests of a database server: creates nothing.

`Database` (components/platform/database.py) turns these dicts into resources; the tests validate them
against the Kubernetes OpenAPI schema and compare them across config changes. Everything that
identifies the data (claim name, StatefulSet name, selector, serviceName) is a function of the
database *kind* alone, never of its version, requests or backup settings: bumping those changes
the pod template (an in-place rolling update) and nothing else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from components.core.layout import (
    NAMESPACES,
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind
from rack.quantity import memory_mib
from rack.vocabulary import Category

DATABASE_NAME = "homelab"
"""The database created on first start (PostgreSQL, MySQL) and handed to apps."""
DATABASE_USER = "homelab"
"""The user created on first start and handed to apps (PostgreSQL: the bootstrap superuser)."""
PASSWORD_KEY = "password"
"""Key of the password in the credentials Secret."""
RUN_AS = 999
"""uid/gid of the `postgres`, `mysql` and `redis` users in the official images."""


@dataclass(frozen=True)
class Flavor:
    """What differs between the database kinds."""

    kind: DatabaseKind
    image_repo: str
    port: int
    data_mount: str
    scratch_mounts: tuple[str, ...]
    """emptyDirs a read-only root filesystem still needs (sockets, pid files, temp files)."""


FLAVORS: dict[DatabaseKind, Flavor] = {
    DatabaseKind.POSTGRES: Flavor(
        DatabaseKind.POSTGRES,
        "docker.io/library/postgres",
        5432,
        "/var/lib/postgresql/data",
        ("/var/run/postgresql", "/tmp"),
    ),
    DatabaseKind.MYSQL: Flavor(
        DatabaseKind.MYSQL, "docker.io/library/mysql", 3306, "/var/lib/mysql", ("/var/run/mysqld", "/tmp")
    ),
    DatabaseKind.REDIS: Flavor(DatabaseKind.REDIS, "docker.io/library/redis", 6379, "/data", ("/tmp",)),
}

NAMESPACE = NAMESPACES[Category.DATA]
"""Every database lives in the data namespace."""


# --- names: functions of the kind only (the identity of the data) ------------------------------


def workload_name(kind: DatabaseKind) -> str:
    """StatefulSet, Service and pod-label name: `postgres`, `mysql`, `redis`."""
    return kind.value


def data_volume_name(kind: DatabaseKind) -> str:
    """PV and PVC name of the database's files."""
    return f"data-{kind.value}"


def backup_volume_name(kind: DatabaseKind) -> str:
    """PV and PVC name of its dumps."""
    return f"backup-{kind.value}"


def secret_name(kind: DatabaseKind) -> str:
    """The Kubernetes Secret holding its credentials."""
    return f"{kind.value}-credentials"


def service_host(kind: DatabaseKind, namespace: str = NAMESPACE) -> str:
    """In-cluster DNS name of the database's Service."""
    return f"{workload_name(kind)}.{namespace}.svc.cluster.local"


def image(kind: DatabaseKind, version: str) -> str:
    """The pinned image of a server version (`docker.io/library/postgres:16.6`)."""
    return f"{FLAVORS[kind].image_repo}:{version}"


PGVECTOR_REPO = "docker.io/pgvector/pgvector"
"""The official pgvector image: the postgres image of one major with the `vector` extension built in."""


def server_image(kind: DatabaseKind, db: DatabaseConfig) -> str:
    """The server's pinned image. PostgreSQL with `vector: true` runs pgvector's image of the same
    major (`pgvector/pgvector:0.8.0-pg16`): same data directory layout and uid 999, so switching
    is an in-place rolling update of the StatefulSet, never a new volume."""
    if kind == DatabaseKind.POSTGRES and db.vector:
        return f"{PGVECTOR_REPO}:{db.vector_version}-pg{db.version.split('.')[0]}"
    return image(kind, db.version)


def server_version_check_script(version: str) -> str:
    """The pod's first step when the image's tag does not name the server's exact release
    (pgvector's `<vector>-pg<major>`: its maintainer publishes no minor tags, pgvector/pgvector#171,
    and a digest would not say which minor it holds either): the server binary must report exactly
    `version`, else the pod stops with what it found, so the configured version is what runs or
    nothing does."""
    return (
        "set -eu\n"
        'found="$(postgres --version | awk \'{print $3}\')"\n'
        f'if [ "$found" != "{version}" ]; then\n'
        f'  echo "this image carries PostgreSQL $found; rack.databases.postgres.version says {version}:'
        ' set the version to the image\'s, or pick the vector-version whose image carries it" >&2\n'
        "  exit 1\n"
        "fi\n"
    )


def user_of(kind: DatabaseKind) -> str | None:
    return None if kind == DatabaseKind.REDIS else DATABASE_USER


def database_of(kind: DatabaseKind) -> str | None:
    return None if kind == DatabaseKind.REDIS else DATABASE_NAME


# --- shared pod pieces -------------------------------------------------------------------------


def secret_env(name: str, kind: DatabaseKind) -> dict[str, Any]:
    """An env var read from the credentials Secret (never a literal value)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(kind), "key": PASSWORD_KEY}}}


def scratch_volumes(kind: DatabaseKind) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) of the emptyDirs the read-only root filesystem needs."""
    volumes, mounts = [], []
    for i, path in enumerate(FLAVORS[kind].scratch_mounts):
        volumes.append({"name": f"scratch-{i}", "emptyDir": {}})
        mounts.append({"name": f"scratch-{i}", "mountPath": path})
    return volumes, mounts


# --- the server ------------------------------------------------------------------------------


def redis_server_script(*, port: int, data_dir: str, maxmemory_mb: int) -> str:
    """How the Redis container starts: the password goes into a 0600 file on the tmp emptyDir,
    never onto the command line (where `ps` on the node would show it). AOF for durability,
    RDB snapshots for `--rdb` backups; `noeviction`, because this Redis holds data, not cache."""
    return "\n".join(
        [
            "set -eu",
            "umask 077",
            "printf 'requirepass %s\\n' \"$REDIS_PASSWORD\" > /tmp/redis-auth.conf",
            f"exec redis-server /tmp/redis-auth.conf --port {port} --dir {data_dir}"
            " --appendonly yes --appendfsync everysec --save '3600 1 300 100 60 10000'"
            f" --maxmemory {maxmemory_mb}mb --maxmemory-policy noeviction",
        ]
    )


def _server_env(kind: DatabaseKind) -> list[dict[str, Any]]:
    if kind == DatabaseKind.POSTGRES:
        return [
            {"name": "POSTGRES_USER", "value": DATABASE_USER},
            {"name": "POSTGRES_DB", "value": DATABASE_NAME},
            secret_env("POSTGRES_PASSWORD", kind),
            # A subdirectory: initdb refuses a non-empty mount point (lost+found on a fresh fs).
            {"name": "PGDATA", "value": f"{FLAVORS[kind].data_mount}/pgdata"},
            # For `kubectl exec ... psql` (restore): the in-pod socket, as the bootstrap user.
            {"name": "PGUSER", "value": DATABASE_USER},
        ]
    if kind == DatabaseKind.MYSQL:
        return [
            secret_env("MYSQL_ROOT_PASSWORD", kind),
            {"name": "MYSQL_DATABASE", "value": DATABASE_NAME},
            {"name": "MYSQL_USER", "value": DATABASE_USER},
            secret_env("MYSQL_PASSWORD", kind),
        ]
    return [secret_env("REDIS_PASSWORD", kind), secret_env("REDISCLI_AUTH", kind)]


def _probe_command(kind: DatabaseKind) -> list[str]:
    port = FLAVORS[kind].port
    if kind == DatabaseKind.POSTGRES:
        return ["pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", DATABASE_USER, "-d", "postgres"]
    if kind == DatabaseKind.MYSQL:
        # mysqladmin ping exits 0 whenever the server answers, even "access denied": no password.
        return ["mysqladmin", "ping", "-h", "127.0.0.1", "-P", str(port), "--silent"]
    return ["sh", "-c", f'test "$(redis-cli -h 127.0.0.1 -p {port} ping)" = PONG']


def probes(kind: DatabaseKind) -> dict[str, dict[str, Any]]:
    """startup (first init on a Pi can take minutes), readiness and liveness probes."""
    command = {"exec": {"command": _probe_command(kind)}}
    return {
        "startupProbe": {**command, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**command, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**command, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 6},
    }


def resources(db: DatabaseConfig) -> dict[str, Any]:
    """Requests from config; the same as limits (the config's cpu/memory are both)."""
    return {
        "requests": {"cpu": db.cpu, "memory": db.memory},
        "limits": {"cpu": db.cpu, "memory": db.memory},
    }


def render_statefulset(kind: DatabaseKind, db: DatabaseConfig, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The database's StatefulSet (pure). Its data volume is the PinnedVolume's claim referenced
    by name in `volumes` (no volumeClaimTemplates: see components/platform/pinned_volume.py)."""
    name = workload_name(kind)
    flavor = FLAVORS[kind]
    labels = workload_labels(name, Category.DATA)
    scratch, scratch_mounts = scratch_volumes(kind)
    container: dict[str, Any] = {
        "name": name,
        "image": server_image(kind, db),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": kind.value, "containerPort": flavor.port, "protocol": "TCP"}],
        "env": _server_env(kind),
        "resources": resources(db),
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "data", "mountPath": flavor.data_mount}, *scratch_mounts],
        **probes(kind),
    }
    if kind == DatabaseKind.REDIS:
        container["command"] = [
            "sh",
            "-c",
            redis_server_script(
                port=flavor.port, data_dir=flavor.data_mount, maxmemory_mb=max(16, memory_mib(db.memory) * 7 // 10)
            ),
        ]
    init: list[dict[str, Any]] = []
    if kind == DatabaseKind.POSTGRES and db.vector:
        init.append(
            {
                "name": "version-check",
                "image": container["image"],
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", server_version_check_script(db.version)],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "securityContext": restricted_container_security(),
            }
        )
    pod_spec: dict[str, Any] = {
        "securityContext": restricted_pod_security(RUN_AS, fs_group=True),
        "terminationGracePeriodSeconds": 60,
        **({"initContainers": init} if init else {}),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": data_volume_name(kind)}}, *scratch],
        # Data pods keep Kubernetes' default not-ready toleration: they cannot move off their volume.
        **pod_placement(name, Category.DATA, hostname=db.node),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {WORKLOAD_LABEL: name}},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_service(kind: DatabaseKind, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The ClusterIP Service apps connect to (and the StatefulSet's serviceName)."""
    name = workload_name(kind)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": workload_labels(name, Category.DATA)},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: name},
            "ports": [{"name": kind.value, "port": FLAVORS[kind].port, "targetPort": kind.value, "protocol": "TCP"}],
        },
    }


def render_pdb(kind: DatabaseKind, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """minAvailable 1 on a single replica: a drain cannot silently evict the database; stopping
    it is a deliberate act (`kubectl delete pod`), as it should be for a pod pinned to a disk."""
    name = workload_name(kind)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": workload_labels(name, Category.DATA)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {WORKLOAD_LABEL: name}}},
    }


def render_secret(kind: DatabaseKind, *, password_b64: Any, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The credentials Secret; `password_b64` is the base64 password (an Output in the component)."""
    data: dict[str, Any] = {PASSWORD_KEY: password_b64}
    if (user := user_of(kind)) is not None:
        data["username"] = b64(user)
    if (database := database_of(kind)) is not None:
        data["database"] = b64(database)
    name = workload_name(kind)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(kind),
            "namespace": namespace,
            "labels": workload_labels(name, Category.DATA),
        },
        "type": "Opaque",
        "data": data,
    }


def b64(text: str) -> str:
    """Base64 of a UTF-8 string, as Secret `data` wants it."""
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Client:
    """A pod allowed to connect to a database."""

    namespace: str
    labels: dict[str, str]


def render_network_policy(kind: DatabaseKind, clients: list[Client], *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """Ingress to the database pod only from `clients`, on its port. An empty list admits nobody."""
    name = workload_name(kind)
    peers = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": c.namespace}},
            "podSelector": {"matchLabels": dict(c.labels)},
        }
        for c in clients
    ]
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": FLAVORS[kind].port}]}
    if peers:
        rule["from"] = peers
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{name}-clients",
            "namespace": namespace,
            "labels": workload_labels(name, Category.DATA),
        },
        "spec": {
            "podSelector": {"matchLabels": {WORKLOAD_LABEL: name}},
            "policyTypes": ["Ingress"],
            "ingress": [rule] if peers else [],
        },
    }
