"""NodeExporter: node metrics (CPU, memory, filesystems, temperature) from every node of the rack.

Creates, under `homelab:observability:NodeExporter`, one `DaemonSet` `node-exporter` in its own
namespace (`monitoring-node`, Pod Security `privileged`: host network, host PID and read-only
host paths are what it takes to see the node, so it is fenced off from everything else). It
tolerates every taint the layout puts on a node (`layout.node_agent_tolerations`: the control
plane's and the experimental nodes'), so every node, servers included, reports. The container
itself runs as `nobody`, read-only, with every capability dropped.

It listens on the node's own address (port 9100), where the store scrapes it by the addresses
in the rack config. A hostNetwork pod is outside NetworkPolicies; the port serves read-only
metrics to the LAN, as any node exporter does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    WORKLOAD_LABEL,
    node_agent_tolerations,
    restricted_container_security,
    restricted_pod_security,
    workload_labels,
)
from components.observability import monitoring_config as mc
from rack.vocabulary import Category

RUN_AS = 65534
MOUNT_EXCLUDE = r"^/(dev|proc|sys|run|var/lib/kubelet/.+|var/lib/rancher/k3s/agent/containerd/.+)($|/)"
"""Mount points that are not the node's disks (pod volumes, containerd snapshots, virtual fs)."""


def labels() -> dict[str, str]:
    return workload_labels(mc.NODE_EXPORTER_NAME, Category.INFRASTRUCTURE)


def render_daemonset(*, namespace: str = mc.NODE_NAMESPACE) -> dict[str, Any]:
    """The DaemonSet (pure): on every node, whatever its class or taints."""
    host_mounts = [("proc", "/proc", "/host/proc"), ("sys", "/sys", "/host/sys"), ("root", "/", "/host/root")]
    container: dict[str, Any] = {
        "name": mc.NODE_EXPORTER_NAME,
        "image": mc.IMAGES["node-exporter"],
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--path.procfs=/host/proc",
            "--path.sysfs=/host/sys",
            "--path.rootfs=/host/root",
            "--web.listen-address=$(HOST_IP):9100",
            f"--collector.filesystem.mount-points-exclude={MOUNT_EXCLUDE}",
            "--no-collector.wifi",
            "--no-collector.infiniband",
            "--no-collector.nfs",
            "--no-collector.nfsd",
        ],
        "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        "ports": [{"name": "metrics", "containerPort": mc.NODE_EXPORTER_PORT, "protocol": "TCP"}],
        "resources": mc.RESOURCES[mc.NODE_EXPORTER_NAME].to_k8s(),
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {
                "name": name,
                "mountPath": path,
                "readOnly": True,
                **({"mountPropagation": "HostToContainer"} if name == "root" else {}),
            }
            for name, _, path in host_mounts
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 15, "timeoutSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/", "port": "metrics"},
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }
    pod_spec: dict[str, Any] = {
        "hostNetwork": True,
        "hostPID": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(RUN_AS),
        "containers": [container],
        "volumes": [{"name": name, "hostPath": {"path": host, "type": "Directory"}} for name, host, _ in host_mounts],
        # Every node: no class affinity, and every taint the layout can set is tolerated.
        "tolerations": node_agent_tolerations(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": mc.NODE_EXPORTER_NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "selector": {"matchLabels": {WORKLOAD_LABEL: mc.NODE_EXPORTER_NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels()}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True, kw_only=True)
class NodeExporterArgs:
    namespace: str = mc.NODE_NAMESPACE
    """Namespace of the DaemonSet (Pod Security `privileged`)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What the DaemonSet waits for (its Namespace)."""


class NodeExporter(pulumi.ComponentResource):
    daemonset: KubernetesObject
    """node-exporter on every node."""

    def __init__(self, name: str, args: NodeExporterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:NodeExporter", name, None, opts)
        ds = render_daemonset(namespace=args.namespace)
        self.daemonset = KubernetesObject(
            f"{name}-daemonset", ds, pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        )
        self.register_outputs({"daemonset": self.daemonset})
