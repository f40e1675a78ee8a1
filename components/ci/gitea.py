"""Gitea: the rack's forge, its state on a pinned volume and its metadata in the rack's PostgreSQL.

Creates, under `homelab:ci:Gitea` (protected by construction, like every stateful service: the
component and so its children carry `protect=True`):
- `GeneratedSecret`s for the database password, `SECRET_KEY`, `INTERNAL_TOKEN` and the admin
  password (unless the user set `homelab:gitea-admin-password`); the read-only pull account's
  password is handed in (the metal layer's, which every node's registries.yaml carries);
- `Secret` `gitea` (those values plus the runners' registration token) and `Secret`
  `gitea-db-admin` (the PostgreSQL admin credential the init Job needs) in Gitea's namespace;
- `PinnedVolume` `gitea-data` on the configured reliable node (Retain, node affinity);
- `Job` `gitea-db-init`: creates Gitea's own role and database in the rack's PostgreSQL,
  idempotently (re-running it only re-asserts the password and ownership). Not protected: a Job's
  template is immutable, so any change replaces it, and a protected resource cannot be replaced;
- `Deployment` `gitea` (one replica, `Recreate`: the volume is ReadWriteOnce and two Giteas on
  one data directory corrupt it), pinned to the volume's node, rootless image, restricted Pod
  Security profile, readiness/liveness/startup probes on `/api/healthz`; init containers run
  the migrations, create or reset the admin account and the pull account (`PULL_USER`: a plain
  user, no org membership, so it can read packages and never write them), and (Gitea < 1.23 only) seed the
  runners' shared registration token into the database;
- `Service` `gitea` (ClusterIP, HTTP 3000: the Ingress the platform layer makes points at it)
  and `Service` `gitea-ssh` (`LoadBalancer` through k3s ServiceLB on port 2222: on port 22 the
  ServiceLB host port would shadow every Pi's own sshd);
- `NetworkPolicy`s: Gitea takes HTTP from Traefik and the runners, SSH from anywhere, and talks
  only to PostgreSQL and DNS; the init Job talks only to PostgreSQL and DNS.

Configuration goes in through `GITEA__section__KEY` environment variables (the image's
environment-to-ini): `INSTALL_LOCK` on, registration off, sign-in required to view. Secrets are
referenced by secretKeyRef only; scripts read them from the environment, never from their text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    WORKLOAD_LABEL,
    pod_placement,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.core.network_policy import (
    dns_egress,
    from_traefik,
    pods_peer,
    render_workload_policy,
    rule,
    tcp,
)
from components.metal.k3s_cluster import NodeAccess
from components.platform.pinned_volume import PinnedVolume, PinnedVolumeArgs
from rack.endpoints import ServiceEndpoint
from rack.vocabulary import Category

NAME = "gitea"
DB_INIT_NAME = "gitea-db-init"
VOLUME_NAME = "gitea-data"
HTTP_PORT = 3000
SSH_PORT = 2222
UID = 1000
"""The rootless image's `git` user."""
DATA_DIR = "/data"
SECRET_NAME = "gitea"
DB_ADMIN_SECRET_NAME = "gitea-db-admin"
PULL_USER = "rack-puller"
"""The read-only account every node pulls the rack's own images with (registries.yaml). A plain
user, member of no organization: Gitea gives a signed-in non-member read access, never write, to
the packages of an organization or user whose visibility is public or limited, and nothing of a
private one (services/context/package.go, determineAccessMode). So app images go under a
`limited` (or public) organization; anonymous pulls stay refused (REQUIRE_SIGNIN_VIEW)."""
PULL_PASSWORD_KEY = "pull-password"
"""Key of the pull account's password in the `gitea` Secret."""
RUNNER_TOKEN_KEY = "runner-token"
"""Key of the runners' registration token in the `gitea` Secret."""
RUNNER_TOKEN_ENV_SINCE = (1, 23)
"""Gitea reads GITEA_RUNNER_REGISTRATION_TOKEN at start from 1.23 on (go-gitea/gitea#32946)."""

