"""The system layer of the committed racks under recording mocks: namespaces (and `ci` for Gitea),
the coredns-custom ConfigMap, Traefik's HelmChartConfig, and one Ingress per routed host, each
depending on the namespace it lives in."""

from __future__ import annotations

from typing import Any

from components.system import new_rack_ca
from plan.engine import Recording
from rack.loader import Loaded
from stacks.metal import build_metal
from stacks.system import SystemLayer, build_system, ingress_hosts

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NAMESPACE = "kubernetes:core/v1:Namespace"


def run(record: Any, loaded: Loaded) -> tuple[Recording, dict[str, SystemLayer]]:
    out: dict[str, SystemLayer] = {}

    def program() -> None:
        out["system"] = build_system(loaded, build_metal(loaded), new_rack_ca())

    return record(program), out


def test_ingress_hosts_is_the_hand_over_for_dns_and_the_ci_layer(homelab: Loaded) -> None:
    assert ingress_hosts(homelab.rack) == {
        "api.lab.home.arpa": "apps/bible-api:8080",
        "auth.lab.home.arpa": "apps/bible-auth:8080",
        "social.lab.home.arpa": "apps/bible-social:8080",
        "devotional.lab.home.arpa": "apps/devotional:8080",
        "git.lab.home.arpa": "ci/gitea:3000",
    }


def test_homelab_system_layer(record: Any, homelab: Loaded) -> None:
    rec, out = run(record, homelab)
    names = {r.inputs["metadata"]["name"] for r in rec.of_type(NAMESPACE)}
    assert {"apps", "data", "experimental", "infra", "ci"} <= names
    ci = rec.by_name("ns-ci").inputs["metadata"]["labels"]
    assert ci["pod-security.kubernetes.io/enforce"] == "restricted"

    (cm,) = rec.of_type("kubernetes:core/v1:ConfigMap")
    assert cm.inputs["metadata"] == {
        "name": "coredns-custom",
        "namespace": "kube-system",
        "labels": {"rack.homelab.io/managed": "true"},
        "annotations": {"pulumi.com/patchFieldManager": "pulumi-homelab-homelab"},
    }
    (hcc,) = rec.of_type("kubernetes:helm.cattle.io/v1:HelmChartConfig")
    assert hcc.inputs["metadata"]["name"] == "traefik"

    ingresses = rec.of_type(INGRESS)
    hosts = {r.inputs["spec"]["rules"][0]["host"]: r for r in ingresses}
    assert set(hosts) == set(ingress_hosts(homelab.rack))
    for ing in ingresses:
        ns = ing.inputs["metadata"]["namespace"]
        assert rec.by_name(f"ns-{ns}").urn in ing.depends_on, f"{ing.name} does not wait for namespace {ns}"
    system = out["system"]
    assert system.ci_namespace is not None and system.ingress is not None
    assert set(system.components) == {"coredns", "rack-ca", "traefik", "ingress"}
    assert system.ca is not None and system.traefik is not None
    assert system.ingress.hosts == ingress_hosts(homelab.rack)


def test_every_system_object_uses_the_cluster_provider(record: Any, homelab: Loaded) -> None:
    rec, _ = run(record, homelab)
    (provider,) = rec.of_type("pulumi:providers:kubernetes")
    k8s = [r for r in rec if r.custom and r.type.startswith("kubernetes:")]
    assert k8s and all(r.provider.startswith(provider.urn + "::") for r in k8s)


def test_a_rack_without_gitea_has_no_ci_namespace_and_one_ingress(record: Any, lab_bare: Loaded) -> None:
    rec, out = run(record, lab_bare)
    assert out["system"].ci_namespace is None
    assert not [r for r in rec.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == "ci"]
    assert [r.inputs["spec"]["rules"][0]["host"] for r in rec.of_type(INGRESS)] == ["web.lab.test"]
