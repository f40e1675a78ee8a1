"""Data: pinned Retain volumes, the databases (MySQL, PostgreSQL, Redis) with their backups, and
the vector store extension.
"""

from components.platform.database import Database, DatabaseArgs
from components.platform.database_backup import OffsiteCopy, backup_name
from components.platform.database_manifests import NAMESPACE, Client, server_image, workload_name
from components.platform.database_manifests import RUN_AS as DATABASE_UID
from components.platform.offsite_backup import copy_pod_peers
from components.platform.offsite_target import OffsiteNamespace, OffsiteTarget, OffsiteTargetArgs
from components.platform.pinned_volume import render_storage_class
from components.platform.vector_store import VectorExtension, VectorExtensionArgs

__all__ = [
    "DATABASE_UID",
    "NAMESPACE",
    "Client",
    "Database",
    "DatabaseArgs",
    "OffsiteCopy",
    "OffsiteNamespace",
    "OffsiteTarget",
    "OffsiteTargetArgs",
    "VectorExtension",
    "VectorExtensionArgs",
    "backup_name",
    "copy_pod_peers",
    "render_storage_class",
    "server_image",
    "workload_name",
]
