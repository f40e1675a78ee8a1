"""The metal layer: the Pis, k3s on them, and the Kubernetes provider every later layer uses.

Creates one `K3sCluster` ("k3s"): every node preflighted, installed, joined, labelled and tainted
over SSH, and the cluster's Kubernetes provider built from the kubeconfig read back from the
bootstrap server (explicit; default providers are disabled, so a forgotten provider fails instead
of falling back to ~/.kube/config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.metal import K3sCluster, K3sClusterArgs, NodeAccess
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


def build_metal(loaded: Loaded) -> MetalLayer:
    cluster = K3sCluster(
        "k3s",
        K3sClusterArgs(
            rack=loaded.rack,
            ssh_private_key=loaded.secrets.get("ssh-private-key"),
            token=loaded.secrets.get("k3s-token"),
        ),
    )
    return MetalLayer(
        k8s_provider=cluster.provider,
        kubeconfig=cluster.kubeconfig,
        cluster_ready=cluster.ready,
        node_access=cluster.access,
    )
