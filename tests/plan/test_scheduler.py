"""The plan's scheduler on hand-made pod specs: what it must place, and what it must reject."""

from __future__ import annotations

from typing import Any

import pytest

from components.core.layout import node_labels, node_taints, pod_placement, workload_labels
from plan.scheduler import (
    Node,
    Workload,
    affinity_matches,
    schedule,
    taints_tolerated,
    term_matches,
    tolerates,
)
from rack.vocabulary import Category, NodeClass, Role


def node(hostname: str, cls: NodeClass, role: Role = Role.AGENT, cpu: int = 4000, mem: int = 8192) -> Node:
    labels = {**node_labels(node_class=cls, role=role, arch="arm64"), "kubernetes.io/hostname": hostname}  # type: ignore[arg-type]
    return Node(
        hostname=hostname,
        role=str(role),
        node_class=str(cls),
        arch="arm64",
        labels=labels,
        taints=[t.to_k8s() for t in node_taints(node_class=cls, role=role)],
        capacity_cpu_m=cpu,
        capacity_memory_mib=mem,
        allocatable_cpu_m=cpu,
        allocatable_memory_mib=mem,
    )


def workload(
    name: str,
    category: Category,
    *,
    replicas: int = 1,
    cpu: int = 100,
    mem: int = 128,
    kind: str = "Deployment",
    hostname: str | None = None,
    volume_terms: list[list[dict[str, Any]]] | None = None,
    pod_spec: dict[str, Any] | None = None,
) -> Workload:
    spec = pod_spec if pod_spec is not None else pod_placement(name, category, hostname=hostname)
    return Workload(
        key=f"ns/{name}",
        kind=kind,
        category=str(category),
        replicas=replicas,
        pod_spec=spec,
        labels=workload_labels(name, category),
        cpu_m=cpu,
        memory_mib=mem,
        volume_terms=volume_terms or [],
    )


@pytest.fixture
def rack_nodes() -> list[Node]:
    return [
        node("cp", NodeClass.CONTROL_PLANE, Role.SERVER),
        node("gen-1", NodeClass.GENERAL),
        node("gen-2", NodeClass.GENERAL),
        node("db", NodeClass.RELIABLE),
        node("lab", NodeClass.EXPERIMENTAL),
    ]


def hosts(result: Any, key: str) -> list[str | None]:
    return [p.node for p in result.placements if p.workload == key]


def test_application_replicas_spread_over_general_nodes(rack_nodes: list[Node]) -> None:
    result = schedule(rack_nodes, [workload("web", Category.APPLICATION, replicas=4)])
    assert sorted(hosts(result, "ns/web")) == ["gen-1", "gen-1", "gen-2", "gen-2"]
    assert result.problems == []


def test_spread_rejects_more_skew_than_allowed_even_with_room() -> None:
    nodes = [node("gen-1", NodeClass.GENERAL), node("gen-2", NodeClass.GENERAL, cpu=150)]
    # gen-2 has room for one replica only; with it there, maxSkew 1 lets gen-1 hold two, so the
    # fourth replica has nowhere to go although gen-1 still has plenty of CPU.
    result = schedule(nodes, [workload("web", Category.APPLICATION, replicas=4)])
    assert hosts(result, "ns/web").count(None) == 1
    assert [p.check for p in result.problems] == ["spread"]
    assert "1 would exceed maxSkew, 1 lack 100m" in result.problems[0].message


def test_data_pod_follows_its_volume(rack_nodes: list[Node]) -> None:
    extra = node("db-2", NodeClass.RELIABLE)
    terms = [[{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["db-2"]}]}]]
    result = schedule([*rack_nodes, extra], [workload("pg", Category.DATA, kind="StatefulSet", volume_terms=terms)])
    assert hosts(result, "ns/pg") == ["db-2"]


