"""`make e2e-faults`: the faults a homelab meets, against a fresh lab (after `make e2e`, in CI).

With the real Pulumi CLI, engine and providers (`make toolchain`) and the lab of `make lab-up`,
from a workspace of its own (build/e2e-faults: a copy of Pulumi.lab.yaml, a file backend, a
random passphrase), as lab/e2e.py does. Each step breaks something on purpose and checks what
the user is left with:

1. the first bootstrap interrupted at random points: Ctrl-C (SIGINT) of one `pulumi up`, then
   SIGKILL of the CLI during the `up` that resumes it; the recovery of docs/troubleshooting.md
   ("An interrupted `pulumi up`") converges to what an uninterrupted run creates (the URNs of the
   preview from nothing), with k3s installed once per host, nothing replaced, no pending
   operation and no lock left;
2. a k3s minor upgrade interrupted the same way (SIGKILL, then SIGINT of the resumed run): the
   same recovery converges, every host upgraded once, the data volumes and StatefulSets the very
   objects they were (uids);
3. the API server down (the control plane stopped as k3s stops on the bootstrap server: API
   server, controller-manager and scheduler are one process there), with a change to a Deployment
   pending: `pulumi up` and `pulumi refresh` fail naming the unreachable cluster and its address;
   `pulumi preview` plans the change (the provider diffs without the cluster) and exits 0; after
   each, the state is as it was (exported, decrypted, compared without timestamps: no resource
   dropped, pulumi-kubernetes #1485); the next `up` once it is back converges;
4. one agent's host down, from a settled cluster: `preview`, `refresh` and `up` with nothing to
   change there succeed and leave the state as it was (a refresh dials no host; it reads the
   Kubernetes objects' live status, which is all it changes; KWOK keeps the host's Node Ready, so
   the NotReady node of a real rack is not part of this: docs/troubleshooting.md says what a
   refresh records then); an `up` that must reach the host fails naming it (e2e step 6 tests that
   mid-upgrade);
5. the API server restarted (the control plane, as k3s restarts) while an `up` updates several
   Kubernetes objects: the run fails or completes, leaving no pending operation or lock, and the
   next `up` converges.

The random kill points come from one seed, printed first: HOMELAB_FAULTS_SEED=<n> repeats a run.
HOMELAB_FAULTS_STEPS=F1,F3 runs only those steps (F1 is the bootstrap the others build on).
A summary table (step, result, wall time, what was measured) ends the output and is written to
build/e2e-faults/summary.json.

    .venv/bin/python lab/e2e_faults.py   (after `source build/lab/env.sh` and `. toolchain/env.sh`)
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e
from e2e import StepError, kubectl, objects, rack_nodes, read_config, urn_name

# A workspace of its own, so the e2e's logs stay for reading (e2e's helpers read these names).
e2e.WS = e2e.ROOT / "build" / "e2e-faults"
e2e.STACK_FILE = e2e.WS / f"Pulumi.{e2e.STACK}.yaml"
e2e.LOGS = e2e.WS / "logs"
WS = e2e.WS

API_ADDRESS = "10.77.0.11:6443"
"""The address the program's kubeconfig points at: the bootstrap server's :6443 (Pulumi.lab.yaml's
lab-cp-1)."""
API_DOWN_MESSAGE = re.compile(rf"unreachable|{re.escape(API_ADDRESS)}|connection refused", re.IGNORECASE)
"""How a failure names the API server: the provider's "unreachable cluster" or API_ADDRESS."""
HOST_DOWN = "lab-gen-3"
"""The agent step 4 takes down (the last in the rollout order, so no other host waits on it)."""
DATA_NAMESPACE = "data"
RESTART_IMAGES = {"web": "registry.lab.test/web:1.0.2", "worker": "registry.lab.test/worker:1.0.1"}
"""Step 5's change: two apps' images (two Deployments updated in place)."""


@dataclass
class Faults:
    run: e2e.Run
    rng: random.Random
    seed: int
    reference: list[str] = field(default_factory=list)
    """The URNs an uninterrupted run creates: the engine's preview from nothing."""
    updates_before: int = 0


# --- the CLI, interrupted ------------------------------------------------------------------------


@dataclass
class Interrupted:
    signal: str
    at_step: int
    """Sent when the run started this step (1-based) of those the preview before it planned."""
    planned: int
    returncode: int
    at_s: float
    """Seconds into the run when it was sent (or when the run finished, if first)."""
    started: str
    """The step whose start triggered it."""
    seconds: float
    pending: list[str]
    log: Path
    repaired: str = ""
    """What the kill cut of the file backend and the repair typed (repair_cut_sidecars), if any."""

    @property
    def finished_first(self) -> bool:
        """The run ended before it began the step: nothing was sent."""
        return not self.started

    def describe(self) -> str:
        if self.finished_first:
            return (
                f"{self.signal} planned at step {self.at_step}/{self.planned}: the run had finished "
                f"after {self.at_s:.1f} s (exit {self.returncode})"
            )
        what = f"{len(self.pending)} pending ({', '.join(self.pending[:3])}{', ...' if len(self.pending) > 3 else ''})"
        return (
            f"{self.signal} at step {self.at_step}/{self.planned} ({self.started}), {self.at_s:.1f} s in "
            f"-> exit {self.returncode} after {self.seconds:.1f} s, {what}"
            + (f"; {self.repaired}" if self.repaired else "")
        )


