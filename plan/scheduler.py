"""A small, deterministic scheduler over the rendered pod specs.

Reads workloads from what the program registered (Deployments, StatefulSets, DaemonSets, and
CronJobs for feasibility), never from a second copy of the placement rules: node selectors,
required node affinity, taints and tolerations, CPU/memory requests against allocatable
(capacity minus the system reserve), topology spread by hostname, and the node affinity of the
PersistentVolume a pod's claim is bound to. Each replica goes to the feasible node with the
fewest pods of its workload, then the most free resources, then the hostname: the same answer
every run.

Cost: the static filters run once per workload (O(nodes)); each replica then scans only that
workload's candidate nodes, so the whole schedule is O(workloads x nodes + replicas x candidates)
- linear in replicas, never quadratic.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from components.core.layout import (
    ALLOWED_CLASSES,
    CATEGORY_LABEL,
    CLASS_LABEL,
    HOSTNAME_LABEL,
    node_labels,
    node_taints,
)
from plan.engine import Registration
from rack.config import Rack
from rack.quantity import cpu_millis, memory_mib
from rack.vocabulary import Category

WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment": "Deployment",
    "kubernetes:apps/v1:StatefulSet": "StatefulSet",
    "kubernetes:apps/v1:DaemonSet": "DaemonSet",
    "kubernetes:batch/v1:CronJob": "CronJob",
    "kubernetes:batch/v1:Job": "Job",
}
PVC_TYPE = "kubernetes:core/v1:PersistentVolumeClaim"
PV_TYPE = "kubernetes:core/v1:PersistentVolume"
ORDER = {"DaemonSet": 0, "StatefulSet": 1, "Deployment": 2}
CATEGORY_ORDER = {"data": 0, "infrastructure": 1, "application": 2, "experimental": 3}


@dataclass
class Node:
    hostname: str
    role: str
    node_class: str
    arch: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    capacity_cpu_m: int
    capacity_memory_mib: int
    allocatable_cpu_m: int
    allocatable_memory_mib: int
    requested_cpu_m: int = 0
    requested_memory_mib: int = 0

    def free(self) -> tuple[int, int]:
        return self.allocatable_cpu_m - self.requested_cpu_m, self.allocatable_memory_mib - self.requested_memory_mib


@dataclass
class Workload:
    key: str
    """`<namespace>/<name>`."""
    kind: str
    category: str
    replicas: int
    pod_spec: dict[str, Any]
    labels: dict[str, str]
    cpu_m: int
    memory_mib: int
    volume_terms: list[list[dict[str, Any]]] = field(default_factory=list)
    """For each bound PV: its required nodeSelectorTerms (OR-ed terms; all PVs AND-ed)."""


@dataclass(frozen=True)
class Placement:
    workload: str
    kind: str
    category: str
    replica: int
    node: str | None
    cpu_m: int
    memory_mib: int


@dataclass(frozen=True)
class Problem:
    severity: str
    check: str
    workload: str | None
    node: str | None
    message: str


# --- inputs ------------------------------------------------------------------------------------


def nodes_from_rack(rack: Rack) -> list[Node]:
    """The nodes as k3s registers them: the layout vocabulary's labels and taints, plus the
    well-known labels the kubelet sets, and allocatable = capacity - k3s.system-reserved."""
    reserve_cpu = cpu_millis(rack.k3s.system_reserved.cpu)
    reserve_mem = memory_mib(rack.k3s.system_reserved.memory)
    out = []
    for n in rack.nodes:
        labels = {
            **node_labels(node_class=n.node_class, role=n.role, arch=n.arch),
            HOSTNAME_LABEL: n.hostname,
            "kubernetes.io/arch": str(n.arch),
            "kubernetes.io/os": "linux",
        }
        if n.role == "server":
            labels["node-role.kubernetes.io/control-plane"] = "true"
        cpu, mem = cpu_millis(n.capacity.cpu), memory_mib(n.capacity.memory)
        out.append(
            Node(
                hostname=n.hostname,
                role=str(n.role),
                node_class=str(n.node_class),
                arch=str(n.arch),
                labels=labels,
                taints=[t.to_k8s() for t in node_taints(node_class=n.node_class, role=n.role)],
                capacity_cpu_m=cpu,
                capacity_memory_mib=mem,
                allocatable_cpu_m=max(cpu - reserve_cpu, 0),
                allocatable_memory_mib=max(mem - reserve_mem, 0),
            )
        )
    return out


def _requests(pod_spec: dict[str, Any]) -> tuple[int, int]:
    def one(container: dict[str, Any]) -> tuple[int, int]:
        req = (container.get("resources") or {}).get("requests") or {}
        cpu = cpu_millis(req["cpu"]) if "cpu" in req else 0
        mem = memory_mib(req["memory"]) if "memory" in req else 0
        return cpu, mem

    # Sidecars (init containers with restartPolicy: Always) run beside the main containers, so
    # their requests add up; a plain init container runs alone, so only the largest counts.
    inits = pod_spec.get("initContainers") or []
    sidecars = [one(c) for c in inits if c.get("restartPolicy") == "Always"]
    main = [one(c) for c in pod_spec.get("containers") or []] + sidecars
    init = [one(c) for c in inits if c.get("restartPolicy") != "Always"]
    cpu = max(sum(c for c, _ in main), max((c for c, _ in init), default=0))
    mem = max(sum(m for _, m in main), max((m for _, m in init), default=0))
    return cpu, mem


def workloads_from(registrations: list[Registration]) -> tuple[list[Workload], list[Problem]]:
    """Every pod-creating object the program registered, with its bound volumes' node terms."""
    problems: list[Problem] = []
    pvs: dict[str, dict[str, Any]] = {}
    pvcs: dict[str, dict[str, Any]] = {}
    for r in registrations:
        if r.type == PV_TYPE:
            pvs[(r.inputs.get("metadata") or {}).get("name", r.name)] = r.inputs
        elif r.type == PVC_TYPE:
            meta = r.inputs.get("metadata") or {}
            pvcs[f"{meta.get('namespace', 'default')}/{meta.get('name', r.name)}"] = r.inputs
    out: list[Workload] = []
    for r in registrations:
        kind = WORKLOAD_TYPES.get(r.type)
        if kind is None:
            continue
        meta = r.inputs.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        key = f"{namespace}/{meta.get('name', r.name)}"
        spec = r.inputs.get("spec") or {}
        if kind == "CronJob":
            template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        else:
            template = spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        try:
            cpu, mem = _requests(pod_spec)
        except ValueError as exc:
            problems.append(Problem("error", "requests", key, None, f"unreadable resource request: {exc}"))
            continue
        terms: list[list[dict[str, Any]]] = []
        for volume in pod_spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            pvc = pvcs.get(f"{namespace}/{claim}")
            if pvc is None:
                problems.append(
                    Problem("warning", "volume", key, None, f"claim {namespace}/{claim} is not created by this program")
                )
                continue
            pv_name = (pvc.get("spec") or {}).get("volumeName")
            pv = pvs.get(pv_name) if pv_name else None
            if pv is None:
                continue
            required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
            terms.append(required.get("nodeSelectorTerms") or [])
        out.append(
            Workload(
                key=key,
                kind=kind,
                category=labels.get(CATEGORY_LABEL, "unknown"),
                replicas=int(spec.get("replicas", 1)) if kind in ("Deployment", "StatefulSet") else 1,
                pod_spec=pod_spec,
                labels=labels,
                cpu_m=cpu,
                memory_mib=mem,
                volume_terms=terms,
            )
        )
    return out, problems


