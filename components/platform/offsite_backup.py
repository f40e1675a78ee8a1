"""Off-node copies of every backup with restic: pure functions, creates nothing.

Why restic (over borg and kopia): it is one static Go binary with an official image
(`restic/restic`, Alpine with OpenSSH's client), it writes to SFTP, S3-compatible storage and its
own rest-server natively, where borg needs borg installed on the SFTP side and has no S3; every
repository is encrypted (AES-256 + Poly1305) and deduplicated by content-defined chunks, with
zstd compression since repository format 2; `forget --keep-daily/weekly/monthly --prune` is the
retention the config names; and it is in Debian, so the restore drills in tests/real/backups run
the same program the CronJobs run. kopia does as much but is not packaged in Debian here.

`offsite_script` is the one source of the copy commands: the CronJobs run exactly its text (the
databases' after their dump, in the same pod; Gitea's on its own schedule), and
tests/real/backups runs the rendered script against a real SFTP server in another network
namespace, then restores with docs/restore.md.

Each dataset has a repository of its own, `<repository>/<dataset>`: their nightly
`forget --prune` runs take restic's exclusive lock, and separate repositories never wait on each
other; a restore of one never reads another's. Each snapshot holds exactly one dataset copy at its
root (`restic backup .` in the dump's directory), tagged and "hosted" with the dataset's name, so
`restic restore latest --host <dataset> --target DIR` gives back the dump's files in DIR.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from components.core.layout import (
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.core.network_policy import (
    cidr_peer,
    dns_egress,
    host_network,
    pods_peer,
    render_workload_policy,
    rule,
    tcp,
)
from components.observability import monitoring_config as mc
from rack.config import DatabaseKind, Offsite, RepositoryUrl, parse_repository
from rack.vocabulary import Category

RESTIC_IMAGE_REPO = "docker.io/restic/restic"
REST_SERVER_IMAGE_REPO = "docker.io/restic/rest-server"
SECRET_NAME = "backup-offsite"
"""The Secret holding the repository password (and the SSH key or S3 keys) in each namespace
whose pods copy off-node."""
PASSWD_CONFIGMAP = "backup-offsite-passwd"
"""ConfigMap with the one /etc/passwd line OpenSSH's client needs: `ssh` exits ("No user exists
for uid 999") when getpwuid() finds nothing, and the restic image knows neither 999 nor 1000."""
STATE_DIR = "/tmp/offsite"
"""Where the script writes the SSH key, known_hosts and restic's cache (the pod's emptyDir)."""
REPOSITORY_SERVICE = "backup-repository"
"""With `offsite.node`: the rest-server's Service (and Deployment, PV/PVC) name in `data`."""
REST_SERVER_PORT = 8000
GITEA_BACKUP_NAME = "gitea-backup"
"""Gitea's copy CronJob (components/ci/gitea_backup.py), named here for the policies admitting it."""
METRIC = "homelab_backup_last_success_timestamp_seconds"
"""Pushed after each good off-node copy: unix time of the copy, label `dataset`."""

SECRET_KEYS: dict[str, str] = {
    "password": "RESTIC_PASSWORD",
    "ssh-key": "BACKUP_SSH_KEY",
    "aws-access-key-id": "AWS_ACCESS_KEY_ID",
    "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY",
}
"""Key in the Secret -> the environment variable the script (or restic itself) reads it from."""


def restic_image(offsite: Offsite) -> str:
    return f"{RESTIC_IMAGE_REPO}:{offsite.restic_version}"


def rest_server_image(offsite: Offsite) -> str:
    return f"{REST_SERVER_IMAGE_REPO}:{offsite.rest_server_version}"


def repository_base(offsite: Offsite, data_namespace: str) -> str:
    """The restic URL every dataset's repository lives under."""
    if offsite.repository is not None:
        return offsite.repository
    return f"rest:http://{REPOSITORY_SERVICE}.{data_namespace}.svc.cluster.local:{REST_SERVER_PORT}"


def target_of(offsite: Offsite, data_namespace: str) -> RepositoryUrl:
    return parse_repository(repository_base(offsite, data_namespace))


def dataset_repository(offsite: Offsite, dataset: str, data_namespace: str) -> str:
    """`<repository>/<dataset>` (one repository per dataset)."""
    return target_of(offsite, data_namespace).joined(dataset)


def secret_keys_for(offsite: Offsite) -> tuple[str, ...]:
    """Which keys the Secret carries for this target (always the password)."""
    if offsite.repository is None:
        return ("password",)
    scheme = parse_repository(offsite.repository).scheme
    return {"sftp": ("password", "ssh-key"), "s3": ("password", "aws-access-key-id", "aws-secret-access-key")}.get(
        scheme, ("password",)
    )


