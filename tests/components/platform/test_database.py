"""Database: manifests against the schema, the restricted profile, the backup script, and the
component under recording mocks (protected, secrets marked and never in plaintext, the claim
referenced by name) — plus the safety proof: a change of version, requests or backup settings
leaves the volume, the claim and the StatefulSet's identity untouched."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.core.layout import CLASS_LABEL, HOSTNAME_LABEL
from components.platform.database import Database, DatabaseArgs
from components.platform.database_backup import SECRET_ENV, backup_command, backup_script, render_backup_cronjob
from components.platform.database_manifests import (
    Client,
    b64,
    data_volume_name,
    render_network_policy,
    render_pdb,
    render_secret,
    render_service,
    render_statefulset,
    secret_name,
)
from plan.engine import DefaultMocks, Recording, run_program
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind

KINDS = list(DatabaseKind)
GENERATED = "GeneratedPw0123456789abcdefXYZ42"
"""What the mock returns for a generated secret (a TEST DOUBLE of the dynamic provider's create)."""


class GeneratedSecretMocks(DefaultMocks):
    """DefaultMocks, but the GeneratedSecret's dynamic resource returns a value, as `create` would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "pulumi-python:dynamic:Resource":
            state["value"] = GENERATED
        return rid, state


def cfg(**over: Any) -> DatabaseConfig:
    base: dict[str, Any] = {"version": "16.6", "node": "rack-db-1", "size": "30Gi", "cpu": "500m", "memory": "1Gi"}
    return DatabaseConfig.model_validate({**base, **over})


def build(kind: DatabaseKind, config: DatabaseConfig, *, password: str | None = None) -> Recording:
    def program() -> None:
        # The user's secret is an Output made inside the program, as `config.require_secret` makes it.
        override = pulumi.Output.secret(password) if password is not None else None
        Database(
            f"db-{kind.value}",
            DatabaseArgs(kind=kind, config=config, storage_path="/mnt/ssd", password=override),
        )

    return run_program(program, preview=False, mocks=GeneratedSecretMocks())


# --- pure manifests ------------------------------------------------------------------------------


def all_manifests(kind: DatabaseKind) -> list[dict[str, Any]]:
    c = cfg()
    return [
        render_statefulset(kind, c),
        render_service(kind),
        render_pdb(kind),
        render_secret(kind, password_b64=b64("x" * 20)),
        render_network_policy(kind, [Client("apps", {"app.kubernetes.io/name": "web"})]),
        render_network_policy(kind, []),
        render_backup_cronjob(kind, c),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_every_manifest_matches_the_kubernetes_schema(kind: DatabaseKind) -> None:
    for manifest in all_manifests(kind):
        kubernetes_validate.validate(manifest, "1.31", strict=True)


@pytest.mark.parametrize("kind", KINDS)
def test_statefulset_uses_the_pinned_claim_by_name_and_lands_on_its_node(kind: DatabaseKind) -> None:
    sts = render_statefulset(kind, cfg())
    spec = sts["spec"]
    assert "volumeClaimTemplates" not in spec
    pod = spec["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [data_volume_name(kind)]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    assert exprs == {CLASS_LABEL: ["reliable"], HOSTNAME_LABEL: ["rack-db-1"]}
    assert pod["tolerations"] == []  # keeps the default not-ready wait: it cannot move anyway
    assert spec["replicas"] == 1 and spec["serviceName"] == kind.value


@pytest.mark.parametrize("kind", KINDS)
def test_server_runs_restricted_with_probes_and_config_resources(kind: DatabaseKind) -> None:
    pod = render_statefulset(kind, cfg(cpu="300m", memory="768Mi"))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"]
    assert container["resources"] == {
        "requests": {"cpu": "300m", "memory": "768Mi"},
        "limits": {"cpu": "300m", "memory": "768Mi"},
    }
    assert container["image"].endswith(f"/{kind.value}:16.6")


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_come_only_from_the_secret(kind: DatabaseKind) -> None:
    for manifest in (render_statefulset(kind, cfg()), render_backup_cronjob(kind, cfg())):
        text = str(manifest)
        assert "password=" not in text.lower().replace('password="%s"', "")
        pod = (
            manifest["spec"]["template"]["spec"]
            if manifest["kind"] == "StatefulSet"
            else (manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        )
        for env in pod["containers"][0]["env"]:
            if "PASSWORD" in env["name"] or env["name"] in ("REDISCLI_AUTH", "PGPASSWORD"):
                assert env["valueFrom"]["secretKeyRef"] == {"name": secret_name(kind), "key": "password"}


def test_network_policy_admits_exactly_the_clients() -> None:
    policy = render_network_policy(
        DatabaseKind.POSTGRES, [Client("apps", {"app.kubernetes.io/name": "web"}), Client("ci", {"x": "y"})]
    )
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert [(p["namespaceSelector"]["matchLabels"], p["podSelector"]["matchLabels"]) for p in rule["from"]] == [
        ({"kubernetes.io/metadata.name": "apps"}, {"app.kubernetes.io/name": "web"}),
        ({"kubernetes.io/metadata.name": "ci"}, {"x": "y"}),
    ]
    # No clients: deny all (an ingress rule without `from` would admit everyone).
    assert render_network_policy(DatabaseKind.REDIS, [])["spec"]["ingress"] == []


# --- backups -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_backup_script_is_the_cronjob_command_with_retention(kind: DatabaseKind) -> None:
    c = cfg(backup={"schedule": "0 2 * * *", "keep": 5})
    cron = render_backup_cronjob(kind, c)
    assert cron["spec"]["schedule"] == "0 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == backup_command(kind, c)
    script = container["command"][2]
    assert script == backup_script(
        kind,
        host=f"{kind.value}.data.svc.cluster.local",
        port=render_service(kind)["spec"]["ports"][0]["port"],
        keep=5,
    )
    assert "-gt 5 ]" in script and 'mv "$work" "$dir/$ts"' in script
    assert [e["name"] for e in container["env"]] == [SECRET_ENV[kind]]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [f"backup-{kind.value}"]


def test_dumps_do_not_block_writers() -> None:
    pg = backup_script(DatabaseKind.POSTGRES, host="h", port=5432, keep=1)
    assert (
        "pg_dump " in pg
        and "--format=custom" in pg
        and "--globals-only" in pg
        and "LOCK" not in pg.upper().replace("BLOCK", "")
    )
    my = backup_script(DatabaseKind.MYSQL, host="h", port=3306, keep=1)
    assert "--single-transaction" in my and "--lock-all-tables" not in my and "--lock-tables" not in my
    rd = backup_script(DatabaseKind.REDIS, host="h", port=6379, keep=1)
    assert "--rdb" in rd and " SAVE" not in rd.upper().replace("BGSAVE", "")


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError):
        backup_script(DatabaseKind.REDIS, host="h", port=1, keep=0)


# --- the component -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_component_protects_every_stateful_child(kind: DatabaseKind) -> None:
    rec = build(kind, cfg())
    for reg in rec:
        assert reg.protect, f"{reg.type} {reg.name} is not protected"
    types = {r.type for r in rec}
    assert {
        "kubernetes:core/v1:PersistentVolume",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:core/v1:Secret",
        "kubernetes:batch/v1:CronJob",
        "kubernetes:policy/v1:PodDisruptionBudget",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    } <= types


@pytest.mark.parametrize("kind", KINDS)
def test_generated_password_is_secret_everywhere_and_never_plaintext(kind: DatabaseKind) -> None:
    rec = build(kind, cfg())
    secret = rec.by_name(f"db-{kind.value}-secret")
    assert secret.secret_paths == ["data"]  # the whole map, as the typed Secret marks it
    assert secret.inputs["data"]["password"] == base64.b64encode(GENERATED.encode()).decode()
    encoded = base64.b64encode(GENERATED.encode()).decode()
    for reg in rec:
        text = str(reg.redacted)
        assert GENERATED not in text and encoded not in text, f"{reg.name} leaks the password"


def test_user_supplied_password_overrides_generation() -> None:
    rec = build(DatabaseKind.MYSQL, cfg(version="8.4.3"), password="UserChosenPassword99")
    assert [r.name for r in rec.of_type("pulumi-python:dynamic:Resource")] == ["db-mysql-version"]  # no generator
    secret = rec.by_name("db-mysql-secret")
    assert secret.secret_paths and secret.inputs["data"]["password"] == b64("UserChosenPassword99")


def test_statefulset_waits_for_its_claim_secret_and_service() -> None:
    rec = build(DatabaseKind.POSTGRES, cfg())
    sts = rec.by_name("db-postgres-statefulset")
    for dep in ("db-postgres-data-pvc", "db-postgres-secret", "db-postgres-service"):
        assert rec.by_name(dep).urn in sts.depends_on


def _by_name(rec: Recording) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in rec if r.custom}


def _changed(a: dict[str, Any], b: dict[str, Any], path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _changed(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _changed(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


CHANGES: dict[DatabaseKind, dict[str, list[str]]] = {}
"""What changed per kind (printed by `pytest -s` for the report)."""

VERSIONS = {
    DatabaseKind.POSTGRES: ("16.6", "16.15"),  # a major change is refused before this (test_version_guard.py)
    DatabaseKind.MYSQL: ("8.4.3", "8.4.4"),
    DatabaseKind.REDIS: ("7.4.1", "7.4.2"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_version_requests_and_backup_changes_never_touch_the_data(kind: DatabaseKind) -> None:
    old_v, new_v = VERSIONS[kind]
    before = _by_name(build(kind, cfg(version=old_v)))
    after = _by_name(
        build(
            kind,
            cfg(version=new_v, cpu="1", memory="2Gi", backup={"schedule": "30 4 * * 0", "keep": 14}),
        )
    )
    assert before.keys() == after.keys(), "no resource appears or disappears"
    n = f"db-{kind.value}"
    for volume in (f"{n}-data-pv", f"{n}-data-pvc", f"{n}-backup-pv", f"{n}-backup-pvc"):
        assert before[volume] == after[volume], f"{volume} inputs changed"
    for identity in (("metadata",), ("spec", "selector"), ("spec", "serviceName"), ("spec", "replicas")):
        a, b = before[f"{n}-statefulset"], after[f"{n}-statefulset"]
        for key in identity:
            a, b = a[key], b[key]
        assert a == b, identity
    changed = {name: _changed(before[name], after[name]) for name in before if before[name] != after[name]}
    # What does change: the pod template of the server (image, resources, redis maxmemory), the
    # backup CronJob (image, schedule, retention) and the applied version the guard holds.
    assert set(changed) == {f"{n}-statefulset", f"{n}-backup-cronjob", f"{n}-version"}, changed
    assert changed[f"{n}-version"] == ["version"]
    server = "spec.template.spec.containers[0]."
    for path in changed[f"{n}-statefulset"]:
        assert path.startswith(server) and path.removeprefix(server).split(".")[0].split("[")[0] in {
            "image",
            "resources",
            "command",  # redis: maxmemory follows the memory limit
        }, path
    dump = "spec.jobTemplate.spec.template.spec.containers[0]."
    for path in changed[f"{n}-backup-cronjob"]:
        assert path == "spec.schedule" or (
            path.startswith(dump) and path.removeprefix(dump).split("[")[0] in {"image", "command"}
        ), path
    CHANGES[kind] = changed


def teardown_module() -> None:
    for kind, changed in CHANGES.items():
        print(f"\n{kind.value}: " + "; ".join(f"{name}: {', '.join(paths)}" for name, paths in changed.items()))


@pytest.mark.parametrize("kind", KINDS)
def test_a_version_bump_changes_only_the_two_images(kind: DatabaseKind) -> None:
    old_v, new_v = VERSIONS[kind]
    before = _by_name(build(kind, cfg(version=old_v)))
    after = _by_name(build(kind, cfg(version=new_v)))
    changed = {name: _changed(before[name], after[name]) for name in before if before[name] != after[name]}
    n = f"db-{kind.value}"
    assert changed == {
        f"{n}-statefulset": ["spec.template.spec.containers[0].image"],
        f"{n}-backup-cronjob": ["spec.jobTemplate.spec.template.spec.containers[0].image"],
        f"{n}-version": ["version"],
    }
