"""PinnedVolume: a local PersistentVolume on one reliable node, and the claim bound to it.

Creates, under `homelab:data:PinnedVolume` (protected by construction: the component and so
every child carry `protect=True`, and the claim and volume are `retain_on_delete`):
- `remote.Command` `<name>-dir` (when given SSH access to the node): creates
  `<storage.path>/<volume_name>`; it has no delete on purpose, data directories are never removed;
- `PersistentVolume` `<volume_name>` with `local.path = <storage.path>/<volume_name>`, node
  affinity to the hostname, reclaim policy Retain, and a `claimRef` reserving it for its claim;
- `PersistentVolumeClaim` `<volume_name>` in the workload's namespace, bound to that volume by
  `spec.volumeName`.

The shared `StorageClass` `pinned-local` (no provisioner, `Immediate`, Retain) is made once by the
platform layer from `render_storage_class()`, not here. `Immediate`, not the usual
`WaitForFirstConsumer` of local volumes: every pinned volume is pre-bound both ways (`claimRef` and
`volumeName`) to a PV whose node affinity the scheduler honours anyway, so delayed binding buys
nothing, and pulumi-kubernetes' claim awaiter treats a WaitForFirstConsumer claim as ready only
while it is *Pending*: a pre-bound claim that is Bound before the first watch event fails the
`up` after 5 minutes (found by the lab e2e). With `Immediate` the awaiter waits for Bound.

Why pods reference the claim by name (`volumes[].persistentVolumeClaim.claimName`) instead of a
StatefulSet `volumeClaimTemplates`: templates are immutable, and pulumi-kubernetes has replaced
StatefulSets and claims over template/size diffs (pulumi-kubernetes #619, #4328, #1665). A claim
owned by this component never depends on the workload's version or requests, and its size request
is in `ignore_changes`, so no config change can turn into a replacement of the data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import HOSTNAME_LABEL, LABEL_PREFIX
from components.core.remote_command import RemoteCommand
from components.metal.k3s_scripts import remote_command

if TYPE_CHECKING:
    from components.metal.k3s_cluster import NodeAccess

STORAGE_CLASS = "pinned-local"
"""The no-provisioner, Immediate-binding storage class every pinned volume uses."""

VOLUME_LABEL = f"{LABEL_PREFIX}/volume"
"""Label on the PV and PVC carrying the volume name (for `kubectl get pv -L`)."""

CLAIM_IGNORED_CHANGES = ["spec.resources"]
"""A local volume cannot be resized; a changed size must never diff the claim into a replacement
(pulumi-kubernetes #1665). The PV's capacity still follows the config (it is mutable)."""


def render_storage_class() -> dict[str, Any]:
    """The shared storage class of pinned volumes (pure)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": {f"{LABEL_PREFIX}/managed": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": False,
    }


def volume_path(storage_path: str, name: str) -> str:
    """Where on the node the volume's files live: `<storage.path>/<name>`."""
    return f"{storage_path.rstrip('/')}/{name}"


def render_volume(
    *, name: str, node: str, storage_path: str, size: str, namespace: str | None = None
) -> dict[str, Any]:
    """The Retain local PersistentVolume pinned to `node` (pure). With `namespace`, the volume is
    reserved (`claimRef`) for the claim of the same name there, so no other claim can take it."""
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": STORAGE_CLASS,
        "volumeMode": "Filesystem",
        # `local`, not hostPath: the kubelet applies the pod's fsGroup to a local volume (not to a
        # hostPath one), so non-root databases can write. Its directory must exist before a pod
        # mounts it: PinnedVolume creates it over SSH (see `access`).
        "local": {"path": volume_path(storage_path, name)},
        "nodeAffinity": {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}
                ]
            }
        },
    }
    if namespace is not None:
        spec["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": name}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {VOLUME_LABEL: name}},
        "spec": spec,
    }


def render_claim(*, name: str, namespace: str, size: str) -> dict[str, Any]:
    """The claim bound to the volume of the same name (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": {VOLUME_LABEL: name}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": name,
            "resources": {"requests": {"storage": size}},
        },
    }


def pinned_node(volume: dict[str, Any]) -> str | None:
    """The hostname a rendered PV's node affinity names (None if it names none): what the
    scheduler will force every pod using its claim onto."""
    terms = volume.get("spec", {}).get("nodeAffinity", {}).get("required", {}).get("nodeSelectorTerms", [])
    for term in terms:
        for expr in term.get("matchExpressions", []):
            if expr.get("key") == HOSTNAME_LABEL and expr.get("operator") == "In" and len(expr.get("values", [])) == 1:
                return str(expr["values"][0])
    return None


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
    access: NodeAccess | None = None
    """SSH to the node (from the metal layer); when set, the volume's directory is created there
    before the volume exists. None only where the directory is made otherwise (tests, by hand)."""


class PinnedVolume(pulumi.ComponentResource):
    volume: KubernetesObject
    """The Retain PersistentVolume pinned to the node."""
    claim: KubernetesObject
    """The claim bound to it by name."""
    claim_name: str
    """The claim's metadata.name, for pod specs."""
    node: str
    """The hostname every pod using the claim lands on."""
    path: str
    """The volume's directory on that node."""
    directory: RemoteCommand | None
    """The command that creates that directory (None without `access`)."""

    def __init__(self, name: str, args: PinnedVolumeArgs, opts: pulumi.ResourceOptions | None = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True))
        super().__init__("homelab:data:PinnedVolume", name, None, opts)
        # Children inherit protect from this component; retain_on_delete additionally keeps the
        # objects in the cluster should someone unprotect and delete the stack.
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        self.directory = None
        if args.access is not None:
            path = shlex.quote(volume_path(args.storage_path, args.volume_name))
            self.directory = RemoteCommand(
                f"{name}-dir",
                connection=args.access.connection,
                # Idempotent; no `delete` (data is never removed) and no triggers (never re-run).
                create=remote_command(f"mkdir -p -m 0750 {path}", user=args.access.user),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.access.after])),
            )
            child = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.directory]))
        pv = render_volume(
            name=args.volume_name,
            node=args.node,
            storage_path=args.storage_path,
            size=args.size,
            namespace=args.namespace,
        )
        self.volume = KubernetesObject(f"{name}-pv", pv, child)
        pvc = render_claim(name=args.volume_name, namespace=args.namespace, size=args.size)
        self.claim = KubernetesObject(
            f"{name}-pvc",
            pvc,
            pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[self.volume],
                    ignore_changes=CLAIM_IGNORED_CHANGES,
                ),
            ),
        )
        self.claim_name = args.volume_name
        self.node = args.node
        self.path = volume_path(args.storage_path, args.volume_name)
        self.register_outputs(
            {
                "volume": self.volume,
                "claim": self.claim,
                "claim_name": self.claim_name,
                "node": self.node,
                "path": self.path,
            }
        )
