"""The vector store: the pgvector image switch in the data layer (same identity, in-place), the
config rule that only PostgreSQL has it, and the setup Job: schema-valid, idempotent SQL from one
pure function, password only by secretKeyRef, and the network policies that let exactly its pods
reach PostgreSQL. The statements themselves run against a real server in tests/real/vector."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from components.core.layout import CATEGORY_LABEL
from components.core.network_policy import Cluster, ContainerPort, Endpoint
from components.platform.database_manifests import Client, render_statefulset, secret_name, server_image
from components.platform.database_manifests import render_network_policy as db_policy
from components.platform.vector_store import (
    NAME,
    VectorExtension,
    VectorExtensionArgs,
    render_job,
    render_network_policies,
    setup_script,
    setup_statements,
)
from plan.engine import run_program
from rack.config import ConfigError, DatabaseKind, parse_rack
from rack.config import Database as DatabaseConfig
from tests.conftest import stack_raw

PGVECTOR = DatabaseConfig.model_fields["vector_version"].default
"""The pgvector release a database gets when it names none (the pin Renovate moves)."""


def pg(**over: Any) -> DatabaseConfig:
    return DatabaseConfig.model_validate(
        {"version": "16.6", "node": "rack-db-1", "size": "30Gi", "vector": True, **over}
    )


def test_image_switch() -> None:
    assert server_image(DatabaseKind.POSTGRES, pg()) == f"docker.io/pgvector/pgvector:{PGVECTOR}-pg16"
    assert server_image(DatabaseKind.POSTGRES, pg(**{"vector-version": "0.8.1", "version": "17.2"})) == (
        "docker.io/pgvector/pgvector:0.8.1-pg17"
    )
    assert server_image(DatabaseKind.POSTGRES, pg(vector=False)) == "docker.io/library/postgres:16.6"


def test_switching_vector_on_is_an_in_place_update_of_the_same_statefulset() -> None:
    off, on = (render_statefulset(DatabaseKind.POSTGRES, pg(vector=v)) for v in (False, True))
    assert off["metadata"] == on["metadata"]
    for key in ("selector", "serviceName", "replicas"):
        assert off["spec"][key] == on["spec"][key]
    off_pod, on_pod = off["spec"]["template"]["spec"], on["spec"]["template"]["spec"]
    assert off_pod["volumes"] == on_pod["volumes"] and off_pod["securityContext"] == on_pod["securityContext"]
    assert [c["image"] for c in on_pod["containers"]] == [f"docker.io/pgvector/pgvector:{PGVECTOR}-pg16"]


@pytest.mark.parametrize("kind", ["mysql", "redis"])
def test_only_postgres_has_a_vector_extension(kind: str) -> None:
    raw = stack_raw("homelab")
    raw["databases"][kind]["vector"] = True
    with pytest.raises(ConfigError) as exc:
        parse_rack(raw)
    assert [str(i) for i in exc.value.issues] == [
        f"rack.databases.{kind}.vector: only postgres has a vector extension (pgvector)"
    ]


def test_statements_are_idempotent_forms() -> None:
    assert setup_statements() == ("CREATE EXTENSION IF NOT EXISTS vector", "ALTER EXTENSION vector UPDATE")
    with pytest.raises(ValueError):
        setup_statements("postgis")


def test_job_matches_the_schema_and_runs_the_script_with_secret_credentials() -> None:
    job = render_job(pg())
    kubernetes_validate.validate(job, "1.31", strict=True)
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["/bin/sh", "-c", setup_script()]
    assert c["image"] == f"docker.io/pgvector/pgvector:{PGVECTOR}-pg16"
    env = {e["name"]: e for e in c["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name(DatabaseKind.POSTGRES),
        "key": "password",
    }
    assert env["PGHOST"]["value"] == "postgres.data.svc.cluster.local" and env["PGDATABASE"]["value"] == "homelab"
    assert "PASSWORD" not in setup_script().replace("PGPASSWORD", "")
    assert job["spec"]["template"]["metadata"]["labels"][CATEGORY_LABEL] == "data"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"] is True


def test_policies_let_exactly_the_job_reach_postgres() -> None:
    policies = render_network_policies()
    for p in policies:
        kubernetes_validate.validate(p, "1.31", strict=True)
    data_layer = db_policy(DatabaseKind.POSTGRES, [Client("apps", {"app.kubernetes.io/name": "rag"})])
    cluster = Cluster([data_layer, *policies])
    postgres = Endpoint(
        "data/postgres",
        ip=_ip(10),
        namespace="data",
        labels={"app.kubernetes.io/name": "postgres"},
        ports=(ContainerPort(5432, "postgres"),),
    )
    job = Endpoint(f"data/{NAME}", ip=_ip(11), namespace="data", labels={"app.kubernetes.io/name": NAME})
    other = Endpoint("data/other", ip=_ip(12), namespace="data", labels={"app.kubernetes.io/name": "other"})
    app = Endpoint("apps/rag", ip=_ip(13), namespace="apps", labels={"app.kubernetes.io/name": "rag"})
    port = ContainerPort(5432, "postgres")
    assert cluster.allowed(job, postgres, port)
    assert cluster.allowed(app, postgres, port)  # the data layer's own policy still holds
    assert not cluster.allowed(other, postgres, port)
    assert not cluster.allowed(job, other, ContainerPort(8080, "http"))


def _ip(n: int) -> Any:
    from ipaddress import IPv4Address

    return IPv4Address(f"10.42.0.{n}")


def test_component_refuses_a_postgres_without_vector_and_registers_its_job() -> None:
    def program() -> None:
        VectorExtension("postgres-vector", VectorExtensionArgs(config=pg()))

    rec = run_program(program)
    job = rec.by_name("postgres-vector-job")
    assert job.inputs["metadata"]["name"] == NAME and not job.protect
    assert all(
        rec.by_name(f"postgres-vector-{p['metadata']['name']}").urn in job.depends_on for p in render_network_policies()
    )

    def bad() -> None:
        VectorExtension("postgres-vector", VectorExtensionArgs(config=pg(vector=False)))

    with pytest.raises(Exception, match="vector: true"):
        run_program(bad)
