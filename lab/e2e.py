"""`make e2e`: the seven steps of docs' lab (../shared/guide/lab.md) against a running lab.

The real Pulumi CLI, language host and providers (`make toolchain`) run `up`/`preview` of the
`lab` stack from a workspace (build/e2e: a copy of Pulumi.lab.yaml, its own file backend and a
random passphrase) against the lab of `make lab-up`: real sshd per host, a real API server,
scheduler and controllers, KWOK for node/pod status, the k3s double installed by the program's
air-gap path. Every claim below is checked against those real parts: SSH into the hosts, the API
server's objects, the engine's own diff (`preview --json`) and history.

lab/e2e.sh runs it between lab-up and lab-down (also after a failure). Exit 0 only when all
selected steps pass; a summary table (step, result, wall time, what was measured) ends the output and is
also written to build/e2e/summary.json. HOMELAB_E2E_STEPS=1,3,4 runs only those steps (by
number; each builds on the state the steps before it leave: step 1 bootstraps, step 4 removes the
agent step 3 adds).

    .venv/bin/python lab/e2e.py        (after `source build/lab/env.sh` and `. toolchain/env.sh`)
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The oracle of the checks below is the stack file plus the layout the README documents ("Pod
# layout by design") and ../shared/spec/rack-config.md: written out here as literals, never
# computed with the program's own functions (which would agree with the program by construction).
CLASS_LABEL = "rack.homelab.io/class"
ROLE_LABEL = "rack.homelab.io/role"
ARCH_LABEL = "rack.homelab.io/arch"
CATEGORY_LABEL = "rack.homelab.io/category"
WORKLOAD_LABEL = "app.kubernetes.io/name"
SERVER_TAINT = ("node-role.kubernetes.io/control-plane", "", "NoSchedule")
"""On every server: the control plane is kept free of workloads."""
EXPERIMENTAL_TAINT = ("rack.homelab.io/experimental", "true", "NoSchedule")
"""On every experimental node: only experiments tolerate it."""
ALLOWED = {
    "infrastructure": {"general", "reliable"},
    "application": {"general"},
    "data": {"reliable"},
    "experimental": {"experimental"},
}
"""Which node classes each workload category may run on."""

WS = ROOT / "build" / "e2e"
STACK = "lab"
STACK_FILE = WS / f"Pulumi.{STACK}.yaml"
LOGS = WS / "logs"
K3S_VERSION_NEXT = "v1.36.4+k3s1"  # a minor upgrade from Pulumi.lab.yaml's v1.35.8+k3s1
SPARE = {"hostname": "lab-gen-4", "address": "10.77.0.24"}
"""lab-up's spare host (HOMELAB_LAB_EXTRA_HOSTS default): up, but not in the stack."""
DOWN_HOST = "lab-gen-2"
"""The host step 6 takes down."""
NEW_IMAGE = "registry.lab.test/web:1.0.1"
NODE_LIST_UPDATES = {
    ("update", "metrics-store-scrape"),
    ("update", "metrics-store-netpol"),
    ("update", "gitea-runners-netpol"),
}
"""In-place updates that adding or removing a node legitimately causes besides the node's own
resources: the metrics store scrapes every node by address (static targets, labelled with the
node's class) and its NetworkPolicy allows exactly those addresses; the CI runners' egress allows
SSH to exactly the nodes (docs/gitea-ci.md)."""


class StepError(Exception):
    pass


