"""KubeStateMetrics: manifests against the 1.31 schema, RBAC exactly as wide as what it exports,
infrastructure placement, the class label exported, and its allow-list."""

from __future__ import annotations

import kubernetes_validate

from components.core.layout import CLASS_LABEL, node_affinity
from components.observability import monitoring_config as mc
from components.observability.kube_state_metrics import (
    KubeStateMetrics,
    KubeStateMetricsArgs,
    render_deployment,
    render_network_policy,
    render_rbac,
    render_service,
)
from plan.engine import run_program
from rack.loader import Loaded
from rack.vocabulary import Category


def test_every_manifest_matches_the_kubernetes_schema(homelab: Loaded) -> None:
    for m in [*render_rbac(), render_deployment(), render_service(), render_network_policy(homelab.rack)]:
        kubernetes_validate.validate(m, "1.31", strict=True)


def test_cluster_role_lists_exactly_the_exported_resources() -> None:
    _, role, _ = render_rbac()
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert granted == set(mc.KSM_RESOURCES)
    assert all(rule["verbs"] == ["list", "watch"] for rule in role["rules"])
    args = render_deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--resources={','.join(mc.KSM_RESOURCES)}" in args
    assert f"--metric-labels-allowlist=nodes=[{CLASS_LABEL}]" in args


def test_placed_as_infrastructure_and_restricted() -> None:
    pod = render_deployment()["spec"]["template"]["spec"]
    assert pod["affinity"] == node_affinity(Category.INFRASTRUCTURE)
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"] == {"drop": ["ALL"]}


def test_allow_list_admits_the_store_and_reaches_the_api_server(homelab: Loaded) -> None:
    pol = render_network_policy(homelab.rack)["spec"]
    (ingress,) = pol["ingress"]
    assert ingress["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "victoria-metrics"}
    api = pol["egress"][1]
    assert api["to"] == [{"ipBlock": {"cidr": "192.168.10.11/32"}}]
    assert api["ports"] == [{"protocol": "TCP", "port": 6443}]


def test_component_registers_rbac_before_the_deployment(homelab: Loaded) -> None:
    def program() -> None:
        KubeStateMetrics("kube-state-metrics", KubeStateMetricsArgs(rack=homelab.rack))

    rec = run_program(program)
    dep = rec.by_name("kube-state-metrics-deployment")
    assert rec.by_name("kube-state-metrics-clusterrolebinding").urn in dep.depends_on
    comp = rec.by_name("kube-state-metrics")
    assert all(r.parent == comp.urn for r in rec if r is not comp)
