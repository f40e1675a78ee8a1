"""The metal layer as composed: one K3sCluster whose provider, kubeconfig and readiness every
later layer receives, with the user's optional secrets wired in."""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from plan.engine import Recording
from rack.loader import Loaded, RackSecrets
from stacks.composition import build
from stacks.metal import MetalLayer, build_metal

PROVIDER = "pulumi:providers:kubernetes"


def test_metal_builds_one_cluster_and_hands_its_provider_on(record: Callable[..., Recording], homelab: Loaded) -> None:
    layers: list[MetalLayer] = []
    rec = record(lambda: layers.append(build_metal(homelab)))
    metal = layers[0]
    assert [r.name for r in rec.of_type("homelab:metal:K3sCluster")] == ["k3s"]
    providers = rec.of_type(PROVIDER)
    assert [p.name for p in providers] == ["k3s-provider"]
    assert providers[0].inputs["clusterIdentifier"] == homelab.rack.domain
    assert providers[0].inputs["deleteUnreachable"] == "false"  # provider config travels as strings
    # fixed-name ConfigMaps/Secrets update in place, never delete-and-create (refused when protected)
    assert providers[0].inputs["enableConfigMapMutable"] == "true"
    assert providers[0].inputs["enableSecretMutable"] == "true"
    assert len(metal.cluster_ready) == 2 * len(homelab.rack.nodes)  # each node's NodePatch and taints
    patches = rec.of_type("kubernetes:core/v1:NodePatch")
    assert sorted(p.name for p in patches) == sorted(f"k3s-{n.hostname}-layout" for n in homelab.rack.nodes)
    assert all(p.provider.startswith(providers[0].urn) for p in patches)


def test_every_kubernetes_object_of_the_rack_uses_the_k3s_provider(
    record: Callable[..., Recording], homelab: Loaded
) -> None:
    rec = record(lambda: build(homelab))
    provider_urn = rec.of_type(PROVIDER)[0].urn
    k8s_objects = [r for r in rec if r.custom and r.type.startswith("kubernetes:")]
    assert k8s_objects
    for r in k8s_objects:
        assert r.provider.startswith(provider_urn), r.name


def test_user_secrets_replace_generation_and_the_agent(record: Callable[..., Recording], homelab: Loaded) -> None:
    secrets = RackSecrets(
        {
            "ssh-private-key": lambda: pulumi.Output.secret("PRIVATE-KEY-TEXT"),
            "k3s-token": lambda: pulumi.Output.secret("user-token-value-0123456789"),
        }
    )
    loaded = Loaded(rack=homelab.rack, secrets=secrets)
    rec = record(lambda: build_metal(loaded), preview=False)
    assert not [r for r in rec if r.name == "k3s-token-value"]
    install = rec.by_name("k3s-rack-cp-1-install")
    assert install.inputs["stdin"].split("\n")[0] == "user-token-value-0123456789"
    assert "stdin" in install.secret_paths
    assert install.inputs["connection"]["privateKey"] == "PRIVATE-KEY-TEXT"
    assert "PRIVATE-KEY-TEXT" not in repr([r.redacted for r in rec])


@pulumi.runtime.test
def test_kubeconfig_is_a_secret(mocked: object, homelab: Loaded) -> pulumi.Output[bool]:
    metal = build_metal(homelab)
    return pulumi.Output.all(metal.kubeconfig.is_secret()).apply(lambda v: _assert_secret(v[0]))


def _assert_secret(is_secret: bool) -> bool:
    assert is_secret
    return is_secret


def test_every_node_waits_for_its_k3s_unit(record: Callable[..., Recording], lab: Loaded) -> None:
    """The lab stack is systemd, like every Pi: each node's install and upgrade wait for its k3s
    unit (k3s.service on servers, k3s-agent.service on agents) to be active."""
    rec = record(lambda: build_metal(lab))
    for node in lab.rack.nodes:
        unit = "k3s" if node.role == "server" else "k3s-agent"
        for step in ("install", "upgrade"):
            assert f"systemctl is-active --quiet {unit};" in rec.by_name(f"k3s-{node.hostname}-{step}").inputs["create"]