STEP_STARTED = re.compile(
    r"^\s*[-+~<>]+\s+(?P<type>[\w.-]+:[\w./-]+:[\w.-]+)\s+(?P<name>\S+)\s+"
    r"(?:creating|updating|deleting|replacing|creating replacement|deleting original|reading)\s+\("
)
"""The CLI's line for a step that has begun (`--non-interactive`: ` +  command:remote:Command
k3s-lab-cp-1-preflight creating (0s) `); its later progress lines repeat the type and name."""


def note_steps_started(lines: list[str], begun: dict[str, None]) -> None:
    """Add to `begun` (kept in order) the steps these output lines show begun, the stack left out."""
    for line in lines:
        m = STEP_STARTED.match(line)
        if m and m["type"] != "pulumi:pulumi:Stack":
            begun.setdefault(f"{m['type']} {m['name']}", None)


def interrupted_up(fx: Faults, sig: signal.Signals, label: str) -> Interrupted:
    """`pulumi up` sent `sig` when it begins a random step of those planned (SIGINT: what Ctrl-C
    sends the CLI; SIGKILL: a laptop that loses power, an OOM kill), so the fault lands inside the
    run whatever this machine's speed: the engine's preview first counts the steps, the seed picks
    the one (from 10 % to 90 % of them). SIGKILL goes to the CLI alone: its plugins (language host,
    providers) are orphaned as they are in real life."""
    run = fx.run
    # The CLI shows no line for a provider or the stack: they are not counted.
    planned = len([u for _, u in run.changes(f"{label}-preview") if "::pulumi:" not in u])
    at_step = max(1, round(fx.rng.uniform(0.1, 0.9) * planned))
    argv = e2e.pulumi_argv("up", "--yes", "--skip-preview")
    started = time.monotonic()
    # Output to a file: a pipe nobody reads while the run goes on would block the CLI once full.
    out_file = WS / f"{label}.out"
    with out_file.open("w") as handle:
        proc = subprocess.Popen(argv, cwd=WS, env=run.pulumi_env(), stdout=handle, stderr=subprocess.STDOUT)
    trigger, partial = "", ""
    begun: dict[str, None] = {}
    with out_file.open() as reader:  # read as it grows: each line once
        while proc.poll() is None:
            *lines, partial = (partial + reader.read()).split("\n")
            note_steps_started(lines, begun)
            if planned and len(begun) >= at_step:
                trigger = list(begun)[at_step - 1]
                ORPHANS.extend(descendants(proc.pid))
                proc.send_signal(sig)
                break
            if time.monotonic() - started > 900:
                proc.kill()
                raise StepError(f"`pulumi up` neither began step {at_step}/{planned} nor finished within 900 s")
            time.sleep(0.1)
    at_s = time.monotonic() - started
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise StepError(f"`pulumi up` did not stop within 600 s of {sig.name}") from exc
    seconds = time.monotonic() - started
    out = out_file.read_text()
    out_file.unlink()
    log = run.save(label, subprocess.CompletedProcess(argv, proc.returncode, out, ""))
    repaired = ""
    if sig == signal.SIGKILL and trigger:
        time.sleep(2)  # the orphaned plugins notice their parent is gone
        repaired = repair_cut_sidecars(fx)
    pending = [f"{p['type']} {urn_name(p['resource']['urn'])}" for p in pending_operations(fx)]
    return Interrupted(sig.name, at_step, planned, proc.returncode, at_s, trigger, seconds, pending, log, repaired)


SIDECAR_REPAIR = ["find", "<state>/.pulumi", "-type", "f", "-name", "*.attrs", "-empty", "-delete"]
"""docs/troubleshooting.md's command for a state a kill cut (`failed to load checkpoint: EOF`)."""


def project_name() -> str:
    """The project's name, from the workspace's Pulumi.yaml (the state's path and the field
    manager's name carry it)."""
    name: str = yaml.safe_load((WS / "Pulumi.yaml").read_text())["name"]
    return name