# --- predicates --------------------------------------------------------------------------------


def _expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    present = key in labels
    value = labels.get(key) if key else None
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            left, right = int(value or ""), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def term_matches(term: dict[str, Any], node: Node) -> bool:
    """A nodeSelectorTerm: every matchExpression (labels) and matchField (metadata.name) holds."""
    fields = {"metadata.name": node.hostname}
    return all(_expression(e, node.labels) for e in term.get("matchExpressions") or []) and all(
        _expression(e, fields) for e in term.get("matchFields") or []
    )


def terms_match(terms: list[dict[str, Any]], node: Node) -> bool:
    """OR over terms; an empty list matches nothing (as in Kubernetes)."""
    return any(term_matches(t, node) for t in terms)


def affinity_matches(pod_spec: dict[str, Any], node: Node) -> bool:
    """nodeSelector and required node affinity (what topology spread counts as domains too)."""
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}).get("nodeSelectorTerms")
    return required is None or terms_match(required, node)


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint["effect"]:
            continue
        op = tol.get("operator", "Equal")
        if not tol.get("key"):
            if op == "Exists":
                return True
            continue
        if tol["key"] != taint["key"]:
            continue
        if op == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def taints_tolerated(pod_spec: dict[str, Any], node: Node) -> list[dict[str, str]]:
    """The node's NoSchedule/NoExecute taints the pod does not tolerate (empty: schedulable)."""
    tolerations = pod_spec.get("tolerations") or []
    return [
        t for t in node.taints if t["effect"] in ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)
    ]


