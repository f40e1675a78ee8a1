"""KubernetesObject: one rendered manifest registered as its pulumi-kubernetes resource.

Every Kubernetes object of this program is built by a pure `render_*` function that returns the
API shape (camelCase dicts, `apiVersion` and `kind` included). This registers such a manifest as
the resource pulumi-kubernetes' typed class would (`KubernetesObject(...)`): the same type
token (`kubernetes:apps/v1:Deployment`, `kubernetes:core/v1:Secret`), the same properties on the
wire, so the same URN, provider calls and diffs — and what the typed class adds that matters is
added here too: a Secret's `data`/`stringData` are secret as whole maps, inputs and outputs.

Why not the typed classes: they route a finished manifest through Python input types and decode
the provider's answer into output types. This program reads no typed output of a Kubernetes
object (it passes the resources themselves as dependencies), so that buys nothing, and it costs:
under the plan's harness a typed Deployment took 12.0 ms to register against 4.5 ms for this, and
importing `pulumi_kubernetes.core.v1` alone takes ~0.6 s. What is not copied: the typed classes'
aliases to long-gone API versions (`extensions/v1beta1`...), which only matter to stacks created
with those versions; this program never used them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

SECRET_OUTPUTS = ["data", "stringData"]
"""What pulumi-kubernetes' typed `Secret` marks as secret outputs (its `additional_secret_outputs`)."""

FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
"""pulumi-kubernetes' annotation naming the server-side-apply field manager of an object (read
first by the provider's `fieldManagerName`, pkg/provider/provider.go)."""


def field_manager() -> str:
    """The one field manager of every object this stack applies: `pulumi-<project>-<stack>`.

    Without it pulumi-kubernetes names a random manager per resource when it first plans its
    create (`pulumi-kubernetes-<random>`, kept in the state). A create whose run was killed
    (power loss, `kill -9`) is applied under one such name but never recorded; the documented
    recovery (`pulumi refresh --clear-pending-creates`, then `pulumi up`) applies the object again
    under a second name, and both then own every field. The next change of one of them fails with
    `Server-Side Apply field conflict detected ... conflict with "pulumi-kubernetes-<first>"`
    (make e2e-faults, step F1 then F3). One stable name per stack makes the second apply the
    same manager's. Another stack, or another tool, applying the same field still conflicts, as it
    should. A stack whose objects carry random names moves to this one on its next `up`: the
    provider applies under the new name, then relinquishes the old (`ssa.Relinquish`)."""
    return f"pulumi-{pulumi.get_project()}-{pulumi.get_stack()}"


def _with_field_manager(metadata: Any) -> Any:
    def add(meta: Mapping[str, Any] | None) -> dict[str, Any]:
        meta = dict(meta or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), FIELD_MANAGER_ANNOTATION: field_manager()}
        return meta

    if isinstance(metadata, pulumi.Output):
        return metadata.apply(add)
    return add(metadata)


def type_token(api_version: str, kind: str) -> str:
    """`apps/v1` + `Deployment` -> `kubernetes:apps/v1:Deployment`; the core group is `core/v1`."""
    group_version = api_version if "/" in api_version else f"core/{api_version}"
    return f"kubernetes:{group_version}:{kind}"


class KubernetesObject(pulumi.CustomResource):
    """A Kubernetes object from its manifest (`apiVersion`, `kind`, then its fields)."""

    def __init__(
        self,
        name: str,
        manifest: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        *,
        patch: bool = False,
    ):
        """`patch=True` registers a server-side-apply patch of the object (`kubernetes:core/v1:NodePatch`
        for a `Node`): fields left out of the manifest are not claimed. Every object, patch or
        not, is applied by the stack's one field manager (`field_manager`), so no two resources
        of this program may patch the same object."""
        kind = manifest["kind"]
        props = dict(manifest)
        props["metadata"] = _with_field_manager(props.get("metadata"))
        if kind == "Secret":
            # As the typed Secret does: the whole data maps are secret inputs and secret outputs.
            for key in SECRET_OUTPUTS:
                if props.get(key) is not None:
                    props[key] = pulumi.Output.secret(props[key])
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS))
        token = type_token(manifest["apiVersion"], kind) + ("Patch" if patch else "")
        super().__init__(token, name, props, opts)
