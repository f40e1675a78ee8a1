"""PinnedVolume: pure manifests against the schema, and the component under recording mocks
(protected and retained by construction, claim size changes ignored, claim bound by name)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.core.layout import HOSTNAME_LABEL
from components.platform.pinned_volume import (
    CLAIM_IGNORED_CHANGES,
    STORAGE_CLASS,
    PinnedVolume,
    PinnedVolumeArgs,
    pinned_node,
    render_claim,
    render_storage_class,
    render_volume,
    volume_path,
)

PV = "kubernetes:core/v1:PersistentVolume"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"


def args(**over: Any) -> PinnedVolumeArgs:
    base: dict[str, Any] = {
        "volume_name": "data-postgres",
        "namespace": "data",
        "node": "rack-db-1",
        "storage_path": "/mnt/ssd/",
        "size": "30Gi",
    }
    return PinnedVolumeArgs(**{**base, **over})


def test_volume_is_retained_local_and_pinned_to_its_node() -> None:
    pv = render_volume(name="data-postgres", node="rack-db-1", storage_path="/mnt/ssd/", size="30Gi", namespace="data")
    spec = pv["spec"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["local"] == {"path": "/mnt/ssd/data-postgres"}
    assert spec["storageClassName"] == STORAGE_CLASS
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["rack-db-1"]}]}
    ]
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "data",
        "name": "data-postgres",
    }
    assert pinned_node(pv) == "rack-db-1"


def test_claim_binds_to_the_volume_by_name() -> None:
    pvc = render_claim(name="data-postgres", namespace="data", size="30Gi")
    assert pvc["spec"]["volumeName"] == "data-postgres"
    assert pvc["spec"]["storageClassName"] == STORAGE_CLASS
    assert pvc["metadata"] == {
        "name": "data-postgres",
        "namespace": "data",
        "labels": {"rack.homelab.io/volume": "data-postgres"},
    }


def test_storage_class_binds_immediately_and_retains() -> None:
    """Pre-bound claims under WaitForFirstConsumer time out pulumi-kubernetes' claim awaiter
    (it waits for Pending); the lab e2e's first `up` is the real-engine check of this choice."""
    sc = render_storage_class()
    assert sc["provisioner"] == "kubernetes.io/no-provisioner"
    assert sc["volumeBindingMode"] == "Immediate"
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["allowVolumeExpansion"] is False


@pytest.mark.parametrize(
    "manifest",
    [
        render_storage_class(),
        render_volume(name="v", node="n1", storage_path="/srv", size="1Gi", namespace="data"),
        render_volume(name="v", node="n1", storage_path="/srv", size="1Gi"),
        render_claim(name="v", namespace="data", size="1Gi"),
    ],
    ids=["storageclass", "pv", "pv-unreserved", "pvc"],
)
def test_manifests_match_the_kubernetes_schema(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, "1.31", strict=True)


def test_volume_path_joins_without_double_slashes() -> None:
    assert volume_path("/mnt/ssd/", "x") == "/mnt/ssd/x"
    assert volume_path("/mnt/ssd", "x") == "/mnt/ssd/x"


def test_pinned_node_is_none_without_hostname_affinity() -> None:
    assert pinned_node({"spec": {}}) is None


def test_component_is_protected_retained_and_ignores_claim_resizes(record: Any) -> None:
    seen: dict[str, pulumi.ResourceOptions] = {}

    def watch(a: pulumi.ResourceTransformationArgs) -> None:
        seen[a.name] = a.opts
        return None

    def program() -> None:
        pulumi.runtime.register_stack_transformation(watch)
        PinnedVolume("db-postgres-data", args())

    rec = record(program)
    component = rec.by_name("db-postgres-data")
    assert component.type == "homelab:data:PinnedVolume" and component.protect
    pv, pvc = rec.by_name("db-postgres-data-pv"), rec.by_name("db-postgres-data-pvc")
    for reg in (pv, pvc):
        assert reg.protect, f"{reg.name} must be protected (inherited from the component)"
        assert reg.retain_on_delete
        assert reg.parent == component.urn
    assert pv.inputs["spec"]["local"]["path"] == "/mnt/ssd/data-postgres"
    assert pvc.inputs["spec"]["volumeName"] == pv.inputs["metadata"]["name"] == "data-postgres"
    assert pv.urn in pvc.depends_on
    assert seen["db-postgres-data-pvc"].ignore_changes == CLAIM_IGNORED_CHANGES == ["spec.resources"]
    assert not seen["db-postgres-data-pv"].ignore_changes


def test_only_the_size_reaches_the_claim_so_nothing_else_can_replace_it(record: Any) -> None:
    """The claim's inputs are a function of name, namespace and size: node and path go to the PV."""
    a = record(lambda: PinnedVolume("v", args())).by_name("v-pvc").inputs
    b = record(lambda: PinnedVolume("v", args(node="rack-db-2", storage_path="/srv"))).by_name("v-pvc").inputs
    assert a == b


def test_volume_directory_is_created_over_ssh_and_never_deleted(record: Any) -> None:
    """A `local` volume cannot mount a missing path: with node access, PinnedVolume makes the
    directory first (through sudo for a non-root user), with no delete and no triggers."""
    from components.core.remote_command import RemoteCommand, connection
    from components.metal.k3s_cluster import NodeAccess
    from components.platform.pinned_volume import PinnedVolume, PinnedVolumeArgs

    def program() -> None:
        ssh = connection(host="192.168.10.31", user="pi")
        boot = RemoteCommand("node-bootstrap", connection=ssh, create="true")
        access = NodeAccess(connection=ssh, user="pi", after=boot)
        PinnedVolume(
            "vol",
            PinnedVolumeArgs(
                volume_name="data-postgres", namespace="data", node="rack-db-1", storage_path="/mnt/ssd",
                size="30Gi", access=access,
            ),
        )

    rec = record(program)
    mkdir = rec.by_name("vol-dir")
    assert mkdir.inputs["create"] == "sudo -n bash -c 'mkdir -p -m 0750 /mnt/ssd/data-postgres'"
    assert "delete" not in mkdir.inputs and "triggers" not in mkdir.inputs
    assert mkdir.protect and rec.by_name("node-bootstrap").urn in mkdir.depends_on
    assert mkdir.urn in rec.by_name("vol-pv").depends_on
