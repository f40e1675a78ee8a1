"""The rack as a picture: a self-contained SVG (and an HTML page embedding it) drawn from the plan JSON.

Creates nothing in Pulumi. `render_svg(plan)` and `render_html(plan)` are pure functions of
`PlanResult.to_json()`; `write_picture` puts both next to each other (what `make plan` runs).

What it draws, top to bottom like a rack: one box per node (hostname, class, role, arch; coloured
by class) with CPU and memory bars (requested against allocatable) and one row per workload placed
on it (with its replica count there); then the GPU host with its containers and the in-cluster
Service that points at it; then, if any, the replicas no node could take and the link targets the
plan does not contain. On the right, one lane per used service: a line from every row of an app
to the database or inference service it `uses`, ending in an arrow.

Layout: one column of boxes whose heights follow their rows, so positions are a running sum and
boxes never overlap; the same plan gives the same bytes.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

# --- geometry (px) --------------------------------------------------------------------------------

MARGIN = 24
BOX_W = 660
HEADER_H = 34
BARS_H = 30
ROW_H = 22
ROW_GAP = 3
PAD = 10
BOX_GAP = 16
LANE_GAP = 16
GUTTER_IN = 22
TITLE_H = 112
FONT = "'DejaVu Sans', 'Segoe UI', system-ui, sans-serif"

CLASS_COLOURS = {
    "control-plane": "#475569",
    "general": "#2563eb",
    "reliable": "#047857",
    "experimental": "#b45309",
}
GPU_COLOUR = "#7c3aed"
OTHER_COLOUR = "#6b7280"
CATEGORY_COLOURS = {
    "data": "#0f766e",
    "infrastructure": "#64748b",
    "application": "#3b82f6",
    "experimental": "#d97706",
}
CATEGORY_ORDER = {"data": 0, "infrastructure": 1, "application": 2, "experimental": 3}
LINK_COLOURS = ["#0284c7", "#e11d48", "#16a34a", "#ea580c", "#db2777", "#0d9488", "#ca8a04", "#4b5563"]
INFERENCE_COLOUR = "#9333ea"


# --- the layout model -----------------------------------------------------------------------------


@dataclass
class Row:
    kind: str
    """pod | container | service | unscheduled | missing."""
    key: str
    """What the row stands for: a workload key, a container name, a Service key."""
    name: str
    """Text drawn in the row."""
    detail: str = ""
    """Grey text after the name (kind, image)."""
    count: str = ""
    """Replicas on this node (of the workload's total)."""
    right: str = ""
    """Right-aligned text (requests per replica, ports)."""
    colour: str = OTHER_COLOUR
    """Colour of the chip at the row's start."""
    tooltip: str = ""
    """Hover text."""
    y: float = 0.0


@dataclass
class Box:
    kind: str
    """node | gpu-host | unscheduled | missing."""
    key: str
    """Hostname, or the name of a pseudo-box."""
    colour: str
    pills: list[str]
    rows: list[Row]
    bars: list[tuple[str, int, int, str]] | None = None
    """(label, requested, allocatable, unit) for a node."""
    empty_text: str = ""
    dashed: bool = False
    y: float = 0.0
    h: float = 0.0
    tooltip: str = ""


@dataclass
class Layout:
    boxes: list[Box]
    lanes: list[tuple[str, str]]
    """(target key, colour), innermost lane first."""
    width: float
    height: float
    links: list[tuple[Row, str, int, int]] = field(default_factory=list)
    """(source row, target key, index among the row's links, how many links the row has)."""


def _fmt_cpu(m: int) -> str:
    return f"{m}m"


def _fmt_mem(mib: int) -> str:
    return f"{mib}Mi"


def _port(p: Any) -> str:
    if isinstance(p, float) and p.is_integer():
        return str(int(p))
    return str(p)


def _node_boxes(plan: dict[str, Any]) -> tuple[list[Box], list[Row]]:
    """The node boxes with their pod rows, plus the rows of replicas no node took."""
    by_node: dict[str | None, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for p in plan.get("placements", []):
        by_node[p.get("node")][p["workload"]].append(p)

    totals: dict[str, int] = defaultdict(int)
    for p in plan.get("placements", []):
        totals[p["workload"]] += 1

    def rows_of(groups: dict[str, list[dict[str, Any]]], kind: str) -> list[Row]:
        out = []
        for key, reps in sorted(groups.items(), key=lambda kv: (CATEGORY_ORDER.get(kv[1][0]["category"], 9), kv[0])):
            first = reps[0]
            here, total = len(reps), totals[key]
            each = f"{_fmt_cpu(first['cpu_m'])} · {_fmt_mem(first['memory_mib'])}"
            out.append(
                Row(
                    kind=kind,
                    key=key,
                    name=key,
                    detail=first["kind"],
                    count=f"×{here}" if here == total else f"×{here} of {total}",
                    right=each,
                    colour=CATEGORY_COLOURS.get(first["category"], OTHER_COLOUR),
                    tooltip=f"{key} ({first['kind']}, {first['category']}): {here} of {total} replica(s) here, "
                    f"requests {each} per replica",
                )
            )
        return out

    boxes = []
    for n in plan.get("nodes", []):
        host = n["hostname"]
        alloc, req, cap = n["allocatable"], n["requested"], n["capacity"]
        empty = "control plane: kept free of workloads" if n["role"] == "server" else "no pods placed"
        boxes.append(
            Box(
                kind="node",
                key=host,
                colour=CLASS_COLOURS.get(n["class"], OTHER_COLOUR),
                pills=[n["class"], n["role"], n["arch"]],
                rows=rows_of(by_node.get(host, {}), "pod"),
                bars=[
                    ("cpu", req["cpu_m"], alloc["cpu_m"], "m"),
                    ("mem", req["memory_mib"], alloc["memory_mib"], "Mi"),
                ],
                empty_text=empty,
                tooltip=f"{host}: capacity {_fmt_cpu(cap['cpu_m'])} CPU, {_fmt_mem(cap['memory_mib'])}; "
                f"allocatable {_fmt_cpu(alloc['cpu_m'])}, {_fmt_mem(alloc['memory_mib'])}",
            )
        )
    unscheduled = rows_of(by_node.get(None, {}), "unscheduled")
    return boxes, unscheduled


def _gpu_boxes(plan: dict[str, Any]) -> list[Box]:
    """One box per off-cluster host: its containers, then the in-cluster Services pointing at it."""
    containers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in plan.get("external", []):
        containers[str(c.get("host") or "unknown")].append(c)
    services: dict[str, set[str]] = defaultdict(set)
    for link in plan.get("links", []):
        if link.get("kind") == "inference" and link.get("host"):
            services[link["host"]].add(link["to"])
    out = []
    for host in sorted(set(containers) | set(services)):
        rows = []
        for c in sorted(containers.get(host, []), key=lambda c: str(c.get("workload"))):
            ports = ", ".join(f":{_port(p)}" for p in c.get("ports") or [] if p is not None)
            gpus = f"gpus {c['gpus']}" if c.get("gpus") else ""
            rows.append(
                Row(
                    kind="container",
                    key=str(c.get("workload")),
                    name=str(c.get("workload")),
                    detail=str(c.get("image") or ""),
                    right="   ".join(x for x in (gpus, ports) if x),
                    colour=GPU_COLOUR,
                    tooltip=f"container {c.get('workload')} on {host}: {c.get('image')}",
                )
            )
        for svc in sorted(services.get(host, set())):
            rows.append(
                Row(
                    kind="service",
                    key=svc,
                    name=svc,
                    detail="Service → this host",
                    right="in-cluster",
                    colour=INFERENCE_COLOUR,
                    tooltip=f"{svc}: Service of gateway pods, ready while the model server on {host} is healthy",
                )
            )
        out.append(
            Box(
                kind="gpu-host",
                key=host,
                colour=GPU_COLOUR,
                pills=["gpu host", "docker"],
                rows=rows,
                empty_text="no containers",
                tooltip=f"{host}: outside the cluster, reached over SSH",
            )
        )
    return out


def layout(plan: dict[str, Any]) -> Layout:
    """Every box's and row's position, and the link lanes: a pure function of the plan."""
    boxes, unscheduled = _node_boxes(plan)
    boxes += _gpu_boxes(plan)
    if unscheduled:
        boxes.append(
            Box(
                kind="unscheduled",
                key="unscheduled",
                colour="#b91c1c",
                pills=["no node fits"],
                rows=unscheduled,
                dashed=True,
                tooltip="replicas the plan could not place (see the problems)",
            )
        )

    drawn = {r.key: r for b in boxes for r in b.rows if r.kind in ("pod", "service", "unscheduled")}
    targets: list[str] = []
    for link in plan.get("links", []):
        if link["to"] not in targets:
            targets.append(link["to"])
    missing = [t for t in targets if t not in drawn]
    if missing:
        boxes.append(
            Box(
                kind="missing",
                key="not in this plan",
                colour="#9f1239",
                pills=["used, but not built"],
                rows=[
                    Row(kind="missing", key=t, name=t, detail="no workload in the plan", colour="#9f1239")
                    for t in missing
                ],
                dashed=True,
                tooltip="services an app uses that the plan does not contain",
            )
        )

    y = float(TITLE_H)
    for b in boxes:
        b.y = y
        ry = y + HEADER_H + (BARS_H if b.bars else 0) + PAD
        for r in b.rows:
            r.y = ry
            ry += ROW_H + ROW_GAP
        if not b.rows:
            ry += ROW_H + ROW_GAP
        b.h = ry - y - ROW_GAP + PAD
        y += b.h + BOX_GAP

    # Target rows: the first drawn row of that key (a database on one node; a Service on its host).
    target_row: dict[str, Row] = {}
    for b in boxes:
        for r in b.rows:
            if r.kind in ("pod", "service", "unscheduled", "missing") and r.key in targets:
                target_row.setdefault(r.key, r)
    sources: dict[str, list[Row]] = defaultdict(list)
    for b in boxes:
        for r in b.rows:
            if r.kind in ("pod", "unscheduled"):
                sources[r.key].append(r)

    per_row: dict[int, list[str]] = defaultdict(list)
    for link in plan.get("links", []):
        for r in sources.get(link["from"], []):
            if link["to"] not in per_row[id(r)]:
                per_row[id(r)].append(link["to"])
    rows_by_id = {id(r): r for rs in sources.values() for r in rs}
    links = [(rows_by_id[rid], to, i, len(tos)) for rid, tos in per_row.items() for i, to in enumerate(tos)]
    links.sort(key=lambda t: (t[0].y, t[2]))

    def span(t: str) -> float:
        ys = [target_row[t].y] + [r.y for r, to, _, _ in links if to == t]
        return max(ys) - min(ys)

    used = [t for t in targets if any(to == t for _, to, _, _ in links)]
    lanes_order = sorted(used, key=lambda t: (span(t), t))
    colours: dict[str, str] = {}
    db_i = 0
    kinds = {link["to"]: link.get("kind") for link in plan.get("links", [])}
    for t in sorted(used):
        if kinds.get(t) == "inference":
            colours[t] = INFERENCE_COLOUR
        else:
            colours[t] = LINK_COLOURS[db_i % len(LINK_COLOURS)]
            db_i += 1
    lanes = [(t, colours[t]) for t in lanes_order]
    gutter = GUTTER_IN + LANE_GAP * len(lanes) + (MARGIN if lanes else 0)
    width = max(MARGIN + BOX_W + gutter + MARGIN, 860)
    return Layout(boxes=boxes, lanes=lanes, width=width, height=y - BOX_GAP + MARGIN, links=links)


# --- drawing --------------------------------------------------------------------------------------


def _t(s: Any) -> str:
    return escape(str(s), quote=True)


def _bar_colour(frac: float) -> str:
    if frac > 0.9:
        return "#dc2626"
    if frac > 0.7:
        return "#f59e0b"
    return "#10b981"


def _box_svg(b: Box) -> list[str]:
    x, y, w, h = MARGIN, b.y, BOX_W, b.h
    dash = ' stroke-dasharray="6 4"' if b.dashed else ""
    out = [
        f'<g class="node {b.kind}" data-kind="{b.kind}" data-hostname="{_t(b.key)}">',
        f"<title>{_t(b.tooltip or b.key)}</title>",
        f'<rect class="node-box" x="{x}" y="{y}" width="{w}" height="{h}" rx="10" fill="#ffffff" '
        f'stroke="{b.colour}" stroke-width="2"{dash}/>',
        f'<path d="M{x} {y + 10} a10 10 0 0 1 10 -10 h{w - 20} a10 10 0 0 1 10 10 v{HEADER_H - 10} h{-w} z" '
        f'fill="{b.colour}"/>',
        f'<text class="node-name" x="{x + 14}" y="{y + 23}" font-size="16" font-weight="bold" '
        f'fill="#ffffff">{_t(b.key)}</text>',
    ]
    px = float(x + w - 12)
    for pill in reversed(b.pills):
        pw = 14 + 7.2 * len(pill)
        px -= pw
        out.append(
            f'<rect class="pill" x="{px:.1f}" y="{y + 8}" width="{pw:.1f}" height="19" rx="9.5" '
            f'fill="#ffffff" fill-opacity="0.22"/>'
            f'<text x="{px + pw / 2:.1f}" y="{y + 22}" font-size="12" text-anchor="middle" '
            f'fill="#ffffff">{_t(pill)}</text>'
        )
        px -= 6
    if b.bars:
        half = (w - 3 * 12) / 2
        for i, (label, req, alloc, unit) in enumerate(b.bars):
            bx = x + 12 + i * (half + 12)
            by = y + HEADER_H + 9
            frac = req / alloc if alloc else 1.0
            bar_x, bar_w = bx + 36, half - 36 - 150
            fill_w = min(frac, 1.0) * bar_w
            out.append(
                f'<g class="bar" data-bar="{label}" data-requested="{req}" data-allocatable="{alloc}">'
                f'<text x="{bx}" y="{by + 10}" font-size="12" font-weight="bold" fill="#374151">{label}</text>'
                f'<rect x="{bar_x:.1f}" y="{by}" width="{bar_w:.1f}" height="12" rx="6" fill="#e5e7eb"/>'
                f'<rect x="{bar_x:.1f}" y="{by}" width="{fill_w:.1f}" height="12" rx="6" '
                f'fill="{_bar_colour(frac)}"/>'
                f'<text x="{bar_x + bar_w + 8:.1f}" y="{by + 10}" font-size="11" fill="#374151">'
                f"{req}{unit} / {alloc}{unit} · {frac:.0%}</text></g>"
            )
    for r in b.rows:
        out.extend(_row_svg(r, b))
    if not b.rows:
        ry = b.y + HEADER_H + (BARS_H if b.bars else 0) + PAD
        out.append(
            f'<text class="empty" x="{x + 16}" y="{ry + 15}" font-size="12" font-style="italic" '
            f'fill="#6b7280">{_t(b.empty_text)}</text>'
        )
    out.append("</g>")
    return out


NAME_FITS = 34
"""Characters of a row's name that fit before the detail column (13px DejaVu Sans, ~7.3px each)."""
NAME_MAX = 56
"""Longer names are cut here with an ellipsis (the full name stays in the row's data-key and tooltip)."""


def _row_svg(r: Row, b: Box) -> list[str]:
    x, w = MARGIN + PAD, BOX_W - 2 * PAD
    fill = "#fef2f2" if r.kind in ("unscheduled", "missing") else "#f3f4f6"
    name = r.name if len(r.name) <= NAME_MAX else r.name[: NAME_MAX - 1] + "…"
    detail = r.detail if len(name) <= NAME_FITS else ""  # a long name takes the detail column
    return [
        f'<g class="row {r.kind}" data-kind="{r.kind}" data-key="{_t(r.key)}" data-node="{_t(b.key)}">',
        f"<title>{_t(r.tooltip or r.key)}</title>",
        f'<rect class="row-box" x="{x}" y="{r.y}" width="{w}" height="{ROW_H}" rx="5" fill="{fill}"/>',
        f'<rect x="{x + 7}" y="{r.y + 6}" width="10" height="10" rx="2" fill="{r.colour}"/>',
        f'<text class="row-name" x="{x + 24}" y="{r.y + 15.5}" font-size="13" fill="#111827">{_t(name)}</text>',
        f'<text x="{x + 290}" y="{r.y + 15.5}" font-size="11" fill="#6b7280">{_t(detail)}</text>',
        f'<text x="{x + w - 122}" y="{r.y + 15.5}" font-size="12" text-anchor="end" fill="#111827">'
        f"{_t(r.count)}</text>",
        f'<text x="{x + w - 10}" y="{r.y + 15.5}" font-size="12" text-anchor="end" fill="#374151">{_t(r.right)}</text>',
        "</g>",
    ]


def _links_svg(lay: Layout) -> list[str]:
    lane_x = {t: MARGIN + BOX_W + GUTTER_IN + i * LANE_GAP for i, (t, _) in enumerate(lay.lanes)}
    colour = dict(lay.lanes)
    target_row: dict[str, Row] = {}
    for b in lay.boxes:
        for r in b.rows:
            if r.kind in ("pod", "service", "unscheduled", "missing") and r.key in colour:
                target_row.setdefault(r.key, r)
    edge = MARGIN + BOX_W - PAD
    out = ['<g class="links" fill="none" stroke-width="1.8">']
    for t, c in lay.lanes:
        tr = target_row[t]
        ty = tr.y + ROW_H / 2
        lx = lane_x[t]
        dash = ' stroke-dasharray="5 4"' if tr.kind == "missing" else ""
        for src, to, i, n in lay.links:
            if to != t:
                continue
            sy = src.y + ROW_H / 2 + (i - (n - 1) / 2) * 4
            rad = min(6.0, abs(ty - sy) / 2)
            down = 1 if ty > sy else -1
            d = (
                f"M{edge} {sy:.1f} H{lx - rad:.1f} Q{lx:.1f} {sy:.1f} {lx:.1f} {sy + down * rad:.1f} "
                f"V{ty - down * rad:.1f} Q{lx:.1f} {ty:.1f} {lx - rad:.1f} {ty:.1f} H{edge + 7}"
            )
            out.append(
                f'<path class="link" data-from="{_t(src.key)}" data-to="{_t(t)}" d="{d}" '
                f'stroke="{c}" marker-end="url(#arrow-{lay.lanes.index((t, c))})"{dash}>'
                f"<title>{_t(src.key)} uses {_t(t)}</title></path>"
            )
            out.append(f'<circle cx="{edge}" cy="{sy:.1f}" r="2.6" fill="{c}" stroke="none"/>')
    out.append("</g>")
    return out


def _legend_svg(plan: dict[str, Any], lay: Layout) -> list[str]:
    nodes = plan.get("nodes", [])
    placed = [p for p in plan.get("placements", []) if p.get("node")]
    unplaced = [p for p in plan.get("placements", []) if not p.get("node")]
    errors = [p for p in plan.get("problems", []) if p.get("severity") == "error"]
    hosts = sum(1 for b in lay.boxes if b.kind == "gpu-host")
    status = "layout OK" if not errors else f"{len(errors)} layout error(s)"
    summary = (
        f"{len(nodes)} nodes · {len(placed)} pods placed"
        + (f" · {len(unplaced)} unscheduled" if unplaced else "")
        + f" · {hosts} GPU host{'s' if hosts != 1 else ''} · {len(plan.get('links', []))} links · {status}"
    )
    out = [
        f'<text class="title" x="{MARGIN}" y="34" font-size="22" font-weight="bold" fill="#111827">'
        f"Rack plan: {_t(plan.get('stack', ''))}</text>",
        f'<text class="summary" x="{MARGIN}" y="56" font-size="13" fill="{"#b91c1c" if errors else "#374151"}">'
        f"{_t(summary)}</text>",
    ]
    x = float(MARGIN)
    y = 80.0
    items = [(c, k, "class") for k, c in CLASS_COLOURS.items()] + [(GPU_COLOUR, "gpu host", "class")]
    items += [(c, k, "category") for k, c in CATEGORY_COLOURS.items()]
    out.append('<g class="legend" font-size="11" fill="#374151">')
    prev = ""
    for c, label, group in items:
        if group != prev:
            heading = "nodes" if group == "class" else "pods"
            if prev:
                x, y = float(MARGIN), y + 18
            out.append(f'<text x="{x:.1f}" y="{y + 1}" font-weight="bold">{heading}</text>')
            x += 46
            prev = group
        if group == "class":
            out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="12" height="12" rx="3" fill="{c}"/>')
        else:
            out.append(f'<rect x="{x + 1:.1f}" y="{y - 8}" width="10" height="10" rx="2" fill="{c}"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{y + 1}">{_t(label)}</text>')
        x += 16 + 6.3 * len(label) + 12
    if lay.lanes:
        out.append(
            f'<path d="M{x + 4:.1f} {y - 3} h22" stroke="#374151" stroke-width="1.8" fill="none" '
            f'marker-end="url(#arrow-legend)"/><text x="{x + 34:.1f}" y="{y + 1}">uses</text>'
        )
    out.append("</g>")
    return out


def render_svg(plan: dict[str, Any]) -> str:
    """The rack picture as a standalone SVG document (no external references)."""
    lay = layout(plan)
    w, h = lay.width, lay.height
    markers = [
        f'<marker id="arrow-{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="{c}"/></marker>'
        for i, (_, c) in enumerate(lay.lanes)
    ]
    markers.append(
        '<marker id="arrow-legend" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#374151"/></marker>'
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rack" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="{_t(FONT)}" role="img" '
        f'aria-label="Rack plan of stack {_t(plan.get("stack", ""))}">',
        f"<defs>{''.join(markers)}</defs>",
        f'<rect width="{w:.0f}" height="{h:.0f}" fill="#f8fafc"/>',
        *_legend_svg(plan, lay),
    ]
    for b in lay.boxes:
        parts.extend(_box_svg(b))
    parts.extend(_links_svg(lay))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


_CHECK_SCRIPT = """
(function () {
  function box(el) {
    if (!el) return null;
    var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  }
  function all(sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); }
  var out = {
    svg: box(document.querySelector("svg.rack")),
    nodes: all("svg.rack g.node").map(function (g) {
      return {kind: g.dataset.kind, key: g.dataset.hostname, box: box(g.querySelector(".node-box")),
              label: box(g.querySelector(".node-name"))};
    }),
    rows: all("svg.rack g.row").map(function (g) {
      return {kind: g.dataset.kind, key: g.dataset.key, node: g.dataset.node,
              box: box(g.querySelector(".row-box")), label: box(g.querySelector(".row-name")),
              text: g.querySelector(".row-name").textContent};
    }),
    links: all("svg.rack path.link").map(function (p) {
      return {from: p.dataset.from, to: p.dataset.to, box: box(p)};
    })
  };
  document.getElementById("layout-check").textContent = JSON.stringify(out);
})();
"""


def render_html(plan: dict[str, Any]) -> str:
    """A self-contained page: the SVG inline, the problems under it, and a layout self-report
    (`<pre id="layout-check">`, hidden: every box's rendered rectangle, for tests and debugging)."""
    problems = plan.get("problems", [])
    items = "".join(
        f'<li class="{_t(p.get("severity"))}"><b>{_t(p.get("severity"))}</b> '
        f"[{_t(p.get('check'))}] {_t(p.get('message'))}</li>"
        for p in problems
    )
    problem_html = f"<h2>Problems</h2><ul>{items}</ul>" if problems else "<p>No problems.</p>"
    stack = _t(plan.get("stack", ""))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>Rack plan: {stack}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>"
        f"body{{margin:0;padding:0;background:#f8fafc;color:#111827;font-family:{FONT}}}"
        "main{padding:0 0 24px 0}"
        "section{margin:0 24px;font-size:13px;max-width:860px}"
        "h2{font-size:15px;margin:4px 0 6px}ul{margin:0;padding-left:18px}"
        "li.error b{color:#b91c1c}li.warning b{color:#b45309}"
        "svg{display:block}"
        "</style></head><body><main>\n"
        f"{render_svg(plan)}"
        f"<section>{problem_html}</section>\n"
        '<pre id="layout-check" hidden></pre>\n'
        f"<script>{_CHECK_SCRIPT}</script>\n"
        "</main></body></html>\n"
    )


def write_picture(plan: dict[str, Any], directory: Path) -> list[Path]:
    """Write `rack.svg` and `rack.html` into `directory` (atomically); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in (("rack.svg", render_svg(plan)), ("rack.html", render_html(plan))):
        path = directory / name
        # A temporary file per writer, then a rename: concurrent plans never leave half a picture.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, prefix=f".{name}.", delete=False) as f:
            f.write(text)
        Path(f.name).replace(path)
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover - a convenience: `python -m plan.picture plan.json out/`
    import sys

    for written in write_picture(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])):
        print(written)
