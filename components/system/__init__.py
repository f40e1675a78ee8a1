"""Cluster services configured the k3s way: CoreDNS's custom zone, Traefik's HelmChartConfig, and
the ingresses that route the rack's host names.
"""

from components.system.coredns_config import CorednsConfig, CorednsConfigArgs
from components.system.ingress_routes import GITEA_NAMESPACE, IngressRoutes, IngressRoutesArgs, routes
from components.system.traefik_config import TraefikConfig, TraefikConfigArgs

__all__ = [
    "GITEA_NAMESPACE",
    "CorednsConfig",
    "CorednsConfigArgs",
    "IngressRoutes",
    "IngressRoutesArgs",
    "TraefikConfig",
    "TraefikConfigArgs",
    "routes",
]
