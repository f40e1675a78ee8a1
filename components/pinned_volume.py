"""PinnedVolume: a local PersistentVolume on one reliable node, and the claim bound to it.

Creates, under `homelab:data:PinnedVolume` (protected by construction: the component and so
every child carry `protect=True`, and the claim and volume are `retain_on_delete`):
- `StorageClass` `pinned-local` is shared and made by the platform layer, not here;
- `PersistentVolume` `<name>` of `local.path = <storage.path>/<name>`, node affinity to the
  hostname, reclaim policy Retain;
- `PersistentVolumeClaim` `<name>` in the workload's namespace, bound to that volume by name.

Nothing in here depends on a database version or requests, so bumping them never replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.layout import HOSTNAME_LABEL, LABEL_PREFIX

STORAGE_CLASS = "pinned-local"
"""The no-provisioner, WaitForFirstConsumer storage class every pinned volume uses."""


def render_storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": {f"{LABEL_PREFIX}/managed": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_path(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def render_volume(*, name: str, node: str, storage_path: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {f"{LABEL_PREFIX}/volume": name}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": volume_path(storage_path, name)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}
                    ]
                }
            },
        },
    }


def render_claim(*, name: str, namespace: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": name,
            "resources": {"requests": {"storage": size}},
        },
    }


@dataclass(frozen=True, kw_only=True)
class PinnedVolumeArgs:
    volume_name: str
    """Name of the PV and the PVC (stable: never derived from a version)."""
    namespace: str
    """Namespace of the claim (the workload's)."""
    node: str
    """Hostname of the reliable node."""
    storage_path: str
    """That node's storage.path; the volume lives at <storage_path>/<volume_name>."""
    size: str
    """Requested size."""


class PinnedVolume(pulumi.ComponentResource):
    volume: k8s.core.v1.PersistentVolume
    """The Retain PersistentVolume pinned to the node."""
    claim: k8s.core.v1.PersistentVolumeClaim
    """The claim bound to it by name."""
    claim_name: str
    """The claim's metadata.name, for pod specs."""

    def __init__(self, name: str, args: PinnedVolumeArgs, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True))
        super().__init__("homelab:data:PinnedVolume", name, None, opts)
        # Children inherit protect from this component; retain_on_delete additionally keeps the
        # objects in the cluster should someone unprotect and delete the stack.
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        pv = render_volume(name=args.volume_name, node=args.node, storage_path=args.storage_path, size=args.size)
        self.volume = k8s.core.v1.PersistentVolume(f"{name}-pv", metadata=pv["metadata"], spec=pv["spec"], opts=child)
        pvc = render_claim(name=args.volume_name, namespace=args.namespace, size=args.size)
        self.claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc",
            metadata=pvc["metadata"],
            spec=pvc["spec"],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.volume])),
        )
        self.claim_name = args.volume_name
        self.register_outputs({"volume": self.volume, "claim": self.claim})
