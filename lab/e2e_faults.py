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
3. the API server down, with a change to a Deployment pending: `pulumi up` and `pulumi refresh`
   fail naming the unreachable cluster and its address; `pulumi preview` plans the change (the
   provider diffs without the cluster) and exits 0; after each, the state is as it was
   (exported, decrypted, compared without timestamps: no resource dropped, pulumi-kubernetes
   #1485); the next `up` once it is back converges;
4. one agent's host down: `preview`, `refresh` and `up` with nothing to change there succeed and
   leave the state as it was (a refresh dials no host; it reads the Kubernetes objects' live
   status, which is all it changes); an `up` that must reach the host fails naming it (e2e
   step 6 tests that mid-upgrade);
5. the API server restarted while an `up` updates several Kubernetes objects: the run fails or
   completes, leaving no pending operation or lock, and the next `up` converges.

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
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    at_s: float
    finished_first: bool
    returncode: int
    seconds: float
    pending: list[str]
    log: Path

    def describe(self) -> str:
        if self.finished_first:
            return f"{self.signal} planned at {self.at_s:.1f} s: the run had finished (exit {self.returncode})"
        what = f"{len(self.pending)} pending ({', '.join(self.pending[:3])}{', ...' if len(self.pending) > 3 else ''})"
        return f"{self.signal} at {self.at_s:.1f} s -> exit {self.returncode} after {self.seconds:.1f} s, {what}"


def interrupted_up(fx: Faults, sig: signal.Signals, at_s: float, label: str) -> Interrupted:
    """`pulumi up` sent `sig` `at_s` seconds after it started (SIGINT: what Ctrl-C sends the
    CLI; SIGKILL: a laptop that loses power, an OOM kill). SIGKILL goes to the CLI alone: its
    plugins (language host, providers) are orphaned as they are in real life."""
    run = fx.run
    argv = e2e.pulumi_argv("up", "--yes", "--skip-preview")
    started = time.monotonic()
    # Output to a file: a pipe nobody reads while the run goes on would block the CLI once full.
    out_file = WS / f"{label}.out"
    with out_file.open("w") as handle:
        proc = subprocess.Popen(argv, cwd=WS, env=run.pulumi_env(), stdout=handle, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=at_s)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
        ORPHANS.extend(descendants(proc.pid))
        proc.send_signal(sig)
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise StepError(f"`pulumi up` did not stop within 600 s of {sig.name}") from exc
    seconds = time.monotonic() - started
    out = out_file.read_text()
    out_file.unlink()
    log = run.save(label, subprocess.CompletedProcess(argv, proc.returncode, out, ""))
    if sig == signal.SIGKILL and not finished:
        time.sleep(2)  # the orphaned plugins notice their parent is gone
    pending = [f"{p['type']} {urn_name(p['resource']['urn'])}" for p in pending_operations(fx)]
    return Interrupted(sig.name, at_s, finished, proc.returncode, seconds, pending, log)


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
            out.append(f"changed {urn_name(u)} ({', '.join(fields or keys)})")
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


# --- the API server ------------------------------------------------------------------------------


def apiserver_pidfile() -> Path:
    return e2e.LAB_DIR / "run" / "kube-apiserver.pid"


def stop_apiserver(sig: signal.Signals = signal.SIGTERM) -> list[str]:
    """Stop the lab's kube-apiserver (lab-up's process, its pid file) with `sig` (SIGTERM: a
    restart, the API server drains its requests; SIGKILL: the server loses power): returns its
    command line."""
    pid, _ = apiserver_pidfile().read_text().split()
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    os.kill(int(pid), sig)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.1)
    if _alive(int(pid)):
        os.kill(int(pid), signal.SIGKILL)
    return argv


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_apiserver(argv: list[str]) -> None:
    """Start it again with the same command line, recorded in the same pid file (lab-down stops
    it), and wait until it is ready."""
    with open(e2e.LAB_DIR / "run" / "kube-apiserver.log", "a") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    apiserver_pidfile().write_text(f"{proc.pid} {argv[0]}\n")

    def ready() -> str | None:
        probe = kubectl("get", "--raw", "/readyz", check=False)
        return None if probe.returncode == 0 else f"not ready: {probe.stderr.strip()[-200:]}"

    e2e.wait_for("the API server back", ready, timeout_s=120)


