"""`make bench`: the offline plan on synthetic racks of growing size, against the SDK's floor.

For each size, in a fresh process (so peak memory and import costs are per run): generate a
valid rack, run the whole plan (load -> composition under mocks -> schedule), and measure wall
time, peak RSS, resources registered and replicas placed. The floor is a minimal program that
registers the same number of resources (ConfigMaps) under the same recording mocks, in the same
kind of fresh process. A benchmark, not a test: nothing here gates CI.

    python -m bench.bench [--sizes 10x50,50x250,200x1000] [--json build/bench.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
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
        "k3s": {"version": "v1.31.4+k3s1"},
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


def run_plan(nodes: int, apps: int, stack_file: str | None) -> dict[str, Any]:
    """One measurement, in this process (called in a child)."""
    t0 = time.perf_counter()
    from plan.result import make_plan
    from stacks.config import parse_rack
    from stacks.loader import Loaded, RackSecrets, StackFile

    t_import = time.perf_counter()
    if stack_file:
        loaded = StackFile.read(Path(stack_file)).load()
    else:
        loaded = Loaded(parse_rack(synthetic_rack(nodes, apps)), RackSecrets())
    t_load = time.perf_counter()
    result = make_plan(loaded, "bench", one_shot=True)
    t_done = time.perf_counter()
    placed = sum(1 for p in result.sched.placements if p.node)
    return {
        "nodes": len(loaded.rack.nodes),
        "apps": len(loaded.rack.apps),
        "resources": len(result.recording),
        "replicas": placed,
        "errors": len(result.errors),
        "wall_s": t_done - t0,
        "import_s": t_import - t0,
        "load_s": t_load - t_import,
        "plan_s": t_done - t_load,
        "schedule_s": result.timings.get("schedule", 0.0),
        "peak_mib": _peak_mib(),
    }


def run_floor(count: int) -> dict[str, Any]:
    """The SDK floor: `count` ConfigMaps registered under the same recording mocks."""
    t0 = time.perf_counter()
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
        "import_s": t_import - t0,
        "register_s": t_done - t_import,
        "peak_mib": _peak_mib(),
    }


def child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child-plan", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-stack", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-floor", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_plan is not None:
        print(json.dumps(run_plan(args.child_plan[0], args.child_plan[1], args.child_stack)))
        return 0
    if args.child_floor is not None:
        print(json.dumps(run_floor(args.child_floor)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    rows = []
    homelab = ["--child-plan", "0", "0", "--child-stack", "Pulumi.homelab.yaml"]
    cases: list[tuple[str, list[str]]] = [("homelab", homelab)]
    for size in args.sizes.split(","):
        n, a = size.split("x")
        cases.append((f"{n}/{a}", ["--child-plan", n, a]))
    with console.status("benchmarking…"):
        for label, case in cases:
            plan = child(case)
            floor = child(["--child-floor", str(plan["resources"])])
            rows.append({"case": label, **plan, "floor_s": floor["wall_s"], "floor_register_s": floor["register_s"]})
    table = Table(title="make bench: the offline plan vs the SDK floor (fresh process each)")
    for col in (
        "rack", "nodes", "apps", "resources", "replicas", "wall s", "import s", "schedule ms",
        "peak MiB", "ms/resource", "µs/replica (sched)", "floor s", "× floor",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["case"], str(r["nodes"]), str(r["apps"]), str(r["resources"]), str(r["replicas"]),
            f"{r['wall_s']:.2f}", f"{r['import_s']:.2f}", f"{r['schedule_s'] * 1000:.1f}", f"{r['peak_mib']:.0f}",
            f"{r['wall_s'] / r['resources'] * 1000:.2f}",
            f"{r['schedule_s'] / max(r['replicas'], 1) * 1e6:.1f}",
            f"{r['floor_s']:.2f}", f"{r['wall_s'] / r['floor_s']:.2f}",
        )
    console.print(table)
    if any(r["errors"] for r in rows):
        console.print("[red]a synthetic rack had layout errors: the generator is wrong[/]")
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
