"""`make bench`: the offline plan on synthetic racks of growing size, against the SDK's floor.

For each size, in a fresh process (so peak memory and import costs are per run): generate a
valid rack, run the whole plan (load -> composition under mocks -> schedule), and measure wall
time, CPU time, peak RSS, resources registered and replicas placed. The floor is a minimal
program that registers the same number of resources (ConfigMaps) under the same recording mocks
(`plan.engine.run_program`, the same harness settings), in the same kind of fresh process. A
benchmark, not a test: nothing here gates CI.

On a shared machine, `--repeat N` runs every plan and floor N times, interleaved, and keeps each
one's fastest run; the load average is printed with the table. CPU seconds are the child's own
(user + system), less disturbed by other processes than wall time.

The replay is the SDK's cost of this plan's own registrations: the plan's recording (inputs
with every secret already redacted, so no secret reaches the file) is registered again by a bare
program (`pulumi.CustomResource`/`ComponentResource`/`ProviderResource` of the recorded types,
names, parents, dependencies, providers and options, each redacted secret re-marked secret), in
a fresh process under the same harness. The "x replay" column is therefore what the program
itself adds (imports, config, composition, scheduler, its Outputs) over what the SDK costs for
these exact resources; "x floor" compares with as many small ConfigMaps instead.

`--kinds` measures what one resource of each kind costs the SDK under the same harness (the
floor's ConfigMap against the Service, NetworkPolicy and Deployment the apps layer renders, and a
bare component), which is why a plan of real manifests sits above a floor of small ConfigMaps.

    python -m bench.bench [--sizes 10x50,50x250,200x1000] [--repeat 3] [--json build/bench.json]
    python -m bench.bench --kinds [--count 500]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = "10x50,20x100,50x250,200x1000"


def synthetic_rack(nodes: int, apps: int) -> dict[str, Any]:
    """A valid rack: 1 server, then agents 70% general / 15% reliable / 15% experimental
    (at least one of each), databases on the first reliable node, apps mostly application
    with one in ten experimental, replicas 1-3, every node big enough that all of it fits."""
    agents = nodes - 1
    reliable = max(1, agents * 15 // 100)
    experimental = max(1, agents * 15 // 100)
    general = agents - reliable - experimental
    node_list: list[dict[str, Any]] = [
        {
            "hostname": "cp-1",
            "address": "192.168.0.10",
            "role": "server",
            "class": "control-plane",
            "capacity": {"cpu": "4", "memory": "8Gi"},
        }
    ]
    classes = ["general"] * general + ["reliable"] * reliable + ["experimental"] * experimental
    for i, cls in enumerate(classes):
        node: dict[str, Any] = {
            "hostname": f"{cls[:3]}-{i}",
            "address": f"192.168.{1 + i // 250}.{1 + i % 250}",
            "role": "agent",
            "class": cls,
            "capacity": {"cpu": "16", "memory": "64Gi"},
        }
        if cls == "reliable":
            node["storage"] = {"path": "/mnt/ssd", "size": "2Ti"}
        node_list.append(node)
    db_node = next(n["hostname"] for n in node_list if n["class"] == "reliable")
    app_list = []
    for i in range(apps):
        experimental_app = i % 10 == 9
        app_list.append(
            {
                "name": f"app-{i}",
                "category": "experimental" if experimental_app else "application",
                "image": f"registry.example/app-{i}:1.0.{i}",
                "replicas": 1 if experimental_app else 1 + i % 3,
                "port": 8080,
                "cpu": "50m",
                "memory": "64Mi",
                "uses": ["postgres"] if i % 2 == 0 else ["redis"],
            }
        )
    return {
        "domain": "bench.example",
        "k3s": {"version": "v1.36.4+k3s1"},
        "nodes": node_list,
        "ingress": {"address": node_list[1]["address"]},
        "databases": {
            "postgres": {"version": "16.6", "node": db_node, "size": "30Gi"},
            "redis": {"version": "7.4.1", "node": db_node, "size": "2Gi"},
        },
        "apps": app_list,
    }


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_plan(nodes: int, apps: int, stack_file: str | None, dump: Path | None = None) -> dict[str, Any]:
    """One measurement, in this process (called in a child). With `dump`, the registrations are
    written there afterwards (redacted inputs only) for `run_replay`."""
    t0, cpu0 = time.perf_counter(), _cpu_s()
    from plan.result import make_plan
    from rack.config import parse_rack
    from rack.loader import Loaded, RackSecrets, StackFile

    t_import = time.perf_counter()
    if stack_file:
        loaded = StackFile.read(Path(stack_file)).load()
    else:
        loaded = Loaded(parse_rack(synthetic_rack(nodes, apps)), RackSecrets())
    t_load = time.perf_counter()
    result = make_plan(loaded, "bench", one_shot=True)
    t_done = time.perf_counter()
    measured = {
        "nodes": len(loaded.rack.nodes),
        "apps": len(loaded.rack.apps),
        "resources": len(result.recording),
        "replicas": sum(1 for p in result.sched.placements if p.node),
        "errors": len(result.errors),
        "wall_s": t_done - t0,
        "cpu_s": _cpu_s() - cpu0,
        "import_s": t_import - t0,
        "load_s": t_load - t_import,
        "plan_s": t_done - t_load,
        "schedule_s": result.timings.get("schedule", 0.0),
        "peak_mib": _peak_mib(),
    }
    if dump is not None:  # after measuring: the dump's CPU time and memory are not the plan's
        dump.write_text(json.dumps([_replayable(r) for r in result.recording]))
    return measured


def run_floor(count: int) -> dict[str, Any]:
    """The SDK floor: `count` ConfigMaps registered under the same recording mocks."""
    t0, cpu0 = time.perf_counter(), _cpu_s()
    import pulumi
    import pulumi_kubernetes as k8s

    from plan.engine import run_program

    t_import = time.perf_counter()

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="unused")
        opts = pulumi.ResourceOptions(provider=provider)
        for i in range(count - 1):
            k8s.core.v1.ConfigMap(f"cm-{i}", metadata={"name": f"cm-{i}", "namespace": "x"}, data={"k": "v"}, opts=opts)

    recording = run_program(program, stack="floor", one_shot=True)
    t_done = time.perf_counter()
    return {
        "resources": len(recording),
        "wall_s": t_done - t0,
        "cpu_s": _cpu_s() - cpu0,
        "import_s": t_import - t0,
        "register_s": t_done - t_import,
        "peak_mib": _peak_mib(),
    }


def _replayable(reg: Any) -> dict[str, Any]:
    """What `run_replay` needs of one registration; inputs are the redacted copy."""
    keys = ("urn", "type", "name", "parent", "custom", "provider", "protect", "retain_on_delete", "depends_on")
    return {**{k: getattr(reg, k) for k in keys}, "aso": reg.additional_secret_outputs, "inputs": reg.redacted}


def run_replay(path: Path) -> dict[str, Any]:
    """The SDK's cost of a plan's own registrations: each recorded registration made again by a
    bare program, in recorded order (a parent, dependency or provider always registers before the
    resources that name it), under the same harness. Reading the file is not counted."""
    t0, cpu0 = time.perf_counter(), _cpu_s()
    import pulumi

    from plan.engine import REDACTED, run_program

    t_import = time.perf_counter()
    read0, read_cpu0 = time.perf_counter(), _cpu_s()
    regs = json.loads(path.read_text())
    read_s, read_cpu_s = time.perf_counter() - read0, _cpu_s() - read_cpu0

    def marked(value: Any) -> Any:
        if value == REDACTED:
            return pulumi.Output.secret(REDACTED)
        if isinstance(value, dict):
            return {k: marked(v) for k, v in value.items()}
        if isinstance(value, list):
            return [marked(v) for v in value]
        return value

    # Subclasses with their own __init__, as every real resource class has: the SDK takes a
    # registration's stack trace from the frames below the third `__init__` (Resource, Custom or
    # Component, the concrete class) and sends none for a bare `pulumi.CustomResource(...)`.
    class Custom(pulumi.CustomResource):
        def __init__(self, t: str, name: str, props: Any, opts: pulumi.ResourceOptions) -> None:
            super().__init__(t, name, props, opts)

    class Provider(pulumi.ProviderResource):
        def __init__(self, pkg: str, name: str, props: Any, opts: pulumi.ResourceOptions) -> None:
            super().__init__(pkg, name, props, opts)

    class Component(pulumi.ComponentResource):
        def __init__(self, t: str, name: str, opts: pulumi.ResourceOptions) -> None:
            super().__init__(t, name, None, opts)
            self.register_outputs({})

    def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for r in regs:
            opts = pulumi.ResourceOptions(
                parent=made.get(r["parent"]),
                depends_on=[made[urn] for urn in r["depends_on"]],
                provider=made.get(r["provider"].rsplit("::", 1)[0]) if r["provider"] else None,  # type: ignore[arg-type]
                protect=r["protect"] or None,
                retain_on_delete=r["retain_on_delete"] or None,
                additional_secret_outputs=r["aso"] or None,
            )
            if not r["custom"]:
                made[r["urn"]] = Component(r["type"], r["name"], opts)
            elif r["type"].startswith("pulumi:providers:"):
                made[r["urn"]] = Provider(r["type"].split(":", 2)[2], r["name"], marked(r["inputs"]), opts)
            else:
                made[r["urn"]] = Custom(r["type"], r["name"], marked(r["inputs"]), opts)

    recording = run_program(program, stack="bench", one_shot=True)
    t_done = time.perf_counter()
    return {
        "resources": len(recording),
        "same_urns": sorted(r.urn for r in recording) == sorted(r["urn"] for r in regs),
        "wall_s": t_done - t0 - read_s,
        "cpu_s": _cpu_s() - cpu0 - read_cpu_s,
        "import_s": t_import - t0,
        "peak_mib": _peak_mib(),
    }


KINDS = ("ConfigMap", "Service", "NetworkPolicy", "Deployment", "component")


def run_kind(kind: str, count: int) -> dict[str, Any]:
    """CPU seconds per resource of one kind, `count` of them registered under the same harness
    (imports and the provider outside the measured part)."""
    import pulumi
    import pulumi_kubernetes as k8s

    from components.apps.app_workload import render_deployment, render_network_policy, render_service
    from plan.engine import run_program
    from rack.config import parse_rack
    from rack.endpoints import ServiceEndpoint

    rack = parse_rack(synthetic_rack(3, 2))
    app = rack.apps[0]
    db = ServiceEndpoint(
        name="postgres",
        kind="postgres",
        namespace="data",
        service="postgres",
        port=5432,
        pod_labels={"app": "postgres"},
        database=app.name,
        user=app.name,
    )
    dep = render_deployment(app, namespace="apps", failover_seconds=60, env=[{"name": "X_HOST", "value": db.host}])
    pol = render_network_policy(app, namespace="apps", endpoints=[db])
    svc = render_service(app, namespace="apps")
    classes = (k8s.core.v1.ConfigMap, k8s.core.v1.Service, k8s.networking.v1.NetworkPolicy, k8s.apps.v1.Deployment)

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="unused")
        opts = pulumi.ResourceOptions(provider=provider)
        for i in range(count):
            if kind == "ConfigMap":
                classes[0](f"r-{i}", metadata={"name": f"r-{i}", "namespace": "x"}, data={"k": "v"}, opts=opts)
            elif kind == "Service":
                classes[1](f"r-{i}", metadata=svc["metadata"], spec=svc["spec"], opts=opts)
            elif kind == "NetworkPolicy":
                classes[2](f"r-{i}", metadata=pol["metadata"], spec=pol["spec"], opts=opts)
            elif kind == "Deployment":
                classes[3](f"r-{i}", metadata=dep["metadata"], spec=dep["spec"], opts=opts)
            else:
                pulumi.ComponentResource("homelab:bench:Component", f"r-{i}", None, None)

    run_program(lambda: None, stack="warm")  # the runtime's first-run costs stay out
    cpu0 = _cpu_s()
    recording = run_program(program, stack="kinds", one_shot=True)
    return {"kind": kind, "resources": len(recording), "cpu_ms_per_resource": (_cpu_s() - cpu0) / count * 1000}


def child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "cpu_s": min(r["cpu_s"] for r in runs), "runs": len(runs)}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--repeat", type=int, default=1, help="runs per plan and floor; the fastest counts")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--kinds", action="store_true", help="SDK cost per resource kind, then exit")
    parser.add_argument("--count", type=int, default=500, help="resources per kind for --kinds")
    parser.add_argument("--child-plan", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-stack", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-floor", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-dump", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-replay", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-kind", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_plan is not None:
        print(json.dumps(run_plan(args.child_plan[0], args.child_plan[1], args.child_stack, args.child_dump)))
        return 0
    if args.child_replay is not None:
        print(json.dumps(run_replay(args.child_replay)))
        return 0
    if args.child_floor is not None:
        print(json.dumps(run_floor(args.child_floor)))
        return 0
    if args.child_kind is not None:
        print(json.dumps(run_kind(args.child_kind, args.count)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.kinds:
        kinds = Table(title=f"SDK cost per resource kind under the plan's harness ({args.count} each, CPU)")
        kinds.add_column("kind")
        kinds.add_column("ms/resource", justify="right")
        kinds.add_column("× ConfigMap", justify="right")
        with console.status("measuring kinds…"):
            measured = [child(["--child-kind", kind, "--count", str(args.count)]) for kind in KINDS]
        base = measured[0]["cpu_ms_per_resource"]
        for m in measured:
            kinds.add_row(m["kind"], f"{m['cpu_ms_per_resource']:.2f}", f"{m['cpu_ms_per_resource'] / base:.2f}")
        console.print(kinds)
        console.print(f"load average: {_load()}")
        return 0

    rows = []
    load_before = _load()
    homelab = ["--child-plan", "0", "0", "--child-stack", "Pulumi.homelab.yaml"]
    cases: list[tuple[str, list[str]]] = [("homelab", homelab)]
    for size in args.sizes.split(","):
        n, a = size.split("x")
        cases.append((f"{n}/{a}", ["--child-plan", n, a]))
    with console.status("benchmarking…"), tempfile.TemporaryDirectory(prefix="hl-bench-") as tmp:
        for label, case in cases:
            dump = Path(tmp) / "registrations.json"
            plans, floors, replays = [], [], []
            for i in range(max(1, args.repeat)):
                plans.append(child(case + (["--child-dump", str(dump)] if i == 0 else [])))
                floors.append(child(["--child-floor", str(plans[-1]["resources"])]))
                replays.append(child(["--child-replay", str(dump)]))
                if not replays[-1]["same_urns"]:
                    raise SystemExit(f"{label}: the replay registered other URNs than the plan")
            plan, floor, replay = _fastest(plans), _fastest(floors), _fastest(replays)
            rows.append(
                {
                    "case": label,
                    **plan,
                    "floor_s": floor["wall_s"],
                    "floor_cpu_s": floor["cpu_s"],
                    "floor_register_s": floor["register_s"],
                    "replay_s": replay["wall_s"],
                    "replay_cpu_s": replay["cpu_s"],
                }
            )
    load_after = _load()
    title = "make bench: the offline plan vs the SDK floor (fresh process each"
    title += f", fastest of {args.repeat})" if args.repeat > 1 else ")"
    table = Table(title=title)
    columns = (
        "rack", "nodes", "apps", "resources", "replicas", "wall s", "cpu s", "import s", "schedule ms",
        "peak MiB", "ms/resource", "ms/replica", "µs/replica (sched)", "floor s", "× floor", "× floor (cpu)",
        "replay s", "× replay",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        r["load_before"], r["load_after"] = load_before, load_after
        table.add_row(
            r["case"],
            str(r["nodes"]),
            str(r["apps"]),
            str(r["resources"]),
            str(r["replicas"]),
            f"{r['wall_s']:.2f}",
            f"{r['cpu_s']:.2f}",
            f"{r['import_s']:.2f}",
            f"{r['schedule_s'] * 1000:.1f}",
            f"{r['peak_mib']:.0f}",
            f"{r['wall_s'] / r['resources'] * 1000:.2f}",
            f"{r['wall_s'] / max(r['replicas'], 1) * 1000:.1f}",
            f"{r['schedule_s'] / max(r['replicas'], 1) * 1e6:.1f}",
            f"{r['floor_s']:.2f}",
            f"{r['wall_s'] / r['floor_s']:.2f}",
            f"{r['cpu_s'] / r['floor_cpu_s']:.2f}",
            f"{r['replay_s']:.2f}",
            f"{r['wall_s'] / r['replay_s']:.2f}",
        )
    console.print(table)
    console.print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
    if any(r["errors"] for r in rows):
        console.print("[red]a synthetic rack had layout errors: the generator is wrong[/]")
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
