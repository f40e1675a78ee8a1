"""TraefikConfig and IngressRoutes: the HelmChartConfig values (placement by the infrastructure
rules, validated as a pod spec against the schema), one Ingress per app host and Gitea, and
both components under recording mocks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.core.layout import CLASS_LABEL, CONTROL_PLANE_TAINT_KEY, EXPERIMENTAL_TAINT_KEY
from components.system.ingress_routes import IngressRoutes, IngressRoutesArgs, render_ingress, routes
from components.system.rack_ca import SECRET_NAME
from components.system.traefik_config import TraefikConfig, TraefikConfigArgs, render_helm_chart_config, traefik_values
from rack.loader import Loaded


def test_helm_chart_config_targets_the_bundled_chart() -> None:
    hcc = render_helm_chart_config()
    assert hcc["apiVersion"] == "helm.cattle.io/v1" and hcc["kind"] == "HelmChartConfig"
    assert hcc["metadata"]["name"] == "traefik" and hcc["metadata"]["namespace"] == "kube-system"
    assert yaml.safe_load(hcc["spec"]["valuesContent"]) == traefik_values()


def test_the_default_certificate_is_the_default_tls_store() -> None:
    """With a Secret name, the values ask the chart for the TLSStore `default` naming it (the one
    store Traefik reads a default certificate from); without, Traefik keeps its self-signed one."""
    assert "tlsStore" not in traefik_values()
    values = yaml.safe_load(render_helm_chart_config("my-tls")["spec"]["valuesContent"])
    assert values["tlsStore"] == {"default": {"defaultCertificate": {"secretName": "my-tls"}}}
    assert {k: v for k, v in values.items() if k != "tlsStore"} == traefik_values()


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


# --- the values against every chart k3s bundles ----------------------------------------------

FACTS: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "traefik_chart_facts.json").read_text())
"""Per Traefik chart version k3s bundles: its values, schema and redirect flags, read from the
chart's tag (source and commit inside; regenerated by data/make_traefik_chart_facts.py)."""


def paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        # maps whose keys are the user's (store names) or a Kubernetes type's own fields
        if isinstance(value, dict) and value and key not in ("affinity", "resources", "tlsStore"):
            out |= paths(value, f"{path}.")
        else:
            out.add(path)
    return out


@pytest.mark.parametrize("chart", sorted(FACTS, key=lambda v: tuple(int(x) for x in v.split("."))))
def test_the_values_are_valid_for_every_bundled_chart(chart: str) -> None:
    facts = FACTS[chart]
    values = traefik_values(SECRET_NAME)
    # every key set is one the chart has
    for path in paths(values):
        assert facts["values"].get(path, "<absent>") != "<absent>", (chart, path)
    # the chart's schema (charts >= 34; 39+ refuse unknown top-level keys) accepts them
    if facts["schema"] is not None:
        jsonschema.validate(values, facts["schema"])
    # no chart-specific redirect option: its spelling differs across these charts
    assert "ports" not in values
    # the flags are exactly those the chart renders from its own redirect option, for `web` to
    # `websecure` on its exposed port
    name, exposed = "web", facts["values"]["ports.websecure.exposedPort"]
    rendered = set()
    for template in facts["redirect_args"]:
        line = re.sub(r"\{\{ ?\$entryPoints ?\}\}", "entryPoints", template)
        line = re.sub(r"\{\{ ?\$(entrypoint|name) ?\}\}", name, line)
        line = line.replace("{{ $toPort.exposedPort }}", str(exposed))
        flag, _, value = line.partition("=")
        if "{{" not in value:
            rendered.add(f"{flag}={value}")
        elif flag.endswith(".scheme"):
            rendered.add(f"{flag}=https")
        elif flag.endswith(".permanent"):
            rendered.add(f"{flag}=true")
    ours = {a.lower() for a in values["additionalArguments"]}
    # Traefik's flags are case-insensitive (chart 27 writes `--entrypoints.`, later `--entryPoints.`)
    assert {r.lower() for r in rendered} <= ours, (chart, rendered)
    assert {a for a in ours if ".permanent" not in a} <= {r.lower() for r in rendered}, chart


def test_the_facts_cover_the_chart_breaks_the_values_avoid() -> None:
    """The three spellings of the redirect option, and the charts that refuse unknown keys."""
    keys = {v: f["redirect_key"] for v, f in FACTS.items()}
    assert keys["27.0.2"] == "ports.<name>.redirectTo"
    assert keys["34.2.0"] == "ports.<name>.redirections.entryPoint"
    assert keys["40.1.0"] == "ports.<name>.http.redirections.entryPoint"
    assert FACTS["40.1.0"]["schema"]["additionalProperties"] is False
    assert all(f["commit"] and f["source"].endswith(f"v{v}/traefik") for v, f in FACTS.items())


@pytest.mark.parametrize("chart", sorted(FACTS, key=lambda v: tuple(int(x) for x in v.split("."))))
def test_every_bundled_chart_renders_our_tls_store(chart: str) -> None:
    """Each chart's tlsstore.yaml makes, per `tlsStore.<name>`, a `traefik.io/v1alpha1` TLSStore
    <name> in the chart's namespace with our value as its `spec`; that spec is valid under the
    TLSStore CRD the chart ships."""
    facts = FACTS[chart]
    template = facts["tlsstore_template"]
    assert "range $name, $config := .Values.tlsStore" in template
    assert "apiVersion: traefik.io/v1alpha1\nkind: TLSStore\n" in template
    assert "name: {{ $name }}" in template
    assert 'namespace: {{ template "traefik.namespace" $ }}' in template
    assert "toYaml $config" in template.split("spec:", 1)[1]
    stores = traefik_values(SECRET_NAME)["tlsStore"]
    assert list(stores) == ["default"]  # Traefik reads the default certificate from `default` only
    jsonschema.validate(stores["default"], facts["tlsstore_spec_schema"])
    assert stores["default"]["defaultCertificate"]["secretName"] == SECRET_NAME
