"""The offline plan: run the real composition under mocks, schedule its pods, and describe it.

`make_plan` is what `make plan` runs; `PlanResult.to_json()` is the contract of
shared/spec/plan-format.md. Secret inputs appear only as "[secret]".
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from components.core.layout import NAMESPACES
from plan.engine import Recording, Registration, run_program
from plan.scheduler import Node, Placement, Problem, Schedule, nodes_from_rack, schedule, workloads_from
from plan.wiring import gitea_database_links, ingress_json, lan_dns_json, storage_json, urls_json, volumes_json
from rack.config import Rack
from rack.k3s_releases import release_warnings
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.composition import build, export

CRONJOB_TYPE = "kubernetes:batch/v1:CronJob"
CONTAINER_TYPE = "docker:index/container:Container"
REMOTE_IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"
DOCKER_PROVIDER_TYPE = "pulumi:providers:docker"


@dataclass
class PlanResult:
    stack: str
    loaded: Loaded
    recording: Recording
    sched: Schedule
    external: list[dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)
    backups: list[dict[str, Any]] = field(default_factory=list)
    """Each dataset's backup: schedule, local dumps, off-node target (see `backups_of`)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent evaluating the program and scheduling (for `make bench`)."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def component_summary(self) -> list[tuple[str, int, Counter[str]]]:
        """(top-level component type or 'stack', how many, resource counts by type beneath)."""
        by_urn = {r.urn: r for r in self.recording}
        top_of: dict[str, Registration] = {}

        def top(r: Registration) -> Registration:
            if r.urn in top_of:
                return top_of[r.urn]
            parent = by_urn.get(r.parent)
            result = r if parent is None else top(parent)
            top_of[r.urn] = result
            return result

        roots: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for r in self.recording:
            root = top(r)
            label = "stack" if root.custom else root.type
            if not root.custom:
                roots[label].add(root.urn)
            if r.custom:
                counts[label][short_type(r.type)] += 1
        return sorted(
            ((label, len(roots[label]), counts[label]) for label in counts),
            key=lambda g: (g[0] == "stack", g[0]),
        )

    def urls(self) -> list[dict[str, str]]:
        """Every URL the rack will serve (`plan.wiring.urls_json` of the ingress routes)."""
        registrations = self.recording.registrations
        workloads, _ = workloads_from(registrations)
        return urls_json(ingress_json(self.loaded.rack, registrations, workloads, self.sched.nodes))

    def to_json(self) -> dict[str, Any]:
        sched = self.sched
        registrations = self.recording.registrations
        workloads, _ = workloads_from(registrations)
        volumes = volumes_json(registrations, workloads, sched.nodes)
        rack = self.loaded.rack
        ingress = ingress_json(rack, registrations, workloads, sched.nodes)
        return {
            "stack": self.stack,
            "nodes": [_node_json(n, rack, volumes) for n in sched.nodes],
            "placements": [_placement_json(p) for p in sched.placements],
            "external": self.external,
            "backups": self.backups,
            "links": app_links(self.loaded, sched.placements) + gitea_database_links(registrations, workloads),
            "volumes": volumes,
            "ingress": ingress,
            "urls": urls_json(ingress),
            "dns": lan_dns_json(rack, registrations),
            # By URN: the SDK's registration order varies from run to run (it follows asyncio
            # scheduling), and a plan diffed between two commits must show only real changes.
            "resources": [_resource_json(r) for r in sorted(self.recording, key=lambda r: r.urn)],
            "problems": [
                {"severity": p.severity, "check": p.check, "workload": p.workload, "node": p.node, "message": p.message}
                for p in self.problems
            ],
        }


