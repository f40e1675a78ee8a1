"""Off-node copies: repository URLs as restic's docs write them, the copy script and CronJob pod
(validated against the Kubernetes schema), the rest-server target, and the OffsiteTarget
component under recording mocks (secrets marked, never in plaintext). The script itself runs
against a real SFTP server and restic in tests/real/backups."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.ci import gitea_backup
from components.core.generated_ssh_key import generate
from components.platform.database_backup import OffsiteCopy, backup_command, render_backup_cronjob
from components.platform.offsite_backup import (
    METRIC,
    Source,
    copy_pod_peers,
    known_hosts_line,
    offsite_script,
    render_rest_server,
    target_egress,
)
from components.platform.offsite_target import OffsiteNamespace, OffsiteTarget, OffsiteTargetArgs
from plan.engine import DefaultMocks, Recording, run_program
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind, Offsite, cron_period_seconds, parse_repository

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz1pS6pW8OZQqO8B1o9qgZyB5wN7h0nX3s0l3m0c9rA nas"
SFTP = Offsite.model_validate(
    {"repository": "sftp:ops@192.168.10.50:/srv/backup/homelab", "host-key": HOST_KEY, "retention": {"daily": 5}}
)
DB = DatabaseConfig.model_validate({"version": "16.6", "node": "rack-db-1", "size": "30Gi"})


# --- repository URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "user", "path"),
    [
        # The forms restic's documentation (030_preparing_a_new_repo) gives for each backend.
        ("sftp:user@host:/srv/restic-repo", "sftp", "host", 22, "user", "/srv/restic-repo"),
        ("sftp://user@host:2222//srv/restic-repo", "sftp", "host", 2222, "user", "/srv/restic-repo"),
        ("s3:s3.amazonaws.com/bucket_name", "s3", "s3.amazonaws.com", 443, None, "/bucket_name"),
        ("s3:http://localhost:9000/restic", "s3", "localhost", 9000, None, "/restic"),
        ("rest:http://host:8000/", "rest", "host", 8000, None, "/"),
        ("rest:https://host:8000/my_backup_repo/", "rest", "host", 8000, None, "/my_backup_repo/"),
    ],
)
def test_restic_documented_repository_urls_parse(
    url: str, scheme: str, host: str, port: int, user: str | None, path: str
) -> None:
    repo = parse_repository(url)
    assert (repo.scheme, repo.host, repo.port, repo.user, repo.path) == (scheme, host, port, user, path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/srv/restic-repo", "is not a restic repository URL"),
        ("sftp:host:/srv", "is not an sftp repository"),
        ("sftp:user@host:relative/path", "is not an sftp repository"),
        ("rest:host:8000/", "needs http:// or https://"),
        ("rest:http://user:secret@host:8000/", "carries credentials"),
        ("s3:https://s3.example.org/", "names no bucket"),
        ("b2:bucketname:path", "is not a restic repository URL"),
    ],
)
def test_malformed_repository_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_repository(url)


def test_each_dataset_gets_its_own_repository() -> None:
    assert parse_repository("sftp:u@h:/srv/r/").joined("gitea") == "sftp:u@h:/srv/r/gitea"
    assert parse_repository("s3:https://h/bucket").joined("redis") == "s3:https://h/bucket/redis"


@pytest.mark.parametrize(
    ("schedule", "period"),
    [("15 3 * * *", 86400), ("0 */6 * * *", 6 * 3600), ("30 2 * * 0", 7 * 86400), ("0 3 1 * *", 31 * 86400)],
)
def test_a_schedule_period_is_its_longest_gap(schedule: str, period: int) -> None:
    assert cron_period_seconds(schedule) == period


# --- the copy script --------------------------------------------------------------------------


def test_script_names_the_dataset_repository_retention_and_pinned_host() -> None:
    source = Source("/backup", newest_dump=True)
    script = offsite_script("postgres", source, SFTP, data_namespace="data", metrics_url=None)
    assert "export RESTIC_REPOSITORY=sftp:ops@192.168.10.50:/srv/backup/homelab/postgres" in script
    assert "--keep-daily 5 --keep-weekly 4 --keep-monthly 6 --prune" in script
    assert "--group-by host" in script  # each snapshot's path is its dump's directory: never group by it
    assert "192.168.10.50 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz1pS6pW8OZQqO8B1o9qgZyB5wN7h0nX3s0l3m0c9rA" in script
    assert "StrictHostKeyChecking=yes" in script
    assert "wget" not in script  # no monitoring: nothing pushed
    assert "$BACKUP_SSH_KEY" in script and "RESTIC_PASSWORD" not in script  # restic reads it from the env itself


def test_script_pushes_the_success_metric_only_after_check() -> None:
    script = offsite_script(
        "gitea",
        gitea_backup.source(),
        SFTP,
        data_namespace="data",
        metrics_url="http://victoria-metrics.monitoring.svc.cluster.local:8428",
    )
    lines = script.splitlines()
    order = [next(i for i, line in enumerate(lines) if needle in line) for needle in (" backup ", " check", "wget")]
    assert order == sorted(order)
    assert f'{METRIC}{{dataset=\\"gitea\\"}}' in script
    assert "--exclude /data/queues --exclude /data/indexers --exclude /data/log" in script


def test_known_hosts_line_brackets_a_non_standard_port() -> None:
    assert known_hosts_line("nas", 22, HOST_KEY) == "nas " + " ".join(HOST_KEY.split()[:2])
    assert known_hosts_line("nas", 2222, HOST_KEY).startswith("[nas]:2222 ssh-ed25519 ")


def pod_spec(cron: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("kind", list(DatabaseKind))
def test_with_offsite_the_dump_runs_first_then_the_copy(kind: DatabaseKind) -> None:
    plain = render_backup_cronjob(kind, DB)
    cron = render_backup_cronjob(kind, DB, offsite=OffsiteCopy(SFTP, "http://vm:8428"))
    kubernetes_validate.validate(cron, "1.31", strict=True)
    spec = pod_spec(cron)
    # The dump is the same container as without an off-node target, now the init container.
    assert spec["initContainers"] == pod_spec(plain)["containers"]
    assert spec["initContainers"][0]["command"] == backup_command(kind, DB)
    copy = spec["containers"][0]
    assert copy["image"] == "docker.io/restic/restic:0.17.3"
    assert {m["mountPath"]: m.get("readOnly", False) for m in copy["volumeMounts"]} == {
        "/backup": True,
        "/tmp": False,
        "/etc/passwd": True,
    }
    assert all("valueFrom" in e for e in copy["env"]), "every secret by secretKeyRef"
    assert {e["name"] for e in copy["env"]} == {"RESTIC_PASSWORD", "BACKUP_SSH_KEY"}
    assert copy["securityContext"]["runAsNonRoot"] is True
    # Identity and schedule unchanged: only the pod template grows.
    assert cron["metadata"] == plain["metadata"] and cron["spec"]["schedule"] == plain["spec"]["schedule"]


def test_gitea_copy_reads_its_volume_read_only_on_its_node() -> None:
    cron = gitea_backup.render_cronjob(
        SFTP, schedule="45 3 * * *", node="rack-db-1", namespace="ci", data_namespace="data", metrics_url=None
    )
    kubernetes_validate.validate(cron, "1.31", strict=True)
    spec = pod_spec(cron)
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"] == {"claimName": "gitea-data", "readOnly": True}
    assert spec["securityContext"]["runAsUser"] == 1000  # Gitea's uid: reads what Gitea wrote
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "kubernetes.io/hostname", "operator": "In", "values": ["rack-db-1"]} in terms[0]["matchExpressions"]


def test_egress_reaches_the_target_address_and_port_only() -> None:
    assert target_egress(SFTP, "data") == {
        "to": [{"ipBlock": {"cidr": "192.168.10.50/32"}}],
        "ports": [{"protocol": "TCP", "port": 22}],
    }
    by_name = Offsite.model_validate({"repository": "s3:https://s3.example.org/b"})
    assert target_egress(by_name, "data")["ports"] == [{"protocol": "TCP", "port": 443}]
    node = Offsite.model_validate({"node": "rack-db-2"})
    assert target_egress(node, "data")["to"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "backup-repository"}
    }


def test_rest_server_is_pinned_to_its_node_and_validates() -> None:
    node = Offsite.model_validate({"node": "rack-db-2", "rest-server-version": "0.14.0"})
    dep = render_rest_server(node, namespace="data")
    kubernetes_validate.validate(dep, "1.31", strict=True)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/restic/rest-server:0.14.0"
    assert "--no-auth" in container["command"]
    assert dep["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "backup-repository"}}
    ]


def test_copy_pod_peers_name_every_backup_cronjob() -> None:
    peers = copy_pod_peers([DatabaseKind.POSTGRES, DatabaseKind.REDIS], data_namespace="data", gitea_namespace="ci")
    names = [(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
              p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]) for p in peers]  # fmt: skip
    kinds = (DatabaseKind.POSTGRES, DatabaseKind.REDIS)
    crons = [("data", render_backup_cronjob(k, DB)["metadata"]["name"]) for k in kinds]
    assert names == [*crons, ("ci", gitea_backup.NAME)]


# --- the component ------------------------------------------------------------------------------

USER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nUSERKEYd41d8cd98f00b204e9800998ecf\n-----END OPENSSH PRIVATE KEY-----"
USER_PASSWORD = "UserBackupPassword0123456789abcdefXYZ"


class KeyMocks(DefaultMocks):
    """DefaultMocks, but the dynamic resources return values, as their `create` would (a TEST
    DOUBLE of the providers; `generate` itself is tested for real below)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "pulumi-python:dynamic:Resource":
            state |= {"value": "GeneratedPw0123456789", "private_key": "GENKEY", "public_key": "ssh-ed25519 AAAA gen"}
        return rid, state