def kubelet_status_resync() -> str | None:
    """Play the kubelets' part after the API server was away: KWOK (the lab's stand-in for the
    kubelets) renews leases and node status again, but does not set back the pods' Ready
    condition that the node lifecycle controller turned False while the nodes were NotReady,
    which a kubelet's status sync does (its containers never stopped: ContainersReady stayed
    True). So: Ready := True on the Running pods of Ready nodes whose ContainersReady is True;
    then the rollout check. Returns its problem, or None."""
    ready_nodes = {
        n["metadata"]["name"]
        for n in objects("nodes", namespaced=False)
        if {c["type"]: c["status"] for c in n["status"].get("conditions", [])}.get("Ready") == "True"
    }
    for pod in objects("pods"):
        status = pod.get("status", {})
        conditions = status.get("conditions", [])
        kinds = {c["type"]: c["status"] for c in conditions}
        if (
            pod["spec"].get("nodeName") in ready_nodes
            and status.get("phase") == "Running"
            and kinds.get("Ready") == "False"
            and kinds.get("ContainersReady") == "True"
        ):
            index = [c["type"] for c in conditions].index("Ready")
            patch = json.dumps([{"op": "replace", "path": f"/status/conditions/{index}/status", "value": "True"}])
            meta = pod["metadata"]
            kubectl(
                "patch",
                "pod",
                meta["name"],
                "-n",
                meta["namespace"],
                "--subresource=status",
                "--type=json",
                "-p",
                patch,
            )
    return e2e.rollout_problem()


# --- the steps -----------------------------------------------------------------------------------


def step1_bootstrap_interrupted(fx: Faults) -> str:
    run = fx.run
    preview = json.loads(run.pulumi("preview", "--json", label="preview-from-nothing").stdout)
    fx.reference = sorted(s["urn"] for s in preview["steps"] if "::pulumi:providers:" not in s["urn"])
    first = interrupted_up(fx, signal.SIGINT, fx.rng.uniform(8, 30), "up-bootstrap-sigint")
    print(f"   bootstrap: {first.describe()}", flush=True)
    if first.pending and not first.finished_first:
        raise StepError(f"Ctrl-C left pending operations (a graceful cancel must not): {first.pending}")
    # The documented answer to Ctrl-C is `pulumi up` again: that run is killed in turn.
    second = interrupted_up(fx, signal.SIGKILL, fx.rng.uniform(8, 25), "up-bootstrap-sigkill")
    print(f"   resumed bootstrap: {second.describe()}", flush=True)
    typed = recover(fx, "recover-bootstrap", killed=not second.finished_first)
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
    return (
        f"{first.describe()}; then {second.describe()}; recovered with {' ; '.join(typed)}: "
        f"{len(urns)} resources = the preview from nothing, k3s started once on each of {len(starts)} hosts, "
        "nothing replaced, no pending operation or lock, preview --expect-no-changes"
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
    first = interrupted_up(fx, signal.SIGKILL, fx.rng.uniform(8, 25), "up-upgrade-sigkill")
    print(f"   upgrade: {first.describe()}", flush=True)
    # The recovery up is the one Ctrl-C'd; `pulumi up` again after that.
    typed = [] if first.finished_first else clear_after_kill(fx, "recover-upgrade")
    second = interrupted_up(fx, signal.SIGINT, fx.rng.uniform(5, 20), "up-upgrade-sigint")
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
    argv = stop_apiserver(signal.SIGKILL)
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
        start_apiserver(argv)
    for label in ("up", "refresh"):
        code, _, named = results[label]
        if code == 0 or not named:
            raise StepError(f"`pulumi {label}` with the API server down: exit {code}, names it: {named}")
    run.up("up-api-back")
    check_converged(fx, "api-back")
    e2e.wait_for("web on the new image, every workload ready", kubelet_status_resync)
    return (
        "; ".join(
            f"{label}: exit {code} in {s} s{' naming: ' + n[0][:110] if n else ', no error'}"
            for label, (code, s, n) in results.items()
        )
        + "; state unchanged after each (ignoring timestamps); up once it is back converges"
    )


def step4_agent_host_down(fx: Faults) -> str:
    run = fx.run
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
    argv_api = stop_apiserver()
    time.sleep(fx.rng.uniform(1, 5))
    start_apiserver(argv_api)
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
    e2e.wait_for("apps on the new images, every workload ready", kubelet_status_resync)
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
