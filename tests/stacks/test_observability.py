"""The observability layer on the committed homelab rack plus a `monitoring` block (the block the
stack file needs; Pulumi.homelab.yaml is not edited here), under recording mocks and through the
real offline plan (`plan.result.make_plan` with the composition plus this layer).

Proves: nothing is built without the section or with `enabled: false`; the config rules with their
key paths; every rendered Kubernetes object valid against the 1.31 schema; the placement rules
(store on its reliable node as data, node-exporter on all five nodes, the rest on general/reliable);
the homelab plan still fits with no problem, and the per-class requests monitoring adds (printed,
and pinned by the test); the DCGM exporter in the plan's external rows; the GPU layer skipped ->
no exporter and no GPU scrape job; the vector extension Job after PostgreSQL; the rack picture
shows the new workloads.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.observability import monitoring_config as mc
from components.platform.pinned_volume import pinned_node
from plan.engine import UNKNOWN, Recording, Registration, run_program
from plan.picture import render_svg
from plan.result import PlanResult, make_plan
from rack.config import ConfigError, Database, parse_rack
from rack.loader import Loaded
from stacks import composition
from stacks.observability import ObservabilityLayer
from tests.conftest import loaded_from, stack_raw

BLOCK: dict[str, Any] = {
    "node": "rack-db-1",
    "size": "20Gi",
    "retention": "30d",
    "host": "grafana",
}
"""The YAML block added under `homelab:rack` in the tests (what Pulumi.homelab.yaml would carry)."""

OBSERVABILITY_TYPES = ("homelab:observability:", "homelab:data:VectorExtension")


def bare_homelab() -> dict[str, Any]:
    """The committed homelab rack without its monitoring block and vector switch."""
    raw = stack_raw("homelab")
    raw.pop("monitoring", None)
    raw["databases"]["postgres"].pop("vector", None)
    return raw


def raw_with(block: dict[str, Any] | None = BLOCK, *, vector: bool = False) -> dict[str, Any]:
    raw = bare_homelab()
    if block is not None:
        raw["monitoring"] = copy.deepcopy(block)
    if vector:
        raw["databases"]["postgres"]["vector"] = True
    return raw


def with_layer(loaded: Loaded) -> tuple[composition.RackStack, ObservabilityLayer]:
    stack = composition.build(loaded)
    return stack, stack.observability


def record(loaded: Loaded) -> Recording:
    def program() -> None:
        with_layer(loaded)

    return run_program(program)


def ours(rec: Recording) -> list[Registration]:
    by_urn = {r.urn: r for r in rec}

    def top(r: Registration) -> Registration:
        while r.parent in by_urn:
            r = by_urn[r.parent]
        return r

    return [
        r
        for r in rec
        if top(r).type.startswith(OBSERVABILITY_TYPES)
        or (r.type.startswith("kubernetes:") and r.name in ("ns-monitoring", "ns-monitoring-node"))
        or r.name.startswith("netpol-monitoring")
    ]


@pytest.fixture(scope="module")
def monitored() -> Iterator[PlanResult]:
    """The homelab plan with the monitoring block and the vector switch, through the real plan."""
    yield make_plan(loaded_from(raw_with(vector=True)), "homelab")


@pytest.fixture(scope="module")
def baseline() -> PlanResult:
    return make_plan(loaded_from(bare_homelab()), "homelab")


# --- off --------------------------------------------------------------------------------------------


def test_absent_or_disabled_builds_nothing() -> None:
    for raw in (raw_with(None), raw_with({**BLOCK, "enabled": False})):
        rec = record(loaded_from(raw))
        assert ours(rec) == []
        assert not any(r.name.startswith(("metrics-store", "grafana", "vmalert")) for r in rec)


def test_disabled_monitoring_frees_its_host_and_storage() -> None:
    raw = raw_with({**BLOCK, "enabled": False, "host": "api", "size": "1000Gi"})
    assert parse_rack(raw).monitoring is not None


# --- config rules -----------------------------------------------------------------------------------


def issues(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_rack(raw)
    return [str(i) for i in exc.value.issues]


def test_the_store_needs_a_reliable_node_with_storage() -> None:
    assert issues(raw_with({**BLOCK, "node": "rack-pi-1"})) == [
        "rack.monitoring.node: 'rack-pi-1' is general, not reliable"
    ]
    assert issues(raw_with({**BLOCK, "node": "nowhere"})) == [
        "rack.monitoring.node: 'nowhere' is not a node in rack.nodes"
    ]
    raw = raw_with()
    del raw["nodes"][3]["storage"]
    assert "rack.monitoring.node: 'rack-db-1' has no storage: set nodes[].storage" in issues(raw)


def test_the_store_s_volume_counts_against_the_node_s_storage() -> None:
    # rack_problems counts Gitea's 20Gi and each database's size (30 + 20 + 2): 72Gi of the 460Gi
    # SSD. (It does not count the databases' backup volumes: the data layer's to add.)
    assert issues(raw_with({**BLOCK, "size": "389Gi"})) == [
        "rack.nodes[3].storage.size: volumes on rack-db-1 need 461Gi, storage.size is 460Gi"
    ]
    parse_rack(raw_with({**BLOCK, "size": "388Gi"}))


def test_grafana_s_host_must_not_collide() -> None:
    assert issues(raw_with({**BLOCK, "host": "api"})) == [
        "rack.monitoring.host: 'api.lab.home.arpa' is already rack.apps[0].host"
    ]
    assert issues(raw_with({**BLOCK, "host": "git"})) == [
        "rack.monitoring.host: 'git.lab.home.arpa' is already rack.gitea.host"
    ]
    assert issues(raw_with({**BLOCK, "host": "gpu"})) == [
        "rack.monitoring.host: 'gpu.lab.home.arpa' is already rack.dns.records.gpu"
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("retention", "30", "'30' is not a retention period (e.g. 30d, 12w, 1y)"),
        ("retention", "5m", "'5m' is not a retention period (e.g. 30d, 12w, 1y)"),
        ("scrape-interval", "1s", "'1s' is not a scrape interval between 5s and 5m (e.g. 30s, 1m)"),
        ("scrape-interval", "10m", "'10m' is not a scrape interval between 5s and 5m (e.g. 30s, 1m)"),
        ("disk-alert-percent", 100, "Input should be less than or equal to 99 (got 100)"),
        ("alertmanager-url", "am:9093", "'am:9093' is not an http(s) URL (e.g. http://alertmanager.example:9093)"),
        ("store-version", "latest", "'latest' is not a pinned version (e.g. 16.6 or 1.22.6)"),
        ("scrape_interval", "30s", "unknown key"),
    ],
)
def test_malformed_values_name_their_key(key: str, value: Any, message: str) -> None:
    path = "rack.monitoring." + key
    assert issues(raw_with({**BLOCK, key: value})) == [f"{path}: {message}"]


def test_node_is_required() -> None:
    assert issues(raw_with({"size": "10Gi"})) == ["rack.monitoring.node: required key is missing"]


def test_the_gpu_exporter_s_port_and_name_stay_free_on_the_gpu_host() -> None:
    raw = raw_with()
    raw["gpu-host"]["containers"].append({"name": "dcgm-exporter", "image": "x/y:1.0", "port": 9400})
    assert issues(raw) == [
        "rack.gpu-host.containers[1].name: 'dcgm-exporter' is monitoring's GPU exporter",
        "rack.gpu-host.containers[1].port: 9400 is the port of monitoring's GPU exporter (dcgm-exporter)",
    ]
    raw["monitoring"]["enabled"] = False
    parse_rack(raw)


# --- what it builds ----------------------------------------------------------------------------------


def test_every_kubernetes_object_matches_the_schema(monitored: PlanResult) -> None:
    regs = [r for r in ours(monitored.recording) if r.type.startswith("kubernetes:") and r.custom]
    kinds = {r.inputs["kind"] for r in regs}
    assert kinds >= {
        "Namespace", "NetworkPolicy", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "PersistentVolume", "PersistentVolumeClaim", "Service", "StatefulSet", "DaemonSet", "Deployment",
        "Secret", "Ingress", "EndpointSlice", "Job",
    }  # fmt: skip
    for r in regs:
        kubernetes_validate.validate(known(r.inputs), "1.31", strict=True)


def known(value: Any) -> Any:
    """Inputs with preview-unknown values (the generated password) replaced by placeholders."""
    if isinstance(value, dict):
        return {
            k: ({"password": "unknown"} if k == "stringData" and v == UNKNOWN else known(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [known(v) for v in value]
    return "unknown" if value == UNKNOWN else value


def test_namespaces_fence_node_exporter_into_privileged(monitored: PlanResult) -> None:
    ns = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"] for r in monitored.recording.of_type(
        "kubernetes:core/v1:Namespace")}  # fmt: skip
    assert ns["monitoring"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["monitoring-node"]["pod-security.kubernetes.io/enforce"] == "privileged"
    denies = {r.inputs["metadata"]["namespace"] for r in ours(monitored.recording) if r.name.endswith("default-deny")}
    assert denies == {"monitoring", "monitoring-node"}


def test_store_is_protected_and_its_volume_retained(monitored: PlanResult) -> None:
    store = [r for r in ours(monitored.recording) if r.name.startswith("metrics-store")]
    assert store and all(r.protect for r in store)
    pv = next(r for r in store if r.type == "kubernetes:core/v1:PersistentVolume")
    assert pv.retain_on_delete and pinned_path(pv.inputs) == "/mnt/ssd/metrics-store"
    assert pv.inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pinned_node(pv.inputs) == "rack-db-1"


def pinned_path(pv: dict[str, Any]) -> str:
    """The volume's directory, whichever volume source the data layer renders (local or hostPath)."""
    spec = pv["spec"]
    return str((spec.get("local") or spec.get("hostPath"))["path"])