_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def image(version: str) -> str:
    """The rootless image: runs as uid 1000, built-in SSH server, no s6/root entrypoint."""
    return f"docker.io/gitea/gitea:{version}-rootless"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def reads_runner_token_env(version: str) -> bool:
    """Whether this Gitea release takes the shared runner token from its environment."""
    return version_tuple(version)[:2] >= RUNNER_TOKEN_ENV_SINCE


def _sql_name(value: str) -> str:
    if not _SQL_NAME.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier")
    return value


def render_db_init_script(*, database: str, user: str) -> str:
    """Shell script run by the init Job: create Gitea's role and database if missing, then
    (re)assert its password and ownership. Idempotent. Connection settings come from the PG*
    environment; the new role's password from GITEA_DB_PASSWORD via psql's `\\getenv`, so it never
    appears in a command line or in the script."""
    db, role = _sql_name(database), _sql_name(user)
    return f"""set -eu
psql -X -v ON_ERROR_STOP=1 --quiet <<'SQL'
\\getenv gitea_password GITEA_DB_PASSWORD
SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec
ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'gitea_password';
SELECT 'CREATE DATABASE {db} OWNER {role} ENCODING ''UTF8'' TEMPLATE template0'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{db}')\\gexec
ALTER DATABASE {db} OWNER TO {role};
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
SQL
echo "database {db} and role {role} are in place"
"""


def render_runner_token_script() -> str:
    """Init-container script for Gitea < 1.23, run after the migrations: make the shared token
    (GITEA_RUNNER_REGISTRATION_TOKEN) the instance's newest active registration token, as 1.23
    does itself at start. Older rows are deactivated; ours is moved to the newest id so the web
    UI (which shows the newest) never replaces it with a fresh one."""
    return """set -eu
psql -X -v ON_ERROR_STOP=1 --quiet <<'SQL'
\\getenv runner_token GITEA_RUNNER_REGISTRATION_TOKEN
BEGIN;
DELETE FROM action_runner_token
  WHERE token = :'runner_token'
    AND id <> (SELECT max(id) FROM action_runner_token WHERE owner_id = 0 AND repo_id = 0);
UPDATE action_runner_token SET is_active = false
  WHERE owner_id = 0 AND repo_id = 0 AND token <> :'runner_token';
INSERT INTO action_runner_token (token, owner_id, repo_id, is_active, created, updated)
  VALUES (:'runner_token', 0, 0, true, extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint)
  ON CONFLICT (token) DO UPDATE SET is_active = true, deleted = NULL, updated = EXCLUDED.updated;
COMMIT;
SQL
echo "runner registration token in place"
"""


def render_configure_script() -> str:
    """Init-container script: write app.ini from the environment, migrate, then create the admin
    account or reset its password to the configured one (the config owns it). Reads the admin
    login, password and email from GITEA_ADMIN_*; `--must-change-password=false` because the
    password is managed here, not by a human on first login."""
    return "set -eu\n/usr/local/bin/docker-setup.sh\ngitea migrate\n" + _account_script(
        "GITEA_ADMIN", "admin", admin=True
    )


def _account_script(env: str, label: str, *, admin: bool) -> str:
    """Create the account `${env}_USERNAME` (an admin with `admin`) with `${env}_PASSWORD` and
    `${env}_EMAIL`, or reset its password to the configured one when it exists."""
    flag = " --admin" if admin else ""
    return f"""if gitea admin user list{flag} | awk 'NR > 1 {{ print $2 }}' | grep -qxF "${env}_USERNAME"; then
  gitea admin user change-password --username "${env}_USERNAME" --password "${env}_PASSWORD" \\
    --must-change-password=false
  echo "{label} ${env}_USERNAME: password reset to the configured one"
else
  gitea admin user create{flag} --username "${env}_USERNAME" --password "${env}_PASSWORD" \\
    --email "${env}_EMAIL" --must-change-password=false
  echo "{label} ${env}_USERNAME: created"
fi
"""


