"""servicelb-double: a TEST DOUBLE of k3s' ServiceLB (klipper-lb) controller, for the lab.

A k3s server gives every `type: LoadBalancer` Service an address: it runs a `svclb-*` DaemonSet
pod on each eligible node and writes those nodes' IPs into `status.loadBalancer.ingress`. A plain
kube-apiserver has no such controller, so such a Service would stay `<pending>` and
pulumi-kubernetes' Service awaiter would time out (Gitea's SSH Service is one). This double writes
the status ServiceLB would: the InternalIPs of the Ready nodes a svclb pod could run on (when any
node carries the `svccontroller.k3s.cattle.io/enablelb` label, only the nodes labelled `true`, and
of those, for a Service labelled `svccontroller.k3s.cattle.io/lbpool=<pool>`, only the nodes with
the same lbpool label, as `newDaemonSet` builds the svclb nodeSelector; never a node with a
NoSchedule/NoExecute taint the svclb pods do not tolerate; a cordoned node keeps its place, as it
keeps its svclb pod). Services with a `loadBalancerClass` are left alone, as ServiceLB leaves them.
It runs no pods and forwards no traffic. It reads the node labels afresh on every pass, so it does
not model k3s keeping a DaemonSet's `enablelb` selector once no node carries the label any more
(`onChangeNode` acts only on a node that has it; a k3s restart or a change to the Service resets it).

    servicelb-double.py KUBECTL KUBECONFIG        (started and stopped by lab-up / lab-down)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

ENABLE_LB = "svccontroller.k3s.cattle.io/enablelb"
LB_POOL = "svccontroller.k3s.cattle.io/lbpool"
TOLERATED: dict[str, str | None] = {
    # the svclb pod template's own (k3s pkg/cloudprovider/servicelb.go `newDaemonSet`)
    "node-role.kubernetes.io/master": "NoSchedule",
    "node-role.kubernetes.io/control-plane": "NoSchedule",
    "CriticalAddonsOnly": None,
    # what the DaemonSet controller adds to every daemon pod (kubernetes
    # pkg/controller/daemon/util/daemonset_util.go `AddOrUpdateDaemonPodTolerations`): a cordoned
    # node keeps its svclb pod, and so its place in the status
    "node.kubernetes.io/not-ready": "NoExecute",
    "node.kubernetes.io/unreachable": "NoExecute",
    "node.kubernetes.io/disk-pressure": "NoSchedule",
    "node.kubernetes.io/memory-pressure": "NoSchedule",
    "node.kubernetes.io/pid-pressure": "NoSchedule",
    "node.kubernetes.io/unschedulable": "NoSchedule",
}
"""Taint key -> the effect the svclb pods tolerate it with (None: any effect)."""


def kubectl(kubectl_bin: str, kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [kubectl_bin, "--kubeconfig", kubeconfig, "--request-timeout=10s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def eligible_ips(nodes: list[dict[str, Any]], pool_label: str | None = None) -> list[str]:
    def ready(node: dict[str, Any]) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def tolerated(node: dict[str, Any]) -> bool:
        def ok(taint: dict[str, str]) -> bool:
            return taint["effect"] == "PreferNoSchedule" or (
                taint["key"] in TOLERATED and TOLERATED[taint["key"]] in (None, taint["effect"])
            )

        return all(ok(t) for t in node["spec"].get("taints") or [])

    def labels(node: dict[str, Any]) -> dict[str, str]:
        return dict(node["metadata"].get("labels") or {})

    pool = nodes
    if any(ENABLE_LB in labels(n) for n in nodes):  # k3s nodeHasDaemonSetLabel: the key on any node
        pool = [n for n in nodes if labels(n).get(ENABLE_LB) == "true"]
        if pool_label:
            pool = [n for n in pool if labels(n).get(LB_POOL) == pool_label]
    ips = []
    for node in pool:
        if not (ready(node) and tolerated(node)):
            continue
        ips += [a["address"] for a in node["status"].get("addresses", []) if a["type"] == "InternalIP"]
    return sorted(ips)


def sync(kubectl_bin: str, kubeconfig: str) -> None:
    nodes = json.loads(kubectl(kubectl_bin, kubeconfig, "get", "nodes", "-o", "json"))["items"]
    services = json.loads(kubectl(kubectl_bin, kubeconfig, "get", "services", "-A", "-o", "json"))["items"]
    for svc in services:
        spec = svc["spec"]
        if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass"):
            continue
        ips = eligible_ips(nodes, (svc["metadata"].get("labels") or {}).get(LB_POOL))
        current = svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])
        if [i.get("ip") for i in current] == ips:
            continue
        patch = json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}})
        meta = svc["metadata"]
        kubectl(
            kubectl_bin,
            kubeconfig,
            "patch",
            "service",
            meta["name"],
            "-n",
            meta["namespace"],
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        )
        print(f"servicelb-double: {meta['namespace']}/{meta['name']} -> {ips}", flush=True)


def main() -> None:
    kubectl_bin, kubeconfig = sys.argv[1:3]
    while True:
        try:
            sync(kubectl_bin, kubeconfig)
        except subprocess.CalledProcessError as exc:
            print(f"servicelb-double: {exc.stderr.strip()}", file=sys.stderr, flush=True)
        time.sleep(2)


if __name__ == "__main__":
    main()
