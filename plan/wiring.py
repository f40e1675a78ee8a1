"""What the plan reads beside placements: pinned volumes, ingress routes and Gitea's database link.

Creates nothing in Pulumi. Pure functions of the registered objects (the rendered manifests that
`pulumi up` would apply), the scheduler's nodes and, where the manifests cannot say it, the config:
- `volumes_json`: every PersistentVolume, on the node its required node affinity selects, with
  the workloads whose pods mount its claim;
- `storage_json`: a node's `storage` (config: path and size) with the Gi its volumes request;
- `ingress_json`: every Ingress rule (host -> Service -> the workloads its selector matches) and
  the node the names resolve to (see `ingress_json` for why that node is the one serving them);
- `urls_json`: the URLs those routes serve (`https://<host><path>` -> Service);
- `gitea_database_links`: Gitea -> the database Service its rendered env points at;
- `lan_dns_json`: where the LAN asks for the names under the domain (`rack.dns.address`), the
  node there and the ports of the registered `coredns-lan` Service.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from components.system.coredns_config import CONFIGMAP_NAMESPACE, SERVICE_NAME
from plan.engine import Registration
from plan.scheduler import PV_TYPE, PVC_TYPE, Node, Workload, taints_tolerated, terms_match
from rack.config import Rack
from rack.quantity import storage_gib

INGRESS_TYPE = "kubernetes:networking.k8s.io/v1:Ingress"
SERVICE_TYPE = "kubernetes:core/v1:Service"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
"""Workloads whose pods serve a Service (a Job's or CronJob's pods are not its backends)."""

SERVICELB_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
]
"""The tolerations of k3s' ServiceLB pods (`svclb-*`, k3s pkg/cloudprovider/servicelb.go
`newDaemonSet`): a node with any other NoSchedule/NoExecute taint runs none."""

GITEA_DB_HOST_ENV = "GITEA__database__HOST"
"""Gitea's `[database] HOST` as an environment override (Gitea's `GITEA__section__KEY` form)."""


def _meta(r: Registration) -> tuple[str, str]:
    meta = r.inputs.get("metadata") or {}
    return meta.get("namespace", "default"), meta.get("name", r.name)


def _backends(namespace: str, selector: dict[str, str], workloads: list[Workload]) -> list[str]:
    """The workloads whose pods a Service with this selector sends traffic to."""
    if not selector:
        return []
    return sorted(
        w.key
        for w in workloads
        if w.kind in POD_KINDS
        and w.key.split("/", 1)[0] == namespace
        and all(w.labels.get(k) == v for k, v in selector.items())
    )


def _services(registrations: list[Registration]) -> dict[str, dict[str, str]]:
    """`<namespace>/<name>` -> the Service's selector (empty for a selector-less Service)."""
    out = {}
    for r in registrations:
        if r.type == SERVICE_TYPE:
            namespace, name = _meta(r)
            out[f"{namespace}/{name}"] = (r.inputs.get("spec") or {}).get("selector") or {}
    return out


