"""NodeExporter: the DaemonSet against the 1.31 schema, runs on every node of the homelab rack
(control plane and experimental included) by the plan scheduler's own taint and affinity checks,
tolerates exactly the taints the layout can set, and sees the host read-only as `nobody`."""

from __future__ import annotations

import kubernetes_validate

from components.core.layout import CATEGORY_LABEL, node_agent_tolerations, node_taints
from components.observability.node_exporter import NodeExporter, NodeExporterArgs, render_daemonset
from plan.engine import run_program
from plan.scheduler import affinity_matches, nodes_from_rack, taints_tolerated
from rack.loader import Loaded
from rack.vocabulary import NodeClass, Role


def test_daemonset_matches_the_kubernetes_schema() -> None:
    kubernetes_validate.validate(render_daemonset(), "1.31", strict=True)


def test_runs_on_every_node_of_the_homelab(homelab: Loaded) -> None:
    pod = render_daemonset()["spec"]["template"]["spec"]
    nodes = nodes_from_rack(homelab.rack)
    assert {n.node_class for n in nodes} == {str(c) for c in NodeClass}
    for n in nodes:
        assert affinity_matches(pod, n), n.hostname
        assert taints_tolerated(pod, n) == [], n.hostname


def test_tolerates_every_layout_taint_and_nothing_else() -> None:
    tolerations = render_daemonset()["spec"]["template"]["spec"]["tolerations"]
    assert tolerations == node_agent_tolerations()
    every = {(t.key, str(t.effect)) for c in NodeClass for r in Role for t in node_taints(node_class=c, role=r)}
    assert {(t["key"], t["effect"]) for t in tolerations} == every
    assert all(t["operator"] == "Exists" and t["key"] for t in tolerations)


def test_sees_the_host_read_only_without_privileges() -> None:
    ds = render_daemonset()
    pod = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "monitoring-node"
    assert ds["spec"]["template"]["metadata"]["labels"][CATEGORY_LABEL] == "infrastructure"
    assert pod["hostNetwork"] and pod["hostPID"] and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 65534 and pod["securityContext"]["runAsNonRoot"]
    (c,) = pod["containers"]
    assert all(m["readOnly"] for m in c["volumeMounts"])
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]} and "privileged" not in c["securityContext"]
    assert "--web.listen-address=$(HOST_IP):9100" in c["args"]
    assert c["env"] == [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]


def test_component_registers_the_daemonset_under_itself() -> None:
    def program() -> None:
        NodeExporter("node-exporter", NodeExporterArgs())

    rec = run_program(program)
    comp = rec.by_name("node-exporter")
    ds = rec.by_name("node-exporter-daemonset")
    assert comp.type == "homelab:observability:NodeExporter" and ds.parent == comp.urn
    assert ds.inputs["spec"]["template"]["spec"]["tolerations"] == node_agent_tolerations()
