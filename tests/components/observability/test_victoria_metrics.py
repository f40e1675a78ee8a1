"""VictoriaMetrics: manifests against the 1.31 schema, the store pinned to its volume's node (data
category), least-privilege RBAC, its allow-list, and the component under recording mocks:
protected, the volume Retain, and a version/retention/size change never touching the volume, the
claim or the StatefulSet's identity."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from components.core.layout import CATEGORY_LABEL, CLASS_LABEL, HOSTNAME_LABEL
from components.observability import monitoring_config as mc
from components.observability.victoria_metrics import (
    VictoriaMetrics,
    VictoriaMetricsArgs,
    render_cluster_role,
    render_cluster_role_binding,
    render_network_policy,
    render_scrape_configmap,
    render_service,
    render_service_account,
    render_statefulset,
)
from plan.engine import Recording, run_program
from rack.config import Monitoring, Rack, parse_rack
from tests.conftest import stack_raw


def rack(**over: Any) -> Rack:
    raw = stack_raw("homelab")
    raw["monitoring"] = {"node": "rack-db-1", "size": "20Gi", **over}
    return parse_rack(raw)


def manifests(r: Rack) -> list[dict[str, Any]]:
    assert r.monitoring is not None
    return [
        render_service_account(),
        render_cluster_role(),
        render_cluster_role_binding(),
        render_scrape_configmap(r, gpu=True),
        render_service(),
        render_statefulset(r.monitoring),
        render_network_policy(r, gpu_address=r.gpu_host.address if r.gpu_host else None),
    ]


def test_every_manifest_matches_the_kubernetes_schema() -> None:
    for m in manifests(rack()):
        kubernetes_validate.validate(m, "1.31", strict=True)


def test_store_is_data_pinned_to_its_node_and_uses_the_claim_by_name() -> None:
    r = rack()
    assert r.monitoring is not None
    sts = render_statefulset(r.monitoring)
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["template"]["metadata"]["labels"][CATEGORY_LABEL] == "data"
    assert "volumeClaimTemplates" not in sts["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [mc.STORE_VOLUME]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {e["key"]: e["values"] for e in terms[0]["matchExpressions"]} == {
        CLASS_LABEL: ["reliable"],
        HOSTNAME_LABEL: ["rack-db-1"],
    }
    (c,) = pod["containers"]
    version = Monitoring.model_fields["store_version"].default
    assert c["image"] == f"docker.io/victoriametrics/victoria-metrics:v{version}"
    assert "-retentionPeriod=30d" in c["args"]
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "250m", "memory": "512Mi"}
    sc = c["securityContext"]
    assert (
        sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    )
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["serviceAccountName"] == "victoria-metrics"


def test_the_scraper_may_only_read_kubelet_metrics() -> None:
    assert render_cluster_role()["rules"] == [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]
    assert render_cluster_role_binding()["subjects"] == [
        {"kind": "ServiceAccount", "name": "victoria-metrics", "namespace": "monitoring"}
    ]


def test_allow_list_admits_grafana_and_vmalert_and_reaches_only_the_targets() -> None:
    r = rack()
    pol = render_network_policy(r, gpu_address=r.gpu_host.address if r.gpu_host else None)
    (ingress,) = pol["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"] for p in ingress["from"]] == [
        {"app.kubernetes.io/name": "grafana"},
        {"app.kubernetes.io/name": "vmalert"},
    ]
    egress = pol["spec"]["egress"]
    node_rule = next(e for e in egress if any("ipBlock" in p for p in e["to"]) and e["ports"][0]["port"] == 9100)
    assert sorted(p["ipBlock"]["cidr"] for p in node_rule["to"]) == sorted(f"{n.address}/32" for n in r.nodes)
    assert [p["port"] for p in node_rule["ports"]] == [9100, 10250]
    gpu_rule = egress[-1]
    assert gpu_rule == {"to": [{"ipBlock": {"cidr": "192.168.10.50/32"}}], "ports": [{"protocol": "TCP", "port": 9400}]}
    without = render_network_policy(r, gpu_address=None)["spec"]["egress"]
    assert all(e["ports"][0]["port"] != 9400 for e in without if e.get("ports"))


def build(r: Rack) -> Recording:
    def program() -> None:
        VictoriaMetrics("metrics-store", VictoriaMetricsArgs(rack=r, storage_path="/mnt/ssd", gpu=True))

    return run_program(program, preview=False)


def test_component_protects_every_child_and_retains_the_volume() -> None:
    rec = build(rack())
    assert len(rec) >= 10
    assert all(reg.protect for reg in rec), [reg.name for reg in rec if not reg.protect]
    pv = rec.by_name("metrics-store-data-pv")
    spec = pv.inputs["spec"]
    assert pv.retain_on_delete and (spec.get("local") or spec.get("hostPath"))["path"] == "/mnt/ssd/metrics-store"
    assert pv.inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    sts = rec.by_name("metrics-store-statefulset")
    assert rec.by_name("metrics-store-data-pvc").urn in sts.depends_on


IDENTITY = ("metrics-store-data-pv", "metrics-store-data-pvc")


@pytest.mark.parametrize(
    "change", [{"store-version": "1.152.0"}, {"retention": "1y"}, {"store-memory": "1Gi"}, {"scrape-interval": "1m"}]
)
def test_changes_never_touch_the_volume_or_the_store_s_identity(change: dict[str, Any]) -> None:
    before, after = build(rack()), build(rack(**change))
    for name in IDENTITY:
        assert before.by_name(name).inputs == after.by_name(name).inputs
    b, a = (rec.by_name("metrics-store-statefulset").inputs for rec in (before, after))
    for key in ("selector", "serviceName", "replicas"):
        assert b["spec"][key] == a["spec"][key]
    assert b["metadata"] == a["metadata"]
    assert b["spec"]["template"]["spec"]["volumes"] == a["spec"]["template"]["spec"]["volumes"]