def test_volume_on_a_node_the_affinity_excludes_is_unplaceable(rack_nodes: list[Node]) -> None:
    terms = [[{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gen-1"]}]}]]
    result = schedule(rack_nodes, [workload("pg", Category.DATA, kind="StatefulSet", volume_terms=terms)])
    assert hosts(result, "ns/pg") == [None]
    (problem,) = result.problems
    assert problem.check == "placement" and problem.workload == "ns/pg"
    assert "class reliable" in problem.message and "db: volume" in problem.message


def test_experimental_only_on_experimental_and_nothing_else_there(rack_nodes: list[Node]) -> None:
    result = schedule(
        rack_nodes,
        [workload("rag", Category.EXPERIMENTAL), workload("web", Category.APPLICATION, replicas=2)],
    )
    assert hosts(result, "ns/rag") == ["lab"]
    assert "lab" not in hosts(result, "ns/web")


def test_a_pod_without_the_experimental_toleration_cannot_use_the_experimental_node() -> None:
    only = [node("lab", NodeClass.EXPERIMENTAL)]
    spec = {"tolerations": []}  # no affinity at all: only the taint keeps it off
    result = schedule(only, [workload("stray", Category.APPLICATION, pod_spec=spec)])
    assert hosts(result, "ns/stray") == [None]
    assert "taint rack.homelab.io/experimental" in result.problems[0].message


def test_control_plane_is_never_used_even_when_it_is_the_only_node_with_room() -> None:
    nodes = [node("cp", NodeClass.CONTROL_PLANE, Role.SERVER), node("gen-1", NodeClass.GENERAL, cpu=100)]
    result = schedule(nodes, [workload("web", Category.APPLICATION, cpu=200)])
    assert hosts(result, "ns/web") == [None]
    (problem,) = result.problems
    assert problem.check == "capacity" and problem.node == "gen-1"
    assert "200m" in problem.message


def test_capacity_is_counted_across_workloads(rack_nodes: list[Node]) -> None:
    a = workload("a", Category.DATA, cpu=3000, hostname="db")
    b = workload("b", Category.DATA, cpu=1500, hostname="db")
    result = schedule(rack_nodes, [a, b])
    assert hosts(result, "ns/a") == ["db"] and hosts(result, "ns/b") == [None]
    assert result.problems[0].check == "capacity"
    db = next(n for n in result.nodes if n.hostname == "db")
    assert db.requested_cpu_m == 3000


def test_daemonset_gets_one_pod_per_selected_node(rack_nodes: list[Node]) -> None:
    spec = {"tolerations": [{"operator": "Exists"}]}
    result = schedule(rack_nodes, [workload("node-exporter", Category.INFRASTRUCTURE, kind="DaemonSet", pod_spec=spec)])
    assert sorted(hosts(result, "ns/node-exporter")) == sorted(n.hostname for n in rack_nodes)


def test_rule_check_flags_a_pod_on_a_class_its_category_forbids(rack_nodes: list[Node]) -> None:
    # An application rendered with a hand-written affinity to the reliable class: schedulable,
    # but the spec's placement rules forbid it, and the plan says so.
    spec = {"nodeSelector": {"rack.homelab.io/class": "reliable"}}
    result = schedule(rack_nodes, [workload("sneaky", Category.APPLICATION, pod_spec=spec)])
    assert hosts(result, "ns/sneaky") == ["db"]
    assert [p.check for p in result.problems] == ["rule"]
    assert "allowed: general" in result.problems[0].message


def test_placement_is_deterministic(rack_nodes: list[Node]) -> None:
    def run() -> list[tuple[str, int, str | None]]:
        fresh = [node(n.hostname, NodeClass(n.node_class), Role(n.role)) for n in rack_nodes]
        ws = [workload(f"app-{i}", Category.APPLICATION, replicas=i % 3 + 1) for i in range(10)]
        return [(p.workload, p.replica, p.node) for p in schedule(fresh, ws).placements]

    assert run() == run()


@pytest.mark.parametrize(
    ("expr", "labels", "expected"),
    [
        ({"key": "a", "operator": "In", "values": ["1"]}, {"a": "1"}, True),
        ({"key": "a", "operator": "In", "values": ["1"]}, {}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
        ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
        ({"key": "a", "operator": "DoesNotExist"}, {"a": ""}, False),
        ({"key": "a", "operator": "Gt", "values": ["3"]}, {"a": "4"}, True),
        ({"key": "a", "operator": "Lt", "values": ["3"]}, {"a": "4"}, False),
        ({"key": "a", "operator": "Gt", "values": ["3"]}, {"a": "x"}, False),
    ],
)
def test_node_selector_operators(expr: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    n = node("n", NodeClass.GENERAL)
    n.labels = labels
    assert term_matches({"matchExpressions": [expr]}, n) is expected


def test_match_fields_on_node_name() -> None:
    n = node("gen-1", NodeClass.GENERAL)
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gen-1"]}]}
    assert term_matches(term, n)
    assert not term_matches({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}, n)


def test_affinity_terms_are_ored_and_expressions_anded() -> None:
    n = node("gen-1", NodeClass.GENERAL)
    miss = {"key": "rack.homelab.io/class", "operator": "In", "values": ["reliable"]}
    hit = {"key": "rack.homelab.io/class", "operator": "In", "values": ["general"]}
    def required(*terms: dict[str, Any]) -> dict[str, Any]:
        rule = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
        return {"affinity": {"nodeAffinity": rule}}

    assert affinity_matches(required({"matchExpressions": [miss]}, {"matchExpressions": [hit]}), n)
    assert not affinity_matches(required({"matchExpressions": [miss, hit]}), n)


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "operator": "Equal", "value": "other", "effect": "NoSchedule"}, False),
        ({"key": "k", "operator": "Exists"}, True),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_semantics(toleration: dict[str, str], expected: bool) -> None:
    assert tolerates([toleration], {"key": "k", "value": "v", "effect": "NoSchedule"}) is expected


def test_prefer_no_schedule_taints_do_not_block() -> None:
    n = node("gen-1", NodeClass.GENERAL)
    n.taints = [{"key": "soft", "value": "", "effect": "PreferNoSchedule"}]
    assert taints_tolerated({}, n) == []


def test_scheduling_work_is_linear_in_replicas_not_quadratic() -> None:
    """Counts work (candidates examined), not seconds."""

    def work(replicas: int, node_count: int) -> int:
        nodes = [node(f"gen-{i}", NodeClass.GENERAL, cpu=10**6, mem=10**7) for i in range(node_count)]
        result = schedule(nodes, [workload("web", Category.APPLICATION, replicas=replicas)])
        assert all(p.node for p in result.placements) and result.problems == []
        return result.evaluations

    assert work(400, 10) <= 2 * work(200, 10) + 10
    # per replica, the work does not grow with the number of candidate nodes
    assert work(200, 100) - 100 <= 2 * (work(200, 10) - 10)


def test_heap_and_scan_paths_agree() -> None:
    """Two spread constraints force the scanning path; the same single one takes the heap path."""
    import plan.scheduler as sched

    def run(force_scan: bool) -> list[str | None]:
        nodes = [node(f"gen-{i}", NodeClass.GENERAL, cpu=1000 + 100 * i) for i in range(4)]
        w = workload("web", Category.APPLICATION, replicas=9, cpu=300)
        spreads = sched._spread_constraints(w, nodes)
        problems: list[Any] = []
        place = sched._place_scanning if force_scan else sched._place
        chosen, _ = place(w, nodes, spreads, sched.defaultdict(lambda: sched.defaultdict(int)), problems)
        return [n.hostname if n else None for n in chosen]

    assert sorted(map(str, run(True))) == sorted(map(str, run(False)))


def test_requests_count_sidecars_with_main_containers_and_the_largest_init() -> None:
    from plan.scheduler import _requests

    spec = {
        "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
        "initContainers": [
            {"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
            {"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
        ],
    }
    assert _requests(spec) == (2000, 1152)