def test_grafana_password_is_secret(monitored: PlanResult) -> None:
    sec = monitored.recording.by_name("grafana-admin")
    assert sec.secret_paths == ["stringData"] and sec.redacted["stringData"] == "[secret]"


# --- placement and the plan ---------------------------------------------------------------------------


def by_workload(result: PlanResult) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = defaultdict(list)
    for p in result.sched.placements:
        out[p.workload].append(p.node)
    return out


def test_placements_follow_the_rules(monitored: PlanResult) -> None:
    placed = by_workload(monitored)
    classes = {n.hostname: n.node_class for n in monitored.sched.nodes}
    assert placed["monitoring/victoria-metrics"] == ["rack-db-1"]
    assert sorted(placed["monitoring-node/node-exporter"]) == sorted(classes)  # every node, one each
    for name in ("grafana", "kube-state-metrics", "vmalert"):
        (node,) = placed[f"monitoring/{name}"]
        assert classes[node] in ("general", "reliable"), (name, node)
    categories = {p.workload: p.category for p in monitored.sched.placements}
    assert categories["monitoring/victoria-metrics"] == "data"
    assert categories["monitoring-node/node-exporter"] == "infrastructure"


def test_the_homelab_plan_still_fits_with_monitoring_on(monitored: PlanResult) -> None:
    assert [p.message for p in monitored.problems] == []
    for n in monitored.sched.nodes:
        assert n.requested_cpu_m <= n.allocatable_cpu_m and n.requested_memory_mib <= n.allocatable_memory_mib