def _needed_classes(pod_spec: dict[str, Any]) -> list[str]:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}).get("nodeSelectorTerms") or []
    classes: list[str] = []
    for term in required:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == CLASS_LABEL and e.get("operator") == "In":
                classes.extend(e.get("values") or [])
    selector = (pod_spec.get("nodeSelector") or {}).get(CLASS_LABEL)
    if selector:
        classes.append(selector)
    return sorted(set(classes))


# --- the schedule ------------------------------------------------------------------------------


@dataclass
class _Spread:
    max_skew: int
    selector: dict[str, str]
    domains: list[Node]
    domain_names: frozenset[str]
    lowest: int = 0
    """Fewest matching pods on any domain; recomputed once per replica, not per candidate."""

    def placed(self, hostname: str, by_label: dict[tuple[str, str], dict[str, int]]) -> int:
        # matchLabels is an AND of labels; the smallest per-label count bounds the pods matching
        # all of them (exact for the single-label selectors this program renders).
        return min((by_label[item].get(hostname, 0) for item in self.selector.items()), default=0)


def _spread_constraints(
    w: Workload, nodes: list[Node], domain_cache: dict[str, list[Node]] | None = None
) -> list[_Spread]:
    out = []
    for c in w.pod_spec.get("topologySpreadConstraints") or []:
        if c.get("topologyKey") != HOSTNAME_LABEL or c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        selector = (c.get("labelSelector") or {}).get("matchLabels") or {}
        sig = json.dumps([w.pod_spec.get("nodeSelector"), w.pod_spec.get("affinity")], sort_keys=True)
        cache = domain_cache if domain_cache is not None else {}
        if sig not in cache:
            cache[sig] = [n for n in nodes if affinity_matches(w.pod_spec, n)]
        domains = cache[sig]
        out.append(_Spread(int(c.get("maxSkew", 1)), selector, domains, frozenset(n.hostname for n in domains)))
    return out


@dataclass
class Schedule:
    nodes: list[Node]
    placements: list[Placement]
    problems: list[Problem]
    evaluations: int = 0
    """Candidate nodes examined in all: the scheduler's unit of work (for tests and `make bench`)."""


def _signature(w: Workload) -> str:
    """What decides a workload's candidate nodes; workloads sharing it share the filtering."""
    spec = w.pod_spec
    return json.dumps(
        [spec.get("nodeSelector"), spec.get("affinity"), spec.get("tolerations"), w.volume_terms], sort_keys=True
    )


def _filter(w: Workload, nodes: list[Node]) -> tuple[list[Node], dict[str, str]]:
    static: list[Node] = []
    reasons: dict[str, str] = {}
    for n in nodes:
        if not affinity_matches(w.pod_spec, n):
            reasons[n.hostname] = "affinity"
        elif blocking := taints_tolerated(w.pod_spec, n):
            reasons[n.hostname] = f"taint {blocking[0]['key']}"
        elif w.volume_terms and not all(terms_match(t, n) for t in w.volume_terms):
            reasons[n.hostname] = "volume"
        else:
            static.append(n)
    return static, reasons


