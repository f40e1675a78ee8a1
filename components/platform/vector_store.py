"""VectorExtension: similarity search in the rack's PostgreSQL (pgvector), enabled idempotently.

The vector store is the rack's PostgreSQL itself: with `databases.postgres.vector: true` the data
layer runs pgvector's image of the same PostgreSQL major (`database_manifests.server_image`), and
this component turns the extension on in the apps' database. Apps reach it the way they reach any
database: `uses: [postgres]` (POSTGRES_HOST, ..., the `vector` type and the `<->`, `<=>`, `<#>`
operators are then available in database `homelab`).

Why not a dedicated vector database: on a Pi every resident process counts. pgvector adds no
process, no volume and no backup path of its own — the vectors live in tables the existing
PostgreSQL already caches, dumps and restores — while a separate server (Qdrant, Weaviate,
Milvus with its etcd and object store) would add hundreds of MiB to the reliable node that
already holds the databases, plus a second volume and backup story. At a homelab's scale
(thousands to a few million embeddings) pgvector's HNSW/IVFFlat indexes are enough.

Creates, under `homelab:data:VectorExtension`:
- `Job` `postgres-vector-setup` in the data namespace: runs `setup_statements()` with psql (from
  the same pgvector image) as the database's bootstrap user, against the `postgres` Service, with
  the password by secretKeyRef. Idempotent (`CREATE EXTENSION IF NOT EXISTS`, then
  `ALTER EXTENSION ... UPDATE` to the version the image ships): a changed pgvector version
  changes the Job's image, so the Job is replaced and runs again after the rollout. Not
  protected: a Job's template is immutable, so any change replaces it;
- `NetworkPolicy` `postgres-vector-setup` (the Job: out to PostgreSQL and DNS only) and
  `postgres-from-vector-setup` (PostgreSQL: in from the Job's pods). NetworkPolicies add up, so
  the data layer's own `postgres-clients` policy stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import WORKLOAD_LABEL, pod_placement, restricted_container_security, workload_labels
from components.core.network_policy import dns_egress, pods_peer, render_workload_policy, rule, tcp
from components.platform.database_manifests import (
    DATABASE_NAME,
    DATABASE_USER,
    FLAVORS,
    NAMESPACE,
    RUN_AS,
    secret_env,
    server_image,
    service_host,
    workload_name,
)
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind
from rack.vocabulary import Category

NAME = "postgres-vector-setup"
EXTENSION = "vector"
"""pgvector's extension name."""


def setup_statements(extension: str = EXTENSION) -> tuple[str, ...]:
    """The SQL the Job runs, in order (pure). Each is safe to run any number of times."""
    if extension != EXTENSION:
        raise ValueError(f"unknown extension {extension!r}")
    return (
        f"CREATE EXTENSION IF NOT EXISTS {extension}",
        # After an image bump the library is new but the SQL objects are the old version's.
        f"ALTER EXTENSION {extension} UPDATE",
    )


def setup_script() -> str:
    """The Job's POSIX sh script: the statements through psql (connection from PG* variables,
    password from PGPASSWORD: never in the text), then the installed version for the log."""
    sql = "\n".join(f"{s};" for s in setup_statements())
    report = (
        "SELECT 'vector extension ' || extversion || ' in ' || current_database() "
        f"FROM pg_extension WHERE extname = '{EXTENSION}'"
    )
    return f"""set -eu
psql -X -v ON_ERROR_STOP=1 --quiet <<'SQL'
{sql}
SQL
psql -X -v ON_ERROR_STOP=1 -At -c "{report}"
"""


def labels() -> dict[str, str]:
    return workload_labels(NAME, Category.DATA)


def render_job(db: DatabaseConfig, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The setup Job (pure)."""
    kind = DatabaseKind.POSTGRES
    env = [
        {"name": "PGHOST", "value": service_host(kind, namespace)},
        {"name": "PGPORT", "value": str(FLAVORS[kind].port)},
        {"name": "PGUSER", "value": DATABASE_USER},
        {"name": "PGDATABASE", "value": DATABASE_NAME},
        {"name": "PGCONNECT_TIMEOUT", "value": "10"},
        secret_env("PGPASSWORD", kind),
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "psql",
                "image": server_image(kind, db),
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", setup_script()],
                "env": env,
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "50m", "memory": "64Mi"},
                },
                "securityContext": restricted_container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        **pod_placement(NAME, Category.DATA),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            # PostgreSQL may still be starting on a fresh rack: retry with backoff for a while.
            "backoffLimit": 10,
            "template": {"metadata": {"labels": labels()}, "spec": pod_spec},
        },
    }


def render_network_policies(*, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The Job's allow-list, and PostgreSQL admitting it (pure)."""
    postgres = workload_name(DatabaseKind.POSTGRES)
    port = FLAVORS[DatabaseKind.POSTGRES].port
    job_peer = pods_peer(namespace, {WORKLOAD_LABEL: NAME})
    return [
        render_workload_policy(
            name=NAME,
            namespace=namespace,
            pod_labels={WORKLOAD_LABEL: NAME},
            labels=labels(),
            ingress=[],
            egress=[dns_egress(), rule([pods_peer(namespace, {WORKLOAD_LABEL: postgres})], tcp(port), egress=True)],
        ),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{postgres}-from-vector-setup", "namespace": namespace, "labels": labels()},
            "spec": {
                "podSelector": {"matchLabels": {WORKLOAD_LABEL: postgres}},
                "policyTypes": ["Ingress"],
                "ingress": [rule([job_peer], tcp(port), egress=False)],
            },
        },
    ]


@dataclass(frozen=True, kw_only=True)
class VectorExtensionArgs:
    config: DatabaseConfig
    """The validated `rack.databases.postgres` section (with `vector: true`)."""
    namespace: str = NAMESPACE
    """The data namespace (where PostgreSQL and its credentials Secret live)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the Job waits for: the PostgreSQL `Database` component (its rollout)."""


class VectorExtension(pulumi.ComponentResource):
    job: KubernetesObject
    """The idempotent setup Job."""
    network_policies: list[KubernetesObject]
    """The Job's allow-list and PostgreSQL's admission of it."""
    database: str
    """The database the extension is enabled in."""

    def __init__(self, name: str, args: VectorExtensionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:data:VectorExtension", name, None, opts)
        if not args.config.vector:
            raise ValueError("VectorExtension needs databases.postgres.vector: true")
        ns = args.namespace
        self.network_policies = []
        for pol in render_network_policies(namespace=ns):
            self.network_policies.append(
                KubernetesObject(
                    f"{name}-{pol['metadata']['name']}",
                    pol,
                    pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
                )
            )
        job = render_job(args.config, namespace=ns)
        self.job = KubernetesObject(
            f"{name}-job",
            job,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *self.network_policies]),
        )
        self.database = DATABASE_NAME
        self.register_outputs({"job": self.job, "network_policies": self.network_policies, "database": self.database})