def repair_cut_sidecars(fx: Faults) -> str:
    """The file backend (gocloud.dev/blob/fileblob, writerWithSidecar.Close) writes a blob's
    metadata sidecar `<blob>.attrs` in place (os.Create, then the JSON) before it renames the new
    blob in, and reading a blob decodes its sidecar: a kill between the two leaves it empty, and
    every command on the stack fails with `failed to load checkpoint: EOF` (the stack file itself
    is the last complete checkpoint, the new one never renamed in). An empty sidecar is never
    valid; without one fileblob reads with defaults. So: if the kill cut one, check that the state
    is unreadable as users see it when it is the stack's, then type the documented repair.
    Returns what happened, or "" when nothing was cut."""
    state = WS / "state"
    cut = sorted(p.relative_to(state).as_posix() for p in (state / ".pulumi").rglob("*.attrs") if p.stat().st_size == 0)
    if not cut:
        return ""
    seen = ""
    if f".pulumi/stacks/{project_name()}/{e2e.STACK}.json.attrs" in cut:  # the stack's own checkpoint
        proc = fx.run.pulumi("stack", "export", label="export-cut-state", check=False)
        seen = " ".join((proc.stdout + proc.stderr).split())[-80:]
        if proc.returncode == 0 or "failed to load checkpoint" not in seen:
            raise StepError(
                f"the kill cut {cut} but the state still loads ({seen!r}): the repair is not what is needed"
            )
    argv = [str(state / ".pulumi") if a == "<state>/.pulumi" else a for a in SIDECAR_REPAIR]
    e2e.cmd(argv, "repair-cut-sidecars")
    return f"the kill cut {cut}{f' ({seen})' if seen else ''}: removed as troubleshooting.md says"


ORPHANS: list[tuple[int, bytes]] = []
"""Processes the killed CLI had started (pid, command line): its plugins outlive it, as they do
for a user; reaped (by pid, if still the same process) once the step is done."""


def descendants(pid: int) -> list[tuple[int, bytes]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            out.append((child, Path(f"/proc/{child}/cmdline").read_bytes()))
        except FileNotFoundError:
            continue
        todo += children.get(child, [])
    return out


def reap_orphans() -> int:
    reaped = 0
    for pid, cmdline in ORPHANS:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, signal.SIGKILL)
                reaped += 1
        except (FileNotFoundError, ProcessLookupError):
            pass
    ORPHANS.clear()
    return reaped


def pending_operations(fx: Faults) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = fx.run.export("export-pending")["deployment"].get("pending_operations") or []
    return ops


def locks() -> list[Path]:
    """The file backend's update locks (a killed CLI leaves its lock behind)."""
    return [p for p in (WS / "state" / ".pulumi" / "locks").rglob("*.json")]


def clear_after_kill(fx: Faults, label: str) -> list[str]:
    """What docs/troubleshooting.md has typed after a killed CLI, before the next `pulumi up`:
    `pulumi cancel` (the lock the killed CLI left; no other `pulumi` may run on the stack), then
    `pulumi refresh --clear-pending-creates` (reads back what the interrupted operations did and
    drops creates that cannot be read). Returns the commands as typed."""
    fx.run.pulumi("cancel", "--yes", label=f"{label}-cancel")
    fx.run.pulumi("refresh", "--yes", "--clear-pending-creates", label=f"{label}-refresh")
    return ["pulumi cancel --yes", "pulumi refresh --yes --clear-pending-creates"]


def recover(fx: Faults, label: str, *, killed: bool) -> list[str]:
    """The recovery docs/troubleshooting.md gives, exactly as typed there (plus the flags every CLI
    run here carries): after a kill clear_after_kill, then `pulumi up`; after a Ctrl-C `pulumi up`."""
    typed = clear_after_kill(fx, label) if killed else []
    fx.run.up(f"{label}-up")
    return [*typed, "pulumi up --yes"]


# --- what the state and the cluster say ----------------------------------------------------------


def resource_urns(export: dict[str, Any]) -> list[str]:
    """The stack's resources but its default providers (an engine detail the preview leaves out)."""
    return sorted(r["urn"] for r in export["deployment"]["resources"] if "::pulumi:providers:" not in r["urn"])


def field_manager_problems(export: dict[str, Any]) -> list[str]:
    """The stack's Kubernetes objects (every one in the state, patches by their object) not
    applied by exactly one Pulumi field manager, the stack's: `pulumi-<project>-<stack>` from the
    workspace's Pulumi.yaml and the stack name, read live from each object's managedFields. A
    create run twice (killed, then recovered) under two names leaves two, and the next change of
    a field they share fails with a server-side-apply conflict. Objects with more than one come
    first."""
    want = f"pulumi-{project_name()}-{e2e.STACK}"
    ids: dict[str, set[str]] = {}
    for r in export["deployment"]["resources"]:
        if not r["type"].startswith("kubernetes:") or "id" not in r:
            continue
        _, group_version, kind = r["type"].split(":")
        group, version = group_version.split("/")
        kind = kind.removesuffix("Patch")
        ids.setdefault(kind if group == "core" else f"{kind}.{version}.{group}", set()).add(r["id"])
    problems: list[str] = []
    for kind, wanted in sorted(ids.items()):
        # kubectl leaves managedFields out of its output unless asked.
        for obj in json.loads(kubectl("get", kind, "-A", "--show-managed-fields", "-o", "json").stdout)["items"]:
            meta = obj["metadata"]
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
            if name not in wanted:
                continue
            managers = sorted(
                {m["manager"] for m in meta.get("managedFields", []) if m["manager"].startswith("pulumi-")}
            )
            if len(managers) > 1:
                problems.insert(0, f"{kind} {name}: {len(managers)} managers {managers}")
            elif managers != [want]:
                problems.append(f"{kind} {name}: {managers}, not {want}")
    return problems