def render_pull_account_script() -> str:
    """Init-container script, after the admin's: create the read-only pull account (a plain user,
    no admin, no organization) or reset its password to the configured one. Reads the login,
    password and email from GITEA_PULL_*."""
    return "set -eu\n" + _account_script("GITEA_PULL", "pull account", admin=False)


def _secret_env(name: str, key: str, secret: str = SECRET_NAME) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _value_env(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


@dataclass(frozen=True, kw_only=True)
class GiteaSettings:
    """The plain (non-secret) settings the renderers need."""

    version: str
    """Gitea release."""
    namespace: str
    """Gitea's namespace."""
    fqdn: str
    """`<gitea.host>.<domain>`: HTTP and SSH clone host."""
    root_url: str
    """External URL (through the ingress)."""
    node: str
    """The reliable node holding the volume (and so the pod)."""
    cpu: str
    """CPU request and limit."""
    memory: str
    """Memory request and limit."""
    admin_user: str
    """Admin login."""
    postgres: ServiceEndpoint
    """The rack's PostgreSQL (host, port, admin user)."""
    postgres_image: str
    """Image providing `psql` (the rack's PostgreSQL release)."""
    database: str = "gitea"
    """Gitea's own database."""
    db_user: str = "gitea"
    """Gitea's own role."""
    runners_namespace: str | None = None
    """Namespace of the runners (None: no runners, nothing to let in)."""
    runner_pod_labels: Mapping[str, str] | None = None
    """Pod labels of the runners."""
    pull_user: str | None = None
    """Login of the read-only pull account (None: no pull account; its password is the Secret's `pull-password`)."""


def gitea_labels() -> dict[str, str]:
    return workload_labels(NAME, Category.DATA)


def render_env(s: GiteaSettings) -> list[dict[str, Any]]:
    """Gitea's environment: paths under the volume, and app.ini through GITEA__section__KEY."""
    pg = s.postgres
    env = _value_env(
        {
            "GITEA_WORK_DIR": DATA_DIR,
            "GITEA_CUSTOM": f"{DATA_DIR}/gitea",
            "GITEA_APP_INI": f"{DATA_DIR}/gitea/conf/app.ini",
            "GITEA_TEMP": "/tmp/gitea",
            "HOME": f"{DATA_DIR}/git",
            "TMPDIR": "/tmp",
            "GITEA__database__DB_TYPE": "postgres",
            "GITEA__database__HOST": f"{pg.host}:{pg.port}",
            "GITEA__database__NAME": s.database,
            "GITEA__database__USER": s.db_user,
            "GITEA__database__SSL_MODE": "disable",
            "GITEA__security__INSTALL_LOCK": "true",
            "GITEA__service__DISABLE_REGISTRATION": "true",
            "GITEA__service__REQUIRE_SIGNIN_VIEW": "true",
            "GITEA__server__DOMAIN": s.fqdn,
            "GITEA__server__ROOT_URL": s.root_url,
            "GITEA__server__HTTP_PORT": str(HTTP_PORT),
            "GITEA__server__APP_DATA_PATH": DATA_DIR,
            "GITEA__server__START_SSH_SERVER": "true",
            "GITEA__server__SSH_DOMAIN": s.fqdn,
            "GITEA__server__SSH_PORT": str(SSH_PORT),
            "GITEA__server__SSH_LISTEN_PORT": str(SSH_PORT),
            "GITEA__repository__ROOT": f"{DATA_DIR}/git/gitea-repositories",
            "GITEA__actions__ENABLED": "true",
        }
    )
    env += [
        _secret_env("GITEA__database__PASSWD", "db-password"),
        _secret_env("GITEA__security__SECRET_KEY", "secret-key"),
        _secret_env("GITEA__security__INTERNAL_TOKEN", "internal-token"),
        # Read at start by Gitea >= 1.23; harmless (ignored) before, where the seed step does it.
        _secret_env("GITEA_RUNNER_REGISTRATION_TOKEN", RUNNER_TOKEN_KEY),
    ]
    return env


def _psql_env(*, host: str, port: int, user: str, database: str, password: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *_value_env({"PGHOST": host, "PGPORT": str(port), "PGUSER": user, "PGDATABASE": database}),
        {**password, "name": "PGPASSWORD"},
    ]


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def render_deployment(s: GiteaSettings, *, claim_name: str) -> dict[str, Any]:
    """Gitea's Deployment (pure)."""
    env = render_env(s)
    mounts = [{"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    init: list[dict[str, Any]] = [
        {
            "name": "configure",
            "image": image(s.version),
            "command": ["/bin/sh", "-c", render_configure_script()],
            "env": [
                *env,
                *_value_env({"GITEA_ADMIN_USERNAME": s.admin_user, "GITEA_ADMIN_EMAIL": f"{s.admin_user}@{s.fqdn}"}),
                _secret_env("GITEA_ADMIN_PASSWORD", "admin-password"),
            ],
            "resources": _resources(s.cpu, s.memory),
            "securityContext": restricted_container_security(),
            "volumeMounts": mounts,
        }
    ]
    if s.pull_user is not None:
        init.append(
            {
                "name": "pull-account",
                "image": image(s.version),
                "command": ["/bin/sh", "-c", render_pull_account_script()],
                "env": [
                    *env,
                    *_value_env({"GITEA_PULL_USERNAME": s.pull_user, "GITEA_PULL_EMAIL": f"{s.pull_user}@{s.fqdn}"}),
                    _secret_env("GITEA_PULL_PASSWORD", PULL_PASSWORD_KEY),
                ],
                "resources": _resources(s.cpu, s.memory),
                "securityContext": restricted_container_security(),
                "volumeMounts": mounts,
            }
        )
    if not reads_runner_token_env(s.version):
        init.append(
            {
                "name": "runner-token",
                "image": s.postgres_image,
                "command": ["/bin/sh", "-c", render_runner_token_script()],
                "env": [
                    *_psql_env(
                        host=s.postgres.host,
                        port=s.postgres.port,
                        user=s.db_user,
                        database=s.database,
                        password=_secret_env("PGPASSWORD", "db-password"),
                    ),
                    _secret_env("GITEA_RUNNER_REGISTRATION_TOKEN", RUNNER_TOKEN_KEY),
                ],
                "resources": _resources("50m", "64Mi"),
                "securityContext": restricted_container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        )
    health = {"httpGet": {"path": "/api/healthz", "port": "http"}, "timeoutSeconds": 3}
    container = {
        "name": NAME,
        "image": image(s.version),
        "env": env,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "ssh", "containerPort": SSH_PORT, "protocol": "TCP"},
        ],
        "startupProbe": {**health, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 20, "failureThreshold": 6},
        "resources": _resources(s.cpu, s.memory),
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }
    labels = gitea_labels()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {WORKLOAD_LABEL: NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(UID, fs_group=True),
                    "initContainers": init,
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                    # Data category, pinned to the volume's node; no short failover toleration:
                    # the pod cannot move off its volume anyway.
                    **pod_placement(NAME, Category.DATA, hostname=s.node),
                },
            },
        },
    }


