"""NetworkPolicy renderers (against the 1.31 schema) and the evaluator's semantics, case by case.

The evaluator is what the reachability tests trust, so each rule of the API's semantics it
implements is pinned here with a case that fails if it is got wrong.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import kubernetes_validate
import pytest

from components.core.network_policy import (
    Cluster,
    ContainerPort,
    Endpoint,
    cidr_peer,
    dns_egress,
    from_traefik,
    host_network,
    internet_egress,
    pods_peer,
    reachability,
    render_default_deny,
    render_workload_policy,
    rule,
    selector_matches,
    tcp,
)

HTTP = ContainerPort(8080, "http")
A = Endpoint("apps/a", IPv4Address("10.42.0.10"), "apps", {"app": "a"}, (HTTP,))
B = Endpoint("apps/b", IPv4Address("10.42.0.11"), "apps", {"app": "b"}, (HTTP,))
DB = Endpoint("data/db", IPv4Address("10.42.0.12"), "data", {"app": "db"}, (ContainerPort(5432),))
OTHER = Endpoint("other/db", IPv4Address("10.42.0.13"), "other", {"app": "db"}, (ContainerPort(5432),))
GPU = Endpoint("external/gpu", IPv4Address("192.168.10.50"), ports=(ContainerPort(11434),))
NET = Endpoint("external/net", IPv4Address("203.0.113.10"), ports=(ContainerPort(443),))


def policy(ns: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": ns}, "spec": {"podSelector": selector, **spec}}


def test_renderers_validate_against_the_schema() -> None:
    manifests = [
        render_default_deny("apps"),
        render_workload_policy(
            name="a",
            namespace="apps",
            pod_labels={"app": "a"},
            labels={"app": "a"},
            ingress=[from_traefik("http"), rule(None, tcp(2222), egress=False)],
            egress=[
                dns_egress(),
                rule([pods_peer("data", {"app": "db"})], tcp(5432), egress=True),
                rule([cidr_peer(host_network("192.168.10.50"))], tcp(11434), egress=True),
                internet_egress(),
            ],
        ),
    ]
    for m in manifests:
        kubernetes_validate.validate(m, "1.31", strict=True)


def test_no_policy_allows_everything() -> None:
    assert Cluster([]).allowed(A, B, HTTP)
    assert Cluster([]).allowed(A, NET, ContainerPort(443))


def test_default_deny_isolates_both_ways() -> None:
    cluster = Cluster([render_default_deny("apps")])
    assert not cluster.allowed(A, B, HTTP)  # egress of A and ingress of B
    assert not cluster.allowed(DB, A, HTTP)  # ingress of A
    assert not cluster.allowed(A, DB, ContainerPort(5432))  # egress of A
    assert cluster.allowed(DB, OTHER, ContainerPort(5432))  # neither side in `apps`
    assert cluster.isolated(A) == (True, True)


def test_policy_types_default_to_ingress_only() -> None:
    """Without policyTypes and without an egress section, a policy isolates ingress only."""
    cluster = Cluster([policy("apps", {}, ingress=[])])
    assert cluster.isolated(A) == (True, False)
    assert cluster.allowed(A, DB, ContainerPort(5432))
    assert not cluster.allowed(DB, A, HTTP)


def test_bare_pod_selector_means_the_policys_namespace() -> None:
    cluster = Cluster([policy("data", {"matchLabels": {"app": "db"}}, ingress=[{"from": [{"podSelector": {}}]}])])
    assert not cluster.allowed(A, DB, ContainerPort(5432))
    same_ns = Endpoint("data/x", IPv4Address("10.42.0.20"), "data", {"app": "x"})
    assert cluster.allowed(same_ns, DB, ContainerPort(5432))


def test_namespace_and_pod_selector_in_one_peer_are_anded() -> None:
    anded = Cluster([policy("data", {}, ingress=[{"from": [pods_peer("apps", {"app": "a"})]}])])
    assert anded.allowed(A, DB, ContainerPort(5432))
    assert not anded.allowed(B, DB, ContainerPort(5432))
    ored = Cluster(
        [
            policy(
                "data",
                {},
                ingress=[
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}},
                            {"podSelector": {"matchLabels": {"app": "a"}}},
                        ]
                    }
                ],
            )
        ]
    )
    assert ored.allowed(B, DB, ContainerPort(5432))  # the namespace peer alone admits b


def test_namespace_selector_uses_namespace_labels() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "x"}}}
    cluster = Cluster([policy("data", {}, ingress=[{"from": [peer]}])], {"apps": {"team": "x"}})
    assert cluster.allowed(A, DB, ContainerPort(5432))
    assert not cluster.allowed(OTHER, DB, ContainerPort(5432))


def test_ip_block_and_except() -> None:
    cluster = Cluster([policy("apps", {}, policyTypes=["Egress"], egress=[internet_egress()])])
    assert cluster.allowed(A, NET, ContainerPort(443))
    assert not cluster.allowed(A, GPU, ContainerPort(11434))  # 192.168/16 is excepted
    assert not cluster.allowed(A, B, HTTP)  # pod selectors are not ipBlocks; pod IPs are excepted
    gpu = Cluster(
        [policy("apps", {}, policyTypes=["Egress"], egress=[rule([cidr_peer("192.168.10.50/32")], None, egress=True)])]
    )
    assert gpu.allowed(A, GPU, ContainerPort(11434))
    assert not gpu.allowed(A, NET, ContainerPort(443))


def test_pod_selectors_never_select_outside_addresses() -> None:
    cluster = Cluster([policy("apps", {}, policyTypes=["Egress"], egress=[{"to": [{"namespaceSelector": {}}]}])])
    assert cluster.allowed(A, DB, ContainerPort(5432))
    assert not cluster.allowed(A, NET, ContainerPort(443))


def test_ports_numbers_names_ranges_and_protocols() -> None:
    named = Cluster([policy("apps", {}, ingress=[{"ports": [{"protocol": "TCP", "port": "http"}]}])])
    assert named.allowed(DB, A, HTTP)
    assert not named.allowed(DB, A, ContainerPort(8080, "metrics"))
    ranged = Cluster([policy("apps", {}, ingress=[{"ports": [{"port": 8000, "endPort": 8100}]}])])
    assert ranged.allowed(DB, A, HTTP)
    assert not ranged.allowed(DB, A, ContainerPort(9000))
    udp = Cluster([policy("apps", {}, ingress=[{"ports": [{"protocol": "UDP", "port": 8080}]}])])
    assert not udp.allowed(DB, A, HTTP)
    assert udp.allowed(DB, A, ContainerPort(8080, None, "UDP"))


def test_rules_of_all_selecting_policies_are_ored() -> None:
    p1 = policy("apps", {"matchLabels": {"app": "a"}}, ingress=[{"from": [pods_peer("data", {"app": "db"})]}])
    p2 = {**policy("apps", {}, ingress=[{"from": [pods_peer("other", {"app": "db"})]}])}
    cluster = Cluster([p1, p2])
    assert cluster.allowed(DB, A, HTTP) and cluster.allowed(OTHER, A, HTTP)
    assert not cluster.allowed(DB, B, HTTP)  # only p2 selects b


def test_both_sides_must_allow() -> None:
    egress_only = policy("apps", {}, policyTypes=["Egress"], egress=[{"to": [pods_peer("data", {"app": "db"})]}])
    deny_db = policy("data", {}, policyTypes=["Ingress"])
    assert Cluster([egress_only]).allowed(A, DB, ContainerPort(5432))
    assert not Cluster([egress_only, deny_db]).allowed(A, DB, ContainerPort(5432))


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
    ],
)
def test_label_selector(selector: dict[str, Any], labels: dict[str, str], want: bool) -> None:
    assert selector_matches(selector, labels) is want


def test_reachability_lists_allowed_ports_per_pair() -> None:
    cluster = Cluster(
        [
            render_default_deny("apps"),
            render_workload_policy(
                name="a",
                namespace="apps",
                pod_labels={"app": "a"},
                ingress=[],
                egress=[rule([pods_peer("data", {"app": "db"})], tcp(5432), egress=True)],
            ),
        ]
    )
    m = reachability(cluster, [A, B], [A, B, DB])
    assert m[("apps/a", "data/db")] == ("5432",)
    assert m[("apps/b", "data/db")] == ()
    assert ("apps/a", "apps/a") not in m
