"""The platform layer: stateful services on pinned volumes.

Creates the shared `StorageClass` `pinned-local` (once, for every PinnedVolume of the rack, Gitea's
included) and one `Database` per configured `rack.databases.<kind>`, each admitting exactly the
apps whose `uses` names it (and Gitea, for PostgreSQL). Its output is the typed hand-over the apps
and CI layers read: `PlatformLayer.endpoints[<kind>]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.core import NAMESPACES, WORKLOAD_LABEL, KubernetesObject
from components.platform import NAMESPACE, Client, Database, DatabaseArgs, render_storage_class, workload_name
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
    return PlatformLayer(components=components, endpoints=endpoints, storage_class=storage_class)
