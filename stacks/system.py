"""The system layer: what every workload namespace and service relies on.

Creates:
- one Namespace per workload category in use, with its Pod Security admission labels, and the
  `ci` Namespace when Gitea is configured (Gitea's Ingress lives there, so it must exist here);
- `CorednsConfig`: the `coredns-custom` ConfigMap serving the names under `rack.domain` and, with
  `rack.dns.address`, the `coredns-lan` LoadBalancer Service answering the LAN on that node;
- `RackCa`: the rack's private CA, the default certificate Traefik serves for `*.<domain>`,
  `<domain>` and the ingress address, and the CA in every node's trust store;
- `TraefikConfig`: the HelmChartConfig placing and configuring the bundled Traefik (serving
  RackCa's certificate by default);
- `IngressRoutes`: one Ingress per app `host` and for Gitea.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.core import (
    CATEGORY_LABEL,
    NAMESPACES,
    CaCertificate,
    KubernetesObject,
    namespace_labels,
    render_namespace,
)
from components.system import (
    GITEA_NAMESPACE,
    CorednsConfig,
    CorednsConfigArgs,
    IngressRoutes,
    IngressRoutesArgs,
    RackCa,
    RackCaArgs,
    TraefikConfig,
    TraefikConfigArgs,
    routes,
)
from rack.config import Rack
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.metal import MetalLayer

CI_POD_SECURITY = "restricted"
"""Pod Security level enforced in `ci` (Gitea and its init Job run restricted; the runners, which
need more, live in a namespace of the CI layer's own)."""


def ci_namespace_labels() -> dict[str, str]:
    """Labels of the `ci` namespace: the infrastructure category, Pod Security `restricted`."""
    return {
        CATEGORY_LABEL: str(Category.INFRASTRUCTURE),
        "pod-security.kubernetes.io/enforce": CI_POD_SECURITY,
        "pod-security.kubernetes.io/warn": "restricted",
    }


@dataclass(frozen=True)
class SystemLayer:
    namespaces: dict[Category, KubernetesObject]
    """The namespace object of each category in use."""
    ci_namespace: KubernetesObject | None = None
    """The `ci` namespace (Gitea, runners) when Gitea is configured, else None."""
    dns: CorednsConfig | None = None
    """The coredns-custom ConfigMap, and the coredns-lan Service with `rack.dns.address`."""
    traefik: TraefikConfig | None = None
    """The HelmChartConfig of the bundled Traefik."""
    ca: RackCa | None = None
    """The rack CA: its certificate (`ca.ca_cert_pem`) and each node's trust step (`ca.node_trust`)."""
    ingress: IngressRoutes | None = None
    """Every Ingress."""
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """The system components by name."""

    def namespace_of(self, category: Category) -> str:
        return NAMESPACES[category]


def categories_in_use(loaded: Loaded) -> list[Category]:
    rack = loaded.rack
    used = {app.category for app in rack.apps}
    if rack.databases.configured() or rack.gitea is not None:
        used.add(Category.DATA)
    if rack.gitea is not None:
        used.add(Category.INFRASTRUCTURE)
    return [c for c in Category if c in used]


def ingress_hosts(rack: Rack) -> dict[str, str]:
    """Every host the ingress routes: FQDN -> `<namespace>/<service>:<port>` (pure)."""
    return {r.host: r.backend for r in routes(rack)}


def build_system(loaded: Loaded, metal: MetalLayer, rack_ca: CaCertificate) -> SystemLayer:
    rack = loaded.rack
    opts = pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready)
    namespaces = {
        category: KubernetesObject(
            f"ns-{NAMESPACES[category]}",
            render_namespace(NAMESPACES[category], namespace_labels(category)),
            opts,
        )
        for category in categories_in_use(loaded)
    }
    ci_namespace = None
    if rack.gitea is not None:
        ci_namespace = KubernetesObject(
            f"ns-{GITEA_NAMESPACE}",
            render_namespace(GITEA_NAMESPACE, ci_namespace_labels()),
            opts,
        )

    component_opts = pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=metal.cluster_ready)
    dns = CorednsConfig("coredns", CorednsConfigArgs(rack=rack), component_opts)
    ca = RackCa(
        "rack-ca",
        RackCaArgs(rack=rack, ca=rack_ca, node_access=metal.node_access),
        component_opts,
    )
    traefik = TraefikConfig(
        "traefik",
        TraefikConfigArgs(default_certificate_secret=ca.secret_name, default_certificate=ca.secret),
        component_opts,
    )
    by_name: dict[str, pulumi.Resource] = {NAMESPACES[c]: ns for c, ns in namespaces.items()}
    if ci_namespace is not None:
        by_name[GITEA_NAMESPACE] = ci_namespace
    ingress = IngressRoutes(
        "ingress",
        IngressRoutesArgs(rack=rack, namespaces=by_name),
        pulumi.ResourceOptions(providers=[metal.k8s_provider], depends_on=[*metal.cluster_ready, traefik]),
    )
    return SystemLayer(
        namespaces=namespaces,
        ci_namespace=ci_namespace,
        dns=dns,
        traefik=traefik,
        ca=ca,
        ingress=ingress,
        components={"coredns": dns, "rack-ca": ca, "traefik": traefik, "ingress": ingress},
    )
