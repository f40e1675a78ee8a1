"""The metal layer: the Pis, k3s on them, and the Kubernetes provider every later layer uses.

Creates the cluster's Kubernetes provider (explicit; default providers are disabled, so a
forgotten provider fails instead of falling back to ~/.kube/config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from stacks.loader import Loaded, unknown_secret


@dataclass(frozen=True)
class MetalLayer:
    k8s_provider: k8s.Provider
    """The provider for every Kubernetes object; its kubeconfig is a secret Output."""
    kubeconfig: pulumi.Output[str]
    """The cluster's kubeconfig (secret), server rewritten to the API address."""
    cluster_ready: list[pulumi.Resource] = field(default_factory=list)
    """Resources that must exist before anything is applied to the cluster."""


def build_metal(loaded: Loaded) -> MetalLayer:
    rack = loaded.rack
    kubeconfig = unknown_secret()
    provider = k8s.Provider(
        "k8s",
        kubeconfig=kubeconfig,
        cluster_identifier=rack.domain,
        delete_unreachable=False,
        enable_server_side_apply=True,
    )
    return MetalLayer(k8s_provider=provider, kubeconfig=kubeconfig)
