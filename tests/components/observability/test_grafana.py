"""Grafana: manifests against the 1.31 schema, the admin password generated or overridden but
only ever a secret (marked in the registrations, never in plaintext, read by secretKeyRef), the
dashboards and datasource provisioned from the repo, and the Ingress in IngressRoutes' style."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pulumi

from components.observability import monitoring_config as mc
from components.observability.grafana import (
    ADMIN_SECRET,
    Grafana,
    GrafanaArgs,
    render_config_maps,
    render_deployment,
    render_network_policy,
    render_secret,
    render_service,
    route,
)
from components.system.ingress_routes import render_ingress
from plan.engine import DefaultMocks, Recording, run_program
from rack.config import Monitoring

MON = Monitoring.model_validate({"node": "rack-db-1", "host": "dash"})
DOMAIN = "lab.home.arpa"
GENERATED = "GeneratedGrafanaPw0123456789abcd"


class GeneratedSecretMocks(DefaultMocks):
    """A TEST DOUBLE of the dynamic provider's create: the generated value is known."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "pulumi-python:dynamic:Resource":
            state["value"] = GENERATED
        return rid, state


def build(password: str | None = None) -> Recording:
    def program() -> None:
        override = pulumi.Output.secret(password) if password is not None else None
        Grafana("grafana", GrafanaArgs(monitoring=MON, domain=DOMAIN, admin_password=override))

    return run_program(program, preview=False, mocks=GeneratedSecretMocks())


def test_every_manifest_matches_the_kubernetes_schema() -> None:
    for m in [
        *render_config_maps(MON),
        render_deployment(MON, DOMAIN),
        render_service(),
        render_secret(password="x"),
        render_network_policy(),
        render_ingress(route(MON, DOMAIN)),
    ]:
        kubernetes_validate.validate(m, "1.31", strict=True)


def test_ingress_is_the_ingress_routes_shape_at_the_configured_host() -> None:
    ing = render_ingress(route(MON, DOMAIN))
    assert ing["metadata"]["namespace"] == "monitoring"
    assert ing["spec"]["rules"][0]["host"] == "dash.lab.home.arpa"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "grafana", "port": {"number": 3000}}
    assert ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"


def test_admin_password_only_by_secret_reference() -> None:
    env = render_deployment(MON, DOMAIN)["spec"]["template"]["spec"]["containers"][0]["env"]
    pw = next(e for e in env if e["name"] == "GF_SECURITY_ADMIN_PASSWORD")
    assert pw == {
        "name": "GF_SECURITY_ADMIN_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": ADMIN_SECRET, "key": "password"}},
    }
    values = {e["name"]: e.get("value") for e in env}
    assert values["GF_SERVER_ROOT_URL"] == "https://dash.lab.home.arpa/"
    assert values["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and values["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"


def test_provisioning_is_the_repo_s_files() -> None:
    ds, provider, boards = render_config_maps(MON)
    assert boards["data"] == mc.dashboard_files()
    assert all(json.loads(text)["uid"] for text in boards["data"].values())
    assert "uid: victoriametrics" in ds["data"]["datasources.yaml"]
    assert mc.GRAFANA_DASHBOARD_DIR in provider["data"]["dashboards.yaml"]


def test_generated_password_is_secret_and_never_plaintext() -> None:
    rec = build()
    sec = rec.by_name("grafana-admin")
    assert sec.secret_paths == ["stringData"]
    assert sec.inputs["stringData"]["password"] == GENERATED
    assert GENERATED not in json.dumps([r.redacted for r in rec])
    assert len(rec.of_type("pulumi-python:dynamic:Resource")) == 1


def test_user_password_replaces_the_generated_one() -> None:
    rec = build(password="users-own-grafana-pw-0001")
    assert rec.of_type("pulumi-python:dynamic:Resource") == []
    sec = rec.by_name("grafana-admin")
    assert (
        sec.secret_paths == ["stringData"]
        and sec.inputs["stringData"]["password"] == "users-own-grafana-pw-0001"
    )
    assert "users-own-grafana-pw-0001" not in json.dumps([r.redacted for r in rec])


def test_deployment_waits_for_its_secret_and_provisioning() -> None:
    rec = build()
    deps = set(rec.by_name("grafana-deployment").depends_on)
    for name in ("grafana-admin", "grafana-datasources", "grafana-dashboard-provider", "grafana-dashboards"):
        assert rec.by_name(name).urn in deps, name
