"""TraefikConfig and IngressRoutes: the HelmChartConfig values (placement by the infrastructure
rules, validated as a pod spec against the schema), one Ingress per app host and Gitea, and
both components under recording mocks."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from components.core.layout import CLASS_LABEL, CONTROL_PLANE_TAINT_KEY, EXPERIMENTAL_TAINT_KEY
from components.system.ingress_routes import IngressRoutes, IngressRoutesArgs, render_ingress, routes
from components.system.traefik_config import TraefikConfig, TraefikConfigArgs, render_helm_chart_config, traefik_values
from rack.loader import Loaded


def test_helm_chart_config_targets_the_bundled_chart() -> None:
    hcc = render_helm_chart_config()
    assert hcc["apiVersion"] == "helm.cattle.io/v1" and hcc["kind"] == "HelmChartConfig"
    assert hcc["metadata"]["name"] == "traefik" and hcc["metadata"]["namespace"] == "kube-system"
    assert yaml.safe_load(hcc["spec"]["valuesContent"]) == traefik_values()


def test_traefik_is_placed_off_the_control_plane_and_experimental_nodes() -> None:
    values = traefik_values()
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": CLASS_LABEL, "operator": "In", "values": ["general", "reliable"]}]}]
    # Helm replaces lists: this empty list removes the packaged control-plane toleration.
    assert values["tolerations"] == []
    tolerated = {t.get("key") for t in values["tolerations"]}
    assert CONTROL_PLANE_TAINT_KEY not in tolerated and EXPERIMENTAL_TAINT_KEY not in tolerated


def test_traefik_values_are_a_valid_pod_spec() -> None:
    values = traefik_values()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "traefik"},
        "spec": {
            "affinity": values["affinity"],
            "tolerations": values["tolerations"],
            "containers": [{"name": "traefik", "image": "traefik:v2.11", "resources": values["resources"]}],
        },
    }
    kubernetes_validate.validate(pod, "1.31", strict=True)


def test_one_ingress_per_app_host_and_gitea(homelab: Loaded) -> None:
    got = {r.key: (r.host, r.namespace, r.service, r.port) for r in routes(homelab.rack)}
    assert got == {
        "bible-api": ("api.lab.home.arpa", "apps", "bible-api", 8080),
        "bible-auth": ("auth.lab.home.arpa", "apps", "bible-auth", 8080),
        "bible-social": ("social.lab.home.arpa", "apps", "bible-social", 8080),
        "devotional": ("devotional.lab.home.arpa", "apps", "devotional", 8080),
        "gitea": ("git.lab.home.arpa", "ci", "gitea", 3000),
    }


def test_ingress_manifest_is_https_on_traefik_and_schema_valid(homelab: Loaded) -> None:
    for route in routes(homelab.rack):
        ing = render_ingress(route)
        kubernetes_validate.validate(ing, "1.31", strict=True)
        assert ing["spec"]["ingressClassName"] == "traefik"
        assert ing["spec"]["tls"] == [{"hosts": [route.host]}]
        assert ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
        (rule,) = ing["spec"]["rules"]
        assert rule["host"] == route.host
        assert rule["http"]["paths"][0]["backend"]["service"] == {
            "name": route.service,
            "port": {"number": route.port},
        }


def test_components_register_under_mocks(record: Any, homelab: Loaded) -> None:
    def program() -> None:
        TraefikConfig("traefik", TraefikConfigArgs())
        IngressRoutes("ingress", IngressRoutesArgs(rack=homelab.rack, namespaces={}))

    rec = record(program)
    hcc = rec.by_name("traefik-helmchartconfig")
    assert hcc.type == "kubernetes:helm.cattle.io/v1:HelmChartConfig"
    assert hcc.parent == rec.by_name("traefik").urn
    ingresses = rec.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    assert sorted(r.name for r in ingresses) == [
        "ingress-bible-api",
        "ingress-bible-auth",
        "ingress-bible-social",
        "ingress-devotional",
        "ingress-gitea",
    ]
    assert all(r.parent == rec.by_name("ingress").urn for r in ingresses)