def short_type(type_: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`; `homelab:apps:AppWorkload` -> `AppWorkload`."""
    if type_.startswith("pulumi:providers:"):
        return f"Provider({type_.rsplit(':', 1)[-1]})"
    if type_ == "pulumi-python:dynamic:Resource":
        return "GeneratedValue"
    return type_.rsplit(":", 1)[-1]


def _node_json(n: Node, rack: Rack, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    node = rack.node(n.hostname)
    return {
        "hostname": n.hostname,
        "address": str(node.address) if node is not None else None,
        "role": n.role,
        "class": n.node_class,
        "arch": n.arch,
        "labels": n.labels,
        "taints": n.taints,
        "capacity": {"cpu_m": n.capacity_cpu_m, "memory_mib": n.capacity_memory_mib},
        "allocatable": {"cpu_m": n.allocatable_cpu_m, "memory_mib": n.allocatable_memory_mib},
        "requested": {"cpu_m": n.requested_cpu_m, "memory_mib": n.requested_memory_mib},
        "storage": storage_json(rack, n.hostname, volumes),
    }


def _placement_json(p: Placement) -> dict[str, Any]:
    return {
        "workload": p.workload,
        "kind": p.kind,
        "category": p.category,
        "replica": p.replica,
        "node": p.node,
        "cpu_m": p.cpu_m,
        "memory_mib": p.memory_mib,
    }


def _resource_json(r: Registration) -> dict[str, Any]:
    inputs = {k: ("<dynamic provider>" if k == "__provider" else v) for k, v in r.redacted.items()}
    return {
        "urn": r.urn,
        "urn_name": r.urn_name,
        "type": r.type,
        "name": r.name,
        "parent": r.parent or None,
        "protect": r.protect,
        "retain_on_delete": r.retain_on_delete,
        "depends_on": r.depends_on,
        "secret_paths": r.secret_paths,
        "inputs": inputs,
    }


def app_links(loaded: Loaded, placements: list[Placement]) -> list[dict[str, Any]]:
    """What each app talks to, from `rack.apps[].uses`: one link per (app, used name).

    `from` is the app's workload key as placed; `to` is the database's StatefulSet
    (`data/<db>`) or the GPU service (`<namespace>/<name>`, with the GPU `host` it points at)."""
    rack = loaded.rack
    keys = sorted({p.workload for p in placements})
    data_ns = NAMESPACES[Category.DATA]
    gpu = rack.gpu_host
    out = []
    for app in rack.apps:
        home = f"{NAMESPACES[Category(app.category)]}/{app.name}"
        source = home if home in keys else next((k for k in keys if k.split("/", 1)[1] == app.name), home)
        for use in app.uses:
            if gpu is not None and use == gpu.service.name:
                target = f"{gpu.service.namespace}/{gpu.service.name}"
                out.append({"from": source, "to": target, "uses": use, "kind": "inference", "host": gpu.hostname})
            else:
                out.append({"from": source, "to": f"{data_ns}/{use}", "uses": use, "kind": "database"})
    return out


def external_containers(recording: Recording, loaded: Loaded) -> list[dict[str, Any]]:
    """Docker containers the program registers on hosts outside the cluster (the GPU host)."""
    by_urn = {r.urn: r for r in recording}
    hosts = {}
    if loaded.rack.gpu_host is not None:
        hosts[str(loaded.rack.gpu_host.address)] = loaded.rack.gpu_host.hostname
    out = []
    for r in recording.of_type(CONTAINER_TYPE):
        image = next(
            (
                by_urn[d].inputs.get("name")
                for d in r.depends_on
                if d in by_urn and by_urn[d].type == REMOTE_IMAGE_TYPE
            ),
            r.inputs.get("image"),
        )
        provider = by_urn.get(r.provider.rsplit("::", 1)[0])  # a provider reference is "<urn>::<id>"
        host = str((provider.inputs.get("host") if provider else "") or "")
        address = host.rsplit("@", 1)[-1].split(":")[0] if host else ""
        gpus = r.inputs.get("gpus")
        requests = r.inputs.get("deviceRequests")
        out.append(
            {
                "workload": r.inputs.get("name", r.name),
                "host": hosts.get(address, address or "unknown"),
                "image": image,
                "gpus": gpus if gpus is not None else _gpus_of(requests),
                "ports": [p.get("external") for p in r.inputs.get("ports") or []],
            }
        )
    return sorted(out, key=lambda c: (c["host"], c["workload"]))


def backups_of(recording: Recording, loaded: Loaded) -> list[dict[str, Any]]:
    """What is backed up, read from the registered CronJobs (schedule, node, whether a dump stays
    on the node and whether a copy goes off it), with the off-node target and retention from
    `rack.backup.offsite`. A dataset whose CronJob is not registered is not listed."""
    rack = loaded.rack
    offsite = rack.backup.offsite
    crons = {r.inputs.get("metadata", {}).get("name"): r for r in recording.of_type(CRONJOB_TYPE)}
    out = []
    for ds in rack.backup_datasets():
        cron = crons.get(f"{ds.name}-backup")
        if cron is None:
            continue
        spec = cron.inputs.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        names = [c.get("name") for c in [*pod.get("initContainers", []), *pod.get("containers", [])]]
        volumes = pod.get("volumes", [])
        claims = [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v]
        db = {k.value: d for k, d in rack.databases.configured().items()}.get(ds.name)
        target = None
        if "offsite" in names and offsite is not None:
            target = {
                "repository": offsite.repository.rstrip("/") + f"/{ds.name}" if offsite.repository else None,
                "node": offsite.node,
                "retention": offsite.retention.model_dump(),
            }
        out.append(
            {
                "dataset": ds.name,
                "node": ds.node,
                "schedule": spec.get("schedule"),
                "local": {"volume": claims[0], "keep": db.backup.keep} if "dump" in names and db and claims else None,
                "offsite": target,
            }
        )
    return out


def _gpus_of(requests: Any) -> str | None:
    for req in requests or []:
        caps = req.get("capabilities") or []
        flat = [c for item in caps for c in (item if isinstance(item, list) else [item])]
        if "gpu" in flat:
            ids = req.get("deviceIds")
            if ids:
                return "device=" + ",".join(ids)
            return "all" if req.get("count", -1) == -1 else str(req.get("count"))
    return None


def make_plan(loaded: Loaded, stack: str, *, one_shot: bool = False) -> PlanResult:
    """Evaluate the real composition under mocks, then place every replica.

    `one_shot`: this process plans once and ends (see `plan.engine.collector_paused`)."""

    def program() -> None:
        export(build(loaded), loaded)

    started = time.perf_counter()
    recording = run_program(program, stack=stack, preview=True, one_shot=one_shot)
    evaluated = time.perf_counter()
    workloads, read_problems = workloads_from(recording.registrations)
    sched = schedule(nodes_from_rack(loaded.rack), workloads)
    scheduled = time.perf_counter()
    warnings = [Problem("warning", "secret", None, None, str(w)) for w in loaded.warnings]
    warnings += [Problem("warning", "k3s", None, None, w) for w in release_warnings(loaded.rack.k3s.version)]
    seen = Counter(r.urn for r in recording)
    warnings += [
        Problem("error", "duplicate", None, None, f"{urn} is registered {n} times; the engine would refuse it")
        for urn, n in sorted(seen.items())
        if n > 1
    ]
    problems = warnings + read_problems + sched.problems
    return PlanResult(
        stack=stack,
        loaded=loaded,
        recording=recording,
        sched=sched,
        external=external_containers(recording, loaded),
        problems=problems,
        backups=backups_of(recording, loaded),
        timings={"program": evaluated - started, "schedule": scheduled - evaluated},
    )
