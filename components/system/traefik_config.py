"""TraefikConfig: the k3s-bundled Traefik, placed and configured the k3s way.

Creates, under `homelab:system:TraefikConfig`, one `HelmChartConfig` `traefik` in kube-system.
k3s' helm-controller merges its `valuesContent` over the packaged chart's values on every
reconcile; editing the packaged HelmChart or Deployment instead is reverted on restart (k3s#5394,
#13210). The values:
- place Traefik by the infrastructure rules (layout.pod_placement: general or reliable nodes).
  Helm replaces lists, so `tolerations: []` drops the packaged control-plane toleration: with the
  control-plane taint and the class affinity it never lands on a server or an experimental node;
- send plain HTTP to HTTPS with Traefik's own flags in `additionalArguments`, the one spelling
  every chart k3s bundles accepts: the charts' redirect option was renamed twice
  (`ports.web.redirectTo` up to chart 27 / k3s v1.31; `ports.web.redirections.entryPoint` in
  34-38, where `redirectTo` fails the install; `ports.web.http.redirections.entryPoint` from 39,
  which k3s v1.33.13+, v1.35.7+ and v1.36.3+ bundle as chart 40), while all of them render the
  same three flags from it (`--entryPoints.web.http.redirections.entryPoint.to=:<websecure
  exposedPort>`, `.scheme=https`, `.permanent=true`). So an upgrade across a chart break keeps
  HTTPS and the redirect; tests/components/system/data/traefik_chart_facts.json records each
  chart's keys, schema and flags, with the tag and commit read;
- requests/limits, so the node's budget accounts for it.

- TLS: with `default_certificate_secret`, the chart's `tlsStore` value makes the chart render the
  TLSStore `default` (traefik.io/v1alpha1, in the chart's namespace) whose `defaultCertificate`
  names that `kubernetes.io/tls` Secret in kube-system: the certificate Traefik answers every
  HTTPS request with that no Ingress names a Secret for (all of ours: see ingress_routes.py).
  Through the chart rather than as an object of our own: the chart owns the TLSStore CRD (k3s
  installs it from the `traefik-crd` chart, after the API is up), so the TLSStore's apiVersion
  always matches the bundled chart and the first `up` never races the CRD's arrival. The
  certificate itself comes from RackCa (components/system/rack_ca.py). Without it, Traefik
  answers with its own self-signed certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import yaml

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX, pod_placement
from rack.vocabulary import Category

CHART_NAME = "traefik"
"""The HelmChart k3s deploys (a HelmChartConfig applies to the HelmChart of the same name)."""
CHART_NAMESPACE = "kube-system"
INGRESS_CLASS = "traefik"
"""The IngressClass the bundled chart registers."""
WEBSECURE_EXPOSED_PORT = 443
"""The port the bundled chart exposes `websecure` on (its default in every chart k3s bundles)."""
REDIRECT_ARGS: tuple[str, ...] = (
    f"--entryPoints.web.http.redirections.entryPoint.to=:{WEBSECURE_EXPOSED_PORT}",
    "--entryPoints.web.http.redirections.entryPoint.scheme=https",
    "--entryPoints.web.http.redirections.entryPoint.permanent=true",
)
"""HTTP -> HTTPS, as Traefik static configuration flags (Traefik v2.2+ and v3)."""
POD_LABELS: dict[str, str] = {"app.kubernetes.io/name": "traefik"}
"""Labels of the bundled Traefik pods (for NetworkPolicies admitting ingress traffic)."""


TLS_STORE = "default"
"""The one TLSStore name Traefik reads a default certificate from."""


def traefik_values(default_certificate_secret: str | None = None) -> dict[str, Any]:
    """The chart values this project sets (pure); with a Secret name, Traefik's default certificate."""
    placement = pod_placement(CHART_NAME, Category.INFRASTRUCTURE)
    values: dict[str, Any] = {
        "affinity": placement["affinity"],
        "tolerations": placement["tolerations"],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "additionalArguments": list(REDIRECT_ARGS),
        "providers": {"kubernetesIngress": {"publishedService": {"enabled": True}}},
    }
    if default_certificate_secret is not None:
        values["tlsStore"] = {TLS_STORE: {"defaultCertificate": {"secretName": default_certificate_secret}}}
    return values


def render_helm_chart_config(default_certificate_secret: str | None = None) -> dict[str, Any]:
    """The HelmChartConfig manifest (pure); `valuesContent` is YAML, as helm-controller wants."""
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {
            "name": CHART_NAME,
            "namespace": CHART_NAMESPACE,
            "labels": {f"{LABEL_PREFIX}/managed": "true"},
        },
        "spec": {"valuesContent": yaml.safe_dump(traefik_values(default_certificate_secret), sort_keys=True)},
    }


@dataclass(frozen=True, kw_only=True)
class TraefikConfigArgs:
    """`ingress.controller` admits only the bundled Traefik; what varies is its certificate."""

    default_certificate_secret: str | None = None
    """A `kubernetes.io/tls` Secret in kube-system Traefik serves by default (None: its own self-signed one)."""
    default_certificate: pulumi.Resource | None = None
    """The resource that makes that Secret (the HelmChartConfig waits for it)."""


class TraefikConfig(pulumi.ComponentResource):
    chart_config: KubernetesObject
    """The HelmChartConfig `traefik` in kube-system."""

    def __init__(self, name: str, args: TraefikConfigArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:system:TraefikConfig", name, None, opts)
        manifest = render_helm_chart_config(args.default_certificate_secret)
        after = [args.default_certificate] if args.default_certificate is not None else []
        self.chart_config = KubernetesObject(
            f"{name}-helmchartconfig", manifest, pulumi.ResourceOptions(parent=self, depends_on=after)
        )
        self.register_outputs({"chart_config": self.chart_config})