def known_hosts_line(host: str, port: int, host_key: str) -> str:
    """An OpenSSH known_hosts line pinning the key (`[host]:port` unless the port is 22)."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {' '.join(host_key.split()[:2])}"


def ssh_command(target: RepositoryUrl, *, pinned: bool = True) -> str:
    """The `sftp.command` restic runs: key and pinned host key from the state dir, nothing asked.
    Unpinned (no `host-key`; the plan warns), the server's key is taken as it comes."""
    opts = [
        "-i", f"{STATE_DIR}/ssh-key",
        "-p", str(target.port),
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=" + ("yes" if pinned else "accept-new"),
        "-o", f"UserKnownHostsFile={STATE_DIR}/known_hosts",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ServerAliveInterval=60",
    ]  # fmt: skip
    return " ".join(["ssh", *opts, f"{target.user}@{target.host}", "-s", "sftp"])


@dataclass(frozen=True)
class Source:
    """What one dataset's copy reads."""

    directory: str
    """A directory: the dump volume's mount (`newest_dump`) or the data itself."""
    newest_dump: bool
    """True: copy the newest complete `<timestamp>/` dump under `directory` (the databases);
    False: copy `directory` itself (Gitea's volume)."""
    excludes: tuple[str, ...] = ()
    """Absolute paths left out (rebuildable or transient state)."""


def metric_line(dataset: str) -> str:
    """The sample pushed after a good copy (text exposition format; VictoriaMetrics stamps it)."""
    return f'{METRIC}{{dataset="{dataset}"}}'


def offsite_script(
    dataset: str,
    source: Source,
    offsite: Offsite,
    *,
    data_namespace: str,
    metrics_url: str | None,
) -> str:
    """The POSIX sh script of one off-node copy (pure). Secrets come from SECRET_KEYS' variables;
    the repository, retention and host key are literal (none is secret)."""
    target = target_of(offsite, data_namespace)
    repo = target.joined(dataset)
    keep = offsite.retention
    lines = [
        "set -eu",
        "umask 077",
        f"state={STATE_DIR}",
        'mkdir -p "$state/cache"',
        f"export RESTIC_REPOSITORY={shlex.quote(repo)}",
        'export RESTIC_CACHE_DIR="$state/cache"',
    ]
    if target.scheme == "sftp":
        # The key goes to a 0600 file through a shell builtin: never on a command line.
        lines.append("printf '%s\\n' \"$BACKUP_SSH_KEY\" > \"$state/ssh-key\"")
        if offsite.host_key is not None:
            pinned = known_hosts_line(target.host, target.port, offsite.host_key)
            lines.append(f"printf '%s\\n' {shlex.quote(pinned)} > \"$state/known_hosts\"")
        else:
            lines.append(': > "$state/known_hosts"')
        command = ssh_command(target, pinned=offsite.host_key is not None)
        lines.append(f"set -- -o {shlex.quote('sftp.command=' + command)}")
    else:
        lines.append("set --")
    if source.newest_dump:
        d = shlex.quote(source.directory)
        lines += [
            f"src=\"$(ls -1 {d} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' | sort | tail -n 1)\"",
            f'[ -n "$src" ] || {{ echo "offsite {dataset}: no complete dump in {source.directory}" >&2; exit 1; }}',
            f'cd {d}/"$src"',
        ]
    else:
        lines.append(f"cd {shlex.quote(source.directory)}")
    excludes = "".join(f" --exclude {shlex.quote(e)}" for e in source.excludes)
    lines += [
        # A repository that exists answers `cat config`; `init` on one that exists fails, so a
        # wrong password or an unreachable target can never start a second repository.
        'restic "$@" cat config >/dev/null 2>&1 || restic "$@" init',
        f'restic "$@" backup --host {dataset} --tag {dataset}{excludes} .',
        f'restic "$@" forget --host {dataset} --group-by host --keep-daily {keep.daily}'
        f" --keep-weekly {keep.weekly} --keep-monthly {keep.monthly} --prune",
        'restic "$@" check',
    ]
    if metrics_url is not None:
        url = f"{metrics_url}/api/v1/import/prometheus"
        lines += [
            f'sample="{metric_line(dataset).replace(chr(34), chr(92) + chr(34))} $(date +%s)"',
            f'wget -q -O /dev/null --post-data "$sample" {shlex.quote(url)}'
            f' || echo "offsite {dataset}: copied, but the success metric was not recorded at {url}" >&2',
        ]
    lines.append(f'echo "offsite {dataset}: copied to {repo}"')
    return "\n".join(lines) + "\n"


