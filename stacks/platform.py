"""The platform layer: stateful services on pinned volumes.

Creates the shared `StorageClass` `pinned-local` (once, for every PinnedVolume of the rack, Gitea's
included), with `rack.backup.offsite` the `OffsiteTarget` (the repositories' password, the
Secret/ConfigMap the copy pods read in `data` and, for Gitea, `ci`; rest-server with
`offsite.node`), and one `Database` per configured `rack.databases.<kind>`, each admitting exactly
the apps whose `uses` names it (and Gitea, for PostgreSQL), each dump copied off-node. Its output
is the typed hand-over the apps and CI layers read: `PlatformLayer.endpoints[<kind>]`, and the
off-node target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.ci import gitea as gitea_mod
from components.core import NAMESPACES, WORKLOAD_LABEL, KubernetesObject
from components.observability import monitoring_config as mc
from components.platform import (
    DATABASE_UID,
    NAMESPACE,
    Client,
    Database,
    DatabaseArgs,
    OffsiteCopy,
    OffsiteNamespace,
    OffsiteTarget,
    OffsiteTargetArgs,
    copy_pod_peers,
    render_storage_class,
    workload_name,
)
from components.system import GITEA_NAMESPACE
from rack.config import DatabaseKind, Rack
from rack.endpoints import ServiceEndpoint
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.metal import MetalLayer
from stacks.system import SystemLayer

GITEA_CLIENTS = ("gitea", "gitea-db-init")
"""Pods of the CI layer (by `app.kubernetes.io/name`, in `ci`) that reach PostgreSQL."""


@dataclass(frozen=True)
class PlatformLayer:
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """The platform components by name."""
    endpoints: dict[str, ServiceEndpoint] = field(default_factory=dict)
    """Each database as apps reach it, keyed by the name apps put in `uses`."""
    storage_class: KubernetesObject | None = None
    """The shared `pinned-local` StorageClass."""
    offsite: OffsiteTarget | None = None
    """With `rack.backup.offsite`: the password and the objects every copy pod reads."""
    metrics_url: str | None = None
    """Where copy pods push their success metric (None: monitoring off)."""


def metrics_url(rack: Rack) -> str | None:
    """The metrics store's URL when the rack has monitoring, else None (nothing is pushed)."""
    return mc.store_url() if rack.monitoring is not None and rack.monitoring.enabled else None


def backup_pod_peers(rack: Rack) -> list[dict[str, Any]]:
    """The pods that copy off-node (for the policies admitting them)."""
    gitea = GITEA_NAMESPACE if rack.gitea is not None else None
    return copy_pod_peers(list(rack.databases.configured()), data_namespace=NAMESPACE, gitea_namespace=gitea)


def database_clients(rack: Rack, kind: DatabaseKind) -> list[Client]:
    """Who may connect to a database (pure): apps whose `uses` names it, and Gitea for PostgreSQL."""
    clients = [
        Client(NAMESPACES[app.category], {WORKLOAD_LABEL: app.name}) for app in rack.apps if kind.value in app.uses
    ]
    if kind == DatabaseKind.POSTGRES and rack.gitea is not None:
        clients += [Client(GITEA_NAMESPACE, {WORKLOAD_LABEL: name}) for name in GITEA_CLIENTS]
    return clients


def build_platform(loaded: Loaded, metal: MetalLayer, system: SystemLayer) -> PlatformLayer:
    rack = loaded.rack
    sc = render_storage_class()
    storage_class = KubernetesObject(
        "storage-class-pinned-local",
        sc,
        pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready),
    )
    components: dict[str, pulumi.ComponentResource] = {}
    endpoints: dict[str, ServiceEndpoint] = {}
    data_ns = system.namespaces.get(Category.DATA)
    offsite = build_offsite(loaded, metal, system)
    copy = OffsiteCopy(rack.backup.offsite, metrics_url(rack)) if rack.backup.offsite is not None else None
    for kind, db in rack.databases.configured().items():
        node = rack.node(db.node)
        assert node is not None and node.storage is not None, "validated by rack_problems"
        database = Database(
            f"db-{kind.value}",
            DatabaseArgs(
                kind=kind,
                config=db,
                storage_path=node.storage.path,
                clients=database_clients(rack, kind),
                password=loaded.secrets.get(f"{kind.value}-password"),
                node_access=metal.node_access.get(node.hostname),
                offsite=copy,
                offsite_depends_on=(
                    (offsite.secrets[NAMESPACE], offsite.passwd[NAMESPACE]) if offsite is not None else ()
                ),
            ),
            pulumi.ResourceOptions(
                providers=[metal.k8s_provider],
                depends_on=[storage_class, *([data_ns] if data_ns is not None else [])],
            ),
        )
        components[kind.value] = database
        endpoints[kind.value] = ServiceEndpoint(
            name=kind.value,
            kind=kind.value,
            namespace=NAMESPACE,
            service=workload_name(kind),
            port=database.port,
            pod_labels={WORKLOAD_LABEL: workload_name(kind)},
            database=database.database,
            user=database.user,
            password=database.password,
        )
    return PlatformLayer(
        components=components,
        endpoints=endpoints,
        storage_class=storage_class,
        offsite=offsite,
        metrics_url=metrics_url(rack),
    )


def build_offsite(loaded: Loaded, metal: MetalLayer, system: SystemLayer) -> OffsiteTarget | None:
    """The off-node target's shared pieces (None without `rack.backup.offsite`)."""
    rack = loaded.rack
    offsite = rack.backup.offsite
    if offsite is None:
        return None
    namespaces = [
        OffsiteNamespace(
            name=NAMESPACE,
            uid=DATABASE_UID,
            depends_on=[ns] if (ns := system.namespaces.get(Category.DATA)) is not None else [],
        )
    ]
    if rack.gitea is not None:
        ci = [system.ci_namespace] if system.ci_namespace is not None else []
        namespaces.append(OffsiteNamespace(name=GITEA_NAMESPACE, uid=gitea_mod.UID, depends_on=ci))
    credentials = {
        key: value
        for key, secret in (
            ("ssh-key", "backup-ssh-key"),
            ("aws-access-key-id", "backup-s3-access-key-id"),
            ("aws-secret-access-key", "backup-s3-secret-access-key"),
        )
        if (value := loaded.secrets.get(secret)) is not None
    }
    node = rack.node(offsite.node) if offsite.node is not None else None
    return OffsiteTarget(
        "backup-offsite",
        OffsiteTargetArgs(
            offsite=offsite,
            namespaces=namespaces,
            data_namespace=NAMESPACE,
            password=loaded.secrets.get("backup-password"),
            credentials=credentials,
            storage_path=node.storage.path if node is not None and node.storage is not None else None,
            node_access=metal.node_access.get(node.hostname) if node is not None else None,
            repository_clients=backup_pod_peers(rack),
        ),
        pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=metal.cluster_ready),
    )