def volumes_json(
    registrations: list[Registration], workloads: list[Workload], nodes: list[Node]
) -> list[dict[str, Any]]:
    """Every PersistentVolume the program registers, sorted by name.

    `node` is the one node its required node affinity selects (null if none or several);
    `mounted_by` the workloads whose pod spec mounts a claim bound to it."""
    bound: dict[str, str] = {}  # "<namespace>/<claim>" -> PV name
    for r in registrations:
        if r.type == PVC_TYPE:
            namespace, name = _meta(r)
            volume = (r.inputs.get("spec") or {}).get("volumeName")
            if volume:
                bound[f"{namespace}/{name}"] = volume
    mounted: dict[str, set[str]] = defaultdict(set)
    for w in workloads:
        namespace = w.key.split("/", 1)[0]
        for v in w.pod_spec.get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and f"{namespace}/{claim}" in bound:
                mounted[bound[f"{namespace}/{claim}"]].add(w.key)
    out = []
    for r in registrations:
        if r.type != PV_TYPE:
            continue
        _, name = _meta(r)
        spec = r.inputs.get("spec") or {}
        terms = (((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")) or []
        on = [n.hostname for n in nodes if terms_match(terms, n)]
        claim = spec.get("claimRef") or {}
        out.append(
            {
                "name": name,
                "node": on[0] if len(on) == 1 else None,
                "path": (spec.get("local") or spec.get("hostPath") or {}).get("path"),
                "size_gib": storage_gib((spec.get("capacity") or {}).get("storage", 0)),
                "reclaim": spec.get("persistentVolumeReclaimPolicy"),
                "claim": f"{claim.get('namespace', 'default')}/{claim['name']}" if claim.get("name") else None,
                "mounted_by": sorted(mounted.get(name, set())),
            }
        )
    return sorted(out, key=lambda v: v["name"])


def storage_json(rack: Rack, hostname: str, volumes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The node's `storage` (config) and the Gi its pinned volumes request; null without storage."""
    node = rack.node(hostname)
    if node is None or node.storage is None:
        return None
    return {
        "path": node.storage.path,
        "size_gib": storage_gib(node.storage.size),
        "requested_gib": sum(v["size_gib"] for v in volumes if v["node"] == hostname),
    }


def ingress_json(
    rack: Rack, registrations: list[Registration], workloads: list[Workload], nodes: list[Node]
) -> dict[str, Any]:
    """The ingress: where its names lead, and every route.

    Which node serves the names: every ingress host resolves to `ingress.address` (the CoreDNS
    records of components/system/coredns_config.py). With k3s' ServiceLB, Traefik's LoadBalancer
    Service is answered by a `svclb` pod holding host ports 80/443 on each node whose taints it
    tolerates; the pod on the node at that address takes the connection and forwards it to the
    Service's cluster IP (externalTrafficPolicy Cluster), so to whichever node runs Traefik, then
    to the app's pods. The Traefik pod itself is k3s' (placed by its HelmChart on a general or
    reliable node), not something this program registers, so the plan cannot say where it runs.
    `node` is therefore the node at `ingress.address` when a svclb pod can run there, else null:
    an address that is no node's, or a node whose taint svclb does not tolerate (experimental),
    has nothing listening on 80/443."""
    address = str(rack.ingress.address)
    at = next((n for n in rack.nodes if str(n.address) == address), None)
    sched_node = next((n for n in nodes if at is not None and n.hostname == at.hostname), None)
    serves = sched_node is not None and not taints_tolerated({"tolerations": SERVICELB_TOLERATIONS}, sched_node)
    services = _services(registrations)
    routes = []
    for r in registrations:
        if r.type != INGRESS_TYPE:
            continue
        namespace, _ = _meta(r)
        for rule in (r.inputs.get("spec") or {}).get("rules") or []:
            for path in ((rule.get("http") or {}).get("paths")) or []:
                backend = (path.get("backend") or {}).get("service") or {}
                service = f"{namespace}/{backend.get('name')}"
                routes.append(
                    {
                        "host": rule.get("host"),
                        "path": path.get("path", "/"),
                        "service": service,
                        "port": (backend.get("port") or {}).get("number"),
                        "workloads": _backends(namespace, services.get(service, {}), workloads),
                    }
                )
    return {
        "controller": str(rack.ingress.controller),
        "address": address,
        "address_of": at.hostname if at is not None else None,
        "node": at.hostname if serves and at is not None else None,
        "routes": sorted(routes, key=lambda x: (str(x["host"]), str(x["path"]))),
    }


def urls_json(ingress: dict[str, Any]) -> list[dict[str, str]]:
    """Every URL the rack will serve, from `ingress_json`'s routes (one per rule host and path:
    what Traefik will route), sorted; `service` is where it leads."""
    urls = {f"https://{r['host']}{r['path'] or '/'}": r["service"] for r in ingress["routes"]}
    return [{"url": url, "service": service} for url, service in sorted(urls.items())]


LAN_DNS_SERVICE = (CONFIGMAP_NAMESPACE, SERVICE_NAME)
"""The LoadBalancer Service of components/system/coredns_config.py."""


def lan_dns_json(rack: Rack, registrations: list[Registration]) -> dict[str, Any] | None:
    """The LAN's DNS server for the domain, or null without `rack.dns.address`: the address, the
    node holding it (the config check guarantees one that ServiceLB serves), and the `port/protocol`
    pairs of the registered Service (ServiceLB holds those host ports on that node only)."""
    if rack.dns.address is None:
        return None
    at = rack.dns_node()
    ports: list[str] = []
    for r in registrations:
        if r.type == SERVICE_TYPE and _meta(r) == LAN_DNS_SERVICE:
            ports = sorted(f"{p.get('port')}/{p.get('protocol', 'TCP').lower()}" for p in r.inputs["spec"]["ports"])
    return {
        "address": str(rack.dns.address),
        "node": at.hostname if at is not None else None,
        "zone": rack.domain,
        "ports": ports,
        "upstream": [str(a) for a in rack.dns.upstream],
    }


def gitea_database_links(registrations: list[Registration], workloads: list[Workload]) -> list[dict[str, Any]]:
    """Gitea -> its database: the Service named by the rendered `GITEA__database__HOST`
    (`<service>.<namespace>.svc...:<port>`), ending at the workload that Service selects."""
    services = _services(registrations)
    out = []
    for w in workloads:
        if w.kind not in POD_KINDS:
            continue
        for container in w.pod_spec.get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") != GITEA_DB_HOST_ENV or not isinstance(env.get("value"), str):
                    continue
                labels = env["value"].rsplit(":", 1)[0].split(".")
                if len(labels) < 2:
                    continue
                service = f"{labels[1]}/{labels[0]}"
                for target in _backends(labels[1], services.get(service, {}), workloads):
                    out.append({"from": w.key, "to": target, "uses": labels[0], "kind": "database"})
    return sorted(out, key=lambda x: (x["from"], x["to"]))
