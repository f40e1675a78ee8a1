"""The human plan report: resources by component, the pod layout per node, the GPU host's
containers, then problems. Colour only on a TTY (rich decides from the stream)."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from plan.result import PlanResult, short_type


def _bar(used: int, total: int, width: int = 10) -> str:
    if total <= 0:
        return "-" * width
    filled = min(width, round(width * used / total))
    return "█" * filled + "·" * (width - filled)


def render(result: PlanResult, console: Console) -> None:
    rec = result.recording
    console.print(
        f"[bold]Plan for stack {result.stack}[/]: {len(rec)} resources, "
        f"{sum(1 for p in result.sched.placements if p.node)} pods placed on {len(result.sched.nodes)} nodes"
    )
    skipped = sorted(result.loaded.skip_layers)
    if skipped:
        console.print(f"[yellow]layers left out (homelab:skip-layers): {', '.join(skipped)}[/]")

    tree = Table(title="Resources by component", title_justify="left", show_edge=False)
    tree.add_column("component")
    tree.add_column("count", justify="right")
    tree.add_column("resources beneath")
    for label, count, counts in result.component_summary():
        name = "(top level)" if label == "stack" else short_type(label)
        tree.add_row(name, str(count) if count else "", ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    console.print(tree)

    pods: dict[str, list[str]] = defaultdict(list)
    per_workload: dict[tuple[str, str], int] = defaultdict(int)
    for p in result.sched.placements:
        if p.node:
            per_workload[(p.node, p.workload)] += 1
    for (host, workload), count in sorted(per_workload.items()):
        pods[host].append(workload if count == 1 else f"{workload} ×{count}")
    layout = Table(title="Pod layout", title_justify="left", show_lines=True)
    for col in ("node", "class", "role", "arch", "workloads", "cpu requested / allocatable", "memory"):
        layout.add_column(col)
    for n in result.sched.nodes:
        layout.add_row(
            n.hostname,
            n.node_class,
            n.role,
            n.arch,
            "\n".join(pods[n.hostname]) or "[dim]-[/]",
            f"{_bar(n.requested_cpu_m, n.allocatable_cpu_m)} {n.requested_cpu_m}m / {n.allocatable_cpu_m}m",
            f"{_bar(n.requested_memory_mib, n.allocatable_memory_mib)} "
            f"{n.requested_memory_mib}Mi / {n.allocatable_memory_mib}Mi",
        )
    console.print(layout)

    if result.external:
        ext = Table(title="Off-cluster containers", title_justify="left", show_edge=False)
        for col in ("host", "container", "image", "gpus", "ports"):
            ext.add_column(col)
        for c in result.external:
            ext.add_row(c["host"], c["workload"], str(c["image"]), str(c["gpus"]), ", ".join(map(str, c["ports"])))
        console.print(ext)

    urls = result.urls()
    if urls:
        served = Table(title="URLs it will serve (through the ingress)", title_justify="left", show_edge=False)
        served.add_column("url")
        served.add_column("leads to")
        for u in urls:
            served.add_row(u["url"], u["service"])
        console.print(served)

    if result.backups:
        bak = Table(title="Backups", title_justify="left", show_edge=False)
        for col in ("dataset", "node", "schedule (UTC)", "on the node", "off the node", "retention"):
            bak.add_column(col)
        for b in result.backups:
            local = f"{b['local']['volume']}, newest {b['local']['keep']}" if b["local"] else "-"
            off = b["offsite"]
            where = (off["repository"] or f"rest-server on {off['node']}") if off else "[yellow]none[/]"
            keep = "d{daily} w{weekly} m{monthly}".format(**off["retention"]) if off else "-"
            bak.add_row(b["dataset"], b["node"], b["schedule"], local, where, keep)
        console.print(bak)

    if result.problems:
        console.print("[bold]Problems[/]")
        for problem in result.problems:
            style = "red" if problem.severity == "error" else "yellow"
            where = " ".join(x for x in (problem.workload, f"@{problem.node}" if problem.node else None) if x)
            console.print(
                f"  [{style}]{problem.severity}[/] [{problem.check}] {where + ': ' if where else ''}{problem.message}",
                markup=True,
                highlight=False,
            )
    errors = len(result.errors)
    verdict = "[green]layout OK[/]" if not errors else f"[red]{errors} layout error(s)[/]"
    console.print(verdict)