class _Levels:
    """Pods per spread domain and the minimum over domains, kept in O(1) per placement."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.hist: dict[int, int] = defaultdict(int)
        for c in counts.values():
            self.hist[c] += 1
        self.lowest = min(counts.values(), default=0)

    def add(self, hostname: str) -> None:
        if hostname not in self.counts:
            return
        c = self.counts[hostname]
        self.counts[hostname] = c + 1
        self.hist[c] -= 1
        self.hist[c + 1] += 1
        while self.hist[self.lowest] == 0 and self.lowest < c + 1:
            self.lowest += 1


def schedule(nodes: list[Node], workloads: list[Workload]) -> Schedule:
    """Place every replica; report every rule that cannot be satisfied."""
    placements: list[Placement] = []
    problems: list[Problem] = []
    # pods placed per node per (label key, value): for spread selectors over any workload
    by_label: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    filtered: dict[str, tuple[list[Node], dict[str, str]]] = {}
    domain_cache: dict[str, list[Node]] = {}
    evaluations = 0
    ordered = sorted(workloads, key=lambda w: (ORDER.get(w.kind, 9), CATEGORY_ORDER.get(w.category, 9), w.key))
    for w in ordered:
        sig = _signature(w)
        if sig not in filtered:
            filtered[sig] = _filter(w, nodes)
        static, reasons = filtered[sig]
        if not static:
            problems.append(_unplaceable(w, reasons))
        if w.kind in ("CronJob", "Job"):
            continue
        if not static:
            placements.extend(
                Placement(w.key, w.kind, w.category, i, None, w.cpu_m, w.memory_mib) for i in range(w.replicas)
            )
            continue
        if w.kind == "DaemonSet":
            chosen: list[Node | None] = []
            for n in static:
                evaluations += 1
                fits = n.free()[0] >= w.cpu_m and n.free()[1] >= w.memory_mib
                if not fits:
                    problems.append(_unfit(w, len(chosen), [n], 1, 0))
                chosen.append(n if fits else None)
                if fits:
                    _commit(w, n, by_label)
        else:
            chosen, work = _place(w, static, _spread_constraints(w, nodes, domain_cache), by_label, problems)
            evaluations += work
        placements.extend(
            Placement(w.key, w.kind, w.category, i, n.hostname if n else None, w.cpu_m, w.memory_mib)
            for i, n in enumerate(chosen)
        )
    problems.extend(check_rules(nodes, workloads, placements))
    return Schedule(nodes=nodes, placements=placements, problems=problems, evaluations=evaluations)


def _commit(w: Workload, n: Node, by_label: dict[tuple[str, str], dict[str, int]]) -> None:
    n.requested_cpu_m += w.cpu_m
    n.requested_memory_mib += w.memory_mib
    for item in w.labels.items():
        by_label[item][n.hostname] += 1


def _place(
    w: Workload,
    static: list[Node],
    spreads: list[_Spread],
    by_label: dict[tuple[str, str], dict[str, int]],
    problems: list[Problem],
) -> tuple[list[Node | None], int]:
    """Choose a node per replica: fewest pods of the spread (or of this workload), then the most
    free resources after placing, then the hostname.

    A heap keyed that way gives the best node in O(log n): placing a replica changes only the
    chosen node's key, and a node that lacks room now lacks it for every later replica (free
    resources only shrink), so it leaves the heap for good. Spread feasibility is decided at the
    top of the heap, which has the fewest pods of any candidate."""
    own_selector = len(spreads) == 1 and all(w.labels.get(k) == v for k, v in spreads[0].selector.items())
    if spreads and not own_selector:
        return _place_scanning(w, static, spreads, by_label, problems)
    spread = spreads[0] if spreads else None
    levels = _Levels({d.hostname: spread.placed(d.hostname, by_label) for d in spread.domains}) if spread else None
    count: dict[str, int] = (
        dict(levels.counts) if levels is not None else {n.hostname: 0 for n in static}
    )

    def key(n: Node) -> tuple[int, float, str]:
        free_cpu, free_mem = n.free()
        left = (free_cpu - w.cpu_m) / max(n.allocatable_cpu_m, 1) + (free_mem - w.memory_mib) / max(
            n.allocatable_memory_mib, 1
        )
        return (count.get(n.hostname, 0), -left, n.hostname)

    by_host = {n.hostname: n for n in static}
    heap = [key(n) for n in static]
    heapq.heapify(heap)
    work = len(static)
    out: list[Node | None] = []
    for replica in range(w.replicas):
        best: Node | None = None
        while heap:
            work += 1
            top = heap[0]
            n = by_host[top[2]]
            free_cpu, free_mem = n.free()
            if free_cpu < w.cpu_m or free_mem < w.memory_mib:
                heapq.heappop(heap)
                continue
            if levels is not None and spread is not None and top[0] + 1 - levels.lowest > spread.max_skew:
                break
            best = n
            break
        if best is None:
            problems.append(_diagnose(w, replica, static, levels, spread))
            out.append(None)
            continue
        heapq.heappop(heap)
        _commit(w, best, by_label)
        count[best.hostname] = count.get(best.hostname, 0) + 1
        if levels is not None:
            levels.add(best.hostname)
        heapq.heappush(heap, key(best))
        out.append(best)
    return out, work


def _diagnose(
    w: Workload, replica: int, static: list[Node], levels: _Levels | None, spread: _Spread | None
) -> Problem:
    """Why no candidate took this replica (only on failure, so a scan is fine here)."""
    roomy = [n for n in static if n.free()[0] >= w.cpu_m and n.free()[1] >= w.memory_mib]
    skewed = 0
    if levels is not None and spread is not None:
        skewed = sum(1 for n in roomy if levels.counts.get(n.hostname, 0) + 1 - levels.lowest > spread.max_skew)
    return _unfit(w, replica, static, len(static) - len(roomy), skewed)


def _place_scanning(
    w: Workload,
    static: list[Node],
    spreads: list[_Spread],
    by_label: dict[tuple[str, str], dict[str, int]],
    problems: list[Problem],
) -> tuple[list[Node | None], int]:
    """The general case (several spread constraints, or selectors beyond the workload's own
    labels): scan every candidate per replica, O(replicas x candidates)."""
    own: dict[str, int] = defaultdict(int)
    out: list[Node | None] = []
    work = 0
    for replica in range(w.replicas):
        best: Node | None = None
        best_key: tuple[Any, ...] | None = None
        fit_fail = spread_fail = 0
        for s in spreads:
            s.lowest = min((s.placed(d.hostname, by_label) for d in s.domains), default=0)
        for n in static:
            work += 1
            free_cpu, free_mem = n.free()
            if free_cpu < w.cpu_m or free_mem < w.memory_mib:
                fit_fail += 1
                continue
            if not _spread_ok(spreads, n, by_label):
                spread_fail += 1
                continue
            left = (free_cpu - w.cpu_m) / max(n.allocatable_cpu_m, 1) + (free_mem - w.memory_mib) / max(
                n.allocatable_memory_mib, 1
            )
            candidate = (own[n.hostname], -left, n.hostname)
            if best_key is None or candidate < best_key:
                best, best_key = n, candidate
        if best is None:
            problems.append(_unfit(w, replica, static, fit_fail, spread_fail))
            out.append(None)
            continue
        _commit(w, best, by_label)
        own[best.hostname] += 1
        out.append(best)
    return out, work


def _spread_ok(spreads: list[_Spread], node: Node, by_label: dict[tuple[str, str], dict[str, int]]) -> bool:
    return all(
        node.hostname not in s.domain_names or s.placed(node.hostname, by_label) + 1 - s.lowest <= s.max_skew
        for s in spreads
    )


def _unplaceable(w: Workload, reasons: dict[str, str]) -> Problem:
    classes = _needed_classes(w.pod_spec)
    need = f"a node of class {' or '.join(classes)}" if classes else "a matching node"
    detail = ", ".join(f"{h}: {r}" for h, r in sorted(reasons.items()))
    return Problem(
        "error",
        "placement",
        w.key,
        None,
        f"no node can run {w.kind} {w.key}: it needs {need} ({detail or 'no nodes'})",
    )


def _unfit(w: Workload, replica: int, candidates: list[Node], fit_fail: int, spread_fail: int) -> Problem:
    if spread_fail:
        classes = "/".join(sorted({c.node_class for c in candidates}))
        return Problem(
            "error",
            "spread",
            w.key,
            None,
            f"replica {replica} of {w.key} cannot be spread by hostname over {len(candidates)} {classes} node(s): "
            f"{spread_fail} would exceed maxSkew, {fit_fail} lack {w.cpu_m}m CPU / {w.memory_mib}Mi",
        )
    best = max(candidates, key=lambda n: n.free())
    cpu, mem = best.free()
    return Problem(
        "error",
        "capacity",
        w.key,
        best.hostname,
        f"replica {replica} of {w.key} needs {w.cpu_m}m CPU / {w.memory_mib}Mi; "
        f"most free {best.node_class} node {best.hostname} has {cpu}m / {mem}Mi",
    )


def check_rules(nodes: list[Node], workloads: list[Workload], placements: list[Placement]) -> list[Problem]:
    """The placement rules of the spec, checked on the result (not used to compute it)."""
    by_host = {n.hostname: n for n in nodes}
    kinds = {w.key: w for w in workloads}
    problems: list[Problem] = []
    flagged: set[tuple[str, str]] = set()
    for w in workloads:
        if w.category == "unknown":
            problems.append(
                Problem("warning", "category", w.key, None, f"{w.key} has no {CATEGORY_LABEL} label")
            )
        if w.volume_terms and w.category not in ("data", "unknown"):
            problems.append(
                Problem("error", "rule", w.key, None, f"{w.key} mounts a pinned volume but is {w.category}, not data")
            )
    for p in placements:
        if p.node is None or p.kind == "DaemonSet":
            continue
        w = kinds[p.workload]
        node = by_host[p.node]
        try:
            allowed = [str(c) for c in ALLOWED_CLASSES[Category(w.category)]]
        except ValueError:
            continue
        if node.node_class not in allowed and (p.workload, p.node) not in flagged:
            flagged.add((p.workload, p.node))
            problems.append(
                Problem(
                    "error",
                    "rule",
                    p.workload,
                    p.node,
                    f"{w.category} workload {p.workload} landed on {node.node_class} node {p.node}; "
                    f"allowed: {', '.join(allowed)}",
                )
            )
    for n in nodes:
        if n.requested_cpu_m > n.allocatable_cpu_m or n.requested_memory_mib > n.allocatable_memory_mib:
            problems.append(Problem("error", "capacity", None, n.hostname, f"{n.hostname} is over-committed"))
    return problems