def build(offsite: Offsite, *, user_secrets: bool) -> Recording:
    def program() -> None:
        OffsiteTarget(
            "backup-offsite",
            OffsiteTargetArgs(
                offsite=offsite,
                namespaces=[OffsiteNamespace(name="data", uid=999), OffsiteNamespace(name="ci", uid=1000)],
                data_namespace="data",
                password=pulumi.Output.secret(USER_PASSWORD) if user_secrets else None,
                credentials={"ssh-key": pulumi.Output.secret(USER_KEY)} if user_secrets else {},
            ),
        )

    return run_program(program, preview=False, mocks=KeyMocks())


@pytest.mark.parametrize("user_secrets", [True, False])
def test_secrets_reach_the_cluster_marked_secret_and_nothing_else(user_secrets: bool) -> None:
    rec = build(SFTP, user_secrets=user_secrets)
    secrets = [r for r in rec if r.type == "kubernetes:core/v1:Secret"]
    assert sorted(r.inputs["metadata"]["namespace"] for r in secrets) == ["ci", "data"]
    for r in secrets:
        assert r.secret_paths == ["stringData"]
        assert set(r.inputs["stringData"]) == {"password", "ssh-key"}
    dumped = json.dumps([r.redacted for r in rec])
    for value in (USER_KEY, USER_PASSWORD, "GENKEY", "GeneratedPw0123456789"):
        assert value not in dumped
    generated = [r for r in rec if r.type == "pulumi-python:dynamic:Resource"]
    assert len(generated) == (0 if user_secrets else 2)
    if not user_secrets:
        key = next(r for r in generated if "comment" in r.inputs)
        assert key.additional_secret_outputs == ["private_key"]


def test_an_s3_target_takes_the_users_keys_and_generates_no_ssh_key() -> None:
    s3 = Offsite.model_validate({"repository": "s3:https://s3.example.org/b"})
    with pytest.raises(ValueError, match="aws-access-key-id"):
        build(s3, user_secrets=False)


def test_generated_key_pair_is_a_real_openssh_ed25519_pair(tmp_path: Any) -> None:
    private, public = generate("homelab-backup")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = tmp_path / "k"
    key.write_text(private)
    key.chmod(0o600)
    import subprocess

    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == public.split()[:2] and public.endswith("homelab-backup")
    assert shlex.split(public)[0] == "ssh-ed25519"


def test_backup_job_runs_the_servers_own_image_in_every_mode() -> None:
    from components.platform.database_manifests import render_statefulset

    for vector in (False, True):
        db = DatabaseConfig.model_validate({"version": "16.6", "node": "rack-db-1", "size": "1Gi", "vector": vector})
        server = render_statefulset(DatabaseKind.POSTGRES, db)["spec"]["template"]["spec"]["containers"][0]["image"]
        dump = pod_spec(render_backup_cronjob(DatabaseKind.POSTGRES, db))["containers"][0]["image"]
        assert dump == server, vector
