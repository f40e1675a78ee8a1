"""Data: pinned Retain volumes, the databases (MySQL, PostgreSQL, Redis) with their backups, and
the vector store extension.
"""

from components.platform.database import Database, DatabaseArgs
from components.platform.database_manifests import NAMESPACE, Client, workload_name
from components.platform.pinned_volume import render_storage_class
from components.platform.vector_store import VectorExtension, VectorExtensionArgs

__all__ = [
    "NAMESPACE",
    "Client",
    "Database",
    "DatabaseArgs",
    "VectorExtension",
    "VectorExtensionArgs",
    "render_storage_class",
    "workload_name",
]