def added_per_class(monitored: PlanResult) -> dict[str, tuple[int, int]]:
    classes = {n.hostname: n.node_class for n in monitored.sched.nodes}
    added: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in monitored.sched.placements:
        if p.workload.startswith(("monitoring/", "monitoring-node/")) and p.node is not None:
            added[classes[p.node]][0] += p.cpu_m
            added[classes[p.node]][1] += p.memory_mib
    return {k: (v[0], v[1]) for k, v in sorted(added.items())}


def test_what_monitoring_adds_per_node_class(monitored: PlanResult, baseline: PlanResult) -> None:
    added = added_per_class(monitored)
    print("\nmonitoring adds (cpu m, memory MiB) per node class:", added)
    totals = {n.hostname: (n.requested_cpu_m, n.requested_memory_mib) for n in monitored.sched.nodes}
    print("requested per node with monitoring:", totals)
    # The fixed parts: a node-exporter (50m/48Mi) on every node; the store (250m/512Mi) on the
    # reliable node; Grafana, kube-state-metrics and vmalert (350m/416Mi together) on general or
    # reliable nodes, wherever the scheduler finds the most room.
    assert added["control-plane"] == (50, 48) and added["experimental"] == (50, 48)
    infra = 250 + 50 + 50, 256 + 96 + 64
    assert added["reliable"][0] >= 250 + 50 and added["reliable"][1] >= 512 + 48
    general_and_reliable = (added["general"][0] + added["reliable"][0], added["general"][1] + added["reliable"][1])
    assert general_and_reliable == (3 * 50 + 250 + infra[0], 3 * 48 + 512 + infra[1])
    # Everything placed before is still placed (apps may land on the other general node now: the
    # scheduler prefers the node with the most room left).
    before = {(p.workload, p.replica) for p in baseline.sched.placements if p.node is not None}
    after = {(p.workload, p.replica) for p in monitored.sched.placements if p.node is not None}
    assert before <= after


