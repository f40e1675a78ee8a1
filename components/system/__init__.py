"""Cluster services configured the k3s way: CoreDNS's custom zone, Traefik's HelmChartConfig, the
rack CA Traefik serves by default and every node trusts, and the ingresses for the rack's names.
"""

from components.system.coredns_config import CorednsConfig, CorednsConfigArgs
from components.system.ingress_routes import GITEA_NAMESPACE, IngressRoutes, IngressRoutesArgs, routes
from components.system.rack_ca import RackCa, RackCaArgs, new_rack_ca
from components.system.traefik_config import TraefikConfig, TraefikConfigArgs

__all__ = [
    "GITEA_NAMESPACE",
    "CorednsConfig",
    "CorednsConfigArgs",
    "IngressRoutes",
    "IngressRoutesArgs",
    "RackCa",
    "RackCaArgs",
    "TraefikConfig",
    "TraefikConfigArgs",
    "new_rack_ca",
    "routes",
]
