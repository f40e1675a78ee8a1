"""The platform layer of the committed racks under recording mocks.

Proves, from the registered resources alone (independent of the plan's scheduler): every data
pod's claim is bound to a PV whose node affinity names the configured node (rack-db-1 for all
three homelab databases), every PV is Retain, every PV/PVC/StatefulSet/Secret of the data layer
is protected, credentials are secret in the recording and never plaintext in redacted inputs, the
endpoints apps read are complete, and each database admits exactly the apps whose `uses` name it.
"""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pytest

from components.core.layout import HOSTNAME_LABEL, WORKLOAD_LABEL
from components.platform.pinned_volume import pinned_node
from components.system import new_rack_ca
from plan.engine import Recording, Registration, run_program
from rack.config import DatabaseKind
from rack.loader import Loaded, RackSecrets
from stacks.metal import build_metal
from stacks.platform import PlatformLayer, build_platform, database_clients
from stacks.system import build_system
from tests.components.core.dynamic_mocks import ProviderRunningMocks

GENERATED = "GeneratedPw0123456789abcdefXYZ42"


class GeneratedSecretMocks(ProviderRunningMocks):
    """Dynamic resources answered by their own provider (the rack CA), and TEST DOUBLE of the
    GeneratedSecret provider's create: a known value."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "pulumi-python:dynamic:Resource":
            state["value"] = GENERATED
        return rid, state


def run(loaded: Loaded, *, preview: bool = True) -> tuple[Recording, PlatformLayer]:
    out: dict[str, PlatformLayer] = {}

    def program() -> None:
        metal = build_metal(loaded)
        out["platform"] = build_platform(loaded, metal, build_system(loaded, metal, new_rack_ca()))

    rec = run_program(program, preview=preview, mocks=GeneratedSecretMocks())
    return rec, out["platform"]


def data_layer(rec: Recording) -> list[Registration]:
    """Every registration under a Database component (by walking the parent chain)."""
    by_urn = {r.urn: r for r in rec}

    def under_database(reg: Registration) -> bool:
        while reg.parent in by_urn:
            reg = by_urn[reg.parent]
            if reg.type == "homelab:data:Database":
                return True
        return False

    return [r for r in rec if under_database(r)]


def pod_specs(rec: Recording) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for reg in rec.of_type("kubernetes:apps/v1:StatefulSet"):
        out.append((reg.name, reg.inputs["spec"]["template"]["spec"]))
    for reg in rec.of_type("kubernetes:batch/v1:CronJob"):
        out.append((reg.name, reg.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("stack", ["homelab", "lab"])
def test_every_data_pod_lands_on_the_node_its_volume_names(stack: str, request: pytest.FixtureRequest) -> None:
    loaded: Loaded = request.getfixturevalue(stack)
    rec, _ = run(loaded)
    claims = {
        (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r
        for r in rec.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    }
    volumes = {r.inputs["metadata"]["name"]: r for r in rec.of_type("kubernetes:core/v1:PersistentVolume")}
    configured = {kind.value: db.node for kind, db in loaded.rack.databases.configured().items()}
    seen: dict[str, str] = {}
    for name, pod in pod_specs(rec):
        if not name.startswith("db-"):
            continue
        kind = name.split("-")[1]
        pvc_names = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert len(pvc_names) == 1
        pvc = claims[("data", pvc_names[0])]
        pv = volumes[pvc.inputs["spec"]["volumeName"]]
        node = pinned_node(pv.inputs)
        assert node == configured[kind], f"{name}: its PV names {node}, config says {configured[kind]}"
        exprs = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0]
        hostnames = [e["values"] for e in exprs["matchExpressions"] if e["key"] == HOSTNAME_LABEL]
        assert hostnames == [[node]], f"{name}: pod affinity disagrees with its volume"
        seen[name] = node
    assert len(seen) == 2 * len(configured)  # a StatefulSet and a backup CronJob per database
    if stack == "homelab":
        assert set(seen.values()) == {"rack-db-1"}


def test_every_pv_is_retain_and_every_stateful_resource_protected(homelab: Loaded) -> None:
    rec, _ = run(homelab)
    for pv in rec.of_type("kubernetes:core/v1:PersistentVolume"):
        assert pv.inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain", pv.name
        assert pv.protect, pv.name
    data = data_layer(rec)
    stateful = [
        r
        for r in data
        if r.type
        in (
            "kubernetes:core/v1:PersistentVolume",
            "kubernetes:core/v1:PersistentVolumeClaim",
            "kubernetes:apps/v1:StatefulSet",
            "kubernetes:core/v1:Secret",
        )
    ]
    assert len(stateful) == 3 * (2 + 2 + 1 + 1)
    assert all(r.protect for r in data), [r.name for r in data if not r.protect]


def test_credentials_are_secret_and_never_plaintext(homelab: Loaded) -> None:
    rec, platform = run(homelab, preview=False)
    for kind in ("postgres", "mysql", "redis"):
        secret = rec.by_name(f"db-{kind}-secret")
        assert secret.secret_paths, f"{kind}: the Secret's data is not marked secret"
        assert platform.endpoints[kind].password is not None
    encoded = base64.b64encode(GENERATED.encode()).decode()
    for reg in rec:
        assert GENERATED not in str(reg.redacted) and encoded not in str(reg.redacted), reg.name


def test_configured_password_replaces_the_generated_one(homelab: Loaded) -> None:
    loaded = Loaded(
        rack=homelab.rack,
        secrets=RackSecrets({"postgres-password": lambda: pulumi.Output.secret("FromPulumiConfig123")}),
    )
    rec, _ = run(loaded)
    generated = {r.name for r in rec.of_type("pulumi-python:dynamic:Resource")}
    assert "db-postgres-password-value" not in generated
    assert {"db-mysql-password-value", "db-redis-password-value"} <= generated


def test_endpoints_are_the_hand_over_apps_read(homelab: Loaded) -> None:
    _, platform = run(homelab)
    got = {
        name: (e.kind, e.namespace, e.service, e.port, e.pod_labels, e.database, e.user, e.host)
        for name, e in platform.endpoints.items()
    }
    assert got == {
        "postgres": (
            "postgres",
            "data",
            "postgres",
            5432,
            {WORKLOAD_LABEL: "postgres"},
            "homelab",
            "homelab",
            "postgres.data.svc.cluster.local",
        ),
        "mysql": (
            "mysql",
            "data",
            "mysql",
            3306,
            {WORKLOAD_LABEL: "mysql"},
            "homelab",
            "homelab",
            "mysql.data.svc.cluster.local",
        ),
        "redis": (
            "redis",
            "data",
            "redis",
            6379,
            {WORKLOAD_LABEL: "redis"},
            None,
            None,
            "redis.data.svc.cluster.local",
        ),
    }
    assert set(platform.components) == {"postgres", "mysql", "redis"}
    assert all(isinstance(e.password, pulumi.Output) for e in platform.endpoints.values())


def test_each_database_admits_exactly_its_users(homelab: Loaded) -> None:
    rec, _ = run(homelab)

    def admitted(kind: str) -> set[tuple[str, str]]:
        (rule,) = rec.by_name(f"db-{kind}-netpol").inputs["spec"]["ingress"]
        return {
            (
                p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                p["podSelector"]["matchLabels"][WORKLOAD_LABEL],
            )
            for p in rule["from"]
        }

    assert admitted("postgres") == {
        ("apps", "bible-api"),
        ("apps", "bible-auth"),
        ("apps", "bible-social"),
        ("experimental", "rag-playground"),
        ("ci", "gitea"),
        ("ci", "gitea-db-init"),
        ("data", "postgres-backup"),
    }
    assert admitted("mysql") == {("apps", "devotional"), ("data", "mysql-backup")}
    assert admitted("redis") == {
        ("apps", "bible-api"),
        ("apps", "bible-auth"),
        ("apps", "bible-social"),
        ("data", "redis-backup"),
    }


def test_database_clients_follow_uses(lab: Loaded) -> None:
    assert [c.labels[WORKLOAD_LABEL] for c in database_clients(lab.rack, DatabaseKind.REDIS)] == ["web", "worker"]
    postgres_clients = [c.labels[WORKLOAD_LABEL] for c in database_clients(lab.rack, DatabaseKind.POSTGRES)]
    assert postgres_clients == ["web", "lab-rag", "gitea", "gitea-db-init"]


def test_one_shared_storage_class_and_every_volume_under_the_node_storage(homelab: Loaded) -> None:
    rec, platform = run(homelab)
    (sc,) = rec.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    assert (
        sc.inputs["metadata"]["name"] == "pinned-local" and sc.inputs["volumeBindingMode"] == "Immediate"
    )
    assert platform.storage_class is not None
    paths = sorted(pv.inputs["spec"]["local"]["path"] for pv in rec.of_type("kubernetes:core/v1:PersistentVolume"))
    assert paths == sorted(
        f"/mnt/ssd/{prefix}-{kind}" for prefix in ("data", "backup") for kind in ("postgres", "mysql", "redis")
    )
