"""KubernetesObject registers what pulumi-kubernetes' typed classes register for the same
manifest: type token, inputs, secret paths and secret outputs (a Secret's `data` and `stringData`
secret as whole maps, in and out), dependencies, and a NodePatch for `patch=True`; with one
addition, the stack's field manager annotation (`pulumi.com/patchFieldManager`, pulumi-kubernetes'
own), so the typed classes are given the same annotation.

Not compared: the provider version the typed classes send, which the engine ignores when a
resource names its provider (every Kubernetes object here does: tests/stacks/test_metal.py)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.apps.app_workload import render_deployment
from components.core.kubernetes_object import KubernetesObject
from rack.config import parse_rack
from tests.components.conftest import registered_alike
from tests.conftest import stack_raw

MANAGER = {"pulumi.com/patchFieldManager": "pulumi-homelab-homelab"}
"""The annotation for the recording's project and stack (plan.engine.run_program: homelab/homelab)."""


def managed(metadata: dict[str, Any]) -> dict[str, Any]:
    return {**metadata, "annotations": {**metadata.get("annotations", {}), **MANAGER}}


def test_a_secret_is_secret_whole_in_and_out(record: Any, options: dict[str, tuple[Any, ...]]) -> None:
    metadata = {"name": "app-db", "namespace": "apps", "labels": {"app.kubernetes.io/name": "app"}}

    def program() -> None:
        password = pulumi.Output.secret("s3cret-passw0rd")
        k8s.core.v1.Secret(
            "typed",
            metadata=managed(metadata),
            string_data={"PASSWORD": password},
            data={"ca.crt": "Y2EK"},
            type="Opaque",
        )
        KubernetesObject(
            "ours",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "stringData": {"PASSWORD": password},
                "data": {"ca.crt": "Y2EK"},
            },
        )

    rec = record(program)
    registered_alike(rec, options, "typed", "ours", version=False)
    ours = rec.by_name("ours")
    assert sorted(ours.secret_paths) == ["data", "stringData"]
    assert ours.additional_secret_outputs == ["data", "stringData"]
    assert ours.redacted["stringData"] == "[secret]" and ours.redacted["data"] == "[secret]"


def test_a_deployment_and_a_node_patch_register_as_the_typed_classes(
    record: Any, options: dict[str, tuple[Any, ...]]
) -> None:
    app = parse_rack(stack_raw("homelab")).apps[0]
    deployment = render_deployment(app, namespace="apps", failover_seconds=60, env=[])
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "rack-pi-1", "labels": {"rack.homelab.io/class": "general"}},
        "spec": {"taints": [{"key": "rack.homelab.io/experimental", "value": "true", "effect": "NoSchedule"}]},
    }

    def program() -> None:
        first = KubernetesObject("before", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        after = pulumi.ResourceOptions(depends_on=[first])
        k8s.apps.v1.Deployment(
            "typed-deployment", metadata=managed(deployment["metadata"]), spec=deployment["spec"], opts=after
        )
        KubernetesObject("ours-deployment", deployment, after)
        k8s.core.v1.NodePatch("typed-node", metadata=managed(node["metadata"]), spec=node["spec"])
        KubernetesObject("ours-node", node, patch=True)

    rec = record(program)
    registered_alike(rec, options, "typed-deployment", "ours-deployment", version=False)
    registered_alike(rec, options, "typed-node", "ours-node", version=False)
    assert rec.by_name("ours-node").type == "kubernetes:core/v1:NodePatch"
    assert rec.by_name("ours-deployment").inputs["spec"]["template"]["spec"]["containers"][0]["name"] == app.name


def test_every_object_is_applied_by_the_stacks_one_field_manager(record: Any) -> None:
    """Two runs' creates of one object (a killed run's, then the recovery's) apply it as the same
    manager, so the next change does not conflict with the first (make e2e-faults F1 then F3)."""
    annotated = {"name": "x", "annotations": {"checksum/config": "abc"}}

    def program() -> None:
        KubernetesObject("plain", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}})
        KubernetesObject("annotated", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": annotated})
        KubernetesObject(
            "later", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": pulumi.Output.from_input({"name": "o"})}
        )
        KubernetesObject("patch", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}, patch=True)

    for stack in ("lab", "homelab"):
        rec = record(program, stack=stack)
        want = f"pulumi-homelab-{stack}"
        annotations = {
            n: rec.by_name(n).inputs["metadata"]["annotations"] for n in ("plain", "annotated", "later", "patch")
        }
        assert annotations == {
            "plain": {"pulumi.com/patchFieldManager": want},
            "annotated": {"checksum/config": "abc", "pulumi.com/patchFieldManager": want},
            "later": {"pulumi.com/patchFieldManager": want},
            "patch": {"pulumi.com/patchFieldManager": want},
        }
    assert annotated == {"name": "x", "annotations": {"checksum/config": "abc"}}, "the manifest given is not changed"