def plain_state(fx: Faults) -> dict[str, Any]:
    """The state with its secrets decrypted, held in memory only (never logged): the engine
    encrypts a secret afresh on each write, so ciphertexts differ where values do not."""
    return fx.run.export("plain-state", show_secrets=True)


def without_timestamps(export: dict[str, Any]) -> list[dict[str, Any]]:
    """The exported resources with the engine's bookkeeping times dropped (they change on every
    read) and the default providers left out, everything else (URN, ID, inputs, outputs,
    dependencies, protect) kept; dependency lists compared as sets (an `up` records them in the
    order the program registered them this time, which varies), empty ones left out."""
    out = []
    for r in export["deployment"]["resources"]:
        if "::pulumi:providers:" in r["urn"] and r["urn"].endswith("::default"):
            # A default provider's inputs are the stack's config of the last run: an `up` records
            # the config it ran with (here: step 3's pending change), outage or not.
            continue
        r = {k: v for k, v in r.items() if k not in ("created", "modified")}
        if "dependencies" in r:
            r["dependencies"] = sorted(r["dependencies"])
        # Empty entries carry nothing (a refresh writes them where an `up` left them out).
        deps = {k: sorted(v) for k, v in (r.pop("propertyDependencies", None) or {}).items() if v}
        if deps:
            r["propertyDependencies"] = deps
        out.append(r)
    return out


