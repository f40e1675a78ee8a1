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
        for a `Node`): fields left out of the manifest are not claimed."""
        kind = manifest["kind"]
        props = dict(manifest)
        if kind == "Secret":
            # As the typed Secret does: the whole data maps are secret inputs and secret outputs.
            for key in SECRET_OUTPUTS:
                if props.get(key) is not None:
                    props[key] = pulumi.Output.secret(props[key])
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS))
        token = type_token(manifest["apiVersion"], kind) + ("Patch" if patch else "")
        super().__init__(token, name, props, opts)
