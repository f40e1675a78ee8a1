"""Database: one PostgreSQL, MySQL or Redis server on a pinned volume, with its dumps.

Creates, under `homelab:data:Database` (protected by construction: `protect=True` on the
component flows to every child):
- `GeneratedSecret` `<name>-password` (made on the first `up`), unless the user set the
  optional `homelab:<kind>-password` secret;
- `Secret` `<kind>-credentials` (the password as a Kubernetes Secret, read by secretKeyRef);
- `PinnedVolume` `<name>-data` (`data-<kind>`) and `<name>-backup` (`backup-<kind>`) on the node
  named in config;
- `VersionGuard` `<name>-version` (a dynamic resource holding the applied version, whose check
  refuses a major-version change before anything changes: components/platform/version_guard.py);
- `Service` `<kind>`, `StatefulSet` `<kind>` (pinned image, requests/limits, probes, restricted
  security context, the data claim referenced by name), `PodDisruptionBudget` `<kind>`;
- `NetworkPolicy` `<kind>-clients` admitting only the given clients (apps whose `uses` name it,
  and the backup job);
- `CronJob` `<kind>-backup` writing logical dumps to the backup volume, keeping `backup.keep`,
  and with an off-node target (`offsite`) copying each dump there right after it is taken.

Manifests come from components/platform/database_manifests.py and components/platform/database_backup.py.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pulumi

from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import workload_labels
from components.metal.k3s_cluster import NodeAccess
from components.platform.database_backup import OffsiteCopy, backup_name, render_backup_cronjob
from components.platform.database_manifests import (
    FLAVORS,
    NAMESPACE,
    Client,
    backup_volume_name,
    data_volume_name,
    database_of,
    render_network_policy,
    render_pdb,
    render_secret,
    render_service,
    render_statefulset,
    service_host,
    user_of,
    workload_name,
)
from components.platform.pinned_volume import PinnedVolume, PinnedVolumeArgs
from components.platform.version_guard import VersionGuard
from rack.config import Database as DatabaseConfig
from rack.config import DatabaseKind
from rack.vocabulary import Category


def _b64(value: str | None) -> str | None:
    # None only under mocks, where the generated value was never made; a real `create` always
    # returns one, and a preview leaves it unknown (so this never runs there).
    return None if value is None else base64.b64encode(value.encode()).decode()


@dataclass(frozen=True, kw_only=True)
class DatabaseArgs:
    kind: DatabaseKind
    """postgres | mysql | redis."""
    config: DatabaseConfig
    """The validated `rack.databases.<kind>` section."""
    storage_path: str
    """The node's `storage.path` (where its pinned volumes live)."""
    clients: list[Client] = field(default_factory=list)
    """Pods allowed to connect (apps whose `uses` names this database, Gitea...)."""
    password: pulumi.Input[str] | None = None
    """The user's `homelab:<kind>-password` secret; None: generated on the first `up`."""
    namespace: str = NAMESPACE
    """Namespace of every namespaced object (the data namespace)."""
    node_access: NodeAccess | None = None
    """SSH to the volume's node (the metal layer's), so its directory is created before use."""
    offsite: OffsiteCopy | None = None
    """Where each dump is copied off the node (None: the local dumps only)."""
    offsite_depends_on: tuple[pulumi.Resource, ...] = ()
    """What the copy reads (the `backup-offsite` Secret and ConfigMap of the data namespace)."""


class Database(pulumi.ComponentResource):
    password: pulumi.Output[str]
    """The password (always a Pulumi secret)."""
    secret: KubernetesObject
    """The Kubernetes Secret holding it (key `password`)."""
    data_volume: PinnedVolume
    """The server's files."""
    backup_volume: PinnedVolume
    """Its dumps."""
    service: KubernetesObject
    """ClusterIP Service apps connect to."""
    statefulset: KubernetesObject
    """The server."""
    version_guard: VersionGuard
    """The applied version: refuses a change the server cannot make on its data (preview and up)."""
    pdb: KubernetesObject
    """Keeps a drain from evicting it silently."""
    network_policy: KubernetesObject
    """Admits only the clients."""
    backup: KubernetesObject
    """The scheduled dump."""
    host: str
    """In-cluster DNS name of the Service."""
    port: int
    """Service port."""
    user: str | None
    """User handed to apps (None for Redis)."""
    database: str | None
    """Database handed to apps (None for Redis)."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True))
        super().__init__("homelab:data:Database", name, None, opts)
        kind, db, ns = args.kind, args.config, args.namespace
        child = pulumi.ResourceOptions(parent=self)

        generated = GeneratedSecret(f"{name}-password", GeneratedSecretArgs(override=args.password), child)
        self.password = generated.value
        sec = render_secret(kind, password_b64=self.password.apply(_b64), namespace=ns)
        self.secret = KubernetesObject(f"{name}-secret", sec, child)

        self.data_volume = PinnedVolume(
            f"{name}-data",
            PinnedVolumeArgs(
                volume_name=data_volume_name(kind),
                namespace=ns,
                node=db.node,
                storage_path=args.storage_path,
                size=db.size,
                access=args.node_access,
            ),
            child,
        )
        self.backup_volume = PinnedVolume(
            f"{name}-backup",
            PinnedVolumeArgs(
                volume_name=backup_volume_name(kind),
                namespace=ns,
                node=db.node,
                storage_path=args.storage_path,
                size=db.backup.size or db.size,
                access=args.node_access,
            ),
            child,
        )

        svc = render_service(kind, namespace=ns)
        self.service = KubernetesObject(f"{name}-service", svc, child)
        self.version_guard = VersionGuard(f"{name}-version", str(kind), db.version, child)
        sts = render_statefulset(kind, db, namespace=ns)
        self.statefulset = KubernetesObject(
            f"{name}-statefulset",
            sts,
            pulumi.ResourceOptions(
                parent=self, depends_on=[self.secret, self.service, self.data_volume.claim, self.version_guard]
            ),
        )
        pdb = render_pdb(kind, namespace=ns)
        self.pdb = KubernetesObject(f"{name}-pdb", pdb, child)

        backup_client = Client(ns, {**workload_labels(backup_name(kind), Category.DATA)})
        policy = render_network_policy(kind, [*args.clients, backup_client], namespace=ns)
        self.network_policy = KubernetesObject(f"{name}-netpol", policy, child)
        cron = render_backup_cronjob(kind, db, namespace=ns, offsite=args.offsite)
        self.backup = KubernetesObject(
            f"{name}-backup-cronjob",
            cron,
            pulumi.ResourceOptions(
                parent=self, depends_on=[self.statefulset, self.backup_volume.claim, *args.offsite_depends_on]
            ),
        )

        self.host = service_host(kind, ns)
        self.port = FLAVORS[kind].port
        self.user = user_of(kind)
        self.database = database_of(kind)
        self.register_outputs(
            {
                "name": workload_name(kind),
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "database": self.database,
                "password": self.password,
                "secret": self.secret,
                "statefulset": self.statefulset,
                "backup": self.backup,
            }
        )