def state_diff(before: dict[str, Any], after: dict[str, Any], *, live_outputs: bool = False) -> list[str]:
    """What changed between two exports, ignoring timestamps: URNs gone, URNs new, URNs changed.
    `live_outputs`: a refresh against a cluster that answers reads each Kubernetes object's
    current status and metadata into its outputs (its job); those outputs are then left out."""

    def keyed(export: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for r in without_timestamps(export):
            if live_outputs and r["type"].startswith("kubernetes:"):
                r = {k: v for k, v in r.items() if k != "outputs"}
            out[r["urn"]] = r
        return out

    a, b = keyed(before), keyed(after)
    out = [f"dropped {urn_name(u)}" for u in sorted(set(a) - set(b))]
    out += [f"added {urn_name(u)}" for u in sorted(set(b) - set(a))]
    for u in sorted(set(a) & set(b)):
        if a[u] != b[u]:
            keys = sorted(k for k in set(a[u]) | set(b[u]) if a[u].get(k) != b[u].get(k))
            fields = [
                f"{k}.{f}"
                for k in keys
                if isinstance(a[u].get(k), dict) and isinstance(b[u].get(k), dict)
                for f in sorted(set(a[u][k]) | set(b[u][k]))
                if a[u][k].get(f) != b[u][k].get(f)
            ]
            # What the provider said of an object it read as not ready (not secret: its messages).
            why = f": {b[u]['initErrors']}" if "initErrors" in keys and b[u].get("initErrors") else ""
            out.append(f"changed {urn_name(u)} ({', '.join(fields or keys)}){why}")
    return out


def history_since(fx: Faults) -> list[dict[str, Any]]:
    """The updates (up/refresh/...) since fx.updates_before, newest first."""
    history = fx.run.history("history")
    return history[: len(history) - fx.updates_before]


def replaced_or_deleted(updates: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in updates:
        for op, n in (u.get("resourceChanges") or {}).items():
            if op in ("replace", "create-replacement", "delete-replaced", "delete") and n:
                counts[op] = counts.get(op, 0) + n
    return counts


def check_converged(fx: Faults, label: str) -> dict[str, Any]:
    """No pending operation, no lock, and the engine plans nothing: returns the export."""
    export = fx.run.export(f"export-{label}")
    pending = export["deployment"].get("pending_operations") or []
    if pending:
        names = [f"{p['type']} {urn_name(p['resource']['urn'])}" for p in pending]
        raise StepError(f"{label}: pending operations left in the state: {names}")
    if locks():
        raise StepError(f"{label}: a lock is left: {[str(p) for p in locks()]}")
    fx.run.pulumi("preview", "--expect-no-changes", label=f"preview-{label}")
    return export


def check_outputs(fx: Faults, label: str) -> None:
    """The stack outputs that echo the stack file, against the stack file."""
    rack = read_config()["config"]["homelab:rack"]
    outputs = json.loads(fx.run.pulumi("stack", "output", "--json", label=f"outputs-{label}").stdout)
    want = {
        "nodes": sorted(n["hostname"] for n in rack["nodes"]),
        "apps": sorted(a["name"] for a in rack["apps"]),
        "domain": rack["domain"],
    }
    got = {k: outputs.get(k) for k in want}
    if got != want:
        raise StepError(f"{label}: stack outputs {got}, the stack file says {want}")


def data_uids() -> dict[str, str]:
    """The uid of every PersistentVolume, PVC and StatefulSet holding data: a replaced one gets a
    new uid."""
    out = {
        f"pv/{pv['metadata']['name']}": pv["metadata"]["uid"] for pv in objects("persistentvolumes", namespaced=False)
    }
    for kind in ("persistentvolumeclaims", "statefulsets"):
        items = json.loads(kubectl("get", kind, "-n", DATA_NAMESPACE, "-o", "json").stdout)["items"]
        out.update({f"{kind}/{o['metadata']['name']}": o["metadata"]["uid"] for o in items})
    return out


def cluster_ok(version: str) -> None:
    nodes = rack_nodes()
    e2e.check_hosts(nodes, version)
    e2e.check_nodes(nodes)
    e2e.wait_for("workloads ready", e2e.rollout_problem)
    e2e.pod_placements()


# --- the control plane ----------------------------------------------------------------------------

CONTROL_PLANE = {
    "kube-apiserver": None,
    "kube-controller-manager": "https://127.0.0.1:10257/healthz",
    "kube-scheduler": "https://127.0.0.1:10259/healthz",
}
"""The lab's control-plane processes (lab-up's pid files) and their health endpoints (the API
server's is /readyz through kubectl). On a rack they are one process: "Operation of all Kubernetes
control plane components is encapsulated in a single binary and process" (k3s-io/k3s README), so
the API server of the bootstrap server going down or restarting is k3s going down or restarting
there, and the controllers go and come back with it. Stopping the API server alone would leave a
controller-manager that lived through the outage: its node lifecycle controller, which saw no
lease renewed for longer than the grace period, marks every node Unknown and its pods NotReady
once the API answers again, which a freshly started one never does (it takes "now" as the last
heartbeat of each node it first sees: pkg/controller/nodelifecycle/node_lifecycle_controller.go,
tryUpdateNodeHealth, k8s v1.31.14)."""


def stop_control_plane(sig: signal.Signals = signal.SIGTERM) -> dict[str, list[str]]:
    """Stop the lab's control plane (kube-apiserver, kube-controller-manager, kube-scheduler) with
    `sig` (SIGTERM: k3s restarted, the API server drains its requests; SIGKILL: the server loses
    power): returns each one's command line."""
    stopped, pids = {}, []
    for name in CONTROL_PLANE:
        pid = int((e2e.LAB_DIR / "run" / f"{name}.pid").read_text().split()[0])
        stopped[name] = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
        pids.append(pid)
    for pid in pids:
        os.kill(pid, sig)
    for pid in pids:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return stopped


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_control_plane(stopped: dict[str, list[str]]) -> None:
    """Start them again with the same command lines, recorded in the same pid files (lab-down
    stops them): the API server first, then the controllers once it is ready, as k3s does; wait
    until each is healthy."""

    def launch(name: str) -> None:
        argv = stopped[name]
        with open(e2e.LAB_DIR / "run" / f"{name}.log", "a") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        (e2e.LAB_DIR / "run" / f"{name}.pid").write_text(f"{proc.pid} {argv[0]}\n")

    def api_ready() -> str | None:
        probe = kubectl("get", "--raw", "/readyz", check=False)
        return None if probe.returncode == 0 else f"not ready: {probe.stderr.strip()[-200:]}"

    launch("kube-apiserver")
    e2e.wait_for("the API server back", api_ready, timeout_s=120)
    for name, url in CONTROL_PLANE.items():
        if url is None:
            continue
        launch(name)

        def healthy(url: str = url) -> str | None:
            try:
                with urllib.request.urlopen(url, context=ssl._create_unverified_context(), timeout=2) as r:
                    return None if r.status == 200 else f"HTTP {r.status}"
            except OSError as exc:
                return str(exc)

        e2e.wait_for(f"{name} back", healthy, timeout_s=120)


def settled() -> str | None:
    """What a refresh reads of the cluster is settled: every node Ready, every workload rolled out
    and ready, and every Service ready as pulumi-kubernetes reads one (pkg/await/service.go,
    serviceInitAwaiter.read: a Service with a selector needs Endpoints with a ready address and
    none not ready; a LoadBalancer an ingress address). A refresh taken before that records the
    Service's `initErrors`, and the next `up` waits on it. Returns the first problem, or None."""
    for node in objects("nodes", namespaced=False):
        if {c["type"]: c["status"] for c in node["status"].get("conditions", [])}.get("Ready") != "True":
            return f"node {node['metadata']['name']} is not Ready"
    problem = e2e.rollout_problem()
    if problem:
        return problem
    endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in objects("endpoints")}
    for svc in objects("services"):
        meta, spec = svc["metadata"], svc["spec"]
        name = f"{meta['namespace']}/{meta['name']}"
        if spec.get("type") == "LoadBalancer" and not (svc.get("status", {}).get("loadBalancer") or {}).get("ingress"):
            return f"service {name}: no load-balancer ingress"
        if not spec.get("selector") or spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
            continue
        subsets = endpoints.get((meta["namespace"], meta["name"]), {}).get("subsets") or []
        if not any(s.get("addresses") for s in subsets):
            return f"service {name}: no ready endpoint"
        waiting = [
            a.get("targetRef", {}).get("name", a.get("ip")) for s in subsets for a in s.get("notReadyAddresses", [])
        ]
        if waiting:
            return f"service {name}: endpoints not ready {waiting}"
    return None


# --- the steps -----------------------------------------------------------------------------------


def step1_bootstrap_interrupted(fx: Faults) -> str:
    run = fx.run
    preview = json.loads(run.pulumi("preview", "--json", label="preview-from-nothing").stdout)
    fx.reference = sorted(s["urn"] for s in preview["steps"] if "::pulumi:providers:" not in s["urn"])
    first = interrupted_up(fx, signal.SIGINT, "up-bootstrap-sigint")
    print(f"   bootstrap: {first.describe()}", flush=True)
    if first.pending and not first.finished_first:
        raise StepError(f"Ctrl-C left pending operations (a graceful cancel must not): {first.pending}")
    # The documented answer to Ctrl-C is `pulumi up` again: that run is killed in turn.
    second = interrupted_up(fx, signal.SIGKILL, "up-bootstrap-sigkill")
    print(f"   resumed bootstrap: {second.describe()}", flush=True)
    typed = [" ".join(SIDECAR_REPAIR)] if second.repaired else []
    typed += recover(fx, "recover-bootstrap", killed=not second.finished_first)
    export = check_converged(fx, "bootstrap")
    urns = resource_urns(export)
    if urns != fx.reference:
        missing = [urn_name(u) for u in sorted(set(fx.reference) - set(urns))]
        extra = [urn_name(u) for u in sorted(set(urns) - set(fx.reference))]
        raise StepError(f"after recovery the state differs from an uninterrupted run: missing {missing}, extra {extra}")
    starts = e2e.k3s_starts(rack_nodes())
    if set(starts.values()) != {1}:
        raise StepError(f"k3s installed/started more than once on a host: {starts}")
    changes = replaced_or_deleted(history_since(fx))
    if changes:
        raise StepError(f"the interrupted bootstrap and its recovery replaced or deleted resources: {changes}")
    cluster_ok(read_config()["config"]["homelab:rack"]["k3s"]["version"])
    check_outputs(fx, "bootstrap")
    managers = field_manager_problems(export)
    if managers:
        raise StepError(f"objects applied by more than the stack's one field manager: {managers[:5]}")
    return (
        f"{first.describe()}; then {second.describe()}; recovered with {' ; '.join(typed)}: "
        f"{len(urns)} resources = the preview from nothing, k3s started once on each of {len(starts)} hosts, "
        "nothing replaced, no pending operation or lock, preview --expect-no-changes, "
        "every Kubernetes object applied by the stack's one field manager"
    )


def step2_upgrade_interrupted(fx: Faults) -> str:
    run = fx.run
    fx.updates_before = len(run.history("history"))
    nodes = rack_nodes()
    urns = resource_urns(run.export("export-before-upgrade"))
    uids = data_uids()
    starts = e2e.k3s_starts(nodes)
    k3s = read_config()["config"]["homelab:rack"]["k3s"]
    e2e.make_airgap(Path(k3s["install"]["airgap-dir"]), e2e.K3S_VERSION_NEXT)
    e2e.edit_rack(lambda r: r["k3s"].update(version=e2e.K3S_VERSION_NEXT))
    first = interrupted_up(fx, signal.SIGKILL, "up-upgrade-sigkill")
    print(f"   upgrade: {first.describe()}", flush=True)
    # The recovery up is the one Ctrl-C'd; `pulumi up` again after that.
    typed = [" ".join(SIDECAR_REPAIR)] if first.repaired else []
    typed += [] if first.finished_first else clear_after_kill(fx, "recover-upgrade")
    second = interrupted_up(fx, signal.SIGINT, "up-upgrade-sigint")
    print(f"   resumed upgrade: {second.describe()}", flush=True)
    if second.pending and not second.finished_first:
        raise StepError(f"Ctrl-C left pending operations: {second.pending}")
    typed += recover(fx, "recover-upgrade", killed=False)
    export = check_converged(fx, "upgrade")
    if resource_urns(export) != urns:
        raise StepError(
            "the upgrade changed the set of resources: "
            + "; ".join(state_diff({"deployment": {"resources": [{"urn": u} for u in urns]}}, export)[:10])
        )
    after = e2e.k3s_starts(nodes)
    if after != {h: n + 1 for h, n in starts.items()}:
        raise StepError(f"each host must start k3s once for the upgrade: starts {starts} -> {after}")
    if data_uids() != uids:
        raise StepError(f"data objects were replaced: {sorted(k for k, v in data_uids().items() if uids.get(k) != v)}")
    changes = replaced_or_deleted(history_since(fx))
    if changes:
        raise StepError(f"the interrupted upgrade and its recovery replaced or deleted resources: {changes}")
    cluster_ok(e2e.K3S_VERSION_NEXT)
    e2e.check_upgraded_nodes(e2e.K3S_VERSION_NEXT)
    managers = field_manager_problems(export)
    if managers:
        raise StepError(f"objects applied by more than the stack's one field manager: {managers[:5]}")
    return (
        f"{first.describe()}; then {second.describe()}; recovered with {' ; '.join(typed)}: "
        f"every host upgraded to {e2e.K3S_VERSION_NEXT} with one k3s start, {len(uids)} data objects keep their uids, "
        f"{len(urns)} resources as before, nothing replaced, no pending operation or lock"
    )


def _failure_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    lines = (proc.stdout + proc.stderr).splitlines()
    return [" ".join(x.split()) for x in lines if "error" in x.lower() or "unreachable" in x.lower()]


def step3_api_server_down(fx: Faults) -> str:
    run = fx.run
    e2e.edit_rack(lambda r: next(a for a in r["apps"] if a["name"] == "web").update(image=e2e.NEW_IMAGE))
    before = plain_state(fx)
    stopped = stop_control_plane(signal.SIGKILL)
    results = {}
    try:
        for label, args in (
            ("preview", ["preview"]),
            ("up", ["up", "--yes", "--skip-preview"]),
            ("refresh", ["refresh", "--yes", "--skip-preview"]),
        ):
            started = time.monotonic()
            proc = run.pulumi(*args, label=f"api-down-{label}", check=False)
            named = [x for x in _failure_lines(proc) if API_DOWN_MESSAGE.search(x)]
            results[label] = (proc.returncode, round(time.monotonic() - started, 1), named[:1])
            after = plain_state(fx)
            diff = state_diff(before, after)
            if diff:
                raise StepError(f"`pulumi {label}` with the API server down changed the state: {diff[:10]}")
    finally:
        start_control_plane(stopped)
    for label in ("up", "refresh"):
        code, _, named = results[label]
        if code == 0 or not named:
            raise StepError(f"`pulumi {label}` with the API server down: exit {code}, names it: {named}")
    run.up("up-api-back")
    check_converged(fx, "api-back")
    e2e.wait_for("web on the new image, the cluster settled", settled)
    return (
        "; ".join(
            f"{label}: exit {code} in {s} s{' naming: ' + n[0][:110] if n else ', no error'}"
            for label, (code, s, n) in results.items()
        )
        + "; state unchanged after each (ignoring timestamps); up once it is back converges"
    )


def step4_agent_host_down(fx: Faults) -> str:
    run = fx.run
    # From a settled cluster: what the refreshes below read must differ only by the host.
    e2e.wait_for("the cluster settled before the host goes down", settled)
    before = plain_state(fx)
    e2e.lab_host("stop", HOST_DOWN)
    results = {}
    try:
        for label, args in (
            ("preview", ["preview", "--expect-no-changes"]),
            ("refresh", ["refresh", "--yes", "--skip-preview"]),
            ("up", ["up", "--yes", "--skip-preview", "--expect-no-changes"]),
        ):
            started = time.monotonic()
            proc = run.pulumi(*args, label=f"host-down-{label}", check=False)
            results[label] = (proc.returncode, round(time.monotonic() - started, 1))
            # Compared with the state before this command; the live status of the Kubernetes
            # objects (their outputs) is what a refresh reads, and an up records it as read.
            after = plain_state(fx)
            diff = state_diff(before, after, live_outputs=label != "preview")
            before = after
            if diff:
                raise StepError(f"`pulumi {label}` with {HOST_DOWN} down changed the state: {diff[:10]}")
            if proc.returncode != 0:
                raise StepError(
                    f"`pulumi {label}` with {HOST_DOWN} down, nothing to do there, failed: {_failure_lines(proc)[-3:]}"
                )
        # Something to do on that host: its SSH host key pinned (or unpinned), which changes the
        # connection of each of its commands, so the engine re-runs them there.
        address = next(n["address"] for n in rack_nodes() if n["hostname"] == HOST_DOWN)
        key = next(
            " ".join(line.split()[1:3])
            for line in Path(e2e.LAB_KNOWN_HOSTS).read_text().splitlines()
            if line.split()[:2] == [address, "ssh-ed25519"]
        )

        def pin(rack: dict[str, Any]) -> None:
            node = next(n for n in rack["nodes"] if n["hostname"] == HOST_DOWN)
            if node.pop("host-key", None) is None:
                node["host-key"] = key

        e2e.edit_rack(pin)
        proc = run.up("host-down-up-change", check=False)
        named = [x for x in _failure_lines(proc) if HOST_DOWN in x or address in x]
        results["up with a change there"] = (proc.returncode, 0.0)
        if proc.returncode == 0 or not named:
            raise StepError(
                f"`pulumi up` with a change on {HOST_DOWN} while it is down: exit {proc.returncode}, named: {named[:2]}"
            )
    finally:
        e2e.lab_host("start", HOST_DOWN)
    run.up("up-host-back")
    check_converged(fx, "host-back")
    return (
        f"{HOST_DOWN} down: "
        + ", ".join(f"{k} exit {c} ({s} s)" for k, (c, s) in results.items())
        + "; state unchanged by preview/refresh/up; "
        + f"the up with a change there names it ({named[0][:100]}); converges once back"
    )


def step5_api_server_restart(fx: Faults) -> str:
    run = fx.run

    def bump(rack: dict[str, Any]) -> None:
        for app in rack["apps"]:
            if app["name"] in RESTART_IMAGES:
                app["image"] = RESTART_IMAGES[app["name"]]

    e2e.edit_rack(bump)
    planned = run.changes("preview-restart")
    argv = e2e.pulumi_argv("up", "--yes", "--skip-preview")
    proc = subprocess.Popen(
        argv, cwd=WS, env=run.pulumi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "kubernetes:" in line and "updating" in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(timeout=300):
        proc.kill()
        raise StepError("the up never started updating a Kubernetes object")
    restart_at = time.monotonic()
    stopped = stop_control_plane()
    time.sleep(fx.rng.uniform(1, 5))
    start_control_plane(stopped)
    down_s = time.monotonic() - restart_at
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise StepError("the up did not finish within 600 s of the API server restart") from exc
    reader.join(timeout=10)
    out = "".join(lines)
    run.save("up-api-restart", subprocess.CompletedProcess(argv, proc.returncode, out, ""))
    if "Traceback" in out and proc.returncode == 0:
        raise StepError("the up completed but printed a traceback")
    pending = pending_operations(fx)
    if pending or locks():
        raise StepError(f"the run left pending operations {len(pending)} / locks {locks()}")
    why = (_failure_lines(subprocess.CompletedProcess(argv, 1, out, "")) or ["?"])[-1][:100]
    outcome = "completed" if proc.returncode == 0 else f"failed (exit {proc.returncode}: {why})"
    run.up("up-after-restart")
    check_converged(fx, "restart")
    e2e.wait_for("apps on the new images, the cluster settled", settled)
    images = {
        c["image"]
        for d in objects("deployments")
        if d["metadata"].get("labels", {}).get(e2e.WORKLOAD_LABEL) in RESTART_IMAGES
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    if not set(RESTART_IMAGES.values()) <= images:
        raise StepError(
            f"after the restart and the next up the apps run {images}, want {sorted(RESTART_IMAGES.values())}"
        )
    return (
        f"{len(planned)} updates planned; API server down {down_s:.1f} s while they ran: the up {outcome}, "
        "no pending operation or lock; the next up converged, images as configured"
    )


def reaping(fn: Callable[[Faults], str]) -> Callable[[Faults], str]:
    """A step after which the plugins its killed CLIs left (ORPHANS) are reaped, pass or fail."""

    def step(fx: Faults) -> str:
        try:
            return fn(fx)
        finally:
            reap_orphans()

    return step


STEPS = [
    ("F1 bootstrap interrupted (SIGINT, SIGKILL)", reaping(step1_bootstrap_interrupted)),
    ("F2 upgrade interrupted (SIGKILL, SIGINT)", reaping(step2_upgrade_interrupted)),
    ("F3 API server down: preview/up/refresh", reaping(step3_api_server_down)),
    ("F4 an agent's host down", reaping(step4_agent_host_down)),
    ("F5 API server restart mid-run", reaping(step5_api_server_restart)),
]


def main() -> int:
    seed = int(os.environ.get("HOMELAB_FAULTS_SEED") or secrets.randbits(32))
    print(f"e2e-faults: seed {seed} (HOMELAB_FAULTS_SEED={seed} repeats the kill points)", flush=True)
    run = e2e.Run()
    fx = Faults(run, random.Random(seed), seed)
    total = time.monotonic()
    e2e.setup_workspace(run)
    only = set(filter(None, os.environ.get("HOMELAB_FAULTS_STEPS", "").split(",")))
    results = e2e.run_steps(STEPS, fx, only)
    print(f"\nseed {seed}")
    e2e.print_summary(results, total)
    (WS / "summary.json").write_text(json.dumps({"seed": seed, "steps": results}, indent=2))
    return 1 if any(r["result"] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