def offsite_env(offsite: Offsite) -> list[dict[str, Any]]:
    """The copy container's secret environment, every value by secretKeyRef."""
    return [
        {"name": SECRET_KEYS[key], "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}
        for key in secret_keys_for(offsite)
    ]


def passwd_line(uid: int) -> str:
    return f"backup:x:{uid}:{uid}:backup:{STATE_DIR}:/sbin/nologin\n"


def render_passwd_configmap(uid: int, *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": PASSWD_CONFIGMAP, "namespace": namespace, "labels": labels},
        "data": {"passwd": passwd_line(uid)},
    }


def render_secret(values: dict[str, Any], *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """The Secret the copy reads (`values`: key -> secret Output, as stringData)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "stringData": dict(values),
    }


def offsite_container(
    dataset: str,
    source: Source,
    offsite: Offsite,
    *,
    data_namespace: str,
    metrics_url: str | None,
    source_mount: dict[str, Any],
) -> dict[str, Any]:
    """The container copying one dataset off-node (`source_mount`: its data, read-only)."""
    script = offsite_script(dataset, source, offsite, data_namespace=data_namespace, metrics_url=metrics_url)
    return {
        "name": "offsite",
        "image": restic_image(offsite),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "env": offsite_env(offsite),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {**source_mount, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "passwd", "mountPath": "/etc/passwd", "subPath": "passwd", "readOnly": True},
        ],
    }


def passwd_volume() -> dict[str, Any]:
    return {"name": "passwd", "configMap": {"name": PASSWD_CONFIGMAP}}


def target_egress(offsite: Offsite, data_namespace: str) -> dict[str, Any]:
    """A NetworkPolicy egress rule reaching the repository: its address when the URL names one,
    else any address on its port (a name resolves outside the policy's view); the in-cluster
    rest-server by its pods."""
    if offsite.node is not None:
        peer = pods_peer(data_namespace, {WORKLOAD_LABEL: REPOSITORY_SERVICE})
        return rule([peer], tcp(REST_SERVER_PORT), egress=True)
    target = target_of(offsite, data_namespace)
    try:
        peer = cidr_peer(host_network(target.host))
    except ValueError:
        peer = cidr_peer("0.0.0.0/0")
    return rule([peer], tcp(target.port), egress=True)


# --- the in-cluster repository (offsite.node): rest-server on another reliable node ---------------

REST_SERVER_UID = 999


def repository_labels() -> dict[str, str]:
    return workload_labels(REPOSITORY_SERVICE, Category.DATA)


def render_rest_server(offsite: Offsite, *, namespace: str) -> dict[str, Any]:
    """rest-server on `offsite.node`, serving the pinned volume (pure). No auth: only the backup
    pods reach it (NetworkPolicy) and restic encrypts everything it stores."""
    if offsite.node is None:
        raise ValueError("the in-cluster repository needs offsite.node")
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 20, "timeoutSeconds": 3}
    container = {
        "name": "rest-server",
        "image": rest_server_image(offsite),
        "imagePullPolicy": "IfNotPresent",
        "command": ["rest-server", "--path", "/data", "--listen", f":{REST_SERVER_PORT}", "--no-auth"],
        "ports": [{"name": "http", "containerPort": REST_SERVER_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted_container_security(),
        "readinessProbe": probe,
        "livenessProbe": probe,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": REPOSITORY_SERVICE, "namespace": namespace, "labels": repository_labels()},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {WORKLOAD_LABEL: REPOSITORY_SERVICE}},
            "template": {
                "metadata": {"labels": repository_labels()},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security(REST_SERVER_UID, fs_group=True),
                    "containers": [container],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": REPOSITORY_SERVICE}}],
                    **pod_placement(REPOSITORY_SERVICE, Category.DATA, hostname=offsite.node),
                },
            },
        },
    }


def render_repository_service(*, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": REPOSITORY_SERVICE, "namespace": namespace, "labels": repository_labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: REPOSITORY_SERVICE},
            "ports": [{"name": "http", "port": REST_SERVER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_repository_policy(clients: list[dict[str, Any]], *, namespace: str) -> dict[str, Any]:
    """In: the backup pods (`clients`, pod peers) only. Out: nothing."""
    return render_workload_policy(
        name=REPOSITORY_SERVICE,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: REPOSITORY_SERVICE},
        labels=repository_labels(),
        ingress=[rule(clients, tcp("http"), egress=False)],
        egress=[],
    )


def backup_pods_egress(offsite: Offsite, data_namespace: str, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What a copy pod talks to: DNS, the repository, and the metrics store (`metrics`: a rule)."""
    return [dns_egress(), target_egress(offsite, data_namespace), *([metrics] if metrics is not None else [])]


def copy_pod_peers(
    databases: list[DatabaseKind], *, data_namespace: str, gitea_namespace: str | None
) -> list[dict[str, Any]]:
    """The pods that copy off-node, as NetworkPolicy peers: each database's backup CronJob's in
    the data namespace, Gitea's in its own."""
    peers = [pods_peer(data_namespace, {WORKLOAD_LABEL: f"{kind.value}-backup"}) for kind in databases]
    if gitea_namespace is not None:
        peers.append(pods_peer(gitea_namespace, {WORKLOAD_LABEL: GITEA_BACKUP_NAME}))
    return peers


def metrics_egress(metrics_url: str | None) -> dict[str, Any] | None:
    """The egress rule from a copy pod to the metrics store (None without monitoring)."""
    if metrics_url is None:
        return None
    return rule([pods_peer(mc.NAMESPACE, {WORKLOAD_LABEL: mc.STORE_NAME})], tcp(mc.STORE_PORT), egress=True)
