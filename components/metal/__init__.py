"""Metal: k3s on the Pis over SSH (install, join, upgrade, the node layout), and the Kubernetes
provider built from the fetched kubeconfig.
"""

from components.metal.k3s_cluster import K3sCluster, K3sClusterArgs, NodeAccess
from components.metal.k3s_node import RegistryAccess
from components.metal.k3s_scripts import REGISTRY_CA_PATH, HostLayout

__all__ = [
    "REGISTRY_CA_PATH",
    "HostLayout",
    "K3sCluster",
    "K3sClusterArgs",
    "NodeAccess",
    "RegistryAccess",
]