def cmd(
    argv: list[Any], what: str, *, check: bool = True, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a lab command; a non-zero exit (with `check`) or a timeout fails the step with its stderr,
    so `main` still prints the summary and writes summary.json."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise StepError(f"{what}: no answer within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise StepError(f"{what}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"e2e: {name} is not set: source build/lab/env.sh (make lab-up) first")
    return value


LAB_KUBECTL = env("LAB_KUBECTL")
LAB_KUBECONFIG = env("LAB_KUBECONFIG")
LAB_SSH_KEY = env("LAB_SSH_KEY")
LAB_KNOWN_HOSTS = env("LAB_KNOWN_HOSTS")
LAB_DIR = Path(env("LAB_DIR"))


# --- the workspace and the CLI ----------------------------------------------------------------


def pulumi_argv(*args: str) -> list[str]:
    """The CLI on the lab stack, as every run here calls it."""
    return ["pulumi", *args, "--stack", STACK, "--non-interactive", "--color", "never"]


@dataclass
class Run:
    """What every command of the run printed, for the secret scan of step 5."""

    passphrase: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    outputs: list[Path] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    """When the run began: step 5 scans the machine's temp files written since."""

    def pulumi_env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["PULUMI_BACKEND_URL"] = f"file://{WS / 'state'}"
        e["PULUMI_CONFIG_PASSPHRASE"] = self.passphrase
        e.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        # The program must use the configured key (a secret), not the lab's ssh-agent.
        e.pop("SSH_AUTH_SOCK", None)
        # pulumi-kubernetes writes the provider's kubeconfig (the program's token) to
        # $TMPDIR/kubeconfig* on every configure and never removes it (provider/pkg/provider
        # provider.go, writeKubeconfigToFile in util.go): keep those copies in the workspace,
        # which the next run wipes, not in the machine's /tmp.
        e["TMPDIR"] = str(WS / "tmp")
        return e

    def save(self, label: str, proc: subprocess.CompletedProcess[str]) -> Path:
        path = LOGS / f"{len(self.outputs) + 1:02d}-{label}.log"
        path.write_text(f"$ {' '.join(map(str, proc.args))}\n# exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        self.outputs.append(path)
        return path

    def pulumi(
        self, *args: str, label: str, check: bool = True, stdin: str | None = None, shows_secrets: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI on the lab stack; its output is kept in LOGS (and scanned by step 5) unless
        it `shows_secrets` (the scan's control run), which is never written anywhere."""
        argv = pulumi_argv(*args)
        proc = subprocess.run(
            argv, cwd=WS, env=self.pulumi_env(), input=stdin, capture_output=True, text=True, timeout=1800
        )
        log = "not kept: it shows secrets" if shows_secrets else self.save(label, proc)
        if check and proc.returncode != 0:
            lines = [] if shows_secrets else (proc.stdout + proc.stderr).strip().splitlines()
            errors = list(dict.fromkeys(x.strip() for x in lines if "error" in x.lower() or x.strip().startswith("* ")))
            tail = "\n".join((errors or lines)[-12:])
            raise StepError(f"`pulumi {' '.join(args)}` exited {proc.returncode} (log {log}):\n{tail}")
        return proc

    def up(self, label: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.pulumi("up", "--yes", "--skip-preview", *extra, label=label, check=check)

    def changes(self, label: str) -> list[tuple[str, str]]:
        """The engine's own diff: (op, urn) of every step that is not `same`."""
        proc = self.pulumi("preview", "--json", label=label)
        return [(s["op"], s["urn"]) for s in json.loads(proc.stdout)["steps"] if s["op"] != "same"]

    def history(self, label: str) -> list[dict[str, Any]]:
        """The stack's updates (up/refresh/...), newest first."""
        updates: list[dict[str, Any]] = json.loads(self.pulumi("stack", "history", "--json", label=label).stdout)
        return updates

    def last_update(self, label: str) -> dict[str, int]:
        return {k: v for k, v in self.history(label)[0]["resourceChanges"].items() if v}

    def export(self, label: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """The state; with `show_secrets` decrypted, held in memory only (never logged)."""
        args = ("stack", "export", *(["--show-secrets"] if show_secrets else []))
        export: dict[str, Any] = json.loads(self.pulumi(*args, label=label, shows_secrets=show_secrets).stdout)
        return export


def setup_workspace(run: Run) -> None:
    """A fresh workspace whose Pulumi.yaml runs this checkout's program with its virtualenv; the
    repository's Pulumi.lab.yaml is never modified (the SSH key secret lands in the copy)."""
    if WS.exists():
        shutil.rmtree(WS)
    LOGS.mkdir(parents=True)
    (WS / "state").mkdir()
    (WS / "tmp").mkdir(mode=0o700)
    project = (ROOT / "Pulumi.yaml").read_text()
    project = project.replace("runtime:", f"main: {ROOT}\nruntime:", 1).replace(
        "virtualenv: .venv", f"virtualenv: {ROOT / '.venv'}"
    )
    (WS / "Pulumi.yaml").write_text(project)
    stack = yaml.safe_load((ROOT / "Pulumi.lab.yaml").read_text())
    rack = stack["config"]["homelab:rack"]
    airgap = ROOT / rack["k3s"]["install"]["airgap-dir"]
    rack["k3s"]["install"]["airgap-dir"] = str(airgap)
    make_airgap(airgap, rack["k3s"]["version"])
    STACK_FILE.write_text(yaml.safe_dump(stack, sort_keys=False))
    run.pulumi("stack", "init", label="stack-init")
    run.pulumi(
        "config",
        "set",
        "--secret",
        "homelab:ssh-private-key",
        label="config-ssh-key",
        stdin=Path(LAB_SSH_KEY).read_text(),
    )


def make_airgap(directory: Path, version: str) -> None:
    cmd([ROOT / "lab/k3s-double/make-airgap.sh", directory, version], f"make-airgap {version}", timeout=600)


def read_config() -> dict[str, Any]:
    return yaml.safe_load(STACK_FILE.read_text())


def edit_rack(change: Callable[[dict[str, Any]], None]) -> None:
    stack = read_config()
    change(stack["config"]["homelab:rack"])
    STACK_FILE.write_text(yaml.safe_dump(stack, sort_keys=False))


def rack_nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = read_config()["config"]["homelab:rack"]["nodes"]
    return nodes


# --- the lab's real parts -----------------------------------------------------------------------


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [LAB_KUBECTL, "--kubeconfig", LAB_KUBECONFIG, "--request-timeout=30s", *args]
    return cmd(argv, f"kubectl {' '.join(args)}", check=check)


def objects(kind: str, *, namespaced: bool = True) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        kubectl("get", kind, *(["-A"] if namespaced else []), "-o", "json").stdout
    )["items"]
    return items


def ssh(address: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cmd(
        [
            "ssh",
            "-i",
            LAB_SSH_KEY,
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={LAB_KNOWN_HOSTS}",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            # Raspberry Pi OS's user, as the program logs in; what the checks read is root's.
            f"pi@{address}",
            f"sudo -n bash -c {shlex.quote(command)}",
        ],
        f"ssh {address} {command!r}",
        check=check,
        timeout=60,
    )


def lab_host(verb: str, hostname: str) -> None:
    cmd([ROOT / "lab/lab-host.sh", verb, hostname], f"lab-host {verb} {hostname}")


def k3s_state(address: str) -> dict[str, str]:
    """What the k3s double on a host says about itself: installed version and number of starts."""
    out = ssh(
        address,
        "printf 'version=%s\\n' \"$(/usr/local/bin/k3s --version 2>/dev/null | awk 'NR==1{print $3}')\"; "
        "printf 'starts=%s\\n' \"$(cat /var/lib/rancher/k3s/double/starts 2>/dev/null | wc -l)\"; "
        "printf 'node=%s\\n' \"$(awk '$1==\"node-name:\"{print $2}' /etc/rancher/k3s/config.yaml 2>/dev/null)\"; "
        "printf 'etc=%s\\n' \"$(test -d /etc/rancher/k3s && echo yes || echo no)\"",
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def k3s_starts(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """How many times k3s was (re)started on each host: a step that must not touch a host leaves it."""
    return {n["hostname"]: int(k3s_state(n["address"])["starts"]) for n in nodes}


def foreign_changes(planned: list[tuple[str, str]], op: str, hostname: str) -> list[tuple[str, str]]:
    """The planned steps that are not `op` on one of `hostname`'s own resources, nor a known
    node-list update (NODE_LIST_UPDATES)."""
    return [
        (o, urn_name(u))
        for o, u in planned
        if not (o == op and hostname in urn_name(u)) and (o, urn_name(u)) not in NODE_LIST_UPDATES
    ]


def wait_for(what: str, check: Callable[[], str | None], timeout_s: float = 120) -> None:
    """Poll until check() returns None (ok); its last message is the failure."""
    deadline = time.monotonic() + timeout_s
    problem: str | None = "never checked"
    while time.monotonic() < deadline:
        problem = check()
        if problem is None:
            return
        time.sleep(1)
    raise StepError(f"{what}: {problem}")


# --- checks -------------------------------------------------------------------------------------


def check_nodes(config_nodes: list[dict[str, Any]]) -> list[str]:
    """Every configured node registered, Ready, with exactly the layout's labels and taints."""
    found = {n["metadata"]["name"]: n for n in objects("nodes", namespaced=False)}
    want = {n["hostname"] for n in config_nodes}
    if set(found) != want:
        raise StepError(f"nodes registered {sorted(found)}, config has {sorted(want)}")
    lines = []
    for n in config_nodes:
        node = found[n["hostname"]]
        cls, role, arch = n["class"], n["role"], n.get("arch", "arm64")
        labels = node["metadata"].get("labels", {})
        for key, value in {CLASS_LABEL: cls, ROLE_LABEL: role, ARCH_LABEL: arch}.items():
            if labels.get(key) != value:
                raise StepError(f"node {n['hostname']}: label {key}={labels.get(key)!r}, want {value!r}")
        taints = sorted(
            (t["key"], t.get("value", ""), t["effect"])
            for t in node["spec"].get("taints", [])
            if not t["key"].startswith("node.kubernetes.io/")
        )
        want_taints = sorted([SERVER_TAINT] * (role == "server") + [EXPERIMENTAL_TAINT] * (cls == "experimental"))
        if taints != want_taints:
            raise StepError(f"node {n['hostname']}: taints {taints}, want {want_taints}")
        ready = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}.get("Ready")
        if ready != "True":
            raise StepError(f"node {n['hostname']} is not Ready ({ready})")
        lines.append(f"{n['hostname']}: {cls} {role}, taints {[t[0] for t in taints] or '-'}")
    return lines


def check_hosts(config_nodes: list[dict[str, Any]], version: str) -> None:
    """k3s at `version`, installed for this very node, on each host (read over SSH)."""
    for n in config_nodes:
        state = k3s_state(n["address"])
        if state.get("version") != version or state.get("node") != n["hostname"]:
            raise StepError(f"host {n['hostname']}: k3s {state}, want {version} as {n['hostname']}")


def workloads() -> dict[str, dict[str, Any]]:
    out = {}
    for kind in ("deployments", "statefulsets", "daemonsets"):
        for w in objects(kind):
            out[f"{w['metadata']['namespace']}/{w['metadata']['name']}"] = w
    return out


def rollout_problem() -> str | None:
    for key, w in workloads().items():
        status = w.get("status", {})
        if w["kind"] == "DaemonSet":
            if status.get("numberReady", 0) != status.get("desiredNumberScheduled", -1):
                return f"{key}: {status.get('numberReady', 0)}/{status.get('desiredNumberScheduled')} ready"
            continue
        want = w["spec"].get("replicas", 1)
        if status.get("readyReplicas", 0) != want or status.get("updatedReplicas", 0) != want:
            return f"{key}: {status.get('readyReplicas', 0)}/{want} ready, {status.get('updatedReplicas', 0)} updated"
        if status.get("replicas", 0) != want:
            return f"{key}: {status.get('replicas')} pods for {want} replicas (old ones still terminating)"
    return None


def pod_placements() -> list[dict[str, str]]:
    """Every pod as the real scheduler bound it, checked against the layout's rules."""
    classes = {
        n["metadata"]["name"]: n["metadata"]["labels"].get(CLASS_LABEL, "?") for n in objects("nodes", namespaced=False)
    }
    rows = []
    for pod in objects("pods"):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        name = f"{meta['namespace']}/{meta['name']}"
        node = pod["spec"].get("nodeName")
        category = meta.get("labels", {}).get(CATEGORY_LABEL)
        if not node:
            raise StepError(f"pod {name} is not bound to a node")
        phase = pod["status"].get("phase")
        owners = {o["kind"] for o in meta.get("ownerReferences", [])}
        if not (phase == "Running" or (phase == "Succeeded" and "Job" in owners)):
            raise StepError(f"pod {name} on {node} is {phase}")
        if category is None:
            raise StepError(f"pod {name} has no {CATEGORY_LABEL} label")
        allowed = sorted(ALLOWED[category])
        if "DaemonSet" in owners:
            # A per-node agent (node-exporter) runs on every node by design, as the plan treats it.
            allowed = sorted(set(classes.values()))
        if classes.get(node) not in allowed:
            raise StepError(f"pod {name} ({category}) is on {node}, class {classes.get(node)}: allowed {allowed}")
        # The workload a pod belongs to, from its owner: a ReplicaSet's pods carry two generated
        # suffixes (<deployment>-<hash>-<id>), the others one (<statefulset>-<n>, <job>-<id>).
        suffixes = 2 if "ReplicaSet" in owners else 1
        rows.append(
            {
                "pod": name,
                "workload": f"{meta['namespace']}/{meta['name'].rsplit('-', suffixes)[0]}",
                "category": category,
                "node": node,
                "class": classes[node],
                "phase": phase,
                "per_node": "DaemonSet" in owners,
            }
        )
    return sorted(rows, key=lambda r: r["pod"])


def check_volumes(config_nodes: list[dict[str, Any]]) -> list[str]:
    pvs = objects("persistentvolumes", namespaced=False)
    if not pvs:
        raise StepError("no PersistentVolumes")
    hosts = {n["hostname"] for n in config_nodes}
    lines = []
    for pv in pvs:
        name = pv["metadata"]["name"]
        phase = pv["status"].get("phase")
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        pinned = [v for t in terms for e in t["matchExpressions"] for v in e["values"]]
        if phase != "Bound" or pv["spec"]["persistentVolumeReclaimPolicy"] != "Retain":
            raise StepError(f"PV {name}: {phase}, reclaim {pv['spec']['persistentVolumeReclaimPolicy']}")
        if not set(pinned) <= hosts:
            raise StepError(f"PV {name} pinned to {pinned}, not a rack node")
        claim = pv["spec"]["claimRef"]
        lines.append(
            f"{name} -> {claim['namespace']}/{claim['name']} on {','.join(pinned)} at {pv['spec']['local']['path']}"
        )
    return sorted(lines)


def plan_agreement(placements: list[dict[str, str]], config_nodes: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """The offline plan (`make plan`) against the real scheduler, per workload the plan places:
    the same number of pods, and the plan's nodes of a class the workload's category allows
    (classes read from the stack file; the scheduler's side is checked by pod_placements). Which
    allowed node a replica lands on may differ: the plan's tie-break between allowed nodes is not
    kube-scheduler's scoring (e.g. kube-state-metrics, infrastructure, on a general node in the
    plan and on the reliable one for the scheduler). Returns (pods on the predicted node, pods
    compared, the tie-break differences); anything else is a StepError."""
    out = WS / "plan.json"
    cmd([sys.executable, "-m", "plan", "--config", STACK_FILE, "--json", out], "make plan of the lab stack", cwd=ROOT)
    predicted: dict[str, Counter[str]] = {}
    for p in json.loads(out.read_text())["placements"]:
        predicted.setdefault(p["workload"], Counter())[p["node"]] += 1
    real: dict[str, Counter[str]] = {}
    for r in placements:
        real.setdefault(r["workload"], Counter())[r["node"]] += 1
    node_class = {n["hostname"]: n["class"] for n in config_nodes}
    category = {r["workload"]: r["category"] for r in placements}
    print("  offline plan vs real scheduler (nodes per workload):")
    wrong, ties = [], []
    for w in sorted(predicted):
        plan_nodes, real_nodes = predicted[w], real.get(w, Counter())
        print(f"    {w:<24} plan {dict(plan_nodes)}  real {dict(real_nodes)}")
        if plan_nodes.total() != real_nodes.total():
            wrong.append(f"{w}: the plan places {plan_nodes.total()} pods, the scheduler bound {real_nodes.total()}")
            continue
        allowed = ALLOWED.get(category.get(w, ""), set())
        if category.get(w) and not any(r["per_node"] for r in placements if r["workload"] == w):
            off = sorted({n for n in plan_nodes if node_class.get(n) not in allowed})
            if off:
                wrong.append(f"{w} ({category[w]}): the plan puts it on {off}, classes {sorted(allowed)} allowed")
        if plan_nodes != real_nodes:
            ties.append(f"{w}: plan {dict(plan_nodes)}, scheduler {dict(real_nodes)}")
    if wrong:
        raise StepError("the offline plan and the scheduler disagree:\n  " + "\n  ".join(wrong))
    agree = sum(sum((predicted[w] & real.get(w, Counter())).values()) for w in predicted)
    # Jobs' pods are not in the plan (it places long-running workloads only).
    return agree, sum(c.total() for w, c in real.items() if w in predicted), ties


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


# --- the six steps ------------------------------------------------------------------------------


@dataclass
class Context:
    run: Run
    report: dict[str, Any] = field(default_factory=dict)
    secret_values: dict[str, str] = field(default_factory=dict)
    """Step 5's secrets, for scanning the CLI output of the steps after it."""
    scanned_outputs: int = 0
    """How many of `run.outputs` step 5 scanned."""


def step1_converge(ctx: Context) -> str:
    run = ctx.run
    proc = run.up("up-from-nothing")
    changes = run.last_update("history-1")
    created = changes.get("create", 0)
    if set(changes) != {"create"}:
        raise StepError(f"a first up should only create, got {changes}")
    nodes = rack_nodes()
    version = read_config()["config"]["homelab:rack"]["k3s"]["version"]
    check_hosts(nodes, version)
    node_lines = check_nodes(nodes)
    wait_for("workloads ready", rollout_problem)
    placements = pod_placements()
    volumes = check_volumes(nodes)
    trusted = check_registry_and_trust(nodes, run)
    agree, total, ties = plan_agreement(placements, nodes)
    counted = Counter(r["node"] for r in placements if not r["per_node"])
    if counted.get(read_config()["config"]["homelab:rack"]["k3s"]["bootstrap-server"]):
        raise StepError("a pod other than a per-node agent landed on the control-plane node")
    for ds in objects("daemonsets"):
        if ds["status"].get("desiredNumberScheduled") != len(nodes):
            covered = ds["status"].get("desiredNumberScheduled")
            raise StepError(f"DaemonSet {ds['metadata']['name']} covers {covered} nodes of {len(nodes)}")
    ctx.report["created"] = created
    ctx.report["placements"] = placements
    print("  nodes:", *node_lines, sep="\n    ")
    print("  pods (bound by the real kube-scheduler):")
    for r in placements:
        print(f"    {r['pod']:<44} {r['category']:<15} -> {r['node']:<10} ({r['class']}, {r['phase']})")
    print("  pinned volumes:", *volumes, sep="\n    ")
    duration = re.search(r"Duration: (\S+)", proc.stdout)
    return (
        f"{created} resources created (engine: {duration.group(1) if duration else '?'}); "
        f"{len(nodes)} hosts bootstrapped; {len(placements)} pods placed, every one on an allowed class "
        f"(plan and scheduler agree on every workload's pod count and allowed classes; "
        f"{agree} of {total} pods on the very node, "
        f"{len(ties)} tie-break differences: {'; '.join(ties) or 'none'}); {len(volumes)} PVs bound; "
        f"{trusted}"
    )


REGISTRIES_YAML = "/etc/rancher/k3s/registries.yaml"
"""Where k3s reads its registry config (docs.k3s.io, Private Registry Configuration)."""
CONTAINERD_CA = "/etc/rancher/k3s/rack-ca.crt"
SYSTEM_CA = "/usr/local/share/ca-certificates/homelab-rack-ca.crt"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's local CA directory and the bundle update-ca-certificates builds from it."""
PULL_USER = "rack-puller"
"""The read-only pull account docs/images.md names."""


def check_registry_and_trust(config_nodes: list[dict[str, Any]], run: Run) -> str:
    """Every host holds registries.yaml for the rack's registry (`<gitea.host>.<domain>` of the
    stack file) with the pull account and the containerd CA file, mode 0600; the CA file is the
    stack's `rack_ca_certificate`; and the host's system trust store holds that CA (the file in
    Debian's local CA directory and its body in the bundle update-ca-certificates built)."""
    rack = read_config()["config"]["homelab:rack"]
    registry = f"{rack['gitea'].get('host', 'git')}.{rack['domain']}"
    ca = run.pulumi("stack", "output", "rack_ca_certificate", label="ca-output").stdout.strip()
    body = "".join(ca.splitlines()[1:-1])
    if not ca.startswith("-----BEGIN CERTIFICATE-----") or not body:
        raise StepError(f"the stack output rack_ca_certificate is no certificate: {ca[:60]!r}")
    for n in config_nodes:
        where = n["hostname"]
        mode = ssh(n["address"], f"stat -c %a {REGISTRIES_YAML}").stdout.strip()
        if mode != "600":
            raise StepError(f"{where}: {REGISTRIES_YAML} has mode {mode}, not 600 (it holds a password)")
        conf = yaml.safe_load(ssh(n["address"], f"cat {REGISTRIES_YAML}").stdout) or {}
        entry = (conf.get("configs") or {}).get(registry) or {}
        if (entry.get("auth") or {}).get("username") != PULL_USER or not (entry.get("auth") or {}).get("password"):
            raise StepError(f"{where}: {REGISTRIES_YAML} has no {PULL_USER} credentials for {registry}: {sorted(conf)}")
        if (entry.get("tls") or {}).get("ca_file") != CONTAINERD_CA:
            raise StepError(f"{where}: {REGISTRIES_YAML} does not name {CONTAINERD_CA} for {registry}")
        for path in (CONTAINERD_CA, SYSTEM_CA):
            if ssh(n["address"], f"cat {path}", check=False).stdout.strip() != ca:
                raise StepError(f"{where}: {path} is not the rack CA")
        bundle = "".join(ssh(n["address"], f"cat {SYSTEM_BUNDLE}").stdout.split())
        if body not in bundle:
            raise StepError(f"{where}: {SYSTEM_BUNDLE} lacks the rack CA: update-ca-certificates did not run")
    return f"{len(config_nodes)} hosts pull {registry} as {PULL_USER} with the rack CA and trust it system-wide"


def step2_idempotent(ctx: Context) -> str:
    run = ctx.run
    run.pulumi("preview", "--expect-no-changes", label="preview-no-changes")
    before = k3s_starts(rack_nodes())
    run.up("up-no-changes", "--expect-no-changes")
    changes = run.last_update("history-2")
    if set(changes) != {"same"}:
        raise StepError(f"second up changed something: {changes}")
    after = k3s_starts(rack_nodes())
    if before != after:
        raise StepError(f"second up restarted k3s: starts {before} -> {after}")
    return f"preview --expect-no-changes ok; up: {changes['same']} same, 0 changed; no k3s restarted"


def step3_one_change_one_effect(ctx: Context) -> str:
    run = ctx.run
    # (a) one app's image
    edit_rack(lambda r: next(a for a in r["apps"] if a["name"] == "web").update(image=NEW_IMAGE))
    planned = run.changes("preview-image-bump")
    if [(op, urn_name(u)) for op, u in planned] != [("update", "app-web-deployment")]:
        raise StepError(f"an image bump should update web's Deployment alone, the engine plans {planned}")
    run.up("up-image-bump")
    changes = run.last_update("history-3a")
    if changes.get("update") != 1 or set(changes) - {"update", "same"}:
        raise StepError(f"image bump: {changes}")

    def rolled() -> str | None:
        problem = rollout_problem()
        if problem:
            return problem
        images = {
            c["image"]
            for p in objects("pods")
            if p["metadata"].get("labels", {}).get(WORKLOAD_LABEL) == "web"
            and not p["metadata"].get("deletionTimestamp")
            for c in p["spec"]["containers"]
        }
        return None if images == {NEW_IMAGE} else f"web pods run {images}"

    wait_for("web rolled out to the new image", rolled)
    # (b) one more agent: the spare host
    starts = k3s_starts(rack_nodes())
    spare = {**SPARE, "role": "agent", "class": "general", "arch": "amd64", "capacity": {"cpu": "2", "memory": "4Gi"}}
    edit_rack(lambda r: r["nodes"].append(spare))
    planned = run.changes("preview-add-agent")
    strangers = foreign_changes(planned, "create", SPARE["hostname"])
    if not planned or strangers:
        raise StepError(f"adding {SPARE['hostname']} should create its own resources only; also planned: {strangers}")
    run.up("up-add-agent")
    added = run.last_update("history-3b")
    nodes = rack_nodes()
    check_hosts(
        [n for n in nodes if n["hostname"] == SPARE["hostname"]],
        read_config()["config"]["homelab:rack"]["k3s"]["version"],
    )
    check_nodes(nodes)
    after = k3s_starts([n for n in nodes if n["hostname"] in starts])
    if after != starts:
        raise StepError(f"adding an agent restarted k3s elsewhere: {starts} -> {after}")
    return (
        f"image bump: update 1 (app-web-deployment), {changes.get('same', 0)} same, rolled out; "
        f"add {SPARE['hostname']}: create {added.get('create', 0)} (all its own), "
        f"update {added.get('update', 0)} (node lists: metrics scrape targets, their NetworkPolicy, runners' egress), "
        f"{added.get('same', 0)} same, "
        "no other host restarted"
    )


def step4_remove_and_protect(ctx: Context) -> str:
    run = ctx.run
    gone = SPARE["hostname"]
    others = [n for n in rack_nodes() if n["hostname"] != gone]
    starts = k3s_starts(others)
    edit_rack(lambda r: r.update(nodes=[n for n in r["nodes"] if n["hostname"] != gone]))
    planned = run.changes("preview-remove-agent")
    strangers = foreign_changes(planned, "delete", gone)
    if not planned or strangers:
        raise StepError(f"removing {gone} should delete its own resources only; also planned: {strangers}")
    run.up("up-remove-agent")
    removed = run.last_update("history-4a")
    if kubectl("get", "node", gone, "--ignore-not-found", "-o", "name").stdout.strip():
        raise StepError(f"Node {gone} still exists")
    state = k3s_state(SPARE["address"])
    if state.get("version") or state.get("etc") != "no":
        raise StepError(f"k3s still installed on {gone}: {state}")
    after = k3s_starts(others)
    if after != starts:
        raise StepError(f"removing {gone} touched other hosts' k3s: {starts} -> {after}")
    check_nodes(others)

    # Protected data: removing redis from the config must not delete its data.
    pv = json.loads(kubectl("get", "pv", "data-redis", "-o", "json").stdout)
    node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    address = next(n["address"] for n in others if n["hostname"] == node)
    path = pv["spec"]["local"]["path"]
    marker = secrets.token_hex(8)
    ssh(address, f"echo {marker} > {path}/e2e-marker")
    saved = read_config()

    def drop_redis(rack: dict[str, Any]) -> None:
        del rack["databases"]["redis"]
        for app in rack["apps"]:
            app["uses"] = [u for u in app.get("uses", []) if u != "redis"]

    edit_rack(drop_redis)
    refused = run.up("up-delete-protected", check=False)
    text = refused.stdout + refused.stderr
    if refused.returncode == 0 or "protect" not in text:
        raise StepError(f"deleting the protected redis resources was not refused (exit {refused.returncode})")
    for kind, name in (("statefulset", "redis"), ("pvc", "data-redis"), ("pv", "data-redis")):
        namespaced = ["-n", "data"] if kind != "pv" else []
        if not kubectl("get", kind, name, *namespaced, "--ignore-not-found", "-o", "name").stdout.strip():
            raise StepError(f"{kind}/{name} was deleted although protected")
    protected = [
        r["urn"]
        for r in run.export("export-protected")["deployment"]["resources"]
        if r.get("protect") and "redis" in urn_name(r["urn"])
    ]
    if not protected:
        raise StepError("no protected redis resources in the state")
    for urn in protected:
        run.pulumi("state", "unprotect", urn, "--yes", label="unprotect")
    run.up("up-delete-unprotected")
    deleted = run.last_update("history-4b")
    if kubectl("get", "statefulset", "redis", "-n", "data", "--ignore-not-found", "-o", "name").stdout.strip():
        raise StepError("redis StatefulSet still exists after unprotect + up")
    if ssh(address, f"cat {path}/e2e-marker", check=False).stdout.strip() != marker:
        raise StepError(f"redis data directory {path} on {node} lost its contents")
    # Put it back: the same directory is pinned again, with the data in it.
    STACK_FILE.write_text(yaml.safe_dump(saved, sort_keys=False))
    run.up("up-restore-redis")
    wait_for("redis back", rollout_problem)
    pv = json.loads(kubectl("get", "pv", "data-redis", "-o", "json").stdout)
    node_now = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    path_now = pv["spec"]["local"]["path"]
    if (node_now, path_now) != (node, path):
        raise StepError(f"the restored PV data-redis is {node_now}:{path_now}, before it was {node}:{path}")
    address_now = next(n["address"] for n in others if n["hostname"] == node_now)
    if ssh(address_now, f"cat {path_now}/e2e-marker", check=False).stdout.strip() != marker:
        raise StepError(f"the restored redis volume {node_now}:{path_now} lost the marker written before")
    check_volumes(others)
    return (
        f"remove {gone}: delete {removed.get('delete', 0)} (all its own), update {removed.get('update', 0)}, "
        "Node gone, k3s uninstalled there only; "
        f"redis removal refused while protected ({len(protected)} protected resources kept); "
        f"after unprotect: delete {deleted.get('delete', 0)}, data dir kept; restored onto the same data"
    )


def _secret_values(run: Run) -> dict[str, str]:
    """Every secret the run handled, read from where it really lives."""
    values: dict[str, str] = {"config passphrase": run.passphrase}
    key_body = "".join(Path(LAB_SSH_KEY).read_text().splitlines()[1:-1])
    values["ssh private key (body)"] = key_body
    boot = next(n for n in rack_nodes() if n["role"] == "server")
    token = ssh(boot["address"], "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    values["k3s join token"] = token
    values["k3s token secret part"] = token.rsplit(":", 1)[-1]
    kubeconfig = yaml.safe_load(ssh(boot["address"], "cat /etc/rancher/k3s/k3s.yaml").stdout)
    user = kubeconfig["users"][0]["user"]
    values["kubeconfig client key (base64)"] = user["client-key-data"]
    values["kubeconfig client key (PEM body)"] = "".join(
        base64.b64decode(user["client-key-data"]).decode().splitlines()[1:-1]
    )
    for s in objects("secrets"):
        if s.get("type") == "kubernetes.io/service-account-token":
            continue
        for k, v in (s.get("data") or {}).items():
            plain = base64.b64decode(v).decode(errors="replace")
            if len(plain) >= 12:
                values[f"Secret {s['metadata']['namespace']}/{s['metadata']['name']}.{k}"] = plain
    return values


def _forms(value: str) -> Iterator[str]:
    yield value
    yield base64.b64encode(value.encode()).decode()


def _unwrapped(text: str) -> str:
    """Text with its line breaks removed, raw or JSON-escaped (once, or twice for a secret's JSON
    inside the state's JSON), so a PEM body (stored here joined) is found however a leak wrapped it."""
    return re.sub(r"\\+[nr]|[\r\n]", "", text)


def leaks_in(places: list[Path], values: dict[str, str]) -> tuple[list[str], int]:
    """(where each secret value appears, bytes scanned)."""
    leaks = []
    scanned = 0
    for path in places:
        data = path.read_bytes().decode(errors="replace")
        scanned += len(data)
        flat = _unwrapped(data)
        for label, value in values.items():
            if any(form in data or form in flat for form in _forms(value)):
                leaks.append(f"{label} in {path}")
    return leaks, scanned


def _shown_output(resource: dict[str, Any], key: str) -> str:
    """A string output of a resource in `stack export --show-secrets`, a secret one unwrapped
    ({"4dabf18193072939515e22adb298388d": ..., "plaintext": "<JSON>"})."""
    value = (resource.get("outputs") or {}).get(key) or ""
    if isinstance(value, dict):
        value = json.loads(value.get("plaintext", '""'))
    return str(value)


def _written_since(directory: Path, since: float) -> list[Path]:
    """The regular files directly in `directory` modified at or after `since` (under 8 MiB); one
    that vanishes while listed (another process's temp file) is skipped."""
    found = []
    for path in directory.iterdir():
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime >= since and st.st_size < 1 << 23:
            found.append(path)
    return found


def step5_no_plaintext_secrets(ctx: Context) -> str:
    run = ctx.run
    values = _secret_values(run)
    run.export("export-for-scan")
    run.pulumi("stack", "output", "--json", label="stack-output")
    shown = run.pulumi("stack", "export", "--show-secrets", label="control-show-secrets", shows_secrets=True)
    # Control: the scan finds secrets where they are really shown (so a leak could not hide),
    # the token as a string and the SSH key as a JSON-escaped PEM (the commands' connection).
    # The rack CA's and Traefik's certificate keys live in the state only (dynamic resources'
    # secret outputs), and so does the provider's token (a TokenRequest, never a Secret): read
    # them from the one place that shows them.
    for resource in json.loads(shown.stdout)["deployment"].get("resources", []):
        name = urn_name(resource["urn"])
        if name in ("rack-ca-ca", "rack-ca-serving"):
            pem = _shown_output(resource, "private_key_pem")
            values[f"{name} private key (PEM body)"] = "".join(pem.splitlines()[1:-1])
        if name.endswith("-kubeconfig") and resource["type"] == "command:remote:Command":
            kubeconfig = yaml.safe_load(_shown_output(resource, "stdout"))
            values["provider token (homelab-pulumi)"] = kubeconfig["users"][0]["user"]["token"]
    for label in (
        "k3s token secret part",
        "ssh private key (body)",
        "rack-ca-ca private key (PEM body)",
        "provider token (homelab-pulumi)",
    ):
        if not values.get(label) or values[label] not in _unwrapped(shown.stdout):
            raise StepError(f"control failed: `stack export --show-secrets` does not show the {label}")
    places: list[Path] = [*run.outputs]
    places += [p for p in (WS / "state").rglob("*") if p.is_file()]
    places += [p for p in (LAB_DIR / "run").glob("*.log")]
    places += [p for p in (LAB_DIR / "hosts").glob("*/*.log")]
    pulumi_home = Path(os.environ.get("PULUMI_HOME", ""))
    if pulumi_home.is_dir():
        places += (
            [p for p in (pulumi_home / "logs").rglob("*") if p.is_file()] if (pulumi_home / "logs").is_dir() else []
        )
    places += [STACK_FILE]
    # The machine's temp directory (pulumi-kubernetes writes its kubeconfig to $TMPDIR, which
    # the run points at its workspace): whatever landed there since the run began.
    machine_tmp = Path(tempfile.gettempdir())
    places += _written_since(machine_tmp, run.started)
    leaks, scanned = leaks_in(places, values)
    ctx.secret_values, ctx.scanned_outputs = values, len(run.outputs)
    if leaks:
        raise StepError("secrets in plaintext:\n  " + "\n  ".join(leaks))
    return (
        f"{len(values)} secret values (and their base64) absent from {len(places)} files "
        f"({scanned // 1024} KiB): state, CLI output, lab and sshd logs, {machine_tmp}'s new files"
    )


def rollout_order(config_nodes: list[dict[str, Any]], bootstrap: str) -> list[str]:
    """The order docs/operations.md gives for a k3s upgrade: the bootstrap server, the other
    servers by hostname, then the agents by hostname, `agents-at-once` (default 1) at a time."""
    servers = sorted(n["hostname"] for n in config_nodes if n["role"] == "server" and n["hostname"] != bootstrap)
    agents = sorted(n["hostname"] for n in config_nodes if n["role"] == "agent")
    return [bootstrap, *servers, *agents]


def upgrade_starts(address: str, version: str) -> list[float]:
    """When the k3s double on a host started at `version` (epoch seconds, its `starts` record)."""
    out = ssh(address, "cat /var/lib/rancher/k3s/double/starts 2>/dev/null", check=False).stdout
    return [float(line.split()[0]) for line in out.splitlines() if line.split()[1:] == [version]]


def check_upgraded_nodes(version: str) -> None:
    """Every Node Ready, reporting `version` as its kubelet, schedulable again, no rollout cordon."""
    for node in objects("nodes", namespaced=False):
        name = node["metadata"]["name"]
        kubelet = node["status"].get("nodeInfo", {}).get("kubeletVersion")
        annotations = node["metadata"].get("annotations", {})
        if kubelet != version:
            raise StepError(f"node {name} reports kubelet {kubelet}, want {version}")
        if node["spec"].get("unschedulable") or "rack.homelab.io/upgrade-cordon" in annotations:
            raise StepError(f"node {name} is still cordoned after the rollout")


def check_agent_tokens(config_nodes: list[dict[str, Any]], bootstrap: str) -> int:
    """No agent holds the server token (k3s docs, token: it unlocks the cluster CA and bootstrap
    data): no file under /etc/rancher or /var/lib/rancher of an agent has a server-format token or
    the server token's secret, and each agent's join token is an agent (`::node:`) token."""
    boot = next(n for n in config_nodes if n["hostname"] == bootstrap)
    server_token = ssh(boot["address"], "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    secret = server_token.rsplit("server:", 1)[-1]
    agents = [n for n in config_nodes if n["role"] == "agent"]
    for n in agents:
        held = ssh(n["address"], "grep -rlF -e '::server:' /etc/rancher /var/lib/rancher 2>/dev/null", check=False)
        if held.stdout.strip():
            raise StepError(f"agent {n['hostname']} holds a server token in {held.stdout.split()}")
        join_token = ssh(n["address"], "cat /etc/rancher/k3s/join-token").stdout
        config = ssh(n["address"], "cat /etc/rancher/k3s/config.yaml").stdout
        if secret and (secret in join_token or secret in config):
            raise StepError(f"agent {n['hostname']} holds the server token's secret")
        if "::node:" not in join_token:
            raise StepError(f"agent {n['hostname']} does not join with an agent token")
    return len(agents)


def up_with_outage(run: Run, label: str, reached: str, down: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`pulumi up`, and once the k3s on `reached` has started on K3S_VERSION_NEXT (the rollout got
    there), `down`'s host drops every incoming packet (an iptables rule in its network namespace)
    until the run has ended. Returns the run and when the outage began (s after the start)."""
    argv = pulumi_argv("up", "--yes", "--skip-preview")
    netns = f"hl-{next(n['hostname'] for n in rack_nodes() if n['address'] == down)}"
    drop = ["ip", "netns", "exec", netns, "iptables", "-w", "-I", "INPUT", "-j", "DROP"]
    started = time.monotonic()
    # Output to files: a pipe nobody reads while the run goes on would block the CLI once full.
    out_file, err_file = WS / f"{label}.stdout", WS / f"{label}.stderr"
    with out_file.open("w") as out_handle, err_file.open("w") as err_handle:
        proc = subprocess.Popen(argv, cwd=WS, env=run.pulumi_env(), stdout=out_handle, stderr=err_handle)
    try:
        while not upgrade_starts(reached, K3S_VERSION_NEXT):
            if proc.poll() is not None:
                raise StepError(f"the up ended (exit {proc.returncode}) before the rollout reached {reached}")
            if time.monotonic() - started > 600:
                raise StepError(f"the rollout did not reach {reached} within 600 s")
            time.sleep(0.3)
        cmd(drop, f"drop {netns}'s packets")
        outage_after_s = time.monotonic() - started
        proc.wait(timeout=900)
    except BaseException:  # a failed step, a timeout, Ctrl-C: the CLI does not outlive the step
        proc.kill()
        proc.wait()
        raise
    finally:
        # Whatever happened (the insert itself may have timed out after it took effect).
        restore = cmd([*drop[:6], "-D", "INPUT", "-j", "DROP"], f"restore {netns}", check=False)
    if restore.returncode != 0:  # the rule went in: the host would stay dark for the steps after
        raise StepError(f"the DROP rule in {netns} could not be removed: {restore.stderr.strip()[-300:]}")
    result = subprocess.CompletedProcess(argv, proc.returncode, out_file.read_text(), err_file.read_text())
    out_file.unlink()
    err_file.unlink()
    run.save(label, result)
    return result, outage_after_s


def step6_host_down(ctx: Context) -> str:
    """A k3s minor upgrade (Pulumi.lab.yaml's release -> K3S_VERSION_NEXT), gated node by node; one
    agent's host stops answering in the middle of the run, once the rollout has reached the host
    before it: the rollout stops there naming it; once the host is back the next `up` resumes with
    it and the agents after it, touching no one else."""
    run = ctx.run
    nodes = rack_nodes()
    down = next(n for n in nodes if n["hostname"] == DOWN_HOST)
    address = {n["hostname"]: n["address"] for n in nodes}
    k3s = read_config()["config"]["homelab:rack"]["k3s"]
    order = rollout_order(nodes, k3s["bootstrap-server"])
    pending = order[order.index(DOWN_HOST) :]
    """The hosts the failed run must not reach: the down host and the agents after it."""
    starts = k3s_starts(nodes)
    old = k3s["version"]
    airgap = Path(k3s["install"]["airgap-dir"])
    make_airgap(airgap, K3S_VERSION_NEXT)
    edit_rack(lambda r: r["k3s"].update(version=K3S_VERSION_NEXT))
    # The version bump as the engine plans it: in place, nothing replaced or deleted.
    bump = run.changes("preview-upgrade")
    destructive = [(op, urn_name(u)) for op, u in bump if op not in ("update", "same")]
    if not bump or destructive:
        raise StepError(f"the k3s version bump should only update in place; the engine also plans {destructive}")
    # The outage comes in the middle of the run: once the rollout has reached the host before
    # DOWN_HOST (its k3s started on the new version), every packet to DOWN_HOST is dropped, so
    # the run meets a host that stopped answering (no refusal, no reset), as a Pi that loses
    # power or network does.
    before_down = order[order.index(DOWN_HOST) - 1]
    failed, outage_after_s = up_with_outage(run, "up-host-down", address[before_down], address[DOWN_HOST])
    text = failed.stdout + failed.stderr
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    if failed.returncode == 0:
        raise StepError(f"the up succeeded with {DOWN_HOST} unreachable")
    if not any(DOWN_HOST in line or down["address"] in line for line in errors):
        raise StepError(f"the failure does not name {DOWN_HOST}:\n" + "\n".join(errors[-10:]))
    mid = k3s_starts(nodes)
    planned = run.changes("preview-host-back")
    strangers = [urn_name(u) for _, u in planned if not any(h in urn_name(u) for h in pending)]
    started = time.monotonic()
    run.up("up-host-back")
    resumed_s = time.monotonic() - started
    back = run.last_update("history-6")
    end = k3s_starts(nodes)
    check_hosts(nodes, K3S_VERSION_NEXT)
    check_nodes(nodes)
    check_upgraded_nodes(K3S_VERSION_NEXT)
    wait_for("workloads ready", rollout_problem)
    pod_placements()  # every pod still bound, Running, on an allowed class
    # Every host upgrades (one k3s start) exactly once: those before the down host in the failed
    # run, the down host and the agents after it only once it came back.
    want_mid = {h: n + (h not in pending) for h, n in starts.items()}
    want_end = {h: n + 1 for h, n in starts.items()}
    if mid != want_mid or end != want_end:
        raise StepError(f"k3s starts {starts} -> {mid} (failed run) -> {end} (after {DOWN_HOST} came back)")
    if strangers:
        raise StepError(f"after {DOWN_HOST} came back the engine also planned: {strangers}")
    # One at a time, in the documented order: each host's upgrade start after the one before it.
    when = [upgrade_starts(address[h], K3S_VERSION_NEXT)[-1] for h in order]
    if not all(a < b for a, b in itertools.pairwise(when)):
        raise StepError(f"the rollout did not go one host at a time in {order}: starts at {when}")
    agents = check_agent_tokens(nodes, k3s["bootstrap-server"])
    named = [line for line in errors if "failed" in line and DOWN_HOST in line] or [
        line for line in errors if DOWN_HOST in line or down["address"] in line
    ]
    error_line = " ".join(named[0].replace("*", "").split())
    # Step 5 ran before these runs (the failed one most likely to print a join command): scan them too.
    logs = run.outputs[ctx.scanned_outputs :]
    leaks, _ = leaks_in(logs, ctx.secret_values)
    if leaks:
        raise StepError("secrets in plaintext:\n  " + "\n  ".join(leaks))
    return (
        f"minor upgrade {old} -> {K3S_VERSION_NEXT}, previewed: {len(bump)} updates, nothing replaced or deleted; "
        f"{DOWN_HOST}'s packets dropped {outage_after_s:.0f} s into the up, once it reached {before_down}: "
        f"exit {failed.returncode}, error names it ({error_line[:140]}); "
        f"{len(order) - len(pending)} hosts upgraded before it in order {order}, {pending} after it came back "
        f"({sum(v for k, v in back.items() if k != 'same')} changes, {resumed_s:.1f} s, all theirs); "
        f"every Node Ready on {K3S_VERSION_NEXT}, uncordoned; one host at a time; "
        f"{agents} agents hold agent tokens only; its {len(logs)} CLI logs hold none of step 5's secrets"
    )


def step7_major_bump_refused(ctx: Context) -> str:
    """A PostgreSQL major-version bump is refused by `pulumi preview` and by `pulumi up`, before
    anything changes: the server's image and its data directory stay as they were."""
    run = ctx.run
    nodes = rack_nodes()
    pv = json.loads(kubectl("get", "pv", "data-postgres", "-o", "json").stdout)
    node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    address = next(n["address"] for n in nodes if n["hostname"] == node)
    path = pv["spec"]["local"]["path"]
    marker = secrets.token_hex(8)
    ssh(address, f"echo {marker} > {path}/e2e-major-marker")

    def server_image() -> str:
        sts = json.loads(kubectl("get", "statefulset", "postgres", "-n", "data", "-o", "json").stdout)
        return str(sts["spec"]["template"]["spec"]["containers"][0]["image"])

    image = server_image()
    saved = read_config()
    current = saved["config"]["homelab:rack"]["databases"]["postgres"]["version"]
    bumped = f"{int(current.split('.')[0]) + 1}.1"
    edit_rack(lambda r: r["databases"]["postgres"].update(version=bumped))
    want = f"rack.databases.postgres.version: {current} -> {bumped}"
    # The engine's own error line for the guard's check failure carries the message. When the
    # engine stops, the program's outstanding registrations fail and the SDK prints its shutdown
    # traceback ("resource monitor shut down"), as after any failed resource (step 6's run too);
    # that is the SDK's noise, not the refusal, so the check reads the error line.
    problem = f"'db-postgres-version': property version value {{{bumped}}} has a problem: {want}"
    for label, argv in (
        ("preview-major-bump", ["preview"]),
        ("up-major-bump", ["up", "--yes"]),
        ("up-major-bump-skip-preview", ["up", "--yes", "--skip-preview"]),
    ):
        refused = run.pulumi(*argv, label=label, check=False)
        text = refused.stdout + refused.stderr
        if refused.returncode == 0 or problem not in text:
            found = "found" if problem in text else "missing"
            command = " ".join(argv)
            raise StepError(f"`pulumi {command}`, postgres {current} -> {bumped}: exit {refused.returncode}, {found}")
    if server_image() != image:
        raise StepError(f"the refused bump changed postgres' image: {image} -> {server_image()}")
    if ssh(address, f"cat {path}/e2e-major-marker", check=False).stdout.strip() != marker:
        raise StepError(f"the refused bump touched postgres' data directory {node}:{path}")
    STACK_FILE.write_text(yaml.safe_dump(saved, sort_keys=False))
    after = run.changes("preview-after-refusal")
    if after:
        raise StepError(f"after the refusal the configured stack plans changes: {after}")
    return (
        f"postgres {current} -> {bumped} refused by preview, up and up --skip-preview, naming the key; "
        f"image ({image.rsplit('/', 1)[-1]}) and data directory {node}:{path} untouched; 0 changes after"
    )


STEPS: list[tuple[str, Callable[[Context], str]]] = [
    ("1 up from nothing converges", step1_converge),
    ("2 idempotent (preview + up, no changes)", step2_idempotent),
    ("3 one change touches one thing", step3_one_change_one_effect),
    ("4 remove agent; protected data refuses", step4_remove_and_protect),
    ("5 no secret in plaintext", step5_no_plaintext_secrets),
    ("6 outage mid-upgrade names the host; converges after", step6_host_down),
    ("7 a database major bump is refused", step7_major_bump_refused),
]


T = TypeVar("T")


def run_steps(
    steps: Sequence[tuple[str, Callable[[T], str]]], arg: T, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """Run the steps in order, each given `arg`, until one fails (the rest are "not run"); `only`:
    the steps to run, by the first word of their title (the others are "not selected"). Returns
    one result per step (step, result, seconds, detail)."""
    results: list[dict[str, Any]] = []
    failed = False
    for title, fn in steps:
        if failed or (only and title.split()[0] not in only):
            detail = "an earlier step failed" if failed else "not selected"
            results.append({"step": title, "result": "not run", "seconds": 0.0, "detail": detail})
            continue
        print(f"== step {title}", flush=True)
        started = time.monotonic()
        try:
            detail = fn(arg)
            result = "pass"
        except (StepError, subprocess.SubprocessError) as exc:  # a CLI timeout, too: the summary still prints
            detail = str(exc)
            result = "FAIL"
            failed = True
        seconds = time.monotonic() - started
        print(f"   {result} in {seconds:.1f} s: {detail}", flush=True)
        results.append({"step": title, "result": result, "seconds": round(seconds, 1), "detail": detail})
    return results


def print_summary(results: list[dict[str, Any]], started: float) -> None:
    """The summary table (step, result, wall time, the first line of what was measured)."""
    print("\n| step | result | wall s | measured |\n|---|---|---|---|")
    for r in results:
        first = r["detail"].splitlines()[0] if r["detail"] else ""
        print(f"| {r['step']} | {r['result']} | {r['seconds']:.1f} | {first} |")
    print(f"total {time.monotonic() - started:.1f} s; logs in {LOGS}")


def main() -> int:
    run = Run()
    ctx = Context(run)
    total = time.monotonic()
    setup_workspace(run)
    only = set(filter(None, os.environ.get("HOMELAB_E2E_STEPS", "").split(",")))
    results = run_steps(STEPS, ctx, only)
    print_summary(results, total)
    (WS / "summary.json").write_text(
        json.dumps(
            {"steps": results, "created": ctx.report.get("created"), "placements": ctx.report.get("placements")},
            indent=2,
        )
    )
    return 1 if any(r["result"] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
