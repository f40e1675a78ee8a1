"""The metal layer: the Pis, k3s on them, and the Kubernetes provider every later layer uses.

Creates one `K3sCluster` ("k3s"): every node preflighted, installed, joined, labelled and tainted
over SSH, and the cluster's Kubernetes provider built from the kubeconfig read back from the
bootstrap server (explicit; default providers are disabled, so a forgotten provider fails instead
of falling back to ~/.kube/config).

With `rack.gitea`, also the `GeneratedSecret` `gitea-pull-password`: the password of Gitea's
read-only pull account (the CI layer creates the account with it), which every node's
registries.yaml carries for the rack's own registry `<gitea.host>.<domain>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.ci import gitea as gitea_mod
from components.core import CaCertificate, GeneratedSecret, GeneratedSecretArgs
from components.metal import K3sCluster, K3sClusterArgs, NodeAccess, RegistryAccess
from rack.loader import Loaded


@dataclass(frozen=True)
class MetalLayer:
    k8s_provider: k8s.Provider
    """The provider for every Kubernetes object; its kubeconfig is a secret Output."""
    kubeconfig: pulumi.Output[str]
    """The cluster's kubeconfig (secret), server rewritten to the API address."""
    cluster_ready: list[pulumi.Resource] = field(default_factory=list)
    """Resources that must exist before anything is applied to the cluster."""
    node_access: dict[str, NodeAccess] = field(default_factory=dict)
    """SSH to each node by hostname, for host steps of later layers (volume directories)."""
    registry_pull_password: pulumi.Output[str] | None = None
    """With Gitea: the read-only pull account's password (secret) every node's registries.yaml holds."""


def build_metal(loaded: Loaded, rack_ca: CaCertificate | None = None) -> MetalLayer:
    """`rack_ca`: the rack CA, whose certificate containerd verifies the rack's registry with
    (written to REGISTRY_CA_PATH on every node); None: the nodes' system stores verify it."""
    rack = loaded.rack
    registry: RegistryAccess | None = None
    pull_password: pulumi.Output[str] | None = None
    host = rack.registry_host()
    if host is not None:
        pull_password = GeneratedSecret("gitea-pull-password", GeneratedSecretArgs(length=32)).value
        registry = RegistryAccess(
            host=host,
            username=gitea_mod.PULL_USER,
            password=pull_password,
            ca_cert_pem=rack_ca.cert_pem if rack_ca is not None else None,
        )
    cluster = K3sCluster(
        "k3s",
        K3sClusterArgs(
            rack=loaded.rack,
            ssh_private_key=loaded.secrets.get("ssh-private-key"),
            token=loaded.secrets.get("k3s-token"),
            registry=registry,
        ),
    )
    return MetalLayer(
        k8s_provider=cluster.provider,
        kubeconfig=cluster.kubeconfig,
        cluster_ready=cluster.ready,
        node_access=cluster.access,
        registry_pull_password=pull_password,
    )