def test_the_gpu_exporter_is_an_external_container(monitored: PlanResult) -> None:
    rows = {r["workload"]: r for r in monitored.external}
    assert rows["dcgm-exporter"] == {
        "workload": "dcgm-exporter",
        "host": "gpu-3090",
        "image": mc.IMAGES["dcgm-exporter"],
        "gpus": "all",
        "ports": [9400],
    }
    scrape = yaml.safe_load(monitored.recording.by_name("metrics-store-scrape").inputs["data"][mc.SCRAPE_FILE])
    assert "gpu-host" in {j["job_name"] for j in scrape["scrape_configs"]}


def test_skipping_the_gpu_layer_leaves_the_exporter_and_its_job_out() -> None:
    rec = record(loaded_from(raw_with(), skip=frozenset({"gpu"})))
    assert rec.of_type("docker:index/container:Container") == []
    assert not any(r.name.startswith("gpu-3090-metrics") for r in rec)
    scrape = yaml.safe_load(rec.by_name("metrics-store-scrape").inputs["data"][mc.SCRAPE_FILE])
    assert "gpu-host" not in {j["job_name"] for j in scrape["scrape_configs"]}


def test_vector_job_runs_after_postgres(monitored: PlanResult) -> None:
    rec = monitored.recording
    job = rec.by_name("postgres-vector-job")
    sts = rec.by_name("db-postgres-statefulset")
    assert sts.urn in job.depends_on  # the Database component: every child, its StatefulSet included
    major = stack_raw("homelab")["databases"]["postgres"]["version"].split(".")[0]
    pgvector = Database.model_fields["vector_version"].default
    image = sts.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"docker.io/pgvector/pgvector:{pgvector}-pg{major}"


def test_vector_without_monitoring_builds_only_the_job() -> None:
    rec = record(loaded_from(raw_with(None, vector=True)))
    names = {r.type for r in ours(rec)}
    assert names and all(t.startswith(("homelab:data:VectorExtension", "kubernetes:")) for t in names)
    assert rec.by_name("postgres-vector-job")


def test_the_rack_picture_shows_the_monitoring_workloads(monitored: PlanResult) -> None:
    svg = render_svg(monitored.to_json())
    for name in ("victoria-metrics", "grafana", "node-exporter", "kube-state-metrics", "vmalert", "dcgm-exporter"):
        assert name in svg, name
