"""Gitea: pure renderers against the 1.31 schema, its scripts through shellcheck, and the
component under recording mocks (protection, secrets, the admin override).

The scripts' SQL runs against a real PostgreSQL in tests/real/gitea/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.ci import gitea as g
from components.core.layout import CLASS_LABEL, HOSTNAME_LABEL
from plan.engine import Recording
from rack.endpoints import ServiceEndpoint
from tests.stacks.test_apps import manifest

PG = ServiceEndpoint(
    name="postgres",
    kind="postgres",
    namespace="data",
    service="postgres",
    port=5432,
    pod_labels={"app.kubernetes.io/name": "postgres"},
    database="postgres",
    user="postgres",
    password=None,
)


def settings(version: str = "1.22.6", **kw: Any) -> g.GiteaSettings:
    base: dict[str, Any] = {
        "version": version,
        "namespace": "ci",
        "fqdn": "git.lab.home.arpa",
        "root_url": "http://git.lab.home.arpa/",
        "node": "rack-db-1",
        "cpu": "250m",
        "memory": "512Mi",
        "admin_user": "gitea-admin",
        "postgres": PG,
        "postgres_image": "docker.io/library/postgres:16.6",
        "runners_namespace": "ci-runners",
        "runner_pod_labels": {"app.kubernetes.io/name": "gitea-runner"},
    }
    return g.GiteaSettings(**{**base, **kw})


def validate(m: dict[str, Any]) -> dict[str, Any]:
    kubernetes_validate.validate(m, "1.31", strict=True)
    return m


def shellcheck(script: str) -> None:
    exe = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(exe), "--shell=sh", "--severity=style", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_deployment_pinned_to_the_volume_node_and_locked_down() -> None:
    dep = validate(g.render_deployment(settings(), claim_name="gitea-data"))
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    assert exprs == {CLASS_LABEL: ["reliable"], HOSTNAME_LABEL: ["rack-db-1"]}
    assert pod["tolerations"] == []  # stateful: Kubernetes' default 300 s, it cannot move anyway
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "gitea-data"}} in pod["volumes"]
    c = pod["containers"][0]
    assert c["image"] == "docker.io/gitea/gitea:1.22.6-rootless"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"] == {"path": "/api/healthz", "port": "http"}
    assert c["resources"]["limits"] == {"cpu": "250m", "memory": "512Mi"}
    env = env_of(c)
    assert env["GITEA__security__INSTALL_LOCK"]["value"] == "true"
    assert env["GITEA__service__DISABLE_REGISTRATION"]["value"] == "true"
    assert env["GITEA__service__REQUIRE_SIGNIN_VIEW"]["value"] == "true"
    assert env["GITEA__database__HOST"]["value"] == "postgres.data.svc.cluster.local:5432"
    assert env["GITEA__server__SSH_DOMAIN"]["value"] == "git.lab.home.arpa"
    assert env["GITEA__server__SSH_PORT"]["value"] == "2222"
    for name in (
        "GITEA__database__PASSWD",
        "GITEA__security__SECRET_KEY",
        "GITEA__security__INTERNAL_TOKEN",
        "GITEA_RUNNER_REGISTRATION_TOKEN",
    ):
        assert set(env[name]) == {"name", "valueFrom"}, name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "gitea"
    configure = pod["initContainers"][0]
    assert configure["name"] == "configure"
    assert set(env_of(configure)["GITEA_ADMIN_PASSWORD"]) == {"name", "valueFrom"}
    assert env_of(configure)["GITEA_ADMIN_USERNAME"]["value"] == "gitea-admin"


def test_runner_token_seeding_only_before_1_23() -> None:
    old = g.render_deployment(settings("1.22.6"), claim_name="c")["spec"]["template"]["spec"]["initContainers"]
    new = g.render_deployment(settings("1.23.1"), claim_name="c")["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in old] == ["configure", "runner-token"]
    assert [c["name"] for c in new] == ["configure"]
    seed = old[1]
    assert seed["image"] == "docker.io/library/postgres:16.6"
    env = env_of(seed)
    assert env["PGUSER"]["value"] == "gitea" and env["PGDATABASE"]["value"] == "gitea"
    assert set(env["PGPASSWORD"]) == {"name", "valueFrom"}
    assert g.reads_runner_token_env("1.23.0") and not g.reads_runner_token_env("1.22.6")


def test_db_init_job() -> None:
    job = validate(g.render_db_init_job(settings()))
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    assert env["PGHOST"]["value"] == "postgres.data.svc.cluster.local"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gitea-db-admin", "key": "password"}
    assert env["GITEA_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gitea", "key": "db-password"}
    classes = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert classes["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["general", "reliable"]


def test_services() -> None:
    http = validate(g.render_http_service(settings()))
    ssh = validate(g.render_ssh_service(settings()))
    assert http["metadata"]["name"] == "gitea" and http["spec"]["ports"][0]["port"] == 3000
    assert ssh["spec"]["type"] == "LoadBalancer" and ssh["spec"]["ports"][0]["port"] == 2222


def test_network_policies() -> None:
    gitea, job = (validate(p) for p in g.render_network_policies(settings()))
    ingress = gitea["spec"]["ingress"]
    assert ingress[0]["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "traefik"}}
    assert ingress[1]["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ci-runners"}}
    assert ingress[2] == {"ports": [{"protocol": "TCP", "port": "ssh"}]}
    assert job["spec"]["ingress"] == []
    assert job["spec"]["egress"] == gitea["spec"]["egress"]
    no_runners = g.render_network_policies(settings(runners_namespace=None, runner_pod_labels=None))[0]
    assert len(no_runners["spec"]["ingress"]) == 2


@pytest.mark.parametrize(
    "script",
    [
        g.render_configure_script(),
        g.render_pull_account_script(),
        g.render_runner_token_script(),
        g.render_db_init_script(database="gitea", user="gitea"),
    ],
)
def test_scripts_pass_shellcheck_and_hold_no_secret(script: str) -> None:
    shellcheck(script)
    assert "PASSWORD=" not in script and "TOKEN=" not in script


def test_db_init_script_refuses_odd_identifiers() -> None:
    with pytest.raises(ValueError):
        g.render_db_init_script(database="gitea; DROP DATABASE x", user="gitea")


def _program(admin_password: str | None) -> Callable[[], None]:
    def program() -> None:
        pg = ServiceEndpoint(**{**PG.__dict__, "password": pulumi.Output.secret("pg-admin-secret")})
        g.Gitea(
            "gitea",
            g.GiteaArgs(
                settings=settings(postgres=pg),
                storage_path="/mnt/ssd",
                volume_size="20Gi",
                runner_token=pulumi.Output.secret("runner-token-secret"),
                admin_password=pulumi.Output.secret(admin_password) if admin_password else None,
            ),
        )

    return program


def test_component_is_protected_and_keeps_secrets_in_secrets(record: Callable[..., Recording]) -> None:
    rec = record(_program(None), preview=False)
    by_type = {r.type: r for r in rec}
    assert rec.by_name("gitea").protect is True
    assert rec.by_name("gitea-deployment").protect is True
    assert rec.by_name("gitea-volume-pv").protect is True
    assert rec.by_name("gitea-volume-pv").retain_on_delete is True
    assert rec.by_name("gitea-db-init").protect is False  # replaceable: it holds no state
    pv = manifest(rec.by_name("gitea-volume-pv"))
    assert pv["spec"]["local"]["path"] == "/mnt/ssd/gitea-data"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert rec.by_name("gitea-secret").secret_paths == ["stringData"]
    assert rec.by_name("gitea-db-admin-secret").secret_paths == ["stringData"]
    assert set(manifest(rec.by_name("gitea-secret"))["stringData"]) == {
        "db-password",
        "secret-key",
        "internal-token",
        "admin-password",
        "runner-token",
    }
    generated = {r.name for r in rec if r.type == "homelab:secrets:GeneratedSecret"}
    assert generated == {"gitea-admin-password", "gitea-db-password", "gitea-secret-key", "gitea-internal-token"}
    for r in rec:
        if r.type.startswith("kubernetes:") and r.custom and "Secret" not in r.type:
            text = str(r.inputs)
            assert "pg-admin-secret" not in text and "runner-token-secret" not in text, r.name
            kubernetes_validate.validate(manifest(r), "1.31", strict=True)
    assert "kubernetes:batch/v1:Job" in by_type
    dep = rec.by_name("gitea-deployment")
    assert rec.by_name("gitea-db-init").urn in dep.depends_on


def test_configured_admin_password_is_used_not_generated(record: Callable[..., Recording]) -> None:
    rec = record(_program("user-chosen-admin-pw"), preview=False)
    assert manifest(rec.by_name("gitea-secret"))["stringData"]["admin-password"] == "user-chosen-admin-pw"
    assert not [r for r in rec if r.name == "gitea-admin-password-value"]


# --- the read-only pull account ---------------------------------------------------------------


def test_the_pull_account_is_made_after_the_admin_from_the_secret() -> None:
    dep = validate(g.render_deployment(settings(pull_user=g.PULL_USER), claim_name="gitea-data"))
    init = dep["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init][:2] == ["configure", "pull-account"]  # after the migrations
    pull = init[1]
    env = env_of(pull)
    assert env["GITEA_PULL_USERNAME"]["value"] == "rack-puller"
    assert env["GITEA_PULL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gitea", "key": "pull-password"}
    assert pull["securityContext"] == init[0]["securityContext"]
    without = g.render_deployment(settings(), claim_name="gitea-data")
    assert "pull-account" not in [c["name"] for c in without["spec"]["template"]["spec"]["initContainers"]]


# A TEST DOUBLE of the `gitea` CLI (not packaged for Debian): `admin user list` prints the table
# Gitea prints (ID, Username, Email, IsActive, IsAdmin, 2FA), every other call is recorded.
FAKE_GITEA = """#!/bin/sh
if [ "$1 $2 $3" = "admin user list" ]; then
  printf 'ID   Username     Email                    IsActive IsAdmin 2FA\\n'
  printf '1    gitea-admin  gitea-admin@git.test     true     true    false\\n'
  [ -f "$GITEA_DOUBLE_DIR/puller" ] && printf '2    rack-puller  rack-puller@git.test     true     false   false\\n'
  exit 0
fi
echo "$*" >>"$GITEA_DOUBLE_DIR/calls"
[ "$3" = create ] && touch "$GITEA_DOUBLE_DIR/puller"
exit 0
"""


def test_the_pull_account_script_creates_it_once_then_resets_its_password(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gitea").write_text(FAKE_GITEA)
    (tmp_path / "bin" / "gitea").chmod(0o755)
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "GITEA_DOUBLE_DIR": str(tmp_path),
        "GITEA_PULL_USERNAME": "rack-puller",
        "GITEA_PULL_PASSWORD": "pull-pw",
        "GITEA_PULL_EMAIL": "rack-puller@git.test",
    }
    for _ in range(2):
        result = subprocess.run(
            ["/bin/sh", "-c", g.render_pull_account_script()], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        "admin user create --username rack-puller --password pull-pw --email rack-puller@git.test"
        " --must-change-password=false",
        "admin user change-password --username rack-puller --password pull-pw --must-change-password=false",
    ]
    assert "--admin" not in calls[0]  # a plain user
    assert "password reset" in result.stdout