def render_db_init_job(s: GiteaSettings) -> dict[str, Any]:
    """The Job creating Gitea's role and database (pure)."""
    pg = s.postgres
    if pg.user is None:
        raise ValueError("the postgres endpoint names no admin user to create Gitea's role with")
    labels = workload_labels(DB_INIT_NAME, Category.INFRASTRUCTURE)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": DB_INIT_NAME, "namespace": s.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(UID, fs_group=True),
                    "containers": [
                        {
                            "name": "psql",
                            "image": s.postgres_image,
                            "command": ["/bin/sh", "-c", render_db_init_script(database=s.database, user=s.db_user)],
                            "env": [
                                *_psql_env(
                                    host=pg.host,
                                    port=pg.port,
                                    user=pg.user,
                                    database="postgres",
                                    password=_secret_env("PGPASSWORD", "password", DB_ADMIN_SECRET_NAME),
                                ),
                                _secret_env("GITEA_DB_PASSWORD", "db-password"),
                            ],
                            "resources": _resources("50m", "64Mi"),
                            "securityContext": restricted_container_security(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                    **pod_placement(DB_INIT_NAME, Category.INFRASTRUCTURE),
                },
            },
        },
    }


def render_http_service(s: GiteaSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": gitea_labels()},
        "spec": {
            "type": "ClusterIP",
            "selector": {WORKLOAD_LABEL: NAME},
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_ssh_service(s: GiteaSettings) -> dict[str, Any]:
    """SSH through k3s ServiceLB: every node answers on 2222 (not 22, where the ServiceLB host
    port would shadow the Pi's own sshd), so `ssh://git@<fqdn>:2222/...` reaches Gitea at the
    ingress address."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{NAME}-ssh", "namespace": s.namespace, "labels": gitea_labels()},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Cluster",
            "selector": {WORKLOAD_LABEL: NAME},
            "ports": [{"name": "ssh", "port": SSH_PORT, "targetPort": "ssh", "protocol": "TCP"}],
        },
    }


def render_secret(namespace: str, name: str, string_data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": gitea_labels()},
        "type": "Opaque",
        "stringData": dict(string_data),
    }


def postgres_egress(pg: ServiceEndpoint) -> dict[str, Any]:
    if pg.pod_labels is None:
        raise ValueError("the postgres endpoint has no pod labels to allow egress to")
    return rule([pods_peer(pg.namespace, pg.pod_labels)], tcp(pg.port), egress=True)


def render_network_policies(s: GiteaSettings) -> list[dict[str, Any]]:
    """Gitea: HTTP from Traefik and the runners, SSH from anywhere (ServiceLB forwards it from
    whichever node was addressed); out only to PostgreSQL and DNS. The init Job: out only."""
    http_from: list[dict[str, Any]] = [from_traefik("http")]
    if s.runners_namespace is not None and s.runner_pod_labels is not None:
        http_from.append(rule([pods_peer(s.runners_namespace, s.runner_pod_labels)], tcp("http"), egress=False))
    out = [dns_egress(), postgres_egress(s.postgres)]
    return [
        render_workload_policy(
            name=NAME,
            namespace=s.namespace,
            pod_labels={WORKLOAD_LABEL: NAME},
            labels=gitea_labels(),
            ingress=[*http_from, rule(None, tcp("ssh"), egress=False)],
            egress=out,
        ),
        render_workload_policy(
            name=DB_INIT_NAME,
            namespace=s.namespace,
            pod_labels={WORKLOAD_LABEL: DB_INIT_NAME},
            labels=workload_labels(DB_INIT_NAME, Category.INFRASTRUCTURE),
            ingress=[],
            egress=out,
        ),
    ]


@dataclass(frozen=True, kw_only=True)
class GiteaArgs:
    settings: GiteaSettings
    """Plain settings (version, host, node, database endpoint, ...)."""
    storage_path: str
    """The node's storage.path (the volume lives at <storage_path>/gitea-data)."""
    volume_size: str
    """Size of the pinned volume."""
    runner_token: pulumi.Input[str]
    """The runners' shared registration token (a secret), which Gitea is started with."""
    admin_password: pulumi.Input[str] | None = None
    """User-supplied admin password (homelab:gitea-admin-password); None: generated."""
    node_access: NodeAccess | None = None
    """SSH to the volume's node (the metal layer's), so its directory is created before use."""
    pull_password: pulumi.Input[str] | None = None
    """The read-only pull account's password (secret), with `settings.pull_user`."""


class Gitea(pulumi.ComponentResource):
    volume: PinnedVolume
    """Gitea's state."""
    secret: KubernetesObject
    """Gitea's credentials in its namespace."""
    db_admin_secret: KubernetesObject
    """The PostgreSQL admin credential the init Job uses."""
    db_init: KubernetesObject
    """Creates Gitea's role and database."""
    deployment: KubernetesObject
    """The Gitea pod."""
    http_service: KubernetesObject
    """ClusterIP, port 3000 (the Ingress' backend)."""
    ssh_service: KubernetesObject
    """LoadBalancer (ServiceLB), port 2222."""
    network_policies: list[KubernetesObject]
    """Gitea's and the init Job's allow-lists."""
    admin_password: pulumi.Output[str]
    """The admin password (secret)."""

    def __init__(self, name: str, args: GiteaArgs, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True))
        super().__init__("homelab:ci:Gitea", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        if s.postgres.password is None:
            raise ValueError("the postgres endpoint carries no admin password")

        def generated(key: str, length: int) -> pulumi.Output[str]:
            return GeneratedSecret(f"{name}-{key}", GeneratedSecretArgs(length=length), child).value

        admin = GeneratedSecret(
            f"{name}-admin-password", GeneratedSecretArgs(length=32, override=args.admin_password), child
        )
        self.admin_password = admin.value
        values: dict[str, pulumi.Output[str]] = {
            "db-password": generated("db-password", 32),
            "secret-key": generated("secret-key", 64),
            "internal-token": generated("internal-token", 64),
            "admin-password": admin.value,
            RUNNER_TOKEN_KEY: pulumi.Output.secret(args.runner_token),
        }
        if s.pull_user is not None:
            if args.pull_password is None:
                raise ValueError("a pull account needs its password (GiteaArgs.pull_password)")
            values[PULL_PASSWORD_KEY] = pulumi.Output.secret(args.pull_password)
        sec = render_secret(s.namespace, SECRET_NAME, values)
        self.secret = KubernetesObject(f"{name}-secret", sec, child)
        adm = render_secret(s.namespace, DB_ADMIN_SECRET_NAME, {"password": pulumi.Output.secret(s.postgres.password)})
        self.db_admin_secret = KubernetesObject(f"{name}-db-admin-secret", adm, child)

        self.volume = PinnedVolume(
            f"{name}-volume",
            PinnedVolumeArgs(
                volume_name=VOLUME_NAME,
                namespace=s.namespace,
                node=s.node,
                storage_path=args.storage_path,
                size=args.volume_size,
                access=args.node_access,
            ),
            child,
        )

        job = render_db_init_job(s)
        self.db_init = KubernetesObject(
            f"{name}-db-init",
            job,
            pulumi.ResourceOptions(parent=self, protect=False, depends_on=[self.secret, self.db_admin_secret]),
        )

        dep = render_deployment(s, claim_name=self.volume.claim_name)
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            dep,
            pulumi.ResourceOptions(parent=self, depends_on=[self.secret, self.db_init, self.volume]),
        )
        http = render_http_service(s)
        self.http_service = KubernetesObject(f"{name}-http-service", http, child)
        ssh = render_ssh_service(s)
        self.ssh_service = KubernetesObject(f"{name}-ssh-service", ssh, child)
        self.network_policies = [
            KubernetesObject(f"{name}-netpol-{pol['metadata']['name']}", pol, child)
            for pol in render_network_policies(s)
        ]
        self.register_outputs(
            {
                "volume": self.volume,
                "secret": self.secret,
                "db_admin_secret": self.db_admin_secret,
                "db_init": self.db_init,
                "deployment": self.deployment,
                "http_service": self.http_service,
                "ssh_service": self.ssh_service,
                "network_policies": self.network_policies,
                "admin_password": self.admin_password,
            }
        )
