"""IngressRoutes: one Ingress per app `host`, and Gitea's, under `rack.domain`.

Creates, under `homelab:system:IngressRoutes`, an `Ingress` per route in the backend's namespace
(apps: their category's namespace; Gitea: `ci`), class `traefik`, HTTPS only (entrypoint
`websecure`, plain HTTP is redirected by TraefikConfig). The TLS entry names the host and no
`secretName`: Traefik answers with its default certificate, the rack CA's wildcard certificate
for `*.<domain>` (RackCa, served through TraefikConfig's default TLSStore), which covers every
host here (one label under the domain).

The routes are a pure function of the config (`routes`), so DNS (CoreDNS records), the plan and
the NetworkPolicies of the backends can all read the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX, NAMESPACES
from components.system.traefik_config import INGRESS_CLASS
from rack.config import Rack

GITEA_NAMESPACE = "ci"
"""Gitea's namespace (created by the system layer; Gitea itself is the CI layer's)."""
GITEA_SERVICE = "gitea"
"""Gitea's HTTP Service (components/ci/gitea.py)."""
GITEA_PORT = 3000
"""Its HTTP port."""


@dataclass(frozen=True)
class Route:
    """A host under the domain and the Service behind it."""

    key: str
    """Stable key for logical names and the Ingress name (app name, or `gitea`)."""
    host: str
    """FQDN."""
    namespace: str
    service: str
    port: int

    @property
    def backend(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port}"


def routes(rack: Rack) -> list[Route]:
    """Every routed host (pure): apps with a `host`, then Gitea."""
    out = [
        Route(app.name, f"{app.host}.{rack.domain}", NAMESPACES[app.category], app.name, app.port)
        for app in rack.apps
        if app.host is not None
    ]
    if rack.gitea is not None:
        out.append(Route("gitea", f"{rack.gitea.host}.{rack.domain}", GITEA_NAMESPACE, GITEA_SERVICE, GITEA_PORT))
    return out


def render_ingress(route: Route) -> dict[str, Any]:
    """The Ingress of one route (pure)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": route.service,
            "namespace": route.namespace,
            "labels": {f"{LABEL_PREFIX}/managed": "true", "app.kubernetes.io/name": route.service},
            "annotations": {
                "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
                "traefik.ingress.kubernetes.io/router.tls": "true",
                # The backend Services come from later layers and Traefik sets the status: the
                # provider's await (load balancer status, backend endpoints) would only time out.
                "pulumi.com/skipAwait": "true",
            },
        },
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "tls": [{"hosts": [route.host]}],
            "rules": [
                {
                    "host": route.host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": route.service, "port": {"number": route.port}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


@dataclass(frozen=True, kw_only=True)
class IngressRoutesArgs:
    rack: Rack
    """The validated rack (domain, apps, gitea)."""
    namespaces: dict[str, pulumi.Resource]
    """The Namespace object of each namespace a route lives in (each Ingress depends on its own)."""


class IngressRoutes(pulumi.ComponentResource):
    ingresses: dict[str, KubernetesObject]
    """Each Ingress by route key (app name, `gitea`)."""
    hosts: dict[str, str]
    """FQDN -> `<namespace>/<service>:<port>`."""

    def __init__(self, name: str, args: IngressRoutesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:system:IngressRoutes", name, None, opts)
        self.ingresses = {}
        for route in routes(args.rack):
            manifest = render_ingress(route)
            namespace = args.namespaces.get(route.namespace)
            self.ingresses[route.key] = KubernetesObject(
                f"{name}-{route.key}",
                manifest,
                pulumi.ResourceOptions(parent=self, depends_on=[namespace] if namespace is not None else []),
            )
        self.hosts = {r.host: r.backend for r in routes(args.rack)}
        self.register_outputs({"ingresses": self.ingresses, "hosts": self.hosts})
